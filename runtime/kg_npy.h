/* kg_npy.h - read and write NumPy .npy files (C order, little-endian float32/float64). */
#ifndef KG_NPY_H
#define KG_NPY_H
#include <stddef.h>
#include <stdio.h>

enum { KG_NPY_MAXDIM = 8 };
typedef enum { KG_NPY_F32 = 4, KG_NPY_F64 = 8 } kg_npy_dtype;   /* value = element size */

typedef struct {
    kg_npy_dtype dtype;
    int ndim;                       /* 0..KG_NPY_MAXDIM */
    size_t shape[KG_NPY_MAXDIM];
    size_t count;                   /* product of shape (1 for ndim 0) */
    void *data;                     /* malloc'd, count * dtype bytes, native little-endian */
} kg_npy;

/* Reads path (a regular file: FIFOs and devices are refused) into *out. Returns 0 on success; on failure returns -1, leaves *out empty
   (data NULL) and writes a one-line message that starts with the path into err[0..errlen). */
int kg_npy_read(const char *path, kg_npy *out, char *err, size_t errlen);

/* Like kg_npy_read, but when the file's dtype or shape differs from want's (dtype, ndim,
   shape) returns 1 before reading any data: *out then holds the file's dtype and shape and
   no data. Returns 0 on success, -1 on an error (message in err). */
int kg_npy_read_expect(const char *path, const kg_npy *want, kg_npy *out, char *err, size_t errlen);

/* Writes exactly `path` (format version 1.0, header padded so data starts at a multiple of 64,
   'descr' '<f4'/'<f8', 'fortran_order': False, shape tuple written like numpy does, e.g. (3,) and (2, 3)).
   Returns 0 or -1 with a message naming the path. On failure removes the partial file. */
int kg_npy_write(const char *path, kg_npy_dtype dtype, int ndim, const size_t *shape,
                 const void *data, char *err, size_t errlen);

/* Writes the .npy bytes to an open stream (kg_npy_write's format); with f NULL only checks the
   arguments. Returns 0 or -1 with a message naming path. */
int kg_npy_fwrite(FILE *f, kg_npy_dtype dtype, int ndim, const size_t *shape, const void *data,
                  const char *path, char *err, size_t errlen);

/* Formats a shape as "[2, 3]" (ndim 0 -> "[]") into buf; returns buf. */
const char *kg_npy_shape_str(int ndim, const size_t *shape, char *buf, size_t buflen);

void kg_npy_free(kg_npy *t);   /* frees data, resets to empty; safe on an empty/zeroed struct */
#endif
