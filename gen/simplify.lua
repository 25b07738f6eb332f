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

-- Returns the rebuilt graph, and whether it is a copy of G's live part (every node made anew
-- from its own op, arguments and attributes: no fold, constant or CSE hit), which rebuilding
-- again would copy once more.
local function rebuild(G)
  local live = live_set(G)
  local H, map, copy = ir.new(), {}, true
  for _, io in ipairs(G.inputs) do map[io.node] = H:input(io.name, io.node.shape, io.role, io.node.attr.fields) end
  for _, n in ipairs(G.nodes) do
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
