-- ops: the primitive table, the single source of truth for every primitive.
--
-- Each entry holds, side by side:
--   shape(arg_shapes, attr) -> shape        the shape rule (errors are strings raised with error())
--   c = {...}                               how emit_c prints it (elementwise ops only):
--        {infix = "+", prec = P}  binary infix ({infix = "/", prec = 2, lhs = 1}: 1 / a);
--        {prefix = "-"}           unary minus;
--        {math = name}            a function of gen/mathfn.lua, kg_<name>_<dtype>(a), emitted into
--                                 the kernel file with what it calls (name may be a function of
--                                 the node's attr);
--        {helper = body}          a static function kg_<op>[_<approx>]_<dtype>(v), or (a, b) for a
--                                 binary op, emitted into the kernel file; body(T, lit, f, attr)
--                                 returns its C lines (T the C type, lit(x) a literal of that
--                                 type, f the libm suffix of sqrt)
--   eval(a, b) -> number                    the op on constants (constant folding, in double)
--   read(node, idx) -> arg_idx              structural ops: where output index idx reads its argument
--   same_layout                             a view with its argument's flat layout (free in memory)
--   jvp(G, node, t1, t2) -> tangent         forward-mode rule; t_i is nil when that tangent is zero
--   vjp(G, node, g) -> g1, g2               reverse-mode rule: one cotangent per argument (nil = zero)
--   fold(G, args, attr) -> node|nil         algebraic simplification, applied when a node is made
--   cost                                    rough cost of one element, used by the fusion planner
--   combine                                 reductions: the elementwise op that folds two partial
--                                           results ("add" for sum); the order is the loop IR's
--   domain                                  "positive" or "finite": the value is checked at run time
--                                           (the seeds' hypotheses var + eps > 0 and std ~= 0)
--   key(attr) -> string                     leaves whose attr is too big to serialize: the text
--                                           that identifies the node for CSE and --dump-ir
-- Tensors are row-major; axes are 1-based. Rules build nodes only through G's constructors, so
-- the same hash-consing and folding apply to derived graphs. Ops without a derivative say so
-- explicitly (nondiff = true); anything missing is an error when this module loads.

local ops = {}

local util = require("util")
local mathfn = require("mathfn")

local TWO_OVER_SQRT_PI = 1.12837916709551257390

local function same_shape(shapes)
  local a = shapes[1]
  for k = 2, #shapes do
    local b = shapes[k]
    if #a ~= #b then error("shape mismatch") end
    for i = 1, #a do if a[i] ~= b[i] then error("shape mismatch") end end
  end
  return a
end

local function elementwise(def)
  def.kind = "elementwise"
  def.shape = def.shape or same_shape
  return def
end

-- Binary arithmetic. C precedence: * and / bind tighter (prec 2) than + and - (prec 1).
ops.add = elementwise {
  arity = 2, cost = 1, c = { infix = "+", prec = 1 },
  eval = function(a, b) return a + b end,
  jvp = function(G, n, ta, tb) return G:add(ta, tb) end,
  vjp = function(G, n, g) return g, g end,
  fold = function(G, args)
    local a, b = args[1], args[2]
    if G:is_zero(a) then return b end
    if G:is_zero(b) then return a end
  end,
}

ops.sub = elementwise {
  arity = 2, cost = 1, c = { infix = "-", prec = 1 },
  eval = function(a, b) return a - b end,
  jvp = function(G, n, ta, tb) return G:sub(ta, tb) end,
  vjp = function(G, n, g) return g, G:neg(g) end,
  fold = function(G, args)
    local a, b = args[1], args[2]
    if G:is_zero(b) then return a end
    if G:is_zero(a) then return G:neg(b) end
  end,
}

ops.mul = elementwise {
  arity = 2, cost = 1, c = { infix = "*", prec = 2 },
  eval = function(a, b) return a * b end,
  -- a square a*a: one term 2 t a, where the product rule's t*a + a*t would keep two products
  -- of the same value (and a sum of them could not take the 2 out of the row)
  jvp = function(G, n, ta, tb)
    local a, b = n.args[1], n.args[2]
    if a == b then return G:mul(G:mul(ta, G:scalar(2, n.shape)), a) end
    return G:add(G:mul(ta, b), G:mul(a, tb))
  end,
  vjp = function(G, n, g)
    if n.args[1] == n.args[2] then return G:mul(G:mul(g, G:scalar(2, n.shape)), n.args[1]), nil end
    return G:mul(g, n.args[2]), G:mul(n.args[1], g)
  end,
  fold = function(G, args)
    local a, b = args[1], args[2]
    if G:is_one(a) then return b end
    if G:is_one(b) then return a end
    if G:is_zero(a) then return a end
    if G:is_zero(b) then return b end
    -- (v k1) k2 = v (k1 k2) for broadcasts k1, k2 of one layout (ir.lua lifts k1 k2 to one):
    -- one product per element instead of two (dy gamma inv_std in a BatchNorm's dx)
    if a.op == "mul" then
      for i = 1, 2 do
        local k = a.args[i]
        if G:liftable(k, b) then return G:mul(a.args[3 - i], G:mul(k, b)) end
      end
    end
  end,
}

ops.div = elementwise {
  arity = 2, cost = 4, c = { infix = "/", prec = 2 },
  eval = function(a, b) return a / b end,
  -- d(a/b) = (da - (a/b) db) / b
  jvp = function(G, n, ta, tb) return G:div(G:sub(ta, G:mul(n, tb)), n.args[2]) end,
  vjp = function(G, n, g)
    local ga = G:div(g, n.args[2])
    return ga, G:neg(G:mul(ga, n))
  end,
  fold = function(G, args)
    local a, b = args[1], args[2]
    if G:is_one(b) then return a end
    if G:is_zero(a) then return a end
  end,
}

ops.neg = elementwise {
  arity = 1, cost = 1, c = { prefix = "-" },
  eval = function(a) return -a end,
  jvp = function(G, n, t) return G:neg(t) end,
  vjp = function(G, n, g) return G:neg(g) end,
  fold = function(G, args) if args[1].op == "neg" then return args[1].args[1] end end,
}

ops.recip = elementwise {
  arity = 1, cost = 4, domain = "finite", c = { infix = "/", prec = 2, lhs = 1 },
  -- d(1/a) = -(1/a)^2 da
  jvp = function(G, n, t) return G:neg(G:mul(G:mul(t, n), n)) end,
  vjp = function(G, n, g) return G:neg(G:mul(G:mul(g, n), n)) end,
}

-- sqrt(max(a, 0)); NaN propagates. Differentiable where a > 0 (the seeds' domain hypothesis).
ops.sqrt_clamp = elementwise {
  arity = 1, cost = 8, domain = "positive",
  c = { helper = function(T, lit, f) return { "return v < " .. lit(0) .. " ? " .. lit(0) .. " : sqrt" .. f .. "(v);" } end },
  jvp = function(G, n, t) return G:div(G:mul(t, G:scalar(0.5, n.shape)), n) end,
  vjp = function(G, n, g) return G:div(G:mul(g, G:scalar(0.5, n.shape)), n) end,
}

-- max(a, 0) (NaN propagates) and its derivative, the step a > 0 (1 or 0; no derivative of its own).
ops.clamp0 = elementwise {
  arity = 1, cost = 2,
  c = { helper = function(T, lit) return { "return v < " .. lit(0) .. " ? " .. lit(0) .. " : v;" } end },
  jvp = function(G, n, t) return G:mul(t, G:step(n.args[1])) end,
  vjp = function(G, n, g) return G:mul(g, G:step(n.args[1])) end,
}
ops.step = elementwise {
  arity = 1, cost = 2, nondiff = true,
  c = { helper = function(T, lit) return { "return v > " .. lit(0) .. " ? " .. lit(1) .. " : " .. lit(0) .. ";" } end },
}

ops.exp = elementwise {
  arity = 1, cost = 16, c = { math = "exp" },
  jvp = function(G, n, t) return G:mul(t, n) end,
  vjp = function(G, n, g) return G:mul(g, n) end,
}

-- d log a = da / a (log(a < 0) is NaN, log(0) = -inf: gen/mathfn.lua)
ops.log = elementwise {
  arity = 1, cost = 16, c = { math = "log" },
  jvp = function(G, n, t) return G:div(t, n.args[1]) end,
  vjp = function(G, n, g) return G:div(g, n.args[1]) end,
}

-- d tanh = 1 - tanh^2
ops.tanh = elementwise {
  arity = 1, cost = 16, c = { math = "tanh" },
  jvp = function(G, n, t) return G:mul(t, G:sub(G:scalar(1, n.shape), G:mul(n, n))) end,
  vjp = function(G, n, g) return G:mul(g, G:sub(G:scalar(1, n.shape), G:mul(n, n))) end,
}

-- d erf(a) = 2/sqrt(pi) exp(-a^2); d erfc = -d erf
local function erf_slope(G, n)
  local a = n.args[1]
  return G:mul(G:scalar(TWO_OVER_SQRT_PI, a.shape), G:exp(G:neg(G:mul(a, a))))
end
ops.erf = elementwise {
  arity = 1, cost = 20, c = { math = "erf" },
  jvp = function(G, n, t) return G:mul(t, erf_slope(G, n)) end,
  vjp = function(G, n, g) return G:mul(g, erf_slope(G, n)) end,
}
ops.erfc = elementwise {
  arity = 1, cost = 20, c = { math = "erfc" },
  jvp = function(G, n, t) return G:neg(G:mul(t, erf_slope(G, n))) end,
  vjp = function(G, n, g) return G:neg(G:mul(g, erf_slope(G, n))) end,
}

-- GELU as one primitive so that value and derivative use PyTorch's formulas, rewritten to keep
-- relative accuracy in the negative tail (gen/mathfn.lua, gelu_*). attr.approx: "erf" | "tanh".
--   erf:  gelu = x Phi(x) = 0.5 x erfc(-x/sqrt2);  gelu' = Phi(x) + x exp(-x^2/2)/sqrt(2 pi)
--   tanh: gelu = 0.5 x (1 + tanh u), u = sqrt(2/pi)(x + 0.044715 x^3);
--         gelu' = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi)(1 + 3*0.044715 x^2)
local function gelu_fn(prefix) return function(attr) return prefix .. attr.approx end end
ops.gelu = elementwise {
  arity = 1, cost = 24, c = { math = gelu_fn("gelu_") },
  jvp = function(G, n, t) return G:mul(t, G:gelu_grad(n.args[1], n.attr.approx)) end,
  vjp = function(G, n, g) return G:mul(g, G:gelu_grad(n.args[1], n.attr.approx)) end,
}
-- dGELU/da. Second derivatives are not generated: kerngen emits first-order VJP/JVP only.
ops.gelu_grad = elementwise {
  arity = 1, cost = 28, nondiff = true, c = { math = gelu_fn("gelu_grad_") },
}

-- maximum(a, b): the larger, NaN if either is NaN (as torch.maximum). Subgradient (as PyTorch):
-- the gradient goes to the larger argument, and half to each when they are equal; so
-- minimum(a, b) = -maximum(-a, -b) (builder) shares ties the same way. max_weight is the share
-- of a: 1 if a > b, 1/2 if a == b, 0 if a < b (no derivative of its own).
ops.maximum = elementwise {
  arity = 2, cost = 3,
  eval = function(a, b) if a > b or a ~= a then return a end return b end,
  c = { helper = function() return { "return a > b || a != a ? a : b;" } end },
  jvp = function(G, n, ta, tb)
    local w = G:max_weight(n.args[1], n.args[2])
    return G:add(G:mul(ta, w), G:mul(tb, G:sub(G:scalar(1, n.shape), w)))
  end,
  vjp = function(G, n, g)
    local w = G:max_weight(n.args[1], n.args[2])
    return G:mul(g, w), G:mul(g, G:sub(G:scalar(1, n.shape), w))
  end,
}
ops.max_weight = elementwise {
  arity = 2, cost = 3, nondiff = true,
  c = { helper = function(T, lit) return { "return a > b ? " .. lit(1) .. " : a == b ? " .. lit(0.5) .. " : " .. lit(0) .. ";" } end },
}

-- |a|, with |-0| = +0 (v + 0 turns -0 into +0 and keeps NaN). Subgradient sign(a), sign(0) = 0
-- (as PyTorch).
ops.abs = elementwise {
  arity = 1, cost = 2,
  eval = function(a) if a < 0 then return -a end return a + 0.0 end,
  c = { helper = function(T, lit) return { "return v < 0 ? -v : v + " .. lit(0) .. ";" } end },
  jvp = function(G, n, t) return G:mul(t, G:sign(n.args[1])) end,
  vjp = function(G, n, g) return G:mul(g, G:sign(n.args[1])) end,
}
ops.sign = elementwise {
  arity = 1, cost = 2, nondiff = true,
  c = { helper = function(T, lit) return { "return v > 0 ? " .. lit(1) .. " : v < 0 ? " .. lit(-1) .. " : " .. lit(0) .. ";" } end },
}

-- 1 where a == b, else 0 (no derivative): picks the maxima of amax.
ops.equal = elementwise {
  arity = 2, cost = 2, nondiff = true,
  c = { helper = function(T, lit) return { "return a == b ? " .. lit(1) .. " : " .. lit(0) .. ";" } end },
}

-- The optimizers' scalar arithmetic (train pass, gen/optim.lua); no derivatives.
-- sqrt without the domain check of sqrt_clamp (an optimizer's second moment may be 0).
ops.sqrt = elementwise {
  arity = 1, cost = 8, nondiff = true,
  c = { helper = function(T, lit, f) return { "return sqrt" .. f .. "(v);" } end },
}
-- a^b for an integer b >= 0 (Adam's beta^step): binary powering, the same roundings on every
-- target (no libm pow).
ops.powi = elementwise {
  arity = 2, cost = 64, nondiff = true,
  c = { helper = function(T, lit)
    return { T .. " r = " .. lit(1) .. ", s = a;", "long n = (long)b;",
      "while (n > 0) {", "    if (n & 1)", "        r = r * s;", "    s = s * s;", "    n >>= 1;", "}", "return r;" }
  end },
}

-- Identity in value, zero derivative: marks quantities that cannot change the result
-- (the shift of a shifted two-pass variance).
ops.detach = {
  kind = "view", arity = 1, cost = 0, same_layout = true,
  shape = function(s) return s[1] end,
  read = function(n, idx) return idx end,
  jvp = function() return nil end,
  vjp = function() return nil end,
}

-- Reductions over attr.axes (dropped from the shape), always materialized by lower, which
-- fixes the order in which combine folds the terms (gen/loops.lua).
local function reduced_shape(s, attr)
  local drop, out = {}, {}
  for _, ax in ipairs(attr.axes) do
    if ax < 1 or ax > #s[1] then error("axis " .. ax .. " out of range") end
    drop[ax] = true
  end
  for i, e in ipairs(s[1]) do if not drop[i] then out[#out + 1] = e end end
  return out
end

-- The axes of a that a reduction keeps.
local function kept_axes(a, attr)
  local keep, drop = {}, {}
  for _, ax in ipairs(attr.axes) do drop[ax] = true end
  for i = 1, #a.shape do if not drop[i] then keep[#keep + 1] = i end end
  return keep
end

-- Factoring a sum (the sum fold below). A factor "constant along" the summed axes has one value
-- per output element: a constant, a bcast that repeats along those axes, or elementwise ops of
-- such factors. The analysis of one sum visits at most FACTOR_VISITS nodes (memo.left): past
-- that it answers "not constant", "one term" (no factoring, the same values); a sum at the end
-- of a long chain of elementwise ops would otherwise walk the chain, and every sum of a chain
-- of 1000 maxima its part of it.
local FACTOR_VISITS = 64
local function new_memo() return { left = FACTOR_VISITS } end

local function constant_along(n, axes, memo)
  if memo[n] ~= nil then return memo[n] end
  memo.left = memo.left - 1
  if memo.left < 0 then return false end
  local r = false
  if n.op == "const" then
    r = true
  elseif n.op == "bcast" then
    r = true
    for k, d in ipairs(n.attr.dims) do
      if axes[d] and n.args[1].shape[k] ~= 1 then r = false end
    end
  elseif ops[n.op].kind == "elementwise" then
    r = true
    for _, a in ipairs(n.args) do r = r and constant_along(a, axes, memo) end
  end
  memo[n] = r
  return r
end

-- The value of a factor constant along the summed axes, in the sum's (reduced) shape.
local function reduced(G, n, axes, shape)
  if n.op == "const" then return G:scalar(n.attr.value, shape) end
  if n.op == "bcast" then
    local a, keep, at, dims = n.args[1], {}, {}, {}
    for d = 1, #n.shape do if not axes[d] then keep[#keep + 1] = d; at[d] = #keep end end
    local ashape = {}
    for k, d in ipairs(n.attr.dims) do
      if not axes[d] then ashape[#ashape + 1] = a.shape[k]; dims[#dims + 1] = at[d] end
    end
    return G:bcast(G:reshape(a, ashape), shape, dims)
  end
  local args = {}
  for i, x in ipairs(n.args) do args[i] = reduced(G, x, axes, shape) end
  return G:make(n.op, args, n.attr)
end

-- The terms of a sum's argument: add/sub/neg down to products, each term
-- { sign = 1|-1, const = {factors constant along axes}, vary = {the other factors} }.
local function sum_terms(n, axes, memo)
  local terms = {}
  local function factors(m, t)
    if m.op == "mul" then factors(m.args[1], t); factors(m.args[2], t)
    elseif m.op == "neg" then t.sign = -t.sign; factors(m.args[1], t)
    elseif constant_along(m, axes, memo) then t.const[#t.const + 1] = m
    else t.vary[#t.vary + 1] = m end
  end
  local function walk(m, sign)
    memo.left = memo.left - 1
    if memo.left < 0 then
      terms[#terms + 1] = { sign = sign, const = {}, vary = { m }, node = m }
    elseif m.op == "add" then walk(m.args[1], sign); walk(m.args[2], sign)
    elseif m.op == "sub" then walk(m.args[1], sign); walk(m.args[2], -sign)
    elseif m.op == "neg" then walk(m.args[1], -sign)
    else
      local t = { sign = sign, const = {}, vary = {}, node = m }
      factors(m, t)
      terms[#terms + 1] = t
    end
  end
  walk(n, 1)
  return terms
end

local function product(G, list, first)
  local p = first
  for _, f in ipairs(list) do p = p and G:mul(p, f) or f end
  return p
end

-- sum(k * v) = k * sum(v) for k constant along the summed axes, and, when a sum's argument is a
-- sum of such products, sum(k1 v1 + k2 v2) = k1 sum(v1) + k2 sum(v2), if that lowers how many
-- sweeps the sums need (dx of a normalization: sum(dxhat * inv_std + 2 t * centered), t from a
-- sum of the same row, becomes inv_std sum(dxhat) + 2 t sum(centered), computed in the sweep
-- that computes t's sum, not in a sweep of its own after it). Numerically sound: a factor taken
-- out changes one rounding, not the relative error; a sum splits only into terms that are
-- products (each already rounded relative to itself), never a - b with a, b loaded or constant
-- (that would turn the centered sum(x - mean) into the cancelling sum(x) - n mean).
--
-- A product with factors constant along part of the summed axes only sums that part first:
-- sum(k v, S) = sum(k' sum(v, S'), S - S'), k constant along S' (k' its value in the inner
-- sum's shape). GroupNorm's backward sums dy xhat over (sample, h, w) for dgamma, with inv_std
-- per sample and group, and dy gamma xhat over (h, w, the group's channels), with gamma per
-- channel: both become sums of dy (x - mean) over (h, w) per sample and channel, one sum
-- (simplify shares sums of one argument over nested axes), weighted afterwards.
local function split_sum(G, attr, t)
  local inner
  for _, f in ipairs(t.vary) do
    local along = {}
    for _, ax in ipairs(attr.axes) do
      if constant_along(f, { [ax] = true }, new_memo()) then along[#along + 1] = ax end
    end
    if #along > 0 and #along < #attr.axes and (not inner or #along > #inner) then inner = along end
  end
  if not inner then return nil end
  local axes, memo, ks, vary = {}, new_memo(), {}, {}
  for _, ax in ipairs(inner) do axes[ax] = true end
  for _, f in ipairs(t.vary) do
    if constant_along(f, axes, memo) then ks[#ks + 1] = f else vary[#vary + 1] = f end
  end
  if #vary == 0 then return nil end
  local shape = G:shape_of("sum", { t.node }, { axes = inner })
  for i, k in ipairs(ks) do ks[i] = reduced(G, k, axes, shape) end
  local v = G:sum_nested(product(G, vary), inner, attr.axes, product(G, ks))
  return t.sign < 0 and G:neg(v) or v
end

local function factor_sum(G, arg, attr)
  local axes, memo = {}, new_memo()
  for _, ax in ipairs(attr.axes) do axes[ax] = true end
  local terms = sum_terms(arg, axes, memo)
  local sweeps, pulled = 0, false
  for _, t in ipairs(terms) do
    if #t.vary == 0 or (#terms > 1 and t.node.op ~= "mul") then return nil end
    if #t.const > 0 then pulled = true end
    for _, f in ipairs(t.vary) do sweeps = math.max(sweeps, f.sweeps) end
  end
  if not pulled and #terms == 1 then return split_sum(G, attr, terms[1]) end
  if not pulled or (#terms > 1 and sweeps >= arg.sweeps) then return nil end
  local shape = G:shape_of("sum", { arg }, attr)
  local r
  for _, t in ipairs(terms) do
    local ks = {}
    for i, k in ipairs(t.const) do ks[i] = reduced(G, k, axes, shape) end
    local v = G:sum(product(G, t.vary), attr.axes)
    if #ks > 0 then v = G:mul(product(G, ks), v) end
    if not r then r = t.sign < 0 and G:neg(v) or v
    elseif t.sign < 0 then r = G:sub(r, v) else r = G:add(r, v) end
  end
  return r
end

-- Is n = v - mean(v), the mean over exactly axes (builder's g.mean: sum * (1/count), kept
-- dims broadcast back)? Its sum over those axes is 0 in exact arithmetic; computed, only the
-- rounding of the mean (a normalization's sum(centered), once the fold has split it off).
local function centered(n, axes)
  if n.op ~= "sub" or n.args[2].op ~= "bcast" then return false end
  local v, b = n.args[1], n.args[2]
  local m = b.args[1]
  if m.op ~= "mul" or #b.attr.dims ~= #v.shape then return false end
  for k, d in ipairs(b.attr.dims) do if d ~= k then return false end end
  local r, c = m.args[1], m.args[2]
  if r.op == "const" then r, c = c, r end
  if c.op ~= "const" or r.op ~= "reshape" or r.args[1].op ~= "sum" or r.args[1].args[1] ~= v then return false end
  local count, s = 1, r.args[1]
  if #s.attr.axes ~= #axes then return false end
  for i, ax in ipairs(s.attr.axes) do
    if axes[i] ~= ax then return false end
    count = count * v.shape[ax]
  end
  return c.attr.value == 1 / count
end

ops.sum = {
  kind = "reduce", arity = 1, cost = 1, combine = "add",
  shape = reduced_shape,
  jvp = function(G, n, t) return G:sum(t, n.attr.axes) end,
  vjp = function(G, n, g)
    local a = n.args[1]
    return G:bcast(g, a.shape, kept_axes(a, n.attr))
  end,
  fold = function(G, args, attr)
    if #attr.axes == 0 then return args[1] end
    if G:is_zero(args[1]) or centered(args[1], attr.axes) then return G:scalar(0, G:shape_of("sum", args, attr)) end
    return factor_sum(G, args[1], attr)
  end,
}

-- amax: the largest element over attr.axes, NaN if any is NaN (as torch.amax). Subgradient (as
-- PyTorch): the gradient is shared evenly by the elements equal to the maximum; the tangent is
-- their mean tangent (the adjoint of that).
local function amax_share(G, n)
  local a = n.args[1]
  local keep = kept_axes(a, n.attr)
  local mask = G:equal(a, G:bcast(n, a.shape, keep))
  return mask, G:sum(mask, n.attr.axes), keep
end
ops.amax = {
  kind = "reduce", arity = 1, cost = 1, combine = "maximum",
  shape = reduced_shape,
  jvp = function(G, n, t)
    local mask, count = amax_share(G, n)
    return G:div(G:sum(G:mul(t, mask), n.attr.axes), count)
  end,
  vjp = function(G, n, g)
    local mask, count, keep = amax_share(G, n)
    return G:mul(G:bcast(G:div(g, count), n.args[1].shape, keep), mask)
  end,
  fold = function(G, args, attr) if #attr.axes == 0 then return args[1] end end,
}

-- bcast: argument axis k becomes output axis attr.dims[k]; an argument extent of 1 repeats.
ops.bcast = {
  kind = "view", arity = 1, cost = 0,
  shape = function(s, attr)
    local a = s[1]
    if #attr.dims ~= #a then error("bcast needs one output axis per argument axis") end
    for k, d in ipairs(attr.dims) do
      local e = attr.shape[d]
      if not e or (a[k] ~= e and a[k] ~= 1) then error("cannot broadcast axis " .. k) end
      if k > 1 and d <= attr.dims[k - 1] then error("bcast axes must increase") end
    end
    return attr.shape
  end,
  read = function(n, idx, aff)
    local a, r = n.args[1], {}
    for k, d in ipairs(n.attr.dims) do r[k] = (a.shape[k] == 1) and aff.const(0) or idx[d] end
    return r
  end,
  jvp = function(G, n, t) return G:bcast(t, n.attr.shape, n.attr.dims) end,
  vjp = function(G, n, g)
    local a, mapped, axes = n.args[1], {}, {}
    for k, d in ipairs(n.attr.dims) do
      mapped[d] = true
      if a.shape[k] == 1 and n.shape[d] ~= 1 then axes[#axes + 1] = d end
    end
    for d = 1, #n.shape do if not mapped[d] then axes[#axes + 1] = d end end
    table.sort(axes)
    return G:reshape(G:sum(g, axes), a.shape)
  end,
  fold = function(G, args, attr)
    if args[1].op == "const" then return G:scalar(args[1].attr.value, attr.shape) end
  end,
}

-- reshape keeps the row-major element order. lower reads it affinely when every argument axis
-- is a run of output axes (a split); otherwise its argument must live in memory.
ops.reshape = {
  kind = "view", arity = 1, cost = 0, same_layout = true,
  shape = function(s, attr)
    if util.count(s[1]) ~= util.count(attr.shape) then error("reshape changes the element count") end
    return attr.shape
  end,
  read = function(n, idx, aff)
    local a, r, k = n.args[1], {}, 1
    for j, e in ipairs(a.shape) do
      local run, prod = aff.const(0), 1
      while prod < e or (e == 1 and prod == 1 and k <= #n.shape and n.shape[k] == 1) do
        if k > #n.shape then return nil end
        run = aff.add(aff.scale(run, n.shape[k]), idx[k])
        prod = prod * n.shape[k]
        k = k + 1
        if e == 1 then break end
      end
      if prod ~= e then return nil end -- an output axis spans several argument axes (a merge)
      r[j] = run
    end
    while k <= #n.shape do -- trailing extent-1 axes
      if n.shape[k] ~= 1 then return nil end
      k = k + 1
    end
    return r
  end,
  jvp = function(G, n, t) return G:reshape(t, n.attr.shape) end,
  vjp = function(G, n, g) return G:reshape(g, n.args[1].shape) end,
  fold = function(G, args, attr)
    local a = args[1]
    if a.op == "const" then return G:scalar(a.attr.value, attr.shape) end
    if a.op == "reshape" then return G:reshape(a.args[1], attr.shape) end
  end,
}

-- pick0: element 0 along attr.axis (the axis is dropped). unpick0 is its adjoint: the value at
-- index 0 along a new axis of extent attr.extent, zero elsewhere.
ops.pick0 = {
  kind = "view", arity = 1, cost = 0,
  shape = function(s, attr)
    local out = {}
    for i, e in ipairs(s[1]) do if i ~= attr.axis then out[#out + 1] = e end end
    return out
  end,
  read = function(n, idx, aff)
    local r = {}
    for i = 1, #idx + 1 do
      if i < n.attr.axis then r[i] = idx[i] elseif i == n.attr.axis then r[i] = aff.const(0) else r[i] = idx[i - 1] end
    end
    return r
  end,
  jvp = function(G, n, t) return G:pick0(t, n.attr.axis) end,
  vjp = function(G, n, g) return G:unpick0(g, n.attr.axis, n.args[1].shape[n.attr.axis]) end,
}
ops.unpick0 = {
  kind = "view", arity = 1, cost = 0,
  shape = function(s, attr)
    local out = {}
    for i, e in ipairs(s[1]) do out[#out + 1] = e end
    table.insert(out, attr.axis, attr.extent)
    return out
  end,
  -- lower turns this into (idx[axis] == 0 ? value : 0)
  read = function(n, idx)
    local r = {}
    for i, v in ipairs(idx) do if i ~= n.attr.axis then r[#r + 1] = v end end
    return r, idx[n.attr.axis]
  end,
  jvp = function(G, n, t) return G:unpick0(t, n.attr.axis, n.attr.extent) end,
  vjp = function(G, n, g) return G:pick0(g, n.attr.axis) end,
}

-- element attr.index of a vector (rank 1 -> rank 0): a hyperparameter of the train pass
ops.element = {
  kind = "view", arity = 1, cost = 0, nondiff = true,
  shape = function() return {} end,
  read = function(n, idx, aff) return { aff.const(n.attr.index) } end,
}

ops.input = { kind = "leaf", arity = 0, cost = 0, nondiff = true, shape = function(_, attr) return attr.shape end }
ops.const = { kind = "leaf", arity = 0, cost = 0, nondiff = true, shape = function(_, attr) return attr.shape end }
-- A baked input (kerngen --const, kg_request.consts; gen/pipeline.lua makes it): attr.name, the
-- input's name, and attr.values, its elements in row-major order. No argument: lower reads it
-- from a static const table that emit_c prints once per file. A constant to the derivative
-- passes (no gradient, no tangent). Identified by its name: a request bakes an input once.
ops.table = { kind = "leaf", arity = 0, cost = 0, nondiff = true, shape = function(_, attr) return attr.shape end,
  key = function(attr) return util.serialize({ name = attr.name, shape = attr.shape }) end }

-- Load-time check: every op is complete.
for name, op in pairs(ops) do
  op.name = name
  assert(op.arity and op.cost and op.shape, "op " .. name .. ": arity, cost and shape required")
  if op.kind == "elementwise" then assert(op.c, "op " .. name .. ": C form required") end
  if op.c and op.c.math then
    for _, approx in ipairs({ "erf", "tanh" }) do -- the attrs a math op can have (gelu's approx)
      local fn = type(op.c.math) == "function" and op.c.math({ approx = approx }) or op.c.math
      assert(mathfn.has(fn), "op " .. name .. ": unknown math function " .. tostring(fn))
    end
  end
  if op.kind == "view" then assert(op.read, "op " .. name .. ": read rule required") end
  if not op.nondiff then assert(op.jvp and op.vjp, "op " .. name .. ": jvp and vjp rules required") end
end

return ops
