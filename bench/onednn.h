/* onednn.h: the optional oneDNN baselines, LayerNorm and GELU (onednn.c, built only with
 * -DHAVE_ONEDNN). */
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

/* Eltwise GELU on n floats (erf: 1 for gelu_erf, 0 for gelu_tanh): forward inference y = gelu(x),
 * or backward (bwd = 1) dx = dy gelu'(x); NULL (with a message on stderr) when oneDNN refuses. */
typedef struct onednn_gelu onednn_gelu;
onednn_gelu *onednn_gelu_create(int n, int erf, int bwd, const float *x, const float *dy, float *out);
int onednn_gelu_run(const onednn_gelu *p);          /* 0 on success */
const char *onednn_gelu_impl(const onednn_gelu *p); /* the implementation oneDNN chose */
void onednn_gelu_free(onednn_gelu *p);

#endif
