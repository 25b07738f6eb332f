/* onednn.c: optional oneDNN baselines (Debian libdnnl-dev 2.6, C API): layer normalization
 * forward inference, f32, row-major [rows][dim], with scale (gamma) and shift (beta); eltwise
 * GELU (erf and tanh) forward inference and backward, f32. run.sh compiles it, with
 * -DHAVE_ONEDNN for bench.c, only when <oneapi/dnnl/dnnl.h> exists. */
#include <stdio.h>
#include <stdlib.h>

#include <oneapi/dnnl/dnnl.h>

#include "onednn.h"

struct onednn_ln {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t mem[4];
    dnnl_exec_arg_t args[4];
};

#define CHECK(call)                                                                        \
    do {                                                                                   \
        dnnl_status_t st_ = (call);                                                        \
        if (st_ != dnnl_success) {                                                         \
            fprintf(stderr, "oneDNN: %s failed (status %d)\n", #call, (int)st_);           \
            onednn_ln_free(p);                                                             \
            return NULL;                                                                   \
        }                                                                                  \
    } while (0)

onednn_ln *onednn_ln_create(int rows, int dim, float eps, const float *x, const float *gamma,
                            const float *beta, float *y)
{
    onednn_ln *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    dnnl_dims_t data_dims = {rows, dim}, param_dims = {dim};
    dnnl_memory_desc_t data_md, param_md;
    dnnl_layer_normalization_desc_t desc;
    CHECK(dnnl_engine_create(&p->engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&p->stream, p->engine, dnnl_stream_default_flags));
    CHECK(dnnl_memory_desc_init_by_tag(&data_md, 2, data_dims, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&param_md, 1, param_dims, dnnl_f32, dnnl_a));
    CHECK(dnnl_layer_normalization_forward_desc_init(&desc, dnnl_forward_inference, &data_md,
                                                     NULL, eps, dnnl_use_scale | dnnl_use_shift));
    CHECK(dnnl_primitive_desc_create(&p->pd, &desc, NULL, p->engine, NULL));
    CHECK(dnnl_primitive_create(&p->prim, p->pd));
    /* oneDNN does not write through the source handles; the API takes void * */
    void *ptrs[4] = {(void *)x, y, (void *)gamma, (void *)beta};
    const dnnl_memory_desc_t *mds[4] = {&data_md, &data_md, &param_md, &param_md};
    int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT};
    for (int i = 0; i < 4; i++) {
        CHECK(dnnl_memory_create(&p->mem[i], mds[i], p->engine, ptrs[i]));
        p->args[i].arg = ids[i];
        p->args[i].memory = p->mem[i];
    }
    return p;
}

int onednn_ln_run(const onednn_ln *p)
{
    if (dnnl_primitive_execute(p->prim, p->stream, 4, p->args) != dnnl_success)
        return 1;
    return dnnl_stream_wait(p->stream) != dnnl_success;
}

const char *onednn_ln_impl(const onednn_ln *p)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        return "?";
    return impl;
}

void onednn_ln_free(onednn_ln *p)
{
    if (!p)
        return;
    for (int i = 0; i < 4; i++)
        if (p->mem[i])
            dnnl_memory_destroy(p->mem[i]);
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->pd)
        dnnl_primitive_desc_destroy(p->pd);
    if (p->stream)
        dnnl_stream_destroy(p->stream);
    if (p->engine)
        dnnl_engine_destroy(p->engine);
    free(p);
}

/* ---- eltwise GELU ---- */

struct onednn_gelu {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_desc_t fwd_pd, pd;
    dnnl_primitive_t prim;
    dnnl_memory_t mem[3];
    dnnl_exec_arg_t args[3];
    int nargs;
};

#undef CHECK
#define CHECK(call)                                                                        \
    do {                                                                                   \
        dnnl_status_t st_ = (call);                                                        \
        if (st_ != dnnl_success) {                                                         \
            fprintf(stderr, "oneDNN: %s failed (status %d)\n", #call, (int)st_);           \
            onednn_gelu_free(p);                                                           \
            return NULL;                                                                   \
        }                                                                                  \
    } while (0)

onednn_gelu *onednn_gelu_create(int n, int erf, int bwd, const float *x, const float *dy, float *out)
{
    onednn_gelu *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    dnnl_dims_t dims = {n};
    dnnl_memory_desc_t md;
    dnnl_eltwise_desc_t fdesc, bdesc;
    dnnl_alg_kind_t alg = erf ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh;
    CHECK(dnnl_engine_create(&p->engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&p->stream, p->engine, dnnl_stream_default_flags));
    CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
    CHECK(dnnl_eltwise_forward_desc_init(&fdesc, bwd ? dnnl_forward_training : dnnl_forward_inference,
                                         alg, &md, 0.f, 0.f));
    CHECK(dnnl_primitive_desc_create(&p->fwd_pd, &fdesc, NULL, p->engine, NULL));
    if (bwd) {
        CHECK(dnnl_eltwise_backward_desc_init(&bdesc, alg, &md, &md, 0.f, 0.f));
        CHECK(dnnl_primitive_desc_create(&p->pd, &bdesc, NULL, p->engine, p->fwd_pd));
    } else {
        p->pd = p->fwd_pd;
        p->fwd_pd = NULL;
    }
    CHECK(dnnl_primitive_create(&p->prim, p->pd));
    /* oneDNN does not write through the source handles; the API takes void * */
    void *ptrs[3] = {(void *)x, bwd ? (void *)dy : out, out};
    int ids[3] = {DNNL_ARG_SRC, bwd ? DNNL_ARG_DIFF_DST : DNNL_ARG_DST, DNNL_ARG_DIFF_SRC};
    p->nargs = bwd ? 3 : 2;
    for (int i = 0; i < p->nargs; i++) {
        CHECK(dnnl_memory_create(&p->mem[i], &md, p->engine, ptrs[i]));
        p->args[i].arg = ids[i];
        p->args[i].memory = p->mem[i];
    }
    return p;
}

int onednn_gelu_run(const onednn_gelu *p)
{
    if (dnnl_primitive_execute(p->prim, p->stream, p->nargs, p->args) != dnnl_success)
        return 1;
    return dnnl_stream_wait(p->stream) != dnnl_success;
}

const char *onednn_gelu_impl(const onednn_gelu *p)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success)
        return "?";
    return impl;
}

void onednn_gelu_free(onednn_gelu *p)
{
    if (!p)
        return;
    for (int i = 0; i < 3; i++)
        if (p->mem[i])
            dnnl_memory_destroy(p->mem[i]);
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->pd)
        dnnl_primitive_desc_destroy(p->pd);
    if (p->fwd_pd)
        dnnl_primitive_desc_destroy(p->fwd_pd);
    if (p->stream)
        dnnl_stream_destroy(p->stream);
    if (p->engine)
        dnnl_engine_destroy(p->engine);
    free(p);
}
