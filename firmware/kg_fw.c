/* kg_fw.c: the driver of kg_fw.h: runs a table of kernel calls, records return codes, SysTick
 * ticks and outputs in a file on the host (semihosting file I/O through newlib's librdimon). */
#include <stdio.h>
#include <string.h>

#include "kg_fw.h"

static uint64_t arena[KG_FW_ARENA_BYTES / sizeof(uint64_t)]; /* 8-byte aligned buffers */

static int put(FILE *f, const void *data, size_t bytes)
{
    return fwrite(data, 1, bytes, f) == bytes;
}

static int put_le(FILE *f, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return put(f, b, (size_t)bytes);
}

int kg_fw_run(const kg_fw_call *calls, int ncalls, const char *results_path)
{
    enum { MAX_ARGS = 64 };
    void *ptr[MAX_ARGS];
    uint64_t total = 0;
    FILE *f = fopen(results_path, "wb");
    if (!f) {
        printf("kg_fw: cannot open %s on the host\n", results_path);
        return KG_FW_EXIT_IO;
    }
    for (int c = 0; c < ncalls; c++) {
        const kg_fw_call *call = &calls[c];
        size_t used = 0;
        if (call->nargs > MAX_ARGS) {
            printf("kg_fw: %s: %d arguments, at most %d\n", call->name, call->nargs, MAX_ARGS);
            fclose(f);
            return KG_FW_EXIT_ARENA;
        }
        for (int i = 0; i < call->nargs; i++) {
            const kg_fw_arg *a = &call->args[i];
            size_t words = (a->bytes + 7u) / 8u;
            if (words > sizeof arena / 8u - used) {
                printf("kg_fw: %s: arguments exceed the %u-byte arena\n", call->name,
                       (unsigned)sizeof arena);
                fclose(f);
                return KG_FW_EXIT_ARENA;
            }
            ptr[i] = &arena[used];
            used += words;
            if (a->init)
                memcpy(ptr[i], a->init, a->bytes);
            else
                memset(ptr[i], 0xA5, a->bytes);
        }
        uint64_t t0 = kg_fw_ticks();
        int rc = call->thunk(ptr);
        uint64_t ticks = kg_fw_ticks() - t0;
        total += ticks;
        int ok = put_le(f, (uint32_t)rc, 4) && put_le(f, ticks, 8);
        for (int i = 0; ok && i < call->nargs; i++)
            if (call->args[i].result)
                ok = put(f, ptr[i], call->args[i].bytes);
        if (!ok) {
            printf("kg_fw: writing %s failed\n", results_path);
            fclose(f);
            return KG_FW_EXIT_IO;
        }
    }
    if (fclose(f) != 0) {
        printf("kg_fw: closing %s failed\n", results_path);
        return KG_FW_EXIT_IO;
    }
    printf("kg_fw: %d calls, %lu SysTick ticks in the kernels\n", ncalls, (unsigned long)total);
    return 0;
}
