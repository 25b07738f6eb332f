-- simplify: dead-node removal and re-folding. Rebuilds the graph from its inputs through ir's
-- constructors, keeping only nodes that reach an output; the constructors apply CSE (hash-
-- consing) and each op's fold rule (x*1, x+0, 0*x, constant arithmetic, reshape/bcast of
-- constants), so folds exposed by autodiff are applied here. Repeats until nothing changes.
-- Inputs are kept even when unused: they are the kernel's parameters.
--
-- The rebuilt graph lists its nodes by sweeps (ir.lua: the reductions on the longest path to a
-- node), a sweep's reductions ahead of what else it computes: lower makes one loop nest per
-- stored node in this order, so sums one sweep can compute are neighbours that fuse into one
-- pass over the data (a sum the ops.lua fold split off must not wait behind the scalars
-- computed from the sums of its sweep). A node needs at least its arguments' sweeps, and a
-- reduction one more, so this order is topological.

local ir = require("ir")
local ops = require("ops")

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

-- Returns the rebuilt graph, and whether it is a copy of G's live part (every node made anew
-- from its own op, arguments and attributes: no fold, constant or CSE hit), which rebuilding
-- again would copy once more.
local function sweep_key(n) return n.sweeps * 2 + (ops[n.op].kind == "reduce" and 0 or 1) end

local function in_sweep_order(G)
  local order = {}
  for i, n in ipairs(G.nodes) do order[i] = n end
  table.sort(order, function(a, b)
    local ka, kb = sweep_key(a), sweep_key(b)
    if ka ~= kb then return ka < kb end
    return a.id < b.id
  end)
  return order
end

local function rebuild(G)
  local live = live_set(G)
  local H, map, copy = ir.new(), {}, true
  for _, io in ipairs(G.inputs) do map[io.node] = H:input(io.name, io.node.shape, io.role, io.node.attr.fields) end
  for _, n in ipairs(in_sweep_order(G)) do
    if live[n] and n.op ~= "input" then
      local args = {}
      for i, a in ipairs(n.args) do args[i] = map[a] end
      local count = #H.nodes
      local m = H:make(n.op, args, n.attr)
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

local function sorted(G)
  local key = -1
  for _, n in ipairs(G.nodes) do
    if n.op ~= "input" then
      if sweep_key(n) < key then return false end
      key = sweep_key(n)
    end
  end
  return true
end

function simplify.run(G)
  local H, copy = rebuild(G)
  if copy then return H end -- rebuilding H would give the same graph
  for _ = 1, 4 do
    local before = #H.nodes
    H = rebuild(H)
    if #H.nodes == before then break end
  end
  if not sorted(H) then H = rebuild(H) end -- a fold made nodes out of order
  return H
end

return simplify
