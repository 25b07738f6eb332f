/* hand.c: the hand-written baselines of the benchmark, plain loops as one would write them in
 * the style of llm.c: runtime dims, one accumulator per sum in the natural order (two-pass mean
 * and variance), a forward that saves mean and rstd (FFN: the pre-activation and the activation)
 * and a backward that reads them and accumulates dgamma/dbeta row by row; GELU with the libm
 * erf/tanh/exp; matrix products in good loop order (contiguous operands in the inner loop, 8 rows
 * sharing each weight row as llm.c's matmul_forward does). Every pass computes what kerngen's
 * computes: the VJP gives the gradient of every input, the JVP the tangent of the output.
 *
 * run.sh compiles this file once per instance, choosing with -D
 *   HAND_PREFIX   name prefix: hand_ (gcc -O3 -march=native -ffp-contract=off, as the kernels),
 *                 fast_ (gcc -Ofast -march=native), tcc_ (tcc)
 *   HAND_F64      defined: double, else float
 * Each instance exports one entry point, HAND_PREFIX##run_f32 or ##run_f64 (hand_call.h); every
 * other function is static. hand_run_f64 is also the reference every contender is checked
 * against (the same loops in double, inputs converted from the contenders' f32). */
#include <math.h>
#include <string.h>

#include "hand_call.h"

#ifdef HAND_F64
#define T double
#define SQRT sqrt
#define ERF erf
#define TANH tanh
#define EXP exp
#define HAND_SUFFIX run_f64
#else
#define T float
#define SQRT sqrtf
#define ERF erff
#define TANH tanhf
#define EXP expf
#define HAND_SUFFIX run_f32
#endif
#define HAND_CAT_(a, b) a##b
#define HAND_CAT(a, b) HAND_CAT_(a, b)

/* Mean and 1/sqrt(var + eps) of one row x[n] (two passes, as the other contenders). */
static T row_stats(int n, T eps, const T *x, T *mean)
{
    T m = 0;
    for (int i = 0; i < n; i++)
        m += x[i];
    m = m / n;
    T v = 0;
    for (int i = 0; i < n; i++) {
        T d = x[i] - m;
        v += d * d;
    }
    v = v / n;
    *mean = m;
    return 1 / SQRT(v + eps);
}

/* The JVP's means of a row's tangent: *a = mean(tx), *b = mean(tx xhat). */
static void tangent_means(int n, const T *x, const T *tx, T m, T s, T *a, T *b)
{
    T sa = 0, sb = 0;
    for (int i = 0; i < n; i++) {
        sa += tx[i];
        sb += tx[i] * (x[i] - m) * s;
    }
    *a = sa / n;
    *b = sb / n;
}

/* ---- LayerNorm over the last axis of x[rows][dim] ---- */

