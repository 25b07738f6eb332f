/* test_alloc: an allocation failure anywhere in one generate/compile/call/free cycle (Lua, the
 * runtime, libtcc) gives a clean error return (KG_ENOMEM, or success when the failure was
 * absorbed, e.g. by Lua's emergency collection), never an abort, an exit or a crash, and the
 * process stays usable.
 *
 * This binary replaces malloc, calloc, realloc and posix_memalign (glibc lets a program
 * interpose them; the originals are __libc_malloc & co.), so it sees every allocation, libtcc's
 * included. It counts the allocations of one cycle, then runs the cycle again failing the Nth
 * allocation for a dense sample of N (every N with KERNGEN_ALLOC_ALL=1). Lua's blocks come from
 * its state's 2 MB chunks (kg_lua.c), so the generator fails where it needs a new chunk: the
 * cycle runs for a built-in graph (a pooled state) and for the same spec by path (a new state
 * each time). Under AddressSanitizer, which owns malloc itself, the test is skipped.
 *
 * cc_tier: the cc tier's paths (kg_tier.c, kg_cc.c: the environment, the compiler's identity,
 * the cache directory, the entry check, dlopen) on a cache hit. The kernel is generated without
 * failures; each allocation of kg_compile, the call and kg_free fails in turn, once and from
 * then on: KG_OK (absorbed, or tcc ran instead) or KG_ENOMEM, and the entry is never removed. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "kg_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifndef UNDER_ASAN
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t alignment, size_t n);

static long counted;     /* allocations since counting began */
static long fail_at = 0; /* 1-based index of the allocation to fail; 0: none */
static int persistent;   /* fail every allocation from fail_at on (memory stays exhausted) */
static int failed;       /* a failure happened */

static int fail_now(void)
{
    ++counted;
    if (fail_at && (counted == fail_at || (persistent && counted > fail_at))) {
        failed = 1;
        return 1;
    }
    return 0;
}

void *malloc(size_t n) { return fail_now() ? NULL : __libc_malloc(n); }
void *calloc(size_t n, size_t size) { return fail_now() ? NULL : __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { return n && fail_now() ? NULL : __libc_realloc(p, n); }
int posix_memalign(void **p, size_t alignment, size_t n)
{
    void *q = fail_now() ? NULL : __libc_memalign(alignment, n);
    if (q)
        *p = q;
    return q ? 0 : ENOMEM;
}

/* The graph of a cycle: built in (its Lua state goes back to the pool, so the cycles after the
   first allocate little for Lua), or the same spec by path (a new state each time: the
   generator's 2 MB chunks and every block over 128 KB) */
static const char *graph = "layernorm";
static unsigned passes = 1u << KG_FORWARD;

/* One cycle: layernorm 2x3 f32 (graph; the passes `passes`), compiled, its forward called;
   returns its status. */
static kg_status cycle(void)
{
    static float x[6] = {1, 2, 4, -1, 0, 3}, g[3] = {1, 1, 1}, b[3] = {0, 0, 0}, y[6];
    const char *params[] = {"rows=2", "dim=3"};
    kg_request req = {0};
    req.graph = graph;
    req.params = params;
    req.nparams = 2;
    req.passes = passes;
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(&req, &k, &err);
    if (st == KG_OK && (st = kg_compile(k, &err)) == KG_OK) {
        static float ws[64];
        assert_true(kg_ws_size(k, KG_FORWARD) <= 64);
        void *args[] = {x, g, b, y, ws};
        if (kg_call(k, KG_FORWARD, args, 5) != 0)
            st = KG_EINTERNAL;
    }
    if (st != KG_OK && st != KG_ENOMEM)
        fprintf(stderr, "status %d: %s\n", (int)st, err ? err : "(no message)");
    free(err);
    kg_free(k);
    return st;
}

/* Fails the Nth allocation of a cycle (once, or from then on) for the sampled N. */
static void fail_each(int stay_exhausted)
{
    persistent = stay_exhausted;
    counted = 0;
    fail_at = 0;
    assert_int_equal(cycle(), KG_OK); /* warm: one-time initializations are not counted */
    counted = 0;
    assert_int_equal(cycle(), KG_OK);
    long total = counted;
    const char *all = getenv("KERNGEN_ALLOC_ALL");
    long stride = all && *all == '1' ? 1 : 29, tried = 0, nomem = 0;
    for (long n = 1; n <= total; n += (n < 300 ? 1 : stride)) {
        counted = 0;
        failed = 0;
        fail_at = n;
        kg_status st = cycle();
        fail_at = 0;
        if (!(st == KG_OK || st == KG_ENOMEM) || (st == KG_ENOMEM && !failed))
            fail_msg("failing allocation %ld of %ld gave status %d", n, total, (int)st);
        nomem += st == KG_ENOMEM;
        tried++;
    }
    persistent = 0;
    assert_int_equal(cycle(), KG_OK); /* still usable */
    printf("  %ld allocations per cycle; failed %s %ld of them: %ld KG_ENOMEM, %ld absorbed\n", total,
           stay_exhausted ? "all from each of" : "each of", tried, nomem, tried - nomem);
}

/* ---- the cc tier on a cache hit ---- */

static char cache_dir[] = "/tmp/kg-alloc-XXXXXX";

/* Generates layernorm 2x3 in tier cc (no failures), then compiles, calls and frees it failing
   allocation fail (0: none) of that part; returns its status, *cc whether the cc tier ran. */
static kg_status cc_cycle(long fail, int *cc)
{
    static float x[6] = {1, 2, 4, -1, 0, 3}, g[3] = {1, 1, 1}, b[3] = {0, 0, 0}, y[6];
    const char *params[] = {"rows=2", "dim=3"};
    kg_request req = {0};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 2;
    req.passes = 1u << KG_FORWARD;
    req.jit = "cc";
    kg_kernel *k = NULL;
    char *err = NULL;
    fail_at = 0;
    kg_status st = kg_generate(&req, &k, &err);
    assert_int_equal(st, KG_OK);
    counted = 0;
    failed = 0;
    fail_at = fail;
    *cc = 0;
    if ((st = kg_compile(k, &err)) == KG_OK) {
        static float ws[64];
        void *args[] = {x, g, b, y, ws};
        *cc = strcmp(kg_tier(k), "cc") == 0;
        if (kg_call(k, KG_FORWARD, args, 5) != 0 || fabsf(y[0] + 1.069f) > 1e-3f) /* y[0] = -1.069 */
            st = KG_EINTERNAL;
    }
    free(err);
    kg_free(k);
    fail_at = 0;
    return st;
}

/* The inode of the one entry in cache_dir. */
static ino_t entry_inode(void)
{
    DIR *d = opendir(cache_dir);
    assert_non_null(d);
    struct dirent *e;
    ino_t ino = 0;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            struct stat sb;
            assert_int_equal(fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW), 0);
            ino = sb.st_ino;
            n++;
        }
    closedir(d);
    assert_int_equal(n, 1);
    return ino;
}

