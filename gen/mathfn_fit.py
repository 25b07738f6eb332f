#!/usr/bin/python3
"""mathfn_fit.py: fits the polynomial coefficients of the math functions kerngen emits
(gen/mathfn.lua) and writes them as a Lua table:

    /usr/bin/python3 gen/mathfn_fit.py > gen/mathfn_coef.lua     (Debian: python3-mpmath)

Method, for every polynomial below and each dtype: a minimax fit of the weighted error
W(u) * (P(u) - F(u)) by the Remez exchange on a dense Chebyshev grid, in mpmath at 50 digits;
then the coefficients are rounded to the dtype one at a time, the highest degree first, and
the lower ones refitted after each rounding (so they absorb the rounding of the higher ones).
The error printed with each table is the weighted error of the rounded polynomial, the largest
on a grid four times as dense as the fitting grid. The run is deterministic: the same mpmath gives the same file.

What each polynomial approximates (u is the variable the C code evaluates it in, centred so
that Horner's rule is well conditioned: the sum of the absolute terms stays near |F|):
  exp    exp(r) = 1 + r + r^2 P(r),       |r| <= ln2/2 (+ margin)     weight: relative error
  erfc   log(erfcx(a) (1 + a)) = P(t - c), t = 1 / (1 + a)            weight: absolute error
         (erfcx(a) = exp(a^2) erfc(a); the C code adds P to the argument of one exp, so an
         absolute error in P is a relative error in erfc); one polynomial per region of t
  gelu   log(erfcx(u / sqrt2) (1 + u)) = P(t - c), t = 1 / (1 + u)     the same, for GELU's
         Phi(-u) = erfc(u / sqrt2) / 2, in terms of u itself (exact: no rounded u / sqrt2)
  exp_gelu  exp(r) as exp, for |r| <= ln2/2 + (max L - min L)/2 (+ margin), L = gelu's
         function above: GELU (erf) takes exp's k from -u^2/2 + gelu_lmid, the middle of L's
         range (a short constant), so that k does not wait for L, and adds L - gelu_lmid to
         the reduced argument
  erf    erf(z) = z + z P(z^2 - c),       |z| < 1                     weight: relative error
  tanh   tanh(x) = x + x^3 P(x^2),        |x| < TANH_SMALL            weight: relative error
  log    log(1 + f) = f - f^2/2 + s (f^2/2 + z P(z)), s = f / (2 + f), z = s^2, for
         1 + f in [sqrt(1/2), sqrt(2)): |s| <= 3 - 2 sqrt2 (+ margin); log(1 + f) = 2 atanh(s),
         so z P(z) = 2 (atanh(s) - s) / s                              weight: the error it
         makes in log(1 + f) ~ 2s, relative: z / 2
"""
import struct
import sys

import mpmath as mp

mp.mp.dps = 50
NGRID = 2000

# Domains. a = |z| is clamped to ERFC_AMAX, beyond which erfc underflows to 0 in that type
# (f32: erfc(10.06) < 2^-150; f64: erfc(26.55) < 2^-1075); GELU's u = |x| to GELU_UMAX, beyond
# which x Phi(-x) and x phi(x) are below half the smallest subnormal.
ERFC_AMAX = {"f32": mp.mpf("10.125"), "f64": mp.mpf("27.25")}
GELU_UMAX = {"f32": mp.mpf("14.75"), "f64": mp.mpf("39")}
TANH_SMALL = mp.mpf("0.625")   # below: the odd polynomial; above: 1 - 2/(exp(2|x|) + 1)
ERF_SMALL = mp.mpf(1)          # below: the odd polynomial; above: 1 - erfc(|z|)
EXP_R = mp.log(2) / 2 * (1 + mp.mpf(2) ** -8)   # |r| after reduction, with margin for rounding
LOG_Z = (3 - 2 * mp.sqrt(2)) ** 2 * (1 + mp.mpf(2) ** -8)  # z = s^2 of log, with margin

