/* test_files: kg_write_files publishes a .h/.c pair safely (runtime/kg_files.c).
 *   no_link_followed     links planted at the temporary names once used (.NAME.tmp<pid>) are
 *                        not written through (regression: fopen "wb" followed them)
 *   concurrent_same      two threads writing the same kernel into one directory 1000 times
 *                        each never fail (regression: fixed temporary names collided)
 *   concurrent_sets      two threads writing different kernels under the same names leave one
 *                        writer's pair every round, never a mix of the two */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kg_test.h"

static char dir[] = "/tmp/kg_files_test_XXXXXX";

static kg_kernel *generate(const char *graph, const char *name)
{
    const char *params[] = {"rows=2", "dim=3"};
    kg_request req = {0};
    req.graph = graph;
    req.params = params;
    req.nparams = 2;
    req.name = name;
    kg_kernel *k = NULL;
    char *err = NULL;
    if (kg_generate(&req, &k, &err) != KG_OK) {
        fprintf(stderr, "%s\n", err);
        free(err);
    }
    return k;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

static void no_link_followed(void **state)
{
    (void)state;
    kg_kernel *k = generate("layernorm", "pair");
    assert_non_null(k);
    char victim[256], link[256];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("keep", f);
    fclose(f);
    static const char *const names[] = {"pair.h", "pair.c"};
    for (int i = 0; i < 2; i++) {
        snprintf(link, sizeof link, "%s/.%s.tmp%ld", dir, names[i], (long)getpid());
        assert_int_equal(symlink(victim, link), 0);
    }
    char *err = NULL;
    assert_int_equal(kg_write_files(k, dir, &err), KG_OK);
    char *text = slurp(victim);
    assert_string_equal(text, "keep");
    free(text);
    for (int i = 0; i < 2; i++) {
        snprintf(link, sizeof link, "%s/.%s.tmp%ld", dir, names[i], (long)getpid());
        unlink(link);
    }
    unlink(victim);
    kg_free(k);
}

typedef struct {
    kg_kernel *k;
    int rounds, failures;
    pthread_barrier_t *barrier;
} writer;

static void *write_loop(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < w->rounds; i++) {
        if (w->barrier)
            pthread_barrier_wait(w->barrier);
        char *err = NULL;
        if (kg_write_files(w->k, dir, &err) != KG_OK) {
            fprintf(stderr, "kg_write_files: %s\n", err ? err : "?");
            w->failures++;
        }
        free(err);
        if (w->barrier)
            pthread_barrier_wait(w->barrier);
    }
    return NULL;
}

static void concurrent_same(void **state)
{
    (void)state;
    kg_kernel *k = generate("layernorm", "same");
    assert_non_null(k);
    writer w[2] = {{k, 1000, 0, NULL}, {k, 1000, 0, NULL}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(w[0].failures + w[1].failures, 0);
    kg_free(k);
}

/* The graph a generated file names in its banner (" * graph:   NAME -- ..."). */
static void banner_graph(const char *text, char *out, size_t n)
{
    const char *g = text ? strstr(text, " * graph:   ") : NULL;
    out[0] = 0;
    if (g)
        snprintf(out, n, "%.*s", (int)strcspn(g + 12, " "), g + 12);
}

static void concurrent_sets(void **state)
{
    (void)state;
    enum { ROUNDS = 300 };
    kg_kernel *a = generate("layernorm", "mixed"), *b = generate("rmsnorm", "mixed");
    assert_non_null(a);
    assert_non_null(b);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 3);
    writer w[2] = {{a, ROUNDS, 0, &barrier}, {b, ROUNDS, 0, &barrier}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
    int mixed = 0;
    char h[64], c[64], path[256];
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(&barrier); /* both write */
        pthread_barrier_wait(&barrier); /* both done */
        snprintf(path, sizeof path, "%s/mixed.h", dir);
        char *ht = slurp(path);
        snprintf(path, sizeof path, "%s/mixed.c", dir);
        char *ct = slurp(path);
        banner_graph(ht, h, sizeof h);
        banner_graph(ct, c, sizeof c);
        mixed += strcmp(h, c) != 0 || !h[0];
        free(ht);
        free(ct);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(w[0].failures + w[1].failures, 0);
    assert_int_equal(mixed, 0);
    kg_free(a);
    kg_free(b);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes the files written and the directory; a leftover temporary fails the group. */
static int teardown(void **state)
{
    (void)state;
    static const char *const names[] = {"pair.h", "pair.c", "same.h", "same.c", "mixed.h", "mixed.c"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (rmdir(dir) != 0) {
        fprintf(stderr, "test_files: %s is not empty: a temporary file was left behind\n", dir);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_link_followed),
        cmocka_unit_test(concurrent_same),
        cmocka_unit_test(concurrent_sets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
