-- builder: the vocabulary of graph specs. A spec's forward(g, v) assigns named values
-- (v.mean = g.mean(v.xs, 2)) built from tensors with NumPy-style broadcasting (x - mean works
-- for x[rows][dim] and mean[rows][1]); numbers are lifted to constants. Everything lowers to the
-- IR primitives of ops.lua through ir's constructors, with explicit bcast/reshape nodes.
-- Axes are 1-based; negative axes count from the end (-1 = last). Reductions keep their axes
-- with extent 1 (keepdims), so their results broadcast back naturally.
-- Errors name the spec file and line of the offending call.

local util = require("util")

local builder = {}

local function spec_copy(t) return require("spec").copy(t) end

-- A spec holds tensors as empty handles: the IR node and the builder that made it live in
-- weak tables the spec cannot reach, so a spec can read a shape (a copy) but never the node.
local node_of = setmetatable({}, { __mode = "k" })
local builder_of = setmetatable({}, { __mode = "k" })
local Tensor = { __metatable = false }

local function copy_shape(s)
  local c = {}
  for i, e in ipairs(s) do c[i] = e end
  return c
end

-- Tensor metamethods dispatch to the builder that made the handle (g.call nests builders).
local function owner(x, y) return builder_of[x] or builder_of[y] end
Tensor.__add = function(x, y) return owner(x, y).binary("add", x, y) end
Tensor.__sub = function(x, y) return owner(x, y).binary("sub", x, y) end
Tensor.__mul = function(x, y) return owner(x, y).binary("mul", x, y) end
Tensor.__div = function(x, y) return owner(x, y).binary("div", x, y) end
Tensor.__unm = function(x) return builder_of[x].neg(x) end
Tensor.__index = function(t, k)
  if k == "shape" then return copy_shape(node_of[t].shape) end
  builder_of[t].fail("tensors have no field '" .. util.show(k) .. "'")
end
Tensor.__newindex = function(t) builder_of[t].fail("tensors are read-only") end

local function here(b)
  -- the innermost stack frame that belongs to the spec being built
  for level = 2, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.short_src == b.file and info.currentline > 0 then return b.file .. ":" .. info.currentline .. ": " end
  end
  return b.file .. ": "
end

