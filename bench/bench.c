/* bench.c: the kerngen benchmark. run.sh emits one kernel per case of cases.txt, compiles it
 * with gcc -O3 -march=native -ffp-contract=off (as an AOT user would), generates the glue that
 * lists the functions each header declares (glue.h), and links this file with the hand loops
 * (hand.c at -O3, at -Ofast and under tcc), libkerngen (the JIT: the tcc and cc tiers) and
 * optionally oneDNN.
 *
 * Each case gives four rows: fwd (forward), bwd (VJP: the gradient of every input), jvp and
 * train (a training step: forward then backward in one timed unit). Per row:
 *   1. every contender runs once and its outputs are compared with a reference (hand.c's loops
 *      in double precision); one that disagrees beyond the tolerance is reported and not timed,
 *      and the benchmark exits 1 at the end;
 *   2. the contenders and a copy of the bytes the row must move (the memory bound) are timed
 *      interleaved: a sample of each in turn, the median per call reported, so a change of
 *      machine load hits all of them alike; samples measure the process's CPU time.
 * Only ratios within one run mean something; absolute times depend on the machine's load. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "glue.h"
#include "hand_call.h"
#include "kerngen.h"
#ifdef HAVE_ONEDNN
#include "onednn.h"
#endif

#define SAMPLE_SECONDS 5e-4 /* each sample repeats the call until it lasts at least this */
#define ROW_SECONDS 2.0     /* sampling time per row, within... */
#define SAMPLES_MIN 5       /* ...these limits on the number of samples */
#define SAMPLES_MAX 101
/* Tolerance of the check: max |out - ref| <= TOL * max |ref|, per output tensor, ref in double.
 * f32: 2e-5 is about 170 ulp of 1.0; sums of up to 4096 terms in f32 and the few-ulp erf, exp
 * and tanh of libm, libmvec (-Ofast) and oneDNN stay within 3e-6 here, while a wrong formula,
 * index or argument binding is off by O(1). */
#define TOL_F32 2e-5
#define TOL_F64 1e-10

/* ---- contenders, passes ---- */

enum variant { V_AOT, V_HAND, V_FAST, V_DNNL, V_JIT, V_CC, V_TCC, NVARIANTS };
static const char *const VNAME[NVARIANTS] = {"AOT", "hand -O3", "hand -Ofast", "oneDNN",
                                             "JIT tcc", "JIT cc", "hand tcc"};
enum pass { P_FWD, P_BWD, P_JVP, P_TRAIN, NPASSES };
static const char *const PNAME[NPASSES] = {"fwd", "bwd", "jvp", "train"};
static const char *const OPS[] = {"layernorm", "rmsnorm", "batchnorm", "groupnorm",
                                  "gelu", "ffn", "seq_ffn"};
#define NOPS 7

/* ---- small utilities ---- */

/* Buffer placement. malloc puts large blocks at one offset within a page, so that a kernel's
   input and output rows share their addresses modulo 4 KB, and where a load follows a store to
   the same low 12 address bits it waits for it (4K aliasing); which blocks come from the heap
   instead, at other offsets, depends on the allocator's history, which changed between builds of
   this benchmark (kerngen's LayerNorm 64x768 forward: 7.7 to 10.7 us with the same code). So
   buffers are placed here, the same way in every run: BENCH_PLACE=stagger (the default) starts
   the k-th buffer of a case k * 320 bytes into a page (the first 64 at different offsets modulo
   4 KB), BENCH_PLACE=page every buffer at a page boundary (malloc's large blocks, all aligned
   alike). bench/README.md, "Placement", has what page placement costs every contender. */
static int place_page;
static unsigned place_next; /* buffers allocated since the case began */

static void *xmalloc(size_t bytes)
{
    size_t off = place_page ? 0 : (size_t)(place_next++ % 64) * 320 % 4096;
    void *base = NULL;
    if (posix_memalign(&base, 4096, bytes + off + 4096) != 0) {
        fprintf(stderr, "bench: out of memory\n");
        exit(3);
    }
    void **p = (void **)((char *)base + 4096 + off);
    p[-1] = base; /* for xfree, in the page before */
    return p;
}