static void layernorm_fwd(int rows, int dim, T eps, const T *x, const T *gamma, const T *beta,
                          T *y, T *mean, T *rstd)
{
    for (int r = 0; r < rows; r++) {
        const T *xr = x + (long)r * dim;
        T *yr = y + (long)r * dim;
        T m, s = row_stats(dim, eps, xr, &m);
        for (int i = 0; i < dim; i++)
            yr[i] = (xr[i] - m) * s * gamma[i] + beta[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

/* dx = rstd (g dy - mean(g dy) - xhat mean(g dy xhat)), dgamma = sum_rows dy xhat,
 * dbeta = sum_rows dy */
static void layernorm_bwd(int rows, int dim, const T *x, const T *gamma, const T *mean,
                          const T *rstd, const T *dy, T *dx, T *dgamma, T *dbeta)
{
    for (int i = 0; i < dim; i++)
        dgamma[i] = dbeta[i] = 0;
    for (int r = 0; r < rows; r++) {
        const T *xr = x + (long)r * dim, *dyr = dy + (long)r * dim;
        T *dxr = dx + (long)r * dim;
        T m = mean[r], s = rstd[r];
        T a = 0, b = 0;
        for (int i = 0; i < dim; i++) {
            T xhat = (xr[i] - m) * s;
            T g = gamma[i] * dyr[i];
            a += g;
            b += g * xhat;
        }
        a = a / dim;
        b = b / dim;
        for (int i = 0; i < dim; i++) {
            T xhat = (xr[i] - m) * s;
            dbeta[i] += dyr[i];
            dgamma[i] += xhat * dyr[i];
            dxr[i] = s * (gamma[i] * dyr[i] - a - xhat * b);
        }
    }
}

/* ty = gamma rstd (tx - mean(tx) - xhat mean(tx xhat)) + xhat tgamma + tbeta */
static void layernorm_jvp(int rows, int dim, T eps, const T *x, const T *gamma, const T *tx,
                          const T *tgamma, const T *tbeta, T *ty)
{
    for (int r = 0; r < rows; r++) {
        const T *xr = x + (long)r * dim, *txr = tx + (long)r * dim;
        T *tyr = ty + (long)r * dim;
        T m, s = row_stats(dim, eps, xr, &m);
        T a, b;
        tangent_means(dim, xr, txr, m, s, &a, &b);
        for (int i = 0; i < dim; i++) {
            T xhat = (xr[i] - m) * s;
            tyr[i] = gamma[i] * s * (txr[i] - a - xhat * b) + xhat * tgamma[i] + tbeta[i];
        }
    }
}

/* ---- RMSNorm (no bias): y = x rstd gamma, rstd = 1 / sqrt(mean(x^2) + eps) ---- */

static void rmsnorm_fwd(int rows, int dim, T eps, const T *x, const T *gamma, T *y, T *rstd)
{
    for (int r = 0; r < rows; r++) {
        const T *xr = x + (long)r * dim;
        T *yr = y + (long)r * dim;
        T ss = 0;
        for (int i = 0; i < dim; i++)
            ss += xr[i] * xr[i];
        T s = 1 / SQRT(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = xr[i] * s * gamma[i];
        rstd[r] = s;
    }
}

/* with xhat = x rstd: dx = rstd (g dy - xhat mean(g dy xhat)), dgamma = sum_rows dy xhat */
static void rmsnorm_bwd(int rows, int dim, const T *x, const T *gamma, const T *rstd,
                        const T *dy, T *dx, T *dgamma)
{
    for (int i = 0; i < dim; i++)
        dgamma[i] = 0;
    for (int r = 0; r < rows; r++) {
        const T *xr = x + (long)r * dim, *dyr = dy + (long)r * dim;
        T *dxr = dx + (long)r * dim;
        T s = rstd[r], c = 0;
        for (int i = 0; i < dim; i++)
            c += gamma[i] * dyr[i] * xr[i] * s;
        c = c / dim;
        for (int i = 0; i < dim; i++) {
            T xhat = xr[i] * s;
            dgamma[i] += dyr[i] * xhat;
            dxr[i] = s * (gamma[i] * dyr[i] - xhat * c);
        }
    }
}

/* ty = gamma rstd (tx - xhat mean(xhat tx)) + xhat tgamma */
static void rmsnorm_jvp(int rows, int dim, T eps, const T *x, const T *gamma, const T *tx,
                        const T *tgamma, T *ty)
{
    for (int r = 0; r < rows; r++) {
        const T *xr = x + (long)r * dim, *txr = tx + (long)r * dim;
        T *tyr = ty + (long)r * dim;
        T ss = 0;
        for (int i = 0; i < dim; i++)
            ss += xr[i] * xr[i];
        T s = 1 / SQRT(ss / dim + eps);
        T c = 0;
        for (int i = 0; i < dim; i++)
            c += xr[i] * s * txr[i];
        c = c / dim;
        for (int i = 0; i < dim; i++) {
            T xhat = xr[i] * s;
            tyr[i] = gamma[i] * s * (txr[i] - xhat * c) + xhat * tgamma[i];
        }
    }
}

/* ---- BatchNorm2d, N=1, channel-first x[c][hw]: statistics per channel (a row) ---- */

static void batchnorm_fwd(int c, int hw, T eps, const T *x, const T *gamma, const T *beta, T *y,
                          T *mean, T *rstd)
{
    for (int ch = 0; ch < c; ch++) {
        const T *xc = x + (long)ch * hw;
        T *yc = y + (long)ch * hw;
        T m, s = row_stats(hw, eps, xc, &m);
        T g = gamma[ch], b = beta[ch];
        for (int i = 0; i < hw; i++)
            yc[i] = (xc[i] - m) * s * g + b;
        mean[ch] = m;
        rstd[ch] = s;
    }
}

static void batchnorm_bwd(int c, int hw, const T *x, const T *gamma, const T *mean,
                          const T *rstd, const T *dy, T *dx, T *dgamma, T *dbeta)
{
    for (int ch = 0; ch < c; ch++) {
        const T *xc = x + (long)ch * hw, *dyc = dy + (long)ch * hw;
        T *dxc = dx + (long)ch * hw;
        T m = mean[ch], s = rstd[ch];
        T sum_dy = 0, sum_dy_xhat = 0;
        for (int i = 0; i < hw; i++) {
            sum_dy += dyc[i];
            sum_dy_xhat += dyc[i] * (xc[i] - m) * s;
        }
        dbeta[ch] = sum_dy;
        dgamma[ch] = sum_dy_xhat;
        T a = sum_dy / hw, b = sum_dy_xhat / hw, gs = gamma[ch] * s;
        for (int i = 0; i < hw; i++)
            dxc[i] = gs * (dyc[i] - a - (xc[i] - m) * s * b);
    }
}

static void batchnorm_jvp(int c, int hw, T eps, const T *x, const T *gamma, const T *tx,
                          const T *tgamma, const T *tbeta, T *ty)
{
    for (int ch = 0; ch < c; ch++) {
        const T *xc = x + (long)ch * hw, *txc = tx + (long)ch * hw;
        T *tyc = ty + (long)ch * hw;
        T m, s = row_stats(hw, eps, xc, &m);
        T a, b;
        tangent_means(hw, xc, txc, m, s, &a, &b);
        T gs = gamma[ch] * s, tg = tgamma[ch], tb = tbeta[ch];
        for (int i = 0; i < hw; i++) {
            T xhat = (xc[i] - m) * s;
            tyc[i] = gs * (txc[i] - a - xhat * b) + xhat * tg + tb;
        }
    }
}

/* ---- GroupNorm, channel-last x[b][hw][c], groups of c/groups adjacent channels ----
 * Memory order: per-channel sums over the positions (a loop over channels inside, so it
 * vectorizes without reassociation), then summed over the group's channels; the per-group
 * statistics are expanded to per-channel arrays for the elementwise loops. ws: 6*c. */

/* sum over the channels of each group of acc[c] -> per-channel copies out[c] = sum * scale */
static void group_expand(int c, int groups, const T *acc, T scale, T *out)
{
    int cg = c / groups;
    for (int g = 0; g < groups; g++) {
        T s = 0;
        for (int k = 0; k < cg; k++)
            s += acc[g * cg + k];
        for (int k = 0; k < cg; k++)
            out[g * cg + k] = s * scale;
    }
}

/* per-channel mean mc[c] and rstd sc[c] of sample xs[hw][c] (mean[groups], rstd[groups] too
   unless NULL) */
static void groupnorm_stats(int hw, int c, int groups, T eps, const T *xs, T *mc, T *sc, T *acc,
                            T *mean, T *rstd)
{
    T n = (T)hw * (T)(c / groups);
    int cg = c / groups;
    for (int ch = 0; ch < c; ch++)
        acc[ch] = 0;
    for (int p = 0; p < hw; p++)
        for (int ch = 0; ch < c; ch++)
            acc[ch] += xs[(long)p * c + ch];
    group_expand(c, groups, acc, 1 / n, mc);
    for (int ch = 0; ch < c; ch++)
        acc[ch] = 0;
    for (int p = 0; p < hw; p++)
        for (int ch = 0; ch < c; ch++) {
            T d = xs[(long)p * c + ch] - mc[ch];
            acc[ch] += d * d;
        }
    group_expand(c, groups, acc, 1 / n, sc);
    for (int ch = 0; ch < c; ch++)
        sc[ch] = 1 / SQRT(sc[ch] + eps);
    for (int g = 0; mean && g < groups; g++) {
        mean[g] = mc[g * cg];
        rstd[g] = sc[g * cg];
    }
}

static void groupnorm_fwd(int b, int hw, int c, int groups, T eps, const T *x, const T *gamma,
                          const T *beta, T *y, T *mean, T *rstd, T *ws)
{
    T *mc = ws, *sc = ws + c, *acc = ws + 2 * c;
    for (int s = 0; s < b; s++) {
        const T *xs = x + (long)s * hw * c;
        T *ys = y + (long)s * hw * c;
        groupnorm_stats(hw, c, groups, eps, xs, mc, sc, acc, mean + s * groups,
                        rstd + s * groups);
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++)
                ys[(long)p * c + ch] = (xs[(long)p * c + ch] - mc[ch]) * sc[ch] * gamma[ch] + beta[ch];
    }
}

static void groupnorm_bwd(int b, int hw, int c, int groups, const T *x, const T *gamma,
                          const T *mean, const T *rstd, const T *dy, T *dx, T *dgamma, T *dbeta,
                          T *ws)
{
    int cg = c / groups;
    T n = (T)hw * (T)cg;
    T *mc = ws, *sc = ws + c, *a1 = ws + 2 * c, *a2 = ws + 3 * c, *ma = ws + 4 * c, *mb = ws + 5 * c;
    for (int ch = 0; ch < c; ch++)
        dgamma[ch] = dbeta[ch] = 0;
    for (int s = 0; s < b; s++) {
        const T *xs = x + (long)s * hw * c, *dys = dy + (long)s * hw * c;
        T *dxs = dx + (long)s * hw * c;
        for (int ch = 0; ch < c; ch++) {
            mc[ch] = mean[s * groups + ch / cg];
            sc[ch] = rstd[s * groups + ch / cg];
            a1[ch] = a2[ch] = 0;
        }
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++) {
                T d = dys[(long)p * c + ch];
                a1[ch] += d;
                a2[ch] += d * (xs[(long)p * c + ch] - mc[ch]) * sc[ch];
            }
        for (int ch = 0; ch < c; ch++) {
            dbeta[ch] += a1[ch];
            dgamma[ch] += a2[ch];
            a1[ch] = a1[ch] * gamma[ch]; /* sums of dxhat = dy gamma and of dxhat xhat */
            a2[ch] = a2[ch] * gamma[ch];
        }
        group_expand(c, groups, a1, 1 / n, ma);
        group_expand(c, groups, a2, 1 / n, mb);
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++) {
                long i = (long)p * c + ch;
                T xhat = (xs[i] - mc[ch]) * sc[ch];
                dxs[i] = sc[ch] * (gamma[ch] * dys[i] - ma[ch] - xhat * mb[ch]);
            }
    }
}

static void groupnorm_jvp(int b, int hw, int c, int groups, T eps, const T *x, const T *gamma,
                          const T *tx, const T *tgamma, const T *tbeta, T *ty, T *ws)
{
    T n = (T)hw * (T)(c / groups);
    T *mc = ws, *sc = ws + c, *a1 = ws + 2 * c, *a2 = ws + 3 * c, *ma = ws + 4 * c, *mb = ws + 5 * c;
    for (int s = 0; s < b; s++) {
        const T *xs = x + (long)s * hw * c, *txs = tx + (long)s * hw * c;
        T *tys = ty + (long)s * hw * c;
        groupnorm_stats(hw, c, groups, eps, xs, mc, sc, a1, NULL, NULL);
        for (int ch = 0; ch < c; ch++)
            a1[ch] = a2[ch] = 0;
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++) {
                long i = (long)p * c + ch;
                a1[ch] += txs[i];
                a2[ch] += txs[i] * (xs[i] - mc[ch]) * sc[ch];
            }
        group_expand(c, groups, a1, 1 / n, ma);
        group_expand(c, groups, a2, 1 / n, mb);
        for (int p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++) {
                long i = (long)p * c + ch;
                T xhat = (xs[i] - mc[ch]) * sc[ch];
                tys[i] = gamma[ch] * sc[ch] * (txs[i] - ma[ch] - xhat * mb[ch]) + xhat * tgamma[ch] + tbeta[ch];
            }
    }
}

