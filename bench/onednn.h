/* onednn.h: the optional oneDNN LayerNorm baseline (onednn.c, built only with -DHAVE_ONEDNN). */
#ifndef BENCH_ONEDNN_H
#define BENCH_ONEDNN_H

typedef struct onednn_ln onednn_ln;

/* A forward-inference layer normalization over the last axis of x[rows][dim] bound to these
 * buffers; NULL (with a message on stderr) when oneDNN refuses. */
onednn_ln *onednn_ln_create(int rows, int dim, float eps, const float *x, const float *gamma,
                            const float *beta, float *y);
int onednn_ln_run(const onednn_ln *p);          /* 0 on success */
const char *onednn_ln_impl(const onednn_ln *p); /* the implementation oneDNN chose */
void onednn_ln_free(onednn_ln *p);

#endif
