/* test_layernorm: the generated LayerNorm (forward, VJP, JVP; f32 and f64) against an
 * independent plain-loop reference in long double, at several shapes, on hard inputs, and the
 * contracts of DESIGN.md: dim = 1 gives y = beta with zero x and gamma gradients, constant rows
 * give y = beta, rows of mean 1e4 keep f32 within 1e-5 of f64, eps = 1e-12, domain failures
 * are reported, and seed 004's identity LN(x) = sqrt(N) c / sqrt(|c|^2 + N eps) at N = 512. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kg_test.h"

#define TOL_F64 1e-12        /* relative to max(1, max|ref|), vs long double loops */
#define TOL_F32 1e-5         /* same metric, f32 kernel on f32 data vs the reference */
#define TOL_F32_MEAN1E4 1e-5 /* absolute, f32 vs f64 kernel, rows of mean 1e4 and unit variance */
#define TOL_SEED004 1e-13

typedef struct {
    int rows, dim;
    double eps;
    double *x, *gamma, *beta, *dy, *tx, *tgamma, *tbeta;          /* inputs */
    double *y, *dx, *dgamma, *dbeta, *ty;                          /* results */
} ln_case;

static ln_case *ln_new(int rows, int dim, double eps)
{
    ln_case *c = calloc(1, sizeof *c);
    size_t n = (size_t)rows * dim;
    c->rows = rows;
    c->dim = dim;
    c->eps = eps;
    double **rd[] = {&c->x, &c->dy, &c->tx, &c->y, &c->dx, &c->ty};
    double **d[] = {&c->gamma, &c->beta, &c->tgamma, &c->tbeta, &c->dgamma, &c->dbeta};
    for (size_t i = 0; i < 6; i++) {
        *rd[i] = calloc(n, sizeof(double));
        *d[i] = calloc((size_t)dim, sizeof(double));
    }
    for (size_t i = 0; i < n; i++) {
        c->x[i] = kgt_normal();
        c->dy[i] = kgt_normal();
        c->tx[i] = kgt_normal();
    }
    for (int j = 0; j < dim; j++) {
        c->gamma[j] = 1 + 0.5 * kgt_normal();
        c->beta[j] = kgt_normal();
        c->tgamma[j] = kgt_normal();
        c->tbeta[j] = kgt_normal();
    }
    return c;
}

static void ln_free(ln_case *c)
{
    double *all[] = {c->x, c->gamma, c->beta, c->dy, c->tx, c->tgamma, c->tbeta, c->y, c->dx, c->dgamma, c->dbeta, c->ty};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(c);
}

/* The reference: two-pass statistics, closed-form VJP and JVP, in long double. */
static void ln_reference(const ln_case *c, double *y, double *dx, double *dgamma, double *dbeta, double *ty)
{
    if (c->dim <= 0 || c->dim > (1 << 20))
        return;
    int D = c->dim;
    for (int j = 0; j < D; j++)
        dgamma[j] = dbeta[j] = 0;
    long double *xhat = malloc((size_t)D * sizeof *xhat);
    long double *gdg = calloc((size_t)D, sizeof *gdg), *gdb = calloc((size_t)D, sizeof *gdb);
    for (int r = 0; r < c->rows; r++) {
        const double *x = c->x + (size_t)r * D, *dyr = c->dy + (size_t)r * D, *txr = c->tx + (size_t)r * D;
        long double mean = 0, var = 0;
        for (int j = 0; j < D; j++)
            mean += x[j];
        mean /= D;
        for (int j = 0; j < D; j++)
            var += (x[j] - mean) * (x[j] - mean);
        var /= D;
        long double rstd = 1.0L / sqrtl(var + c->eps);
        long double m_dxhat = 0, m_dxhat_xhat = 0, m_tx = 0, m_tx_xhat = 0;
        for (int j = 0; j < D; j++) {
            xhat[j] = (x[j] - mean) * rstd;
            y[(size_t)r * D + j] = (double)(xhat[j] * c->gamma[j] + c->beta[j]);
            long double dxhat = (long double)dyr[j] * c->gamma[j];
            m_dxhat += dxhat;
            m_dxhat_xhat += dxhat * xhat[j];
            m_tx += txr[j];
            m_tx_xhat += txr[j] * xhat[j];
            gdg[j] += dyr[j] * xhat[j];
            gdb[j] += dyr[j];
        }
        m_dxhat /= D;
        m_dxhat_xhat /= D;
        m_tx /= D;
        m_tx_xhat /= D;
        for (int j = 0; j < D; j++) {
            long double dxhat = (long double)dyr[j] * c->gamma[j];
            dx[(size_t)r * D + j] = (double)(rstd * (dxhat - m_dxhat - xhat[j] * m_dxhat_xhat));
            long double txhat = rstd * (txr[j] - m_tx - xhat[j] * m_tx_xhat);
            ty[(size_t)r * D + j] = (double)(c->gamma[j] * txhat + xhat[j] * c->tgamma[j] + c->tbeta[j]);
        }
    }
    for (int j = 0; j < D; j++) {
        dgamma[j] = (double)gdg[j];
        dbeta[j] = (double)gdb[j];
    }
    free(xhat);
    free(gdg);
    free(gdb);
}

