/* bench.c: the kerngen benchmark. run.sh emits the kernels included below, compiles them and
 * this file with gcc -O3 -march=native -ffp-contract=off, links the hand loops of hand.h
 * compiled with -ffast-math and with tcc, libkerngen (for the JIT) and optionally oneDNN.
 *
 * Every figure is a median over interleaved samples, and the results that matter are ratios
 * between variants measured in the same run: absolute times depend on the machine and its
 * load. Before timing, every variant is checked against the hand-written loops; a variant that
 * disagrees stops the benchmark, so it never times a broken kernel. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kerngen.h"

#include "ffn_256x1024_f32.h"
#include "ffn_256x1024_f32_erf.h"
#include "ffn_256x1024_f32_unrolled.h"
#include "gelu_erf_64x3072_f32.h"
#include "gelu_erf_8x256_f32.h"
#include "gelu_tanh_64x3072_f32.h"
#include "gelu_tanh_8x256_f32.h"
#include "layernorm_256x1024_f32.h"
#include "layernorm_64x768_f32.h"
#include "layernorm_64x768_f32_closed.h"
#include "layernorm_64x768_f64.h"
#include "layernorm_8x64_f32.h"
#include "layernorm_8x64_f32_unrolled.h"
#include "rmsnorm_64x768_f32.h"
#ifdef HAVE_ONEDNN
#include "onednn.h"
#endif

/* hand_*: the hand loops compiled here, with the kernels' flags; fast_* and tcc_* come from
 * hand_fast.c compiled with -ffast-math and with tcc */
#define HAND(name) hand_##name
#include "hand.h"
#undef HAND
#define HAND_PROTOTYPES_ONLY
#define HAND(name) fast_##name
#include "hand.h"
#undef HAND
#define HAND(name) tcc_##name
#include "hand.h"
#undef HAND
#undef HAND_PROTOTYPES_ONLY

#define EPS 1e-6 /* passed to kerngen as eps=1e-6 too */
#define SAMPLES 61
#define SAMPLE_SECONDS 5e-4 /* each sample repeats the call until it lasts at least this */
#define JIT_RUNS 20

/* ---- the cases ---- */

enum kind { LN_FWD, LN_VJP, RMS_FWD, FFN_FWD, GELU_FWD, GELU_BWD };
enum variant { V_AOT, V_HAND, V_FAST, V_DNNL, V_JIT, V_TCC, NVARIANTS };
static const char *const VARIANT_NAMES[NVARIANTS] = {"AOT gcc", "hand", "fast-math", "oneDNN",
                                                     "JIT tcc", "hand tcc"};

typedef int (*ln_fwd_f32_fn)(const float *, const float *, const float *, float *, float *);
typedef int (*ln_fwd_f64_fn)(const double *, const double *, const double *, double *, double *);
typedef int (*ln_vjp_f32_fn)(const float *, const float *, const float *, const float *, float *,
                             float *, float *, float *);
typedef int (*rms_fwd_f32_fn)(const float *, const float *, float *, float *);
typedef int (*ffn_fwd_f32_fn)(const float *, const float *, const float *, const float *,
                              const float *, float *, float *);
typedef int (*gelu_fwd_f32_fn)(const float *, float *, float *);
typedef int (*gelu_bwd_f32_fn)(const float *, const float *, float *, float *);

typedef struct {
    const char *name;
    enum kind kind;
    int f64;
    int n0, n1;            /* layernorm, rmsnorm, gelu: rows, dim; ffn: dmodel, dff */
    void (*aot)(void);     /* the generated function, cast back to its type by kind */
    size_t aot_ws;         /* its workspace in elements, from the generated header */
    const char *graph;     /* the same kernel for the JIT (kg_generate) */
    const char *params[4]; /* NULL-terminated */
    const char *vjp_form;  /* NULL: derived (the default) */
    const char *unroll;    /* as the row's emitted kernel: "none" (emit's default) or "auto" */
    int erf;               /* gelu, ffn: GELU erf (1) or tanh (0) */
} bench_case;

