-- jvp: the forward-mode graph. Takes a forward graph and returns a new graph in the same IR
-- that reads one tangent per input (<input>_tan) and returns the tangent of every output
-- (<output>_tan): a tangent sweep in node order using each op's JVP rule (ops.lua). nil
-- tangents are zeros; a baked input (op "table") takes none, it is a constant. A spec may give
-- a closed form (jvp = function(g, v, tan)), used with --jvp closed.

local ops = require("ops")
local builder = require("builder")

local jvp = {}

local function tangents(F, H)
  local tan = {}
  for _, io in ipairs(F.inputs) do
    if io.role == "input" then tan[io.name] = H:input(io.name, io.node.shape, "tangent") end
  end
  return tan
end

local function tangent_outputs(F, H, tan_of)
  for _, o in ipairs(F.outputs) do
    local t = tan_of(o) or H:scalar(0, o.node.shape)
    H.outputs[#H.outputs + 1] = { name = o.name, role = "output_tangent", node = t }
  end
end

function jvp.derive(F)
  local H = F:clone()
  local tin = tangents(F, H)
  local tan = {}
  for _, io in ipairs(F.inputs) do if tin[io.name] then tan[io.node] = tin[io.name] end end
  for _, n in ipairs(F.nodes) do
    if #n.args > 0 then
      local ts, any = {}, false
      for k, a in ipairs(n.args) do ts[k] = tan[a]; any = any or ts[k] ~= nil end
      if any then
        local rule = ops[n.op].jvp
        if not rule then error("op " .. n.op .. " has no JVP rule") end
        tan[n] = rule(H, n, ts[1], ts[2])
        if tan[n] and n.name and not tan[n].name and tan[n].op ~= "input" then tan[n].name = "tan(" .. n.name .. ")" end
      end
    end
  end
  tangent_outputs(F, H, function(o) return tan[o.node] end)
  return H
end

function jvp.closed(F, S, ctx, fb)
  local H = F:clone()
  local expect = {}
  for _, o in ipairs(F.outputs) do expect[o.name] = o.node.shape end
  local seeds = tangents(F, H)
  -- a baked input (op "table", pipeline's --const) is a constant: the rule reads a zero tangent
  for _, n in ipairs(F.nodes) do if n.op == "table" then seeds[n.attr.name] = H:scalar(0, n.shape) end end
  local outs = builder.run_rule(H, S, ctx, fb, S.jvp, seeds, expect, "jvp tangent")
  tangent_outputs(F, H, function(o) return outs[o.name] end)
  return H
end

return jvp