/* Runs all three passes of the generated kernel (dtype "f32" or "f64"); the f32 kernel gets
   the data rounded to float. Results go to c->y, c->dx, ... Returns the OR of return codes. */
static int ln_run(ln_case *c, const char *dtype, const char *unroll)
{
    char rows[32], dim[32], eps[64];
    snprintf(rows, sizeof rows, "rows=%d", c->rows);
    snprintf(dim, sizeof dim, "dim=%d", c->dim);
    snprintf(eps, sizeof eps, "eps=%.17g", c->eps);
    const char *params[] = {rows, dim, eps, NULL};
    kg_request req = {0};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 3;
    req.dtype = dtype;
    req.unroll = unroll;
    kg_kernel *k = kgt_build_req(&req);
    assert_non_null(k);
    int f32 = strcmp(dtype, "f32") == 0;
    size_t n = (size_t)c->rows * c->dim, D = (size_t)c->dim;
    struct {
        kg_role role;
        const char *name;
        double *v;
        size_t n;
    } map[] = {
        {KG_ROLE_INPUT, "x", c->x, n},           {KG_ROLE_INPUT, "gamma", c->gamma, D},
        {KG_ROLE_INPUT, "beta", c->beta, D},     {KG_ROLE_COTANGENT, "y", c->dy, n},
        {KG_ROLE_TANGENT, "x", c->tx, n},        {KG_ROLE_TANGENT, "gamma", c->tgamma, D},
        {KG_ROLE_TANGENT, "beta", c->tbeta, D},  {KG_ROLE_OUTPUT, "y", c->y, n},
        {KG_ROLE_GRAD, "x", c->dx, n},           {KG_ROLE_GRAD, "gamma", c->dgamma, D},
        {KG_ROLE_GRAD, "beta", c->dbeta, D},     {KG_ROLE_OUTPUT_TANGENT, "y", c->ty, n},
    };
    enum { NMAP = sizeof map / sizeof map[0] };
    kgt_buf bufs[NMAP];
    for (int i = 0; i < NMAP; i++) {
        bufs[i].role = map[i].role;
        bufs[i].name = map[i].name;
        bufs[i].data = f32 ? (void *)calloc(map[i].n, sizeof(float)) : (void *)map[i].v;
        if (f32)
            for (size_t j = 0; j < map[i].n; j++)
                ((float *)bufs[i].data)[j] = (float)map[i].v[j];
    }
    int rc = 0;
    for (int p = 0; p < KGT_CORE_PASSES; p++)
        rc |= kgt_call(k, (kg_pass)p, bufs, NMAP);
    for (int i = 0; f32 && i < NMAP; i++) {
        if (kg_role_writes(map[i].role))
            for (size_t j = 0; j < map[i].n; j++)
                map[i].v[j] = ((float *)bufs[i].data)[j];
        free(bufs[i].data);
    }
    kg_free(k);
    return rc;
}