/* "unrolled" rows: the same kernel emitted with --unroll auto (the JIT default) instead of loops */
#define FN(f) ((void (*)(void))(f))
static const bench_case CASES[] = {
    {"layernorm fwd f32 8x64", LN_FWD, 0, 8, 64,
     FN(layernorm_8x64_f32_forward), LAYERNORM_8X64_F32_FORWARD_WS_SIZE,
     "layernorm", {"rows=8", "dim=64", "eps=1e-6"}, NULL, "none", 0},
    {"layernorm fwd f32 8x64 unrolled", LN_FWD, 0, 8, 64,
     FN(layernorm_8x64_f32_unrolled_forward), LAYERNORM_8X64_F32_UNROLLED_FORWARD_WS_SIZE,
     "layernorm", {"rows=8", "dim=64", "eps=1e-6"}, NULL, "auto", 0},
    {"layernorm fwd f32 64x768", LN_FWD, 0, 64, 768,
     FN(layernorm_64x768_f32_forward), LAYERNORM_64X768_F32_FORWARD_WS_SIZE,
     "layernorm", {"rows=64", "dim=768", "eps=1e-6"}, NULL, "none", 0},
    {"layernorm fwd f32 256x1024", LN_FWD, 0, 256, 1024,
     FN(layernorm_256x1024_f32_forward), LAYERNORM_256X1024_F32_FORWARD_WS_SIZE,
     "layernorm", {"rows=256", "dim=1024", "eps=1e-6"}, NULL, "none", 0},
    {"layernorm fwd f64 64x768", LN_FWD, 1, 64, 768,
     FN(layernorm_64x768_f64_forward), LAYERNORM_64X768_F64_FORWARD_WS_SIZE,
     "layernorm", {"rows=64", "dim=768", "eps=1e-6"}, NULL, "none", 0},
    {"layernorm vjp f32 64x768", LN_VJP, 0, 64, 768,
     FN(layernorm_64x768_f32_vjp), LAYERNORM_64X768_F32_VJP_WS_SIZE,
     "layernorm", {"rows=64", "dim=768", "eps=1e-6"}, NULL, "none", 0},
    {"layernorm vjp f32 64x768 closed", LN_VJP, 0, 64, 768,
     FN(layernorm_64x768_f32_closed_vjp), LAYERNORM_64X768_F32_CLOSED_VJP_WS_SIZE,
     "layernorm", {"rows=64", "dim=768", "eps=1e-6"}, "closed", "none", 0},
    {"rmsnorm fwd f32 64x768", RMS_FWD, 0, 64, 768,
     FN(rmsnorm_64x768_f32_forward), RMSNORM_64X768_F32_FORWARD_WS_SIZE,
     "rmsnorm", {"rows=64", "dim=768", "eps=1e-6"}, NULL, "none", 0},
    {"ffn fwd f32 256x1024", FFN_FWD, 0, 256, 1024,
     FN(ffn_256x1024_f32_forward), FFN_256X1024_F32_FORWARD_WS_SIZE,
     "ffn", {"dmodel=256", "dff=1024", "gelu=tanh"}, NULL, "none", 0},
    {"ffn fwd f32 256x1024 unrolled", FFN_FWD, 0, 256, 1024,
     FN(ffn_256x1024_f32_unrolled_forward), FFN_256X1024_F32_UNROLLED_FORWARD_WS_SIZE,
     "ffn", {"dmodel=256", "dff=1024", "gelu=tanh"}, NULL, "auto", 0},
    {"ffn fwd f32 256x1024 erf", FFN_FWD, 0, 256, 1024,
     FN(ffn_256x1024_f32_erf_forward), FFN_256X1024_F32_ERF_FORWARD_WS_SIZE,
     "ffn", {"dmodel=256", "dff=1024", "gelu=erf"}, NULL, "none", 1},
    {"gelu erf fwd f32 8x256", GELU_FWD, 0, 8, 256,
     FN(gelu_erf_8x256_f32_forward), GELU_ERF_8X256_F32_FORWARD_WS_SIZE,
     "bench/gelu.lua", {"rows=8", "dim=256", "approx=erf"}, NULL, "none", 1},
    {"gelu erf bwd f32 8x256", GELU_BWD, 0, 8, 256,
     FN(gelu_erf_8x256_f32_vjp), GELU_ERF_8X256_F32_VJP_WS_SIZE,
     "bench/gelu.lua", {"rows=8", "dim=256", "approx=erf"}, NULL, "none", 1},
    {"gelu erf fwd f32 64x3072", GELU_FWD, 0, 64, 3072,
     FN(gelu_erf_64x3072_f32_forward), GELU_ERF_64X3072_F32_FORWARD_WS_SIZE,
     "bench/gelu.lua", {"rows=64", "dim=3072", "approx=erf"}, NULL, "none", 1},
    {"gelu erf bwd f32 64x3072", GELU_BWD, 0, 64, 3072,
     FN(gelu_erf_64x3072_f32_vjp), GELU_ERF_64X3072_F32_VJP_WS_SIZE,
     "bench/gelu.lua", {"rows=64", "dim=3072", "approx=erf"}, NULL, "none", 1},
    {"gelu tanh fwd f32 8x256", GELU_FWD, 0, 8, 256,
     FN(gelu_tanh_8x256_f32_forward), GELU_TANH_8X256_F32_FORWARD_WS_SIZE,
     "bench/gelu.lua", {"rows=8", "dim=256", "approx=tanh"}, NULL, "none", 0},
    {"gelu tanh bwd f32 8x256", GELU_BWD, 0, 8, 256,
     FN(gelu_tanh_8x256_f32_vjp), GELU_TANH_8X256_F32_VJP_WS_SIZE,
     "bench/gelu.lua", {"rows=8", "dim=256", "approx=tanh"}, NULL, "none", 0},
    {"gelu tanh fwd f32 64x3072", GELU_FWD, 0, 64, 3072,
     FN(gelu_tanh_64x3072_f32_forward), GELU_TANH_64X3072_F32_FORWARD_WS_SIZE,
     "bench/gelu.lua", {"rows=64", "dim=3072", "approx=tanh"}, NULL, "none", 0},
    {"gelu tanh bwd f32 64x3072", GELU_BWD, 0, 64, 3072,
     FN(gelu_tanh_64x3072_f32_vjp), GELU_TANH_64X3072_F32_VJP_WS_SIZE,
     "bench/gelu.lua", {"rows=64", "dim=3072", "approx=tanh"}, NULL, "none", 0},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

/* the hand loops under the three compilers */
typedef struct {
    void (*ln32)(int, int, float, const float *, const float *, const float *, float *);
    void (*ln64)(int, int, double, const double *, const double *, const double *, double *);
    void (*ln_vjp32)(int, int, float, const float *, const float *, const float *, float *,
                     float *, float *);
    void (*rms32)(int, int, float, const float *, const float *, float *);
    void (*ffn32)(int, int, int, const float *, const float *, const float *, const float *,
                  const float *, float *, float *);
    void (*gelu32)(int, int, const float *, float *);
    void (*gelu_bwd32)(int, int, const float *, const float *, float *);
} hand_impl;
static const hand_impl HAND_GCC = {hand_layernorm_f32, hand_layernorm_f64, hand_layernorm_vjp_f32,
                                   hand_rmsnorm_f32, hand_ffn_f32, hand_gelu_f32, hand_gelu_bwd_f32};
static const hand_impl HAND_FAST = {fast_layernorm_f32, fast_layernorm_f64, fast_layernorm_vjp_f32,
                                    fast_rmsnorm_f32, fast_ffn_f32, fast_gelu_f32, fast_gelu_bwd_f32};
static const hand_impl HAND_TCC = {tcc_layernorm_f32, tcc_layernorm_f64, tcc_layernorm_vjp_f32,
                                   tcc_rmsnorm_f32, tcc_ffn_f32, tcc_gelu_f32, tcc_gelu_bwd_f32};

/* ---- buffers of one case ---- */

typedef struct {
    const bench_case *c;
    size_t esize;
    int nin, nout;
    void *in[5], *out[3], *ref[3], *ws;
    size_t in_n[5], out_n[3];
    kg_kernel *jit;
    void *jit_args[10];
    int has[NVARIANTS];
#ifdef HAVE_ONEDNN
    onednn_ln *dnnl;
    onednn_gelu *dnnl_gelu;
#endif
} state;

static void *xmalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "bench: out of memory\n");
        exit(3);
    }
    return p;
}

