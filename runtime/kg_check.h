/* kg_check: the seeds' theorem (backprop = adjoint of the derivative), checked numerically on
 * the generated, JIT-compiled kernels. */
#ifndef KG_CHECK_H
#define KG_CHECK_H

#include <stdio.h>

#include "kerngen.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tolerances (stated, printed with every figure). */
#define KG_TOL_FD 1e-6       /* JVP vs 4-point central differences, relative max-norm */
#define KG_TOL_ADJOINT 1e-12 /* |<w,Jv> - <J^T w,v>| / (sum|w||Jv| + sum|J^T w||v|) */
#define KG_TOL_CLOSED 1e-11  /* closed-form vs derived VJP/JVP, relative max-norm */
#define KG_TOL_F32 1e-4      /* f32 vs f64: max|d| / max(1, max|f64|) on hard inputs */

typedef struct {
    unsigned long seed;
    FILE *out; /* report; NULL for none */
} kg_check_options;

typedef struct {
    double fd, adjoint;
    double closed_vjp, closed_jvp; /* -1 when the spec has no closed form */
    double f32[KG_JVP + 1];        /* worst over the hard input sets: forward, vjp, jvp */
    int domain_failures;           /* f64 or f32 kernels reporting a domain failure */
    double gen_ms, jit_ms;         /* f64 kernel: generate, libtcc compile */
    size_t statements, bytes;
    char *params;                  /* "rows=8 dim=64 eps=1e-06" (malloc'd) */
    int passed;
} kg_check_result;

/* Runs every check for one graph; fills r (free r->params). KG_OK even when a check fails:
   see r->passed. */
kg_status kg_check_run(const kg_request *req, unsigned long seed, kg_check_result *r, char **err);

/* kerngen check GRAPH: report; KG_ECHECK when a check failed. */
kg_status kg_check(const kg_request *req, const kg_check_options *opt, char **err);

/* kerngen check --all: every graph at its default dims, one table row each. */
kg_status kg_check_all(const kg_request *base, const kg_check_options *opt, char **err);

#ifdef __cplusplus
}
#endif

#endif