/* generated vs reference for one case and dtype; returns the worst error */
static double ln_compare(ln_case *c, const char *dtype)
{
    size_t n = (size_t)c->rows * c->dim, D = (size_t)c->dim;
    double *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx), *ty = malloc(n * sizeof *ty);
    double *dg = malloc(D * sizeof *dg), *db = malloc(D * sizeof *db);
    if (strcmp(dtype, "f32") == 0) { /* the reference sees what the f32 kernel sees */
        double *all[] = {c->x, c->dy, c->tx};
        for (int a = 0; a < 3; a++)
            for (size_t j = 0; j < n; j++)
                all[a][j] = (float)all[a][j];
        double *vec[] = {c->gamma, c->beta, c->tgamma, c->tbeta};
        for (int a = 0; a < 4; a++)
            for (size_t j = 0; j < D; j++)
                vec[a][j] = (float)vec[a][j];
    }
    ln_reference(c, y, dx, dg, db, ty);
    assert_int_equal(ln_run(c, dtype, NULL), 0);
    double e[5] = {kgt_rel(c->y, y, n, 1), kgt_rel(c->dx, dx, n, 1), kgt_rel(c->dgamma, dg, D, 1),
                   kgt_rel(c->dbeta, db, D, 1), kgt_rel(c->ty, ty, n, 1)};
    double worst = 0;
    for (int i = 0; i < 5; i++)
        worst = e[i] > worst ? e[i] : worst;
    free(y);
    free(dx);
    free(ty);
    free(dg);
    free(db);
    return worst;
}

static void shapes_match_reference(void **state)
{
    (void)state;
    static const int shapes[][2] = {{1, 1}, {1, 7}, {3, 5}, {4, 8}, {7, 13}, {2, 33}, {16, 512}, {64, 768}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int d = 0; d < 2; d++) {
            const char *dtype = d ? "f32" : "f64";
            ln_case *c = ln_new(shapes[s][0], shapes[s][1], 1e-5);
            double e = ln_compare(c, dtype);
            printf("  layernorm %dx%d %s: max error %.2e (tol %.0e)\n", c->rows, c->dim, dtype, e, d ? TOL_F32 : TOL_F64);
            assert_true(e <= (d ? TOL_F32 : TOL_F64));
            ln_free(c);
        }
}

/* dim = 1: y = beta exactly, x and gamma gradients exactly zero, in f32 and f64. */
static void dim1_gives_beta(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        ln_case *c = ln_new(4, 1, 1e-5);
        assert_int_equal(ln_run(c, d ? "f32" : "f64", NULL), 0);
        for (int r = 0; r < 4; r++) {
            assert_true(c->y[r] == (d ? (double)(float)c->beta[0] : c->beta[0]));
            assert_true(c->dx[r] == 0);
        }
        assert_true(c->dgamma[0] == 0);
        ln_free(c);
    }
}

/* Constant rows: y = beta exactly in those rows, even with eps = 1e-12; other rows unaffected. */
static void constant_rows_give_beta(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++)
        for (int e = 0; e < 2; e++) {
            ln_case *c = ln_new(3, 9, e ? 1e-12 : 1e-5);
            for (int j = 0; j < 9; j++)
                c->x[9 + j] = 0.75;
            assert_int_equal(ln_run(c, d ? "f32" : "f64", NULL), 0);
            for (int j = 0; j < 9; j++)
                assert_true(c->y[9 + j] == (d ? (double)(float)c->beta[j] : c->beta[j]));
            ln_free(c);
        }
}

/* Rows of mean 1e4 and unit variance: the f32 kernel stays within 1e-5 (absolute) of f64. */
static void mean_1e4_f32_accuracy(void **state)
{
    (void)state;
    ln_case *c64 = ln_new(8, 256, 1e-5), *c32 = ln_new(8, 256, 1e-5);
    size_t n = 8 * 256;
    for (size_t i = 0; i < n; i++)
        c64->x[i] = c32->x[i] = (float)(1e4 + kgt_normal());
    for (int j = 0; j < 256; j++) {
        c32->gamma[j] = c64->gamma[j] = (float)c64->gamma[j];
        c32->beta[j] = c64->beta[j] = (float)c64->beta[j];
    }
    for (size_t i = 0; i < n; i++)
        c32->dy[i] = c64->dy[i] = (float)c64->dy[i];
    assert_int_equal(ln_run(c64, "f64", NULL), 0);
    assert_int_equal(ln_run(c32, "f32", NULL), 0);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(c32->y[i] - c64->y[i]);
        worst = d > worst ? d : worst;
    }
    printf("  mean 1e4: f32 forward max abs error %.2e (tol %.0e)\n", worst, TOL_F32_MEAN1E4);
    assert_true(worst <= TOL_F32_MEAN1E4);
    ln_free(c64);
    ln_free(c32);
}

