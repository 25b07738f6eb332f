/* test_jit: the libtcc JIT as a library feature. Threads generate, compile, call and free
 * kernels concurrently (a request runs in a Lua state of its own, which may be a prepared one
 * that an earlier request used: kg_lua.c; libtcc runs behind one mutex) and must get exactly
 * the single-threaded results; compiled kernels may be called from several threads at once.
 * The sanitizer build (./build.sh asan) runs this too, for leaks and races in the build/free
 * cycle. prepared_states: requests after other requests (failed ones, spec files) give the
 * bytes they gave first. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kg_test.h"

enum { THREADS = 4, ROUNDS = 6, ROWS = 3, DIM = 10 };

static double X[ROWS * DIM], GAMMA[DIM], BETA[DIM];

/* forward of layernorm rows=3 dim=10 (f64) into y; dims vary with `round` to vary the code */
static int run_once(int unroll_choice, double *y)
{
    static const char *policies[] = {"auto", "none", "full"};
    const char *params[] = {"rows=3", "dim=10", "eps=1e-05", NULL};
    kg_request req = {0};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 3;
    req.dtype = "f64";
    req.unroll = policies[unroll_choice % 3];
    kg_kernel *k = kgt_build_req(&req);
    if (!k)
        return -1;
    kgt_buf bufs[] = {{KG_ROLE_INPUT, "x", X}, {KG_ROLE_INPUT, "gamma", GAMMA}, {KG_ROLE_INPUT, "beta", BETA},
                      {KG_ROLE_OUTPUT, "y", y}};
    int rc = kgt_call(k, KG_FORWARD, bufs, 4);
    kg_free(k);
    return rc;
}

typedef struct {
    int id, failures;
    double y[ROWS * DIM];
    const double *want;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int r = 0; r < ROUNDS; r++)
        if (run_once(w->id + r, w->y) != 0 || memcmp(w->y, w->want, sizeof w->y) != 0)
            w->failures++;
    return NULL;
}

static void concurrent_generate_compile_call(void **state)
{
    (void)state;
    for (int i = 0; i < ROWS * DIM; i++)
        X[i] = kgt_normal();
    for (int j = 0; j < DIM; j++) {
        GAMMA[j] = 1 + kgt_normal();
        BETA[j] = kgt_normal();
    }
    double want[ROWS * DIM];
    assert_int_equal(run_once(0, want), 0);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].id = i;
        w[i].failures = 0;
        w[i].want = want;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
}

/* One compiled kernel called from several threads at once (generated code has no state). */
static kg_kernel *shared;
static void *call_shared(void *arg)
{
    worker *w = arg;
    kgt_buf bufs[] = {{KG_ROLE_INPUT, "x", X}, {KG_ROLE_INPUT, "gamma", GAMMA}, {KG_ROLE_INPUT, "beta", BETA},
                      {KG_ROLE_OUTPUT, "y", w->y}};
    for (int r = 0; r < 200; r++)
        if (kgt_call(shared, KG_FORWARD, bufs, 4) != 0 || memcmp(w->y, w->want, sizeof w->y) != 0)
            w->failures++;
    return NULL;
}

