/* test_golden: every case in tests/golden/ (PyTorch float64 results made by
 * tests/golden/make_goldens.py) through the JIT kernels, all three passes, both through the
 * library and through `kerngen run` on the committed .npy files (the CLI contract, for every
 * operator).
 *   f64: every result within GOLDEN_TOL_F64 (norm-wise relative) of PyTorch; results that are
 *        exactly zero in PyTorch (dim=1 gradients, constant slices) must be exactly zero.
 *   f32: on the same inputs rounded to float, within GOLDEN_TOL_F32 of the f64 kernel
 *        (max|d| / max(1, max|f64|)); rounding the inputs themselves is not the kernel's error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kg_npy.h"
#include "kg_test.h"

/* About ten times the worst errors measured over all cases (relative, max-norm): f64 vs torch
 * 1.1e-12 (layernorm_mean1e4, whose rows have condition ~1e4; every other case is below 1e-13),
 * f32 vs f64 2.3e-6 (normalize_axis_0). */
#define GOLDEN_TOL_F64 1e-11
#define GOLDEN_TOL_F32 2e-5
#define GOLDEN_DIR "tests/golden"

typedef struct {
    char graph[64];
    char *params[16];
    int nparams;
} golden_case;

static int read_case(const char *dir, golden_case *c)
{
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/%s/case.txt", GOLDEN_DIR, dir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    memset(c, 0, sizeof *c);
    char *tok = strtok(line, " \n");
    snprintf(c->graph, sizeof c->graph, "%s", tok ? tok : "");
    while ((tok = strtok(NULL, " \n")) && c->nparams < 16)
        c->params[c->nparams++] = strdup(tok);
    return 0;
}

static void free_case(golden_case *c)
{
    for (int i = 0; i < c->nparams; i++)
        free(c->params[i]);
}

