-- ir: the graph IR. A graph is an SSA list of nodes in topological order:
--   node = { id, op, args = {node...}, shape = {extent...}, attr = {...}, name = string|nil,
--            sweeps = the most reductions on any path to it from a leaf (how many passes over
--            data computing it needs at least; the sum fold in ops.lua lowers it) }
--   graph = { nodes = {...}, inputs = {{name, role, node}...}, outputs = {{name, role, node}...} }
-- Nodes are created only through G:make (and the named constructors below), which infers the
-- shape from the op table, applies the op's fold rule and hash-conses (CSE by construction).
-- Constructors treat nil as the zero tensor, which is how autodiff skips zero contributions.
-- ir.verify(G) is the IR checker run between passes in tests (--check-ir).

local ops = require("ops")
local util = require("util")

local ir = {}
local Graph = {}
Graph.__index = Graph

function ir.new()
  return setmetatable({ nodes = {}, inputs = {}, outputs = {}, memo = {} }, Graph)
end

-- A new graph that starts with G's nodes and I/O lists (derived graphs extend the forward one).
function Graph:clone()
  local H = ir.new()
  for i, n in ipairs(self.nodes) do H.nodes[i] = n end
  for k, n in pairs(self.memo) do H.memo[k] = n end
  for i, io in ipairs(self.inputs) do H.inputs[i] = io end
  return H
end

