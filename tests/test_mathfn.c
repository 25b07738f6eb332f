/*
 * test_mathfn.c - the math functions kerngen emits instead of calling libm (gen/mathfn.lua):
 * exp, erf, erfc, tanh, log and the GELU forms (erf and tanh, value and derivative), f32 and
 * f64, exactly as the generator writes them into a kernel: tests/specs/mathfn.lua applies each
 * to one input vector (log to a second one, with its own sweep), and the VJP with a unit
 * cotangent on a GELU output gives its derivative.
 *
 *   max_ulp_test        f32 and f64, each also --fma on: the JIT-compiled (tcc) kernel on a
 *                       dense sweep and on hard points, against long double references;
 *                       asserts each function's stated bound,
 *                       in ulps of the exact result (the ulp of its binade; subnormals count
 *                       in units of the smallest subnormal), and prints the measured maximum
 *                       and where it occurs. Sweep: numbers of magnitude [2^-30, 2^7) (f32) or
 *                       [2^-30, 2^10) (f64), both signs, at a fixed stride of their bit
 *                       patterns, about 400,000 per dtype (make_sweep). Hard points: 0, the
 *                       smallest subnormal, the smallest normal, and +-0..24 ulps around each
 *                       switch-over between approximations, each clamp, and the overflow and
 *                       underflow edges (EDGES32, EDGES64). log's sweep (make_log_sweep):
 *                       positive numbers of every binade, subnormals included, at a fixed
 *                       stride of their bit patterns, denser on [1/4, 4), and +-0..24 ulps
 *                       around 1, sqrt(1/2), sqrt(2) (the reduction's boundaries), powers of 2,
 *                       e, the smallest normal, the smallest subnormal and the largest number.
 *   special_values      NaN gives NaN, +-inf and -0 give the limits; log of +-0 is -inf, of a
 *                       negative number NaN, of +inf +inf, of 1 +0.
 *   every_float_gelu_erf_f32  opt-in (KERNGEN_MATHFN_EVERY_FLOAT=off|on): every float of
 *                       [-15, 6] through GELU (erf) f32, default or --fma on.
 *   bit_identical_compilers   the emitted .c built by gcc -O3 -march=native and by clang -O3
 *                       -march=native (-ffp-contract=off, never -ffast-math) into shared
 *                       objects gives exactly the JIT's bits (forward and both GELU
 *                       derivatives) on a sparser sweep, both dtypes.
 *
 * References: glibc's long double expl, erfl, erfcl, tanhl, logl (x87 80-bit; their errors are
 * thousands of times below a double ulp). GELU's references evaluate erfc(-x/sqrt2) and
 * exp(-x^2/2) at exactly the point the input gives: the rounding of x/sqrt2 and of x^2 in
 * long double is corrected to first order (fmal gives the exact residuals), since GELU's
 * condition number in its tail is x^2 (1600 at x = -40) and would otherwise cost the
 * reference most of a double ulp. Needs x87 long double (gcc on x86-64), as test_operators.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kerngen.h"

extern char **environ;

#define SPEC "tests/specs/mathfn.lua"

/* Stated bounds (README, "Math functions"), in ulps of the exact result. GELU (tanh) is
   bounded relative to its conditioning: its value depends on u = sqrt(2/pi)(x + 0.044715 x^3),
   rounded to the dtype (as in PyTorch's formula), through exp(2u), so an error of one ulp in u
   moves the result by 2|u| ulps; the bound is on ulps / (1 + 2|u|). */
enum { F_EXP, F_ERF, F_ERFC, F_TANH, F_GELU_ERF, F_GELU_TANH, F_LOG, F_GELU_GRAD_ERF, F_GELU_GRAD_TANH, NFN };
static const char *const FN_NAMES[NFN] = {"exp", "erf", "erfc", "tanh", "gelu erf", "gelu tanh", "log",
                                          "gelu' erf", "gelu' tanh"};
static const double BOUND[2][2][NFN] = {
    {
        /* f32 */ {1.5, 1.5, 2, 2, 4, 4, 1, 0, 0},
        /* f64 */ {1.5, 1.5, 1.5, 2, 4, 4, 1, 0, 0},
    },
    { /* --fma on: fused multiply-adds in the polynomials, GELU's exact square, 1/(1 + u) to
         twice the precision and GELU's last roundings */
        /* f32 */ {1.5, 1.5, 1.5, 2, 2, 4, 1, 0, 0},
        /* f64 */ {1.5, 1.5, 1.5, 2, 2, 4, 1, 0, 0},
    },
};
/* The derivatives have no ulp bound: gelu' crosses zero (x = -0.75), where any formula loses
   relative accuracy, so they are checked against max(|ref|, 1) like test_operators. */