static void xfree(void *p)
{
    if (p)
        free(((void **)p)[-1]);
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(3);
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

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU time of the process: what timing measures. On a shared machine the time slices other
 * processes take do not count (a contender whose single call lasts 10 ms would otherwise pay
 * for them in every sample, one whose samples are repetitions of short calls only in some);
 * their effect on caches and memory bandwidth still does. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- one case: its buffers by name, its reference results ---- */

typedef struct {
    char name[48];
    void *p;
    size_t n; /* elements */
} buf;

#define MAXBUF 48
#define MAXIN 5

typedef struct {
    const glue_kernel *k;
    int op_index;         /* into OPS */
    int f64;
    size_t es;            /* element size */
    char label[64];       /* e.g. "layernorm 64x768" */
    hand_call hc;         /* the case's buffers as the hand loops see them */
    int nin;              /* inputs: x, then the parameters in kerngen's order */
    const char *in[MAXIN];
    buf b[MAXBUF];
    int nb;
    void *ws;             /* kerngen's workspace, shared by all passes (AOT and JIT) */
    size_t ws_n;
    double *ref_y, *ref_ty, *ref_grad[MAXIN]; /* the reference, double */
    const glue_fn *fn[NPASSES][2];            /* the AOT functions of each row, in order */
    const glue_fn *prep_bwd;                  /* run once before a bwd row (forward_train) */
    int saved_api;                            /* forward_train + vjp_saved are declared */
    long flops[NPASSES];                      /* matrix-product flops (ffn), 0 otherwise */
    kg_kernel *jit;                           /* the tcc tier (kg_request.jit "tcc") */
    double jit_generate_ms, jit_compile_ms;
    size_t jit_bytes;
    kg_kernel *cc;                            /* the cc tier; NULL when it fell back to tcc */
    double cc_generate_ms, cc_cold_ms, cc_warm_ms; /* warm: NAN when the cache missed again */
} bcase;

static buf *find(bcase *c, const char *name)
{
    for (int i = 0; i < c->nb; i++)
        if (strcmp(c->b[i].name, name) == 0)
            return &c->b[i];
    return NULL;
}

/* the buffer `name` of n elements, allocated (zeroed) when new */
static buf *get(bcase *c, const char *name, size_t n)
{
    buf *b = find(c, name);
    if (b) {
        if (b->n != n) {
            fprintf(stderr, "bench: %s: argument %s has %zu elements here, %zu elsewhere\n",
                    c->k->name, name, n, b->n);
            exit(3);
        }
        return b;
    }
    if (c->nb == MAXBUF)
        die("too many buffers in", c->k->name);
    b = &c->b[c->nb++];
    snprintf(b->name, sizeof b->name, "%s", name);
    b->n = n;
    b->p = xmalloc(n * c->es);
    memset(b->p, 0, n * c->es);
    return b;
}

static const char *named_name(const char *fmt, const char *a)
{
    static char name[48];
    snprintf(name, sizeof name, fmt, a);
    return name;
}

/* the buffer named by fmt and a (e.g. "%s_grad", "x"); it must exist */
static void *named(bcase *c, const char *fmt, const char *a)
{
    const char *name = named_name(fmt, a);
    buf *b = find(c, name);
    if (!b)
        die("no buffer named", name);
    return b->p;
}

static void fill(bcase *c, buf *b, double scale, double offset)
{
    for (size_t i = 0; i < b->n; i++) {
        double v = offset + scale * normal();
        if (c->f64)
            ((double *)b->p)[i] = v;
        else
            ((float *)b->p)[i] = (float)v;
    }
}

static double get_value(const bcase *c, const void *p, size_t i)
{
    return c->f64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

/* NAME=VALUE from the case's emit parameters */
static const char *param(const glue_kernel *k, const char *name, char *out, size_t size)
{
    size_t len = strlen(name);
    const char *s = k->params;
    while (*s) {
        while (*s == ' ')
            s++;
        size_t w = strcspn(s, " ");
        if (w > len && strncmp(s, name, len) == 0 && s[len] == '=') {
            snprintf(out, size, "%.*s", (int)(w - len - 1), s + len + 1);
            return out;
        }
        s += w;
    }
    return NULL;
}

static int iparam(const glue_kernel *k, const char *name)
{
    char v[32];
    if (!param(k, name, v, sizeof v))
        die("missing parameter", name);
    return atoi(v);
}

static const glue_fn *find_fn(const glue_kernel *k, const char *pass)
{
    for (int i = 0; i < k->nfns; i++)
        if (strcmp(k->fns[i].pass, pass) == 0)
            return &k->fns[i];
    return NULL;
}

/* input scales: x off-centre for the normalizations, spread for GELU; gamma near 1; weights
 * scaled by 1/sqrt(fan-in); tangents and cotangents N(0,1) times the input's scale */
static void input_scale(const bcase *c, const char *name, double *scale, double *offset)
{
    const int *d = c->hc.d;
    *offset = 0;
    *scale = 0.1;
    if (strcmp(name, "x") == 0) {
        *scale = c->hc.op == HAND_GELU ? 2.0 : 1.0;
        *offset = c->hc.op == HAND_GELU || c->hc.op == HAND_FFN ? 0.0 : 1.0;
    } else if (strcmp(name, "gamma") == 0) {
        *offset = 1.0;
    } else if (strcmp(name, "w1") == 0) {
        *scale = 1 / sqrt((double)d[1]);
    } else if (strcmp(name, "w2") == 0) {
        *scale = 1 / sqrt((double)d[2]);
    }
}

static void setup_dims(bcase *c)
{
    const glue_kernel *k = c->k;
    hand_call *h = &c->hc;
    char v[32];
    static const char *const P_NORM[] = {"gamma", "beta"}, *const P_RMS[] = {"gamma"},
                             *const P_FFN[] = {"w1", "b1", "w2", "b2"};
    const char *const *pn = P_NORM;
    int np = 2;
    h->eps = param(k, "eps", v, sizeof v) ? atof(v) : 0;
    h->erf = param(k, "gelu", v, sizeof v) && strcmp(v, "erf") == 0;
    switch (c->op_index) {
    case 0:
    case 1:
        h->op = c->op_index == 0 ? HAND_LAYERNORM : HAND_RMSNORM;
        h->d[0] = iparam(k, "rows"), h->d[1] = iparam(k, "dim");
        snprintf(c->label, sizeof c->label, "%s %dx%d", k->op, h->d[0], h->d[1]);
        if (c->op_index == 1)
            pn = P_RMS, np = 1;
        break;
    case 2:
        h->op = HAND_BATCHNORM;
        h->d[0] = iparam(k, "c"), h->d[2] = iparam(k, "h"), h->d[3] = iparam(k, "w");
        h->d[1] = h->d[2] * h->d[3];
        snprintf(c->label, sizeof c->label, "batchnorm c%d %dx%d", h->d[0], h->d[2], h->d[3]);
        break;
    case 3:
        h->op = HAND_GROUPNORM;
        h->d[0] = iparam(k, "b"), h->d[1] = iparam(k, "h") * iparam(k, "w");
        h->d[2] = iparam(k, "c"), h->d[3] = iparam(k, "groups");
        snprintf(c->label, sizeof c->label, "groupnorm %dx%dx%dx%d g%d", h->d[0], iparam(k, "h"),
                 iparam(k, "w"), h->d[2], h->d[3]);
        break;
    case 4:
        h->op = HAND_GELU;
        h->d[0] = iparam(k, "rows") * iparam(k, "dim");
        snprintf(c->label, sizeof c->label, "gelu %s %dx%d", h->erf ? "erf" : "tanh",
                 iparam(k, "rows"), iparam(k, "dim"));
        np = 0;
        break;
    default:
        h->op = HAND_FFN;
        h->d[0] = c->op_index == 5 ? 1 : iparam(k, "seq");
        h->d[1] = iparam(k, "dmodel"), h->d[2] = iparam(k, "dff");
        if (c->op_index == 5)
            snprintf(c->label, sizeof c->label, "ffn %dx%d %s", h->d[1], h->d[2],
                     h->erf ? "erf" : "tanh");
        else
            snprintf(c->label, sizeof c->label, "seq_ffn %dx%dx%d %s", h->d[0], h->d[1],
                     h->d[2], h->erf ? "erf" : "tanh");
        pn = P_FFN, np = 4;
        /* matrix-product flops: 2 seq dmodel dff per product; fwd 2 products, bwd 4 (dh, dw2,
         * dw1, dx, given the saved activations), jvp 5 (hidden, its tangent from w1 and from
         * tw1, the output tangent from w2 and from tw2), train 6 */
        long prod = 2L * h->d[0] * h->d[1] * h->d[2];
        c->flops[P_FWD] = 2 * prod, c->flops[P_BWD] = 4 * prod;
        c->flops[P_JVP] = 5 * prod, c->flops[P_TRAIN] = 6 * prod;
        break;
    }
    if (c->f64) {
        size_t n = strlen(c->label);
        snprintf(c->label + n, sizeof c->label - n, " f64");
    }
    c->nin = 1 + np;
    c->in[0] = "x";
    for (int i = 0; i < np; i++)
        c->in[1 + i] = pn[i];
}

/* the kerngen functions of each row: forward_train + vjp_saved when the header declares both */
static void setup_functions(bcase *c)
{
    const glue_kernel *k = c->k;
    const glue_fn *fwd = find_fn(k, "forward"), *vjp = find_fn(k, "vjp"), *jvp = find_fn(k, "jvp");
    const glue_fn *ft = find_fn(k, "forward_train"), *vs = find_fn(k, "vjp_saved");
    if (!fwd || !vjp || !jvp)
        die("the header lacks forward, vjp or jvp:", k->name);
    c->saved_api = ft && vs;
    c->fn[P_FWD][0] = fwd;
    c->fn[P_JVP][0] = jvp;
    if (c->saved_api) {
        c->fn[P_BWD][0] = vs, c->prep_bwd = ft;
        c->fn[P_TRAIN][0] = ft, c->fn[P_TRAIN][1] = vs;
    } else {
        c->fn[P_BWD][0] = vjp;
        c->fn[P_TRAIN][0] = fwd, c->fn[P_TRAIN][1] = vjp;
    }
    /* the forward's inputs must be the ones the hand loops take, in this order */
    int nread = 0;
    for (int i = 0; i < fwd->nargs; i++)
        if (!fwd->args[i].writes) {
            if (nread >= c->nin || strcmp(fwd->args[i].name, c->in[nread]) != 0)
                die("unexpected forward arguments in", k->name);
            nread++;
        }
    if (nread != c->nin)
        die("unexpected forward arguments in", k->name);
}

/* A library kernel of the case in tier jit ("tcc": default unroll auto; "cc": unroll none),
 * generated and compiled; the times in ms. */
static kg_kernel *make_jit(bcase *c, const char *jit, double *gen_ms, double *compile_ms)
{
    kg_request req = {0};
    const char *params[8];
    char words[8][48];
    int n = 0;
    const char *s = c->k->params;
    while (*s && n < 8) {
        size_t w = strcspn(s, " ");
        snprintf(words[n], sizeof words[n], "%.*s", (int)w, s);
        params[n] = words[n];
        n++;
        s += w;
        while (*s == ' ')
            s++;
    }
    req.graph = c->k->graph;
    req.params = params;
    req.nparams = n;
    req.dtype = c->f64 ? "f64" : "f32";
    req.jit = jit;
    req.fma = getenv("BENCH_FMA"); /* as the AOT kernels were emitted (run.sh) */
    kg_kernel *k = NULL;
    char *err = NULL;
    double t0 = now();
    if (kg_generate(&req, &k, &err) != KG_OK)
        die("JIT generate failed", err);
    double t1 = now();
    if (kg_compile(k, &err) != KG_OK)
        die("JIT compile failed", err);
    *gen_ms = 1e3 * (t1 - t0);
    *compile_ms = 1e3 * (now() - t1);
    for (int p = 0; p < KG_NPASSES; p++)
        if (kg_ws_size(k, (kg_pass)p) > c->ws_n)
            c->ws_n = kg_ws_size(k, (kg_pass)p);
    return k;
}

/* The library's kernels of the case, timed with its AOT rows: the cc tier for every case (run.sh
 * gives an empty cache: the first compile is a miss, cold; a second kernel of the same request
 * then loads the entry, warm), the tcc tier for the cases marked jit. */
static void setup_jit(bcase *c)
{
    double g, t;
    size_t stmts;
    if (c->k->jit) {
        c->jit = make_jit(c, "tcc", &c->jit_generate_ms, &c->jit_compile_ms);
        kg_stats(c->jit, &stmts, &c->jit_bytes);
    }
    c->cc = make_jit(c, "cc", &c->cc_generate_ms, &c->cc_cold_ms);
    if (strcmp(kg_tier(c->cc), "cc") != 0) {
        printf("        %s: no JIT cc column: %s\n", c->k->name, kg_tier_note(c->cc));
        kg_free(c->cc);
        c->cc = NULL;
        return;
    }
    kg_kernel *warm = make_jit(c, "cc", &g, &t);
    c->cc_warm_ms = kg_tier_note(warm) && strstr(kg_tier_note(warm), "cache hit") ? t : NAN;
    kg_free(warm);
}

static void setup_reference(bcase *c);

static void setup(bcase *c, const glue_kernel *k)
{
    memset(c, 0, sizeof *c);
    place_next = 0; /* each case places its buffers alike, whichever cases run before it */
    c->k = k;
    c->f64 = k->f64;
    c->es = c->f64 ? sizeof(double) : sizeof(float);
    c->op_index = -1;
    for (int i = 0; i < NOPS; i++)
        if (strcmp(k->op, OPS[i]) == 0)
            c->op_index = i;
    if (c->op_index < 0)
        die("unknown operator", k->op);
    setup_dims(c);
    setup_functions(c);
    /* every argument of every declared function, by name; inputs, cotangent and tangents
     * filled, the rest (outputs, gradients, saved tensors) zeroed */
    for (int f = 0; f < k->nfns; f++)
        for (int i = 0; i < k->fns[f].nargs; i++) {
            const glue_arg *a = &k->fns[f].args[i];
            if (strcmp(a->name, "ws") == 0) {
                if (a->count > c->ws_n)
                    c->ws_n = a->count;
                continue;
            }
            get(c, a->name, a->count);
        }
    static const char *const NEEDED[] = {"%s", "%s_grad", "%s_tan"};
    for (int i = 0; i < c->nin; i++) {
        double scale, offset;
        for (int j = 0; j < 3; j++)
            named(c, NEEDED[j], c->in[i]); /* dies if missing */
        input_scale(c, c->in[i], &scale, &offset);
        fill(c, find(c, c->in[i]), scale, offset);
        fill(c, find(c, named_name(NEEDED[2], c->in[i])), scale, 0);
    }
    static const char *const OUTPUT[] = {"y", "y_cot", "y_tan"};
    for (int j = 0; j < 3; j++)
        named(c, "%s", OUTPUT[j]);
    fill(c, find(c, "y_cot"), 1, 0);
    setup_jit(c);
    c->ws = xmalloc((c->ws_n + 1) * c->es);

    /* the hand loops' view of the same buffers, plus what their forward saves */
    hand_call *h = &c->hc;
    h->x = named(c, "%s", "x");
    h->y = named(c, "%s", "y");
    h->dy = named(c, "%s", "y_cot");
    h->dx = named(c, "%s_grad", "x");
    h->tx = named(c, "%s_tan", "x");
    h->ty = named(c, "%s", "y_tan");
    for (int i = 1; i < c->nin; i++) {
        h->p[i - 1] = named(c, "%s", c->in[i]);
        h->dp[i - 1] = named(c, "%s_grad", c->in[i]);
        h->tp[i - 1] = named(c, "%s_tan", c->in[i]);
    }
    size_t nsave = 1, nws = 1;
    switch (h->op) {
    case HAND_LAYERNORM: case HAND_RMSNORM: case HAND_BATCHNORM: nsave = (size_t)h->d[0]; break;
    case HAND_GROUPNORM: nsave = (size_t)h->d[0] * h->d[3], nws = 6 * (size_t)h->d[2]; break;
    case HAND_FFN: nsave = nws = (size_t)h->d[0] * h->d[2]; break;
    case HAND_GELU: break;
    }
    h->save[0] = get(c, "hand.save0", nsave)->p;
    h->save[1] = get(c, "hand.save1", nsave)->p;
    h->ws = get(c, "hand.ws", nws)->p;
    setup_reference(c);
}

/* The reference: hand.c's loops in double (hand_run_f64, gcc -O3 without fast-math) on the same
 * inputs converted to double. */
static void setup_reference(bcase *c)
{
    hand_call r = c->hc;
    void **ptrs[] = {&r.x, &r.p[0], &r.p[1], &r.p[2], &r.p[3], &r.y, &r.dy, &r.dx, &r.dp[0],
                     &r.dp[1], &r.dp[2], &r.dp[3], &r.tx, &r.tp[0], &r.tp[1], &r.tp[2], &r.tp[3],
                     &r.ty, &r.save[0], &r.save[1], &r.ws};
    void *owned[32];
    int nowned = 0;
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
        if (!*ptrs[i])
            continue;
        buf *b = NULL;
        for (int j = 0; j < c->nb; j++)
            if (c->b[j].p == *ptrs[i])
                b = &c->b[j];
        double *d = xmalloc(b->n * sizeof(double));
        for (size_t e = 0; e < b->n; e++)
            d[e] = get_value(c, b->p, e);
        *ptrs[i] = d;
        owned[nowned++] = d;
    }
    r.pass = HAND_FWD;
    hand_run_f64(&r);
    r.pass = HAND_BWD;
    hand_run_f64(&r);
    r.pass = HAND_JVP;
    hand_run_f64(&r);
    c->ref_y = r.y, c->ref_ty = r.ty, c->ref_grad[0] = r.dx;
    for (int i = 1; i < c->nin; i++)
        c->ref_grad[i] = r.dp[i - 1];
    for (int i = 0; i < nowned; i++) {
        int keep = owned[i] == c->ref_y || owned[i] == c->ref_ty;
        for (int g = 0; g < c->nin; g++)
            keep |= owned[i] == c->ref_grad[g];
        if (!keep)
            xfree(owned[i]);
    }
}

static void teardown(bcase *c)
{
    for (int i = 0; i < c->nb; i++)
        xfree(c->b[i].p);
    xfree(c->ws);
    xfree(c->ref_y);
    xfree(c->ref_ty);
    for (int i = 0; i < c->nin; i++)
        xfree(c->ref_grad[i]);
    kg_free(c->jit);
    kg_free(c->cc);
}

/* ---- one row: a case in one pass ---- */

/* a call with its arguments resolved once, so that timing measures the kernel, not the lookup */
typedef struct {
    int (*aot)(void *const *args); /* AOT: the glue's caller */
    kg_pass pass;                  /* JIT: the pass */
    void *args[16];
} bound_call;

typedef struct {
    bcase *c;
    enum pass pass;
    int nout;
    buf *out[MAXIN + 1];
    double *ref[MAXIN + 1];
    int has[NVARIANTS];
    bound_call aot[2], aot_prep;         /* aot[1]: the vjp of a training step */
    bound_call jit[2], jit_prep;         /* the library's passes of aot's functions (both tiers) */
    int naot, njit, has_prep;
    hand_call hand, hand_prep;           /* the row's pass; the forward before a bwd row */
    void (*hand_fn[NVARIANTS])(const hand_call *);
#ifdef HAVE_ONEDNN
    onednn_job *dnnl;
#endif
} row;

static void bind_aot(bcase *c, const glue_fn *f, bound_call *b)
{
    if (f->nargs > 16)
        die("too many arguments:", f->pass);
    b->aot = f->call;
    for (int i = 0; i < f->nargs; i++)
        b->args[i] = strcmp(f->args[i].name, "ws") == 0 ? c->ws : find(c, f->args[i].name)->p;
}

static void bind_jit(bcase *c, kg_pass pass, bound_call *b)
{
    kg_kernel *k = c->jit ? c->jit : c->cc; /* both tiers have the same arguments */
    int n = kg_nargs(k, pass);
    if (n > 15)
        die("too many JIT arguments in", c->k->name);
    b->pass = pass;
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        buf *bf = find(c, a->cname);
        if (!bf || bf->n != a->count)
            die("JIT argument does not match the AOT one:", a->cname);
        b->args[i] = bf->p;
    }
    b->args[n] = c->ws;
}

