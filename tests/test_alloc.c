/* test_alloc: an allocation failure anywhere in one generate/compile/call/free cycle (Lua, the
 * runtime, libtcc) gives a clean error return (KG_ENOMEM, or success when the failure was
 * absorbed, e.g. by Lua's emergency collection), never an abort, an exit or a crash, and the
 * process stays usable.
 *
 * This binary replaces malloc, calloc and realloc (glibc lets a program interpose them; the
 * originals are __libc_malloc & co.), so it sees every allocation, libtcc's included. It counts
 * the allocations of one cycle, then runs the cycle again failing the Nth allocation for a dense
 * sample of N (every N with KERNGEN_ALLOC_ALL=1: about 5 minutes). Under AddressSanitizer, which
 * owns malloc itself, the test is skipped. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

/* One cycle: layernorm 2x3 f32, every pass, compiled and called; returns its status. */
static kg_status cycle(void)
{
    static float x[6] = {1, 2, 4, -1, 0, 3}, g[3] = {1, 1, 1}, b[3] = {0, 0, 0}, y[6];
    const char *params[] = {"rows=2", "dim=3"};
    kg_request req = {0};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 2;
    req.passes = 1u << KG_FORWARD;
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
#endif

int main(void)
{
#ifdef UNDER_ASAN
    puts("test_alloc: skipped under AddressSanitizer (it owns malloc)");
    return 0;
#else
    const struct CMUnitTest tests[] = {cmocka_unit_test(fail_once), cmocka_unit_test(fail_from_then_on)};
    return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