static const double GRAD_TOL[2] = {1e-6, 1e-15};

/* ---- the sweep ---- */

typedef struct {
    int f64;
    size_t n;
    double *x; /* the points, exactly representable in the dtype */
    size_t nl;
    double *xl; /* log's points (input b) */
} sweep;

static double bits_to_f32(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
static double bits_to_f64(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}
/* the representable number k steps of one ulp away from x (x finite, stays finite) */
static double ulp_step(double x, int k, int f64)
{
    for (; k > 0; k--)
        x = f64 ? nextafter(x, INFINITY) : nextafterf((float)x, INFINITY);
    for (; k < 0; k++)
        x = f64 ? nextafter(x, -INFINITY) : nextafterf((float)x, -INFINITY);
    return x;
}

static void push_to(size_t *n, double **xs, size_t *cap, int f64, double x)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        *xs = realloc(*xs, *cap * sizeof **xs);
        assert_non_null(*xs);
    }
    (*xs)[(*n)++] = f64 ? x : (double)(float)x;
}
static void push(sweep *s, size_t *cap, double x) { push_to(&s->n, &s->x, cap, s->f64, x); }
static void push_log(sweep *s, size_t *cap, double x) { push_to(&s->nl, &s->xl, cap, s->f64, x); }

/* Switch-overs (gen/mathfn_coef.lua: erf 1, tanh 0.625; f64 erfc's and GELU's polynomial
   regions at t = 1/(1 + |x|) = 0.34375 (erfc) and 0.3 (GELU)), clamps
   (gen/mathfn.lua, mathfn_coef.lua), the edges of exp's and erfc's range, and the largest
   errors found offline (README: every float of erfc and GELU erf in f32, every 13th of the
   others, 60 million random doubles): exp, erf, erfc, tanh, GELU erf, in this order; then GELU
   erf's with --fma on (every float of [-15, 6]: the worst of each sign). */
static const double EDGES32[] = {1.0, 0.625, 10.125, 4.0, 14.75, 104.0, 89.0, 88.72283935546875,
                                 87.33654, 103.27893, 103.97208, 10.0546, 10.0577, 3.9192,
                                 9.0109, 14.37,
                                 48.1746178, 0.956980228, 7.22530413, 0.631181657, -1.84732378,
                                 -1.84716594, 0.00768965809};
static const double EDGES64[] = {1.0, 0.625, 1 / 0.34375 - 1, 1 / 0.3 - 1,
                                 27.25, 6.0, 39.0, 746.0, 710.0, 709.782712893384,
                                 708.3964185322641, 744.4400719213812, 745.1332191019412,
                                 26.5432, 26.6, 5.9215, 19.0615, 38.4,
                                 -143.76960178689239, 0.98890612960820512, 1.8898208471660272,
                                 0.62939609748086056, -1.8345510616578273};

static void make_log_sweep(sweep *s, unsigned stride_scale);

static sweep make_sweep(int f64, unsigned stride_scale)
{
    sweep s = {f64, 0, NULL, 0, NULL};
    size_t cap = 0;
    const double *edges = f64 ? EDGES64 : EDGES32;
    size_t nedges = f64 ? sizeof EDGES64 / sizeof *EDGES64 : sizeof EDGES32 / sizeof *EDGES32;
    push(&s, &cap, 0.0);
    push(&s, &cap, -0.0);
    for (int sign = -1; sign <= 1; sign += 2) {
        double tiny[] = {f64 ? 4.9406564584124654e-324 : 1.40129846e-45, f64 ? DBL_MIN : FLT_MIN,
                         1e-30, 1e-10};
        for (size_t i = 0; i < sizeof tiny / sizeof *tiny; i++)
            push(&s, &cap, sign * tiny[i]);
        for (size_t i = 0; i < nedges; i++)
            for (int k = -24; k <= 24; k++)
                push(&s, &cap, ulp_step(sign * edges[i], k, f64));
        if (f64) { /* magnitudes [2^-30, 2^10): 40 binades of 2^52 */
            const uint64_t lo = 0x3E10000000000000ull, hi = 0x4090000000000000ull;
            const uint64_t step = 188899839028ull * stride_scale + 1;
            for (uint64_t b = lo; b < hi; b += step)
                push(&s, &cap, sign * bits_to_f64(b));
        } else { /* magnitudes [2^-30, 2^7): 37 binades of 2^23 */
            const uint32_t lo = 0x30800000u, hi = 0x43000000u;
            const uint32_t step = 311u * stride_scale;
            for (uint32_t b = lo; b < hi; b += step)
                push(&s, &cap, sign * bits_to_f32(b));
        }
    }
    make_log_sweep(&s, stride_scale);
    return s;
}