static const enum hand_pass HAND_PASS[NPASSES] = {HAND_FWD, HAND_BWD, HAND_JVP, HAND_TRAIN};

static kg_kernel *jit_kernel(const row *r, int v) { return v == V_CC ? r->c->cc : r->c->jit; }

static int run_variant(row *r, int v)
{
    int rc = 0;
    switch ((enum variant)v) {
    case V_AOT:
        for (int i = 0; i < r->naot; i++)
            rc |= r->aot[i].aot(r->aot[i].args);
        return rc;
    case V_JIT:
    case V_CC: {
        kg_kernel *k = jit_kernel(r, v);
        for (int i = 0; i < r->njit; i++)
            rc |= kg_call(k, r->jit[i].pass, r->jit[i].args, kg_nargs(k, r->jit[i].pass) + 1);
        return rc;
    }
    case V_HAND:
    case V_FAST:
    case V_TCC: r->hand_fn[v](&r->hand); return 0;
#ifdef HAVE_ONEDNN
    case V_DNNL: return onednn_run(r->dnnl);
#endif
    default: return -1;
    }
}

/* what a backward row reads that a forward saves: run that forward once */
static void prepare(row *r, int v)
{
    if (r->pass != P_BWD)
        return;
    if (v == V_AOT && r->has_prep)
        r->aot_prep.aot(r->aot_prep.args);
    if ((v == V_JIT || v == V_CC) && r->has_prep)
        kg_call(jit_kernel(r, v), r->jit_prep.pass, r->jit_prep.args, kg_nargs(jit_kernel(r, v), r->jit_prep.pass) + 1);
    if (v == V_HAND || v == V_FAST || v == V_TCC)
        r->hand_fn[v](&r->hand_prep);
}

