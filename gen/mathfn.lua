-- mathfn: the transcendental functions kerngen writes into kernel files instead of calling libm:
-- exp, erf, erfc, tanh and their building blocks, for f32 and f64.
--
-- Takes a function name and a dtype; gives the C text of a `static inline` function
-- kg_<name>_<dtype> and the names of the functions it calls; mathfn.emit writes a set of them,
-- each once, callees first, in a fixed order. Polynomial coefficients and constants come from
-- gen/mathfn_coef.lua, made by gen/mathfn_fit.py.
--
-- Guarantees of the emitted C: only + - * /, comparisons feeding selects (?:) and exact bit
-- manipulation (2^k is assembled in an unsigned int or unsigned long long through a union); no
-- libm and no float-to-integer conversion. Every rounding is written out, so with
-- -ffp-contract=off (no FMA) gcc, clang, tcc and arm-none-eabi-gcc give the same bits. f32 code
-- uses float only (the Cortex-M4F has no double unit): where a step needs more precision it
-- splits exactly (Veltkamp's split, Dekker's product). No branches: a function computes its
-- cases and selects, so gcc and clang vectorize the loops that call them. NaN propagates.
-- Accuracy, measured by tests/test_mathfn.c against long double: README, "Math functions".

local coef = require("mathfn_coef")
local util = require("util")

local mathfn = {}

-- Per dtype: the C types and the format facts 2^k needs. magic = 1.5 * 2^mant: (x + magic) -
-- magic rounds x to an integer k, and the bits of x + magic hold k + magic_bits. split =
-- 2^ceil(mant/2) + 1, Veltkamp's constant. exp_lo, exp_hi: clamps of exp's argument; exp(exp_lo)
-- rounds to 0 and exp(exp_hi) to inf, and every k in between keeps the two factors of 2^k below
-- normal numbers.
local FMT = {
  f32 = { T = "float", U = "unsigned int", usuf = "u", mant = 23, bias = 127, magic = 12582912.0,
          magic_bits = 0x4B400000, split = 4097.0, exp_lo = -104.0, exp_hi = 89.0,
          erf_amax = 4.0, tanh_max = 10.0, gelu_umax = 14.75 },
  f64 = { T = "double", U = "unsigned long long", usuf = "ull", mant = 52, bias = 1023,
          magic = 6755399441055744.0, magic_bits = 0x4338000000000000, split = 134217729.0,
          exp_lo = -746.0, exp_hi = 710.0, erf_amax = 6.0, tanh_max = 20.0, gelu_umax = 39.0 },
}
-- erf_amax: erf rounds to 1 above it (f32 3.92, f64 5.93); tanh_max: tanh rounds to 1;
-- gelu_umax: beyond it x Phi(-x) and x phi(x) are below half the smallest subnormal.

local function env_of(dtype)
  local F, C = FMT[dtype], coef[dtype].const
  local function lit(x) return util.c_literal(x, dtype) end
  return {
    T = F.T, U = F.U, usuf = F.usuf, mant = tostring(F.mant),
    -- bits(x + magic) - mbase = k + 2 bias + 2 =: e > 0; 2^k = 2^(e/2 - bias - 1) 2^(e - e/2 - bias - 1)
    mbase = string.format("0x%X%s", F.magic_bits - (2 * F.bias + 2), F.usuf),
    magic = lit(F.magic), log2e = lit(C.log2e), ln2_hi = lit(C.ln2_hi), ln2_lo = lit(C.ln2_lo),
    split = lit(F.split), exp_lo = lit(F.exp_lo), exp_hi = lit(F.exp_hi),
    zero = lit(0), half = lit(0.5), one = lit(1), two = lit(2),
    erfc_amax = lit(coef.erfc_amax[dtype]), erf_amax = lit(F.erf_amax), erf_small = lit(coef.erf_small),
    tanh_small = lit(coef.tanh_small), tanh_max = lit(F.tanh_max),
    sqrt_half = lit(C.sqrt_half), inv_sqrt_2pi = lit(C.inv_sqrt_2pi), gelu_umax = lit(F.gelu_umax),
  }
end

-- A code builder: o("text with {T} and {one}") appends a filled line; an unknown name is an error.
local function builder(dtype)
  local env, lines = env_of(dtype), {}
  local o = {}
  setmetatable(o, { __call = function(_, s)
    lines[#lines + 1] = (s:gsub("{([%w_]+)}", function(k)
      local v = env[k]
      if v == nil then error("mathfn: no value for {" .. k .. "}") end
      return v
    end))
  end })
  o.dtype, o.env, o.lines = dtype, env, lines
  function o.lit(x) return util.c_literal(x, dtype) end
  return o
