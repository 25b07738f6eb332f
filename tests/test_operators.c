#define _GNU_SOURCE /* mkstemps */
/*
 * test_operators.c - every operator except layernorm (which has its own test module) against
 * an independent plain-loop reference written here from DESIGN.md's formulas.
 *
 * The references are straightforward nested loops in long double: forward, a hand-derived
 * VJP (gradient of every input) and a hand-derived JVP (tangent of the output). Kernels are
 * built with kg_generate + kg_compile (libtcc) and called through kg_call; arguments are
 * matched to the test's buffers by kg_arg_at's name and role, and their counts are checked.
 * Every operator runs in f64 and f32 at several shapes (odd ones included) and at the
 * degenerate cases DESIGN.md makes contracts of. f32 kernels get inputs rounded to float and
 * are compared against the long double reference computed from those rounded inputs.
 *
 * Error measure: max|kernel - ref| / max(1, max|ref|) per output tensor, or the plain
 * max|kernel - ref| for the "hard" f32 inputs (mean 1e4, unit variance). The group teardown
 * prints the worst error measured per operator and dtype.
 *
 * The references need x87 80-bit long double (gcc on x86-64): under valgrind, which computes
 * long double in 64 bits, the f64 mean-1e4 cases exceed TOL_F64 because of the reference.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kerngen.h"

/* forward, vjp and jvp: the passes checked here against the references (forward_train and
   vjp_saved are checked against them bit for bit: test_aot.c) */
enum { KGT_CORE_PASSES = KG_JVP + 1 };

/* ---- tolerances ----
 * A few times the worst errors measured over every case here (the group teardown prints them;
 * 2026-11-30, default and --fma on kernels, after the factored sums of ops.lua): f64 2.7e-14
 * (normalize_axis vjp), f32 5.2e-6 (normalize_axis vjp; 3.8e-6 before), f32 mean-1e4 2.1e-6
 * absolute, GELU tail f64 1.1e-14 (tanh), f32 2.4e-6. */

/* f64 kernel vs long double reference: max|d| / max(1, max|ref|) */
#define TOL_F64 1e-13
/* f32 kernel (float-rounded inputs) vs long double reference, same measure, normal inputs */
#define TOL_F32 1e-5
/* f32 kernel, normalizations of inputs with mean 1e4 and unit variance: absolute error */
#define TOL_F32_HARD_ABS 1e-5
/* GELU negative tail (pre-activations -8..-12; f32 tanh: -4..-8): elementwise relative error.
 * f32 floor: GELU's condition number there is ~h^2 = 144, so rounding h/sqrt2 costs ~5e-6. */
#define TOL_TAIL_REL_F64 1e-13
#define TOL_TAIL_REL_F32 1e-5

#define HARD_MEAN 1e4
#define MAXIN 8

static const long double PI_L = 3.141592653589793238462643383279502884L;

/* ---- deterministic random numbers: 64-bit LCG, Box-Muller ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s * 2862933555777941757ULL + 3037000493ULL;
}

static double rng_uniform(void) /* (0, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(rng_state >> 11) + 0.5) * 0x1p-53;
}

static double rng_normal(void)
{
    double u1 = rng_uniform(), u2 = rng_uniform();
    return sqrt(-2.0 * log(u1)) * cos(2.0 * (double)PI_L * u2);
}

/* ---- worst errors, printed by the group teardown ---- */

typedef struct {
    char key[80];
    char where[160]; /* the case and tensor of the worst error */
    double worst;
    double tol;
    int absolute;
} Stat;

static Stat stats[160];
static int nstats;

static void record(const char *key, const char *where, double err, double tol, int absolute)
{
    for (int i = 0; i < nstats; i++) {
        if (strcmp(stats[i].key, key) == 0) {
            if (!(err <= stats[i].worst)) {
                stats[i].worst = err;
                snprintf(stats[i].where, sizeof stats[i].where, "%s", where);
            }
            return;
        }
    }
    if (nstats < (int)(sizeof stats / sizeof stats[0])) {
        Stat *s = &stats[nstats++];
        snprintf(s->key, sizeof s->key, "%s", key);
        snprintf(s->where, sizeof s->where, "%s", where);
        s->worst = err;
        s->tol = tol;
        s->absolute = absolute;
    }
}

/* Returns 1 (after printing the first offending element) when the error exceeds tol. */
static int compare(const char *key, const char *what, const double *got, const long double *ref,
                   size_t n, double tol, int absolute)
{
    long double scale = 1, maxd = 0;
    if (!absolute)
        for (size_t i = 0; i < n; i++)
            if (fabsl(ref[i]) > scale)
                scale = fabsl(ref[i]);
    for (size_t i = 0; i < n; i++) {
        long double d = isfinite(got[i]) ? fabsl((long double)got[i] - ref[i]) : (long double)INFINITY;
        if (d > maxd)
            maxd = d;
    }
    double err = (double)(maxd / scale);
    record(key, what, err, tol, absolute);
    if (err <= tol)
        return 0;
    for (size_t i = 0; i < n; i++) {
        long double d = isfinite(got[i]) ? fabsl((long double)got[i] - ref[i]) : (long double)INFINITY;
        if (d / scale > tol) {
            print_error("%s: %s: error %.3g > %.3g; first differing element [%zu]: kernel %.17g, "
                        "reference %.17Lg\n", key, what, err, tol, i, got[i], ref[i]);
            break;
        }
    }
    return 1;
}

/* ---- kernels ---- */

typedef struct {
    const char *semantics, *vjp_form, *jvp_form, *unroll;
} Opts;

/* Unroll policy for kernels built without an explicit one (set by test_unroll_policies), and
   the fma option (set by test_fma_kernels). */
static const char *unroll_override, *fma_override;

static kg_status try_build(kg_kernel **k, char **err, const char *graph, const char *dtype,
                           const Opts *o, const char *params)
{
    char buf[512];
    const char *argv[32];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", params);
    for (char *p = strtok(buf, " "); p && n < 32; p = strtok(NULL, " "))
        argv[n++] = p;
    kg_request req;
    memset(&req, 0, sizeof req);
    req.graph = graph;
    req.params = argv;
    req.nparams = n;
    req.dtype = dtype;
    if (o) {
        req.semantics = o->semantics;
        req.vjp_form = o->vjp_form;
        req.jvp_form = o->jvp_form;
        req.unroll = o->unroll;
    }
    if (!req.unroll)
        req.unroll = unroll_override;
    req.fma = fma_override;
    return kg_generate(&req, k, err);
}