/* log's points: every binade (bit patterns at a fixed stride from the smallest subnormal to the
   largest number, about 150,000 at stride_scale 5), [1/4, 4) densely (about 50,000), the
   boundaries of the reduction and the edges of the range (+-24 ulps), a few negatives (NaN). */
static void make_log_sweep(sweep *s, unsigned stride_scale)
{
    size_t cap = 0;
    const int f64 = s->f64;
    const double sqrt_half = 0.70710678118654752440;
    const double edges[] = {1.0, sqrt_half, 2 * sqrt_half, 2.0, 0.5, 4.0, 0.25, 2.718281828459045,
                            1024.0, 0x1p-100, f64 ? DBL_MIN : FLT_MIN, f64 ? DBL_MAX : FLT_MAX};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
        for (int k = -24; k <= 24; k++) {
            double x = ulp_step(edges[i], k, f64);
            if (isfinite(f64 ? x : (float)x))
                push_log(s, &cap, x);
        }
    for (int k = 1; k <= 24; k++) /* the smallest subnormals */
        push_log(s, &cap, f64 ? bits_to_f64((uint64_t)k) : bits_to_f32((uint32_t)k));
    push_log(s, &cap, -1.0);
    push_log(s, &cap, -(f64 ? DBL_MIN : FLT_MIN));
    push_log(s, &cap, -(f64 ? DBL_MAX : FLT_MAX));
    if (f64) {
        const uint64_t top = 0x7FEFFFFFFFFFFFFFull, step = 12297829382473ull * stride_scale + 1;
        for (uint64_t b = 1; b <= top && b != 0; b += step)
            push_log(s, &cap, bits_to_f64(b));
        const uint64_t lo = 0x3FD0000000000000ull, hi = 0x4010000000000000ull; /* [1/4, 4) */
        const uint64_t step1 = 360287970189ull * stride_scale + 1;
        for (uint64_t b = lo; b < hi; b += step1)
            push_log(s, &cap, bits_to_f64(b));
    } else {
        const uint32_t top = 0x7F7FFFFFu, step = 2861u * stride_scale + 1;
        for (uint32_t b = 1; b <= top && b >= 1; b += step)
            push_log(s, &cap, bits_to_f32(b));
        const uint32_t lo = 0x3E800000u, hi = 0x40800000u; /* [1/4, 4) */
        const uint32_t step1 = 127u * stride_scale;
        for (uint32_t b = lo; b < hi; b += step1)
            push_log(s, &cap, bits_to_f32(b));
    }
}

/* ---- references ---- */

static const long double SQRT_HALF_HI = 0.70710678118654752440084436210484903928L;
static long double sqrt_half_lo(void)
{
    /* 1/sqrt2 - SQRT_HALF_HI, from 2 (hi + lo)^2 = 1: lo = (1 - 2 hi^2) / (4 hi) */
    long double h2 = SQRT_HALF_HI * SQRT_HALF_HI;
    long double e = fmal(SQRT_HALF_HI, SQRT_HALF_HI, -h2); /* hi^2 = h2 + e exactly */
    return ((1.0L - 2.0L * h2) - 2.0L * e) / (4.0L * SQRT_HALF_HI);
}