/* ---- GELU, PyTorch's formulas ----
 *   erf:  y = x/2 (1 + erf(x/sqrt2)),  y' = (1 + erf(x/sqrt2))/2 + x exp(-x^2/2)/sqrt(2 pi)
 *   tanh: u = sqrt(2/pi) (x + 0.044715 x^3), t = tanh(u), y = x/2 (1 + t),
 *         y' = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) */
#define GELU_RSQRT2 ((T)0.70710678118654752440)
#define GELU_RSQRT2PI ((T)0.39894228040143267794)
#define GELU_K0 ((T)0.79788456080286535588)
#define GELU_K1 ((T)0.044715)

static void gelu_fwd(long n, int erf_form, const T *x, T *y)
{
    if (erf_form)
        for (long i = 0; i < n; i++)
            y[i] = (T)0.5 * x[i] * (1 + ERF(x[i] * GELU_RSQRT2));
    else
        for (long i = 0; i < n; i++) {
            T u = GELU_K0 * (x[i] + GELU_K1 * x[i] * x[i] * x[i]);
            y[i] = (T)0.5 * x[i] * (1 + TANH(u));
        }
}

/* out = gelu'(x) * g: the VJP (g a cotangent) and the JVP (g a tangent); out may be g */
static void gelu_grad_mul(long n, int erf_form, const T *x, const T *g, T *out)
{
    if (erf_form)
        for (long i = 0; i < n; i++) {
            T d = (T)0.5 * (1 + ERF(x[i] * GELU_RSQRT2)) + x[i] * EXP((T)-0.5 * x[i] * x[i]) * GELU_RSQRT2PI;
            out[i] = g[i] * d;
        }
    else
        for (long i = 0; i < n; i++) {
            T x2 = x[i] * x[i];
            T t = TANH(GELU_K0 * (x[i] + GELU_K1 * x2 * x[i]));
            T d = (T)0.5 * (1 + t) + (T)0.5 * x[i] * (1 - t * t) * GELU_K0 * (1 + 3 * GELU_K1 * x2);
            out[i] = g[i] * d;
        }
}

