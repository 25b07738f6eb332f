/* test_check: `kerngen check` (kg_check_run) passes for LayerNorm at 1x1, 4x8, 7x13, 16x512 and
 * 64x768, and for every operator at a tiny, an odd and a medium shape (both GELU forms and
 * both rmsnorm bias settings included); every graph generates with the IR checker on; and each
 * check is shown able to fail: wrong closed forms fail the closed-form comparison, and, checked
 * themselves, the finite-difference and adjoint tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kg_check.h"
#include "kg_test.h"

typedef struct {
    const char *graph;
    const char *params[8];
} shape_case;

static const shape_case CASES[] = {
    {"layernorm", {"rows=1", "dim=1"}},
    {"layernorm", {"rows=4", "dim=8"}},
    {"layernorm", {"rows=7", "dim=13"}},
    {"layernorm", {"rows=16", "dim=512"}},
    {"layernorm", {"rows=64", "dim=768"}},
    {"rmsnorm", {"rows=1", "dim=1"}},
    {"rmsnorm", {"rows=5", "dim=11", "bias=1"}},
    {"rmsnorm", {"rows=32", "dim=256"}},
    {"batchnorm1d", {"c=1", "l=1"}},
    {"batchnorm1d", {"c=3", "l=7"}},
    {"batchnorm1d", {"c=16", "l=128"}},
    {"batchnorm2d", {"c=1", "h=1", "w=1"}},
    {"batchnorm2d", {"c=3", "h=5", "w=3"}},
    {"batchnorm2d", {"c=8", "h=16", "w=16"}},
    {"batchnorm3d", {"c=1", "d=1", "h=1", "w=1"}},
    {"batchnorm3d", {"c=3", "d=3", "h=2", "w=5"}},
    {"batchnorm3d", {"c=4", "d=8", "h=8", "w=8"}},
    {"instancenorm2d", {"c=3", "h=5", "w=3"}},
    {"batchnorm_inference1d", {"c=1", "l=1"}},
    {"batchnorm_inference1d", {"c=3", "l=7"}},
    {"batchnorm_inference2d", {"c=3", "h=5", "w=3"}},
    {"batchnorm_inference3d", {"c=4", "d=8", "h=8", "w=8"}},
    {"groupnorm", {"b=1", "h=1", "w=1", "c=1", "groups=1"}},
    {"groupnorm", {"b=2", "h=3", "w=5", "c=6", "groups=3"}},
    {"groupnorm", {"b=4", "h=8", "w=8", "c=32", "groups=8"}},
    {"weightnorm", {"out=1", "in=1"}},
    {"weightnorm", {"out=7", "in=13", "eps=0"}},
    {"weightnorm", {"out=64", "in=256"}},
    {"normalize_axis", {"shape=1", "axis=0"}},
    {"normalize_axis", {"shape=3x5x7", "axis=1"}},
    {"normalize_axis", {"shape=16x32x16", "axis=2"}},
    {"normalize_axis", {"shape=2x3x4x5", "axis=0"}},
    {"ffn", {"dmodel=1", "dff=1"}},
    {"ffn", {"dmodel=5", "dff=11", "gelu=erf"}},
    {"ffn", {"dmodel=128", "dff=512", "gelu=tanh"}},
    {"seq_ffn", {"seq=1", "dmodel=1", "dff=1"}},
    {"seq_ffn", {"seq=3", "dmodel=5", "dff=7", "gelu=erf"}},
    {"seq_ffn", {"seq=16", "dmodel=64", "dff=256"}},
    {"mlp", {"seq=3", "dmodel=5", "dff=7"}},
    {"prenorm_ffn", {"seq=1", "dmodel=1", "dff=1"}},
    {"prenorm_ffn", {"seq=3", "dmodel=5", "dff=7", "gelu=erf"}},
    {"prenorm_ffn", {"seq=8", "dmodel=64", "dff=256"}},
    {"postnorm_ffn", {"seq=1", "dmodel=1", "dff=1"}},
    {"postnorm_ffn", {"seq=3", "dmodel=5", "dff=7", "gelu=erf"}},
    {"postnorm_ffn", {"seq=8", "dmodel=64", "dff=256"}},
};

static void check_case(void **state)
{
    const shape_case *c = *state;
    kg_request req = {0};
    int n = 0;
    while (c->params[n])
        n++;
    req.graph = c->graph;
    req.params = c->params;
    req.nparams = n;
    req.check_ir = 1;
    kg_check_result r;
    char *err = NULL;
    kg_status st = kg_check_run(&req, 1, &r, &err);
    if (st != KG_OK)
        fprintf(stderr, "%s: %s\n", c->graph, err ? err : "?");
    assert_int_equal(st, KG_OK);
    printf("  %-22s %-36s fd %.1e adjoint %.1e closed %.1e/%.1e f32 %.1e/%.1e/%.1e\n", c->graph, r.params, r.fd,
           r.adjoint, r.closed_vjp, r.closed_jvp, r.f32[0], r.f32[1], r.f32[2]);
    assert_false(r.domain_failures);
    assert_true(r.passed);
    free(r.params);
}

/* The checker must be able to fail: closed forms missing a term are caught by the closed-form
   comparison, and when they are the forms checked, by finite differences and the adjoint test. */