static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static double normal(void) /* approximately N(0,1): sum of 12 uniforms (xorshift64*) - 6 */
{
    double s = 0;
    for (int i = 0; i < 12; i++) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        s += (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
    }
    return s - 6.0;
}

static void fill(void *p, size_t n, int f64, double scale, double offset)
{
    for (size_t i = 0; i < n; i++) {
        double v = offset + scale * normal();
        if (f64)
            ((double *)p)[i] = v;
        else
            ((float *)p)[i] = (float)v;
    }
}

/* element counts of inputs and outputs in kerngen's argument order, with the inputs' values:
 * normal * scale + offset (x off-centre, gamma near 1, weights scaled by 1/sqrt(fan-in)) */
static void setup_buffers(state *s)
{
    const bench_case *c = s->c;
    size_t a = (size_t)c->n0, b = (size_t)c->n1;
    double init[5][2] = {{1, 1}, {0.1, 1}, {0.1, 0}, {1, 0}, {1, 0}};
    switch (c->kind) {
    case LN_FWD:
    case LN_VJP:
        s->nin = c->kind == LN_VJP ? 4 : 3;
        s->in_n[0] = a * b, s->in_n[1] = b, s->in_n[2] = b, s->in_n[3] = a * b;
        s->nout = c->kind == LN_VJP ? 3 : 1;
        s->out_n[0] = a * b, s->out_n[1] = b, s->out_n[2] = b;
        break;
    case RMS_FWD:
        s->nin = 2, s->nout = 1;
        s->in_n[0] = a * b, s->in_n[1] = b, s->out_n[0] = a * b;
        break;
    case FFN_FWD: /* x[dmodel], w1[dff][dmodel], b1[dff], w2[dmodel][dff], b2[dmodel] */
        s->nin = 5, s->nout = 1;
        s->in_n[0] = a, s->in_n[1] = b * a, s->in_n[2] = b, s->in_n[3] = a * b, s->in_n[4] = a;
        s->out_n[0] = a;
        init[0][1] = 0, init[1][0] = 1 / sqrt((double)a), init[1][1] = 0;
        init[2][0] = 0.1, init[3][0] = 1 / sqrt((double)b), init[4][0] = 0.1;
        break;
    case GELU_FWD: /* x, pre-activations of scale 2 (tails included) */
    case GELU_BWD: /* x, y.cotangent */
        s->nin = c->kind == GELU_BWD ? 2 : 1, s->nout = 1;
        s->in_n[0] = s->in_n[1] = s->out_n[0] = a * b;
        init[0][0] = 2, init[0][1] = 0;
        break;
    }
    for (int i = 0; i < s->nin; i++) {
        s->in[i] = xmalloc(s->in_n[i] * s->esize);
        fill(s->in[i], s->in_n[i], c->f64, init[i][0], init[i][1]);
    }
    for (int i = 0; i < s->nout; i++) {
        s->out[i] = xmalloc(s->out_n[i] * s->esize);
        s->ref[i] = xmalloc(s->out_n[i] * s->esize);
    }
}

