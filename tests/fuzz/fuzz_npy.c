/* fuzz_npy: libFuzzer target for the .npy reader (runtime/kg_npy.c). The input is a file's
 * bytes; reading it must succeed with a consistent result or fail with a message, never crash,
 * hang or allocate beyond the file's size. Run by ./build.sh fuzz. */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kg_npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.npy", 0); /* a regular file, in memory */
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    kg_npy t;
    if (kg_npy_read(path, &t, err, sizeof err) == 0) {
        size_t count = 1;
        for (int i = 0; i < t.ndim; i++)
            count *= t.shape[i];
        if (count != t.count || count * (size_t)t.dtype > size || !t.data)
            abort();
        kg_npy_free(&t);
    } else if (!err[0] || strncmp(err, path, strlen(path)) != 0) {
        abort(); /* every failure has a message that starts with the path */
    }
    kg_npy want = {KG_NPY_F32, 2, {3, 5}, 15, NULL};
    int rc = kg_npy_read_expect(path, &want, &t, err, sizeof err);
    if (rc == 0 && (t.ndim != 2 || t.shape[0] != 3 || t.shape[1] != 5))
        abort();
    if (rc == 1 && t.data)
        abort(); /* a mismatch reads no data */
    kg_npy_free(&t);
    close(fd);
    return 0;
}