/* ---- matrix products with PyTorch Linear's layout, w[out][in] ---- */

#define MM_TILE 8

/* y[t][o] = (acc ? y[t][o] : 0) + sum_i x[t][i] w[o][i] (+ b[o] when b): llm.c's order, each
 * weight row read once per block of MM_TILE rows with one accumulator per row; the rows left
 * over (all of them when rows < MM_TILE) one at a time, a plain dot product */
static void matmul_fwd(int rows, int in, int out, const T *x, const T *w, const T *b, T *y, int acc)
{
    int t0 = 0;
    for (; t0 + MM_TILE <= rows; t0 += MM_TILE)
        for (int o = 0; o < out; o++) {
            const T *wr = w + (long)o * in;
            T s[MM_TILE] = {0};
            for (int i = 0; i < in; i++) {
                T wi = wr[i];
                for (int k = 0; k < MM_TILE; k++)
                    s[k] += x[(long)(t0 + k) * in + i] * wi;
            }
            for (int k = 0; k < MM_TILE; k++) {
                T v = b ? s[k] + b[o] : s[k];
                T *yo = y + (long)(t0 + k) * out + o;
                *yo = acc ? *yo + v : v;
            }
        }
    for (; t0 < rows; t0++)
        for (int o = 0; o < out; o++) {
            const T *wr = w + (long)o * in, *xr = x + (long)t0 * in;
            T s = 0;
            for (int i = 0; i < in; i++)
                s += xr[i] * wr[i];
            T v = b ? s + b[o] : s;
            T *yo = y + (long)t0 * out + o;
            *yo = acc ? *yo + v : v;
        }
}