/* kg_generate + kg_compile the same kernel; its arguments must have our buffers' sizes */
static void setup_jit(state *s, size_t *ws_n)
{
    const bench_case *c = s->c;
    kg_request req = {0};
    char *err = NULL;
    req.graph = c->graph;
    req.params = c->params;
    while (req.nparams < 4 && c->params[req.nparams])
        req.nparams++;
    req.dtype = c->f64 ? "f64" : "f32";
    req.vjp_form = c->vjp_form;
    req.unroll = c->unroll;
    if (kg_generate(&req, &s->jit, &err) || kg_compile(s->jit, &err)) {
        fprintf(stderr, "bench: %s: %s\n", c->name, err);
        exit(3);
    }
    kg_pass pass = c->kind == LN_VJP || c->kind == GELU_BWD ? KG_VJP : KG_FORWARD;
    int n = kg_nargs(s->jit, pass);
    if (n != s->nin + s->nout) {
        fprintf(stderr, "bench: %s: JIT kernel has %d arguments, expected %d\n", c->name, n,
                s->nin + s->nout);
        exit(3);
    }
    for (int i = 0; i < n; i++) {
        size_t want = i < s->nin ? s->in_n[i] : s->out_n[i - s->nin];
        if (kg_arg_at(s->jit, pass, i)->count != want) {
            fprintf(stderr, "bench: %s: JIT argument %s has %zu elements, expected %zu\n",
                    c->name, kg_arg_at(s->jit, pass, i)->cname, kg_arg_at(s->jit, pass, i)->count,
                    want);
            exit(3);
        }
        s->jit_args[i] = i < s->nin ? s->in[i] : s->out[i - s->nin];
    }
    if (kg_ws_size(s->jit, pass) > *ws_n)
        *ws_n = kg_ws_size(s->jit, pass);
}