static void cc_tier(void **state)
{
    (void)state;
    int cc;
    assert_non_null(mkdtemp(cache_dir));
    setenv("KERNGEN_CACHE_DIR", cache_dir, 1);
    assert_int_equal(cc_cycle(0, &cc), KG_OK); /* fills the cache (or says why not) */
    if (!cc) {
        print_message("no cc tier here (no C compiler?): skipped\n");
        return;
    }
    assert_int_equal(cc_cycle(0, &cc), KG_OK);
    assert_int_equal(cc, 1);
    long total = counted;
    ino_t entry = entry_inode();
    long tried = 0, nomem = 0, fallback = 0;
    for (int stay = 0; stay < 2; stay++)
        for (long n = 1; n <= total; n++) {
            persistent = stay;
            kg_status st = cc_cycle(n, &cc);
            persistent = 0;
            if (!(st == KG_OK || st == KG_ENOMEM) || (st == KG_ENOMEM && !failed))
                fail_msg("failing allocation %ld of %ld (%s) gave status %d", n, total, stay ? "from then on" : "once",
                         (int)st);
            nomem += st == KG_ENOMEM;
            fallback += st == KG_OK && !cc;
            tried++;
        }
    assert_int_equal(cc_cycle(0, &cc), KG_OK); /* still usable */
    assert_int_equal(cc, 1);
    assert_true(entry_inode() == entry); /* the same file: never removed or compiled again */
    printf("  %ld allocations in compile/call/free of a cache hit; %ld failures: %ld KG_ENOMEM, %ld ran tcc, "
           "%ld absorbed\n", total, tried, nomem, fallback, tried - nomem - fallback);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache_dir);
    assert_int_equal(system(cmd), 0);
}

static void fail_once(void **state)
{
    (void)state;
    fail_each(0);
}

static void fail_from_then_on(void **state)
{
    (void)state;
    fail_each(1);
}

static void fail_in_a_new_state(void **state)
{
    (void)state;
    graph = "graphs/layernorm.lua";
    passes = 0; /* all: the generator needs more than one chunk */
    fail_each(0);
    fail_each(1);
    graph = "layernorm";
    passes = 1u << KG_FORWARD;
}
#endif

int main(void)
{
#ifdef UNDER_ASAN
    puts("test_alloc: skipped under AddressSanitizer (it owns malloc)");
    return 0;
#else
    const struct CMUnitTest tests[] = {cmocka_unit_test(fail_once), cmocka_unit_test(fail_from_then_on),
                                       cmocka_unit_test(fail_in_a_new_state), cmocka_unit_test(cc_tier)};
    return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
