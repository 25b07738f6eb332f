/* test_heap: runtime/kg_heap.c, where the generator's Lua states get their blocks. Every size
 * gets a 16-aligned block of its own that holds it, freed blocks serve the next ones of their
 * class without new chunks, and no chunk is taken beyond the cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kg_internal.h"
#include "kg_test.h"

/* 1 to 1024, then steps of about 6%, each class's last size and the next's first among them */
static size_t sizes[4096];
static int nsizes;

static void make_sizes(void)
{
    nsizes = 0;
    for (size_t n = 1; n <= KG_HEAP_BLOCK_MAX; n = n < 1024 ? n + 1 : n + n / 16) {
        sizes[nsizes++] = n;
        if (n > 1024 && !kg_heap_same_block(n, n + 1)) /* a class boundary: its neighbour too */
            sizes[nsizes++] = n + 1;
    }
    sizes[nsizes++] = KG_HEAP_BLOCK_MAX;
}

static void blocks_hold_their_sizes(void **state)
{
    (void)state;
    make_sizes();
    kg_heap h = {0};
    h.cap = SIZE_MAX;
    static unsigned char *p[4096];
    for (int i = 0; i < nsizes; i++) {
        p[i] = kg_heap_alloc(&h, sizes[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], i & 0xff, sizes[i]);
    }
    for (int i = 0; i < nsizes; i++) /* nothing overlapped */
        for (size_t k = 0; k < sizes[i]; k += 1 + sizes[i] / 64)
            assert_int_equal(p[i][k], i & 0xff);
    size_t bytes = h.bytes;
    for (int i = 0; i < nsizes; i++)
        kg_heap_free(&h, p[i], sizes[i]);
    for (int i = nsizes - 1; i >= 0; i--) /* the same sizes again: from the free lists */
        assert_non_null(kg_heap_alloc(&h, sizes[i]));
    assert_int_equal(h.bytes, bytes);
    kg_heap_release(&h);
    assert_int_equal(h.bytes, 0);
}

static void classes_are_tight(void **state)
{
    (void)state;
    assert_true(kg_heap_same_block(1, 16));
    assert_false(kg_heap_same_block(16, 17));
    assert_true(kg_heap_same_block(241, 256));
    assert_false(kg_heap_same_block(256, 257));
    assert_true(kg_heap_same_block(257, 320)); /* four classes per doubling above 256 */
    assert_false(kg_heap_same_block(320, 321));
    assert_true(kg_heap_same_block(114689, KG_HEAP_BLOCK_MAX));
}

static void cap_bounds_chunks(void **state)
{
    (void)state;
    kg_heap h = {0};
    h.cap = KG_HEAP_CHUNK; /* one chunk */
    int n = 0;
    while (kg_heap_alloc(&h, 4096))
        n++;
    assert_true(h.capped);
    assert_int_equal(h.bytes, KG_HEAP_CHUNK);
    assert_true(n >= KG_HEAP_CHUNK / 4096 - 1); /* the chunk's header takes part of one block */
    kg_heap_release(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(blocks_hold_their_sizes), cmocka_unit_test(classes_are_tight),
                                       cmocka_unit_test(cap_bounds_chunks)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