# (name, degree list per dtype, regions per dtype)
DEGREES = {
    "f32": {"exp": 4, "erfc": 13, "gelu": 15, "exp_gelu": 5, "erf": 6, "tanh": 6, "log": 2},
    "f64": {"exp": 9, "erfc": 22, "gelu": 26, "exp_gelu": 11, "erf": 12, "tanh": 12, "log": 6},
}
# The exponent terms of erfc and GELU are a polynomial per region of t, as few regions as the
# degree allows: gcc evaluates a polynomial whose coefficients are selected per region as one
# masked polynomial per region, or blends each coefficient, so regions cost more than degree.
# The f64 boundaries were chosen by Chebyshev-interpolation error at degree 22 (GELU's function
# is hardest near t = 1). GELU f64: two regions of degree 26 (split at 0.3) instead of three of
# degree 22 (at 0.15625 and 0.40625): GELU (erf) 64x3072 forward 3% faster with --fma on, 11%
# without. One region (t = 1/(1 + u/4), degree 24) was 1.47x faster with --fma on but 4.7-6
# ulp: L's slope in t (4 near t = 1) turns the rounding of t into L, and |c_1 z| ~ 0.8 the
# polynomial's own roundings (README, bench/README.md item 1). GELU f32: two regions of degree 9
# (split at 0.4; 5.9e-9 against 6.9e-9 for one of degree 15) ran 1.12x slower with --fma on and
# 1.06x without (64x3072 forward, 2026-12-02): gcc's loop held 33 fmas and 11 multiplies against
# 32 and 8 (as if it evaluated both regions' polynomials), plus the selects.
BOUNDS = {
    "f32": {"erfc": [], "gelu": []},
    "f64": {"erfc": ["0.34375"], "gelu": ["0.3"]},
}


def rnd(x, dtype):
    """x rounded to the nearest float (f32) or double (f64), as an mpf."""
    if dtype == "f32":
        return mp.mpf(struct.unpack("<f", struct.pack("<f", float(x)))[0])
    return mp.mpf(float(x))


def short(x, bits):
    """x rounded to a binary fraction with `bits` significant bits (exact in either type)."""
    if x == 0:
        return mp.mpf(0)
    e = mp.floor(mp.log(abs(x), 2))
    q = mp.mpf(2) ** (e - bits + 1)
    return mp.nint(x / q) * q


def remez(F, W, powers, lo, hi, iters=40):
    """min over c of max |W(u) (sum_i c_i u^powers[i] - F(u))| on [lo, hi] (dense grid).
    Returns (coefficients, max weighted error on the grid)."""
    n = len(powers)
    grid = [lo + (hi - lo) * (1 - mp.cos(mp.pi * (k + mp.mpf(0.5)) / NGRID)) / 2 for k in range(NGRID)]
    Fg = [F(u) for u in grid]
    Wg = [W(u) for u in grid]
    Pg = [[u ** p for p in powers] for u in grid]
    ref = [int((NGRID - 1) * (1 - mp.cos(mp.pi * j / n)) / 2) for j in range(n + 1)]
    best = None
    for _ in range(iters):
        A = mp.matrix(n + 1, n + 1)
        b = mp.matrix(n + 1, 1)
        for j, k in enumerate(ref):
            for i in range(n):
                A[j, i] = Pg[k][i]
            A[j, n] = (-1) ** j / Wg[k]
            b[j] = Fg[k]
        sol = mp.lu_solve(A, b)
        c = [sol[i] for i in range(n)]
        E = abs(sol[n])
        e = [Wg[k] * (mp.fsum(ci * pk for ci, pk in zip(c, Pg[k])) - Fg[k]) for k in range(NGRID)]
        m = max(abs(x) for x in e)
        if best is None or m < best[1]:
            best = (c, m)
        if m <= E * (1 + mp.mpf("1e-3")):
            break
        # new reference: the local extrema of e, one per run of equal sign, n + 1 of them
        ext = [k for k in range(NGRID)
               if (k == 0 or abs(e[k]) >= abs(e[k - 1])) and (k == NGRID - 1 or abs(e[k]) >= abs(e[k + 1]))]
        merged = []
        for k in ext:
            if merged and (e[k] >= 0) == (e[merged[-1]] >= 0):
                if abs(e[k]) > abs(e[merged[-1]]):
                    merged[-1] = k
            else:
                merged.append(k)
        while len(merged) > n + 1:
            merged.pop(0 if abs(e[merged[0]]) < abs(e[merged[-1]]) else -1)
        if len(merged) < n + 1:
            break
        ref = merged
    return best