static void setup_row(row *r, bcase *c, enum pass pass)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->pass = pass;
    if (pass == P_FWD || pass == P_TRAIN)
        r->out[r->nout] = find(c, "y"), r->ref[r->nout++] = c->ref_y;
    if (pass == P_BWD || pass == P_TRAIN)
        for (int i = 0; i < c->nin; i++) {
            char name[48];
            snprintf(name, sizeof name, "%s_grad", c->in[i]);
            r->out[r->nout] = find(c, name), r->ref[r->nout++] = c->ref_grad[i];
        }
    if (pass == P_JVP)
        r->out[r->nout] = find(c, "y_tan"), r->ref[r->nout++] = c->ref_ty;
    r->has[V_AOT] = r->has[V_HAND] = r->has[V_FAST] = 1;
    r->has[V_JIT] = c->jit != NULL;
    r->has[V_CC] = c->cc != NULL;
    r->has[V_TCC] = c->k->jit && !c->f64;
    for (int i = 0; i < 2 && c->fn[pass][i]; i++)
        bind_aot(c, c->fn[pass][i], &r->aot[r->naot++]);
    if (pass == P_BWD && c->prep_bwd)
        bind_aot(c, c->prep_bwd, &r->aot_prep), r->has_prep = 1;
    if (c->jit || c->cc) { /* the library's passes of the AOT functions timed (the glue names them) */
        for (int i = 0; i < r->naot; i++) {
            int p = kg_pass_from_name(c->fn[pass][i]->pass);
            if (p < 0)
                die("no library pass named", c->fn[pass][i]->pass);
            bind_jit(c, (kg_pass)p, &r->jit[r->njit++]);
        }
        if (r->has_prep)
            bind_jit(c, (kg_pass)kg_pass_from_name(c->prep_bwd->pass), &r->jit_prep);
    }
    r->hand = r->hand_prep = c->hc;
    r->hand.pass = HAND_PASS[pass];
    r->hand_prep.pass = HAND_FWD;
    r->hand_fn[V_HAND] = c->f64 ? hand_run_f64 : hand_run_f32;
    r->hand_fn[V_FAST] = c->f64 ? fast_run_f64 : fast_run_f32;
    r->hand_fn[V_TCC] = tcc_run_f32;
#ifdef HAVE_ONEDNN
    if (!c->f64) {
        r->dnnl = onednn_create(&r->hand);
        r->has[V_DNNL] = r->dnnl != NULL;
    }
#endif
}

static void teardown_row(row *r)
{
#ifdef HAVE_ONEDNN
    onednn_free(r->dnnl);
#endif
    (void)r;
}

/* the largest max|out - ref| / max|ref| over the row's outputs (INFINITY for a NaN) */
static double row_error(const row *r)
{
    double worst = 0;
    for (int o = 0; o < r->nout; o++) {
        double m = 0, mref = 0;
        for (size_t i = 0; i < r->out[o]->n; i++) {
            double d = fabs(get_value(r->c, r->out[o]->p, i) - r->ref[o][i]);
            if (d != d)
                return INFINITY;
            if (d > m)
                m = d;
            if (fabs(r->ref[o][i]) > mref)
                mref = fabs(r->ref[o][i]);
        }
        double e = mref > 0 ? m / mref : m;
        if (e > worst)
            worst = e;
    }
    return worst;
}

static void poison(const row *r)
{
    for (int o = 0; o < r->nout; o++)
        memset(r->out[o]->p, 0xff, r->out[o]->n * r->c->es); /* all-ones bits: NaN */
}