/* Phi(x) = erfc(-x/sqrt2)/2 and phi(x) = exp(-x^2/2)/sqrt(2 pi) at x exactly. */
static long double Phi(long double x)
{
    long double z = -x * SQRT_HALF_HI;
    long double dz = -fmal(x, SQRT_HALF_HI, -(-z)) - x * sqrt_half_lo(); /* -x/sqrt2 = z + dz */
    /* erfc(z + dz) = erfc(z) - dz 2/sqrt(pi) exp(-z^2) */
    return 0.5L * (erfcl(z) - dz * 1.12837916709551257389615890312154517L * expl(-z * z));
}
static long double phi(long double x)
{
    long double x2 = x * x, e = fmal(x, x, -x2); /* x^2 = x2 + e exactly */
    return expl(-0.5L * x2) * (1.0L - 0.5L * e) * 0.39894228040143267793994605993438186848L;
}
static long double gelu_tanh_ref(long double x)
{
    long double u = 0.79788456080286535587989211986876373695L * (x + 0.044715L * x * x * x);
    return x / (1.0L + expl(-2.0L * u)); /* = x (1 + tanh u)/2, without cancellation */
}
static long double gelu_tanh_grad_ref(long double x)
{
    long double u = 0.79788456080286535587989211986876373695L * (x + 0.044715L * x * x * x);
    long double s = 1.0L / (1.0L + expl(-2.0L * u)), sm = 1.0L / (1.0L + expl(2.0L * u));
    return s + 2.0L * x * s * sm * 0.79788456080286535587989211986876373695L * (1.0L + 3.0L * 0.044715L * x * x);
}

/* the reference of function f at x, in long double (before rounding to the dtype) */
static long double reference(int f, long double x)
{
    switch (f) {
    case F_EXP: return expl(x);
    case F_ERF: return erfl(x);
    case F_ERFC: return erfcl(x);
    case F_TANH: return tanhl(x);
    case F_LOG: return logl(x);
    case F_GELU_ERF: return x * Phi(x);
    case F_GELU_TANH: return gelu_tanh_ref(x);
    case F_GELU_GRAD_ERF: return Phi(x) + x * phi(x);
    default: return gelu_tanh_grad_ref(x);
    }
}

/* |got - ref| in ulps of ref's binade (f32: 24-bit, f64: 53-bit significands; below the
   smallest normal, in units of the smallest subnormal). Overflow: a result that must round to
   inf counts inf as 2^(emax+1); NaN where the reference is a number is infinitely wrong. */
static double ulp_error(double got, long double ref, int f64)
{
    const int mant = f64 ? 52 : 23, emin = f64 ? -1022 : -126, emax = f64 ? 1023 : 127;
    const long double top = ldexpl(1.0L, emax + 1);
    if (isnan(ref))
        return isnan(got) ? 0 : INFINITY;
    if (isnan(got))
        return INFINITY;
    long double g = got, a = fabsl(ref);
    int rounds_to_inf = a >= top - ldexpl(1.0L, emax - mant - 1);
    if (isinf(g))
        g = copysignl(top, g);
    if (rounds_to_inf)
        return (g > 0) == (ref > 0) && fabsl(g) == top ? 0 : (double)((top - fabsl(g)) / ldexpl(1.0L, emax - mant));
    int e = a == 0 ? emin : ilogbl(a);
    if (e < emin)
        e = emin;
    return (double)(fabsl(g - ref) / ldexpl(1.0L, e - mant));
}

/* ---- kernels ---- */

static kg_kernel *build_jit(int f64, size_t n, size_t m, const char *unroll, int fma, const char *jit)
{
    char nparam[32], mparam[32];
    snprintf(nparam, sizeof nparam, "n=%zu", n);
    snprintf(mparam, sizeof mparam, "m=%zu", m);
    const char *params[] = {nparam, mparam};
    kg_request req;
    memset(&req, 0, sizeof req);
    req.graph = SPEC;
    req.params = params;
    req.nparams = 2;
    req.dtype = f64 ? "f64" : "f32";
    req.unroll = unroll;
    req.fma = fma ? "on" : "off";
    req.jit = jit;
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(&req, &k, &err);
    if (st == KG_OK)
        st = kg_compile(k, &err);
    if (st != KG_OK) {
        print_error("%s %s: %s\n", SPEC, req.dtype, err ? err : "?");
        free(err);
        kg_free(k);
        fail();
    }
    return k;
}
static kg_kernel *build(int f64, size_t n, size_t m, const char *unroll, int fma)
{
    return build_jit(f64, n, m, unroll, fma, NULL);
}

/* Buffers of one pass, by kg_arg_at order; the input a holds the sweep, b log's sweep (in the
   dtype); the cotangent named cot_on is 1, the others 0. */
typedef struct {
    int n;
    void *args[16];
} argset;

