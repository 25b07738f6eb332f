/* hand.h: the hand-written baselines of the benchmark, plain loops as one would write them
 * (llm.c style): runtime dims, one sequential accumulator per reduction, two-pass statistics.
 * No include guard on purpose: the includer defines HAND(name) to name the functions, so the
 * same loops can be compiled with different flags under different names:
 *   bench.c      HAND(f) = hand_##f   gcc -O3 -march=native -ffp-contract=off (as the kernels)
 *   hand_fast.c  HAND(f) = fast_##f   gcc -O3 -march=native -ffast-math
 *   hand_fast.c  HAND(f) = tcc_##f    tcc (-DHAND_TCC)
 * Define HAND_PROTOTYPES_ONLY to get only the declarations. */
#include <math.h>

/* y[rows][dim] = (x - mean) / sqrt(var + eps) * gamma + beta, per row */
void HAND(layernorm_f32)(int rows, int dim, float eps, const float *x, const float *gamma,
                         const float *beta, float *y);
void HAND(layernorm_f64)(int rows, int dim, double eps, const double *x, const double *gamma,
                         const double *beta, double *y);
/* closed-form backward: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with
 * dxhat = dy * gamma; dgamma = sum_rows dy * xhat; dbeta = sum_rows dy. Recomputes mean and
 * rstd, as the generated VJP does (it takes x, not saved statistics). */
void HAND(layernorm_vjp_f32)(int rows, int dim, float eps, const float *x, const float *gamma,
                             const float *dy, float *dx, float *dgamma, float *dbeta);
/* y = x / sqrt(mean(x^2) + eps) * gamma, per row */
void HAND(rmsnorm_f32)(int rows, int dim, float eps, const float *x, const float *gamma,
                       float *y);
/* y = x + w2 gelu(w1 x + b1) + b2, GELU erf (erf = 1) or tanh; hidden[dff] is scratch */
void HAND(ffn_f32)(int dmodel, int dff, int erf, const float *x, const float *w1, const float *b1,
                   const float *w2, const float *b2, float *y, float *hidden);
/* y[n] = gelu(x) and dx[n] = dy gelu'(x), PyTorch's formulas written directly with libm */
void HAND(gelu_f32)(int n, int erf, const float *x, float *y);
void HAND(gelu_bwd_f32)(int n, int erf, const float *x, const float *dy, float *dx);

#ifndef HAND_PROTOTYPES_ONLY

void HAND(layernorm_f32)(int rows, int dim, float eps, const float *x, const float *gamma,
                         const float *beta, float *y)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        float *yr = y + (long)r * dim;
        float sum = 0.0f;
        for (int i = 0; i < dim; i++)
            sum += xr[i];
        float mean = sum / dim;
        float var = 0.0f;
        for (int i = 0; i < dim; i++) {
            float d = xr[i] - mean;
            var += d * d;
        }
        var /= dim;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
    }
}

void HAND(layernorm_f64)(int rows, int dim, double eps, const double *x, const double *gamma,
                         const double *beta, double *y)
{
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (long)r * dim;
        double *yr = y + (long)r * dim;
        double sum = 0.0;
        for (int i = 0; i < dim; i++)
            sum += xr[i];
        double mean = sum / dim;
        double var = 0.0;
        for (int i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
    }
}

void HAND(layernorm_vjp_f32)(int rows, int dim, float eps, const float *x, const float *gamma,
                             const float *dy, float *dx, float *dgamma, float *dbeta)
{
    for (int i = 0; i < dim; i++) {
        dgamma[i] = 0.0f;
        dbeta[i] = 0.0f;
    }
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        const float *dyr = dy + (long)r * dim;
        float *dxr = dx + (long)r * dim;
        float sum = 0.0f;
        for (int i = 0; i < dim; i++)
            sum += xr[i];
        float mean = sum / dim;
        float var = 0.0f;
        for (int i = 0; i < dim; i++) {
            float d = xr[i] - mean;
            var += d * d;
        }
        var /= dim;
        float rstd = 1.0f / sqrtf(var + eps);
        float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
        for (int i = 0; i < dim; i++) {
            float xhat = (xr[i] - mean) * rstd;
            float dxhat = dyr[i] * gamma[i];
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
            dbeta[i] += dyr[i];
            dgamma[i] += dyr[i] * xhat;
        }
        float mean_dxhat = sum_dxhat / dim, mean_dxhat_xhat = sum_dxhat_xhat / dim;
        for (int i = 0; i < dim; i++) {
            float xhat = (xr[i] - mean) * rstd;
            float dxhat = dyr[i] * gamma[i];
            dxr[i] = rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    }
}

void HAND(rmsnorm_f32)(int rows, int dim, float eps, const float *x, const float *gamma,
                       float *y)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        float *yr = y + (long)r * dim;
        float sum = 0.0f;
        for (int i = 0; i < dim; i++)
            sum += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(sum / dim + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = xr[i] * inv * gamma[i];
    }
}

static float HAND(gelu1)(int erf, float s)
{
    if (erf)
        return 0.5f * s * (1.0f + erff(s * 0.70710678f));
    return 0.5f * s * (1.0f + tanhf(0.7978845608f * (s + 0.044715f * s * s * s)));
}

void HAND(ffn_f32)(int dmodel, int dff, int erf, const float *x, const float *w1, const float *b1,
                   const float *w2, const float *b2, float *y, float *hidden)
{
    for (int j = 0; j < dff; j++) {
        const float *row = w1 + (long)j * dmodel;
        float s = b1[j];
        for (int k = 0; k < dmodel; k++)
            s += row[k] * x[k];
        hidden[j] = HAND(gelu1)(erf, s);
    }
    for (int i = 0; i < dmodel; i++) {
        const float *row = w2 + (long)i * dff;
        float s = b2[i];
        for (int j = 0; j < dff; j++)
            s += row[j] * hidden[j];
        y[i] = x[i] + s;
    }
}

void HAND(gelu_f32)(int n, int erf, const float *x, float *y)
{
    if (erf)
        for (int i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678f));
    else
        for (int i = 0; i < n; i++) {
            float s = x[i];
            y[i] = 0.5f * s * (1.0f + tanhf(0.7978845608f * (s + 0.044715f * s * s * s)));
        }
}

void HAND(gelu_bwd_f32)(int n, int erf, const float *x, const float *dy, float *dx)
{
    if (erf)
        for (int i = 0; i < n; i++) {
            float s = x[i];
            dx[i] = dy[i] * (0.5f * (1.0f + erff(s * 0.70710678f)) + s * expf(-0.5f * s * s) * 0.39894228f);
        }
    else
        for (int i = 0; i < n; i++) {
            float s = x[i], t = tanhf(0.7978845608f * (s + 0.044715f * s * s * s));
            dx[i] = dy[i] * (0.5f * (1.0f + t) +
                             0.5f * s * (1.0f - t * t) * 0.7978845608f * (1.0f + 0.134145f * s * s));
        }
}

#endif /* HAND_PROTOTYPES_ONLY */