/* a library tier's and AOT's outputs bit for bit (they run the same passes) */
static int jit_identical(row *r, int v)
{
    void *aot[MAXIN + 1];
    poison(r);
    run_variant(r, V_AOT);
    for (int o = 0; o < r->nout; o++) {
        aot[o] = xmalloc(r->out[o]->n * r->c->es);
        memcpy(aot[o], r->out[o]->p, r->out[o]->n * r->c->es);
    }
    poison(r);
    prepare(r, v);
    run_variant(r, v);
    int same = 1;
    for (int o = 0; o < r->nout; o++) {
        same &= memcmp(aot[o], r->out[o]->p, r->out[o]->n * r->c->es) == 0;
        xfree(aot[o]);
    }
    return same;
}

/* ---- timing ---- */

typedef struct {
    int (*fn)(void *ctx, int arg);
    void *ctx;
    int arg;
} job;

static volatile int sink;

static double sample(const job *j, long reps)
{
    double t0 = cpu_now();
    for (long r = 0; r < reps; r++)
        sink += j->fn(j->ctx, j->arg);
    return cpu_now() - t0;
}

/* Median seconds per call of each job and its spread (interquartile range / median). Each job
 * is warmed up while its repetition count is calibrated (doubled until one sample lasts
 * SAMPLE_SECONDS); then samples are taken round-robin over the jobs, as many as fit in
 * ROW_SECONDS within [SAMPLES_MIN, SAMPLES_MAX]. */
static int time_jobs(const job *jobs, int n, double *sec, double *spread)
{
    long reps[NVARIANTS + 1];
    double round = 0;
    static double t[NVARIANTS + 1][SAMPLES_MAX + 1];
    for (int j = 0; j < n; j++) {
        double s;
        reps[j] = 1;
        while ((s = sample(&jobs[j], reps[j])) < SAMPLE_SECONDS && reps[j] < (1L << 30))
            reps[j] *= 2;
        round += s;
    }
    int samples = (int)(ROW_SECONDS / round);
    samples = samples < SAMPLES_MIN ? SAMPLES_MIN : samples > SAMPLES_MAX ? SAMPLES_MAX : samples;
    samples |= 1;
    for (int k = 0; k < samples; k++)
        for (int j = 0; j < n; j++)
            t[j][k] = sample(&jobs[j], reps[j]) / (double)reps[j];
    for (int j = 0; j < n; j++) {
        qsort(t[j], (size_t)samples, sizeof t[j][0], cmp_double);
        sec[j] = t[j][samples / 2];
        spread[j] = (t[j][3 * samples / 4] - t[j][samples / 4]) / t[j][samples / 2];
    }
    return samples;
}

static int job_variant(void *ctx, int v)
{
    return run_variant(ctx, v);
}

/* The memory bound: a copy of half the bytes the row must move (so that many bytes move in
 * all), from the row's own inputs into the row's own outputs (topped up with a scratch buffer
 * when the outputs are smaller), with ordinary loads and stores (no non-temporal stores, as the
 * kernels). Timed in the same interleaved samples as the contenders, it sees the same working
 * set in the same level of the memory hierarchy. */
#define MAXSEG 24

typedef struct {
    int nseg;
    char *dst[MAXSEG];
    const char *src[MAXSEG];
    size_t bytes[MAXSEG];
    void *scratch;
    double total; /* bytes the row moves: read + written */
} copy_job;

typedef float v16f __attribute__((vector_size(64)));

/* four 64-byte vectors per iteration: about memcpy's speed at every size here, without its
 * non-temporal stores for large copies */
__attribute__((noinline)) static void copy_bytes(char *restrict dst, const char *restrict src,
                                                 size_t n)
{
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        v16f a, b, c, d;
        memcpy(&a, src + i, 64), memcpy(&b, src + i + 64, 64);
        memcpy(&c, src + i + 128, 64), memcpy(&d, src + i + 192, 64);
        memcpy(dst + i, &a, 64), memcpy(dst + i + 64, &b, 64);
        memcpy(dst + i + 128, &c, 64), memcpy(dst + i + 192, &d, 64);
    }
    for (; i < n; i++)
        dst[i] = src[i];
}

static int job_copy(void *ctx, int arg)
{
    copy_job *j = ctx;
    (void)arg;
    for (int s = 0; s < j->nseg; s++)
        copy_bytes(j->dst[s], j->src[s], j->bytes[s]);
    return 0;
}

/* what a row must read at the least (inputs, and the cotangent or the tangents) and write (its
 * outputs), each once */
static void setup_copy(row *r, copy_job *j)
{
    bcase *c = r->c;
    const buf *rd[2 * MAXIN + 1];
    int nrd = 0;
    double rbytes = 0, wbytes = 0;
    for (int i = 0; i < c->nin; i++) {
        rd[nrd++] = find(c, c->in[i]);
        if (r->pass == P_JVP)
            rd[nrd++] = find(c, named_name("%s_tan", c->in[i]));
    }
    if (r->pass == P_BWD || r->pass == P_TRAIN)
        rd[nrd++] = find(c, "y_cot");
    for (int i = 0; i < nrd; i++)
        rbytes += (double)(rd[i]->n * c->es);
    for (int o = 0; o < r->nout; o++)
        wbytes += (double)(r->out[o]->n * c->es);
    memset(j, 0, sizeof *j);
    j->total = rbytes + wbytes;
    size_t half = (size_t)(j->total / 2), done = 0, soff = 0, doff = 0;
    int si = 0, di = 0;
    j->scratch = xmalloc(half);
    memset(j->scratch, 0, half);
    while (done < half && j->nseg < MAXSEG) {
        /* sources wrap around when the inputs are smaller than half; destinations run on into
         * the scratch buffer when the outputs are */
        const buf *sb = rd[si % nrd];
        size_t slen = sb->n * c->es - soff;
        char *dp;
        size_t dlen;
        if (di < r->nout)
            dp = (char *)r->out[di]->p + doff, dlen = r->out[di]->n * c->es - doff;
        else
            dp = (char *)j->scratch + doff, dlen = half - doff;
        size_t len = slen < dlen ? slen : dlen;
        if (len > half - done)
            len = half - done;
        j->src[j->nseg] = (const char *)sb->p + soff;
        j->dst[j->nseg] = dp;
        j->bytes[j->nseg++] = len;
        done += len, soff += len, doff += len;
        if (soff == sb->n * c->es)
            si++, soff = 0;
        if (doff == (di < r->nout ? r->out[di]->n * c->es : half))
            di++, doff = 0;
    }
    if (done < half)
        die("the copy of the memory bound needs more segments in", c->label);
}

/* ---- peak of vector fused multiply-adds (the compute bound) ----
   The widest vectors this build has, x = x * m + a contracted into one FMA where it has FMA
   (-march=native), else a multiply and an add: what the processor can do, whichever contender
   runs (hand -Ofast contracts; kerngen's --fma on writes fma). Measured with separate 256-bit
   multiplies and adds until 2026-12-01, that was no bound on an AVX-512 machine: kerngen's
   seq_ffn 8x64x256 backward ran in 0.74 of it. */

#ifdef __AVX512F__
#define PEAK_BYTES 64
#else
#define PEAK_BYTES 32
#endif
enum { CHAINS = 12 }; /* independent chains: more than FMA latency times FMA units */
typedef float vpf __attribute__((vector_size(PEAK_BYTES)));
typedef double vpd __attribute__((vector_size(PEAK_BYTES)));

