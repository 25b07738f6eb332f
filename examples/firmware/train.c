/* train.c: trains a pre-norm transformer block on a Cortex-M4F, no allocation, weights in flash.
 *
 * The model is y = x + W2 GELU(W1 LayerNorm(x) + b1) + b2 over x [seq=4][dmodel=32], dff=128
 * (PyTorch: x + nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 128),
 * nn.GELU(approximate='tanh'), nn.Linear(128, 32))(x)). W1 and W2 are frozen and live in flash
 * as const tables; gamma, beta, b1 and b2 are trained by Adam. block.h and block.c come from
 *
 *     kerngen emit prenorm_ffn seq=4 dmodel=32 dff=128 eps=1e-5 gelu=tanh --target scalar \
 *         --train gamma,beta,b1,b2 --optimizer adam --const w1=w1.npy --const w2=w2.npy \
 *         --pass forward_train --pass train --name block
 *
 * (the Makefile), which gives two functions: block_forward_train (y, and what the backward
 * needs) and block_train (the backward from dloss/dy, and Adam's update of each trained
 * parameter in place as soon as its gradient is complete). The task (task.h): learn a teacher
 * block's gamma, beta, b1, b2 from a fresh batch of inputs per step, mean squared error.
 *
 * The same file builds for the host (gcc; jit.c instead of block.c runs it through libkerngen's
 * JIT) and prints the same losses and the same digest of the final parameters there: the
 * kernels are bit-identical across targets. Build with -ffp-contract=off so that this file's
 * own arithmetic (the loss) is not contracted into fused multiply-adds either. */
#include <stdint.h>
#include <stdio.h>

#include "block.h"
#include "task.h"

#ifdef __arm__
#include "kg_fw.h" /* kg_fw_ticks(): SysTick (firmware/startup.c) */
#else
static uint64_t kg_fw_ticks(void) { return 0; } /* the host build does not count */
#endif

/* task.h's dims must be the kernel's (the Makefile's emit): a compile error otherwise */
typedef char task_dims_match_block_h[BLOCK_X_SIZE == TASK_SEQ * TASK_DMODEL &&
                                     BLOCK_B1_SIZE == TASK_DFF ? 1 : -1];

#define STEPS 200
#define PRINT_EVERY 20

/* ---- RAM: every buffer is static and sized by block.h's macros ---- */

static float x[BLOCK_X_SIZE], y[BLOCK_Y_SIZE], y_cot[BLOCK_Y_COT_SIZE], opt[BLOCK_OPT_SIZE];

static struct { /* the trained parameters (w1 and w2 are tables in block.c: flash) */
    float gamma[BLOCK_GAMMA_SIZE], beta[BLOCK_BETA_SIZE], b1[BLOCK_B1_SIZE], b2[BLOCK_B2_SIZE];
} param;

static struct { /* Adam's state per parameter, zero at the start (PyTorch's exp_avg, exp_avg_sq) */
    float gamma_m[BLOCK_GAMMA_EXP_AVG_SIZE], gamma_v[BLOCK_GAMMA_EXP_AVG_SQ_SIZE];
    float beta_m[BLOCK_BETA_EXP_AVG_SIZE], beta_v[BLOCK_BETA_EXP_AVG_SQ_SIZE];
    float b1_m[BLOCK_B1_EXP_AVG_SIZE], b1_v[BLOCK_B1_EXP_AVG_SQ_SIZE];
    float b2_m[BLOCK_B2_EXP_AVG_SIZE], b2_v[BLOCK_B2_EXP_AVG_SQ_SIZE];
} adam;

static struct { /* what forward_train saves for train (only what train reads) */
    float mean[BLOCK_LAYERNORM_MEAN_SIZE], inv_std[BLOCK_LAYERNORM_INV_STD_SIZE];
    float hidden_pre[BLOCK_MLP_HIDDEN_PRE_SIZE];
} saved;

/* one workspace serves both functions (C has no zero-length arrays: at least 1) */
#define WS_SIZE (BLOCK_FORWARD_TRAIN_WS_SIZE > BLOCK_TRAIN_WS_SIZE ? BLOCK_FORWARD_TRAIN_WS_SIZE \
                                                                    : BLOCK_TRAIN_WS_SIZE)
static float ws[WS_SIZE > 0 ? WS_SIZE : 1];

/* the task's own buffers: the teacher's parameters and the targets */
static struct {
    float gamma[BLOCK_GAMMA_SIZE], beta[BLOCK_BETA_SIZE], b1[BLOCK_B1_SIZE], b2[BLOCK_B2_SIZE];
} teacher;
static float target[BLOCK_Y_SIZE];

/* ---- the loss, in this file ---- */

/* Mean squared error (nn.MSELoss): mean((y - target)^2); writes its gradient dloss/dy to y_cot. */
static float mse_loss(void)
{
    float sum = 0.0f;
    for (int i = 0; i < BLOCK_Y_SIZE; i++) {
        float d = y[i] - target[i];
        sum += d * d;
        y_cot[i] = d * (2.0f / BLOCK_Y_SIZE);
    }
    return sum / BLOCK_Y_SIZE;
}

/* newlib nano's printf has no %f: v >= 0 with six decimals */
static void print_fixed(float v)
{
    unsigned long u = (unsigned long)(v * 1e6f + 0.5f);
    printf("%lu.%06lu", u / 1000000ul, u % 1000000ul);
}

/* FNV-1a over the bytes of n floats: one line to compare the bits of two runs */
static uint64_t digest(uint64_t h, const float *v, size_t n)
{
    const unsigned char *b = (const unsigned char *)v;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ b[i]) * 0x100000001B3u;
    return h;
}

