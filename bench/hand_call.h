/* hand_call.h: one call of the hand-written baselines (hand.c), described by value, so that
 * bench.c reaches every instance of the loops (float and double; gcc -O3, gcc -Ofast, tcc)
 * through one entry point each: hand_run_f32, fast_run_f32, tcc_run_f32, hand_run_f64, ... */
#ifndef BENCH_HAND_CALL_H
#define BENCH_HAND_CALL_H

enum hand_op { HAND_LAYERNORM, HAND_RMSNORM, HAND_BATCHNORM, HAND_GROUPNORM, HAND_GELU, HAND_FFN };
/* TRAIN is the forward (saving what the backward needs) followed by the backward */
enum hand_pass { HAND_FWD, HAND_BWD, HAND_JVP, HAND_TRAIN };

typedef struct {
    enum hand_op op;
    enum hand_pass pass;
    /* dims, by op:
     *   layernorm, rmsnorm: rows, dim          batchnorm: c, h*w (x[c][h*w], N=1)
     *   groupnorm: b, h*w, c, groups (x[b][h*w][c], channel-last)
     *   gelu: elements                          ffn: seq, dmodel, dff (seq 1: the ffn graph) */
    int d[4];
    int erf;    /* gelu and ffn: 1 erf form, 0 tanh approximation */
    double eps; /* normalizations */
    /* element pointers (float or double, as the instance): inputs, output, cotangent and
     * gradients, tangents; the order of p is kerngen's: gamma, beta or w1, b1, w2, b2 */
    void *x, *p[4], *y;
    void *dy, *dx, *dp[4];
    void *tx, *tp[4], *ty;
    /* what the forward saves for the backward: mean and rstd (per row, channel or group;
     * rmsnorm: rstd only), ffn: hidden_pre and hidden [seq][dff]; gelu: nothing */
    void *save[2];
    void *ws; /* scratch: groupnorm 6*c elements; ffn seq*dff */
} hand_call;

/* the instances of hand.c (run.sh compiles it once per line) */
void hand_run_f32(const hand_call *c); /* gcc -O3 -march=native -ffp-contract=off */
void hand_run_f64(const hand_call *c); /* the same; also the reference of every check */
void fast_run_f32(const hand_call *c); /* gcc -Ofast -march=native */
void fast_run_f64(const hand_call *c);
void tcc_run_f32(const hand_call *c);  /* tcc */

#endif