static void concurrent_calls(void **state)
{
    (void)state;
    const char *params[] = {"rows=3", "dim=10", "eps=1e-05", NULL};
    shared = kgt_build("layernorm", "f64", params);
    assert_non_null(shared);
    double want[ROWS * DIM];
    kgt_buf bufs[] = {{KG_ROLE_INPUT, "x", X}, {KG_ROLE_INPUT, "gamma", GAMMA}, {KG_ROLE_INPUT, "beta", BETA},
                      {KG_ROLE_OUTPUT, "y", want}};
    assert_int_equal(kgt_call(shared, KG_FORWARD, bufs, 4), 0);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].failures = 0;
        w[i].want = want;
        assert_int_equal(pthread_create(&t[i], NULL, call_shared, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    kg_free(shared);
}

/* kg_compile twice is harmless; kg_call before kg_compile reports -1 instead of crashing. */
static void compile_contract(void **state)
{
    (void)state;
    kg_request req = {0};
    const char *params[] = {"rows=2", "dim=3"};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 2;
    kg_kernel *k;
    char *err;
    assert_int_equal(kg_generate(&req, &k, &err), KG_OK);
    void *args[8] = {0};
    assert_int_equal(kg_call(k, KG_FORWARD, args, 5), KG_CALL_NO_PASS); /* not compiled yet */
    assert_int_equal(kg_compile(k, &err), KG_OK);
    assert_int_equal(kg_compile(k, &err), KG_OK);
    kg_free(k);
}

/* kg_call checks what it can: the pass, the argument count, NULL where a buffer is needed;
   kg_arg_index binds arguments by name. A misused call runs nothing. */
static void call_contract(void **state)
{
    (void)state;
    const char *params[] = {"rows=2", "dim=3", NULL};
    kg_kernel *k = kgt_build("layernorm", "f64", params);
    assert_non_null(k);
    double x[6] = {1, 2, 4, 0, 1, 3}, g[3] = {1, 1, 1}, b[3] = {0}, y[6] = {0}, ws[64];
    assert_true(kg_ws_size(k, KG_VJP) <= 64);
    void *args[5] = {x, g, b, y, ws};
    assert_int_equal(kg_arg_index(k, KG_FORWARD, "x"), 0);
    assert_int_equal(kg_arg_index(k, KG_FORWARD, "y"), 3);
    assert_int_equal(kg_arg_index(k, KG_FORWARD, "ws"), 4);
    assert_int_equal(kg_arg_index(k, KG_VJP, "x.grad"), kg_arg_index(k, KG_VJP, "x_grad"));
    assert_int_equal(kg_arg_index(k, KG_VJP, "y.cotangent"), 3);
    assert_int_equal(kg_arg_index(k, KG_FORWARD, "nope"), -1);
    assert_int_equal(kg_arg_index(k, (kg_pass)99, "x"), -1);
    assert_int_equal(kg_call(k, (kg_pass)99, args, 5), KG_CALL_NO_PASS);
    assert_int_equal(kg_call(k, (kg_pass)-1, args, 5), KG_CALL_NO_PASS);
    assert_int_equal(kg_call(k, KG_FORWARD, NULL, 5), KG_CALL_BAD_ARGS);
    assert_int_equal(kg_call(k, KG_FORWARD, args, 4), KG_CALL_BAD_ARGS);
    assert_int_equal(kg_call(k, KG_FORWARD, args, 6), KG_CALL_BAD_ARGS);
    args[3] = NULL;
    assert_int_equal(kg_call(k, KG_FORWARD, args, 5), KG_CALL_BAD_ARGS);
    args[3] = y;
    if (kg_ws_size(k, KG_FORWARD)) {
        args[4] = NULL;
        assert_int_equal(kg_call(k, KG_FORWARD, args, 5), KG_CALL_BAD_ARGS);
        args[4] = ws;
    }
    assert_int_equal(y[0], 0); /* nothing ran */
    assert_int_equal(kg_call(k, KG_FORWARD, args, 5), 0);
    assert_true(y[0] != 0);
    kg_free(k);
}

/* passes: only the requested pass is generated; it computes what the full kernel computes. */
static void single_pass(void **state)
{
    (void)state;
    const char *params[] = {"rows=3", "dim=10", "eps=1e-05"};
    kg_request req = {0};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 3;
    req.dtype = "f64";
    req.passes = 1u << KG_FORWARD;
    kg_kernel *k = kgt_build_req(&req);
    assert_non_null(k);
    assert_int_equal(kg_nargs(k, KG_VJP), 0);
    void *none[1] = {0};
    assert_int_equal(kg_call(k, KG_VJP, none, 1), KG_CALL_NO_PASS);
    assert_null(strstr(kg_text(k, KG_TEXT_HEADER), "_vjp("));
    double y[ROWS * DIM], want[ROWS * DIM];
    kgt_buf bufs[] = {{KG_ROLE_INPUT, "x", X}, {KG_ROLE_INPUT, "gamma", GAMMA}, {KG_ROLE_INPUT, "beta", BETA},
                      {KG_ROLE_OUTPUT, "y", y}};
    assert_int_equal(kgt_call(k, KG_FORWARD, bufs, 4), 0);
    kg_free(k);
    assert_int_equal(run_once(0, want), 0);
    assert_memory_equal(y, want, sizeof y);
}

/* The generated text of a request (malloc'd), or NULL when it fails. */
static char *source_of(const char *graph, const char **params, int nparams, const char *dtype)
{
    kg_request req = {0};
    req.graph = graph;
    req.params = params;
    req.nparams = nparams;
    req.dtype = dtype;
    kg_kernel *k;
    char *err;
    if (kg_generate(&req, &k, &err) != KG_OK) {
        free(err);
        return NULL;
    }
    const char *text = kg_text(k, KG_TEXT_SOURCE);
    char *s = malloc(strlen(text) + 1);
    if (s)
        strcpy(s, text);
    kg_free(k);
    return s;
}

/* prepared_states: a prepared Lua state goes from request to request (kg_lua.c); whatever ran
   before, a request gives the bytes it gave first, here interleaved with other graphs and
   dtypes, a failing request, a spec file and a graph that calls others. */
static void prepared_states(void **state)
{
    (void)state;
    const char *ln[] = {"rows=3", "dim=10"}, *bad[] = {"rows=0"}, *sm[] = {"rows=2", "dim=7"};
    const char *blk[] = {"seq=2", "dmodel=4", "dff=6", "gelu=erf"};
    char *first = source_of("layernorm", ln, 2, "f32");
    char *first_sm = source_of("softmax", sm, 2, "f64");
    assert_non_null(first);
    assert_non_null(first_sm);
    for (int round = 0; round < 3; round++) {
        char *s;
        assert_null(source_of("layernorm", bad, 1, "f32")); /* an error: its state is closed */
        assert_null(source_of("no_such_graph", NULL, 0, "f32"));
        s = source_of("postnorm_ffn", blk, 4, "f64");
        assert_non_null(s);
        free(s);
        s = source_of("tests/specs/ops/add.lua", NULL, 0, "f32"); /* a spec file */
        assert_non_null(s);
        free(s);
        s = source_of("layernorm", ln, 2, "f32");
        assert_non_null(s);
        assert_string_equal(s, first);
        free(s);
        s = source_of("softmax", sm, 2, "f64");
        assert_non_null(s);
        assert_string_equal(s, first_sm);
        free(s);
    }
    free(first);
    free(first_sm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_generate_compile_call),
        cmocka_unit_test(concurrent_calls),
        cmocka_unit_test(compile_contract),
        cmocka_unit_test(single_pass),
        cmocka_unit_test(prepared_states),
        cmocka_unit_test(call_contract),
    };
    return cmocka_run_group_tests_name("jit", tests, NULL, NULL);
}
