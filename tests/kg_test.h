/* kg_test.h: helpers shared by the test files: build a kernel from "NAME=VALUE" strings, call
 * a pass with buffers looked up by (role, tensor name), deterministic random data, rm -r. */
#ifndef KG_TEST_H
#define KG_TEST_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kerngen.h"

/* rm -r PATH (no symbolic link is followed: lstat). */
static inline void kgt_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *child = malloc(len);
        if (child) {
            snprintf(child, len, "%s/%s", path, e->d_name);
            kgt_remove_tree(child);
            free(child);
        }
    }
    if (d)
        closedir(d);
    rmdir(path);
}

/* The passes checked against references and goldens: forward, vjp, jvp. forward_train and
   vjp_saved are checked against those, bit for bit (test_aot.c: saved_passes_match). */
enum { KGT_CORE_PASSES = KG_JVP + 1 };

/* A kernel for graph at params (NULL-terminated list), dtype "f32"/"f64"; fails the test on error. */
static inline kg_kernel *kgt_build_req(kg_request *req)
{
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(req, &k, &err);
    if (st == KG_OK && (st = kg_compile(k, &err)) != KG_OK)
        kg_free(k);
    if (st != KG_OK) {
        fprintf(stderr, "kgt_build %s: %s\n", req->graph, err ? err : "?");
        free(err);
        return NULL;
    }
    return k;
}

static inline kg_kernel *kgt_build(const char *graph, const char *dtype, const char *const *params)
{
    kg_request req = {0};
    int n = 0;
    while (params && params[n])
        n++;
    req.graph = graph;
    req.params = params;
    req.nparams = n;
    req.dtype = dtype;
    return kgt_build_req(&req);
}

typedef struct {
    kg_role role;
    const char *name;
    void *data; /* float or double, as the kernel's dtype */
} kgt_buf;

/* Calls pass with the buffers matching each argument; returns the kernel's code, or -99 when
   an argument has no buffer. */
static inline int kgt_call(const kg_kernel *k, kg_pass pass, const kgt_buf *bufs, int nbufs)
{
    int n = kg_nargs(k, pass), rc;
    void **args = calloc((size_t)n + 1, sizeof *args);
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        for (int j = 0; j < nbufs; j++)
            if (bufs[j].role == a->role && strcmp(bufs[j].name, a->name) == 0)
                args[i] = bufs[j].data;
        if (!args[i]) {
            fprintf(stderr, "kgt_call: no buffer for %s\n", a->cname);
            free(args);
            return -99;
        }
    }
    size_t ws = kg_ws_size(k, pass);
    args[n] = ws ? calloc(ws, kg_elem_size(k)) : NULL;
    rc = kg_call(k, pass, args, n + 1);
    free(args[n]);
    free(args);
    return rc;
}

/* splitmix64 + Box-Muller; one deterministic stream per test binary */
static inline double kgt_uniform(void)
{
    static unsigned long long state = 42;
    unsigned long long z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static inline double kgt_normal(void)
{
    return sqrt(-2.0 * log(kgt_uniform())) * cos(6.283185307179586 * kgt_uniform());
}

/* max |a - b| / max(floor, max |b|); NaN anywhere gives +inf */
static inline double kgt_rel(const double *a, const double *b, size_t n, double floor)
{
    double num = 0, den = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d != d)
            return INFINITY;
        if (d > num)
            num = d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return num / den;
}

/* Runs fn once per *.lua file in dir (state = the path), plus the extra tests, as one
   cmocka group. Returns cmocka's result, or 1 when dir cannot be read. */
#include <dirent.h>
static inline int kgt_run_spec_dir(const char *group, const char *dir, void (*fn)(void **),
                                   const struct CMUnitTest *extra, size_t nextra)
{
    enum { MAX = 128, MAX_EXTRA = 16 };
    static char paths[MAX][256];
    struct CMUnitTest tests[MAX + MAX_EXTRA];
    size_t n = 0;
    if (nextra > MAX_EXTRA) { /* silently dropped tests once: say so */
        fprintf(stderr, "%s: %zu extra tests, at most %d\n", group, nextra, (int)MAX_EXTRA);
        return 1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open %s (run from the repository root)\n", group, dir);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0)
            continue;
        if (n == MAX) {
            fprintf(stderr, "%s: more than %d *.lua files in %s\n", group, (int)MAX, dir);
            closedir(d);
            return 1;
        }
        snprintf(paths[n], sizeof paths[n], "%s/%s", dir, e->d_name);
        struct CMUnitTest t = {paths[n], fn, NULL, NULL, paths[n]};
        tests[n++] = t;
    }
    closedir(d);
    if (n == 0) { /* an empty folder would make this test pass vacuously */
        fprintf(stderr, "%s: no *.lua files in %s\n", group, dir);
        return 1;
    }
    for (size_t i = 0; i < nextra; i++)
        tests[n++] = extra[i];
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#endif