#define PEAK_KERNEL(name, V, E)                                                             \
    __attribute__((noinline, optimize("fp-contract=fast"))) static double name(long iters) \
    {                                                                                      \
        enum { LANES = PEAK_BYTES / sizeof(E) };                                           \
        volatile E one = 1, zero = 0;                                                      \
        V m, a, x[CHAINS];                                                                 \
        for (int l = 0; l < LANES; l++)                                                    \
            m[l] = one, a[l] = zero;                                                       \
        for (int i = 0; i < CHAINS; i++)                                                   \
            x[i] = m * (E)(i + 1);                                                         \
        for (long it = 0; it < iters; it++)                                                \
            for (int i = 0; i < CHAINS; i++)                                               \
                x[i] = x[i] * m + a;                                                       \
        E s = 0;                                                                           \
        for (int i = 0; i < CHAINS; i++)                                                   \
            for (int l = 0; l < LANES; l++)                                                \
                s += x[i][l];                                                              \
        return (double)s;                                                                  \
    }
PEAK_KERNEL(peak_kernel_f32, vpf, float)
PEAK_KERNEL(peak_kernel_f64, vpd, double)

/* flop/s: the best of 7 runs of about 20 ms */
static double peak(int f64)
{
    long iters = 1L << 20;
    double best = 0;
    for (int r = 0; r < 7; r++) {
        double t0 = cpu_now();
        sink += (int)(f64 ? peak_kernel_f64(iters) : peak_kernel_f32(iters));
        double s = cpu_now() - t0;
        double flops = (double)iters * CHAINS * 2 * (PEAK_BYTES / (f64 ? 8 : 4)) / s;
        if (flops > best)
            best = flops;
    }
    return best;
}

/* ---- results ---- */

typedef struct {
    char label[80];
    int op_index, f64, jit_same, cc_same; /* -1 not compared */
    enum pass pass;
    double us[NVARIANTS];  /* NAN: not run */
    double err[NVARIANTS]; /* NAN: not run */
    int failed[NVARIANTS];
    double noise;
    double mem_us, flop_us; /* the bounds (flop_us 0 when not a matrix-product row) */
    int samples;
    char aot_fns[48]; /* "forward", "vjp_saved", "forward+vjp"... */
    char dnnl_impl[512];
} result;

#define MAXROWS 200
static result results[MAXROWS];

/* JIT latency per jit case, ms (wall clock, one run each) */
#define MAXLAT 64
typedef struct {
    char label[64];
    double gen_tcc, tcc, gen_cc, cc_cold, cc_warm;
} latency_row;
static latency_row lat[MAXLAT];
static int nlat;

static void print_latency(void)
{
    if (!nlat)
        return;
    printf("\nJIT latency, ms (wall clock, one run each): kg_generate of the tcc text (unroll auto) and "
           "of the cc text\n(unroll none), kg_compile with libtcc, and with cc: cold = an empty cache "
           "(compiles), warm = a cache hit\n");
    printf("%-38s%12s%12s%12s%12s%12s\n", "case", "gen (tcc)", "tcc", "gen (cc)", "cc cold", "cc warm");
    for (int i = 0; i < nlat; i++) {
        const double v[5] = {lat[i].gen_tcc, lat[i].tcc, lat[i].gen_cc, lat[i].cc_cold, lat[i].cc_warm};
        static const int digits[5] = {1, 2, 1, 0, 2};
        printf("%-38s", lat[i].label);
        for (int j = 0; j < 5; j++)
            v[j] == v[j] ? printf("%12.*f", digits[j], v[j]) : printf("%12s", "-");
        printf("\n");
    }
}
static int nresults;
static double peak_f32, peak_f64;

static double bound_us(const result *r)
{
    return r->flop_us > r->mem_us ? r->flop_us : r->mem_us;
}

/* the fastest peer (hand -O3, hand -Ofast, oneDNN) that passed its check; -1 if none */
static int best_peer(const result *r)
{
    static const int peers[] = {V_HAND, V_FAST, V_DNNL};
    int best = -1;
    for (int i = 0; i < 3; i++) {
        int v = peers[i];
        if (r->us[v] == r->us[v] && (best < 0 || r->us[v] < r->us[best]))
            best = v;
    }
    return best;
}

static double ratio(const result *r) /* AOT / fastest peer; NAN when not both */
{
    int b = best_peer(r);
    return b < 0 ? NAN : r->us[V_AOT] / r->us[b];
}

static void run_row(bcase *c, enum pass pass, int index, int total)
{
    row r;
    result *res = &results[nresults++];
    setup_row(&r, c, pass);
    memset(res, 0, sizeof *res);
    snprintf(res->label, sizeof res->label, "%s %s", c->label, PNAME[pass]);
    res->op_index = c->op_index, res->f64 = c->f64, res->pass = pass, res->jit_same = res->cc_same = -1;
    snprintf(res->aot_fns, sizeof res->aot_fns, "%s%s%s", c->fn[pass][0]->pass,
             c->fn[pass][1] ? "+" : "", c->fn[pass][1] ? c->fn[pass][1]->pass : "");
#ifdef HAVE_ONEDNN
    if (r.dnnl)
        snprintf(res->dnnl_impl, sizeof res->dnnl_impl, "%s", onednn_impl(r.dnnl));
#endif
    /* 1. check every contender against the reference */
    printf("[%2d/%d] %-36s", index, total, res->label);
    double tol = c->f64 ? TOL_F64 : TOL_F32;
    for (int v = 0; v < NVARIANTS; v++) {
        res->us[v] = res->err[v] = NAN;
        if (!r.has[v])
            continue;
        prepare(&r, v);
        poison(&r);
        int rc = run_variant(&r, v);
        res->err[v] = row_error(&r);
        res->failed[v] = rc != 0 || !(res->err[v] <= tol);
        printf(" %s %.0e%s", VNAME[v], res->err[v], res->failed[v] ? (rc ? " FAILED(rc)" : " FAILED") : "");
        if (res->failed[v])
            r.has[v] = 0;
    }
    if (r.has[V_JIT] && r.has[V_AOT]) {
        res->jit_same = jit_identical(&r, V_JIT);
        printf("; tcc==AOT bits: %s", res->jit_same ? "yes" : "no");
    }
    if (r.has[V_CC] && r.has[V_AOT]) {
        res->cc_same = jit_identical(&r, V_CC);
        printf("; cc==AOT bits: %s", res->cc_same ? "yes" : "no");
    }
    printf("\n");
    if (res->dnnl_impl[0] && (pass == P_FWD || pass == P_TRAIN))
        printf("%8s oneDNN: %s\n", "", res->dnnl_impl);
    fflush(stdout);

    /* 2. time the contenders that passed, and the copy, interleaved */
    job jobs[NVARIANTS + 1];
    int idx[NVARIANTS + 1], n = 0;
    for (int v = 0; v < NVARIANTS; v++)
        if (r.has[v]) {
            prepare(&r, v);
            jobs[n] = (job){job_variant, &r, v};
            idx[n++] = v;
        }
    copy_job cj;
    setup_copy(&r, &cj);
    jobs[n] = (job){job_copy, &cj, 0};
    idx[n++] = NVARIANTS;
    double sec[NVARIANTS + 1], spread[NVARIANTS + 1];
    res->samples = time_jobs(jobs, n, sec, spread);
    for (int j = 0; j < n; j++) {
        if (idx[j] == NVARIANTS)
            res->mem_us = 1e6 * sec[j];
        else
            res->us[idx[j]] = 1e6 * sec[j];
        if (spread[j] > res->noise)
            res->noise = spread[j];
    }
    if (c->flops[pass])
        res->flop_us = 1e6 * (double)c->flops[pass] / (c->f64 ? peak_f64 : peak_f32);
    xfree(cj.scratch);
    teardown_row(&r);
}

/* ---- the report ---- */

static void cell(double v, int width)
{
    if (v != v)
        printf("%*s", width, "-");
    else
        printf("%*.*f", width, v < 10 ? 3 : v < 1000 ? 1 : 0, v);
}