static void argset_make(argset *as, const kg_kernel *k, kg_pass p, const sweep *s, const char *cot_on)
{
    size_t es = kg_elem_size(k);
    as->n = kg_nargs(k, p);
    assert_true(as->n < 15);
    for (int i = 0; i < as->n; i++) {
        const kg_arg *a = kg_arg_at(k, p, i);
        int of_b = strcmp(a->name, "b") == 0 || strcmp(a->name, "y_log") == 0;
        assert_int_equal(a->count, of_b ? s->nl : s->n);
        as->args[i] = calloc(a->count, es);
        assert_non_null(as->args[i]);
        for (size_t j = 0; j < a->count; j++) {
            double v = 0;
            if (a->role == KG_ROLE_INPUT)
                v = of_b ? s->xl[j] : s->x[j];
            else if (a->role == KG_ROLE_COTANGENT && strcmp(a->name, cot_on) == 0)
                v = 1;
            if (es == 4)
                ((float *)as->args[i])[j] = (float)v;
            else
                ((double *)as->args[i])[j] = v;
        }
    }
    size_t ws = kg_ws_size(k, p);
    as->args[as->n] = ws ? calloc(ws, es) : NULL;
}

static void argset_free(argset *as)
{
    for (int i = 0; i <= as->n; i++)
        free(as->args[i]);
}

/* the buffer of the argument named NAME with role ROLE */
static const void *arg_named(const kg_kernel *k, kg_pass p, const argset *as, kg_role role, const char *name)
{
    for (int i = 0; i < as->n; i++) {
        const kg_arg *a = kg_arg_at(k, p, i);
        if (a->role == role && strcmp(a->name, name) == 0)
            return as->args[i];
    }
    fail_msg("no argument %s", name);
    return NULL;
}

static double elem(const void *buf, size_t i, int f64)
{
    return f64 ? ((const double *)buf)[i] : ((const float *)buf)[i];
}

/* ---- 1. error bounds ---- */

static const char *const OUT_NAME[NFN] = {"y_exp", "y_erf", "y_erfc", "y_tanh", "y_gelu_erf",
                                          "y_gelu_tanh", "y_log", "y_gelu_erf", "y_gelu_tanh"};

static void max_ulp(int f64, int fma)
{
    sweep s = make_sweep(f64, 5);
    kg_kernel *k = build(f64, s.n, s.nl, "none", fma);
    argset fwd;
    argset_make(&fwd, k, KG_FORWARD, &s, "");
    assert_int_equal(kg_call(k, KG_FORWARD, fwd.args, fwd.n + 1), 0);
    int bad = 0;
    print_message("  %s%s, %zu points, log %zu (JIT, tcc)\n", f64 ? "f64" : "f32", fma ? " --fma on" : "",
                  s.n, s.nl);
    for (int f = 0; f < NFN; f++) {
        const void *y;
        argset vjp;
        int grad = f >= F_GELU_GRAD_ERF;
        if (grad) {
            argset_make(&vjp, k, KG_VJP, &s, OUT_NAME[f]);
            assert_int_equal(kg_call(k, KG_VJP, vjp.args, vjp.n + 1), 0);
            y = arg_named(k, KG_VJP, &vjp, KG_ROLE_GRAD, "a");
        } else {
            y = arg_named(k, KG_FORWARD, &fwd, KG_ROLE_OUTPUT, OUT_NAME[f]);
        }
        double worst = 0, at = 0, got_at = 0, plain = 0;
        long double ref_at = 0;
        const double *xs = f == F_LOG ? s.xl : s.x;
        size_t n = f == F_LOG ? s.nl : s.n;
        for (size_t i = 0; i < n; i++) {
            double x = xs[i];
            if (grad && !(x < 80)) /* the VJP adds 0 * exp'(x): keep it finite */
                continue;
            double got = elem(y, i, f64);
            long double ref = reference(f, x);
            double err = grad ? (double)(fabsl(got - ref) / fmaxl(1.0L, fabsl(ref))) : ulp_error(got, ref, f64);
            if (f == F_GELU_TANH) { /* conditioned by u: see BOUND */
                plain = fmax(plain, err);
                err /= 1 + 2 * fabs(0.7978845608028654 * (x + 0.044715 * x * x * x));
            }
            if (!(err <= worst)) {
                worst = err;
                at = x;
                got_at = got;
                ref_at = ref;
            }
        }
        double bound = grad ? GRAD_TOL[f64] : BOUND[fma][f64][f];
        print_message("  %-11s max %-12s %-9.3g (bound %g) at x = %-24.17g (got %.17g, exact %.20Lg)%s\n",
                      FN_NAMES[f], grad ? "err" : f == F_GELU_TANH ? "ulp/(1+2|u|)" : "ulp", worst, bound,
                      at, got_at, ref_at, worst <= bound ? "" : "  ABOVE THE BOUND");
        if (f == F_GELU_TANH)
            print_message("  %-11s max ulp          %-9.3g (the rounding of u, amplified 2|u| times)\n", "", plain);
        bad |= !(worst <= bound);
        if (grad)
            argset_free(&vjp);
    }
    argset_free(&fwd);
    kg_free(k);
    free(s.x);
    free(s.xl);
    assert_false(bad);
}