local function key_of(op, args, attr)
  local parts = { op }
  for i, a in ipairs(args) do parts[#parts + 1] = a.id end
  local key = ops[op].key
  parts[#parts + 1] = key and key(attr) or (next(attr) == nil and "{}" or util.serialize(attr))
  return table.concat(parts, ",")
end

function Graph:shape_of(op, args, attr)
  local def = ops[op]
  if not def then error("unknown op '" .. tostring(op) .. "'", 2) end
  if #args ~= def.arity then error(op .. ": expected " .. def.arity .. " arguments, got " .. #args, 2) end
  local shapes = {}
  for i, a in ipairs(args) do shapes[i] = a.shape end
  local ok, shape = pcall(def.shape, shapes, attr or {})
  if not ok then
    local msg = util.gsub(tostring(shape), "^.-:%d+: ", "")
    local s = {}
    for i, a in ipairs(args) do s[i] = util.shape_str(a.shape) end
    error(op .. ": " .. msg .. " (argument shapes " .. table.concat(s, ", ") .. ")", 0)
  end
  return shape
end

-- Broadcast lifting: an elementwise op whose arguments are broadcasts of one layout (the same
-- source shape and axes) or constants is the broadcast of the op on the sources: the same
-- values, computed once per source element instead of once per element (a per-row scalar).
-- Graph:liftable(a, b): do a and b combine so (one of them a broadcast)? Also ops.lua's mul fold.
function Graph:liftable(a, b)
  if a.op == "const" then return b.op == "bcast" or b.op == "const" end
  if b.op == "const" then return a.op == "bcast" end
  return a.op == "bcast" and b.op == "bcast" and util.same_shape(a.args[1].shape, b.args[1].shape)
    and util.same_shape(a.attr.dims, b.attr.dims)
end

local function lift(G, op, args, attr, shape)
  local lay
  for _, a in ipairs(args) do if a.op == "bcast" then lay = a; break end end
  if not lay then return nil end
  for _, a in ipairs(args) do if not G:liftable(a, lay) then return nil end end
  local src = {}
  for i, a in ipairs(args) do
    src[i] = a.op == "const" and G:scalar(a.attr.value, lay.args[1].shape) or a.args[1]
  end
  return G:bcast(G:make(op, src, attr), shape, lay.attr.dims)
end

-- Graphs are bounded so that a spec cannot make the passes after it run for long.
ir.MAX_NODES = 4000 -- 40x the largest built-in graph (95); the passes are about linear in it

function Graph:make(op, args, attr)
  attr = attr or {}
  local def = ops[op]
  local shape = self:shape_of(op, args, attr)
  util.count(shape) -- fails on shapes beyond 2^53 elements (checked products)
  if def.fold then
    local folded = def.fold(self, args, attr)
    if folded then return folded end
  end
  if def.eval then -- constant folding
    local all_const = true
    for _, a in ipairs(args) do if a.op ~= "const" then all_const = false end end
    if all_const then
      local v = def.eval(args[1].attr.value, args[2] and args[2].attr.value)
      if v ~= v or v == math.huge or v == -math.huge then
        util.fail("constant arithmetic (" .. op .. ") gives " .. tostring(v) .. ", not a finite number")
      end
      return self:scalar(v, shape)
    end
  end
  if def.kind == "elementwise" then
    local lifted = lift(self, op, args, attr, shape)
    if lifted then return lifted end
  end
  local key = key_of(op, args, attr)
  local hit = self.memo[key]
  if hit then return hit end
  if #self.nodes >= ir.MAX_NODES then util.fail("the graph has more than " .. ir.MAX_NODES .. " nodes") end
  local sweeps = def.kind == "reduce" and 1 or 0
  for _, a in ipairs(args) do sweeps = math.max(sweeps, a.sweeps + (def.kind == "reduce" and 1 or 0)) end
  local n = { id = #self.nodes + 1, op = op, args = args, shape = shape, attr = attr, graph = self, sweeps = sweeps }
  self.nodes[#self.nodes + 1] = n
  self.memo[key] = n
  return n
end

-- Constants are full-shape nodes (no broadcast needed); inputs carry their argument name and role.
function Graph:scalar(v, shape)
  assert(type(v) == "number" and v == v, "constant must be a number")
  return self:make("const", {}, { value = v, shape = shape })
end

-- fields: names of a vector input's elements (the train pass's hyperparameters), for the header
function Graph:input(name, shape, role, fields)
  local n = self:make("input", {}, { name = name, shape = shape, role = role, fields = fields })
  n.name = n.name or name
  self.inputs[#self.inputs + 1] = { name = name, role = role, node = n }
  return n
end

function Graph:is_zero(n) return n ~= nil and n.op == "const" and n.attr.value == 0 end
function Graph:is_one(n) return n ~= nil and n.op == "const" and n.attr.value == 1 end

-- nil-aware constructors (nil = zero tensor)
function Graph:add(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return self:make("add", { a, b })
end
function Graph:sub(a, b)
  if b == nil then return a end
  if a == nil then return self:neg(b) end
  return self:make("sub", { a, b })
end
function Graph:mul(a, b)
  if a == nil or b == nil then return nil end
  return self:make("mul", { a, b })
end
function Graph:div(a, b)
  if a == nil then return nil end
  return self:make("div", { a, b })
end
local function unary(op)
  return function(self, a) if a == nil then return nil end return self:make(op, { a }) end
end
Graph.neg = unary("neg")
Graph.recip = unary("recip")
Graph.sqrt_clamp = unary("sqrt_clamp")
Graph.clamp0 = unary("clamp0")
Graph.step = unary("step")
Graph.exp = unary("exp")
Graph.log = unary("log")
Graph.tanh = unary("tanh")
Graph.erf = unary("erf")
Graph.erfc = unary("erfc")
Graph.detach = unary("detach")
Graph.abs = unary("abs")
Graph.sign = unary("sign")
Graph.sqrt = unary("sqrt")
function Graph:powi(a, b) return self:make("powi", { a, b }) end
function Graph:element(a, index) return self:make("element", { a }, { index = index }) end
function Graph:maximum(a, b) return self:make("maximum", { a, b }) end
function Graph:max_weight(a, b) return self:make("max_weight", { a, b }) end
function Graph:equal(a, b) return self:make("equal", { a, b }) end
function Graph:amax(a, axes) return self:make("amax", { a }, { axes = axes }) end
function Graph:gelu(a, approx) return self:make("gelu", { a }, { approx = approx }) end
function Graph:gelu_grad(a, approx) return self:make("gelu_grad", { a }, { approx = approx }) end
function Graph:sum(a, axes)
  if a == nil then return nil end
  return self:make("sum", { a }, { axes = axes })
end
-- sum(a, axes) as sum(k * sum(a, inner), the rest of axes): inner, a proper part of axes, summed
-- first (the rest renumbered for the inner sum's shape, which lacks the inner axes); k, if
-- given, in that shape.
function Graph:sum_nested(a, inner, axes, k)
  local part, rest, drop = self:sum(a, inner), {}, {}
  if k then part = self:mul(k, part) end
  for _, ax in ipairs(inner) do drop[ax] = true end
  for _, ax in ipairs(axes) do
    if not drop[ax] then
      local r = ax
      for _, d in ipairs(inner) do if d < ax then r = r - 1 end end
      rest[#rest + 1] = r
    end
  end
  return self:sum(part, rest)
end
function Graph:bcast(a, shape, dims)
  if a == nil then return nil end
  if util.same_shape(a.shape, shape) then return a end
  return self:make("bcast", { a }, { shape = shape, dims = dims })
end
function Graph:reshape(a, shape)
  if a == nil then return nil end
  if util.same_shape(a.shape, shape) then return a end
  return self:make("reshape", { a }, { shape = shape })
end
function Graph:pick0(a, axis)
  if a == nil then return nil end
  return self:make("pick0", { a }, { axis = axis })
end
function Graph:unpick0(a, axis, extent)
  if a == nil then return nil end
  return self:make("unpick0", { a }, { axis = axis, extent = extent })
end

-- Uses of each node (by id), counting graph outputs.
function Graph:uses()
  local uses = {}
  for _, n in ipairs(self.nodes) do
    for _, a in ipairs(n.args) do uses[a.id] = (uses[a.id] or 0) + 1 end
  end
  for _, o in ipairs(self.outputs) do uses[o.node.id] = (uses[o.node.id] or 0) + 1 end
  return uses
end

-- The IR checker: topological order, ids, arities and shapes agree with the op table.
function ir.verify(G, pass)
  local seen = {}
  for i, n in ipairs(G.nodes) do
    local where = "IR check after " .. (pass or "?") .. ": node " .. i .. " (" .. tostring(n.op) .. ")"
    if n.id ~= i then error(where .. ": id " .. tostring(n.id)) end
    for _, a in ipairs(n.args) do
      if not seen[a] then error(where .. ": argument used before its definition") end
    end
    local shape = G:shape_of(n.op, n.args, n.attr)
    if not util.same_shape(shape, n.shape) then error(where .. ": shape disagrees with the op table") end
    seen[n] = true
  end
  for _, io in ipairs(G.outputs) do
    if not seen[io.node] then error("IR check after " .. (pass or "?") .. ": output " .. io.name .. " not in graph") end
  end
end

-- Text dump for --dump-ir.
function ir.dump(G, title)
  local out = { "# " .. title }
  for _, n in ipairs(G.nodes) do
    local args = {}
    for i, a in ipairs(n.args) do args[i] = "%" .. a.id end
    local attr = ops[n.op].key and ops[n.op].key(n.attr) or util.serialize(n.attr)
    out[#out + 1] = util.format("%%%d = %s(%s) %s %s%s", n.id, n.op, table.concat(args, ", "),
      util.shape_str(n.shape), attr ~= "{}" and attr or "", n.name and ("  ; " .. n.name) or "")
  end
  for _, o in ipairs(G.outputs) do out[#out + 1] = "output " .. o.name .. " = %" .. o.node.id end
  return table.concat(out, "\n") .. "\n"
end

return ir