static kg_kernel *build_opts(const char *graph, const char *dtype, const Opts *o, const char *fmt, ...)
{
    char params[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(params, sizeof params, fmt, ap);
    va_end(ap);
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = try_build(&k, &err, graph, dtype, o, params);
    if (st == KG_OK)
        st = kg_compile(k, &err);
    if (st != KG_OK) {
        print_error("%s %s %s: status %d: %s\n", graph, params, dtype, (int)st, err ? err : "?");
        free(err);
        kg_free(k);
        fail();
    }
    return k;
}

#define build(graph, dtype, ...) build_opts(graph, dtype, NULL, __VA_ARGS__)

/* ---- a test case: named inputs with tangents, one output with its cotangent ---- */

typedef struct {
    int f32;
    int nin;
    const char *name[MAXIN];
    size_t count[MAXIN];
    double *in[MAXIN], *tan[MAXIN], *got_grad[MAXIN];
    long double *inL[MAXIN], *tanL[MAXIN], *ref_grad[MAXIN];
    const char *out;
    size_t nout;
    double *cot, *got_y, *got_ty;
    long double *cotL, *ref_y, *ref_ty;
    int rc[KGT_CORE_PASSES];
} Case;

static double *xalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static long double *xallocL(size_t n)
{
    long double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void fill_normal(double *p, size_t n, double mean, double sd)
{
    for (size_t i = 0; i < n; i++)
        p[i] = mean + sd * rng_normal();
}

static void case_init(Case *c, const char *dtype, const char *out, size_t nout)
{
    memset(c, 0, sizeof *c);
    c->f32 = strcmp(dtype, "f32") == 0;
    c->out = out;
    c->nout = nout;
    c->cot = xalloc(nout);
    c->got_y = xalloc(nout);
    c->got_ty = xalloc(nout);
    c->cotL = xallocL(nout);
    c->ref_y = xallocL(nout);
    c->ref_ty = xallocL(nout);
    /* non-uniform cotangents: normal values with a position-dependent scale */
    for (size_t i = 0; i < nout; i++)
        c->cot[i] = rng_normal() * (1.0 + 0.5 * sin(0.7 * (double)i));
}

/* Adds input `name` with `count` elements drawn from mean + sd N(0,1); tangents are N(0,1). */
static int case_input(Case *c, const char *name, size_t count, double mean, double sd)
{
    int j = c->nin++;
    assert_true(j < MAXIN);
    c->name[j] = name;
    c->count[j] = count;
    c->in[j] = xalloc(count);
    c->tan[j] = xalloc(count);
    c->got_grad[j] = xalloc(count);
    c->inL[j] = xallocL(count);
    c->tanL[j] = xallocL(count);
    c->ref_grad[j] = xallocL(count);
    fill_normal(c->in[j], count, mean, sd);
    fill_normal(c->tan[j], count, 0.0, 1.0);
    return j;
}

static void case_free(Case *c)
{
    for (int j = 0; j < c->nin; j++) {
        free(c->in[j]);
        free(c->tan[j]);
        free(c->got_grad[j]);
        free(c->inL[j]);
        free(c->tanL[j]);
        free(c->ref_grad[j]);
    }
    free(c->cot);
    free(c->got_y);
    free(c->got_ty);
    free(c->cotL);
    free(c->ref_y);
    free(c->ref_ty);
}

static double round_to(int f32, double v)
{
    return f32 ? (double)(float)v : v;
}

/* Rounds the data to the kernel's dtype and makes the long double copies the reference uses. */
static void case_prepare(Case *c)
{
    for (int j = 0; j < c->nin; j++) {
        for (size_t i = 0; i < c->count[j]; i++) {
            c->in[j][i] = round_to(c->f32, c->in[j][i]);
            c->tan[j][i] = round_to(c->f32, c->tan[j][i]);
            c->inL[j][i] = c->in[j][i];
            c->tanL[j][i] = c->tan[j][i];
            c->ref_grad[j][i] = 0;
        }
    }
    for (size_t i = 0; i < c->nout; i++) {
        c->cot[i] = round_to(c->f32, c->cot[i]);
        c->cotL[i] = c->cot[i];
    }
}

static int find_input(const Case *c, const char *name)
{
    for (int j = 0; j < c->nin; j++)
        if (strcmp(c->name[j], name) == 0)
            return j;
    print_error("kernel argument '%s' is not an input of the test case\n", name);
    fail();
    return -1;
}

/* Runs one pass: arguments are matched by name and role, their counts checked. */
static int case_call(Case *c, const kg_kernel *k, kg_pass pass)
{
    int nargs = kg_nargs(k, pass);
    int expect = pass == KG_FORWARD ? c->nin + 1 : pass == KG_VJP ? 2 * c->nin + 1 : 2 * c->nin + 1;
    assert_int_equal(nargs, expect);
    size_t es = kg_elem_size(k);
    assert_int_equal(es, c->f32 ? 4 : 8);
    void *args[2 * MAXIN + 2];
    double *dst[2 * MAXIN + 2];
    for (int i = 0; i < nargs; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        assert_non_null(a);
        const double *src = NULL;
        double *out = NULL;
        size_t count = 0;
        switch (a->role) {
        case KG_ROLE_INPUT: { int j = find_input(c, a->name); src = c->in[j]; count = c->count[j]; break; }
        case KG_ROLE_TANGENT: { int j = find_input(c, a->name); src = c->tan[j]; count = c->count[j]; break; }
        case KG_ROLE_GRAD: { int j = find_input(c, a->name); out = c->got_grad[j]; count = c->count[j]; break; }
        case KG_ROLE_COTANGENT: assert_string_equal(a->name, c->out); src = c->cot; count = c->nout; break;
        case KG_ROLE_OUTPUT: assert_string_equal(a->name, c->out); out = c->got_y; count = c->nout; break;
        case KG_ROLE_OUTPUT_TANGENT: assert_string_equal(a->name, c->out); out = c->got_ty; count = c->nout; break;
        case KG_ROLE_SAVED: case KG_ROLE_SAVE: fail_msg("%s: forward_train and vjp_saved are tested in test_aot", a->cname);
        case KG_ROLE_HYPER: case KG_ROLE_PARAM: case KG_ROLE_STATE: fail_msg("%s: train is tested in test_train", a->cname);
        }
        assert_int_equal(a->count, count);
        size_t prod = 1;
        for (int d = 0; d < a->ndim; d++)
            prod *= a->shape[d];
        assert_int_equal(prod, count);
        void *buf = malloc((count ? count : 1) * es);
        assert_non_null(buf);
        for (size_t e = 0; e < count; e++) {
            double v = src ? src[e] : NAN; /* outputs start as NaN: unwritten elements show */
            if (es == 4) ((float *)buf)[e] = (float)v;
            else ((double *)buf)[e] = v;
        }
        args[i] = buf;
        dst[i] = out;
    }
    size_t ws = kg_ws_size(k, pass);
    args[nargs] = ws ? malloc(ws * es) : NULL;
    if (ws)
        assert_non_null(args[nargs]);
    int rc = kg_call(k, pass, args, nargs + 1);
    for (int i = 0; i < nargs; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        if (dst[i])
            for (size_t e = 0; e < a->count; e++)
                dst[i][e] = es == 4 ? (double)((float *)args[i])[e] : ((double *)args[i])[e];
        free(args[i]);
    }
    free(args[nargs]);
    return rc;
}

static void case_run(Case *c, const kg_kernel *k)
{
    for (int p = 0; p < KGT_CORE_PASSES; p++)
        c->rc[p] = case_call(c, k, (kg_pass)p);
}

/* Compares all three passes; `label` names the operator and shape in messages. */
static int case_compare(const Case *c, const char *op, const char *case_label, int hard)
{
    char key[80], what[200], label[180];
    snprintf(label, sizeof label, "%s%s%s%s", case_label, unroll_override ? " unroll=" : "",
             unroll_override ? unroll_override : "", fma_override ? " fma=on" : "");
    double tol = c->f32 ? (hard ? TOL_F32_HARD_ABS : TOL_F32) : TOL_F64;
    int absolute = c->f32 && hard;
    snprintf(key, sizeof key, "%s %s%s", op, c->f32 ? "f32" : "f64", hard ? " mean1e4" : "");
    int bad = 0;
    for (int p = 0; p < KGT_CORE_PASSES; p++) {
        if (c->rc[p] != 0) {
            print_error("%s [%s]: pass %d returned %d (domain failure)\n", key, label, p, c->rc[p]);
            bad = 1;
        }
    }
    snprintf(what, sizeof what, "[%s] forward %s", label, c->out);
    bad |= compare(key, what, c->got_y, c->ref_y, c->nout, tol, absolute);
    for (int j = 0; j < c->nin; j++) {
        snprintf(what, sizeof what, "[%s] vjp %s.grad", label, c->name[j]);
        bad |= compare(key, what, c->got_grad[j], c->ref_grad[j], c->count[j], tol, absolute);
    }
    snprintf(what, sizeof what, "[%s] jvp %s.tangent", label, c->out);
    bad |= compare(key, what, c->got_ty, c->ref_ty, c->nout, tol, absolute);
    return bad;
}

static const char *const DTYPES[2] = {"f64", "f32"};

/* ====================================================================================== */
/* references                                                                             */
/* ====================================================================================== */

/* ---- normalization over arbitrary index sets: element e belongs to group grp[e] and uses
 * gamma/beta element pidx[e]. y = (x - mean_g) / sqrt(max(var_g, 0) + eps) * gamma + beta,
 * biased two-pass variance. Covers batchnorm, groupnorm, normalize_axis and layernorm. ---- */

typedef struct {
    size_t n, ngrp, nparam;
    size_t *grp, *pidx;
    long double eps;
} Groups;

static void groups_alloc(Groups *G, size_t n, size_t ngrp, size_t nparam, double eps)
{
    G->n = n;
    G->ngrp = ngrp;
    G->nparam = nparam;
    G->eps = eps;
    G->grp = calloc(n, sizeof *G->grp);
    G->pidx = calloc(n, sizeof *G->pidx);
    assert_non_null(G->grp);
    assert_non_null(G->pidx);
}

static void groups_free(Groups *G)
{
    free(G->grp);
    free(G->pidx);
}

/* xhat[n] and inv[ngrp] are saved for the derivatives */
static void norm_fwd(const Groups *G, const long double *x, const long double *gamma,
                     const long double *beta, long double *y, long double *xhat, long double *inv)
{
    long double *sum = xallocL(G->ngrp), *cnt = xallocL(G->ngrp), *ss = xallocL(G->ngrp);
    for (size_t e = 0; e < G->n; e++) {
        sum[G->grp[e]] += x[e];
        cnt[G->grp[e]] += 1;
    }
    for (size_t g = 0; g < G->ngrp; g++)
        sum[g] /= cnt[g]; /* mean */
    for (size_t e = 0; e < G->n; e++) {
        long double d = x[e] - sum[G->grp[e]];
        ss[G->grp[e]] += d * d;
    }
    for (size_t g = 0; g < G->ngrp; g++) {
        long double var = ss[g] / cnt[g];
        inv[g] = 1.0L / sqrtl((var > 0 ? var : 0) + G->eps);
    }
    for (size_t e = 0; e < G->n; e++) {
        xhat[e] = (x[e] - sum[G->grp[e]]) * inv[G->grp[e]];
        y[e] = xhat[e] * gamma[G->pidx[e]] + beta[G->pidx[e]];
    }
    free(sum);
    free(cnt);
    free(ss);
}

/* dx = inv (dxhat - mean_g(dxhat) - xhat mean_g(dxhat xhat)), dxhat = dy gamma;
 * dgamma[p] = sum dy xhat, dbeta[p] = sum dy over the elements using p. */
static void norm_vjp(const Groups *G, const long double *xhat, const long double *inv,
                     const long double *gamma, const long double *dy, long double *dx,
                     long double *dgamma, long double *dbeta)
{
    long double *m1 = xallocL(G->ngrp), *m2 = xallocL(G->ngrp), *cnt = xallocL(G->ngrp);
    for (size_t p = 0; p < G->nparam; p++)
        dgamma[p] = dbeta[p] = 0;
    for (size_t e = 0; e < G->n; e++) {
        long double dxh = dy[e] * gamma[G->pidx[e]];
        m1[G->grp[e]] += dxh;
        m2[G->grp[e]] += dxh * xhat[e];
        cnt[G->grp[e]] += 1;
        dgamma[G->pidx[e]] += dy[e] * xhat[e];
        dbeta[G->pidx[e]] += dy[e];
    }
    for (size_t e = 0; e < G->n; e++) {
        size_t g = G->grp[e];
        long double dxh = dy[e] * gamma[G->pidx[e]];
        dx[e] = inv[g] * (dxh - m1[g] / cnt[g] - xhat[e] * m2[g] / cnt[g]);
    }
    free(m1);
    free(m2);
    free(cnt);
}

/* ty = gamma inv (tx - mean_g(tx) - xhat mean_g(tx xhat)) + xhat tgamma + tbeta */
static void norm_jvp(const Groups *G, const long double *xhat, const long double *inv,
                     const long double *gamma, const long double *tx, const long double *tgamma,
                     const long double *tbeta, long double *ty)
{
    long double *m1 = xallocL(G->ngrp), *m2 = xallocL(G->ngrp), *cnt = xallocL(G->ngrp);
    for (size_t e = 0; e < G->n; e++) {
        m1[G->grp[e]] += tx[e];
        m2[G->grp[e]] += tx[e] * xhat[e];
        cnt[G->grp[e]] += 1;
    }
    for (size_t e = 0; e < G->n; e++) {
        size_t g = G->grp[e], p = G->pidx[e];
        long double txh = inv[g] * (tx[e] - m1[g] / cnt[g] - xhat[e] * m2[g] / cnt[g]);
        ty[e] = gamma[p] * txh + xhat[e] * tgamma[p] + tbeta[p];
    }
    free(m1);
    free(m2);
    free(cnt);
}

/* Case with inputs x, gamma, beta (indices 0, 1, 2) and output y. */
static void ref_norm_case(Case *c, const Groups *G)
{
    long double *xhat = xallocL(G->n), *inv = xallocL(G->ngrp);
    assert_int_equal(c->count[0], G->n);
    assert_int_equal(c->count[1], G->nparam);
    norm_fwd(G, c->inL[0], c->inL[1], c->inL[2], c->ref_y, xhat, inv);
    norm_vjp(G, xhat, inv, c->inL[1], c->cotL, c->ref_grad[0], c->ref_grad[1], c->ref_grad[2]);
    norm_jvp(G, xhat, inv, c->inL[1], c->tanL[0], c->tanL[1], c->tanL[2], c->ref_ty);
    free(xhat);
    free(inv);
}

/* ---- GELU ---- */

enum { GELU_ERF, GELU_TANH };

static long double gelu_ref(long double h, int kind)
{
    if (kind == GELU_ERF)
        return 0.5L * h * erfcl(-h / sqrtl(2.0L));
    /* 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): the same value, without the cancellation that
     * makes 1 + tanhl(u) exactly 0 in the negative tail even in long double */
    long double u = sqrtl(2.0L / PI_L) * (h + 0.044715L * h * h * h);
    return h / (1.0L + expl(-2.0L * u));
}

static long double gelu_grad_ref(long double h, int kind)
{
    if (kind == GELU_ERF)
        return 0.5L * erfcl(-h / sqrtl(2.0L)) + h * expl(-h * h / 2.0L) / sqrtl(2.0L * PI_L);
    /* d/dh [h (1 + tanh(u)) / 2] = (1 + t)/2 + h (1 - t^2)/2 u'; with s = (1 + t)/2 =
     * 1/(1 + exp(-2u)): 1 - t^2 = 4 s (1 - s) */
    long double c = sqrtl(2.0L / PI_L);
    long double u = c * (h + 0.044715L * h * h * h);
    long double sg = 1.0L / (1.0L + expl(-2.0L * u));
    return sg + 2.0L * h * sg * (1.0L - sg) * c * (1.0L + 3.0L * 0.044715L * h * h);
}

/* ---- mlp: pre = x w1^T + b1, hid = GELU(pre), y = hid w2^T + b2 (+ x when residual) ---- */

typedef struct {
    size_t seq, dm, dff;
    int gelu, residual;
} Mlp;

static void mlp_fwd(const Mlp *m, const long double *x, const long double *w1, const long double *b1,
                    const long double *w2, const long double *b2, long double *pre, long double *hid,
                    long double *y)
{
    for (size_t s = 0; s < m->seq; s++) {
        for (size_t f = 0; f < m->dff; f++) {
            long double acc = b1[f];
            for (size_t i = 0; i < m->dm; i++)
                acc += w1[f * m->dm + i] * x[s * m->dm + i];
            pre[s * m->dff + f] = acc;
            hid[s * m->dff + f] = gelu_ref(acc, m->gelu);
        }
        for (size_t o = 0; o < m->dm; o++) {
            long double acc = b2[o];
            for (size_t f = 0; f < m->dff; f++)
                acc += w2[o * m->dff + f] * hid[s * m->dff + f];
            y[s * m->dm + o] = acc + (m->residual ? x[s * m->dm + o] : 0);
        }
    }
}

static void mlp_vjp(const Mlp *m, const long double *x, const long double *w1, const long double *w2,
                    const long double *pre, const long double *hid, const long double *dy,
                    long double *dx, long double *dw1, long double *db1, long double *dw2,
                    long double *db2)
{
    long double *dpre = xallocL(m->seq * m->dff);
    memset(dw1, 0, m->dff * m->dm * sizeof *dw1);
    memset(db1, 0, m->dff * sizeof *db1);
    memset(dw2, 0, m->dm * m->dff * sizeof *dw2);
    memset(db2, 0, m->dm * sizeof *db2);
    for (size_t s = 0; s < m->seq; s++) {
        for (size_t o = 0; o < m->dm; o++) {
            db2[o] += dy[s * m->dm + o];
            for (size_t f = 0; f < m->dff; f++)
                dw2[o * m->dff + f] += dy[s * m->dm + o] * hid[s * m->dff + f];
        }
        for (size_t f = 0; f < m->dff; f++) {
            long double dh = 0;
            for (size_t o = 0; o < m->dm; o++)
                dh += w2[o * m->dff + f] * dy[s * m->dm + o];
            dpre[s * m->dff + f] = dh * gelu_grad_ref(pre[s * m->dff + f], m->gelu);
            db1[f] += dpre[s * m->dff + f];
            for (size_t i = 0; i < m->dm; i++)
                dw1[f * m->dm + i] += dpre[s * m->dff + f] * x[s * m->dm + i];
        }
        for (size_t i = 0; i < m->dm; i++) {
            long double acc = m->residual ? dy[s * m->dm + i] : 0;
            for (size_t f = 0; f < m->dff; f++)
                acc += w1[f * m->dm + i] * dpre[s * m->dff + f];
            dx[s * m->dm + i] = acc;
        }
    }
    free(dpre);
}

static void mlp_jvp(const Mlp *m, const long double *x, const long double *w1, const long double *w2,
                    const long double *pre, const long double *hid, const long double *tx,
                    const long double *tw1, const long double *tb1, const long double *tw2,
                    const long double *tb2, long double *ty)
{
    long double *thid = xallocL(m->dff);
    for (size_t s = 0; s < m->seq; s++) {
        for (size_t f = 0; f < m->dff; f++) {
            long double tp = tb1[f];
            for (size_t i = 0; i < m->dm; i++)
                tp += w1[f * m->dm + i] * tx[s * m->dm + i] + tw1[f * m->dm + i] * x[s * m->dm + i];
            thid[f] = gelu_grad_ref(pre[s * m->dff + f], m->gelu) * tp;
        }
        for (size_t o = 0; o < m->dm; o++) {
            long double acc = tb2[o] + (m->residual ? tx[s * m->dm + o] : 0);
            for (size_t f = 0; f < m->dff; f++)
                acc += w2[o * m->dff + f] * thid[f] + tw2[o * m->dff + f] * hid[s * m->dff + f];
            ty[s * m->dm + o] = acc;
        }
    }
    free(thid);
}

/* Case inputs x, w1, b1, w2, b2 -> y */
static void ref_mlp_case(Case *c, const Mlp *m)
{
    long double *pre = xallocL(m->seq * m->dff), *hid = xallocL(m->seq * m->dff);
    long double *const *I = c->inL, *const *T = c->tanL, *const *G = c->ref_grad;
    mlp_fwd(m, I[0], I[1], I[2], I[3], I[4], pre, hid, c->ref_y);
    mlp_vjp(m, I[0], I[1], I[3], pre, hid, c->cotL, G[0], G[1], G[2], G[3], G[4]);
    mlp_jvp(m, I[0], I[1], I[3], pre, hid, T[0], T[1], T[2], T[3], T[4], c->ref_ty);
    free(pre);
    free(hid);
}

/* Adds x, w1, b1, w2, b2 with scales that keep pre-activations O(1). */
static void mlp_inputs(Case *c, const Mlp *m)
{
    case_input(c, "x", m->seq * m->dm, 0.0, 1.0);
    case_input(c, "w1", m->dff * m->dm, 0.0, 1.5 / sqrt((double)m->dm));
    case_input(c, "b1", m->dff, 0.0, 0.5);
    case_input(c, "w2", m->dm * m->dff, 0.0, 1.0 / sqrt((double)m->dff));
    case_input(c, "b2", m->dm, 0.0, 0.5);
}

static void layernorm_groups(Groups *G, size_t rows, size_t dim, double eps)
{
    groups_alloc(G, rows * dim, rows, dim, eps);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < dim; j++) {
            G->grp[r * dim + j] = r;
            G->pidx[r * dim + j] = j;
        }
}

static void batchnorm_groups(Groups *G, size_t c, size_t spatial, double eps)
{
    groups_alloc(G, c * spatial, c, c, eps);
    for (size_t ch = 0; ch < c; ch++)
        for (size_t s = 0; s < spatial; s++) {
            G->grp[ch * spatial + s] = ch;
            G->pidx[ch * spatial + s] = ch;
        }
}

/* channel-last x[b][h][w][c]; group k = channels k*c/groups .. (k+1)*c/groups-1 at every (h,w) */
static void groupnorm_groups(Groups *G, size_t b, size_t h, size_t w, size_t c, size_t groups, double eps)
{
    groups_alloc(G, b * h * w * c, b * groups, c, eps);
    size_t cg = c / groups;
    for (size_t bb = 0; bb < b; bb++)
        for (size_t hh = 0; hh < h; hh++)
            for (size_t ww = 0; ww < w; ww++)
                for (size_t ch = 0; ch < c; ch++) {
                    size_t e = ((bb * h + hh) * w + ww) * c + ch;
                    G->grp[e] = bb * groups + ch / cg;
                    G->pidx[e] = ch;
                }
}

/* statistics along `axis` of a tensor of shape dims[0..rank-1]; per-element gamma, beta */
static void axis_groups(Groups *G, const size_t *dims, int rank, int axis, double eps)
{
    size_t outer = 1, inner = 1, n = dims[axis];
    for (int a = 0; a < axis; a++)
        outer *= dims[a];
    for (int a = axis + 1; a < rank; a++)
        inner *= dims[a];
    groups_alloc(G, outer * n * inner, outer * inner, outer * n * inner, eps);
    for (size_t o = 0; o < outer; o++)
        for (size_t k = 0; k < n; k++)
            for (size_t i = 0; i < inner; i++) {
                size_t e = (o * n + k) * inner + i;
                G->grp[e] = o * inner + i;
                G->pidx[e] = e;
            }
}

/* ====================================================================================== */
/* softmax, log_softmax, and the ties of maximum                                         */
/* ====================================================================================== */

/* A row's maximum *m and sum(exp(x - *m)), in long double. */
static long double row_exp_sum(const long double *xr, size_t dim, long double *m)
{
    long double s = 0;
    *m = xr[0];
    for (size_t j = 1; j < dim; j++)
        *m = xr[j] > *m ? xr[j] : *m;
    for (size_t j = 0; j < dim; j++)
        s += expl(xr[j] - *m);
    return s;
}

/* y = e / sum(e), e = exp(x - max x); dx = y (dy - sum(dy y)); ty = y (tx - sum(tx y)). */
static void ref_softmax(Case *c, size_t rows, size_t dim)
{
    const long double *x = c->inL[0], *tx = c->tanL[0];
    for (size_t r = 0; r < rows; r++) {
        const long double *xr = x + r * dim;
        long double m, s = row_exp_sum(xr, dim, &m), sd = 0, st = 0;
        for (size_t j = 0; j < dim; j++) {
            long double y = expl(xr[j] - m) / s;
            c->ref_y[r * dim + j] = y;
            sd += c->cotL[r * dim + j] * y;
            st += tx[r * dim + j] * y;
        }
        for (size_t j = 0; j < dim; j++) {
            long double y = c->ref_y[r * dim + j];
            c->ref_grad[0][r * dim + j] = y * (c->cotL[r * dim + j] - sd);
            c->ref_ty[r * dim + j] = y * (tx[r * dim + j] - st);
        }
    }
}

/* y = d - log(sum(exp(d))), d = x - max x; with p = softmax(x): dx = dy - p sum(dy);
   ty = tx - sum(tx p). */
static void ref_log_softmax(Case *c, size_t rows, size_t dim)
{
    const long double *x = c->inL[0], *tx = c->tanL[0];
    for (size_t r = 0; r < rows; r++) {
        const long double *xr = x + r * dim;
        long double m, s = row_exp_sum(xr, dim, &m), sd = 0, st = 0;
        long double ls = logl(s);
        for (size_t j = 0; j < dim; j++) {
            c->ref_y[r * dim + j] = (xr[j] - m) - ls;
            sd += c->cotL[r * dim + j];
            st += tx[r * dim + j] * expl(xr[j] - m) / s;
        }
        for (size_t j = 0; j < dim; j++) {
            long double p = expl(xr[j] - m) / s;
            c->ref_grad[0][r * dim + j] = c->cotL[r * dim + j] - p * sd;
            c->ref_ty[r * dim + j] = tx[r * dim + j] - st;
        }
    }
}

typedef void (*row_ref)(Case *c, size_t rows, size_t dim);

static int row_case(const char *graph, row_ref ref, const Opts *o, size_t rows, size_t dim, const char *dtype,
                    double mean, double sd, const char *label)
{
    kg_kernel *k = build_opts(graph, dtype, o, "rows=%zu dim=%zu", rows, dim);
    Case c;
    case_init(&c, dtype, "y", rows * dim);
    case_input(&c, "x", rows * dim, mean, sd);
    case_prepare(&c);
    ref(&c, rows, dim);
    case_run(&c, k);
    kg_free(k);
    int bad = case_compare(&c, graph, label, 0);
    case_free(&c);
    return bad;
}

/* softmax and log_softmax, derived and closed-form derivatives: shapes odd and even, rows far
   from 0 (exp of x itself would overflow: the shift keeps every exponent <= 0), a wide spread
   (log_softmax's outputs down to about -100: the error is relative to the largest), constant
   rows (y = 1/dim, -log(dim)). */
static int row_family(const char *graph, row_ref ref)
{
    static const size_t shapes[][2] = {{1, 1}, {3, 5}, {4, 64}, {7, 33}, {2, 130}};
    static const struct {
        size_t rows, dim;
        double mean, sd;
        const char *what;
    } hard[] = {{3, 17, 1000.0, 1.0, "mean 1000"}, {3, 17, -1000.0, 1.0, "mean -1000"},
                {3, 17, 0.0, 20.0, "sd 20"}, {2, 9, 5.0, 0.0, "constant rows"}};
    static const Opts forms[] = {{NULL, "derived", "derived", NULL}, {NULL, "closed", "closed", NULL}};
    int bad = 0;
    char label[80];
    for (int t = 0; t < 2; t++)
        for (int f = 0; f < 2; f++) {
            const char *fl = forms[f].vjp_form;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                snprintf(label, sizeof label, "rows=%zu dim=%zu %s", shapes[s][0], shapes[s][1], fl);
                bad |= row_case(graph, ref, &forms[f], shapes[s][0], shapes[s][1], DTYPES[t], 0.0, 1.0, label);
            }
            for (size_t h = 0; h < sizeof hard / sizeof hard[0]; h++) {
                snprintf(label, sizeof label, "%s %s", hard[h].what, fl);
                bad |= row_case(graph, ref, &forms[f], hard[h].rows, hard[h].dim, DTYPES[t], hard[h].mean,
                                hard[h].sd, label);
            }
        }
    return bad;
}