function builder.new(G, S, ctx, prefix)
  local b = { G = G, S = S, file = S.file, ctx = ctx, prefix = prefix or "" }
  local named = {}

  local function fail(msg) util.fail(here(b) .. msg) end

  local function wrap(n)
    local t = setmetatable({}, Tensor)
    node_of[t], builder_of[t] = n, b
    return t
  end
  local function unwrap(x, what)
    local n = node_of[x]
    if not n then fail((what or "argument") .. " is not a tensor (got a " .. type(x) .. ")") end
    -- not a node of this graph (a closed-form rule's graph starts as a copy of forward's): a
    -- handle kept from another function of the spec, whose node was made after the copy; its
    -- id means another node here, and ids key the graph's CSE
    if G.nodes[n.id] ~= n then
      fail((what or "argument") .. " is a tensor of another function of the spec (tensors live in the call that made them)")
    end
    return n
  end
  -- an operand of arithmetic: a tensor, or a finite number (lifted to a constant)
  local function operand(x, what)
    if type(x) ~= "number" then return unwrap(x, what) end
    if x ~= x or x == math.huge or x == -math.huge then fail((what or "operand") .. " is not a finite number") end
    if ctx.dtype == "f32" and math.abs(x) > util.FLT_MAX then
      fail((what or "operand") .. " " .. util.num_str(x) .. " is beyond float's range (f32)")
    end
    return x
  end

  -- NumPy broadcasting of two nodes (numbers become constants of the other's shape)
  local function broadcast2(a, b2)
    if type(a) == "number" and type(b2) == "number" then fail("arithmetic on two numbers needs no graph") end
    if type(a) == "number" then a = G:scalar(a, b2.shape) end
    if type(b2) == "number" then b2 = G:scalar(b2, a.shape) end
    local ra, rb = #a.shape, #b2.shape
    local r = math.max(ra, rb)
    local shape = {}
    for i = 1, r do
      local ea = a.shape[i - (r - ra)] or 1
      local eb = b2.shape[i - (r - rb)] or 1
      if ea ~= eb and ea ~= 1 and eb ~= 1 then
        fail("cannot broadcast " .. util.shape_str(a.shape) .. " with " .. util.shape_str(b2.shape))
      end
      shape[i] = math.max(ea, eb)
    end
    local function to(n)
      local dims = {}
      for k = 1, #n.shape do dims[k] = k + (r - #n.shape) end
      return G:bcast(n, shape, dims)
    end
    return to(a), to(b2)
  end

  function b.binary(op, x, y)
    local a, c = broadcast2(operand(x), operand(y))
    return wrap(G:make(op, { a, c }))
  end
  function b.neg(x) return wrap(G:neg(unwrap(x))) end
  b.fail = fail

  local function axes_of(n, axes)
    if type(axes) == "number" then axes = { axes } end
    if type(axes) ~= "table" then fail("axes are an integer or a list of integers") end
    local out, seen = {}, {}
    for _, ax in ipairs(axes) do
      if math.type(ax) ~= "integer" then fail("axes are integers") end
      local a = ax < 0 and #n.shape + 1 + ax or ax
      if a < 1 or a > #n.shape then fail("axis " .. ax .. " out of range for " .. util.shape_str(n.shape)) end
      if seen[a] then fail("axis " .. ax .. " given twice") end
      seen[a] = true
      out[#out + 1] = a
    end
    table.sort(out)
    return out
  end

  local function keepdims(n, axes, red)
    local shape = {}
    for i, e in ipairs(n.shape) do shape[i] = e end
    for _, a in ipairs(axes) do shape[a] = 1 end
    return G:reshape(red, shape)
  end

  local g = {}
  -- the spec's own copies of its dims and attrs; a misspelled name is an error at its line
  local function known(t, what)
    local names = {}
    for k in pairs(t) do names[#names + 1] = k end
    table.sort(names)
    return setmetatable(t, { __index = function(_, k)
      fail(what .. " has no '" .. util.show(k) .. "' (" .. what .. ": " .. table.concat(names, ", ") .. ")")
    end })
  end
  g.dim, g.attr = known(spec_copy(ctx.dims), "g.dim"), known(spec_copy(ctx.attrs), "g.attr")
  g.dtype, g.semantics = ctx.dtype, ctx.semantics

  function g.sum(x, axes)
    local n = unwrap(x); axes = axes_of(n, axes)
    return wrap(keepdims(n, axes, G:sum(n, axes)))
  end
  function g.mean(x, axes)
    local n = unwrap(x); axes = axes_of(n, axes)
    local count = 1
    for _, a in ipairs(axes) do count = count * n.shape[a] end
    local s = keepdims(n, axes, G:sum(n, axes))
    return wrap(G:mul(s, G:scalar(1 / count, s.shape)))
  end
  -- the largest and smallest element along axes (kept with extent 1); min(x) = -max(-x)
  function g.max(x, axes)
    local n = unwrap(x); axes = axes_of(n, axes)
    return wrap(keepdims(n, axes, G:amax(n, axes)))
  end
  function g.min(x, axes) return -g.max(-x, axes) end
  -- elementwise, broadcasting like arithmetic; minimum(a, b) = -maximum(-a, -b)
  function g.maximum(x, y)
    local a, c = broadcast2(operand(x), operand(y))
    return wrap(G:maximum(a, c))
  end
  function g.minimum(x, y) return -g.maximum(-x, -y) end
  -- element 0 along the given axes (kept with extent 1)
  function g.first(x, axes)
    local n = unwrap(x); axes = axes_of(n, axes)
    local r = n
    for k = #axes, 1, -1 do r = G:pick0(r, axes[k]) end
    return wrap(keepdims(n, axes, r))
  end
  for _, op in ipairs({ "sqrt_clamp", "clamp0", "recip", "exp", "log", "tanh", "erf", "erfc", "detach", "abs" }) do
    g[op] = function(x) return wrap(G[op](G, unwrap(x))) end
  end
  function g.gelu(x, approx)
    if approx ~= "erf" and approx ~= "tanh" then fail("gelu approx must be 'erf' or 'tanh'") end
    return wrap(G:gelu(unwrap(x), approx))
  end
  function g.reshape(x, shape)
    local n = unwrap(x)
    if type(shape) ~= "table" then fail("reshape: the shape is a list of extents") end
    local s = {}
    for i = 1, #shape do
      if math.type(shape[i]) ~= "integer" or shape[i] < 1 then fail("reshape: extents are integers >= 1") end
      s[i] = shape[i]
    end
    shape = s
    if util.count(shape) ~= util.count(n.shape) then
      fail("cannot reshape " .. util.shape_str(n.shape) .. " to " .. util.shape_str(shape))
    end
    return wrap(G:reshape(n, shape))
  end
  -- linear map over the last axis: x[..., i], w[o][i] -> y[..., o] = sum_i w[o][i] x[..., i]
  function g.linear(x, w)
    local xn, wn = unwrap(x), unwrap(w)
    local r = #xn.shape
    if #wn.shape ~= 2 or wn.shape[2] ~= xn.shape[r] then
      fail("linear: weight " .. util.shape_str(wn.shape) .. " does not match input " .. util.shape_str(xn.shape))
    end
    local shape, xdims = {}, {}
    for i = 1, r - 1 do shape[i] = xn.shape[i]; xdims[i] = i end
    shape[r], shape[r + 1] = wn.shape[1], wn.shape[2]
    xdims[r] = r + 1
    local prod = G:mul(G:bcast(wn, shape, { r, r + 1 }), G:bcast(xn, shape, xdims))
    return wrap(G:sum(prod, { r + 1 }))
  end
  function g.shape(x) return copy_shape(unwrap(x).shape) end
  function g.fail(msg) fail(util.show(msg)) end

  -- Another graph as one node: inputs by name; its dims come from the input shapes and
  -- params (NAME=VALUE strings or a table) fill the rest; attrs default to this graph's preset.
  function g.call(name, args, params)
    local spec = require("spec")
    if (ctx.depth or 0) >= spec.CALL_DEPTH then
      fail("g.call nests deeper than " .. spec.CALL_DEPTH .. " graphs (does '" .. util.show(name) .. "' call itself?)")
    end
    if not util.is_name(name) then fail("g.call: '" .. util.show(name) .. "' is not a graph name") end
    local S2 = spec.find_callee(S, name)
    if type(args) ~= "table" or (params ~= nil and type(params) ~= "table") then
      fail("g.call(name, inputs, params): inputs and params are tables")
    end
    local list = {}
    for k, v in pairs(params or {}) do
      if type(k) ~= "string" or (type(v) ~= "number" and type(v) ~= "string") then
        fail("g.call: params are NAME = number or string")
      end
      list[#list + 1] = k .. "=" .. (type(v) == "number" and util.num_str(v) or v)
    end
    table.sort(list)
    local inputs, dims_from_inputs = {}, {}
    for _, i in ipairs(S2.inputs) do
      local t = args[i[1]]
      if t ~= nil then
        local n = unwrap(t, "input " .. i[1])
        inputs[i[1]] = n
        if #n.shape ~= #i - 1 then fail(name .. ": input " .. i[1] .. " has rank " .. #n.shape) end
        for k = 2, #i do
          local prev = dims_from_inputs[i[k]]
          if prev and prev ~= n.shape[k - 1] then fail(name .. ": inconsistent dim " .. i[k]) end
          dims_from_inputs[i[k]] = n.shape[k - 1]
        end
      end
    end
    for dname, v in pairs(dims_from_inputs) do
      if not (params and params[dname]) then list[#list + 1] = dname .. "=" .. v end
    end
    table.sort(list)
    local dims, attrs = spec.bind(S2, list, ctx.semantics, ctx.dtype)
    for _, i in ipairs(spec.active_inputs(S2, attrs)) do
      if not inputs[i[1]] then fail(name .. ": missing input " .. i[1]) end
    end
    local sub = { dims = dims, attrs = attrs, dtype = ctx.dtype, semantics = ctx.semantics, depth = (ctx.depth or 0) + 1 }
    local outs, callee = spec.run_forward(S2, G, sub, inputs, b.prefix .. name .. ".")
    for _, s in ipairs(callee.saved) do b.saved[#b.saved + 1] = s end
    local res = {}
    for k, n in pairs(outs) do res[k] = wrap(n) end
    return res
  end

  -- v: named values. Assigning names the node (first name wins) for dot and comments.
  b.values = setmetatable({}, {
    __newindex = function(_, k, x)
      -- names reach generated comments and dot labels: identifiers only
      if not util.is_name(k) then fail("value names must be C identifiers of at most " .. util.NAME_MAX .. " characters") end
      if named[k] then fail("value '" .. k .. "' assigned twice") end
      local n = operand(x, "value " .. k)
      if type(n) == "number" then n = G:scalar(n, {}) end
      if not n.name then n.name = b.prefix .. k end
      named[k] = n
    end,
    __metatable = false,
    __index = function(_, k)
      local n = named[k]
      if not n then fail("no value named '" .. util.show(k) .. "'") end
      return wrap(n)
    end,
  })
  b.named = named
  b.saved = {} -- {name, node} of the values a backward may read (spec.run_forward)
  function b.set(k, n) named[k] = n end
  function b.get(k) return named[k] end
  b.g = g
  b.wrap, b.unwrap = wrap, unwrap
  return b
end

-- Runs a spec's closed-form rule fn(g, v, seeds) into graph H: v holds the forward graph's
-- named values (from its builder fb), seeds the cotangents or tangents by name. expect maps
-- every result name to its required shape; returns the result nodes by name.
-- what ("vjp gradient", "jvp tangent") names the rule in errors.
function builder.run_rule(H, S, ctx, fb, fn, seeds, expect, what)
  local b = builder.new(H, S, ctx)
  for k, n in pairs(fb.named) do b.set(k, n) end
  local wrapped = {}
  for k, n in pairs(seeds) do wrapped[k] = b.wrap(n) end
  local res = require("spec").guarded(S.file, fn, b.g, b.values, wrapped)
  if type(res) ~= "table" then util.fail(S.file .. ": a closed-form rule must return a table") end
  local nodes = {}
  for name, shape in pairs(expect) do
    if res[name] == nil then util.fail(S.file .. ": closed-form " .. what .. " of " .. name .. " is missing") end
    local n = b.unwrap(res[name])
    if type(n) == "number" or not util.same_shape(n.shape, shape) then
      util.fail(S.file .. ": closed-form " .. what .. " of " .. name .. " must have shape " .. util.shape_str(shape))
    end
    nodes[name] = n
  end
  return nodes
end

return builder