#ifdef TRAIN_DUMP /* every bit, for tests/test_firmware.c */
#include <string.h>
static unsigned long bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (unsigned long)u;
}
static void dump(const char *what, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s %u %08lx\n", what, (unsigned)i, bits(v[i]));
}
#endif

static void print_ram(const char *what, unsigned long bytes)
{
    printf("  %-44s %6lu\n", what, bytes);
}

int main(void)
{
    /* PyTorch's initialization: LayerNorm gamma 1, beta 0; the biases 0 here */
    for (int i = 0; i < BLOCK_GAMMA_SIZE; i++) {
        param.gamma[i] = 1.0f;
        teacher.gamma[i] = task_gamma(i);
    }
    for (int i = 0; i < BLOCK_BETA_SIZE; i++)
        teacher.beta[i] = task_beta(i);
    for (int i = 0; i < BLOCK_B1_SIZE; i++)
        teacher.b1[i] = task_b1(i);
    for (int i = 0; i < BLOCK_B2_SIZE; i++)
        teacher.b2[i] = task_b2(i);

    /* torch.optim.Adam(lr=0.01), its defaults otherwise; step counts from 1 */
    opt[BLOCK_OPT_LR] = 0.01f;
    opt[BLOCK_OPT_BETA1] = 0.9f;
    opt[BLOCK_OPT_BETA2] = 0.999f;
    opt[BLOCK_OPT_EPS] = 1e-8f;
    opt[BLOCK_OPT_WEIGHT_DECAY] = 0.0f;

    printf("training gamma, beta, b1, b2 of a pre-norm block (seq=4 dmodel=32 dff=128) by Adam,\n"
           "w1 and w2 frozen in flash; mean squared error against a teacher block\n");
    float loss_sum = 0.0f;
    uint64_t ticks_forward = 0, ticks_train = 0; /* SysTick, summed over the steps */
    for (int step = 1; step <= STEPS; step++) {
        for (int i = 0; i < BLOCK_X_SIZE; i++)
            x[i] = task_x(step, i);
        /* the target: the teacher's output (its saved values are overwritten below) */
        int rc = block_forward_train(x, teacher.gamma, teacher.beta, teacher.b1, teacher.b2, target,
                                     saved.mean, saved.inv_std, saved.hidden_pre, ws);

        uint64_t t0 = kg_fw_ticks();
        rc |= block_forward_train(x, param.gamma, param.beta, param.b1, param.b2, y, saved.mean,
                                  saved.inv_std, saved.hidden_pre, ws);
        uint64_t t1 = kg_fw_ticks();
        float loss = mse_loss();
        opt[BLOCK_OPT_STEP] = (float)step;
        uint64_t t2 = kg_fw_ticks();
        rc |= block_train(x, param.gamma, param.beta, param.b1, param.b2, saved.mean,
                          saved.inv_std, saved.hidden_pre, y_cot, opt, adam.gamma_m,
                          adam.gamma_v, adam.beta_m, adam.beta_v, adam.b1_m, adam.b1_v, adam.b2_m,
                          adam.b2_v, ws);
        ticks_forward += t1 - t0;
        ticks_train += kg_fw_ticks() - t2;
        if (rc != 0) { /* a standard deviation that is not > 0 and finite */
            printf("step %d: the kernel reported a domain failure\n", step);
            return 1;
        }

#ifdef TRAIN_DUMP
        printf("loss %d %08lx\n", step, bits(loss));
#endif
        loss_sum += loss;
        if (step == 1 || step % PRINT_EVERY == 0) {
            printf("step %3d  loss ", step);
            print_fixed(loss);
            if (step > 1) {
                printf("  mean of the last %d: ", PRINT_EVERY);
                print_fixed(loss_sum / PRINT_EVERY);
            }
            printf("\n");
        }
        if (step % PRINT_EVERY == 0)
            loss_sum = 0.0f;
    }

#ifdef TRAIN_DUMP
    dump("param", (const float *)&param, sizeof param / sizeof(float));
    dump("adam", (const float *)&adam, sizeof adam / sizeof(float));
#endif
    uint64_t h = digest(0xCBF29CE484222325u, (const float *)&param, sizeof param / sizeof(float));
    h = digest(h, (const float *)&adam, sizeof adam / sizeof(float));
    printf("digest of the trained parameters and Adam's state: %08lx%08lx\n",
           (unsigned long)(h >> 32), (unsigned long)(h & 0xFFFFFFFFu));

    printf("RAM of a training step (bytes; block.h's sizes):\n");
    print_ram("x, y, y_cot, opt (arguments)", sizeof x + sizeof y + sizeof y_cot + sizeof opt);
    print_ram("saved by forward_train for train", sizeof saved);
    print_ram("gamma, beta, b1, b2 (trained in place)", sizeof param);
    print_ram("Adam state (exp_avg, exp_avg_sq)", sizeof adam);
    print_ram("workspace (one for both functions)", sizeof ws);
    print_ram("total (emit --report: \"training step\")",
              sizeof x + sizeof y + sizeof y_cot + sizeof opt + sizeof saved + sizeof param +
                  sizeof adam + sizeof ws);
    print_ram("the task's teacher and target (not counted)", sizeof teacher + sizeof target);
    if (ticks_forward) /* qemu -icount shift=0: one tick is 40 instructions (firmware/README) */
        printf("SysTick ticks per step: forward_train %lu, train %lu; under qemu -icount shift=0\n"
               "that is %lu + %lu = %lu instructions per training step\n",
               (unsigned long)(ticks_forward / STEPS), (unsigned long)(ticks_train / STEPS),
               (unsigned long)(ticks_forward * 40 / STEPS), (unsigned long)(ticks_train * 40 / STEPS),
               (unsigned long)((ticks_forward + ticks_train) * 40 / STEPS));
    return 0;
}