static void cell_ratio(double v, int width)
{
    if (v != v)
        printf("%*s", width, "-");
    else
        printf("%*.2f", width, v);
}

static double geomean_where(int (*pred)(const result *, int), int arg, int *count)
{
    double s = 0;
    int n = 0;
    for (int i = 0; i < nresults; i++) {
        double q = ratio(&results[i]);
        if (q == q && q > 0 && pred(&results[i], arg))
            s += log(q), n++;
    }
    if (count)
        *count = n;
    return n ? exp(s / n) : NAN;
}
static int all_rows(const result *r, int a) { (void)r, (void)a; return 1; }
static int by_op(const result *r, int a) { return r->op_index == a; }
static int by_pass(const result *r, int a) { return (int)r->pass == a; }
static int is_ffn(const result *r) { return r->op_index >= 5; }
static int is_norm(const result *r) { return r->op_index <= 3; }

static void print_tables(void)
{
    printf("\nTime per call, microseconds (median of the interleaved samples of CPU time; bound = "
           "max(memory, matrix-product flops);\nnoise = largest interquartile range / median in "
           "the row; FAILED: disagreed with the reference, not timed)\n");
    printf("%-38s", "row");
    for (int v = 0; v < NVARIANTS; v++)
        printf("%12s", VNAME[v]);
    printf("%10s%7s\n", "bound", "noise");
    for (int i = 0; i < nresults; i++) {
        const result *r = &results[i];
        printf("%-38s", r->label);
        for (int v = 0; v < NVARIANTS; v++) {
            if (r->failed[v])
                printf("%12s", "FAILED");
            else
                cell(r->us[v], 12);
        }
        cell(bound_us(r), 10);
        printf("%6.0f%%\n", 100 * r->noise);
    }
    printf("\nRatios of times (< 1: kerngen AOT is faster). best = the fastest of hand -O3, "
           "hand -Ofast, oneDNN;\nbound: m memory, c compute; kerngen = the AOT functions timed\n");
    printf("%-38s%12s%10s%10s%10s%10s%12s%9s%8s  %s\n", "row", "best", "AOT/best", "AOT/O3",
           "AOT/Ofast", "AOT/dnnl", "AOT/bound", "tcc/AOT", "cc/AOT", "kerngen");
    for (int i = 0; i < nresults; i++) {
        const result *r = &results[i];
        int b = best_peer(r);
        printf("%-38s%12s", r->label, b < 0 ? "-" : VNAME[b]);
        cell_ratio(ratio(r), 10);
        cell_ratio(r->us[V_AOT] / r->us[V_HAND], 10);
        cell_ratio(r->us[V_AOT] / r->us[V_FAST], 10);
        cell_ratio(r->us[V_AOT] / r->us[V_DNNL], 10);
        cell_ratio(r->us[V_AOT] / bound_us(r), 10);
        printf(" %c", r->flop_us > r->mem_us ? 'c' : 'm');
        cell_ratio(r->us[V_JIT] / r->us[V_AOT], 9);
        cell_ratio(r->us[V_CC] / r->us[V_AOT], 8);
        printf("  %s\n", r->aot_fns);
    }
}

typedef struct {
    int i;
    double q;
} ranked;
static int cmp_ranked(const void *a, const void *b)
{
    double x = ((const ranked *)a)->q, y = ((const ranked *)b)->q;
    return (x < y) - (x > y);
}

/* Prints the rows failing a target, returns how many. */
static int target(const char *what, int (*applies)(const result *), double (*value)(const result *),
                  double limit)
{
    int n = 0, fails = 0;
    char list[4096] = "";
    for (int i = 0; i < nresults; i++) {
        const result *r = &results[i];
        if (!applies(r))
            continue;
        double v = value(r);
        if (v != v)
            continue;
        n++;
        if (v > limit) {
            size_t len = strlen(list);
            if (len < sizeof list - sizeof r->label - 16)
                snprintf(list + len, sizeof list - len, "%s%.*s %.2f", fails ? ", " : "",
                         (int)sizeof r->label, r->label, v);
            fails++;
        }
    }
    if (n == 0)
        printf("  [-] %s: no such rows in this run\n", what);
    else
        printf("  [%s] %s: %d of %d rows over%s%s\n", fails ? " " : "x", what, fails, n,
               fails ? ": " : "", list);
    return fails;
}
static int t_all(const result *r) { return ratio(r) == ratio(r); }
static int t_not_ffn_bwd(const result *r)
{
    return t_all(r) && !(is_ffn(r) && (r->pass == P_BWD || r->pass == P_TRAIN));
}
static int t_ffn_bwd(const result *r)
{
    return is_ffn(r) && (r->pass == P_BWD || r->pass == P_TRAIN) && !r->f64;
}
static int t_bn_gn(const result *r) { return r->op_index == 2 || r->op_index == 3; }
static int t_ln_rms_large(const result *r)
{
    return (r->op_index == 0 || r->op_index == 1) && strstr(r->label, "4096x1024") &&
           (r->pass == P_BWD || r->pass == P_TRAIN);
}
static int t_norm_big(const result *r)
{
    return is_norm(r) && !strstr(r->label, " 8x64 ");
}
static int t_cc(const result *r) { return r->us[V_CC] == r->us[V_CC] && r->us[V_AOT] == r->us[V_AOT]; }
static double v_cc(const result *r) { return r->us[V_CC] / r->us[V_AOT]; }
static double v_ratio(const result *r) { return ratio(r); }
static double v_dnnl(const result *r) { return r->us[V_AOT] / r->us[V_DNNL]; }
static double v_fast(const result *r) { return r->us[V_AOT] / r->us[V_FAST]; }
static double v_bound(const result *r) { return r->us[V_AOT] / bound_us(r); }

