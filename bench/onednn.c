/* onednn.c: the optional oneDNN baseline (onednn.h). A job is a short list of primitives executed
 * in order on one CPU stream, bound to the benchmark's buffers in plain row-major layouts (the
 * layouts kerngen and the hand loops use: no reorders anywhere). oneDNN keeps its own saved
 * tensors (mean and variance; the FFN's pre-activation and activation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "onednn.h"

#define MAX_STEPS 10
#define MAX_MEMS 40
#define MAX_ARGS 10

typedef struct {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[MAX_ARGS];
} step;

struct onednn_job {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    step steps[MAX_STEPS];
    dnnl_primitive_desc_t pds[MAX_STEPS];
    int nsteps;
    int first_timed; /* steps before it ran once at creation (the forward of a backward row) */
    dnnl_memory_t mems[MAX_MEMS];
    int nmems;
    char impl[512];
};

#define CHECK(call)                                                                        \
    do {                                                                                   \
        dnnl_status_t st_ = (call);                                                        \
        if (st_ != dnnl_success) {                                                         \
            fprintf(stderr, "oneDNN: %s failed (status %d)\n", #call, (int)st_);           \
            return -1;                                                                     \
        }                                                                                  \
    } while (0)

static int md(dnnl_memory_desc_t *d, int ndims, const dnnl_dim_t *dims)
{
    static const dnnl_format_tag_t tags[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd};
    dnnl_dims_t full = {0}; /* the API reads a whole dnnl_dims_t */
    for (int i = 0; i < ndims; i++)
        full[i] = dims[i];
    CHECK(dnnl_memory_desc_init_by_tag(d, ndims, full, dnnl_f32, tags[ndims]));
    return 0;
}

/* a memory object over ptr (NULL: oneDNN allocates it; the job owns it either way) */
static dnnl_memory_t mem(onednn_job *j, const dnnl_memory_desc_t *d, void *ptr)
{
    dnnl_memory_t m = NULL;
    if (j->nmems == MAX_MEMS ||
        dnnl_memory_create(&m, d, j->engine, ptr ? ptr : DNNL_MEMORY_ALLOCATE) != dnnl_success) {
        fprintf(stderr, "oneDNN: cannot create a memory object\n");
        return NULL;
    }
    j->mems[j->nmems++] = m;
    return m;
}

/* Appends a primitive for op_desc (attr and hint may be NULL) with nargs (id, memory) pairs;
 * returns its primitive descriptor (owned by the job) or NULL. */
static const_dnnl_primitive_desc_t add(onednn_job *j, const char *label, const_dnnl_op_desc_t op,
                                       const_dnnl_primitive_attr_t attr,
                                       const_dnnl_primitive_desc_t hint, int nargs,
                                       const int *ids, const dnnl_memory_t *mems)
{
    step *s = &j->steps[j->nsteps];
    dnnl_primitive_desc_t pd = NULL;
    if (j->nsteps == MAX_STEPS || nargs > MAX_ARGS)
        return NULL;
    for (int i = 0; i < nargs; i++)
        if (!mems[i])
            return NULL;
    if (dnnl_primitive_desc_create(&pd, op, attr, j->engine, hint) != dnnl_success) {
        fprintf(stderr, "oneDNN: no implementation for %s\n", label);
        return NULL;
    }
    if (dnnl_primitive_create(&s->prim, pd) != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        fprintf(stderr, "oneDNN: cannot create the %s primitive\n", label);
        return NULL;
    }
    j->pds[j->nsteps++] = pd;
    s->nargs = nargs;
    for (int i = 0; i < nargs; i++) {
        s->args[i].arg = ids[i];
        s->args[i].memory = mems[i];
    }
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    size_t n = strlen(j->impl);
    snprintf(j->impl + n, sizeof j->impl - n, "%s%s %s", n ? ", " : "", label, impl);
    return pd;
}

/* ---- normalizations: layer (x[rows][dim]) and batch (x[1][c][h][w]) ---- */

static int normalization(onednn_job *j, const hand_call *c, int layer)
{
    dnnl_memory_desc_t data, stat, param;
    dnnl_dim_t ddims[4], sdims[1], pdims[1];
    int nd;
    if (layer) {
        ddims[0] = c->d[0], ddims[1] = c->d[1], nd = 2;
        sdims[0] = c->d[0], pdims[0] = c->d[1];
    } else {
        ddims[0] = 1, ddims[1] = c->d[0], ddims[2] = c->d[2], ddims[3] = c->d[3], nd = 4;
        sdims[0] = pdims[0] = c->d[0];
    }
    if (md(&data, nd, ddims) || md(&stat, 1, sdims) || md(&param, 1, pdims))
        return -1;
    float eps = (float)c->eps;
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    dnnl_memory_t x = mem(j, &data, c->x), y = mem(j, &data, c->y);
    dnnl_memory_t g = mem(j, &param, c->p[0]), b = mem(j, &param, c->p[1]);
    const char *name = layer ? "lnorm" : "bnorm";
    if (c->pass == HAND_FWD) {
        union { dnnl_layer_normalization_desc_t l; dnnl_batch_normalization_desc_t b; } d;
        if (layer)
            CHECK(dnnl_layer_normalization_forward_desc_init(&d.l, dnnl_forward_inference, &data,
                                                             &stat, eps, flags));
        else
            CHECK(dnnl_batch_normalization_forward_desc_init(&d.b, dnnl_forward_inference, &data,
                                                             eps, flags));
        int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT};
        dnnl_memory_t ms[] = {x, y, g, b};
        return add(j, name, &d, NULL, NULL, 4, ids, ms) ? 0 : -1;
    }
    dnnl_memory_t mean = mem(j, &stat, NULL), var = mem(j, &stat, NULL);
    union { dnnl_layer_normalization_desc_t l; dnnl_batch_normalization_desc_t b; } fd, bd;
    if (layer)
        CHECK(dnnl_layer_normalization_forward_desc_init(&fd.l, dnnl_forward_training, &data,
                                                         &stat, eps, flags));
    else
        CHECK(dnnl_batch_normalization_forward_desc_init(&fd.b, dnnl_forward_training, &data,
                                                         eps, flags));
    int fids[] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN,
                  DNNL_ARG_VARIANCE};
    dnnl_memory_t fms[] = {x, y, g, b, mean, var};
    const_dnnl_primitive_desc_t fpd = add(j, name, &fd, NULL, NULL, 6, fids, fms);
    if (!fpd)
        return -1;
    if (c->pass == HAND_BWD)
        j->first_timed = j->nsteps;
    if (layer)
        CHECK(dnnl_layer_normalization_backward_desc_init(&bd.l, dnnl_backward, &data, &data,
                                                          &stat, eps, flags));
    else
        CHECK(dnnl_batch_normalization_backward_desc_init(&bd.b, dnnl_backward, &data, &data, eps,
                                                          flags));
    dnnl_memory_t dy = mem(j, &data, c->dy), dx = mem(j, &data, c->dx);
    dnnl_memory_t dg = mem(j, &param, c->dp[0]), db = mem(j, &param, c->dp[1]);
    /* 2.6 wants the shift in the backward too, though the gradients do not depend on it */
    int bids[] = {DNNL_ARG_SRC, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_SCALE, DNNL_ARG_SHIFT,
                  DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT};
    dnnl_memory_t bms[] = {x, mean, var, g, b, dy, dx, dg, db};
    return add(j, layer ? "lnorm bwd" : "bnorm bwd", &bd, NULL, fpd, 9, bids, bms) ? 0 : -1;
}