static void test_softmax(void **state)
{
    (void)state;
    rng_seed(11);
    assert_false(row_family("softmax", ref_softmax));
}

static void test_log_softmax(void **state)
{
    (void)state;
    rng_seed(12);
    assert_false(row_family("log_softmax", ref_log_softmax));
}

/* maximum(a, a): each argument gets half the cotangent (the tie rule); g.max over a row with
   two equal maxima gives each of them half. */
static void test_maximum_ties(void **state)
{
    (void)state;
    static const char spec[] =
        "return { name = \"ties\", summary = \"s\", dims = { { \"n\", 4 } },\n"
        "  inputs = { { \"a\", \"n\" }, { \"b\", \"n\" } }, outputs = { \"y\", \"z\" },\n"
        "  forward = function(g, v) v.y = g.maximum(v.a, v.b); v.z = g.max(v.a, 1) end }\n";
    char path[] = "/tmp/kg_ties_XXXXXX.lua";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, spec, sizeof spec - 1), (int)(sizeof spec - 1));
    close(fd);
    kg_request req = {0};
    req.graph = path;
    req.dtype = "f64";
    kg_kernel *k = NULL;
    char *err = NULL;
    if (kg_generate(&req, &k, &err) != KG_OK || kg_compile(k, &err) != KG_OK)
        fail_msg("%s", err);
    double a[4] = {1, 3, 3, -2}, b[4] = {1, 0, 5, -2}, ycot[4] = {1, 1, 1, 1}, zcot[1] = {1};
    double ag[4], bg[4], ws[64];
    assert_true(kg_ws_size(k, KG_VJP) <= 64);
    void *args[] = {a, b, ycot, zcot, ag, bg, ws};
    assert_int_equal(kg_call(k, KG_VJP, args, 7), 0);
    /* y: a[0] = b[0] and a[3] = b[3] tie (1/2 each); z = max(a) = 3 at a[1] and a[2] (1/2 each) */
    static const double want_a[4] = {0.5, 1 + 0.5, 0 + 0.5, 0.5}, want_b[4] = {0.5, 0, 1, 0.5};
    for (int i = 0; i < 4; i++) {
        assert_true(ag[i] == want_a[i]);
        assert_true(bg[i] == want_b[i]);
    }
    kg_free(k);
    remove(path);
}

