/* task.h: the synthetic regression task of the firmware example, the same bits on every target.
 *
 * A "teacher" block y = x + W2 GELU(W1 LayerNorm(x; gamma_t, beta_t) + b1_t) + b2_t makes the
 * targets; the student is the same block with the same frozen W1, W2 (baked into flash by
 * kerngen emit --const) and its own gamma, beta, b1, b2, which start at PyTorch's
 * initialization (ones, zeros) and learn the teacher's values from a fresh batch of inputs per
 * step. The teacher is reachable, so the loss can fall towards zero.
 *
 * Every value is made from a counter-based hash by exact float operations (a 24-bit integer
 * times a power of two) and at most one rounding multiply, so make_weights.c (w1.npy, w2.npy),
 * the firmware, the host build and the JIT build see identical inputs without storing them.
 */
#ifndef TASK_H
#define TASK_H

#include <stdint.h>

enum { TASK_SEQ = 4, TASK_DMODEL = 32, TASK_DFF = 128 };

/* streams: one per kind of value, so each is a function of its index alone */
enum { TASK_W1 = 1, TASK_W2, TASK_GAMMA, TASK_BETA, TASK_B1, TASK_B2, TASK_X };

/* A uniform value in [-1, 1): 24 bits of a hash of (stream, i) times 2^-23, exact in float. */
static inline float task_uniform(uint64_t stream, uint64_t i)
{
    uint64_t z = stream * 0x9E3779B97F4A7C15u + i * 0xD1B54A32D192ED03u; /* splitmix64's mix */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return (float)((int32_t)(z >> 40) - 0x800000) * 0x1p-23f;
}

/* The frozen weights, as nn.Linear initializes them: uniform in +-1/sqrt(fan_in).
   w1 [dff][dmodel], w2 [dmodel][dff] (PyTorch's [out][in]). */
static inline float task_w1(int i) { return task_uniform(TASK_W1, (uint64_t)i) * 0.176776695f; }
static inline float task_w2(int i) { return task_uniform(TASK_W2, (uint64_t)i) * 0.0883883476f; }

/* The teacher's parameters: the student's initial values (1 and 0) plus up to +-0.5. */
static inline float task_gamma(int i) { return 1.0f + 0.5f * task_uniform(TASK_GAMMA, (uint64_t)i); }
static inline float task_beta(int i) { return 0.5f * task_uniform(TASK_BETA, (uint64_t)i); }
static inline float task_b1(int i) { return 0.5f * task_uniform(TASK_B1, (uint64_t)i); }
static inline float task_b2(int i) { return 0.5f * task_uniform(TASK_B2, (uint64_t)i); }

/* Element i of step's input x [seq][dmodel]: uniform in [-2, 2), a new batch every step. */
static inline float task_x(int step, int i)
{
    return 2.0f * task_uniform(TASK_X, (uint64_t)step * (TASK_SEQ * TASK_DMODEL) + (uint64_t)i);
}

#endif