/* state: a variant {f64, fma} (main's prestates) */
static void max_ulp_test(void **state)
{
    const int *v = *state;
    max_ulp(v[0], v[1]);
}

/* Opt-in (KERNGEN_MATHFN_EVERY_FLOAT=off|on, the fma option; about 30 minutes): GELU (erf) in
   f32 at every float of [-15, 6] (beyond, it is 0 or x), through the cc tier for speed (the
   same bits as the JIT), against the same reference. Made README's "every float" figures. */
static void every_float_gelu_erf_f32(void **state)
{
    (void)state;
    const char *opt = getenv("KERNGEN_MATHFN_EVERY_FLOAT");
    if (!opt || !*opt)
        skip();
    int fma = strcmp(opt, "on") == 0;
    enum { CHUNK = 1 << 20 };
    double one = 1.0;
    sweep s = {0, CHUNK, calloc(CHUNK, sizeof(double)), 1, &one};
    assert_non_null(s.x);
    kg_kernel *k = build_jit(0, CHUNK, 1, "none", fma, "cc");
    double worst = 0, at = 0;
    unsigned long long count = 0;
    for (int neg = 0; neg < 2; neg++) {
        float top = neg ? 15.0f : 6.0f;
        uint32_t end;
        memcpy(&end, &top, sizeof end);
        for (uint64_t u0 = 0; u0 <= end; u0 += CHUNK) {
            size_t n = 0;
            for (uint64_t u = u0; u < u0 + CHUNK; u++) { /* past the end: repeat the last */
                uint32_t b = (uint32_t)(u <= end ? u : end);
                float m;
                memcpy(&m, &b, sizeof m);
                s.x[n++] = neg ? -(double)m : (double)m;
            }
            argset fwd;
            argset_make(&fwd, k, KG_FORWARD, &s, "");
            assert_int_equal(kg_call(k, KG_FORWARD, fwd.args, fwd.n + 1), 0);
            const void *y = arg_named(k, KG_FORWARD, &fwd, KG_ROLE_OUTPUT, "y_gelu_erf");
            for (size_t i = 0; i < CHUNK && u0 + i <= end; i++) {
                double e = ulp_error(elem(y, i, 0), reference(F_GELU_ERF, s.x[i]), 0);
                if (!(e <= worst)) {
                    worst = e;
                    at = s.x[i];
                }
                count++;
            }
            argset_free(&fwd);
        }
    }
    print_message("  gelu erf f32%s: %llu floats of [-15, 6], max %.3g ulp at x = %.9g (bound %g)\n",
                  fma ? " --fma on" : "", count, worst, at, BOUND[fma][0][F_GELU_ERF]);
    kg_free(k);
    free(s.x);
    assert_true(worst <= BOUND[fma][0][F_GELU_ERF]);
}

/* ---- 2. special values ---- */