/* dx[t][i] += sum_o dy[t][o] w[o][i] (axpy over the weight rows) */
static void matmul_bwd_data(int rows, int in, int out, const T *w, const T *dy, T *dx)
{
    for (int t = 0; t < rows; t++) {
        T *dxr = dx + (long)t * in;
        for (int o = 0; o < out; o++) {
            const T *wr = w + (long)o * in;
            T d = dy[(long)t * out + o];
            for (int i = 0; i < in; i++)
                dxr[i] += wr[i] * d;
        }
    }
}

/* dw[o][i] = sum_t dy[t][o] x[t][i], db[o] = sum_t dy[t][o] */
static void matmul_bwd_weights(int rows, int in, int out, const T *x, const T *dy, T *dw, T *db)
{
    for (int o = 0; o < out; o++) {
        T *dwr = dw + (long)o * in;
        for (int i = 0; i < in; i++)
            dwr[i] = 0;
        T s = 0;
        for (int t = 0; t < rows; t++) {
            const T *xr = x + (long)t * in;
            T d = dy[(long)t * out + o];
            s += d;
            for (int i = 0; i < in; i++)
                dwr[i] += xr[i] * d;
        }
        db[o] = s;
    }
}

/* ---- FFN with residual: y = x + w2 gelu(w1 x + b1) + b2, row by row of x[seq][dmodel] ---- */

