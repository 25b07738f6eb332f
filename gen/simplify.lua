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

local function rebuild(G)
  local live = live_set(G)
  local H, map = ir.new(), {}
  for _, io in ipairs(G.inputs) do map[io.node] = H:input(io.name, io.node.shape, io.role, io.node.attr.fields) end
  for _, n in ipairs(G.nodes) do
    if live[n] and n.op ~= "input" then
      local args = {}
      for i, a in ipairs(n.args) do args[i] = map[a] end
      local m = H:make(n.op, args, n.attr)
      m.name = m.name or n.name
      map[n] = m
    end
  end
  for _, o in ipairs(G.outputs) do
    H.outputs[#H.outputs + 1] = { name = o.name, role = o.role, node = map[o.node] }
  end
  return H
end

function simplify.run(G)
  local H = rebuild(G)
  for _ = 1, 4 do
    local before = #H.nodes
    H = rebuild(H)
    if #H.nodes == before then break end
  end
  return H
end

return simplify