/* ====================================================================================== */
/* rmsnorm                                                                                */
/* ====================================================================================== */

/* y = x inv gamma (+ beta), inv = 1/sqrt(mean(x^2) + eps), xhat = x inv;
 * dx = inv (dxhat - xhat mean(dxhat xhat)), dxhat = dy gamma; dgamma = sum_rows dy xhat;
 * dbeta = sum_rows dy; ty = gamma inv (tx - xhat mean(tx xhat)) + xhat tgamma (+ tbeta). */
static void ref_rmsnorm(Case *c, size_t rows, size_t dim, int bias, double eps)
{
    const long double *x = c->inL[0], *g = c->inL[1], *tx = c->tanL[0], *tg = c->tanL[1];
    const long double *b = bias ? c->inL[2] : NULL, *tb = bias ? c->tanL[2] : NULL;
    long double *dx = c->ref_grad[0], *dg = c->ref_grad[1], *db = bias ? c->ref_grad[2] : NULL;
    for (size_t j = 0; j < dim; j++) {
        dg[j] = 0;
        if (db)
            db[j] = 0;
    }
    for (size_t r = 0; r < rows; r++) {
        const long double *xr = x + r * dim, *dyr = c->cotL + r * dim, *txr = tx + r * dim;
        long double ms = 0, m = 0, mt = 0;
        for (size_t j = 0; j < dim; j++)
            ms += xr[j] * xr[j];
        ms /= (long double)dim;
        long double inv = 1.0L / sqrtl(ms + (long double)eps);
        for (size_t j = 0; j < dim; j++) {
            m += dyr[j] * g[j] * xr[j] * inv;
            mt += txr[j] * xr[j] * inv;
        }
        m /= (long double)dim;
        mt /= (long double)dim;
        for (size_t j = 0; j < dim; j++) {
            long double xh = xr[j] * inv;
            c->ref_y[r * dim + j] = xh * g[j] + (b ? b[j] : 0);
            dx[r * dim + j] = inv * (dyr[j] * g[j] - xh * m);
            dg[j] += dyr[j] * xh;
            if (db)
                db[j] += dyr[j];
            c->ref_ty[r * dim + j] = g[j] * inv * (txr[j] - xh * mt) + xh * tg[j] + (tb ? tb[j] : 0);
        }
    }
}

static void rmsnorm_inputs(Case *c, size_t rows, size_t dim, int bias, double mean)
{
    case_input(c, "x", rows * dim, mean, 1.0);
    case_input(c, "gamma", dim, 1.0, 0.5);
    if (bias)
        case_input(c, "beta", dim, 0.0, 0.5);
}

static int rms_case(size_t rows, size_t dim, int bias, const char *dtype, double mean)
{
    char label[80];
    int hard = mean == HARD_MEAN;
    snprintf(label, sizeof label, "rows=%zu dim=%zu bias=%d%s", rows, dim, bias, hard ? " mean 1e4" : "");
    kg_kernel *k = build("rmsnorm", dtype, "rows=%zu dim=%zu eps=1e-6 bias=%d", rows, dim, bias);
    Case c;
    case_init(&c, dtype, "y", rows * dim);
    rmsnorm_inputs(&c, rows, dim, bias, mean);
    case_prepare(&c);
    ref_rmsnorm(&c, rows, dim, bias, 1e-6);
    case_run(&c, k);
    kg_free(k);
    int bad = case_compare(&c, "rmsnorm", label, hard);
    case_free(&c);
    return bad;
}

static void test_rmsnorm(void **state)
{
    static const size_t shapes[][2] = {{1, 1}, {3, 5}, {4, 64}, {7, 33}, {2, 130}};
    (void)state;
    rng_seed(1);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int bias = 0; bias <= 1; bias++)
                bad |= rms_case(shapes[s][0], shapes[s][1], bias, DTYPES[t], 0.3);
    assert_false(bad);
}

static void test_rmsnorm_hard_inputs(void **state)
{
    (void)state;
    rng_seed(2);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        bad |= rms_case(4, 64, 1, DTYPES[t], HARD_MEAN);
        bad |= rms_case(3, 17, 0, DTYPES[t], HARD_MEAN);
    }
    assert_false(bad);
}

/* A zero row with bias=1: y = beta exactly, every gradient finite. */
static void test_rmsnorm_zero_row(void **state)
{
    (void)state;
    rng_seed(3);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        size_t rows = 3, dim = 7;
        kg_kernel *k = build("rmsnorm", DTYPES[t], "rows=3 dim=7 eps=1e-6 bias=1");
        Case c;
        case_init(&c, DTYPES[t], "y", rows * dim);
        rmsnorm_inputs(&c, rows, dim, 1, 0.0);
        for (size_t j = 0; j < dim; j++)
            c.in[0][1 * dim + j] = 0.0;
        case_prepare(&c);
        ref_rmsnorm(&c, rows, dim, 1, 1e-6);
        case_run(&c, k);
        bad |= case_compare(&c, "rmsnorm", "zero row", 0);
        for (size_t j = 0; j < dim; j++)
            if (c.got_y[dim + j] != c.in[2][j]) {
                print_error("rmsnorm %s zero row: y[1][%zu] = %.17g, beta = %.17g\n", DTYPES[t], j,
                            c.got_y[dim + j], c.in[2][j]);
                bad = 1;
            }
        for (int j = 0; j < c.nin; j++)
            for (size_t i = 0; i < c.count[j]; i++)
                if (!isfinite(c.got_grad[j][i])) {
                    print_error("rmsnorm %s zero row: %s.grad[%zu] not finite\n", DTYPES[t], c.name[j], i);
                    bad = 1;
                }
        case_free(&c);
        kg_free(k);
    }
    assert_false(bad);
}

/* ====================================================================================== */
/* batchnorm (stateless), instancenorm aliases                                            */
/* ====================================================================================== */

typedef struct {
    int n;          /* spatial rank 1..3 */
    size_t c;
    size_t sp[3];
} BnShape;

static size_t bn_spatial(const BnShape *s)
{
    size_t p = 1;
    for (int i = 0; i < s->n; i++)
        p *= s->sp[i];
    return p;
}

static void bn_params(const BnShape *s, char *buf, size_t len)
{
    static const char *names[3][3] = {{"l"}, {"h", "w"}, {"d", "h", "w"}};
    int off = snprintf(buf, len, "c=%zu", s->c);
    for (int i = 0; i < s->n; i++)
        off += snprintf(buf + off, len - (size_t)off, " %s=%zu", names[s->n - 1][i], s->sp[i]);
    snprintf(buf + off, len - (size_t)off, " eps=1e-6");
}

/* Builds, runs and compares one stateless batchnorm case. const_channel >= 0 makes that
 * channel constant; out_c (optional) receives the case for further checks (caller frees). */
static int bn_case(const char *graph_prefix, const BnShape *s, const char *dtype, const Opts *o,
                   double mean, int const_channel, Case *out_c)
{
    char params[128], graph[32], label[192];
    bn_params(s, params, sizeof params);
    snprintf(graph, sizeof graph, "%s%dd", graph_prefix, s->n);
    snprintf(label, sizeof label, "%s %s%s%s", graph, params, o && o->vjp_form ? " vjp/jvp=" : "",
             o && o->vjp_form ? o->vjp_form : "");
    size_t S = bn_spatial(s);
    kg_kernel *k = build_opts(graph, dtype, o, "%s", params);
    Case c;
    case_init(&c, dtype, "y", s->c * S);
    case_input(&c, "x", s->c * S, mean, 1.0);
    case_input(&c, "gamma", s->c, 1.0, 0.5);
    case_input(&c, "beta", s->c, 0.0, 0.5);
    if (const_channel >= 0)
        for (size_t i = 0; i < S; i++)
            c.in[0][(size_t)const_channel * S + i] = 3.25;
    case_prepare(&c);
    Groups G;
    batchnorm_groups(&G, s->c, S, 1e-6);
    ref_norm_case(&c, &G);
    groups_free(&G);
    case_run(&c, k);
    kg_free(k);
    char op[32];
    snprintf(op, sizeof op, "batchnorm%dd", s->n);
    int bad = case_compare(&c, op, label, mean != 0.0);
    if (out_c)
        *out_c = c;
    else
        case_free(&c);
    return bad;
}

static const BnShape BN_SHAPES[] = {
    {1, 3, {5, 0, 0}}, {1, 4, {16, 0, 0}}, {1, 1, {2, 0, 0}}, {1, 5, {130, 0, 0}},
    {2, 3, {5, 3, 0}}, {2, 2, {1, 7, 0}}, {2, 1, {4, 4, 0}}, {2, 4, {8, 8, 0}},
    {3, 2, {3, 2, 5}}, {3, 3, {1, 1, 2}}, {3, 4, {4, 4, 4}}, {3, 3, {5, 6, 7}},
};
#define N_BN_SHAPES (sizeof BN_SHAPES / sizeof BN_SHAPES[0])

static void test_batchnorm(void **state)
{
    (void)state;
    rng_seed(10);
    int bad = 0;
    static const Opts derived = {NULL, "derived", "derived", NULL}, closed = {NULL, "closed", "closed", NULL};
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < N_BN_SHAPES; s++) {
            bad |= bn_case("batchnorm", &BN_SHAPES[s], DTYPES[t], &derived, 0.0, -1, NULL);
            bad |= bn_case("batchnorm", &BN_SHAPES[s], DTYPES[t], &closed, 0.0, -1, NULL);
        }
    assert_false(bad);
}

static void test_batchnorm_hard_inputs(void **state)
{
    static const BnShape shapes[] = {{1, 3, {64, 0, 0}}, {2, 2, {5, 7, 0}}, {3, 2, {3, 4, 5}}};
    (void)state;
    rng_seed(11);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < 3; s++)
            bad |= bn_case("batchnorm", &shapes[s], DTYPES[t], NULL, HARD_MEAN, -1, NULL);
    assert_false(bad);
}