static void ffn_fwd(int seq, int dm, int dff, int erf_form, const T *x, const T *w1, const T *b1,
                    const T *w2, const T *b2, T *y, T *hpre, T *h)
{
    matmul_fwd(seq, dm, dff, x, w1, b1, hpre, 0);
    gelu_fwd((long)seq * dff, erf_form, hpre, h);
    matmul_fwd(seq, dff, dm, h, w2, b2, y, 0);
    for (long i = 0; i < (long)seq * dm; i++)
        y[i] = x[i] + y[i];
}

/* dh (ws, [seq][dff]) = dy w2 * gelu'(hpre); dx = dy + dh w1 */
static void ffn_bwd(int seq, int dm, int dff, int erf_form, const T *x, const T *w1,
                    const T *w2, const T *hpre, const T *h, const T *dy, T *dx, T *dw1, T *db1,
                    T *dw2, T *db2, T *dh)
{
    matmul_bwd_weights(seq, dff, dm, h, dy, dw2, db2);
    memset(dh, 0, sizeof(T) * (size_t)seq * (size_t)dff);
    matmul_bwd_data(seq, dff, dm, w2, dy, dh);
    gelu_grad_mul((long)seq * dff, erf_form, hpre, dh, dh);
    matmul_bwd_weights(seq, dm, dff, x, dh, dw1, db1);
    memcpy(dx, dy, sizeof(T) * (size_t)seq * (size_t)dm);
    matmul_bwd_data(seq, dm, dff, w1, dh, dx);
}

/* th (ws) = (w1 tx + tw1 x + tb1) * gelu'(hpre); ty = tx + w2 th + tw2 h + tb2; hpre and h
 * are the forward's, recomputed (the JVP takes only inputs and tangents) */
static void ffn_jvp(int seq, int dm, int dff, int erf_form, const T *x, const T *w1, const T *b1,
                    const T *w2, const T *tx, const T *tw1, const T *tb1, const T *tw2,
                    const T *tb2, T *ty, T *hpre, T *h, T *th)
{
    matmul_fwd(seq, dm, dff, x, w1, b1, hpre, 0);
    gelu_fwd((long)seq * dff, erf_form, hpre, h);
    matmul_fwd(seq, dm, dff, tx, w1, tb1, th, 0);
    matmul_fwd(seq, dm, dff, x, tw1, NULL, th, 1);
    gelu_grad_mul((long)seq * dff, erf_form, hpre, th, th);
    matmul_fwd(seq, dff, dm, th, w2, tb2, ty, 0);
    matmul_fwd(seq, dff, dm, h, tw2, NULL, ty, 1);
    for (long i = 0; i < (long)seq * dm; i++)
        ty[i] = tx[i] + ty[i];
}

/* ---- the entry point ---- */