def fit(F, W, degree, lo, hi, dtype):
    """Polynomial of `degree` in u on [lo, hi] with coefficients in dtype: the highest-degree
    coefficient is rounded first and the lower ones refitted (1, u, ..., u^i stay a Chebyshev
    system, so the exchange stays well posed). Returns (coefficients, lowest first; the
    largest weighted error of the rounded polynomial on the grid)."""
    cache = {}  # F on the grid, computed once for the degree + 1 fits

    def Fc(u):
        if u not in cache:
            cache[u] = F(u)
        return cache[u]
    fixed = {}
    for i in range(degree, -1, -1):
        def G(u, fx=dict(fixed)):
            return Fc(u) - mp.fsum(c * u ** p for p, c in fx.items())
        c, _ = remez(G, W, list(range(0, i + 1)), lo, hi)
        fixed[i] = rnd(c[i], dtype)
    coef = [fixed[p] for p in range(degree + 1)]
    grid = [lo + (hi - lo) * k / (4 * NGRID) for k in range(4 * NGRID + 1)]
    err = max(abs(W(u) * (mp.polyval(coef[::-1], u) - F(u))) for u in grid)
    return coef, err


def erfcx(a):
    return mp.exp(a * a) * mp.erfc(a)


def fit_all(dtype):
    deg = DEGREES[dtype]
    out = {}

    # exp(r) = 1 + r + r^2 P(r)
    def F_exp(r):
        return (mp.exp(r) - 1 - r) / (r * r) if r != 0 else mp.mpf(0.5)

    def W_exp(r):
        return r * r / mp.exp(r)
    c, err = fit(F_exp, W_exp, deg["exp"], -EXP_R, EXP_R, dtype)
    out["exp"] = {"err": err, "regions": [{"lo": -EXP_R, "hi": EXP_R, "center": 0, "coef": c}]}

    # erfc and gelu: L(t) = log(erfcx(a) / t) with a = 1/t - 1 (erfc) or (1/t - 1)/sqrt2 (gelu)
    for name, amax, scale in (("erfc", ERFC_AMAX[dtype], 1), ("gelu", GELU_UMAX[dtype], 1 / mp.sqrt(2))):
        tmin = 1 / (1 + amax)
        bounds = [tmin] + [mp.mpf(b) for b in BOUNDS[dtype][name]] + [mp.mpf(1)]
        regions, worst = [], 0
        for j in range(len(bounds) - 1):
            lo, hi = bounds[j], bounds[j + 1]
            center = short((lo + hi) / 2, 8)

            def F(z, center=center, scale=scale):
                t = z + center
                return mp.log(erfcx((1 / t - 1) * scale) / t)
            c, err = fit(F, lambda z: 1, deg[name], lo - center, hi - center, dtype)
            regions.append({"lo": lo, "hi": hi, "center": center, "coef": c})
            worst = max(worst, err)
        out[name] = {"err": worst, "regions": regions}

    # exp over GELU's reduced argument, which also holds L - gelu_lmid (L's range on a dense
    # grid of t)
    tmin = 1 / (1 + GELU_UMAX[dtype])
    Ls = [mp.log(erfcx((1 / t - 1) / mp.sqrt(2)) / t) for t in (tmin + (1 - tmin) * k / 4000 for k in range(4001))]
    lmid = short((min(Ls) + max(Ls)) / 2, 8)
    rmax = (mp.log(2) / 2 + max(max(Ls) - lmid, lmid - min(Ls))) * (1 + mp.mpf(2) ** -8)
    c, err = fit(F_exp, W_exp, deg["exp_gelu"], -rmax, rmax, dtype)
    out["exp_gelu"] = {"err": err, "regions": [{"lo": -rmax, "hi": rmax, "center": 0, "coef": c}]}
    out["gelu_lmid"] = lmid

    # erf(z) = z + z P(s - c), s = z^2 < 1
    center = mp.mpf("0.5")

    def F(u):
        z = mp.sqrt(u + center)
        return mp.erf(z) / z - 1 if z != 0 else 2 / mp.sqrt(mp.pi) - 1

    def W(u):
        z = mp.sqrt(u + center)
        return z / mp.erf(z) if z != 0 else mp.sqrt(mp.pi) / 2
    c, err = fit(F, W, deg["erf"], -center, ERF_SMALL ** 2 - center, dtype)
    out["erf"] = {"err": err, "regions": [{"lo": 0, "hi": ERF_SMALL ** 2, "center": center, "coef": c}]}

    # tanh(x) = x + x^3 P(s), s = x^2 < TANH_SMALL^2
    def F(s):
        x = mp.sqrt(s)
        return (mp.tanh(x) - x) / (s * x) if s != 0 else mp.mpf(-1) / 3

    def W(s):
        x = mp.sqrt(s)
        return s * x / mp.tanh(x) if s != 0 else mp.mpf(0)
    c, err = fit(F, W, deg["tanh"], mp.mpf(0), TANH_SMALL ** 2, dtype)
    out["tanh"] = {"err": err, "regions": [{"lo": 0, "hi": TANH_SMALL ** 2, "center": 0, "coef": c}]}

    # log(1 + f) = 2 atanh(s) = f - f^2/2 + s (f^2/2 + z P(z)), z = s^2
    def F(z):
        s = mp.sqrt(z)
        return 2 * (mp.atanh(s) - s) / (s * z) if z != 0 else mp.mpf(2) / 3
    c, err = fit(F, lambda z: z / 2, deg["log"], mp.mpf(0), LOG_Z, dtype)
    out["log"] = {"err": err, "regions": [{"lo": 0, "hi": LOG_Z, "center": 0, "coef": c}]}
    # constants, each rounded once from its exact value; ln2 is split for Cody and Waite's
    # reduction: k * ln2_hi is exact for |k| < 2^8 (f32) or 2^11 (f64)
    bits = {"f32": 16, "f64": 42}[dtype]
    ln2_hi = short(mp.log(2), bits)
    out["const"] = {
        "ln2_hi": ln2_hi, "ln2_lo": rnd(mp.log(2) - ln2_hi, dtype), "log2e": rnd(1 / mp.log(2), dtype),
        "inv_sqrt_2pi": rnd(1 / mp.sqrt(2 * mp.pi), dtype),
    }
    return out