static void special_values(void **state)
{
    (void)state;
    for (int v = 0; v < 4; v++) { /* f32, f64; then both with --fma on */
        int f64 = v & 1, fma = v >> 1;
        const double x[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0};
        /* expected: exp erf erfc tanh gelu_erf gelu_tanh, NAN meaning "a NaN" */
        const double want[][6] = {
            {NAN, NAN, NAN, NAN, NAN, NAN},
            {INFINITY, 1, 0, 1, INFINITY, INFINITY},
            {0, -1, 2, -1, -0.0, NAN}, /* gelu erf: the limit; tanh: -inf * 0 as in PyTorch */
            {1, -0.0, 1, -0.0, -0.0, -0.0},
            {1, 0.0, 1, 0.0, 0.0, 0.0},
        };
        /* log, with its expected values */
        /* the last: minus the smallest subnormal of the dtype */
        const double xl[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, -1.0, 1.0,
                             f64 ? -4.9406564584124654e-324 : -1.4012984643248171e-45};
        const double wantl[] = {NAN, INFINITY, NAN, -INFINITY, -INFINITY, NAN, 0.0, NAN};
        sweep s = {f64, 5, (double *)x, 8, (double *)xl};
        kg_kernel *k = build(f64, s.n, s.nl, "none", fma);
        argset fwd;
        argset_make(&fwd, k, KG_FORWARD, &s, "");
        assert_int_equal(kg_call(k, KG_FORWARD, fwd.args, fwd.n + 1), 0);
        int bad = 0;
        for (int f = 0; f <= F_GELU_TANH; f++) {
            const void *y = arg_named(k, KG_FORWARD, &fwd, KG_ROLE_OUTPUT, OUT_NAME[f]);
            for (size_t i = 0; i < s.n; i++) {
                double got = elem(y, i, f64), w = want[i][f];
                int ok = isnan(w) ? isnan(got) : (got == w && signbit(got) == signbit(w));
                if (!ok) {
                    print_error("%s%s %s(%g) = %g, expected %g\n", f64 ? "f64" : "f32", fma ? " fma" : "",
                                FN_NAMES[f], x[i], got, w);
                    bad = 1;
                }
            }
        }
        const void *yl = arg_named(k, KG_FORWARD, &fwd, KG_ROLE_OUTPUT, "y_log");
        for (size_t i = 0; i < s.nl; i++) {
            double got = elem(yl, i, f64), w = wantl[i];
            int ok = isnan(w) ? isnan(got) : (got == w && signbit(got) == signbit(w));
            if (!ok) {
                print_error("%s%s log(%g) = %g, expected %g\n", f64 ? "f64" : "f32", fma ? " fma" : "", xl[i],
                            got, w);
                bad = 1;
            }
        }
        argset_free(&fwd);
        kg_free(k);
        assert_false(bad);
    }
}

/* ---- 3. the same bits from gcc -O3 and clang -O3 ---- */

typedef int (*entry_fn)(void *const *);

static int run(const char *const *argv, const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        print_error("  %s", line);
    fclose(f);
}

/* thunk_<pass>(void *const *a): calls the generated function with typed pointers */
static void write_thunk(const kg_kernel *k, const char *path)
{
    static const char *const pass_names[] = {"forward", "vjp"};
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const char *T = kg_elem_size(k) == 4 ? "float" : "double";
    fprintf(f, "#include \"%s\"\n", kg_text(k, KG_TEXT_HEADER_FILE));
    for (int p = 0; p < 2; p++) {
        int n = kg_nargs(k, (kg_pass)p);
        fprintf(f, "int thunk_%s(void *const *a);\nint thunk_%s(void *const *a)\n{\n    return %s_%s(",
                pass_names[p], pass_names[p], kg_text(k, KG_TEXT_NAME), pass_names[p]);
        for (int i = 0; i < n; i++) {
            kg_role r = kg_arg_at(k, (kg_pass)p, i)->role;
            int read = r == KG_ROLE_INPUT || r == KG_ROLE_COTANGENT || r == KG_ROLE_TANGENT;
            fprintf(f, "(%s%s *)a[%d], ", read ? "const " : "", T, i);
        }
        fprintf(f, "(%s *)a[%d]);\n}\n", T, n);
    }
    assert_int_equal(fclose(f), 0);
}

/* Builds the kernel's files with COMPILER into a .so and compares every output with the JIT's
   on the sweep; 0 if identical. */