static void run_fwd(const hand_call *c)
{
    T eps = (T)c->eps;
    const int *d = c->d;
    switch (c->op) {
    case HAND_LAYERNORM:
        layernorm_fwd(d[0], d[1], eps, c->x, c->p[0], c->p[1], c->y, c->save[0], c->save[1]);
        break;
    case HAND_RMSNORM: rmsnorm_fwd(d[0], d[1], eps, c->x, c->p[0], c->y, c->save[1]); break;
    case HAND_BATCHNORM:
        batchnorm_fwd(d[0], d[1], eps, c->x, c->p[0], c->p[1], c->y, c->save[0], c->save[1]);
        break;
    case HAND_GROUPNORM:
        groupnorm_fwd(d[0], d[1], d[2], d[3], eps, c->x, c->p[0], c->p[1], c->y, c->save[0],
                      c->save[1], c->ws);
        break;
    case HAND_GELU: gelu_fwd(d[0], c->erf, c->x, c->y); break;
    case HAND_FFN:
        ffn_fwd(d[0], d[1], d[2], c->erf, c->x, c->p[0], c->p[1], c->p[2], c->p[3], c->y,
                c->save[0], c->save[1]);
        break;
    }
}

static void run_bwd(const hand_call *c)
{
    const int *d = c->d;
    switch (c->op) {
    case HAND_LAYERNORM:
        layernorm_bwd(d[0], d[1], c->x, c->p[0], c->save[0], c->save[1], c->dy, c->dx, c->dp[0],
                      c->dp[1]);
        break;
    case HAND_RMSNORM:
        rmsnorm_bwd(d[0], d[1], c->x, c->p[0], c->save[1], c->dy, c->dx, c->dp[0]);
        break;
    case HAND_BATCHNORM:
        batchnorm_bwd(d[0], d[1], c->x, c->p[0], c->save[0], c->save[1], c->dy, c->dx, c->dp[0],
                      c->dp[1]);
        break;
    case HAND_GROUPNORM:
        groupnorm_bwd(d[0], d[1], d[2], d[3], c->x, c->p[0], c->save[0], c->save[1], c->dy,
                      c->dx, c->dp[0], c->dp[1], c->ws);
        break;
    case HAND_GELU: gelu_grad_mul(d[0], c->erf, c->x, c->dy, c->dx); break;
    case HAND_FFN:
        ffn_bwd(d[0], d[1], d[2], c->erf, c->x, c->p[0], c->p[2], c->save[0], c->save[1], c->dy,
                c->dx, c->dp[0], c->dp[1], c->dp[2], c->dp[3], c->ws);
        break;
    }
}

static void run_jvp(const hand_call *c)
{
    T eps = (T)c->eps;
    const int *d = c->d;
    switch (c->op) {
    case HAND_LAYERNORM:
        layernorm_jvp(d[0], d[1], eps, c->x, c->p[0], c->tx, c->tp[0], c->tp[1], c->ty);
        break;
    case HAND_RMSNORM: rmsnorm_jvp(d[0], d[1], eps, c->x, c->p[0], c->tx, c->tp[0], c->ty); break;
    case HAND_BATCHNORM:
        batchnorm_jvp(d[0], d[1], eps, c->x, c->p[0], c->tx, c->tp[0], c->tp[1], c->ty);
        break;
    case HAND_GROUPNORM:
        groupnorm_jvp(d[0], d[1], d[2], d[3], eps, c->x, c->p[0], c->tx, c->tp[0], c->tp[1],
                      c->ty, c->ws);
        break;
    case HAND_GELU: gelu_grad_mul(d[0], c->erf, c->x, c->tx, c->ty); break;
    case HAND_FFN:
        ffn_jvp(d[0], d[1], d[2], c->erf, c->x, c->p[0], c->p[1], c->p[2], c->tx, c->tp[0],
                c->tp[1], c->tp[2], c->tp[3], c->ty, c->save[0], c->save[1], c->ws);
        break;
    }
}

void HAND_CAT(HAND_PREFIX, HAND_SUFFIX)(const hand_call *c)
{
    switch (c->pass) {
    case HAND_FWD: run_fwd(c); break;
    case HAND_BWD: run_bwd(c); break;
    case HAND_JVP: run_jvp(c); break;
    case HAND_TRAIN:
        run_fwd(c);
        run_bwd(c);
        break;
    }
}