/* instancenorm*d must be bit-identical to batchnorm*d in every pass. */
static void test_instancenorm_alias(void **state)
{
    static const BnShape shapes[] = {{1, 3, {5, 0, 0}}, {2, 3, {2, 5, 0}}, {3, 2, {2, 3, 2}}};
    (void)state;
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < 3; s++) {
            Case a, b;
            rng_seed(12 + s);
            bad |= bn_case("batchnorm", &shapes[s], DTYPES[t], NULL, 0.0, -1, &a);
            rng_seed(12 + s);
            bad |= bn_case("instancenorm", &shapes[s], DTYPES[t], NULL, 0.0, -1, &b);
            int same = memcmp(a.got_y, b.got_y, a.nout * sizeof(double)) == 0 &&
                       memcmp(a.got_ty, b.got_ty, a.nout * sizeof(double)) == 0;
            for (int j = 0; j < a.nin; j++)
                same &= memcmp(a.got_grad[j], b.got_grad[j], a.count[j] * sizeof(double)) == 0;
            if (!same) {
                print_error("instancenorm%dd %s differs from batchnorm%dd\n", shapes[s].n, DTYPES[t], shapes[s].n);
                bad = 1;
            }
            case_free(&a);
            case_free(&b);
        }
    assert_false(bad);
}

/* A constant channel: its y = beta[c] exactly and its gamma gradient is exactly 0. */
static void test_batchnorm_constant_channel(void **state)
{
    static const BnShape shapes[] = {{1, 3, {6, 0, 0}}, {2, 3, {3, 5, 0}}, {3, 3, {2, 3, 2}}};
    (void)state;
    rng_seed(13);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < 3; s++) {
            Case c;
            bad |= bn_case("batchnorm", &shapes[s], DTYPES[t], NULL, 0.0, 1, &c);
            size_t S = bn_spatial(&shapes[s]);
            for (size_t i = 0; i < S; i++)
                if (c.got_y[S + i] != c.in[2][1]) {
                    print_error("batchnorm%dd %s constant channel: y[1][%zu] = %.17g != beta[1] = %.17g\n",
                                shapes[s].n, DTYPES[t], i, c.got_y[S + i], c.in[2][1]);
                    bad = 1;
                    break;
                }
            if (c.got_grad[1][1] != 0.0) {
                print_error("batchnorm%dd %s constant channel: gamma.grad[1] = %.17g != 0\n", shapes[s].n,
                            DTYPES[t], c.got_grad[1][1]);
                bad = 1;
            }
            case_free(&c);
        }
    assert_false(bad);
}

/* One-element statistics (batchnorm1d l=1): y = beta, x and gamma gradients exactly 0. */
static void test_batchnorm_one_element(void **state)
{
    static const BnShape shape = {1, 4, {1, 0, 0}};
    (void)state;
    rng_seed(14);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        Case c;
        bad |= bn_case("batchnorm", &shape, DTYPES[t], NULL, 0.0, -1, &c);
        for (size_t ch = 0; ch < 4; ch++) {
            if (c.got_y[ch] != c.in[2][ch] || c.got_grad[0][ch] != 0.0 || c.got_grad[1][ch] != 0.0) {
                print_error("batchnorm1d l=1 %s: channel %zu: y %.17g (beta %.17g), x.grad %.17g, gamma.grad %.17g\n",
                            DTYPES[t], ch, c.got_y[ch], c.in[2][ch], c.got_grad[0][ch], c.got_grad[1][ch]);
                bad = 1;
            }
        }
        case_free(&c);
    }
    assert_false(bad);
}

/* ====================================================================================== */
/* batchnorm_inference                                                                    */
/* ====================================================================================== */

/* y = (x - rm) inv gamma + beta, inv = 1/sqrt(max(rv, 0) + eps);
 * d/d rm = -sum dy gamma inv; d/d rv = sum dy gamma (x - rm) (-1/2) (rv + eps)^(-3/2) for
 * rv > 0 and 0 for rv < 0 (the clamp is flat there). */
static void ref_bn_inference(Case *c, size_t C, size_t S, double eps)
{
    long double *const *I = c->inL, *const *T = c->tanL, *const *G = c->ref_grad;
    for (size_t ch = 0; ch < C; ch++) {
        long double rv = I[4][ch], v = rv > 0 ? rv : 0;
        long double inv = 1.0L / sqrtl(v + (long double)eps);
        long double dinv_drv = rv > 0 ? -0.5L * inv * inv * inv : 0; /* = -1/2 (rv+eps)^(-3/2) */
        long double g = I[1][ch];
        G[1][ch] = G[2][ch] = G[3][ch] = G[4][ch] = 0;
        for (size_t s = 0; s < S; s++) {
            size_t e = ch * S + s;
            long double xc = I[0][e] - I[3][ch], xh = xc * inv, dy = c->cotL[e];
            c->ref_y[e] = xh * g + I[2][ch];
            G[0][e] = dy * g * inv;
            G[1][ch] += dy * xh;
            G[2][ch] += dy;
            G[3][ch] += -dy * g * inv;
            G[4][ch] += dy * g * xc * dinv_drv;
            c->ref_ty[e] = (T[0][e] - T[3][ch]) * inv * g + xc * g * dinv_drv * T[4][ch] + xh * T[1][ch] + T[2][ch];
        }
    }
}

static int bn_inference_case(const BnShape *s, const char *dtype, double mean, int negative_var)
{
    char params[128], graph[40], label[200];
    bn_params(s, params, sizeof params);
    snprintf(graph, sizeof graph, "batchnorm_inference%dd", s->n);
    snprintf(label, sizeof label, "%s %s%s", graph, params, negative_var ? " running_var[0] < 0" : "");
    size_t S = bn_spatial(s);
    kg_kernel *k = build(graph, dtype, "%s", params);
    Case c;
    case_init(&c, dtype, "y", s->c * S);
    case_input(&c, "x", s->c * S, mean, 1.0);
    case_input(&c, "gamma", s->c, 1.0, 0.5);
    case_input(&c, "beta", s->c, 0.0, 0.5);
    int rm = case_input(&c, "running_mean", s->c, mean, 0.5);
    int rv = case_input(&c, "running_var", s->c, 0.0, 1.0);
    for (size_t ch = 0; ch < s->c; ch++) {
        if (mean != 0.0)
            c.in[rm][ch] = mean; /* x - rm is then exact in f32 too */
        c.in[rv][ch] = 0.5 + 1.5 * rng_uniform();
    }
    if (negative_var)
        c.in[rv][0] = -0.25;
    case_prepare(&c);
    ref_bn_inference(&c, s->c, S, 1e-6);
    case_run(&c, k);
    kg_free(k);
    char op[40];
    snprintf(op, sizeof op, "batchnorm_inference%dd", s->n);
    int bad = case_compare(&c, op, label, mean != 0.0);
    case_free(&c);
    return bad;
}

static void test_batchnorm_inference(void **state)
{
    (void)state;
    rng_seed(20);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        for (size_t s = 0; s < N_BN_SHAPES; s++)
            bad |= bn_inference_case(&BN_SHAPES[s], DTYPES[t], 0.0, 0);
        bad |= bn_inference_case(&BN_SHAPES[4], DTYPES[t], HARD_MEAN, 0);
    }
    assert_false(bad);
}

/* running_var < 0 is clamped to 0: y uses sqrt(eps), and the running_var gradient is 0. */
static void test_batchnorm_inference_negative_var(void **state)
{
    (void)state;
    rng_seed(21);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        bad |= bn_inference_case(&BN_SHAPES[0], DTYPES[t], 0.0, 1);
    assert_false(bad);
}

/* ====================================================================================== */
/* groupnorm                                                                              */
/* ====================================================================================== */

static int gn_case(size_t b, size_t h, size_t w, size_t c_, size_t groups, const char *dtype,
                   double mean, int const_group, Case *out_c)
{
    char label[128];
    snprintf(label, sizeof label, "b=%zu h=%zu w=%zu c=%zu groups=%zu", b, h, w, c_, groups);
    kg_kernel *k = build("groupnorm", dtype, "%s eps=1e-6", label);
    size_t n = b * h * w * c_, cg = c_ / groups;
    Case c;
    case_init(&c, dtype, "y", n);
    case_input(&c, "x", n, mean, 1.0);
    case_input(&c, "gamma", c_, 1.0, 0.5);
    case_input(&c, "beta", c_, 0.0, 0.5);
    if (const_group >= 0) /* sample 0, group const_group constant at every (h, w) */
        for (size_t p = 0; p < h * w; p++)
            for (size_t ch = (size_t)const_group * cg; ch < ((size_t)const_group + 1) * cg; ch++)
                c.in[0][p * c_ + ch] = -1.75;
    case_prepare(&c);
    Groups G;
    groupnorm_groups(&G, b, h, w, c_, groups, 1e-6);
    ref_norm_case(&c, &G);
    groups_free(&G);
    case_run(&c, k);
    kg_free(k);
    int bad = case_compare(&c, "groupnorm", label, mean != 0.0);
    if (out_c)
        *out_c = c;
    else
        case_free(&c);
    return bad;
}

static void test_groupnorm(void **state)
{
    static const size_t shapes[][5] = {
        {2, 3, 2, 6, 3}, {2, 3, 2, 6, 1}, {2, 3, 2, 6, 6}, {1, 1, 1, 4, 2},
        {3, 2, 5, 8, 4}, {1, 2, 2, 9, 3}, {2, 4, 4, 8, 2}, {1, 3, 1, 10, 5}, {2, 6, 5, 24, 6},
    };
    (void)state;
    rng_seed(30);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            bad |= gn_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4],
                           DTYPES[t], 0.0, -1, NULL);
    assert_false(bad);
}

static void test_groupnorm_hard_inputs(void **state)
{
    (void)state;
    rng_seed(31);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        bad |= gn_case(2, 3, 2, 6, 3, DTYPES[t], HARD_MEAN, -1, NULL);
        bad |= gn_case(1, 4, 4, 8, 2, DTYPES[t], HARD_MEAN, -1, NULL);
    }
    assert_false(bad);
}

/* A constant group: y = beta at its channels; its gamma gradient gets no contribution. */
static void test_groupnorm_constant_group(void **state)
{
    (void)state;
    rng_seed(32);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        size_t b = 1, h = 3, w = 2, c_ = 6, groups = 3, cg = 2;
        Case c;
        bad |= gn_case(b, h, w, c_, groups, DTYPES[t], 0.0, 1, &c);
        for (size_t p = 0; p < h * w; p++)
            for (size_t ch = cg; ch < 2 * cg; ch++)
                if (c.got_y[p * c_ + ch] != c.in[2][ch]) {
                    print_error("groupnorm %s constant group: y[%zu][%zu] = %.17g != beta %.17g\n", DTYPES[t],
                                p, ch, c.got_y[p * c_ + ch], c.in[2][ch]);
                    bad = 1;
                }
        for (size_t ch = cg; ch < 2 * cg; ch++)
            if (c.got_grad[1][ch] != 0.0) {
                print_error("groupnorm %s constant group (b=1): gamma.grad[%zu] = %.17g != 0\n", DTYPES[t], ch,
                            c.got_grad[1][ch]);
                bad = 1;
            }
        case_free(&c);
    }
    assert_false(bad);
}

/* groups = c and h = w = 1: every group has one element: y = beta, x/gamma gradients 0. */
static void test_groupnorm_one_element(void **state)
{
    (void)state;
    rng_seed(33);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        Case c;
        bad |= gn_case(2, 1, 1, 5, 5, DTYPES[t], 0.0, -1, &c);
        for (size_t e = 0; e < 10; e++)
            if (c.got_y[e] != c.in[2][e % 5] || c.got_grad[0][e] != 0.0) {
                print_error("groupnorm %s one-element groups: [%zu]: y %.17g (beta %.17g), x.grad %.17g\n",
                            DTYPES[t], e, c.got_y[e], c.in[2][e % 5], c.got_grad[0][e]);
                bad = 1;
            }
        for (size_t ch = 0; ch < 5; ch++)
            if (c.got_grad[1][ch] != 0.0) {
                print_error("groupnorm %s one-element groups: gamma.grad[%zu] = %.17g\n", DTYPES[t], ch,
                            c.got_grad[1][ch]);
                bad = 1;
            }
        case_free(&c);
    }
    assert_false(bad);
}

