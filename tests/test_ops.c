/* test_ops: every primitive's JVP and VJP rule (gen/ops.lua). Each spec in tests/specs/ops/
 * uses one primitive; kg_check_run checks, in f64, the generated JVP against 4-point central
 * finite differences and the VJP against the JVP with the dot-product (adjoint) test, with
 * the IR checker running between passes. Not covered here: unpick0 (only reached by second
 * derivatives, which kerngen does not generate) and the nondiff helpers step and gelu_grad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kg_check.h"
#include "kg_test.h"

#define OPS_DIR "tests/specs/ops"

static void primitive(void **state)
{
    const char *path = *state;
    kg_request req = {0};
    req.graph = path;
    req.check_ir = 1;
    kg_check_result r;
    char *err = NULL;
    kg_status st = kg_check_run(&req, 7, &r, &err);
    if (st != KG_OK)
        fprintf(stderr, "%s: %s\n", path, err ? err : "?");
    assert_int_equal(st, KG_OK);
    printf("  %-32s fd %.2e (tol %.0e)  adjoint %.2e (tol %.0e)\n", path, r.fd, KG_TOL_FD, r.adjoint, KG_TOL_ADJOINT);
    assert_true(r.fd <= KG_TOL_FD);
    assert_true(r.adjoint <= KG_TOL_ADJOINT);
    free(r.params);
}

int main(void) { return kgt_run_spec_dir("primitives", OPS_DIR, primitive, NULL, 0); }
