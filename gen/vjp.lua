-- vjp: the reverse-mode graph. Takes a forward graph and returns a new graph in the same IR
-- that recomputes the forward values, reads one cotangent per output (<output>_cot) and
-- returns the gradient of every input (<input>_grad): a reverse sweep over the node chain,
-- accumulating adjoints with add. Each op's rule lives in ops.lua; nil adjoints are zeros and
-- cost nothing. An input that does not influence any output gets an explicit zero gradient.
-- A baked input (op "table", pipeline's --const) is no input of the graph: it gets none.
-- A spec may instead give a closed-form rule (vjp = function(g, v, cot)), used with
-- --vjp closed; `kerngen check` compares the two.

local ops = require("ops")
local builder = require("builder")

local vjp = {}

local function cotangents(F, H)
  local cot = {}
  for _, o in ipairs(F.outputs) do cot[o.name] = H:input(o.name, o.node.shape, "cotangent") end
  return cot
end

local function grad_outputs(F, H, grad_of)
  for _, io in ipairs(F.inputs) do
    if io.role == "input" then
      local g = grad_of(io) or H:scalar(0, io.node.shape)
      H.outputs[#H.outputs + 1] = { name = io.name, role = "grad", node = g }
    end
  end
end

function vjp.derive(F)
  local H = F:clone()
  local cot = cotangents(F, H)
  local adj = {}
  for _, o in ipairs(F.outputs) do adj[o.node] = H:add(adj[o.node], cot[o.name]) end
  for i = #F.nodes, 1, -1 do
    local n = F.nodes[i]
    local g = adj[n]
    if g and #n.args > 0 then
      local rule = ops[n.op].vjp
      if not rule then error("op " .. n.op .. " has no VJP rule") end
      local grads = table.pack(rule(H, n, g))
      for k, a in ipairs(n.args) do
        adj[a] = H:add(adj[a], grads[k])
        -- for dot and the comments of the C: the adjoint of a named value is named after it
        if adj[a] and a.name and not adj[a].name and adj[a].op ~= "input" then adj[a].name = "grad(" .. a.name .. ")" end
      end
    end
  end
  grad_outputs(F, H, function(io) return adj[io.node] end)
  return H
end

-- Closed form: S.vjp(g, v, cot) returns gradients by input name, built from the forward
-- graph's named values (its builder fb).
function vjp.closed(F, S, ctx, fb)
  local H = F:clone()
  local expect = {}
  for _, io in ipairs(F.inputs) do if io.role == "input" then expect[io.name] = io.node.shape end end
  local grads = builder.run_rule(H, S, ctx, fb, S.vjp, cotangents(F, H), expect, "vjp gradient")
  grad_outputs(F, H, function(io) return grads[io.name] end)
  return H
end

return vjp