static void setup(state *s, const bench_case *c)
{
    memset(s, 0, sizeof *s);
    s->c = c;
    s->esize = c->f64 ? sizeof(double) : sizeof(float);
    setup_buffers(s);
    size_t ws_n = c->aot_ws > (size_t)c->n1 ? c->aot_ws : (size_t)c->n1; /* hand ffn: hidden */
    setup_jit(s, &ws_n);
    s->ws = xmalloc(ws_n * s->esize);
    s->jit_args[s->nin + s->nout] = s->ws;
    for (int v = 0; v < NVARIANTS; v++)
        s->has[v] = v != V_DNNL;
#ifdef HAVE_ONEDNN
    if (c->kind == LN_FWD && !c->f64) {
        s->dnnl = onednn_ln_create(c->n0, c->n1, (float)EPS, s->in[0], s->in[1], s->in[2],
                                   s->out[0]);
        s->has[V_DNNL] = s->dnnl != NULL;
    }
    if (c->kind == GELU_FWD || c->kind == GELU_BWD) {
        s->dnnl_gelu = onednn_gelu_create(c->n0 * c->n1, c->erf, c->kind == GELU_BWD, s->in[0],
                                          s->in[1], s->out[0]);
        s->has[V_DNNL] = s->dnnl_gelu != NULL;
    }
#endif
}

static void teardown(state *s)
{
    for (int i = 0; i < s->nin; i++)
        free(s->in[i]);
    for (int i = 0; i < s->nout; i++) {
        free(s->out[i]);
        free(s->ref[i]);
    }
    free(s->ws);
    kg_free(s->jit);
#ifdef HAVE_ONEDNN
    onednn_ln_free(s->dnnl);
    onednn_gelu_free(s->dnnl_gelu);
#endif
}

/* ---- one call of one variant ---- */

static int run_aot(const state *s)
{
    const bench_case *c = s->c;
    void *const *a = s->in, *const *o = s->out;
    switch (c->kind) {
    case LN_FWD:
        if (c->f64)
            return ((ln_fwd_f64_fn)c->aot)(a[0], a[1], a[2], o[0], s->ws);
        return ((ln_fwd_f32_fn)c->aot)(a[0], a[1], a[2], o[0], s->ws);
    case LN_VJP:
        return ((ln_vjp_f32_fn)c->aot)(a[0], a[1], a[2], a[3], o[0], o[1], o[2], s->ws);
    case RMS_FWD:
        return ((rms_fwd_f32_fn)c->aot)(a[0], a[1], o[0], s->ws);
    case FFN_FWD:
        return ((ffn_fwd_f32_fn)c->aot)(a[0], a[1], a[2], a[3], a[4], o[0], s->ws);
    case GELU_FWD:
        return ((gelu_fwd_f32_fn)c->aot)(a[0], o[0], s->ws);
    case GELU_BWD:
        return ((gelu_bwd_f32_fn)c->aot)(a[0], a[1], o[0], s->ws);
    }
    return -1;
}

static int run_hand(const state *s, const hand_impl *h)
{
    const bench_case *c = s->c;
    void *const *a = s->in, *const *o = s->out;
    switch (c->kind) {
    case LN_FWD:
        if (c->f64)
            h->ln64(c->n0, c->n1, EPS, a[0], a[1], a[2], o[0]);
        else
            h->ln32(c->n0, c->n1, (float)EPS, a[0], a[1], a[2], o[0]);
        return 0;
    case LN_VJP: /* beta (a[2]) does not enter the gradients */
        h->ln_vjp32(c->n0, c->n1, (float)EPS, a[0], a[1], a[3], o[0], o[1], o[2]);
        return 0;
    case RMS_FWD:
        h->rms32(c->n0, c->n1, (float)EPS, a[0], a[1], o[0]);
        return 0;
    case FFN_FWD:
        h->ffn32(c->n0, c->n1, c->erf, a[0], a[1], a[2], a[3], a[4], o[0], s->ws);
        return 0;
    case GELU_FWD:
        h->gelu32(c->n0 * c->n1, c->erf, a[0], o[0]);
        return 0;
    case GELU_BWD:
        h->gelu_bwd32(c->n0 * c->n1, c->erf, a[0], a[1], o[0]);
        return 0;
    }
    return -1;
}