static void test_groupnorm_rejects_bad_groups(void **state)
{
    static const char *const bad_params[] = {
        "b=2 h=3 w=2 c=6 groups=4 eps=1e-6",
        "b=1 h=2 w=2 c=6 groups=12 eps=1e-6",
        "b=1 h=2 w=2 c=5 groups=2 eps=1e-6",
        "b=1 h=2 w=2 c=4 groups=0 eps=1e-6",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad_params / sizeof bad_params[0]; i++) {
        kg_kernel *k = NULL;
        char *err = NULL;
        kg_status st = try_build(&k, &err, "groupnorm", "f64", NULL, bad_params[i]);
        if (st != KG_EINPUT || !err || !strstr(err, "groups"))
            print_error("groupnorm %s: status %d, message: %s\n", bad_params[i], (int)st, err ? err : "(none)");
        assert_int_equal(st, KG_EINPUT);
        assert_null(k);
        assert_non_null(err);
        assert_non_null(strstr(err, "groups"));
        free(err);
    }
}

/* ====================================================================================== */
/* weightnorm                                                                             */
/* ====================================================================================== */

/* w = g v / n, n = sqrt(sum_i v^2 + eps); dg = sum_i dw v / n;
 * dv = g/n dw - g v (sum_i dw v) / n^3; tw = tg v/n + g (tv/n - v (sum_i v tv) / n^3). */
static void ref_weightnorm(Case *c, size_t out, size_t in, double eps)
{
    long double *const *I = c->inL, *const *T = c->tanL, *const *G = c->ref_grad;
    for (size_t o = 0; o < out; o++) {
        const long double *v = I[0] + o * in, *tv = T[0] + o * in, *dw = c->cotL + o * in;
        long double ss = 0, dot = 0, tdot = 0, g = I[1][o];
        for (size_t i = 0; i < in; i++) {
            ss += v[i] * v[i];
            dot += dw[i] * v[i];
            tdot += v[i] * tv[i];
        }
        long double n = sqrtl(ss + (long double)eps), n3 = n * n * n;
        G[1][o] = dot / n;
        for (size_t i = 0; i < in; i++) {
            c->ref_y[o * in + i] = g * v[i] / n;
            G[0][o * in + i] = g / n * dw[i] - g * v[i] * dot / n3;
            c->ref_ty[o * in + i] = T[1][o] * v[i] / n + g * (tv[i] / n - v[i] * tdot / n3);
        }
    }
}

static int wn_case(size_t out, size_t in, int eps0, const char *dtype)
{
    char label[96];
    snprintf(label, sizeof label, "out=%zu in=%zu eps=%s", out, in, eps0 ? "0" : "1e-6");
    kg_kernel *k = build("weightnorm", dtype, "%s", label);
    Case c;
    case_init(&c, dtype, "w", out * in);
    case_input(&c, "v", out * in, 0.0, 1.0);
    case_input(&c, "g", out, 1.0, 0.5);
    case_prepare(&c);
    ref_weightnorm(&c, out, in, eps0 ? 0.0 : 1e-6);
    case_run(&c, k);
    kg_free(k);
    int bad = case_compare(&c, "weightnorm", label, 0);
    case_free(&c);
    return bad;
}

static void test_weightnorm(void **state)
{
    static const size_t shapes[][2] = {{16, 32}, {1, 1}, {3, 5}, {7, 13}, {2, 100}};
    (void)state;
    rng_seed(40);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int eps0 = 0; eps0 <= 1; eps0++)
                bad |= wn_case(shapes[s][0], shapes[s][1], eps0, DTYPES[t]);
    assert_false(bad);
}

/* eps = 0 and a zero row: the domain failure is reported (kg_call returns 1) in every pass.
 * eps > 0 and a zero row: that row of w is exactly 0, the call succeeds. */
static void test_weightnorm_zero_row(void **state)
{
    (void)state;
    rng_seed(41);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (int e = 0; e < 2; e++) {
            size_t out = 3, in = 4;
            kg_kernel *k = build("weightnorm", DTYPES[t], "out=3 in=4 eps=%s", e ? "1e-6" : "0");
            Case c;
            case_init(&c, DTYPES[t], "w", out * in);
            case_input(&c, "v", out * in, 0.0, 1.0);
            case_input(&c, "g", out, 1.0, 0.5);
            for (size_t i = 0; i < in; i++)
                c.in[0][1 * in + i] = 0.0;
            case_prepare(&c);
            case_run(&c, k);
            if (e == 0) {
                for (int p = 0; p < KGT_CORE_PASSES; p++)
                    if (c.rc[p] != 1) {
                        print_error("weightnorm %s eps=0 zero row: pass %d returned %d, expected 1\n", DTYPES[t], p,
                                    c.rc[p]);
                        bad = 1;
                    }
            } else {
                ref_weightnorm(&c, out, in, 1e-6);
                bad |= case_compare(&c, "weightnorm", "out=3 in=4 eps=1e-6 zero row", 0);
                for (size_t i = 0; i < in; i++)
                    if (c.got_y[in + i] != 0.0) {
                        print_error("weightnorm %s eps=1e-6 zero row: w[1][%zu] = %.17g\n", DTYPES[t], i,
                                    c.got_y[in + i]);
                        bad = 1;
                    }
            }
            case_free(&c);
            kg_free(k);
        }
    assert_false(bad);
}

/* ====================================================================================== */
/* normalize_axis                                                                         */
/* ====================================================================================== */

static int axis_case(const size_t *dims, int rank, int axis, const char *dtype, double mean, Case *out_c)
{
    char shape[64] = "", label[96];
    int off = 0;
    for (int a = 0; a < rank; a++)
        off += snprintf(shape + off, sizeof shape - (size_t)off, a ? "x%zu" : "%zu", dims[a]);
    snprintf(label, sizeof label, "shape=%s axis=%d", shape, axis);
    kg_kernel *k = build("normalize_axis", dtype, "%s eps=1e-6", label);
    size_t n = 1;
    for (int a = 0; a < rank; a++)
        n *= dims[a];
    Case c;
    case_init(&c, dtype, "y", n);
    case_input(&c, "x", n, mean, 1.0);
    case_input(&c, "gamma", n, 1.0, 0.5);
    case_input(&c, "beta", n, 0.0, 0.5);
    case_prepare(&c);
    Groups G;
    axis_groups(&G, dims, rank, axis, 1e-6);
    ref_norm_case(&c, &G);
    groups_free(&G);
    case_run(&c, k);
    kg_free(k);
    int bad = case_compare(&c, "normalize_axis", label, mean != 0.0);
    if (out_c)
        *out_c = c;
    else
        case_free(&c);
    return bad;
}

static void test_normalize_axis(void **state)
{
    static const size_t d3[] = {2, 3, 4}, d1[] = {7}, d4[] = {2, 3, 2, 5}, d4b[] = {3, 1, 4, 2};
    static const size_t big[] = {6, 37, 9};
    (void)state;
    rng_seed(50);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        for (int a = 0; a < 3; a++)
            bad |= axis_case(d3, 3, a, DTYPES[t], 0.0, NULL);
        bad |= axis_case(d1, 1, 0, DTYPES[t], 0.0, NULL);
        for (int a = 0; a < 4; a++)
            bad |= axis_case(d4, 4, a, DTYPES[t], 0.0, NULL);
        bad |= axis_case(d4b, 4, 2, DTYPES[t], 0.0, NULL);
        for (int a = 0; a < 3; a++)
            bad |= axis_case(big, 3, a, DTYPES[t], 0.0, NULL);
    }
    assert_false(bad);
}

static void test_normalize_axis_hard_inputs(void **state)
{
    static const size_t d3[] = {3, 16, 5}, d1[] = {33};
    (void)state;
    rng_seed(51);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        for (int a = 0; a < 3; a++)
            bad |= axis_case(d3, 3, a, DTYPES[t], HARD_MEAN, NULL);
        bad |= axis_case(d1, 1, 0, DTYPES[t], HARD_MEAN, NULL);
    }
    assert_false(bad);
}

/* A length-1 axis: one-element statistics, y = beta, x and gamma gradients exactly 0. */
static void test_normalize_axis_one_element(void **state)
{
    static const size_t d[] = {2, 3, 1, 5};
    (void)state;
    rng_seed(52);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        Case c;
        bad |= axis_case(d, 4, 2, DTYPES[t], 0.0, &c);
        for (size_t e = 0; e < c.nout; e++)
            if (c.got_y[e] != c.in[2][e] || c.got_grad[0][e] != 0.0 || c.got_grad[1][e] != 0.0) {
                print_error("normalize_axis %s length-1 axis: [%zu]: y %.17g (beta %.17g), x.grad %.17g, gamma.grad %.17g\n",
                            DTYPES[t], e, c.got_y[e], c.in[2][e], c.got_grad[0][e], c.got_grad[1][e]);
                bad = 1;
                break;
            }
        case_free(&c);
    }
    assert_false(bad);
}

/* ====================================================================================== */
/* ffn, seq_ffn, mlp                                                                      */
/* ====================================================================================== */

static const char *const GELU_NAMES[2] = {"erf", "tanh"};

static int mlp_case(const char *graph, const Mlp *m, const char *dtype, const Opts *o, const char *params)
{
    char label[160];
    snprintf(label, sizeof label, "%s %s", graph, params);
    kg_kernel *k = build_opts(graph, dtype, o, "%s", params);
    Case c;
    case_init(&c, dtype, "y", m->seq * m->dm);
    mlp_inputs(&c, m);
    case_prepare(&c);
    ref_mlp_case(&c, m);
    case_run(&c, k);
    kg_free(k);
    char op[48];
    snprintf(op, sizeof op, "%s gelu=%s", graph, GELU_NAMES[m->gelu]);
    int bad = case_compare(&c, op, label, 0);
    case_free(&c);
    return bad;
}

static void test_ffn(void **state)
{
    static const size_t shapes[][2] = {{64, 256}, {5, 7}, {1, 1}, {3, 2}, {17, 40}};
    (void)state;
    rng_seed(60);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (int gk = 0; gk < 2; gk++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                Mlp m = {1, shapes[s][0], shapes[s][1], gk, 1};
                char params[96];
                snprintf(params, sizeof params, "dmodel=%zu dff=%zu gelu=%s", m.dm, m.dff, GELU_NAMES[gk]);
                bad |= mlp_case("ffn", &m, DTYPES[t], NULL, params);
            }
    assert_false(bad);
}

static void test_seq_ffn_and_mlp(void **state)
{
    static const size_t shapes[][3] = {{3, 4, 6}, {1, 5, 3}, {2, 1, 1}, {8, 64, 256}, {5, 9, 31}};
    (void)state;
    rng_seed(61);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (int gk = 0; gk < 2; gk++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int residual = 0; residual <= 1; residual++) {
                    Mlp m = {shapes[s][0], shapes[s][1], shapes[s][2], gk, residual};
                    char params[96];
                    snprintf(params, sizeof params, "seq=%zu dmodel=%zu dff=%zu gelu=%s", m.seq, m.dm, m.dff,
                             GELU_NAMES[gk]);
                    bad |= mlp_case(residual ? "seq_ffn" : "mlp", &m, DTYPES[t], NULL, params);
                }
    assert_false(bad);
}

/* GELU in the negative tail, where it must keep relative accuracy: x = 0, so the
 * pre-activations are exactly b1 = h0, h0 - 0.5, ..., h0 - 4; w2 = identity and b2 = 0, so y is
 * GELU(b1) elementwise (ffn adds x = 0). gelu=erf: h in -8 .. -12 against 0.5 h erfc(-h/sqrt2).
 * gelu=tanh: -8 .. -12 in f64, -4 .. -8 in f32 (below that the f32 value underflows). */
