-- simplify: dead-node removal and re-folding. Rebuilds the graph from its inputs through ir's
-- constructors, keeping only nodes that reach an output; the constructors apply CSE (hash-
-- consing) and each op's fold rule (x*1, x+0, 0*x, constant arithmetic, reshape/bcast of
-- constants), so folds exposed by autodiff are applied here. Repeats until nothing changes.
-- Inputs are kept even when unused: they are the kernel's parameters.

local ir = require("ir")

local simplify = {}

local function live_set(G)
  local live = {}
  local function mark(n)
    if live[n] then return end
    live[n] = true
    for _, a in ipairs(n.args) do mark(a) end
  end
  for _, o in ipairs(G.outputs) do mark(o.node) end
  return live
end

-- Sums of one argument over nested axes: the larger adds up the smaller's results,
-- sum(a, S) = sum(sum(a, T), S - T) for T a proper part of S (the largest such T the graph
-- sums a over), so that one sweep of accumulation serves both (GroupNorm's dbeta, dy summed
-- over (sample, h, w), from the sums over (h, w) per sample that its dx needs). Returns
-- sum node -> T. Only arguments summed at most SHARED_MAX ways are looked at (pairs of sums:
-- a spec summing one tensor 20,000 ways would otherwise make this quadratic).
local SHARED_MAX = 8
local function nested_sums(G, live)
  local by_arg, inner = {}, {}
  for _, n in ipairs(G.nodes) do
    if live[n] and n.op == "sum" then
      local l = by_arg[n.args[1]] or {}
      by_arg[n.args[1]] = l
      l[#l + 1] = n
    end
  end
  for _, n in ipairs(G.nodes) do
    local l = live[n] and n.op == "sum" and by_arg[n.args[1]] or {}
    for _, t in ipairs(#l <= SHARED_MAX and l or {}) do
      local S, T = {}, t.attr.axes
      for _, ax in ipairs(n.attr.axes) do S[ax] = true end
      local part = #T < #n.attr.axes
      for _, ax in ipairs(T) do part = part and S[ax] end
      if part and (not inner[n] or #T > #inner[n]) then inner[n] = T end
    end
  end
  return inner
end

-- Returns the rebuilt graph, and whether it is a copy of G's live part (every node made anew
-- from its own op, arguments and attributes: no fold, constant or CSE hit), which rebuilding
-- again would copy once more.
local function rebuild(G)
  local live = live_set(G)
  local inner = nested_sums(G, live)
  local H, map, copy = ir.new(), {}, true
  for _, io in ipairs(G.inputs) do map[io.node] = H:input(io.name, io.node.shape, io.role, io.node.attr.fields) end
  for _, n in ipairs(G.nodes) do
    if live[n] and n.op ~= "input" then
      local args = {}
      for i, a in ipairs(n.args) do args[i] = map[a] end
      local count = #H.nodes
      local m
      if inner[n] then
        m = H:sum_nested(args[1], inner[n], n.attr.axes)
      else
        m = H:make(n.op, args, n.attr)
      end
      if copy and not (#H.nodes == count + 1 and H.nodes[#H.nodes] == m and m.op == n.op and m.args == args
        and m.attr == n.attr) then
        copy = false
      end
      m.name = m.name or n.name
      map[n] = m
    end
  end
  for _, o in ipairs(G.outputs) do
    H.outputs[#H.outputs + 1] = { name = o.name, role = o.role, node = map[o.node] }
  end
  return H, copy
end

function simplify.run(G)
  local H, copy = rebuild(G)
  if copy then return H end -- rebuilding H would give the same graph
  for _ = 1, 4 do
    local before = #H.nodes
    H = rebuild(H)
    if #H.nodes == before then break end
  end
  return H
end

return simplify