def lua_num(x):
    return float(x).hex()


def main():
    lines = [
        "-- mathfn_coef: polynomial coefficients of the functions in gen/mathfn.lua.",
        "-- Generated by gen/mathfn_fit.py (minimax fits in mpmath " + mp.__version__ + ", each coefficient",
        "-- rounded to its type in turn, highest degree first, and the rest refitted); do not edit: rerun",
        "--     /usr/bin/python3 gen/mathfn_fit.py > gen/mathfn_coef.lua",
        "-- Values are hexadecimal floats, exact in their type. err: the largest weighted error of the",
        "-- rounded polynomial on the fitting grid (relative, or absolute for the exponent terms of",
        "-- erfc and gelu).",
        "return {",
        "  erfc_amax = { f32 = %s, f64 = %s }," % (lua_num(ERFC_AMAX["f32"]), lua_num(ERFC_AMAX["f64"])),
        "  gelu_umax = { f32 = %s, f64 = %s }," % (lua_num(GELU_UMAX["f32"]), lua_num(GELU_UMAX["f64"])),
        "  tanh_small = %s, erf_small = %s," % (lua_num(TANH_SMALL), lua_num(ERF_SMALL)),
    ]
    for dtype in ("f32", "f64"):
        fits = fit_all(dtype)
        lines.append("  %s = {" % dtype)
        lines.append("    const = { " + ", ".join("%s = %s" % (k, lua_num(v)) for k, v in sorted(fits["const"].items())) + " },")
        lines.append("    gelu_lmid = %s," % lua_num(fits["gelu_lmid"]))
        for name in ("erf", "erfc", "exp", "exp_gelu", "gelu", "log", "tanh"):
            f = fits[name]
            lines.append("    %s = { err = %s, regions = {" % (name, mp.nstr(f["err"], 3)))
            for r in f["regions"]:
                lines.append("      { lo = %s, hi = %s, center = %s," % (lua_num(rnd(r["lo"], dtype)), lua_num(rnd(r["hi"], dtype)),
                                                                    lua_num(r["center"])))
                lines.append("        coef = { " + ", ".join(lua_num(c) for c in r["coef"]) + " } },")
            lines.append("    } },")
        lines.append("  },")
        print("fitted " + dtype, file=sys.stderr)
    lines.append("}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