static void test_gelu_negative_tail(void **state)
{
    enum { N = 9 };
    static const char *const graphs[] = {"ffn", "mlp"};
    (void)state;
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (int gk = 0; gk < 2; gk++)
            for (int gi = 0; gi < 2; gi++) {
                int f32 = t == 1;
                double h0 = gk == GELU_TANH && f32 ? -4.0 : -8.0;
                size_t seq = gi == 0 ? 1 : 2;
                kg_kernel *k = gi == 0 ? build("ffn", DTYPES[t], "dmodel=%d dff=%d gelu=%s", N, N, GELU_NAMES[gk])
                                       : build("mlp", DTYPES[t], "seq=2 dmodel=%d dff=%d gelu=%s", N, N, GELU_NAMES[gk]);
                Mlp m = {seq, N, N, gk, gi == 0};
                Case c;
                rng_seed(62);
                case_init(&c, DTYPES[t], "y", seq * N);
                mlp_inputs(&c, &m);
                for (size_t i = 0; i < seq * N; i++)
                    c.in[0][i] = 0.0;
                for (size_t f = 0; f < N; f++) {
                    c.in[2][f] = h0 - 0.5 * (double)f; /* exact in f32 */
                    c.in[4][f] = 0.0;
                    for (size_t o = 0; o < N; o++)
                        c.in[3][o * N + f] = o == f ? 1.0 : 0.0;
                }
                case_prepare(&c);
                ref_mlp_case(&c, &m);
                case_run(&c, k);
                kg_free(k);
                char label[64], key[80];
                snprintf(label, sizeof label, "%s gelu=%s negative tail", graphs[gi], GELU_NAMES[gk]);
                bad |= case_compare(&c, "gelu tail (vs max(1,|ref|))", label, 0);
                double tol = f32 ? TOL_TAIL_REL_F32 : TOL_TAIL_REL_F64, worst = 0;
                for (size_t i = 0; i < seq * N; i++) {
                    long double h = (long double)h0 - 0.5L * (long double)(i % N);
                    long double ref = gelu_ref(h, gk);
                    double rel = (double)fabsl(((long double)c.got_y[i] - ref) / ref);
                    if (!(rel <= worst))
                        worst = rel;
                    if (!(rel <= tol)) {
                        print_error("%s %s: y[%zu] = %.17g, reference GELU(%.1Lf) = %.17Lg: relative error %.3g\n",
                                    label, DTYPES[t], i, c.got_y[i], h, ref, rel);
                        bad = 1;
                    }
                }
                snprintf(key, sizeof key, "gelu %s tail %s (elementwise relative)", GELU_NAMES[gk], DTYPES[t]);
                record(key, label, worst, tol, 0);
                case_free(&c);
            }
    assert_false(bad);
}

/* ====================================================================================== */
/* prenorm_ffn, postnorm_ffn                                                              */
/* ====================================================================================== */

/* inputs x, gamma, beta, w1, b1, w2, b2 (indices 0..6) */
static void ref_block(Case *c, size_t seq, size_t dm, size_t dff, int gelu, double eps, int post)
{
    long double *const *I = c->inL, *const *T = c->tanL, *const *G = c->ref_grad;
    size_t n = seq * dm;
    Groups LN;
    layernorm_groups(&LN, seq, dm, eps);
    long double *a = xallocL(n), *xhat = xallocL(n), *inv = xallocL(seq);
    long double *pre = xallocL(seq * dff), *hid = xallocL(seq * dff), *ta = xallocL(n), *da = xallocL(n);
    if (!post) {
        /* a = LN(x); y = x + mlp(a) */
        Mlp m = {seq, dm, dff, gelu, 0};
        norm_fwd(&LN, I[0], I[1], I[2], a, xhat, inv);
        mlp_fwd(&m, a, I[3], I[4], I[5], I[6], pre, hid, c->ref_y);
        for (size_t e = 0; e < n; e++)
            c->ref_y[e] += I[0][e];
        mlp_vjp(&m, a, I[3], I[5], pre, hid, c->cotL, da, G[3], G[4], G[5], G[6]);
        norm_vjp(&LN, xhat, inv, I[1], da, G[0], G[1], G[2]);
        for (size_t e = 0; e < n; e++)
            G[0][e] += c->cotL[e];
        norm_jvp(&LN, xhat, inv, I[1], T[0], T[1], T[2], ta);
        mlp_jvp(&m, a, I[3], I[5], pre, hid, ta, T[3], T[4], T[5], T[6], c->ref_ty);
        for (size_t e = 0; e < n; e++)
            c->ref_ty[e] += T[0][e];
    } else {
        /* a = x + mlp(x); y = LN(a) */
        Mlp m = {seq, dm, dff, gelu, 1};
        mlp_fwd(&m, I[0], I[3], I[4], I[5], I[6], pre, hid, a);
        norm_fwd(&LN, a, I[1], I[2], c->ref_y, xhat, inv);
        norm_vjp(&LN, xhat, inv, I[1], c->cotL, da, G[1], G[2]);
        mlp_vjp(&m, I[0], I[3], I[5], pre, hid, da, G[0], G[3], G[4], G[5], G[6]);
        mlp_jvp(&m, I[0], I[3], I[5], pre, hid, T[0], T[3], T[4], T[5], T[6], ta);
        norm_jvp(&LN, xhat, inv, I[1], ta, T[1], T[2], c->ref_ty);
    }
    groups_free(&LN);
    free(a);
    free(xhat);
    free(inv);
    free(pre);
    free(hid);
    free(ta);
    free(da);
}

static int block_case(int post, size_t seq, size_t dm, size_t dff, int gk, const char *dtype)
{
    static const char *const graphs[] = {"prenorm_ffn", "postnorm_ffn"};
    char params[128], label[160], op[64];
    snprintf(params, sizeof params, "seq=%zu dmodel=%zu dff=%zu gelu=%s eps=1e-5", seq, dm, dff, GELU_NAMES[gk]);
    snprintf(label, sizeof label, "%s %s", graphs[post], params);
    kg_kernel *k = build(graphs[post], dtype, "%s", params);
    Case c;
    case_init(&c, dtype, "y", seq * dm);
    case_input(&c, "x", seq * dm, 0.0, 1.0);
    case_input(&c, "gamma", dm, 1.0, 0.5);
    case_input(&c, "beta", dm, 0.0, 0.5);
    case_input(&c, "w1", dff * dm, 0.0, 1.5 / sqrt((double)dm));
    case_input(&c, "b1", dff, 0.0, 0.5);
    case_input(&c, "w2", dm * dff, 0.0, 1.0 / sqrt((double)dff));
    case_input(&c, "b2", dm, 0.0, 0.5);
    case_prepare(&c);
    ref_block(&c, seq, dm, dff, gk, 1e-5, post);
    case_run(&c, k);
    kg_free(k);
    snprintf(op, sizeof op, "%s gelu=%s", graphs[post], GELU_NAMES[gk]);
    int bad = case_compare(&c, op, label, 0);
    case_free(&c);
    return bad;
}

static void test_prenorm_postnorm_ffn(void **state)
{
    static const size_t shapes[][3] = {{3, 4, 6}, {1, 1, 1}, {2, 5, 3}, {8, 64, 256}, {4, 9, 17}};
    (void)state;
    rng_seed(70);
    int bad = 0;
    for (int t = 0; t < 2; t++)
        for (int post = 0; post <= 1; post++)
            for (int gk = 0; gk < 2; gk++)
                for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                    bad |= block_case(post, shapes[s][0], shapes[s][1], shapes[s][2], gk, DTYPES[t]);
    assert_false(bad);
}

/* ====================================================================================== */
/* unroll policies and domain failures                                                    */
/* ====================================================================================== */

/* The same references with every loop kept (unroll=none) and everything straight-line
 * (unroll=full), at shapes small enough for full unrolling. */
static void test_unroll_policies(void **state)
{
    static const char *const policies[] = {"none", "full"};
    static const BnShape bn2 = {2, 3, {5, 3, 0}}, bn3 = {3, 2, {3, 1, 4}}, bn1 = {1, 3, {5, 0, 0}};
    static const size_t ax[] = {2, 3, 4};
    (void)state;
    rng_seed(90);
    int bad = 0;
    for (int u = 0; u < 2; u++) {
        unroll_override = policies[u];
        for (int t = 0; t < 2; t++) {
            const char *dt = DTYPES[t];
            Mlp m = {2, 5, 7, GELU_ERF, 1};
            bad |= rms_case(3, 17, 1, dt, 0.3);
            bad |= bn_case("batchnorm", &bn2, dt, NULL, 0.0, -1, NULL);
            bad |= bn_case("batchnorm", &bn3, dt, NULL, 0.0, -1, NULL);
            bad |= bn_inference_case(&bn1, dt, 0.0, 0);
            bad |= gn_case(2, 3, 2, 6, 3, dt, 0.0, -1, NULL);
            bad |= axis_case(ax, 3, 1, dt, 0.0, NULL);
            bad |= wn_case(3, 5, 0, dt);
            bad |= mlp_case("seq_ffn", &m, dt, NULL, "seq=2 dmodel=5 dff=7 gelu=erf");
            bad |= block_case(0, 2, 4, 6, GELU_TANH, dt);
            bad |= block_case(1, 2, 4, 6, GELU_ERF, dt);
        }
    }
    unroll_override = NULL;
    assert_false(bad);
}

/* The kernels generated with --fma on (a*b + c as one rounding) against the same references
 * and tolerances: every operator, the hard inputs and GELU's negative tail. */
static void test_fma_kernels(void **state)
{
    static void (*const tests[])(void **) = {
        test_softmax, test_log_softmax, test_rmsnorm, test_rmsnorm_hard_inputs, test_batchnorm,
        test_batchnorm_hard_inputs, test_groupnorm, test_groupnorm_hard_inputs, test_weightnorm,
        test_normalize_axis, test_normalize_axis_hard_inputs, test_ffn, test_seq_ffn_and_mlp,
        test_gelu_negative_tail, test_prenorm_postnorm_ffn};
    fma_override = "on";
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        tests[i](state);
    fma_override = NULL;
}

/* With eps = 0 a zero-variance (zero-norm) slice breaks the domain hypothesis std > 0: every
 * pass must report it (kg_call returns 1) instead of silently writing inf/NaN. */
static void test_domain_failure_reported(void **state)
{
    static const struct { const char *graph, *params; size_t x_count, const_count; } cases[] = {
        {"rmsnorm", "rows=2 dim=5 eps=0", 10, 5},             /* row 0 all zero */
        {"batchnorm2d", "c=2 h=2 w=3 eps=0", 12, 6},           /* channel 0 constant */
        {"groupnorm", "b=1 h=2 w=1 c=4 groups=1 eps=0", 8, 8}, /* the only group constant */
        {"normalize_axis", "shape=3x2 axis=1 eps=0", 6, 2},    /* x[0][:] constant */
        {"weightnorm", "out=2 in=3 eps=0", 6, 3},              /* row 0 zero */
    };
    (void)state;
    rng_seed(91);
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 2; t++) {
            kg_kernel *k = build(cases[i].graph, DTYPES[t], "%s", cases[i].params);
            Case c;
            size_t nout = cases[i].x_count;
            case_init(&c, DTYPES[t], strcmp(cases[i].graph, "weightnorm") == 0 ? "w" : "y", nout);
            if (strcmp(cases[i].graph, "weightnorm") == 0) {
                case_input(&c, "v", 6, 0.0, 1.0);
                case_input(&c, "g", 2, 1.0, 0.5);
            } else {
                size_t np = strcmp(cases[i].graph, "rmsnorm") == 0 ? 5
                            : strcmp(cases[i].graph, "batchnorm2d") == 0 ? 2
                            : strcmp(cases[i].graph, "groupnorm") == 0 ? 4 : 6;
                case_input(&c, "x", nout, 0.0, 1.0);
                case_input(&c, "gamma", np, 1.0, 0.5);
                if (strcmp(cases[i].graph, "rmsnorm") != 0)
                    case_input(&c, "beta", np, 0.0, 0.5);
            }
            double v = strcmp(cases[i].graph, "rmsnorm") == 0 || strcmp(cases[i].graph, "weightnorm") == 0 ? 0.0 : 2.5;
            for (size_t e = 0; e < cases[i].const_count; e++)
                c.in[0][e] = v;
            case_prepare(&c);
            case_run(&c, k);
            kg_free(k);
            for (int p = 0; p < KGT_CORE_PASSES; p++)
                if (c.rc[p] != 1) {
                    print_error("%s %s %s: pass %d returned %d, expected 1 (domain failure)\n", cases[i].graph,
                                cases[i].params, DTYPES[t], p, c.rc[p]);
                    bad = 1;
                }
            case_free(&c);
        }
    assert_false(bad);
}