static void wrong_closed_form_caught(void **state)
{
    (void)state;
    kg_request req = {0};
    req.graph = "tests/specs/wrong_closed_form.lua";
    kg_check_result r;
    char *err = NULL;
    assert_int_equal(kg_check_run(&req, 1, &r, &err), KG_OK);
    printf("  wrong closed forms: vjp %.2e jvp %.2e (tol %.0e)\n", r.closed_vjp, r.closed_jvp, KG_TOL_CLOSED);
    assert_true(r.closed_vjp > 1e-3);
    assert_true(r.closed_jvp > 1e-3);
    assert_false(r.passed);
    free(r.params);
    kg_check_options opt = {1, NULL};
    assert_int_equal(kg_check(&req, &opt, &err), KG_ECHECK);

    /* Checking the wrong closed-form JVP itself: finite differences and the adjoint test
       (against the correct derived VJP) must both fail. */
    req.jvp_form = "closed";
    assert_int_equal(kg_check_run(&req, 1, &r, &err), KG_OK);
    printf("  wrong closed JVP checked: fd %.2e (tol %.0e), adjoint %.2e (tol %.0e)\n", r.fd, KG_TOL_FD, r.adjoint,
           KG_TOL_ADJOINT);
    assert_true(r.fd > 1e-3);
    assert_true(r.adjoint > 1e-3);
    assert_false(r.passed);
    free(r.params);

    /* The wrong closed-form VJP against the derived JVP: the adjoint test must fail, while
       finite differences (of the correct JVP) still pass. */
    req.jvp_form = NULL;
    req.vjp_form = "closed";
    assert_int_equal(kg_check_run(&req, 1, &r, &err), KG_OK);
    printf("  wrong closed VJP checked: fd %.2e, adjoint %.2e\n", r.fd, r.adjoint);
    assert_true(r.fd <= KG_TOL_FD);
    assert_true(r.adjoint > 1e-3);
    assert_false(r.passed);
    free(r.params);
}

int main(void)
{
    enum { N = sizeof CASES / sizeof CASES[0] };
    struct CMUnitTest tests[N + 1];
    static char names[N][128];
    for (int i = 0; i < N; i++) {
        int len = snprintf(names[i], sizeof names[i], "%s", CASES[i].graph);
        for (int p = 0; CASES[i].params[p] && len < (int)sizeof names[i]; p++)
            len += snprintf(names[i] + len, sizeof names[i] - (size_t)len, " %s", CASES[i].params[p]);
        struct CMUnitTest t = {names[i], check_case, NULL, NULL, (void *)&CASES[i]};
        tests[i] = t;
    }
    struct CMUnitTest last = cmocka_unit_test(wrong_closed_form_caught);
    tests[N] = last;
    return _cmocka_run_group_tests("check", tests, N + 1, NULL, NULL);
}