static int run_variant(const void *ctx, int variant)
{
    const state *s = ctx;
    switch ((enum variant)variant) {
    case V_AOT: return run_aot(s);
    case V_HAND: return run_hand(s, &HAND_GCC);
    case V_FAST: return run_hand(s, &HAND_FAST);
    case V_TCC: return run_hand(s, &HAND_TCC);
    case V_JIT:
        return kg_call(s->jit, s->c->kind == LN_VJP || s->c->kind == GELU_BWD ? KG_VJP : KG_FORWARD,
                       s->jit_args);
#ifdef HAVE_ONEDNN
    case V_DNNL: return s->dnnl ? onednn_ln_run(s->dnnl) : onednn_gelu_run(s->dnnl_gelu);
#endif
    default: return -1;
    }
}

/* ---- the timing helper ---- */

typedef struct {
    int (*fn)(const void *ctx, int arg);
    const void *ctx;
    int arg;
} job;

static volatile int sink;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double sample(const job *j, long reps)
{
    double t0 = now();
    for (long r = 0; r < reps; r++)
        sink += j->fn(j->ctx, j->arg);
    return now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median time per call (us) of each job, and its spread (interquartile range / median). Each
 * job is warmed up while its repetition count is calibrated (doubling until one sample lasts
 * SAMPLE_SECONDS); then the samples are taken round-robin over the jobs, so that a change in
 * machine load hits every job of a comparison alike. */
static void time_jobs(const job *jobs, int n, double *us, double *spread)
{
    long reps[NVARIANTS];
    double t[NVARIANTS][SAMPLES];
    for (int j = 0; j < n; j++) {
        reps[j] = 1;
        while (sample(&jobs[j], reps[j]) < SAMPLE_SECONDS && reps[j] < (1L << 30))
            reps[j] *= 2;
    }
    for (int k = 0; k < SAMPLES; k++)
        for (int j = 0; j < n; j++)
            t[j][k] = sample(&jobs[j], reps[j]) / (double)reps[j];
    for (int j = 0; j < n; j++) {
        qsort(t[j], SAMPLES, sizeof t[j][0], cmp_double);
        us[j] = 1e6 * t[j][SAMPLES / 2];
        spread[j] = (t[j][3 * SAMPLES / 4] - t[j][SAMPLES / 4]) / t[j][SAMPLES / 2];
    }
}

/* ---- verification ---- */

static double value(const void *p, size_t i, int f64)
{
    return f64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

/* max |out - ref| over all outputs (NaN if any output is NaN), and max |ref| */
static double max_diff(const state *s, void *const *a, void *const *b, double *max_ref)
{
    double m = 0;
    *max_ref = 0;
    for (int o = 0; o < s->nout; o++)
        for (size_t i = 0; i < s->out_n[o]; i++) {
            double r = value(b[o], i, s->c->f64), d = fabs(value(a[o], i, s->c->f64) - r);
            if (d > m || d != d)
                m = d;
            if (fabs(r) > *max_ref)
                *max_ref = fabs(r);
        }
    return m;
}

static void poison_outputs(const state *s)
{
    for (int o = 0; o < s->nout; o++)
        memset(s->out[o], 0xff, s->out_n[o] * s->esize); /* all-ones bits: NaN */
}

/* Runs every variant once against the hand loops (the reference, gcc without fast-math) and
 * stops the program if one disagrees beyond the tolerance. Also reports whether the JIT (tcc)
 * kernel is bit-identical to the AOT (gcc) one, as the generator promises. */
static void verify(state *s)
{
    const bench_case *c = s->c;
    double tol = c->f64 ? 1e-10 : 1e-4, max_ref = 0;
    int bad = 0;
    poison_outputs(s);
    run_variant(s, V_HAND);
    for (int o = 0; o < s->nout; o++)
        memcpy(s->ref[o], s->out[o], s->out_n[o] * s->esize);
    printf("%-32s max|diff| vs hand:", c->name);
    for (int v = 0; v < NVARIANTS; v++) {
        if (v == V_HAND || !s->has[v])
            continue;
        poison_outputs(s);
        int rc = run_variant(s, v);
        double d = max_diff(s, s->out, s->ref, &max_ref);
        int ok = rc == 0 && d <= tol * (max_ref > 1 ? max_ref : 1);
        printf(" %s %.1e%s", VARIANT_NAMES[v], d, ok ? "" : (rc ? " (FAILED: rc)" : " (FAILED)"));
        bad |= !ok;
    }
    /* JIT vs AOT, bit for bit */
    void *aot[3];
    poison_outputs(s);
    run_variant(s, V_AOT);
    for (int o = 0; o < s->nout; o++) {
        aot[o] = xmalloc(s->out_n[o] * s->esize);
        memcpy(aot[o], s->out[o], s->out_n[o] * s->esize);
    }
    poison_outputs(s);
    run_variant(s, V_JIT);
    int same = 1;
    for (int o = 0; o < s->nout; o++) {
        same &= memcmp(aot[o], s->out[o], s->out_n[o] * s->esize) == 0;
        free(aot[o]);
    }
    printf("; JIT==AOT bits: %s\n", same ? "yes" : "no");
    if (bad) {
        fprintf(stderr, "bench: %s: a variant disagrees with the hand-written reference; "
                        "not timing it\n", c->name);
        exit(1);
    }
}

/* ---- the report ---- */

static double us[NCASES][NVARIANTS], spread[NCASES][NVARIANTS];

static void print_cell(double v, int width, int decimals)
{
    if (v == v)
        printf("%*.*f", width, decimals, v);
    else
        printf("%*s", width, "-");
}

static void print_tables(void)
{
    printf("\nTime per call, microseconds (median of %d samples; noise = largest interquartile "
           "range / median in the row)\n", SAMPLES);
    printf("%-32s", "case");
    for (int v = 0; v < NVARIANTS; v++)
        printf("%10s", VARIANT_NAMES[v]);
    printf("%8s\n", "noise");
    for (int c = 0; c < NCASES; c++) {
        double noise = 0;
        printf("%-32s", CASES[c].name);
        for (int v = 0; v < NVARIANTS; v++) {
            print_cell(us[c][v], 10, us[c][v] < 10 ? 3 : 1);
            if (spread[c][v] > noise)
                noise = spread[c][v];
        }
        printf("%7.0f%%\n", 100 * noise);
    }
    printf("\nRatios (> 1: the generated kernel is faster; tcc/gcc: the generated kernel JIT-"
           "compiled by tcc vs AOT by gcc)\n");
    printf("%-32s%11s%11s%11s%11s%15s\n", "case", "hand/AOT", "fast/AOT", "oneDNN/AOT",
           "tcc/gcc", "hand tcc/JIT");
    for (int c = 0; c < NCASES; c++) {
        const double *t = us[c];
        printf("%-32s", CASES[c].name);
        print_cell(t[V_HAND] / t[V_AOT], 11, 2);
        print_cell(t[V_FAST] / t[V_AOT], 11, 2);
        print_cell(t[V_DNNL] / t[V_AOT], 11, 2);
        print_cell(t[V_JIT] / t[V_AOT], 11, 2);
        print_cell(t[V_TCC] / t[V_JIT], 15, 2);
        printf("\n");
    }
}

/* ---- memory bandwidth reference ---- */

typedef struct {
    void *dst;
    const void *src;
    size_t bytes;
} copy_job;

static int run_copy(const void *ctx, int arg)
{
    const copy_job *j = ctx;
    (void)arg;
    memcpy(j->dst, j->src, j->bytes);
    return 0;
}

/* memcpy of x into a y-sized buffer moves the bytes a LayerNorm forward must move (read x,
 * write y; gamma and beta are negligible); timed interleaved with the generated kernel */
static void bandwidth(int ci)
{
    const bench_case *c = &CASES[ci];
    state s;
    setup(&s, c);
    size_t half = (size_t)c->n0 * (size_t)c->n1 * s.esize;
    void *dst = xmalloc(half);
    copy_job cj = {dst, s.in[0], half};
    job jobs[2] = {{run_copy, &cj, 0}, {run_variant, &s, V_AOT}};
    double t[2], sp[2];
    time_jobs(jobs, 2, t, sp);
    double bytes = 2.0 * (double)half;
    printf("\nBandwidth, %s: %.1f MB moved per call (read x, write y)\n", c->name, bytes / 1e6);
    printf("  %-24s %9.1f us %7.1f GB/s\n", "memcpy x -> y", t[0], bytes / t[0] / 1e3);
    printf("  %-24s %9.1f us %7.1f GB/s  (%.0f%% of memcpy)\n", "AOT gcc (same samples)", t[1],
           bytes / t[1] / 1e3, 100 * t[0] / t[1]);
    for (int v = 0; v < NVARIANTS; v++)
        if (v != V_AOT && us[ci][v] == us[ci][v])
            printf("  %-24s %9.1f us %7.1f GB/s\n", VARIANT_NAMES[v], us[ci][v],
                   bytes / us[ci][v] / 1e3);
    free(dst);
    teardown(&s);
}

/* ---- JIT latency ---- */

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

static void jit_latency(const char *graph, const char *const *params, int nparams,
                        const char *unroll)
{
    double gen[JIT_RUNS], comp[JIT_RUNS], total[JIT_RUNS];
    size_t stmts = 0, bytes = 0;
    kg_request req = {0};
    req.graph = graph;
    req.params = params;
    req.nparams = nparams;
    req.dtype = "f32";
    req.unroll = unroll;
    for (int r = -1; r < JIT_RUNS; r++) { /* run -1 is a warm-up */
        kg_kernel *k = NULL;
        char *err = NULL;
        double t0 = now();
        if (kg_generate(&req, &k, &err) == KG_OK) {
            double t1 = now();
            if (kg_compile(k, &err) == KG_OK) {
                double t2 = now();
                if (r >= 0)
                    gen[r] = 1e3 * (t1 - t0), comp[r] = 1e3 * (t2 - t1), total[r] = 1e3 * (t2 - t0);
                kg_stats(k, &stmts, &bytes);
                kg_free(k);
                continue;
            }
        }
        fprintf(stderr, "bench: JIT %s: %s\n", graph, err);
        exit(3);
    }
    char label[64];
    snprintf(label, sizeof label, "%s %s %s (%s)", graph, params[0], params[1],
             unroll ? unroll : "auto");
    printf("  %-34s %9.2f %11.2f %9.2f %10zu\n", label, median(gen, JIT_RUNS),
           median(comp, JIT_RUNS), median(total, JIT_RUNS), bytes);
}

int main(void)
{
    printf("Verification (every variant once, against the hand loops compiled like the kernels; "
           "tolerance 1e-4 f32, 1e-10 f64, relative to max(1, max|ref|))\n");
    for (int c = 0; c < NCASES; c++) {
        state s;
        setup(&s, &CASES[c]);
        verify(&s);
#ifdef HAVE_ONEDNN
        if (s.dnnl)
            printf("%-32s oneDNN implementation: %s\n", "", onednn_ln_impl(s.dnnl));
        if (s.dnnl_gelu)
            printf("%-32s oneDNN implementation: %s\n", "", onednn_gelu_impl(s.dnnl_gelu));
#endif
        job jobs[NVARIANTS];
        int idx[NVARIANTS], n = 0;
        double t[NVARIANTS], sp[NVARIANTS];
        for (int v = 0; v < NVARIANTS; v++) {
            us[c][v] = spread[c][v] = NAN;
            if (s.has[v]) {
                jobs[n].fn = run_variant, jobs[n].ctx = &s, jobs[n].arg = v;
                idx[n++] = v;
            }
        }
        time_jobs(jobs, n, t, sp);
        for (int j = 0; j < n; j++)
            us[c][idx[j]] = t[j], spread[c][idx[j]] = sp[j];
        teardown(&s);
    }
    print_tables();
    for (int c = 0; c < NCASES; c++)
        if (CASES[c].kind == LN_FWD && CASES[c].n0 == 256)
            bandwidth(c);

    static const char *const ln[] = {"rows=8", "dim=64"}, *const ffn[] = {"dmodel=64", "dff=256"};
    printf("\nJIT latency, f32, median of %d runs (ms; C bytes = generated source)\n", JIT_RUNS);
    printf("  %-34s %9s %11s %9s %10s\n", "kernel", "generate", "tcc compile", "total", "C bytes");
    jit_latency("layernorm", ln, 2, NULL);
    jit_latency("layernorm", ln, 2, "none");
    jit_latency("ffn", ffn, 2, NULL);
    jit_latency("ffn", ffn, 2, "none");
    return 0;
}