/* ====================================================================================== */
/* semantics presets                                                                      */
/* ====================================================================================== */

/* The value of NAME in a "a=1 b=2" parameter string (static buffer), or NULL. */
static const char *param_value(const char *text, const char *name)
{
    static char val[64];
    size_t len = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, ' ')) {
        while (*p == ' ')
            p++;
        if (strncmp(p, name, len) == 0 && p[len] == '=') {
            size_t n = strcspn(p + len + 1, " \n");
            if (n >= sizeof val)
                n = sizeof val - 1;
            memcpy(val, p + len + 1, n);
            val[n] = 0;
            return val;
        }
    }
    return NULL;
}

static kg_kernel *generate_only(const char *graph, const char *dtype, const char *semantics, const char *params)
{
    kg_kernel *k = NULL;
    char *err = NULL;
    Opts o = {semantics, NULL, NULL, NULL};
    kg_status st = try_build(&k, &err, graph, dtype, &o, params);
    if (st != KG_OK) {
        print_error("%s %s: %s\n", graph, params, err ? err : "?");
        free(err);
    }
    assert_int_equal(st, KG_OK);
    return k;
}

/* Asserts the kernel's params (KG_TEXT_PARAMS and the source banner) give NAME = expected. */
static void expect_param_number(const kg_kernel *k, const char *name, double expected, const char *what)
{
    const char *texts[2] = {kg_text(k, KG_TEXT_PARAMS), NULL};
    const char *src = kg_text(k, KG_TEXT_SOURCE);
    assert_non_null(texts[0]);
    assert_non_null(src);
    const char *banner = strstr(src, "params:");
    assert_non_null(banner);
    texts[1] = banner + strlen("params:");
    for (int i = 0; i < 2; i++) {
        const char *v = param_value(texts[i], name);
        if (!v || strtod(v, NULL) != expected) {
            print_error("%s: %s = %s in %s, expected %.17g\n", what, name, v ? v : "(missing)",
                        i ? "the source banner" : "KG_TEXT_PARAMS", expected);
            fail();
        }
    }
}

static void expect_param_string(const kg_kernel *k, const char *name, const char *expected, const char *what)
{
    const char *v = param_value(kg_text(k, KG_TEXT_PARAMS), name);
    if (!v || strcmp(v, expected) != 0) {
        print_error("%s: %s = %s, expected %s\n", what, name, v ? v : "(missing)", expected);
        fail();
    }
}

static void test_semantics_eps_params(void **state)
{
    static const struct { const char *graph, *dtype, *sem, *params; double eps; } cases[] = {
        {"rmsnorm", "f32", "pytorch", "rows=2 dim=3", 0x1p-23},
        {"rmsnorm", "f64", "pytorch", "rows=2 dim=3", 0x1p-52},
        {"rmsnorm", "f32", "torchlean", "rows=2 dim=3", 1e-6},
        {"rmsnorm", "f64", NULL, "rows=2 dim=3", 1e-6},
        {"rmsnorm", "f32", "pytorch", "rows=2 dim=3 eps=0.001", 1e-3},
        {"rmsnorm", "f64", "pytorch", "rows=2 dim=3 eps=0", 0.0},
        {"layernorm", "f64", NULL, "rows=2 dim=3", 1e-6},
        {"layernorm", "f32", "torchlean", "rows=2 dim=3", 1e-6},
        {"layernorm", "f64", "pytorch", "rows=2 dim=3", 1e-5},
        {"layernorm", "f32", "pytorch", "rows=2 dim=3", 1e-5},
        {"layernorm", "f64", "pytorch", "rows=2 dim=3 eps=0.25", 0.25},
        {"layernorm", "f64", "torchlean", "rows=2 dim=3 eps=1e-12", 1e-12},
        {"batchnorm2d", "f64", "pytorch", "c=2 h=2 w=2", 1e-5},
        {"groupnorm", "f64", "pytorch", "b=1 h=1 w=2 c=4 groups=2", 1e-5},
        {"normalize_axis", "f64", "pytorch", "shape=2x3 axis=1", 1e-5},
        {"weightnorm", "f64", "torchlean", "out=2 in=3", 1e-6},
        {"weightnorm", "f64", "pytorch", "out=2 in=3", 0.0},
        {"weightnorm", "f32", "pytorch", "out=2 in=3 eps=1e-8", 1e-8},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s %s --semantics %s %s", cases[i].graph, cases[i].dtype,
                 cases[i].sem ? cases[i].sem : "(default)", cases[i].params);
        kg_kernel *k = generate_only(cases[i].graph, cases[i].dtype, cases[i].sem, cases[i].params);
        expect_param_number(k, "eps", cases[i].eps, what);
        kg_free(k);
    }
}

/* The preset eps is also the one the rmsnorm kernel computes with: inputs small enough that
 * eps matters (mean(x^2) ~ eps), compared with the reference at eps = 2^-23 / 2^-52. */
static void test_semantics_rmsnorm_eps_used(void **state)
{
    (void)state;
    rng_seed(80);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        double eps = t == 0 ? 0x1p-52 : 0x1p-23;
        Opts o = {"pytorch", NULL, NULL, NULL};
        kg_kernel *k = build_opts("rmsnorm", DTYPES[t], &o, "rows=3 dim=8");
        Case c;
        case_init(&c, DTYPES[t], "y", 24);
        case_input(&c, "x", 24, 0.0, sqrt(eps));
        case_input(&c, "gamma", 8, 1.0, 0.5);
        case_prepare(&c);
        ref_rmsnorm(&c, 3, 8, 0, eps);
        case_run(&c, k);
        kg_free(k);
        bad |= case_compare(&c, "rmsnorm pytorch default eps", "rows=3 dim=8 x ~ sqrt(eps)", 0);
        /* the same data at eps = 1e-6 would give a clearly different y (d shares c's other
         * reference buffers, which are not looked at again) */
        long double *y_eps = c.ref_y;
        Case d = c;
        d.ref_y = xallocL(24);
        ref_rmsnorm(&d, 3, 8, 0, 1e-6);
        long double diff = 0;
        for (size_t i = 0; i < 24; i++)
            if (fabsl(d.ref_y[i] - y_eps[i]) > diff)
                diff = fabsl(d.ref_y[i] - y_eps[i]);
        assert_true(diff > 1e-2);
        free(d.ref_y);
        case_free(&c);
    }
    assert_false(bad);
}

/* ffn gelu default: tanh under torchlean, erf under pytorch; explicit gelu wins. The output
 * must match that GELU's reference (erf and tanh GELU differ by up to 4.7e-4). */
static void test_semantics_gelu(void **state)
{
    static const struct { const char *graph, *sem, *params; int gelu; } cases[] = {
        {"ffn", NULL, "dmodel=6 dff=10", GELU_TANH},
        {"ffn", "torchlean", "dmodel=6 dff=10", GELU_TANH},
        {"ffn", "pytorch", "dmodel=6 dff=10", GELU_ERF},
        {"ffn", "pytorch", "dmodel=6 dff=10 gelu=tanh", GELU_TANH},
        {"ffn", "torchlean", "dmodel=6 dff=10 gelu=erf", GELU_ERF},
        {"seq_ffn", "pytorch", "seq=2 dmodel=6 dff=10", GELU_ERF},
        {"mlp", "torchlean", "seq=2 dmodel=6 dff=10", GELU_TANH},
    };
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int t = 0; t < 2; t++) {
            char what[128];
            snprintf(what, sizeof what, "%s %s --semantics %s %s", cases[i].graph, DTYPES[t],
                     cases[i].sem ? cases[i].sem : "(default)", cases[i].params);
            Opts o = {cases[i].sem, NULL, NULL, NULL};
            kg_kernel *k = build_opts(cases[i].graph, DTYPES[t], &o, "%s", cases[i].params);
            expect_param_string(k, "gelu", GELU_NAMES[cases[i].gelu], what);
            size_t seq = strcmp(cases[i].graph, "ffn") == 0 ? 1 : 2;
            Mlp m = {seq, 6, 10, cases[i].gelu, strcmp(cases[i].graph, "mlp") != 0};
            Case c;
            rng_seed(81);
            case_init(&c, DTYPES[t], "y", seq * 6);
            mlp_inputs(&c, &m);
            for (size_t f = 0; f < 10; f++) /* pre-activations where erf and tanh GELU differ */
                c.in[2][f] = -2.5 + 0.5 * (double)f;
            case_prepare(&c);
            ref_mlp_case(&c, &m);
            case_run(&c, k);
            kg_free(k);
            char op[48];
            snprintf(op, sizeof op, "%s gelu=%s (preset)", cases[i].graph, GELU_NAMES[cases[i].gelu]);
            bad |= case_compare(&c, op, what, 0);
            /* the other GELU's reference must be clearly different for this to mean anything */
            Mlp other = m;
            other.gelu = 1 - m.gelu;
            long double *y_other = xallocL(seq * 6), *pre = xallocL(seq * 10), *hid = xallocL(seq * 10);
            mlp_fwd(&other, c.inL[0], c.inL[1], c.inL[2], c.inL[3], c.inL[4], pre, hid, y_other);
            long double diff = 0;
            for (size_t e = 0; e < seq * 6; e++)
                if (fabsl(y_other[e] - c.ref_y[e]) > diff)
                    diff = fabsl(y_other[e] - c.ref_y[e]);
            assert_true(diff > 1e-4);
            free(y_other);
            free(pre);
            free(hid);
            case_free(&c);
        }
    }
    assert_false(bad);
}

/* ====================================================================================== */

static int group_teardown(void **state)
{
    (void)state;
    printf("worst errors measured (max|d| / max(1, max|ref|) unless marked abs):\n");
    for (int i = 0; i < nstats; i++)
        printf("  %-44s %9.3g  (tol %.0e%s)  at %s\n", stats[i].key, stats[i].worst, stats[i].tol,
               stats[i].absolute ? ", abs" : "", stats[i].where);
    fflush(stdout);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_log_softmax),
        cmocka_unit_test(test_maximum_ties),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rmsnorm_hard_inputs),
        cmocka_unit_test(test_rmsnorm_zero_row),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_batchnorm_hard_inputs),
        cmocka_unit_test(test_instancenorm_alias),
        cmocka_unit_test(test_batchnorm_constant_channel),
        cmocka_unit_test(test_batchnorm_one_element),
        cmocka_unit_test(test_batchnorm_inference),
        cmocka_unit_test(test_batchnorm_inference_negative_var),
        cmocka_unit_test(test_groupnorm),
        cmocka_unit_test(test_groupnorm_hard_inputs),
        cmocka_unit_test(test_groupnorm_constant_group),
        cmocka_unit_test(test_groupnorm_one_element),
        cmocka_unit_test(test_groupnorm_rejects_bad_groups),
        cmocka_unit_test(test_weightnorm),
        cmocka_unit_test(test_weightnorm_zero_row),
        cmocka_unit_test(test_normalize_axis),
        cmocka_unit_test(test_normalize_axis_hard_inputs),
        cmocka_unit_test(test_normalize_axis_one_element),
        cmocka_unit_test(test_ffn),
        cmocka_unit_test(test_seq_ffn_and_mlp),
        cmocka_unit_test(test_gelu_negative_tail),
        cmocka_unit_test(test_prenorm_postnorm_ffn),
        cmocka_unit_test(test_unroll_policies),
        cmocka_unit_test(test_fma_kernels),
        cmocka_unit_test(test_domain_failure_reported),
        cmocka_unit_test(test_semantics_eps_params),
        cmocka_unit_test(test_semantics_rmsnorm_eps_used),
        cmocka_unit_test(test_semantics_gelu),
    };
    return cmocka_run_group_tests_name("operators", tests, NULL, group_teardown);
}