/* loads dir/<arg file>.npy as doubles; NULL when absent */
static double *load(const char *dir, const char *file, size_t count)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s/%s.npy", GOLDEN_DIR, dir, file);
    kg_npy t;
    if (kg_npy_read(path, &t, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    double *d = NULL;
    if (t.dtype == KG_NPY_F64 && t.count == count) {
        d = malloc(count * sizeof *d);
        memcpy(d, t.data, count * sizeof *d);
    } else {
        fprintf(stderr, "%s: unexpected dtype or size\n", path);
    }
    kg_npy_free(&t);
    return d;
}

static const kg_role RESULT[KGT_CORE_PASSES] = {KG_ROLE_OUTPUT, KG_ROLE_GRAD, KG_ROLE_OUTPUT_TANGENT};
static const char *const PASS_NAME[KGT_CORE_PASSES] = {"forward", "vjp", "jvp"};

/* Runs every pass of k on the case's inputs (as doubles, converted for f32 kernels; rounded
   to float first when round_inputs). Results land in out[pass][arg]. */
static void run_case(const char *dir, kg_kernel *k, int round_inputs, double *out[KGT_CORE_PASSES][16])
{
    int f32 = kg_elem_size(k) == 4;
    for (int p = 0; p < KGT_CORE_PASSES; p++) {
        int n = kg_nargs(k, (kg_pass)p);
        assert_true(n <= 16);
        kgt_buf bufs[16];
        for (int i = 0; i < n; i++) {
            const kg_arg *a = kg_arg_at(k, (kg_pass)p, i);
            bufs[i].role = a->role;
            bufs[i].name = a->name;
            bufs[i].data = calloc(a->count ? a->count : 1, kg_elem_size(k));
            if (kg_role_reads(a->role)) {
                double *v = load(dir, a->file, a->count);
                assert_non_null(v);
                for (size_t j = 0; j < a->count; j++) {
                    double x = round_inputs ? (double)(float)v[j] : v[j];
                    if (f32)
                        ((float *)bufs[i].data)[j] = (float)x;
                    else
                        ((double *)bufs[i].data)[j] = x;
                }
                free(v);
            }
        }
        assert_int_equal(kgt_call(k, (kg_pass)p, bufs, n), 0);
        for (int i = 0; i < n; i++) {
            const kg_arg *a = kg_arg_at(k, (kg_pass)p, i);
            out[p][i] = NULL;
            if (a->role == RESULT[p]) {
                out[p][i] = malloc((a->count ? a->count : 1) * sizeof(double));
                for (size_t j = 0; j < a->count; j++)
                    out[p][i][j] = f32 ? ((float *)bufs[i].data)[j] : ((double *)bufs[i].data)[j];
            }
            free(bufs[i].data);
        }
    }
}

static void free_results(kg_kernel *k, double *out[KGT_CORE_PASSES][16])
{
    for (int p = 0; p < KGT_CORE_PASSES; p++)
        for (int i = 0; i < kg_nargs(k, (kg_pass)p); i++)
            free(out[p][i]);
}

/* `kerngen run` for every pass in f64 on the case's files; each result file must match its
   golden within GOLDEN_TOL_F64. Uses the kernel k64 only to know the argument names. */
static void check_case_cli(const char *dir, const golden_case *c, const kg_kernel *k64)
{
    const char *bin = getenv("KERNGEN_BIN") ? getenv("KERNGEN_BIN") : "build/kerngen";
    char out[] = "/tmp/kg_golden_cli_XXXXXX";
    assert_non_null(mkdtemp(out));
    for (int p = 0; p < KGT_CORE_PASSES; p++) {
        char *argv[64], *owned[64];
        int argc = 0, nowned = 0;
        argv[argc++] = (char *)bin;
        argv[argc++] = "run";
        argv[argc++] = (char *)c->graph;
        for (int i = 0; i < c->nparams; i++)
            argv[argc++] = c->params[i];
        argv[argc++] = "--dtype";
        argv[argc++] = "f64";
        argv[argc++] = "--pass";
        argv[argc++] = (char *)PASS_NAME[p];
        for (int i = 0; i < kg_nargs(k64, (kg_pass)p) && argc < 56; i++) {
            const kg_arg *a = kg_arg_at(k64, (kg_pass)p, i);
            if (!kg_role_reads(a->role))
                continue;
            size_t len = strlen(a->file) * 2 + strlen(dir) + 64;
            char *in = owned[nowned++] = malloc(len);
            snprintf(in, len, "%s=%s/%s/%s.npy", a->file, GOLDEN_DIR, dir, a->file);
            argv[argc++] = "--in";
            argv[argc++] = in;
        }
        argv[argc++] = "--out";
        argv[argc++] = out;
        argv[argc] = NULL;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execv(bin, argv);
            _exit(127);
        }
        int status;
        assert_true(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "%s: kerngen run --pass %s failed (status %d)\n", dir, PASS_NAME[p], status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        for (int i = 0; i < nowned; i++)
            free(owned[i]);
        for (int i = 0; i < kg_nargs(k64, (kg_pass)p); i++) {
            const kg_arg *a = kg_arg_at(k64, (kg_pass)p, i);
            if (a->role != RESULT[p])
                continue;
            char path[512], err[512];
            snprintf(path, sizeof path, "%s/%s.npy", out, a->file);
            kg_npy t;
            assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
            double *want = load(dir, a->file, a->count);
            assert_non_null(want);
            assert_true(t.count == a->count && t.dtype == KG_NPY_F64);
            double e = kgt_rel(t.data, want, a->count, 1e-300);
            if (e > GOLDEN_TOL_F64)
                fprintf(stderr, "%s: kerngen run --pass %s: %s differs by %.3g\n", dir, PASS_NAME[p], a->file, e);
            assert_true(e <= GOLDEN_TOL_F64);
            free(want);
            kg_npy_free(&t);
            remove(path);
        }
    }
    assert_int_equal(rmdir(out), 0); /* nothing but the expected files was written */
}

static void check_case(const char *dir)
{
    golden_case c;
    assert_int_equal(read_case(dir, &c), 0);
    const char *params[17] = {0};
    for (int i = 0; i < c.nparams; i++)
        params[i] = c.params[i];
    kg_kernel *k64 = kgt_build(c.graph, "f64", params);
    kg_kernel *k32 = kgt_build(c.graph, "f32", params);
    assert_non_null(k64);
    assert_non_null(k32);

    double *r64[KGT_CORE_PASSES][16], *q64[KGT_CORE_PASSES][16], *q32[KGT_CORE_PASSES][16];
    run_case(dir, k64, 0, r64);
    run_case(dir, k64, 1, q64);
    run_case(dir, k32, 1, q32);
    double worst64 = 0, worst32 = 0;
    for (int p = 0; p < KGT_CORE_PASSES; p++)
        for (int i = 0; i < kg_nargs(k64, (kg_pass)p); i++) {
            const kg_arg *a = kg_arg_at(k64, (kg_pass)p, i);
            if (a->role != RESULT[p])
                continue;
            double *want = load(dir, a->file, a->count);
            assert_non_null(want);
            double e64 = kgt_rel(r64[p][i], want, a->count, 1e-300);
            double e32 = kgt_rel(q32[p][i], q64[p][i], a->count, 1.0);
            if (e64 > GOLDEN_TOL_F64 || e32 > GOLDEN_TOL_F32)
                fprintf(stderr, "%s %s %s: f64 vs torch %.3g (tol %g), f32 vs f64 %.3g (tol %g)\n", dir,
                        PASS_NAME[p], a->file, e64, GOLDEN_TOL_F64, e32, GOLDEN_TOL_F32);
            worst64 = e64 > worst64 ? e64 : worst64;
            worst32 = e32 > worst32 ? e32 : worst32;
            free(want);
        }
    printf("  %-28s f64 vs torch %.2e   f32 vs f64 %.2e\n", dir, worst64, worst32);
    assert_true(worst64 <= GOLDEN_TOL_F64);
    assert_true(worst32 <= GOLDEN_TOL_F32);
    check_case_cli(dir, &c, k64);
    free_results(k64, r64);
    free_results(k64, q64);
    free_results(k32, q32);
    kg_free(k64);
    kg_free(k32);
    free_case(&c);
}

/* One cmocka test per case directory listed in tests/golden/index.txt. */
static void golden_test(void **state) { check_case((const char *)*state); }

int main(void)
{
    FILE *f = fopen(GOLDEN_DIR "/index.txt", "r");
    if (!f) {
        fprintf(stderr, "test_golden: cannot open " GOLDEN_DIR "/index.txt (run from the repository root)\n");
        return 1;
    }
    struct CMUnitTest tests[128];
    char names[128][64];
    int n = 0;
    while (n < 128 && fgets(names[n], sizeof names[n], f)) {
        names[n][strcspn(names[n], "\n")] = 0;
        if (!names[n][0])
            continue;
        struct CMUnitTest t = {names[n], golden_test, NULL, NULL, names[n]};
        tests[n] = t;
        n++;
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "test_golden: no cases in " GOLDEN_DIR "/index.txt\n");
        return 1;
    }
    return _cmocka_run_group_tests("golden", tests, (size_t)n, NULL, NULL);
}