/* ---- GELU, elementwise over n elements ---- */

static int gelu(onednn_job *j, const hand_call *c)
{
    dnnl_memory_desc_t data;
    dnnl_dim_t n[1] = {c->d[0]};
    dnnl_alg_kind_t alg = c->erf ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh;
    if (md(&data, 1, n))
        return -1;
    dnnl_memory_t x = mem(j, &data, c->x), y = mem(j, &data, c->y);
    dnnl_eltwise_desc_t fd, bd;
    CHECK(dnnl_eltwise_forward_desc_init(
        &fd, c->pass == HAND_FWD ? dnnl_forward_inference : dnnl_forward_training, alg, &data, 0, 0));
    int fids[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    dnnl_memory_t fms[] = {x, y};
    const_dnnl_primitive_desc_t fpd = add(j, "gelu", &fd, NULL, NULL, 2, fids, fms);
    if (!fpd)
        return -1;
    if (c->pass == HAND_FWD)
        return 0;
    if (c->pass == HAND_BWD)
        j->first_timed = j->nsteps;
    CHECK(dnnl_eltwise_backward_desc_init(&bd, alg, &data, &data, 0, 0));
    int bids[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
    dnnl_memory_t bms[] = {x, mem(j, &data, c->dy), mem(j, &data, c->dx)};
    return add(j, "gelu bwd", &bd, NULL, fpd, 3, bids, bms) ? 0 : -1;
}

/* ---- FFN: inner products (weights [out][in], PyTorch's Linear) and eltwise GELU ---- */

static int ffn(onednn_job *j, const hand_call *c)
{
    dnnl_dim_t seq = c->d[0], dm = c->d[1], dff = c->d[2];
    dnnl_dim_t xd[2] = {seq, dm}, w1d[2] = {dff, dm}, b1d[1] = {dff}, hd[2] = {seq, dff},
               w2d[2] = {dm, dff}, b2d[1] = {dm};
    dnnl_memory_desc_t x_md, w1_md, b1_md, h_md, w2_md, b2_md;
    if (md(&x_md, 2, xd) || md(&w1_md, 2, w1d) || md(&b1_md, 1, b1d) || md(&h_md, 2, hd) ||
        md(&w2_md, 2, w2d) || md(&b2_md, 1, b2d))
        return -1;
    dnnl_alg_kind_t alg = c->erf ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh;
    dnnl_memory_t x = mem(j, &x_md, c->x), w1 = mem(j, &w1_md, c->p[0]),
                  b1 = mem(j, &b1_md, c->p[1]), w2 = mem(j, &w2_md, c->p[2]),
                  b2 = mem(j, &b2_md, c->p[3]), y = mem(j, &x_md, c->y);
    dnnl_memory_t h = mem(j, &h_md, NULL);
    dnnl_inner_product_desc_t ip1, ip2, d;
    dnnl_eltwise_desc_t ed;
    dnnl_binary_desc_t bin;
    if (c->pass == HAND_FWD) { /* inference: GELU and the residual as post-ops */
        dnnl_post_ops_t po1, po2;
        dnnl_primitive_attr_t a1, a2;
        CHECK(dnnl_inner_product_forward_desc_init(&ip1, dnnl_forward_inference, &x_md, &w1_md,
                                                   &b1_md, &h_md));
        CHECK(dnnl_inner_product_forward_desc_init(&ip2, dnnl_forward_inference, &h_md, &w2_md,
                                                   &b2_md, &x_md));
        CHECK(dnnl_post_ops_create(&po1));
        CHECK(dnnl_post_ops_append_eltwise(po1, 1.0f, alg, 0, 0));
        CHECK(dnnl_primitive_attr_create(&a1));
        CHECK(dnnl_primitive_attr_set_post_ops(a1, po1));
        CHECK(dnnl_post_ops_create(&po2));
        CHECK(dnnl_post_ops_append_binary(po2, dnnl_binary_add, &x_md));
        CHECK(dnnl_primitive_attr_create(&a2));
        CHECK(dnnl_primitive_attr_set_post_ops(a2, po2));
        int ids1[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
        dnnl_memory_t ms1[] = {x, w1, b1, h};
        int ids2[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST,
                      DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1};
        dnnl_memory_t ms2[] = {h, w2, b2, y, x};
        int ok = add(j, "ip+gelu", &ip1, a1, NULL, 4, ids1, ms1) &&
                 add(j, "ip+add", &ip2, a2, NULL, 5, ids2, ms2);
        dnnl_post_ops_destroy(po1);
        dnnl_post_ops_destroy(po2);
        dnnl_primitive_attr_destroy(a1);
        dnnl_primitive_attr_destroy(a2);
        return ok ? 0 : -1;
    }
    /* training forward: hpre = x w1^T + b1, h = gelu(hpre), y = h w2^T + b2, y += x */
    dnnl_memory_t hpre = mem(j, &h_md, NULL);
    CHECK(dnnl_inner_product_forward_desc_init(&ip1, dnnl_forward_training, &x_md, &w1_md, &b1_md,
                                               &h_md));
    CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training, alg, &h_md, 0, 0));
    CHECK(dnnl_inner_product_forward_desc_init(&ip2, dnnl_forward_training, &h_md, &w2_md, &b2_md,
                                               &x_md));
    CHECK(dnnl_binary_desc_init(&bin, dnnl_binary_add, &x_md, &x_md, &x_md));
    int ipf[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    int elf[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    int bif[] = {DNNL_ARG_SRC_0, DNNL_ARG_SRC_1, DNNL_ARG_DST};
    dnnl_memory_t m1[] = {x, w1, b1, hpre}, me[] = {hpre, h}, m2[] = {h, w2, b2, y},
                  mb[] = {y, x, y};
    const_dnnl_primitive_desc_t pd1 = add(j, "ip", &ip1, NULL, NULL, 4, ipf, m1);
    const_dnnl_primitive_desc_t pde = add(j, "gelu", &ed, NULL, NULL, 2, elf, me);
    const_dnnl_primitive_desc_t pd2 = add(j, "ip", &ip2, NULL, NULL, 4, ipf, m2);
    if (!pd1 || !pde || !pd2 || !add(j, "add", &bin, NULL, NULL, 3, bif, mb))
        return -1;
    if (c->pass == HAND_BWD)
        j->first_timed = j->nsteps;
    /* backward: dw2, db2 from h and dy; dh = dy w2; dhpre = gelu'(hpre) dh; dw1, db1 from x and
     * dhpre; dx = dy + dhpre w1 */
    dnnl_memory_t dy = mem(j, &x_md, c->dy), dx = mem(j, &x_md, c->dx),
                  dw1 = mem(j, &w1_md, c->dp[0]), db1 = mem(j, &b1_md, c->dp[1]),
                  dw2 = mem(j, &w2_md, c->dp[2]), db2 = mem(j, &b2_md, c->dp[3]);
    dnnl_memory_t dh = mem(j, &h_md, NULL), dhpre = mem(j, &h_md, NULL), dxp = mem(j, &x_md, NULL);
    int bw[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    int bdt[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    int eb[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
    dnnl_memory_t mw2[] = {h, dy, dw2, db2}, md2[] = {dy, w2, dh}, meb[] = {hpre, dh, dhpre},
                  mw1[] = {x, dhpre, dw1, db1}, md1[] = {dhpre, w1, dxp}, mbx[] = {dxp, dy, dx};
    CHECK(dnnl_inner_product_backward_weights_desc_init(&d, &h_md, &w2_md, &b2_md, &x_md));
    if (!add(j, "ip bwd_w", &d, NULL, pd2, 4, bw, mw2))
        return -1;
    CHECK(dnnl_inner_product_backward_data_desc_init(&d, &h_md, &w2_md, &x_md));
    if (!add(j, "ip bwd_d", &d, NULL, pd2, 3, bdt, md2))
        return -1;
    CHECK(dnnl_eltwise_backward_desc_init(&ed, alg, &h_md, &h_md, 0, 0));
    if (!add(j, "gelu bwd", &ed, NULL, pde, 3, eb, meb))
        return -1;
    CHECK(dnnl_inner_product_backward_weights_desc_init(&d, &x_md, &w1_md, &b1_md, &h_md));
    if (!add(j, "ip bwd_w", &d, NULL, pd1, 4, bw, mw1))
        return -1;
    CHECK(dnnl_inner_product_backward_data_desc_init(&d, &x_md, &w1_md, &h_md));
    if (!add(j, "ip bwd_d", &d, NULL, pd1, 3, bdt, md1))
        return -1;
    return add(j, "add", &bin, NULL, NULL, 3, bif, mbx) ? 0 : -1;
}

/* ---- the job ---- */

static int run_steps(onednn_job *j, int from, int to)
{
    for (int i = from; i < to; i++) {
        dnnl_status_t st = dnnl_primitive_execute(j->steps[i].prim, j->stream, j->steps[i].nargs,
                                                  j->steps[i].args);
        if (st != dnnl_success) {
            fprintf(stderr, "oneDNN: step %d of %s failed (status %d)\n", i, j->impl, (int)st);
            return 1;
        }
    }
    return dnnl_stream_wait(j->stream) != dnnl_success;
}

onednn_job *onednn_create(const hand_call *c)
{
    if (c->pass == HAND_JVP || c->op == HAND_RMSNORM || c->op == HAND_GROUPNORM)
        return NULL;
    onednn_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    int rc = -1;
    if (dnnl_engine_create(&j->engine, dnnl_cpu, 0) == dnnl_success &&
        dnnl_stream_create(&j->stream, j->engine, dnnl_stream_default_flags) == dnnl_success) {
        switch (c->op) {
        case HAND_LAYERNORM: rc = normalization(j, c, 1); break;
        case HAND_BATCHNORM: rc = normalization(j, c, 0); break;
        case HAND_GELU: rc = gelu(j, c); break;
        case HAND_FFN: rc = ffn(j, c); break;
        default: break;
        }
    }
    if (rc == 0 && run_steps(j, 0, j->first_timed) != 0)
        rc = -1;
    if (rc != 0) {
        onednn_free(j);
        return NULL;
    }
    return j;
}

int onednn_run(onednn_job *j)
{
    return run_steps(j, j->first_timed, j->nsteps);
}

const char *onednn_impl(const onednn_job *j)
{
    return j->impl;
}

void onednn_free(onednn_job *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->nsteps; i++) {
        dnnl_primitive_destroy(j->steps[i].prim);
        dnnl_primitive_desc_destroy(j->pds[i]);
    }
    for (int i = 0; i < j->nmems; i++)
        dnnl_memory_destroy(j->mems[i]);
    if (j->stream)
        dnnl_stream_destroy(j->stream);
    if (j->engine)
        dnnl_engine_destroy(j->engine);
    free(j);
}

const char *onednn_version(void)
{
    static char v[32];
    const dnnl_version_t *ver = dnnl_version();
    snprintf(v, sizeof v, "%d.%d.%d", ver->major, ver->minor, ver->patch);
    return v;
}
