/* kg_check: numerical checks of generated kernels (see kg_check.h for the tolerances).
 * Data lives in "banks": one double array per (role, tensor name), so the same data can be
 * passed to the forward, VJP and JVP functions and to f32 and f64 kernels alike (f32 kernels
 * get converted copies). Random data is deterministic (splitmix64 + Box-Muller). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kg_check.h"
#include "kg_internal.h"

typedef struct {
    kg_role role;
    const char *name;
    double *v;
    float *f;   /* the f32 copy passed to an f32 kernel (NULL for f64) */
    size_t n;
    const char *init;
} slot;

/* A bank owns everything a call needs, so calls allocate nothing. */
typedef struct {
    const kg_kernel *k;
    slot *s;
    int n;
    void **args;   /* the argument array of one call (the largest pass) */
    void *ws;      /* the largest workspace */
} bank;

static slot *find(bank *b, kg_role role, const char *name)
{
    for (int i = 0; i < b->n; i++)
        if (b->s[i].role == role && strcmp(b->s[i].name, name) == 0)
            return &b->s[i];
    return NULL;
}

static void bank_free(bank *b)
{
    for (int i = 0; b->s && i < b->n; i++) {
        free(b->s[i].v);
        free(b->s[i].f);
    }
    free(b->s);
    free(b->args);
    free(b->ws);
    memset(b, 0, sizeof *b);
}

/* One slot per argument of every pass (inputs, cotangents, tangents and all results).
   Returns 0, or -1 when memory runs out (b is then empty). */
static int bank_init(bank *b, const kg_kernel *k)
{
    memset(b, 0, sizeof *b);
    b->k = k;
    int cap = 0, maxargs = 0;
    size_t ws = 0;
    for (int p = 0; p < KG_NPASSES; p++) {
        cap += kg_nargs(k, (kg_pass)p);
        maxargs = kg_nargs(k, (kg_pass)p) > maxargs ? kg_nargs(k, (kg_pass)p) : maxargs;
        ws = kg_ws_size(k, (kg_pass)p) > ws ? kg_ws_size(k, (kg_pass)p) : ws;
    }
    int ok = (b->s = calloc((size_t)cap + 1, sizeof *b->s)) && (b->args = calloc((size_t)maxargs + 1, sizeof *b->args)) &&
             (b->ws = calloc(ws + 1, kg_elem_size(k)));
    for (int p = 0; ok && p < KG_NPASSES; p++)
        for (int i = 0; ok && i < kg_nargs(k, (kg_pass)p); i++) {
            const kg_arg *a = kg_arg_at(k, (kg_pass)p, i);
            if (find(b, a->role, a->name))
                continue;
            slot *s = &b->s[b->n++];
            s->role = a->role;
            s->name = a->name;
            s->n = a->count;
            s->init = a->init;
            ok = (s->v = calloc(a->count + 1, sizeof(double))) != NULL;
            if (ok && kg_elem_size(k) == 4)
                ok = (s->f = calloc(a->count + 1, sizeof(float))) != NULL;
        }
    if (!ok)
        bank_free(b);
    return ok ? 0 : -1;
}

/* Calls a pass with data from the bank; results go back into it. Returns the kernel's code. */
static int call(const kg_kernel *k, kg_pass pass, bank *b)
{
    int n = kg_nargs(k, pass);
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        slot *s = find(b, a->role, a->name);
        if (s->f)
            for (size_t j = 0; j < a->count; j++)
                s->f[j] = (float)s->v[j];
        b->args[i] = s->f ? (void *)s->f : (void *)s->v;
    }
    b->args[n] = b->ws;
    int rc = kg_call(k, pass, b->args, n + 1);
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        slot *s = find(b, a->role, a->name);
        if (s->f && kg_role_writes(a->role))
            for (size_t j = 0; j < a->count; j++)
                s->v[j] = s->f[j];
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* random data */

typedef struct {
    unsigned long long s;
} rng;

