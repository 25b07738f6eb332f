/* kg_heap: size classes in 2 MB chunks, for the generator's Lua states (kg_lua.c). One thread
 * uses a heap at a time, and the caller gives a block's size when it frees it: blocks carry no
 * header. Sizes up to SMALL_MAX go in 16-byte steps, larger ones in four classes per doubling
 * (at most 20% unused); a freed block waits on its class's list for the next block of that
 * class, and chunks go back only when the heap is released.
 *
 * Why chunks: a new process's first request touched 300-400 fresh 4 KB pages of Lua's heap,
 * and on a paravirtualized VM a page fault costs 10 us: they were half of its time. A chunk is
 * aligned to 2 MB and marked for transparent huge pages (Linux, madvise mode), so the kernel
 * maps it in one fault. Where there are no huge pages, 4 KB pages fault as they would under
 * malloc. Chunks come from posix_memalign (glibc maps 4 MB of address space for each; tests/
 * test_alloc.c fails it like malloc). */
#define _GNU_SOURCE /* MADV_HUGEPAGE */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kg_internal.h"

enum { SMALL_STEP = 16, SMALL_MAX = 256, HEADER = 16 }; /* blocks start HEADER bytes in: 16-aligned */

typedef struct kg_chunk {
    struct kg_chunk *next;
} kg_chunk;

/* n: 1 to KG_HEAP_BLOCK_MAX */
static int block_class(size_t n)
{
    if (n <= SMALL_MAX)
        return (int)((n + SMALL_STEP - 1) / SMALL_STEP) - 1;
    size_t m = n - 1; /* 2^e <= m < 2^(e+1), e >= 8: the quarter of that doubling */
    int e = 8;
    while (m >> (e + 1))
        e++;
    return SMALL_MAX / SMALL_STEP + (e - 8) * 4 + (int)((m >> (e - 2)) & 3);
}

static size_t class_bytes(int c)
{
    if (c < SMALL_MAX / SMALL_STEP)
        return (size_t)(c + 1) * SMALL_STEP;
    c -= SMALL_MAX / SMALL_STEP;
    return (size_t)(5 + c % 4) << (8 + c / 4 - 2);
}

int kg_heap_same_block(size_t a, size_t b) { return block_class(a) == block_class(b); }

void *kg_heap_alloc(kg_heap *h, size_t n)
{
    int c = block_class(n);
    void *p = h->free[c];
    if (p) {
        memcpy(&h->free[c], p, sizeof p);
        return p;
    }
    size_t size = class_bytes(c);
    if ((size_t)(h->end - h->bump) < size) { /* the rest of the chunk stays unused */
        void *mem;
        if (h->bytes + KG_HEAP_CHUNK > h->cap) {
            h->capped = 1;
            return NULL;
        }
        if (posix_memalign(&mem, KG_HEAP_CHUNK, KG_HEAP_CHUNK) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(mem, KG_HEAP_CHUNK, MADV_HUGEPAGE);
#endif
        kg_chunk *k = mem;
        k->next = h->chunks;
        h->chunks = k;
        h->bytes += KG_HEAP_CHUNK;
        h->bump = (char *)k + HEADER;
        h->end = (char *)k + KG_HEAP_CHUNK;
    }
    p = h->bump;
    h->bump += size;
    return p;
}

void kg_heap_free(kg_heap *h, void *p, size_t n)
{
    int c = block_class(n);
    memcpy(p, &h->free[c], sizeof p);
    h->free[c] = p;
}

void kg_heap_release(kg_heap *h)
{
    for (kg_chunk *k = h->chunks, *next; k; k = next) {
        next = k->next;
        free(k);
    }
    memset(h, 0, sizeof *h);
}