static int compare_compiler(const kg_kernel *k, const sweep *s, const char *dir, const char *compiler)
{
    char src[512], thunk[512], so[512], log[512];
    snprintf(src, sizeof src, "%s/%s", dir, kg_text(k, KG_TEXT_SOURCE_FILE));
    snprintf(thunk, sizeof thunk, "%s/thunk_%s.c", dir, kg_text(k, KG_TEXT_NAME));
    snprintf(so, sizeof so, "%s/%s_%s.so", dir, kg_text(k, KG_TEXT_NAME), compiler);
    snprintf(log, sizeof log, "%s/%s.log", dir, compiler);
    write_thunk(k, thunk);
    const char *argv[] = {compiler, "-std=c99", "-O3", "-march=native", "-ffp-contract=off",
                          "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fPIC", "-shared",
                          "-I", dir, "-o", so, src, thunk, NULL};
    if (run(argv, log) != 0) {
        print_error("%s failed:\n", compiler);
        print_file(log);
        return 1;
    }
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        print_error("dlopen %s: %s\n", so, dlerror());
        return 1;
    }
    int bad = 0;
    static const char *const thunks[] = {"thunk_forward", "thunk_vjp"};
    static const char *const cots[] = {"", "y_gelu_erf", "y_gelu_tanh", "y_log"};
    for (int c = 0; c < 4 && !bad; c++) {
        kg_pass p = c == 0 ? KG_FORWARD : KG_VJP;
        void *sym = dlsym(lib, thunks[p]);
        assert_non_null(sym);
        entry_fn fn;
        memcpy(&fn, &sym, sizeof sym); /* ISO C has no object-to-function pointer cast */
        argset jit, aot;
        argset_make(&jit, k, p, s, cots[c]);
        argset_make(&aot, k, p, s, cots[c]);
        assert_int_equal(kg_call(k, p, jit.args, jit.n + 1), fn(aot.args));
        size_t es = kg_elem_size(k);
        for (int i = 0; i < jit.n && !bad; i++) {
            const kg_arg *a = kg_arg_at(k, p, i);
            if (a->role != KG_ROLE_OUTPUT && a->role != KG_ROLE_GRAD)
                continue;
            for (size_t j = 0; j < a->count; j++)
                if (memcmp((char *)jit.args[i] + j * es, (char *)aot.args[i] + j * es, es) != 0) {
                    int of_b = strcmp(a->name, "b") == 0 || strcmp(a->name, "y_log") == 0;
                    print_error("%s %s: %s[%zu] (x = %.17g): JIT %.17g, %s %.17g\n", kg_text(k, KG_TEXT_NAME),
                                c == 0 ? "forward" : cots[c], a->cname, j, of_b ? s->xl[j] : s->x[j],
                                elem(jit.args[i], j, es == 8),
                                compiler, elem(aot.args[i], j, es == 8));
                    bad = 1;
                    break;
                }
        }
        argset_free(&jit);
        argset_free(&aot);
    }
    dlclose(lib);
    return bad;
}

static void bit_identical_compilers(void **state)
{
    (void)state;
    char dir[] = "/tmp/kg_mathfn_XXXXXX";
    assert_non_null(mkdtemp(dir));
    int bad = 0;
    for (int v = 0; v < 4; v++) { /* f32, f64; then both with --fma on */
        int f64 = v & 1, fma = v >> 1;
        sweep s = make_sweep(f64, 16);
        kg_kernel *k = build(f64, s.n, s.nl, "none", fma);
        char *err = NULL;
        if (kg_write_files(k, dir, &err) != KG_OK) {
            print_error("kg_write_files: %s\n", err ? err : "?");
            free(err);
            bad = 1;
        }
        for (int c = 0; c < 2 && !bad; c++) {
            const char *cc = c == 0 ? "gcc" : "clang";
            int b = compare_compiler(k, &s, dir, cc);
            print_message("  %s%s %s -O3 -march=native: %zu points, %s\n", f64 ? "f64" : "f32",
                          fma ? " --fma on" : "", cc, s.n, b ? "DIFFERENT bits" : "the JIT's bits");
            bad |= b;
        }
        kg_free(k);
        free(s.x);
        free(s.xl);
    }
    /* remove the directory's files, then the directory */
    char cmd_dir[64];
    snprintf(cmd_dir, sizeof cmd_dir, "%s", dir);
    const char *rm[] = {"rm", "-rf", cmd_dir, NULL};
    run(rm, "/dev/null");
    assert_false(bad);
}

int main(void)
{
    static const int VARIANTS[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}}; /* {f64, fma} */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(max_ulp_test, (void *)VARIANTS[0]),
        cmocka_unit_test_prestate(max_ulp_test, (void *)VARIANTS[1]),
        cmocka_unit_test_prestate(max_ulp_test, (void *)VARIANTS[2]),
        cmocka_unit_test_prestate(max_ulp_test, (void *)VARIANTS[3]),
        cmocka_unit_test(special_values),
        cmocka_unit_test(bit_identical_compilers),
        cmocka_unit_test(every_float_gelu_erf_f32),
    };
    return cmocka_run_group_tests_name("mathfn", tests, NULL, NULL);
}
