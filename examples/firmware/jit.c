/* jit.c: runs train.c on the host through libkerngen's JIT instead of the emitted block.c.
 *
 * It defines block_forward_train and block_train with block.h's prototypes on a kernel that
 * kg_generate makes at the first call, from the request of the Makefile's `kerngen emit` (the
 * same graph, parameters and training options; the same baked weights, made by task.h as
 * make_weights.c makes w1.npy and w2.npy), and that libtcc compiles in memory. kg_call runs it,
 * each argument placed by its C name (kg_arg_index). Link with libkerngen.a -llua5.4 -lm
 * -lpthread -ldl. */
#include <stdio.h>
#include <stdlib.h>

#include "block.h"
#include "kerngen.h"
#include "task.h"

static void die(const char *what, const char *why)
{
    fprintf(stderr, "jit: %s: %s\n", what, why ? why : "out of memory");
    exit(2);
}

static kg_kernel *kernel(void)
{
    static kg_kernel *k;
    static float w1[TASK_DFF * TASK_DMODEL], w2[TASK_DMODEL * TASK_DFF];
    static const char *const params[] = {"seq=4", "dmodel=32", "dff=128", "eps=1e-5", "gelu=tanh"};
    if (k)
        return k;
    for (int i = 0; i < TASK_DFF * TASK_DMODEL; i++) {
        w1[i] = task_w1(i);
        w2[i] = task_w2(i);
    }
    const kg_const consts[] = {{"w1", w1, TASK_DFF * TASK_DMODEL},
                               {"w2", w2, TASK_DMODEL * TASK_DFF}};
    kg_request req = {0};
    req.graph = "prenorm_ffn";
    req.params = params;
    req.nparams = (int)(sizeof params / sizeof params[0]);
    req.dtype = "f32";
    req.train = "gamma,beta,b1,b2";
    req.optimizer = "adam";
    req.target = "scalar";
    req.consts = consts;
    req.nconsts = 2;
    req.passes = 1u << KG_FORWARD_TRAIN | 1u << KG_TRAIN;
    char *err = NULL;
    if (kg_generate(&req, &k, &err) != KG_OK)
        die("kg_generate", err);
    if (kg_compile(k, &err) != KG_OK)
        die("kg_compile", err);
    /* train.c's workspace is sized by block.h: the JIT kernel must not need more */
    if (kg_ws_size(k, KG_FORWARD_TRAIN) > BLOCK_FORWARD_TRAIN_WS_SIZE ||
        kg_ws_size(k, KG_TRAIN) > BLOCK_TRAIN_WS_SIZE)
        die("workspace", "the JIT kernel needs more than block.h says");
    return k;
}

/* kg_call of PASS with the arguments NAMES[i] = PTRS[i] (C names as in block.h, "ws" last) */
static int call(kg_pass pass, const char *const *names, void *const *ptrs, int n)
{
    kg_kernel *k = kernel();
    void *args[32] = {0};
    if (n > 32 || kg_nargs(k, pass) + 1 != n)
        die(kg_pass_name(pass), "the JIT kernel's arguments are not block.h's");
    for (int i = 0; i < n; i++) {
        int at = kg_arg_index(k, pass, names[i]);
        if (at < 0)
            die(names[i], "no such argument in the JIT kernel");
        args[at] = ptrs[i];
    }
    return kg_call(k, pass, args, n);
}

int block_forward_train(const float *restrict x, const float *restrict gamma,
                        const float *restrict beta, const float *restrict b1,
                        const float *restrict b2, float *restrict y, float *restrict layernorm_mean,
                        float *restrict layernorm_inv_std, float *restrict mlp_hidden_pre,
                        float *restrict ws)
{
    static const char *const names[] = {"x", "gamma", "beta", "b1", "b2", "y", "layernorm_mean",
                                        "layernorm_inv_std", "mlp_hidden_pre", "ws"};
    void *const ptrs[] = {(void *)x, (void *)gamma, (void *)beta, (void *)b1, (void *)b2, y,
                          layernorm_mean, layernorm_inv_std, mlp_hidden_pre, ws};
    return call(KG_FORWARD_TRAIN, names, ptrs, (int)(sizeof names / sizeof names[0]));
}

int block_train(const float *restrict x, float *restrict gamma, float *restrict beta,
                float *restrict b1, float *restrict b2, const float *restrict layernorm_mean,
                const float *restrict layernorm_inv_std, const float *restrict mlp_hidden_pre,
                const float *restrict y_cot, const float *restrict opt,
                float *restrict gamma_exp_avg, float *restrict gamma_exp_avg_sq,
                float *restrict beta_exp_avg, float *restrict beta_exp_avg_sq,
                float *restrict b1_exp_avg, float *restrict b1_exp_avg_sq,
                float *restrict b2_exp_avg, float *restrict b2_exp_avg_sq, float *restrict ws)
{
    static const char *const names[] = {
        "x", "gamma", "beta", "b1", "b2", "layernorm_mean", "layernorm_inv_std", "mlp_hidden_pre",
        "y_cot", "opt", "gamma_exp_avg", "gamma_exp_avg_sq",
        "beta_exp_avg", "beta_exp_avg_sq", "b1_exp_avg", "b1_exp_avg_sq", "b2_exp_avg",
        "b2_exp_avg_sq", "ws"};
    void *const ptrs[] = {(void *)x, gamma, beta, b1, b2, (void *)layernorm_mean,
                          (void *)layernorm_inv_std, (void *)mlp_hidden_pre, (void *)y_cot, (void *)opt, gamma_exp_avg,
                          gamma_exp_avg_sq, beta_exp_avg, beta_exp_avg_sq, b1_exp_avg,
                          b1_exp_avg_sq, b2_exp_avg, b2_exp_avg_sq, ws};
    return call(KG_TRAIN, names, ptrs, (int)(sizeof names / sizeof names[0]));
}
