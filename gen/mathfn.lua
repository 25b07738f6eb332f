-- mathfn: the transcendental functions kerngen writes into kernel files instead of calling libm:
-- exp, log, erf, erfc, tanh, GELU's forms (value and derivative, erf and tanh) and their
-- building blocks, for f32 and f64.
--
-- Takes a function name and a dtype; gives the C text of a function kg_<name>_<dtype> (static
-- inline; gcc and clang always inline it) and the names of the functions it calls; mathfn.emit
-- writes a set of them, each once, callees first, in a fixed order. Polynomial coefficients and
-- constants come from gen/mathfn_coef.lua, made by gen/mathfn_fit.py.
--
-- Guarantees of the emitted C: only + - * /, comparisons feeding selects (?:) and exact bit
-- manipulation (2^k is assembled, log's exponent and mantissa read, and with the fma option
-- GELU's |v| taken and clamped, in an unsigned int or unsigned long long through a union); no
-- libm and no float-to-integer conversion. Every rounding is written out, so with
-- -ffp-contract=off (no FMA) gcc, clang, tcc and arm-none-eabi-gcc give the same bits. f32 code
-- uses float only (the Cortex-M4F has no double unit): where a step needs more precision it
-- uses exact transformations (Veltkamp's split, Dekker's product, Knuth's 2Sum). Under the fma
-- option (o.fused) C99 fma, exactly specified too, evaluates polynomials and some of those steps. No branches: a
-- function computes its cases and selects, so gcc and clang vectorize the loops that call them.
-- NaN propagates. Accuracy, measured by tests/test_mathfn.c: README, "Math functions".

local coef = require("mathfn_coef")
local util = require("util")

local mathfn = {}

-- C99's fused multiply-add per dtype (the fma option; emit_c uses the same names)
mathfn.FMA = { f32 = "fmaf", f64 = "fma" }

-- Per dtype: the C types and the format facts 2^k needs. magic = 1.5 * 2^mant: (x + magic) -
-- magic rounds x to an integer k, and the bits of x + magic are k + magic_bits. split =
-- 2^ceil(mant/2) + 1, Veltkamp's constant. exp_lo, exp_hi: clamps of exp's argument; exp(exp_lo)
-- rounds to 0 and exp(exp_hi) to inf, and every k in between keeps the two factors of 2^k
-- normal. tail_shift: functions whose k is in [-(bias + tail_shift) + 1, 0] apply 2^k as
-- 2^(k + tail_shift), a normal number, times the constant 2^-tail_shift.
local FMT = {
  f32 = { T = "float", U = "unsigned int", usuf = "u", mant = 23, bits_exp = 8, bias = 127, magic = 12582912.0,
          magic_bits = 0x4B400000, split = 4097.0, exp_lo = -104.0, exp_hi = 89.0, tail_shift = 64,
          erf_amax = 4.0,
          one_bits = 0x3F800000, sqrt_half_bits = 0x3F3504F3, inf_bits = 0x7F800000, nan_bits = 0x7FC00000 },
  f64 = { T = "double", U = "unsigned long long", usuf = "ull", mant = 52, bits_exp = 11, bias = 1023,
          magic = 6755399441055744.0, magic_bits = 0x4338000000000000, split = 134217729.0,
          exp_lo = -746.0, exp_hi = 710.0, tail_shift = 128,
          erf_amax = 6.0,
          one_bits = 0x3FF0000000000000, sqrt_half_bits = 0x3FE6A09E667F3BCD, inf_bits = 0x7FF0000000000000,
          nan_bits = 0x7FF8000000000000 },
}
-- erf_amax: erf rounds to 1 above it (f32 3.92, f64 5.93).
-- log: one_bits and sqrt_half_bits are the bits of 1 and of sqrt(1/2) rounded down (the
-- reduction's boundary); inf_bits and nan_bits those of +inf and of the quiet NaN it returns.

-- the bits of x, a positive normal number exact in the dtype's format F, as an integer
local function float_bits(x, F)
  local e = 0
  while x >= 2.0 ^ (e + 1) do e = e + 1 end
  while x < 2.0 ^ e do e = e - 1 end
  local m = (x / 2.0 ^ e - 1) * 2.0 ^ F.mant
  assert(m == math.floor(m), "mathfn: not exact in the format")
  return ((e + F.bias) << F.mant) + math.tointeger(m)
end

local function env_of(dtype)
  local F, C = FMT[dtype], coef[dtype].const
  local function lit(x) return util.c_literal(x, dtype) end
  local function hex(b) return util.format("0x%X%s", b, F.usuf) end
  return {
    T = F.T, U = F.U, usuf = F.usuf, mant = tostring(F.mant),
    -- bits(x + magic) - mbase = k + 2 bias + 2 =: e > 0; 2^k = 2^(e/2 - bias - 1) 2^(e - e/2 - bias - 1)
    mbase = util.format("0x%X%s", F.magic_bits - (2 * F.bias + 2), F.usuf),
    -- bits(x + magic) - tbase = k + tail_shift + bias, the exponent field of 2^(k + tail_shift)
    tbase = util.format("0x%X%s", F.magic_bits - (F.bias + F.tail_shift), F.usuf),
    tail_unshift = lit(2.0 ^ -F.tail_shift),
    magic = lit(F.magic), log2e = lit(C.log2e), ln2_hi = lit(C.ln2_hi), ln2_lo = lit(C.ln2_lo),
    split = lit(F.split), exp_lo = lit(F.exp_lo), exp_hi = lit(F.exp_hi),
    zero = lit(0), half = lit(0.5), one = lit(1), two = lit(2),
    erfc_amax = lit(coef.erfc_amax[dtype]), erf_amax = lit(F.erf_amax), erf_small = lit(coef.erf_small),
    tanh_small = lit(coef.tanh_small),
    inv_sqrt_2pi = lit(C.inv_sqrt_2pi), gelu_umax = lit(coef.gelu_umax[dtype]),
    neg_gelu_lmid = lit(-coef[dtype].gelu_lmid),
    -- log: the smallest normal number; subnormals are scaled by 2^(mant + 2) (exact)
    norm_min = lit(2.0 ^ (1 - F.bias)), log_sub_scale = lit(2.0 ^ (F.mant + 2)), log_sub_n = lit(F.mant + 2),
    -- bits(x) + log_off: the exponent field counts from sqrt(1/2) instead of 1
    log_off = hex(F.one_bits - F.sqrt_half_bits), sqrt_half_bits = hex(F.sqrt_half_bits),
    mant_mask = hex((1 << F.mant) - 1),
    -- (biased exponent) + log_kbase = the bits of magic + (exponent - bias)
    log_kbase = hex(F.magic_bits - F.bias),
    inf_bits = hex(F.inf_bits), nan_bits = hex(F.nan_bits),
    -- GELU's fma form: |v| and its clamp on the bits (non-negative numbers order as integers)
    abs_mask = hex((1 << (F.mant + F.bits_exp)) - 1), gelu_umax_bits = hex(float_bits(coef.gelu_umax[dtype], F)),
  }
end

-- A code builder: o("text with {T} and {one}") appends a filled line; an unknown name is an error.
local function builder(dtype, fma)
  local env, lines = env_of(dtype), {}
  local o = {}
  setmetatable(o, { __call = function(_, s)
    lines[#lines + 1] = (util.gsub(s, "{([%w_]+)}", function(k)
      local v = env[k]
      if v == nil then error("mathfn: no value for {" .. k .. "}") end
      return v
    end))
  end })
  o.dtype, o.env, o.lines = dtype, env, lines
  function o.lit(x) return util.c_literal(x, dtype) end
  -- the fma option: fused(a, b, c) is the C text of a*b + c rounded once, nil without it
  local name = mathfn.FMA[dtype]
  o.has_fma = fma
  function o.fused(a, b, c) return fma and (name .. "(" .. a .. ", " .. b .. ", " .. c .. ")") or nil end
  return o
end

-- p = P(w) by Horner's rule, one statement: ((c_n x + c_n-1) x + ...) + c_1 with the C rounding
-- of each step (tcc keeps an expression in registers, but stores every statement), and from
-- ESTRIN_MIN coefficients by Estrin's scheme; with the fma option each step is an fma.
-- regions: the fitted pieces {hi, center, coef}; with several, the centre and each coefficient
-- are selected per value of w (sel below). A centred polynomial is evaluated in uvar = w - center.
-- keep_c0: p gets P - c_1, and horner returns c_1 (for a sum that recovers its rounding).
local ESTRIN_MIN = 8 -- coefficients from which Estrin's scheme is used
local function horner(o, p, w, regions, uvar, keep_c0)
  -- the coefficient of each region, selected by ?: on w (gcc if-converts a chain of two into
  -- two selects and vectorizes the loop; seq_ffn f64 forward was 1.1-1.2x slower with the exact
  -- sum of indicator-weighted coefficients used before); longer chains it left as branches.
  assert(#regions <= 3, "mathfn: more than three regions")
  local function sel(get)
    local e = o.lit(get(regions[#regions]))
    for j = #regions - 1, 1, -1 do
      e = "(" .. w .. " < " .. o.lit(regions[j].hi) .. " ? " .. o.lit(get(regions[j])) .. " : " .. e .. ")"
    end
    return e
  end
  local x = w
  if #regions > 1 or regions[1].center ~= 0 then
    o(uvar .. " = " .. w .. " - " .. sel(function(r) return r.center end) .. ";")
    x = uvar
  end
  local n = #regions[1].coef
  local e
  if n >= ESTRIN_MIN then
    -- Estrin's scheme: pairs c_i + c_i+1 x, then pairs of those with x^2, x^4...: a chain of
    -- log2(n) dependent steps instead of n (GELU erf f32 fma: 7% faster; without fma, GELU erf
    -- 64x3072 forward 1.36x faster in f32 and 1.29x in f64, the same maximum errors)
    local terms, xp = {}, x
    for i = keep_c0 and 2 or 1, n do terms[#terms + 1] = sel(function(r) return r.coef[i] end) end
    while #terms > 1 do
      local next_terms = {}
      for i = 1, #terms, 2 do
        next_terms[#next_terms + 1] = terms[i + 1] and (o.fused(terms[i + 1], xp, terms[i])
          or ("(" .. terms[i + 1] .. " * " .. xp .. " + " .. terms[i] .. ")")) or terms[i]
      end
      terms, xp = next_terms, "(" .. xp .. " * " .. xp .. ")"
    end
    e = terms[1]
  else
    e = sel(function(r) return r.coef[n] end)
    for i = n - 1, keep_c0 and 2 or 1, -1 do
      local c = sel(function(r) return r.coef[i] end)
      e = o.fused(e, x, c) or ((i < n - 1 and "(" .. e .. ")" or e) .. " * " .. x .. " + " .. c)
    end
  end
  if keep_c0 then -- p = P - c_1, and the C text of c_1
    o(p .. " = (" .. e .. ") * " .. x .. ";")
    return sel(function(r) return r.coef[1] end)
  end
  o(p .. " = " .. e .. ";")
end

-- The C text of v * 2^k from kb (exp_core).
local function exp_scale(o, tail)
  if tail then
    o("s.u = (kb.u - {tbase}) << {mant};")
    return function(v) return v .. " * s.f * {tail_unshift}" end
  end
  o("e = kb.u - {mbase};")
  o("s1.u = ((e >> 1) - 1{usuf}) << {mant};")
  o("s2.u = ((e - (e >> 1)) - 1{usuf}) << {mant};")
  return function(v) return v .. " * s1.f * s2.f" end
end

-- exp's reduction and polynomial for the argument x + opt.add1 + opt.add2. Sets k, r and
-- q = exp(r) - 1 and returns scale(v), the C text of v * 2^k. Declarations: union kb and s1,
-- s2 (or s); T k, r, q. kx: the value k = round(kx / ln2) is taken from (x + add1 rounded, or
-- x, or a value near them for which opt.poly is fitted over the wider r that results). opt
-- (all optional):
--   add1, add2  small next to x;
--   tail        kx <= 0 and k >= -(bias + tail_shift) + 1: one factor s = 2^(k + tail_shift)
--               and a constant instead of two factors s1, s2 (kx in [exp_lo, exp_hi]); either
--               way a subnormal result is rounded once;
--   off         an integer, with tail: the constant magic + bias + tail_shift + off rounds
--               kx / ln2 instead, so that the bits of kb shifted left by mant are those of s =
--               2^(k + tail_shift + off) (the exponent field; the constant's own bits lie above
--               it), and scale(v) is v * s.f: the caller applies 2^-tail_shift (the GELU's last
--               fma) and 2^off;
--   poly        the name of exp's polynomial in mathfn_coef ("exp" unless kx leaves |r| above
--               ln2/2).
local function exp_core(o, kx, x, opt)
  opt = opt or {}
  local add1, add2, off = opt.add1, opt.add2, opt.off
  local magic = "{magic}"
  if off then
    local F = FMT[o.dtype]
    magic = o.lit(F.magic + F.bias + F.tail_shift + off)
  end
  o("kb.f = " .. (o.fused(kx, "{log2e}", magic) or (kx .. " * {log2e} + " .. magic)) .. ";")
  o("k = kb.f - " .. magic .. ";")
  -- Cody and Waite: k ln2_hi and x - k ln2_hi are exact; rounding starts at the size of r
  local head = o.fused("-k", "{ln2_hi}", x) or ("(" .. x .. " - k * {ln2_hi})")
  if add1 then head = "(" .. head .. " + " .. add1 .. ")" end
  if add2 then
    o("r = " .. head .. " + " .. (o.fused("-k", "{ln2_lo}", add2) or ("(" .. add2 .. " - k * {ln2_lo})")) .. ";")
  else
    o("r = " .. (o.fused("-k", "{ln2_lo}", head) or (head .. " - k * {ln2_lo}")) .. ";")
  end
  horner(o, "q", "r", coef[o.dtype][opt.poly or "exp"].regions)
  o("q = " .. (o.fused("r * r", "q", "r") or "r + r * r * q") .. ";")
  if off then
    o("s.u = kb.u << {mant};")
    return function(v) return v .. " * s.f" end
  end
  return exp_scale(o, opt.tail)
end

-- -m x^2 = hi + lo, m = 1 or 1/2: Veltkamp's split x = xh + xl into half-width parts, hi = xh^2
-- exactly, lo = (2 xh + xl) xl with a relative error of 2^-mant, i.e. below 2^-(mant + 11) x^2.
local function square_split(o, x, m)
  if o.has_fma then -- c = m x exactly (m is -1 or -1/2); hi = c x rounded, lo its error, by one fma
    o("c = " .. m .. " * " .. x .. ";")
    o("hi = c * " .. x .. ";")
    o("lo = " .. o.fused("c", x, "-hi") .. ";")
    return
  end
  o("c = " .. x .. " * {split};")
  o("xh = c - (c - " .. x .. ");")
  o("xl = " .. x .. " - xh;")
  o("hi = " .. m .. " * (xh * xh);")
  o("lo = " .. m .. " * ((xh * {two} + xl) * xl);")
end

-- t = 1/(1 + x) and L(t) = log(erfcx(a) / t), erfcx(a) = exp(a^2) erfc(a), for x >= 0 exact (a
-- = x for erfc, x/sqrt2 for gelu: which names the polynomial). L is small (|L| < 0.54) and its
-- variable t is the division's result itself, whose rounding L hardly feels. precise: also tl,
-- with t + tl = 1/(1 + x) to about 2^-2mant (d + de = 1 + x exactly, rho = 1 - d t exactly by
-- Dekker's product of the split d and t), and L is left without its constant term, which
-- erfcx_parts returns; otherwise only the rounding of 1 + x is corrected.
local function erfcx_parts(o, x, which, precise)
  o("d = {one} + " .. x .. ";")
  o("de = " .. x .. " - (d - {one});")
  o("t = {one} / d;")
  if precise then
    o("c = d * {split};")
    o("dh = c - (c - d);")
    o("dl = d - dh;")
    o("c = t * {split};")
    o("th = c - (c - t);")
    o("tm = t - th;")
    o("rho = ((({one} - dh * th) - dh * tm) - dl * th) - dl * tm;")
    o("tl = t * (rho - de * t);")
  else
    o("t = " .. (o.fused("-t", "t * de", "t") or "t - t * (t * de)") .. ";")
  end
  return horner(o, "L", "t", coef[o.dtype][which].regions, "z", precise)
end

---------------------------------------------------------------------------------------------
-- The functions: args (the C parameter list), deps (functions called), body(o) (lines).

local fns = {}

-- exp(v) = 2^k exp(r), |r| <= ln2/2, exp(r) = 1 + r + r^2 P(r)
fns.exp = {
  args = "{T} v", deps = {},
  body = function(o)
    o("union { {T} f; {U} u; } kb, s1, s2;")
    o("{U} e;")
    o("{T} x, k, r, q;")
    o("/* clamped: exp still overflows to inf and underflows to 0 where it should */")
    o("x = v < {exp_lo} ? {exp_lo} : v;")
    o("x = x > {exp_hi} ? {exp_hi} : x;")
    local scale = exp_core(o, "x", "x")
    o("return " .. scale("({one} + q)") .. ";")
  end,
}

-- exp(v) for v <= 0 (or NaN): one clamp and one factor for 2^k (exp_core's tail form)
fns.expneg = {
  args = "{T} v", deps = {},
  body = function(o)
    o("union { {T} f; {U} u; } kb, s;")
    o("{T} x, k, r, q;")
    o("x = v < {exp_lo} ? {exp_lo} : v;")
    local scale = exp_core(o, "x", "x", { tail = true })
    o("return " .. scale("({one} + q)") .. ";")
  end,
}

-- erfc(a) = t exp(-a^2 + L(t)) (1 + tl/t) for 0 <= a <= erfc_amax (erfcx_parts). The sum that
-- forms the reduced argument r of the one exp, (hi - k ln2_hi) + L + (lo - k ln2_lo), keeps its
-- rounding errors (rc; Knuth's 2Sum and Fast2Sum), q = exp(r + rc) - 1 is kept as qh + ql, and
-- t (1 + q) is summed from exact pieces (Dekker's product t qh), so the result is rounded
-- once at the end, plus the small errors of L and of the polynomials.
fns.erfc_tail = {
  args = "{T} a", deps = {},
  body = function(o)
    o("union { {T} f; {U} u; } kb, s;")
    o("{T} c, xh, xl, hi, lo, d, de, t, dh, dl, th, tm, rho, tl, z, L, y, e, k, A, B, m, bb, r, rc;")
    o("{T} p, qh, ql, qhh, qhl, ph, pl, sh, sl;")
    square_split(o, "a", "-{one}")
    local c0 = erfcx_parts(o, "a", "erfc", true)
    o("y = L;")
    o("L = " .. c0 .. " + y; /* L + e = c0 + y exactly (2Sum) */")
    o("bb = L - " .. c0 .. ";")
    o("e = (" .. c0 .. " - (L - bb)) + (y - bb);")
    o("c = hi + L;")
    o("kb.f = c * {log2e} + {magic};")
    o("k = kb.f - {magic};")
    o("A = hi - k * {ln2_hi}; /* exact (Cody and Waite) */")
    o("B = lo - k * {ln2_lo};")
    o("m = L + B; /* Fast2Sum, |L| >= |B| */")
    o("e = e + (B - (m - L));")
    o("r = A + m; /* 2Sum */")
    o("bb = r - A;")
    o("rc = e + ((A - (r - bb)) + (m - bb));")
    horner(o, "p", "r", coef[o.dtype].exp.regions)
    o("p = r * r * p;")
    o("qh = r + p; /* qh + ql = exp(r + rc) - 1; Fast2Sum, |r| >= |p| */")
    o("ql = ((r - qh) + p) + rc * ({one} + qh);")
    o("c = qh * {split}; /* ph + pl = t qh exactly (Dekker), sh + sl = t + ph exactly (2Sum) */")
    o("qhh = c - (c - qh);")
    o("qhl = qh - qhh;")
    o("ph = t * qh;")
    o("pl = ((th * qhh - ph) + th * qhl + tm * qhh) + tm * qhl;")
    o("sh = t + ph;")
    o("bb = sh - t;")
    o("sl = (t - (sh - bb)) + (ph - bb);")
    local scale = exp_scale(o, true)
    o("return " .. scale("(sh + (((sl + pl) + t * ql) + tl * ({one} + qh)))") .. ";")
  end,
}

-- erfc(v) = erfc_tail(|v|) for v >= 0, 2 - erfc_tail(|v|) for v < 0
fns.erfc = {
  args = "{T} v", deps = { "erfc_tail" },
  body = function(o)
    o("{T} a, y;")
    o("a = v < {zero} ? -v : v;")
    o("a = a > {erfc_amax} ? {erfc_amax} : a; /* erfc is 0 beyond */")
    o("y = {kg_erfc_tail}(a);")
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
    o("y = {one} - {kg_erfc_tail}(b);")
    o("y = v < {zero} ? -y : y;")
    o("return a < {erf_small} ? p : y;")
  end,
}

-- tanh(v) = v + v^3 P(v^2) for |v| < tanh_small, else sign(v) (1 - 2 e / (1 + e)), e = exp(-2|v|)
fns.tanh = {
  args = "{T} v", deps = { "expneg" },
  body = function(o)
    o("{T} a, s, p, b, y;")
    o("a = v < {zero} ? -v : v;")
    o("s = v * v;")
    horner(o, "p", "s", coef[o.dtype].tanh.regions)
    o("p = v == {zero} ? v : v + v * s * p; /* keeps the sign of -0 */")
    o("b = {kg_expneg}(a * " .. o.lit(-2) .. ");")
    o("y = {one} - {two} * b / ({one} + b);")
    o("y = v < {zero} ? -y : y;")
    o("return a < {tanh_small} ? p : y;")
  end,
}

-- log(v) = k ln2 + log(1 + f) for v = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)) (the exponent
-- and the mantissa are read from the bits; subnormals scaled up first), and with s = f/(2 + f),
-- z = s^2 (log(1 + f) = 2 atanh(s), |s| <= 3 - 2 sqrt2):
--   log(1 + f) = f - h + s (h + z P(z)),   h = f^2/2,
-- so the correction to the exact f is small and its rounding hardly counts. k ln2 is split:
-- k ln2_hi is exact, and k ln2_hi + f is summed exactly (Fast2Sum: |k ln2_hi| > |f| unless
-- k = 0), so the result is rounded once at the end plus the small errors of the correction.
-- k as a float comes from the bits of magic + k (no integer conversion). Special values as
-- C99: log(+-0) = -inf, log(v < 0) = NaN, log(+inf) = +inf, NaN propagates.
fns.log = {
  args = "{T} v", deps = {},
  body = function(o)
    o("union { {T} f; {U} u; } b, kb, sp;")
    o("{U} ix;")
    o("{T} x, k, f, s, z, p, h, A, hi, lo, y;")
    o("x = v < {norm_min} ? v * {log_sub_scale} : v; /* subnormals: log(v) = log(v 2^n) - n ln2 */")
    o("b.f = x;")
    o("ix = b.u + {log_off}; /* the exponent field of ix is k + bias: x = 2^k m, m in [sqrt(1/2), sqrt(2)) */")
    o("kb.u = (ix >> {mant}) + {log_kbase};")
    o("k = kb.f - {magic};")
    o("k = v < {norm_min} ? k - {log_sub_n} : k;")
    o("b.u = (ix & {mant_mask}) + {sqrt_half_bits};")
    o("f = b.f - {one}; /* m - 1, exact (Sterbenz) */")
    o("s = f / ({two} + f);")
    o("z = s * s;")
    horner(o, "p", "z", coef[o.dtype].log.regions)
    o("h = {half} * f * f;")
    o("A = k * {ln2_hi}; /* exact (Cody and Waite) */")
    o("hi = A + f; /* hi + lo = A + f exactly (Fast2Sum: |A| > |f| or A = 0) */")
    o("lo = (A - hi) + f;")
    o("y = hi + (lo + (k * {ln2_lo} + (s * (h + z * p) - h)));")
    o("sp.u = {inf_bits};")
    o("y = v > {zero} ? y : -sp.f; /* log(+-0) = -inf */")
    o("y = v < sp.f ? y : v; /* +inf, NaN */")
    o("sp.u = {nan_bits};")
    o("return v < {zero} ? sp.f : y;")
  end,
}

-- GELU, PyTorch's formulas in forms that keep relative accuracy in the negative tail.
-- erf: gelu = v Phi(v), gelu' = Phi(v) + v phi(v), where for u = |v|
--   Phi(-u) = erfc(u/sqrt2)/2 = exp(-u^2/2) t exp(L(t))/2    (erfcx_parts: t = 1/(1+u), L)
--   phi(u) = exp(-u^2/2)/sqrt(2 pi).
-- Everything is taken from u exactly: the exponent -u^2/2 (hi + lo) and t; no rounded u/sqrt2,
-- to which GELU's tail would be u^2 times as sensitive. Speed over the last half ulp: t is not
-- refined by Dekker's product (erfc_tail's tl), except under the fma option, where one fma
-- gives the residual and the last roundings are fused too (f32: 3.74 -> 1.78 ulp).
local function gelu_erf_head(o)
  if o.has_fma then
    -- |v| clamped on the bits: gcc, seeing a constant in a ?: on u, evaluated the whole
    -- function for it in masked lanes (f32: 11 more instructions in the loop of 101); NaN
    -- becomes gelu_umax here and comes back through v at the end
    o("a.f = v;")
    o("a.u = a.u & {abs_mask};")
    o("a.u = a.u < {gelu_umax_bits} ? a.u : {gelu_umax_bits};")
    o("u = a.f;")
  else
    o("u = v < {zero} ? -v : v;")
    o("u = u > {gelu_umax} ? {gelu_umax} : u;")
  end
  square_split(o, "u", "-{half}")
  if o.has_fma then -- t (1 + rho) = 1/(1 + u) to about 2^-2mant: the residual 1 - d t is one fma
    o("d = {one} + u;")
    o("de = u - (d - {one});")
    o("t = {one} / d;")
    o("rho = " .. o.fused("-de", "t", o.fused("-d", "t", "{one}")) .. ";")
    horner(o, "L", "t", coef[o.dtype].gelu.regions, "z")
    return
  end
  erfcx_parts(o, "u", "gelu", false)
end
fns.gelu_erf = {
  args = "{T} v", deps = {},
  body = function(o)
    o("union { {T} f; {U} u; } " .. (o.has_fma and "a, " or "") .. "kb, s;")
    o("{T} u, c, xh, xl, hi, lo, d, de, t, tl, rho, z, L, k, r, q, y, w;")
    gelu_erf_head(o)
    -- exp's k from hi + gelu_lmid (the middle of L's range, < 0), not hi + L, so that k need
    -- not wait for the division and L: r = hi - k ln2 + L + lo then reaches ln2/2 + L's
    -- half-range (under 1/2), hence exp_gelu, exp's polynomial fitted over that range
    o("c = hi - {neg_gelu_lmid}; /* k from the Gaussian's exponent and the middle of L's range */")
    if o.has_fma then
      -- y = u Phi(-u) 2^tail_shift = u t (1 + rho)(1 + q) 2^(k - 1 + tail_shift) (the 1/2 of
      -- Phi is the off = -1 of 2^k), where u t (1 + rho) = c + tl: c = u t rounded and tl its
      -- rounding error (exact by one fma) plus c rho (before: c = 1 - t and tl its Fast2Sum
      -- error less t rho, one operation more; f32 every float 1.62 ulp either way, the test's
      -- sweep 1.26 against 1.62). y = (c + (c q + tl (1 + q))) 2^k, the sum rounded once, the
      -- scaling exact; then GELU = w - y 2^-tail_shift rounded once, w = 0 for v < 0 and v
      -- otherwise (which gives -0, +0, +inf and NaN at -0, +0, +inf and NaN)
      local scale = exp_core(o, "c", "hi",
        { add1 = "L", add2 = "lo", tail = true, off = -1, poly = "exp_gelu" })
      o("c = u * t;")
      o("tl = " .. o.fused("c", "rho", o.fused("u", "t", "-c")) .. ";")
      o("y = " .. scale("(c + " .. o.fused("c", "q", o.fused("tl", "q", "tl")) .. ")") .. ";")
      o("w = v < {zero} ? {zero} : v;")
      o("return " .. o.fused("-y", "{tail_unshift}", "w") .. ";")
      return
    end
    local scale = exp_core(o, "c", "hi", { add1 = "L", add2 = "lo", tail = true, poly = "exp_gelu" })
    o("/* v < 0: v Phi(v) = -u Phi(-u) (0 at -inf); else v (1 - Phi(-u)) */")
    o("y = " .. scale("{half} * (v < {zero} ? -u : {one}) * (t + t * q)") .. ";")
    o("return v < {zero} ? y : v * ({one} - y);")
  end,
}
-- gelu' = E D for v < 0 and 1 - E D otherwise, E = exp(-u^2/2), D = t exp(L)/2 - u/sqrt(2 pi)
-- (Phi(-u) = E t exp(L)/2, u phi(u) = E u/sqrt(2 pi)): one exp with range reduction, and
-- exp(L) = (1 + q)^2 from the same polynomial at L/2 (|L/2| < ln2/2).
fns.gelu_grad_erf = {
  args = "{T} v", deps = {},
  body = function(o)
    o("union { {T} f; {U} u; } " .. (o.has_fma and "a, " or "") .. "kb, s;")
    o("{T} u, c, xh, xl, hi, lo, d, de, t, rho, z, L, h, D, k, r, q;")
    gelu_erf_head(o)
    if o.has_fma then o("t = t + t * rho;") end
    o("h = L * {half};")
    horner(o, "q", "h", coef[o.dtype].exp.regions)
    o("q = " .. (o.fused("h * h", "q", "h") or "h + h * h * q") .. ";")
    if o.has_fma then
      -- 2D, with the 1/2 taken as the off = -1 of 2^k (the same bits: both scalings are exact)
      o("D = " .. o.fused("-u", o.lit(2 * coef[o.dtype].const.inv_sqrt_2pi), "t * " .. o.fused("q", "{two} + q", "{one}")) .. ";")
      local scale = exp_core(o, "hi", "hi", { add2 = "lo", tail = true, off = -1 })
      o("D = " .. scale(o.fused("D", "q", "D")) .. " * {tail_unshift};")
      o("return v >= {zero} ? {one} - D : (v < {zero} ? D : v); /* NaN: the head made u finite */")
      return
    end
    o("D = {half} * t * ({one} + q * ({two} + q)) - u * {inv_sqrt_2pi};")
    local scale = exp_core(o, "hi", "hi", { add2 = "lo", tail = true })
    o("D = " .. scale("(D + D * q)") .. ";")
    o("return v < {zero} ? D : {one} - D;")
  end,
}

-- tanh: with g = sqrt(2/pi)(v + 0.044715 v^3) and s = 1/(1 + exp(-2g)) (1 + tanh g = 2s), s and
-- 1 - s are formed without cancellation for either sign of g (e = exp(-2|g|), r = 1/(1 + e)):
--   gelu = v s;  gelu' = s + 2 v s (1 - s) sqrt(2/pi)(1 + 3 * 0.044715 v^2)
-- With the fma option, v + 0.044715 v^3, 1 + 3 * 0.044715 v^2 and gelu's last sum are fused
-- (f32 64x3072: derivative 141.7 -> 133.2 us, forward 100.7 -> 98.1; errors lower: README).
-- exp's argument -2g is formed as -2 sqrt(2/pi) w, w = v + 0.044715 v^3 (g itself is not
-- needed, only its sign, w's): one product fewer and the same bits, as a product by 2 is exact
-- (every float, both forms: the same bits; f32 64x3072 forward 6% faster).
local SQRT_2_OVER_PI, KAPPA = 0.79788456080286535588, 0.044715
local function tanh_s(o)
  o("{T} w, e, r, s;")
  local kv3 = o.lit(KAPPA) .. " * v * v"
  o("w = " .. (o.fused(kv3, "v", "v") or ("v + " .. kv3 .. " * v")) .. ";")
  o("e = {kg_expneg}(" .. o.lit(-2 * SQRT_2_OVER_PI) .. " * (w < {zero} ? -w : w));")
  o("r = {one} / ({one} + e);")
  o("s = w < {zero} ? e * r : r;")
end
fns.gelu_tanh = {
  args = "{T} v", deps = { "expneg" },
  body = function(o)
    tanh_s(o)
    o("return v * s;")
  end,
}
fns.gelu_grad_tanh = {
  args = "{T} v", deps = { "expneg" },
  body = function(o)
    tanh_s(o)
    local d = o.lit(2 * SQRT_2_OVER_PI) .. " * v * (e * r * r)" -- s (1 - s) = e r^2 for either sign
    local q = o.lit(3 * KAPPA) .. " * v"
    o("return " .. (o.fused(d, o.fused(q, "v", "{one}"), "s") or ("s + " .. d .. " * ({one} + " .. q .. " * v)")) .. ";")
  end,
}

---------------------------------------------------------------------------------------------

for name, f in pairs(fns) do
  assert(f.args and f.deps and f.body, "mathfn " .. name .. ": args, deps and body required")
  for _, d in ipairs(f.deps) do assert(fns[d], "mathfn " .. name .. ": unknown dependency " .. d) end
end

function mathfn.has(name) return fns[name] ~= nil end

-- Every function's name, sorted (gen/mathlib.lua makes an array form of each).
function mathfn.names()
  local names = {}
  for name in pairs(fns) do names[#names + 1] = name end
  table.sort(names)
  return names
end

function mathfn.cname(name, dtype) return "kg_" .. name .. "_" .. dtype end

-- The variables of the declarations "T a, b, c;" in lines that no other line uses are dropped
-- (the fma forms and the plain ones need different temporaries).
local function unused_dropped(lines, T)
  local pattern, rest = "^" .. T .. " [%w_, ]+;$", {}
  for _, l in ipairs(lines) do if not util.find(l, pattern) then rest[#rest + 1] = l end end
  local body = " " .. table.concat(rest, " ") .. " "
  for i, l in ipairs(lines) do
    if util.find(l, pattern) then
      local kept = {}
      for v in util.gmatch(l:sub(#T + 2, -2), "[%w_]+") do
        if util.find(body, "[^%w_]" .. v .. "[^%w_]") then kept[#kept + 1] = v end
      end
      lines[i] = T .. " " .. table.concat(kept, ", ") .. ";"
    end
  end
end

-- C text of the functions named in `wanted` (a set) and of those they call, for one dtype:
-- callees before callers, otherwise in name order, each once.
function mathfn.emit(wanted, dtype, fma)
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
  if #order > 0 then
    -- gcc and clang (not when optimizing for size) inline these into every loop that calls
    -- them, whatever their size or number of callers, so that the loop can be vectorized
    out[#out + 1] = "#if defined(__GNUC__) && !defined(__OPTIMIZE_SIZE__)"
    out[#out + 1] = "#define KG_MATHFN static inline __attribute__((always_inline))"
    out[#out + 1] = "#else"
    out[#out + 1] = "#define KG_MATHFN static inline"
    out[#out + 1] = "#endif"
    out[#out + 1] = ""
  end
  for _, name in ipairs(order) do
    local o = builder(dtype, fma)
    for n in pairs(fns) do o.env["kg_" .. n] = mathfn.cname(n, dtype) end
    o(fns[name].args)
    local args = table.remove(o.lines, 1)
    fns[name].body(o)
    unused_dropped(o.lines, o.env.T)
    out[#out + 1] = "KG_MATHFN " .. o.env.T .. " " .. mathfn.cname(name, dtype) .. "(" .. args .. ")"
    out[#out + 1] = "{"
    for _, l in ipairs(o.lines) do out[#out + 1] = "    " .. l end
    out[#out + 1] = "}"
    out[#out + 1] = ""
  end
  return table.concat(out, "\n") .. (#out > 0 and "\n" or "")
end

return mathfn