end

-- Horner's rule as statements `p = p * x + c;` (the C rounding of each step, no FMA).
-- regions: the fitted pieces {hi, center, coef}; with several, the centre and each coefficient
-- are selected by a chain of ?: on w. A centred polynomial is evaluated in uvar = w - center.
local function horner(o, p, w, regions, uvar)
  local function sel(get)
    local s = o.lit(get(regions[#regions]))
    for j = #regions - 1, 1, -1 do
      s = w .. " < " .. o.lit(regions[j].hi) .. " ? " .. o.lit(get(regions[j])) .. " : " .. s
    end
    return #regions > 1 and ("(" .. s .. ")") or s
  end
  local x = w
  if #regions > 1 or regions[1].center ~= 0 then
    o(uvar .. " = " .. w .. " - " .. sel(function(r) return r.center end) .. ";")
    x = uvar
  end
  local n = #regions[1].coef
  o(p .. " = " .. sel(function(r) return r.coef[n] end) .. ";")
  for i = n - 1, 1, -1 do o(p .. " = " .. p .. " * " .. x .. " + " .. sel(function(r) return r.coef[i] end) .. ";") end
end

-- exp's reduction and polynomial for the argument x + add1 + add2 (add1, add2: optional, small
-- next to x; kx: x + add1 rounded, or x): sets k = round(kx / ln2), r, q = exp(r) - 1 and the
-- two factors s1.f * s2.f = 2^k (both normal for kx in [exp_lo, exp_hi]). Declarations:
-- exp_decls and T k, r, q.
local function exp_core(o, kx, x, add1, add2)
  o("kb.f = " .. kx .. " * {log2e} + {magic};")
  o("k = kb.f - {magic};")
  -- Cody and Waite: k ln2_hi and x - k ln2_hi are exact; rounding starts at the size of r
  local head = "(" .. x .. " - k * {ln2_hi})"
  if add1 then head = "(" .. head .. " + " .. add1 .. ")" end
  if add2 then
    o("r = " .. head .. " + (" .. add2 .. " - k * {ln2_lo});")
  else
    o("r = " .. head .. " - k * {ln2_lo};")
  end
  horner(o, "q", "r", coef[o.dtype].exp.regions)
  o("q = r + r * r * q;")
  o("e = kb.u - {mbase};")
  o("s1.u = ((e >> 1) - 1{usuf}) << {mant};")
  o("s2.u = ((e - (e >> 1)) - 1{usuf}) << {mant};")
end

local function exp_decls(o)
  o("union { {T} f; {U} u; } kb, s1, s2;")
  o("{U} e;")
end

-- x^2 = hi + lo exactly: Veltkamp's split x = xh + xl into half-width parts, Dekker's product.
local function exact_square(o, x)
  o("c = " .. x .. " * {split};")
  o("xh = c - (c - " .. x .. ");")
  o("xl = " .. x .. " - xh;")
  o("hi = " .. x .. " * " .. x .. ";")
  o("lo = ((xh * xh - hi) + xh * xl * {two}) + xl * xl;")
end

---------------------------------------------------------------------------------------------
-- The functions: args (the C parameter list), deps (functions called), body(o) (lines).

local fns = {}

-- exp(v) = 2^k exp(r), |r| <= ln2/2, exp(r) = 1 + r + r^2 P(r)
fns.exp = {
  args = "{T} v", deps = {},
  body = function(o)
    exp_decls(o)
    o("{T} x, k, r, q;")
    o("/* clamped: exp still overflows to inf and underflows to 0 where it should */")
    o("x = v < {exp_lo} ? {exp_lo} : v;")
    o("x = x > {exp_hi} ? {exp_hi} : x;")
    exp_core(o, "x", "x")
    o("/* 2^k in two factors: a subnormal result is rounded once */")
    o("return ({one} + q) * s1.f * s2.f;")
  end,
}

-- exp(-m x^2), x >= 0, m = 1 or 1/2 (exact scalings): x^2 is used exactly (hi + lo), so the
-- result keeps its relative accuracy where x^2 is large.
fns.expmsq = {
  args = "{T} x, {T} m", deps = {},
  body = function(o)
    exp_decls(o)
    o("{T} c, xh, xl, hi, lo, k, r, q;")
    exact_square(o, "x")
    o("hi = -m * hi;")
    o("lo = -m * lo;")
    o("hi = hi < {exp_lo} ? {exp_lo} : hi;")
    exp_core(o, "hi", "hi", nil, "lo")
    o("return ({one} + q) * s1.f * s2.f;")
  end,
}

-- g t exp(-m x^2 + L(w)) with t = 1/(1 + a), w = a/(1 + a), L(w) = log(erfcx(a) (1 + a)):
-- g erfc(a) when m x^2 = a^2 (erfcx(a) = exp(a^2) erfc(a)); 0 <= a <= about erfc_amax, m = 1 or
-- 1/2. One exp of the whole exponent: -m x^2 = hi + lo exactly, L is small (|L| < 0.54) and
-- joins the reduced argument, t is kept as t + tl (the roundings of 1 + a and of the division
-- recovered exactly), and g multiplies before 2^k (no intermediate underflow), so the result
-- is rounded essentially once, at the end.
fns.erfc_tail = {
  args = "{T} a, {T} x, {T} m, {T} g", deps = {},
  body = function(o)
    exp_decls(o)
    o("{T} c, xh, xl, hi, lo, d, de, t, dh, dl, th, tm, rho, tl, w, u, L, k, r, q;")
    exact_square(o, "x")
    o("hi = -m * hi;")
    o("lo = -m * lo;")
    o("/* 1/(1 + a) = t + tl: d + de = 1 + a exactly, rho = 1 - d t exactly (Dekker) */")
    o("d = {one} + a;")
    o("de = a - (d - {one});")
    o("t = {one} / d;")
    o("c = d * {split};")
    o("dh = c - (c - d);")
    o("dl = d - dh;")
    o("c = t * {split};")
    o("th = c - (c - t);")
    o("tm = t - th;")
    o("rho = ((({one} - dh * th) - dh * tm) - dl * th) - dl * tm;")
    o("tl = t * (rho - de * t);")
    o("w = {one} - t;")
    horner(o, "L", "w", coef[o.dtype].erfc.regions, "u")
    o("c = hi + L;")
    exp_core(o, "c", "hi", "L", "lo")
    o("return g * (t + (tl + t * q)) * s1.f * s2.f;")
  end,
}

-- erfc(v) = erfc_tail(|v|) for v >= 0, 2 - erfc_tail(|v|) for v < 0
fns.erfc = {
  args = "{T} v", deps = { "erfc_tail" },
  body = function(o)
    o("{T} a, y;")
    o("a = v < {zero} ? -v : v;")
    o("a = a > {erfc_amax} ? {erfc_amax} : a; /* erfc is 0 beyond */")
    o("y = {kg_erfc_tail}(a, a, {one}, {one});")
    o("return v < {zero} ? {two} - y : y;")
  end,
}

-- erf(v) = v + v P(v^2 - c) for |v| < erf_small, else sign(v) (1 - erfc(|v|))
fns.erf = {
  args = "{T} v", deps = { "erfc_tail" },
  body = function(o)
    o("{T} a, s, u, p, b, y;")
    o("a = v < {zero} ? -v : v;")
    o("s = v * v;")
    horner(o, "p", "s", coef[o.dtype].erf.regions, "u")
    o("p = v + v * p;")
    o("b = a > {erf_amax} ? {erf_amax} : a; /* erf is 1 beyond */")
    o("y = {one} - {kg_erfc_tail}(b, b, {one}, {one});")
    o("y = v < {zero} ? -y : y;")
    o("return a < {erf_small} ? p : y;")
  end,
}

-- tanh(v) = v + v^3 P(v^2) for |v| < tanh_small, else sign(v) (1 - 2 / (exp(2|v|) + 1))
fns.tanh = {
  args = "{T} v", deps = { "exp" },
  body = function(o)
    o("{T} a, s, p, b, y;")
    o("a = v < {zero} ? -v : v;")
    o("s = v * v;")
    horner(o, "p", "s", coef[o.dtype].tanh.regions)
    o("p = v == {zero} ? v : v + v * s * p; /* keeps the sign of -0 */")
    o("b = a > {tanh_max} ? {tanh_max} : a; /* tanh is 1 beyond */")
    o("y = {one} - {two} / ({kg_exp}(b * {two}) + {one});")
    o("y = v < {zero} ? -y : y;")
    o("return a < {tanh_small} ? p : y;")
  end,
}

-- GELU, PyTorch's formulas in forms that keep relative accuracy in the negative tail.
-- erf: gelu = v Phi(v), gelu' = Phi(v) + v phi(v), with Phi(-u) = erfc(u/sqrt2)/2 from
-- erfc_tail, whose exponent -u^2/2 is taken from u exactly (not from the rounded u/sqrt2:
-- GELU's condition number there is u^2), and phi(u) = exp(-u^2/2)/sqrt(2 pi).
fns.gelu_erf = {
  args = "{T} v", deps = { "erfc_tail" },
  body = function(o)
    o("{T} u, y;")
    o("u = v < {zero} ? -v : v;")
    o("u = u > {gelu_umax} ? {gelu_umax} : u;")
    o("/* v < 0: v Phi(v) = (-u/2) erfc(u/sqrt2) (0 at -inf); else v (1 - Phi(-u)) */")
    o("y = {kg_erfc_tail}(u * {sqrt_half}, u, {half}, {half} * (v < {zero} ? -u : {one}));")
    o("return v < {zero} ? y : v * ({one} - y);")
  end,
}
fns.gelu_grad_erf = {
  args = "{T} v", deps = { "erfc_tail", "expmsq" },
  body = function(o)
    o("{T} u, h;")
    o("u = v < {zero} ? -v : v;")
    o("u = u > {gelu_umax} ? {gelu_umax} : u;")
    o("h = {kg_erfc_tail}(u * {sqrt_half}, u, {half}, {half}); /* Phi(-u) */")
    o("return (v < {zero} ? h : {one} - h) + v * ({kg_expmsq}(u, {half}) * {inv_sqrt_2pi});")
  end,
}

-- tanh: with g = sqrt(2/pi)(v + 0.044715 v^3) and s = 1/(1 + exp(-2g)) (1 + tanh g = 2s), s and
-- 1 - s are formed without cancellation for either sign of g:
--   gelu = v s;  gelu' = s + 2 v s (1 - s) sqrt(2/pi)(1 + 3 * 0.044715 v^2)
local SQRT_2_OVER_PI, KAPPA = 0.79788456080286535588, 0.044715
local function tanh_s(o)
  o("{T} g, e, s;")
  o("g = " .. o.lit(SQRT_2_OVER_PI) .. " * (v + " .. o.lit(KAPPA) .. " * v * v * v);")
  o("e = {kg_exp}(" .. o.lit(-2) .. " * (g < {zero} ? -g : g));")
  o("s = g < {zero} ? e / ({one} + e) : {one} / ({one} + e);")
end
fns.gelu_tanh = {
  args = "{T} v", deps = { "exp" },
  body = function(o)
    tanh_s(o)
    o("return v * s;")
  end,
}
fns.gelu_grad_tanh = {
  args = "{T} v", deps = { "exp" },
  body = function(o)
    tanh_s(o)
    o("return s + {two} * v * s * (g < {zero} ? {one} / ({one} + e) : e / ({one} + e)) * "
      .. o.lit(SQRT_2_OVER_PI) .. " * ({one} + " .. o.lit(3 * KAPPA) .. " * v * v);")
  end,
}

---------------------------------------------------------------------------------------------

for name, f in pairs(fns) do
  assert(f.args and f.deps and f.body, "mathfn " .. name .. ": args, deps and body required")
  for _, d in ipairs(f.deps) do assert(fns[d], "mathfn " .. name .. ": unknown dependency " .. d) end
end

function mathfn.has(name) return fns[name] ~= nil end

function mathfn.cname(name, dtype) return "kg_" .. name .. "_" .. dtype end

-- C text of the functions named in `wanted` (a set) and of those they call, for one dtype:
-- callees before callers, otherwise in name order, each once.
function mathfn.emit(wanted, dtype)
  local order, seen = {}, {}
  local function visit(name)
    if seen[name] then return end
    seen[name] = true
    local f = fns[name] or error("mathfn: unknown function " .. tostring(name))
    local deps = { table.unpack(f.deps) }
    table.sort(deps)
    for _, d in ipairs(deps) do visit(d) end
    order[#order + 1] = name
  end
  local names = {}
  for name in pairs(wanted) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do visit(name) end
  local out = {}
  for _, name in ipairs(order) do
    local o = builder(dtype)
    for n in pairs(fns) do o.env["kg_" .. n] = mathfn.cname(n, dtype) end
    o(fns[name].args)
    local args = table.remove(o.lines, 1)
    fns[name].body(o)
    out[#out + 1] = "static inline " .. o.env.T .. " " .. mathfn.cname(name, dtype) .. "(" .. args .. ")"
    out[#out + 1] = "{"
    for _, l in ipairs(o.lines) do out[#out + 1] = "    " .. l end
    out[#out + 1] = "}"
    out[#out + 1] = ""
  end
  return table.concat(out, "\n") .. (#out > 0 and "\n" or "")
end

return mathfn
