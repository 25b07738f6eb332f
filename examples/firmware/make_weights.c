/* make_weights: writes the example's frozen weights as NumPy files for kerngen emit --const:
 *     make_weights DIR      ->  DIR/w1.npy (float32 [128, 32]) and DIR/w2.npy ([32, 128])
 * The values are task.h's, so the JIT build (jit.c) can make the same bits without the files.
 * A .npy file is a 10-byte preamble, a Python dict literal padded to a multiple of 64 bytes
 * and ending in a newline, then the data (C order, little-endian). */
#include <stdio.h>
#include <string.h>

#include "task.h"

static int write_npy(const char *dir, const char *name, int rows, int cols, float (*value)(int))
{
    char path[4096], header[128];
    int n = snprintf(header, sizeof header,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    while ((10 + n + 1) % 64 != 0)
        header[n++] = ' ';
    header[n++] = '\n';
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                        (unsigned char)n, (unsigned char)(n >> 8)};
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return 0;
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 0;
    }
    int ok = fwrite(preamble, 1, 10, f) == 10 && fwrite(header, 1, (size_t)n, f) == (size_t)n;
    for (int i = 0; ok && i < rows * cols; i++) {
        float v = value(i);
        uint32_t u;
        unsigned char le[4];
        memcpy(&u, &v, 4);
        for (int b = 0; b < 4; b++)
            le[b] = (unsigned char)(u >> (8 * b));
        ok = fwrite(le, 1, 4, f) == 4;
    }
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, "make_weights: writing %s failed\n", path);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_weights DIR\n");
        return 2;
    }
    return write_npy(argv[1], "w1.npy", TASK_DFF, TASK_DMODEL, task_w1) &&
                   write_npy(argv[1], "w2.npy", TASK_DMODEL, TASK_DFF, task_w2)
               ? 0
               : 1;
}