static void print_summary(void)
{
    int n;
    double g = geomean_where(all_rows, 0, &n);
    printf("\nGeomean of kerngen AOT / fastest peer over %d rows: %.2f\n", n, g);
    printf("  by operator:");
    for (int o = 0; o < NOPS; o++) {
        double q = geomean_where(by_op, o, &n);
        if (n)
            printf(" %s %.2f (%d)", OPS[o], q, n);
    }
    printf("\n  by pass:    ");
    for (int p = 0; p < NPASSES; p++)
        printf(" %s %.2f", PNAME[p], geomean_where(by_pass, p, NULL));
    double sb = 0, sj = 0, sc = 0, worst_cc = 0;
    int nb = 0, nj = 0, nc = 0, same = 0, compared = 0, cc_same = 0, cc_compared = 0;
    for (int i = 0; i < nresults; i++) {
        const result *r = &results[i];
        double q = r->us[V_AOT] / bound_us(r);
        if (q == q)
            sb += log(q), nb++;
        q = r->us[V_JIT] / r->us[V_AOT];
        if (q == q)
            sj += log(q), nj++;
        if (r->jit_same >= 0)
            compared++, same += r->jit_same;
        q = r->us[V_CC] / r->us[V_AOT];
        if (q == q)
            sc += log(q), nc++, worst_cc = q > worst_cc ? q : worst_cc;
        if (r->cc_same >= 0)
            cc_compared++, cc_same += r->cc_same;
    }
    const char *aot_cc = getenv("BENCH_CC"); /* run.sh's compiler of the AOT kernels */
    if (!aot_cc || !*aot_cc)
        aot_cc = "gcc";
    printf("\nGeomean of kerngen AOT / bound over %d rows: %.2f\n", nb, nb ? exp(sb / nb) : NAN);
    if (nj)
        printf("Geomean of JIT (tcc) / AOT (%s) over %d rows: %.2f; JIT output bit-identical to "
               "AOT in %d of %d rows compared\n", aot_cc, nj, exp(sj / nj), same, compared);
    if (nc)
        printf("Geomean of JIT (cc) / AOT (%s) over %d rows: %.2f (worst %.2f); cc output "
               "bit-identical to AOT in %d of %d rows compared\n", aot_cc, nc, exp(sc / nc), worst_cc, cc_same,
               cc_compared);

    ranked rk[MAXROWS];
    int nr = 0;
    for (int i = 0; i < nresults; i++)
        if (ratio(&results[i]) == ratio(&results[i]))
            rk[nr].i = i, rk[nr].q = ratio(&results[i]), nr++;
    qsort(rk, (size_t)nr, sizeof rk[0], cmp_ranked);
    printf("\nWorst rows (kerngen AOT / fastest peer):\n");
    for (int k = 0; k < nr && k < 10; k++) {
        const result *r = &results[rk[k].i];
        printf("  %-38s %7.2f x %-12s (AOT/bound %.1f)\n", r->label, rk[k].q,
               VNAME[best_peer(r)], r->us[V_AOT] / bound_us(r));
    }

    printf("Worst row per operator:");
    for (int o = 0; o < NOPS; o++)
        for (int k = 0; k < nr; k++)
            if (results[rk[k].i].op_index == o) {
                printf("%s %s %.2f", o ? ";" : "", results[rk[k].i].label, rk[k].q);
                break;
            }
    printf("\n");

    printf("\nTargets of the issue (for the generator; [x] met):\n");
    printf("  [%s] geomean of AOT / fastest peer <= 1.0: %.2f\n", g <= 1.0 ? "x" : " ", g);
    target("no row above 1.3x the fastest peer (except ffn bwd/train)", t_not_ffn_bwd, v_ratio, 1.3);
    target("ffn bwd and train rows <= 1.5x oneDNN", t_ffn_bwd, v_dnnl, 1.5);
    target("batchnorm and groupnorm <= 1.0x hand -Ofast", t_bn_gn, v_fast, 1.0);
    target("layernorm/rmsnorm 4096x1024 bwd and train <= 1.0x the fastest peer", t_ln_rms_large,
           v_ratio, 1.0);
    target("normalizations from 64x768 on within 1.5x of the memory bound", t_norm_big, v_bound, 1.5);
    printf("Targets of the JIT tiers:\n");
    if (nj)
        printf("  [%s] JIT tcc: geomean <= 6x AOT: %.2f\n", exp(sj / nj) <= 6.0 ? "x" : " ", exp(sj / nj));
    target("JIT cc (warm) <= 1.1x AOT on every row", t_cc, v_cc, 1.1);
}

static void write_tsv(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s\n", path);
        return;
    }
    fprintf(f, "row\top\tpass\tdtype");
    for (int v = 0; v < NVARIANTS; v++)
        fprintf(f, "\tus %s", VNAME[v]);
    fprintf(f, "\tus bound\taot/best\taot/bound\tbest\tkerngen\n");
    for (int i = 0; i < nresults; i++) {
        const result *r = &results[i];
        int b = best_peer(r);
        fprintf(f, "%s\t%s\t%s\t%s", r->label, OPS[r->op_index], PNAME[r->pass],
                r->f64 ? "f64" : "f32");
        for (int v = 0; v < NVARIANTS; v++)
            fprintf(f, "\t%.4g", r->us[v]);
        fprintf(f, "\t%.4g\t%.4g\t%.4g\t%s\t%s\n", bound_us(r), ratio(r),
                r->us[V_AOT] / bound_us(r), b < 0 ? "-" : VNAME[b], r->aot_fns);
    }
    fclose(f);
}

int main(void)
{
    int saved_cases = 0, total = 4 * glue_nkernels;
    const char *place = getenv("BENCH_PLACE");
    if (place && strcmp(place, "page") != 0 && strcmp(place, "stagger") != 0) {
        fprintf(stderr, "bench: BENCH_PLACE=%s: expected stagger or page\n", place);
        return 2;
    }
    place_page = place && strcmp(place, "page") == 0;
    printf("Buffers: %s\n", place_page ? "each at a page boundary (BENCH_PLACE=page)"
                                        : "the k-th of a case k * 320 bytes into a page (BENCH_PLACE=stagger)");
    peak_f32 = peak(0);
    peak_f64 = peak(1);
    printf("Peak of %d-bit vector fused multiply-adds (the compute bound): f32 %.1f GFLOP/s, "
           "f64 %.1f GFLOP/s\n", 8 * PEAK_BYTES, peak_f32 / 1e9, peak_f64 / 1e9);
#ifdef HAVE_ONEDNN
    printf("oneDNN %s (f32 only; no RMSNorm, GroupNorm or JVP in 2.6)\n", onednn_version());
#else
    printf("oneDNN: not built (no column)\n");
#endif
    printf("Check: every contender once, against hand.c's loops in double; max |out - ref| / "
           "max |ref| per output\n(the worst over the row's outputs); tolerance %.0e f32, %.0e "
           "f64. Failed contenders are not timed.\n\n", TOL_F32, TOL_F64);
    int index = 0;
    static bcase one;
    for (int k = 0; k < glue_nkernels; k++) {
        bcase *c = &one;
        setup(c, &glue_kernels[k]);
        saved_cases += c->saved_api;
        for (int p = 0; p < NPASSES; p++)
            run_row(c, (enum pass)p, ++index, total);
        if (c->jit || c->cc) {
            printf("        JIT %s:", c->label);
            if (c->jit)
                printf(" tcc: generate %.1f ms, compile %.1f ms, %zu bytes of C;", c->jit_generate_ms,
                       c->jit_compile_ms, c->jit_bytes);
            if (c->cc)
                printf(" cc: generate %.1f ms, compile %.1f ms cold (cache miss), %.2f ms warm (cache hit)",
                       c->cc_generate_ms, c->cc_cold_ms, c->cc_warm_ms);
            printf("\n");
            if (nlat < MAXLAT) {
                latency_row *l = &lat[nlat++];
                snprintf(l->label, sizeof l->label, "%s", c->label);
                l->gen_tcc = c->jit ? c->jit_generate_ms : NAN, l->tcc = c->jit ? c->jit_compile_ms : NAN;
                l->gen_cc = c->cc ? c->cc_generate_ms : NAN;
                l->cc_cold = c->cc ? c->cc_cold_ms : NAN, l->cc_warm = c->cc ? c->cc_warm_ms : NAN;
            }
        }
        teardown(c);
    }
    print_tables();
    print_latency();
    printf("\nTraining step and bwd rows: kerngen runs %s\n",
           saved_cases == glue_nkernels ? "forward_train + vjp_saved (bwd: vjp_saved after one "
                                          "forward_train)"
           : saved_cases ? "forward_train + vjp_saved where the header declares them (see the "
                           "kerngen column), else forward + vjp"
                         : "forward + vjp (no header declares forward_train/vjp_saved yet; the "
                           "bwd rows time the vjp, which recomputes the statistics the peers read)");
    print_summary();
    const char *tsv = getenv("BENCH_TSV");
    if (tsv)
        write_tsv(tsv);
    int failed = 0;
    for (int i = 0; i < nresults; i++)
        for (int v = 0; v < NVARIANTS; v++)
            failed |= results[i].failed[v];
    if (failed) {
        fprintf(stderr, "bench: some contenders disagreed with the reference (FAILED above); they "
                        "were not timed\n");
        return 1;
    }
    return 0;
}