static double uniform(rng *r) /* (0, 1) */
{
    unsigned long long z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal(rng *r)
{
    return sqrt(-2.0 * log(uniform(r))) * cos(6.283185307179586 * uniform(r));
}

static void fill(rng *r, slot *s, const char *how)
{
    for (size_t j = 0; j < s->n; j++) {
        if (strcmp(how, "positive") == 0)
            s->v[j] = 0.5 + uniform(r);
        else if (strcmp(how, "mean1e4") == 0)
            s->v[j] = 1e4 + normal(r);
        else if (strcmp(how, "constant") == 0)
            s->v[j] = 0.75;
        else if (strcmp(how, "tiny") == 0)
            s->v[j] = 1e-3 * normal(r);
        else
            s->v[j] = normal(r);
    }
}

/* inputs by their spec hint; the first input (the data tensor) by `how` */
static void fill_inputs(rng *r, bank *b, const char *how)
{
    int first = 1;
    for (int i = 0; i < b->n; i++) {
        slot *s = &b->s[i];
        if (s->role != KG_ROLE_INPUT)
            continue;
        fill(r, s, (first && strcmp(s->init, "normal") == 0) ? how : s->init);
        first = 0;
    }
}

static void fill_role(rng *r, bank *b, kg_role role)
{
    for (int i = 0; i < b->n; i++)
        if (b->s[i].role == role)
            fill(r, &b->s[i], "normal");
}

/* max |a - b| / max(floor, max |b|) over the slots of one role */
static double rel_diff(bank *a, bank *b, kg_role role, double floor)
{
    double num = 0, den = floor;
    for (int i = 0; i < b->n; i++) {
        slot *sb = &b->s[i];
        if (sb->role != role)
            continue;
        slot *sa = find(a, role, sb->name);
        for (size_t j = 0; j < sb->n; j++) {
            double d = fabs(sa->v[j] - sb->v[j]);
            if (!(d <= num)) /* NaN counts as a failure */
                num = d;
            if (fabs(sb->v[j]) > den)
                den = fabs(sb->v[j]);
        }
    }
    return num / den;
}

static void copy_role(bank *dst, bank *src, kg_role role)
{
    for (int i = 0; i < src->n; i++)
        if (src->s[i].role == role)
            memcpy(find(dst, role, src->s[i].name)->v, src->s[i].v, src->s[i].n * sizeof(double));
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static kg_status build(const kg_request *base, const char *dtype, const char *vjp, const char *jvp,
                       kg_kernel **k, double *gen_ms, double *jit_ms, char **err)
{
    kg_request req = *base;
    req.passes = 1u << KG_FORWARD | 1u << KG_VJP | 1u << KG_JVP; /* what the checks run */
    req.dtype = dtype;
    req.vjp_form = vjp;
    req.jvp_form = jvp;
    req.name = NULL;
    double t0 = now_ms();
    kg_status st = kg_generate(&req, k, err);
    double t1 = now_ms();
    if (st == KG_OK && (st = kg_compile(*k, err)) != KG_OK) {
        kg_free(*k);
        *k = NULL;
    }
    if (gen_ms)
        *gen_ms = t1 - t0;
    if (jit_ms)
        *jit_ms = now_ms() - t1;
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* the checks */

/* JVP against a 4-point central difference along the tangent (relative max-norm). */
/* Returns the figure, or -1 when memory runs out. */
static double check_fd(const kg_kernel *k, bank *b, int *domain)
{
    static const double steps[4] = {-2, -1, 1, 2}, weights[4] = {1, -8, 8, -1};
    const double h = 1e-4;
    bank p, fd;
    if (bank_init(&p, k) != 0)
        return -1;
    if (bank_init(&fd, k) != 0) {
        bank_free(&p);
        return -1;
    }
    copy_role(&p, b, KG_ROLE_INPUT);
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < p.n; i++) {
            slot *x = &p.s[i];
            if (x->role != KG_ROLE_INPUT)
                continue;
            slot *x0 = find(b, KG_ROLE_INPUT, x->name), *t = find(b, KG_ROLE_TANGENT, x->name);
            for (size_t j = 0; j < x->n; j++)
                x->v[j] = x0->v[j] + steps[s] * h * t->v[j];
        }
        *domain |= call(k, KG_FORWARD, &p) != 0;
        for (int i = 0; i < p.n; i++) {
            slot *y = &p.s[i];
            if (y->role != KG_ROLE_OUTPUT)
                continue;
            slot *acc = find(&fd, KG_ROLE_OUTPUT_TANGENT, y->name);
            for (size_t j = 0; j < y->n; j++)
                acc->v[j] += weights[s] * y->v[j] / (12 * h);
        }
    }
    double r = rel_diff(&fd, b, KG_ROLE_OUTPUT_TANGENT, 1e-300);
    bank_free(&p);
    bank_free(&fd);
    return r;
}

/* <w, J v> against <J^T w, v>, relative to the sums of absolute products. */
static double check_adjoint(bank *b)
{
    double lhs = 0, rhs = 0, scale = 0;
    for (int i = 0; i < b->n; i++) {
        slot *s = &b->s[i];
        if (s->role == KG_ROLE_OUTPUT_TANGENT) {
            slot *w = find(b, KG_ROLE_COTANGENT, s->name);
            for (size_t j = 0; j < s->n; j++) {
                lhs += w->v[j] * s->v[j];
                scale += fabs(w->v[j] * s->v[j]);
            }
        } else if (s->role == KG_ROLE_GRAD) {
            slot *v = find(b, KG_ROLE_TANGENT, s->name);
            for (size_t j = 0; j < s->n; j++) {
                rhs += s->v[j] * v->v[j];
                scale += fabs(s->v[j] * v->v[j]);
            }
        }
    }
    double d = fabs(lhs - rhs);
    return scale > 0 ? d / scale : d;
}

static const char *other_form(const char *form) { return strcmp(form, "closed") == 0 ? "derived" : "closed"; }

static const char *const HARD[] = {"normal", "mean1e4", "constant", "tiny"};

kg_status kg_check_run(const kg_request *req, unsigned long seed, kg_check_result *r, char **err)
{
    memset(r, 0, sizeof *r);
    r->closed_vjp = r->closed_jvp = -1;
    *err = NULL;
    kg_kernel *k64 = NULL, *k32 = NULL, *kc = NULL;
    if (req->nconsts != 0) { /* their data has one dtype; the checks build both */
        *err = kg_strdup("kg_check: baked inputs (kg_request.consts) are not supported: check the graph without them");
        return *err ? KG_EINPUT : KG_ENOMEM;
    }
    /* the kernels checked use the request's forms; the comparison kernel uses the other form
       wherever the spec has a closed one */
    const char *vjp = req->vjp_form ? req->vjp_form : "derived", *jvp = req->jvp_form ? req->jvp_form : "derived";
    kg_status st = build(req, "f64", vjp, jvp, &k64, &r->gen_ms, &r->jit_ms, err);
    if (st != KG_OK)
        return st;
    kg_stats(k64, &r->statements, &r->bytes);
    rng g = {seed * 0x9E3779B97F4A7C15ull + 12345};
    bank b = {0}, c = {0}, x64 = {0}, x32 = {0};
    if (!(r->params = kg_strdup(kg_text(k64, KG_TEXT_PARAMS))) || bank_init(&b, k64) != 0)
        goto nomem;
    fill_inputs(&g, &b, "normal");
    fill_role(&g, &b, KG_ROLE_TANGENT);
    fill_role(&g, &b, KG_ROLE_COTANGENT);
    int domain = call(k64, KG_FORWARD, &b) != 0;
    domain |= call(k64, KG_VJP, &b) != 0;
    domain |= call(k64, KG_JVP, &b) != 0;
    if ((r->fd = check_fd(k64, &b, &domain)) < 0)
        goto nomem;
    r->adjoint = check_adjoint(&b);

    int has_vjp = kg_has_closed_form(k64, KG_VJP), has_jvp = kg_has_closed_form(k64, KG_JVP);
    if (has_vjp || has_jvp) {
        st = build(req, "f64", has_vjp ? other_form(vjp) : vjp, has_jvp ? other_form(jvp) : jvp, &kc, NULL, NULL, err);
        if (st != KG_OK)
            goto done;
        if (bank_init(&c, kc) != 0)
            goto nomem;
        copy_role(&c, &b, KG_ROLE_INPUT);
        copy_role(&c, &b, KG_ROLE_TANGENT);
        copy_role(&c, &b, KG_ROLE_COTANGENT);
        domain |= call(kc, KG_VJP, &c) != 0;
        domain |= call(kc, KG_JVP, &c) != 0;
        if (has_vjp)
            r->closed_vjp = rel_diff(&c, &b, KG_ROLE_GRAD, 1e-300);
        if (has_jvp)
            r->closed_jvp = rel_diff(&c, &b, KG_ROLE_OUTPUT_TANGENT, 1e-300);
        bank_free(&c);
    }

    st = build(req, "f32", vjp, jvp, &k32, NULL, NULL, err);
    if (st != KG_OK)
        goto done;
    for (size_t h = 0; h < sizeof HARD / sizeof HARD[0]; h++) {
        if (bank_init(&x64, k64) != 0 || bank_init(&x32, k32) != 0)
            goto nomem;
        fill_inputs(&g, &x64, HARD[h]);
        fill_role(&g, &x64, KG_ROLE_TANGENT);
        fill_role(&g, &x64, KG_ROLE_COTANGENT);
        for (int i = 0; i < x64.n; i++) /* both kernels see the same (f32-representable) data */
            if (kg_role_reads(x64.s[i].role))
                for (size_t j = 0; j < x64.s[i].n; j++)
                    x64.s[i].v[j] = (float)x64.s[i].v[j];
        for (kg_role role = KG_ROLE_INPUT; role < KG_ROLE_OUTPUT; role++)
            copy_role(&x32, &x64, role);
        static const kg_role result[KG_JVP + 1] = {KG_ROLE_OUTPUT, KG_ROLE_GRAD, KG_ROLE_OUTPUT_TANGENT};
        for (int p = 0; p <= KG_JVP; p++) {
            domain |= call(k64, (kg_pass)p, &x64) != 0;
            domain |= call(k32, (kg_pass)p, &x32) != 0;
            double d = rel_diff(&x32, &x64, result[p], 1.0);
            if (!(d <= r->f32[p]))
                r->f32[p] = d;
        }
        bank_free(&x64);
        bank_free(&x32);
    }
    r->domain_failures = domain;
    r->passed = !domain && r->fd <= KG_TOL_FD && r->adjoint <= KG_TOL_ADJOINT && r->closed_vjp <= KG_TOL_CLOSED &&
                r->closed_jvp <= KG_TOL_CLOSED;
    for (int p = 0; p <= KG_JVP; p++)
        r->passed = r->passed && r->f32[p] <= KG_TOL_F32;
    goto done;
nomem:
    st = KG_ENOMEM;
done:
    bank_free(&b);
    bank_free(&c);
    bank_free(&x64);
    bank_free(&x32);
    kg_free(k64);
    kg_free(k32);
    kg_free(kc);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* reports */

static const char *verdict(double v, double tol) { return v <= tol ? "ok" : "FAIL"; }

kg_status kg_check(const kg_request *req, const kg_check_options *opt, char **err)
{
    kg_check_result r;
    kg_status st = kg_check_run(req, opt->seed, &r, err);
    if (st != KG_OK) {
        free(r.params);
        return st;
    }
    FILE *o = opt->out;
    if (o) {
        fprintf(o, "%s %s (f64 kernels; f32 for the last rows)\n", req->graph, r.params);
        fprintf(o, "  %-34s %9.2e  tol %.0e  %s\n", "fd: JVP vs finite differences", r.fd, KG_TOL_FD,
                verdict(r.fd, KG_TOL_FD));
        fprintf(o, "  %-34s %9.2e  tol %.0e  %s\n", "adjoint: <w,Jv> vs <J^T w,v>", r.adjoint, KG_TOL_ADJOINT,
                verdict(r.adjoint, KG_TOL_ADJOINT));
        if (r.closed_vjp >= 0)
            fprintf(o, "  %-34s %9.2e  tol %.0e  %s\n", "closed: closed-form vs derived VJP", r.closed_vjp,
                    KG_TOL_CLOSED, verdict(r.closed_vjp, KG_TOL_CLOSED));
        if (r.closed_jvp >= 0)
            fprintf(o, "  %-34s %9.2e  tol %.0e  %s\n", "closed: closed-form vs derived JVP", r.closed_jvp,
                    KG_TOL_CLOSED, verdict(r.closed_jvp, KG_TOL_CLOSED));
        static const char *names[KG_JVP + 1] = {"f32 vs f64, forward (hard inputs)", "f32 vs f64, vjp",
                                                "f32 vs f64, jvp"};
        for (int p = 0; p <= KG_JVP; p++)
            fprintf(o, "  %-34s %9.2e  tol %.0e  %s\n", names[p], r.f32[p], KG_TOL_F32, verdict(r.f32[p], KG_TOL_F32));
        if (r.domain_failures)
            fprintf(o, "  domain failure reported by a kernel on check data: FAIL\n");
        fprintf(o, "  generate %.1f ms, JIT %.1f ms, %zu statements, %zu bytes of C\n", r.gen_ms, r.jit_ms,
                r.statements, r.bytes);
        fprintf(o, "%s\n", r.passed ? "PASS" : "FAIL");
    }
    free(r.params);
    return r.passed ? KG_OK : KG_ECHECK;
}

kg_status kg_check_all(const kg_request *base, const kg_check_options *opt, char **err)
{
    char *names;
    kg_status st = kg_graphs(&names, err);
    if (st != KG_OK)
        return st;
    FILE *o = opt->out;
    if (o)
        fprintf(o, "%-22s %-42s %8s %8s %8s %8s %13s %8s %s\n", "graph", "params", "fd", "adjoint", "closed",
                "f32", "gen+jit ms", "C bytes", "result");
    if (o)
        fprintf(o, "%-22s %-42s %8.0e %8.0e %8.0e %8.0e %13s %8s\n", "(tolerance)", "", KG_TOL_FD, KG_TOL_ADJOINT,
                KG_TOL_CLOSED, KG_TOL_F32, "", "");
    int failed = 0, count = 0;
    for (char *name = strtok(names, "\n"); name; name = strtok(NULL, "\n")) {
        kg_request req = *base;
        req.graph = name;
        req.params = NULL;
        req.nparams = 0;
        kg_check_result r;
        st = kg_check_run(&req, opt->seed, &r, err);
        if (st != KG_OK) {
            free(r.params);
            free(names);
            return st;
        }
        double closed = r.closed_vjp > r.closed_jvp ? r.closed_vjp : r.closed_jvp;
        double f32 = r.f32[0];
        for (int p = 1; p <= KG_JVP; p++)
            f32 = r.f32[p] > f32 ? r.f32[p] : f32;
        char cl[16], t[32];
        if (closed >= 0)
            snprintf(cl, sizeof cl, "%8.1e", closed);
        else
            snprintf(cl, sizeof cl, "%8s", "-");
        snprintf(t, sizeof t, "%.1f+%.1f", r.gen_ms, r.jit_ms);
        if (o)
            fprintf(o, "%-22s %-42.42s %8.1e %8.1e %s %8.1e %13s %8zu %s\n", name, r.params, r.fd, r.adjoint, cl, f32,
                    t, r.bytes, r.passed ? "ok" : "FAIL");
        failed += !r.passed;
        count++;
        free(r.params);
    }
    free(names);
    if (o)
        fprintf(o, "%d passed, %d failed\n", count - failed, failed);
    return failed ? KG_ECHECK : KG_OK;
}