/* eps = 1e-12 on ordinary rows still matches the reference. */
static void tiny_eps(void **state)
{
    (void)state;
    ln_case *c = ln_new(5, 17, 1e-12);
    double e = ln_compare(c, "f64");
    assert_true(e <= TOL_F64);
    ln_free(c);
}

/* Domain failures are observable: eps = 0 with a constant row, and a NaN input. */
static void domain_failure_reported(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        ln_case *c = ln_new(2, 4, 0.0);
        for (int j = 0; j < 4; j++)
            c->x[4 + j] = 2.0;
        assert_int_equal(ln_run(c, d ? "f32" : "f64", NULL), 1);
        ln_free(c);
        c = ln_new(2, 4, 1e-5);
        c->x[1] = NAN;
        assert_int_equal(ln_run(c, d ? "f32" : "f64", NULL), 1);
        ln_free(c);
    }
}

/* Seed 004: LN(x) = sqrt(N) * c / sqrt(|c|^2 + N * eps), c = x - mean(x), at N = 512. */
static void seed004_identity(void **state)
{
    (void)state;
    const int N = 512;
    ln_case *c = ln_new(1, N, 1e-5);
    for (int j = 0; j < N; j++) {
        c->gamma[j] = 1;
        c->beta[j] = 0;
        c->x[j] = 3 * kgt_normal() + 0.5;
    }
    assert_int_equal(ln_run(c, "f64", NULL), 0);
    long double mean = 0, norm2 = 0;
    for (int j = 0; j < N; j++)
        mean += c->x[j];
    mean /= N;
    for (int j = 0; j < N; j++)
        norm2 += (c->x[j] - mean) * (c->x[j] - mean);
    double worst = 0;
    for (int j = 0; j < N; j++) {
        double rhs = (double)(sqrtl(N) * (c->x[j] - mean) / sqrtl(norm2 + N * 1e-5L));
        double d = fabs(c->y[j] - rhs);
        worst = d > worst ? d : worst;
    }
    printf("  seed 004 identity at N=512: max error %.2e (tol %.0e)\n", worst, TOL_SEED004);
    assert_true(worst <= TOL_SEED004);
    ln_free(c);
}

/* The unroll policies give the same numbers (the lane order does not depend on unrolling). */
static void unroll_policies_agree(void **state)
{
    (void)state;
    static const char *policies[] = {"auto", "full", "none"};
    ln_case *c[3];
    for (int p = 0; p < 3; p++) {
        kgt_uniform(); /* different streams are fine: copy the data below */
        c[p] = ln_new(3, 37, 1e-5);
    }
    for (int p = 1; p < 3; p++) {
        size_t n = 3 * 37;
        memcpy(c[p]->x, c[0]->x, n * sizeof(double));
        memcpy(c[p]->dy, c[0]->dy, n * sizeof(double));
        memcpy(c[p]->tx, c[0]->tx, n * sizeof(double));
        memcpy(c[p]->gamma, c[0]->gamma, 37 * sizeof(double));
        memcpy(c[p]->beta, c[0]->beta, 37 * sizeof(double));
        memcpy(c[p]->tgamma, c[0]->tgamma, 37 * sizeof(double));
        memcpy(c[p]->tbeta, c[0]->tbeta, 37 * sizeof(double));
    }
    for (int p = 0; p < 3; p++)
        assert_int_equal(ln_run(c[p], "f64", policies[p]), 0);
    for (int p = 1; p < 3; p++) {
        assert_memory_equal(c[p]->y, c[0]->y, 3 * 37 * sizeof(double));
        assert_memory_equal(c[p]->dx, c[0]->dx, 3 * 37 * sizeof(double));
        assert_memory_equal(c[p]->ty, c[0]->ty, 3 * 37 * sizeof(double));
    }
    for (int p = 0; p < 3; p++)
        ln_free(c[p]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shapes_match_reference),  cmocka_unit_test(dim1_gives_beta),
        cmocka_unit_test(constant_rows_give_beta), cmocka_unit_test(mean_1e4_f32_accuracy),
        cmocka_unit_test(tiny_eps),                cmocka_unit_test(domain_failure_reported),
        cmocka_unit_test(seed004_identity),        cmocka_unit_test(unroll_policies_agree),
    };
    return cmocka_run_group_tests_name("layernorm", tests, NULL, NULL);
}
