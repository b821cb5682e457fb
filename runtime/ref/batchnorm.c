/*
 * batchnorm.c — batch normalization over x (n,c,hw), per channel c, with
 * M = n*hw values per channel (hw = 1 for rank-1 samples), forward and
 * backward side by side (PyTorch's BatchNorm1d/2d):
 *
 *   inference  y = (x - rmean) / sqrt(rvar + eps) * gamma + beta
 *   training   mean = sum x / M,  var = sum (x - mean)^2 / M  (biased),
 *              invstd = 1 / sqrt(var + eps),  xhat = (x - mean) invstd,
 *              y = xhat gamma + beta;
 *              rmean = (1-momentum) rmean + momentum mean,
 *              rvar  = (1-momentum) rvar  + momentum var M/(M-1)  (unbiased;
 *              with M = 1, where PyTorch refuses to train, the biased 0)
 *   backward   dbeta = sum dy,  dgamma = sum dy xhat,
 *              dx = gamma invstd / M (M dy - dbeta - xhat dgamma)
 *
 * Sums over a channel are taken in double.
 */
#include "ref.h"

#include <math.h>

/* x, y (n,c,hw); gamma, beta, rmean, rvar (c) */
void kp_ref_batchnorm_infer(float *y, const float *x, const float *gamma, const float *beta,
                            const float *rmean, const float *rvar, float eps, int64_t n,
                            int64_t c, int64_t hw)
{
    for (int64_t ch = 0; ch < c; ch++) {
        float scale = gamma[ch] / sqrtf(rvar[ch] + eps);
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t at = (i * c + ch) * hw + p;
                y[at] = (x[at] - rmean[ch]) * scale + beta[ch];
            }
    }
}

/* x (n,c,hw) -> mean, invstd (c); rmean, rvar (c) updated in place */
void kp_ref_batchnorm_stats(float *mean, float *invstd, float *rmean, float *rvar, const float *x,
                            float eps, float momentum, int64_t n, int64_t c, int64_t hw)
{
    int64_t m = n * hw;
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++)
                sum += x[(i * c + ch) * hw + p];
        double mu = sum / (double)m;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++) {
                double dev = x[(i * c + ch) * hw + p] - mu;
                sq += dev * dev;
            }
        double var = sq / (double)m;
        double unbiased = m > 1 ? sq / (double)(m - 1) : var;
        mean[ch] = (float)mu;
        invstd[ch] = (float)(1.0 / sqrt(var + (double)eps));
        rmean[ch] = (1.0f - momentum) * rmean[ch] + momentum * (float)mu;
        rvar[ch] = (1.0f - momentum) * rvar[ch] + momentum * (float)unbiased;
    }
}

/* x, y (n,c,hw); mean, invstd, gamma, beta (c) */
void kp_ref_batchnorm_train(float *y, const float *x, const float *mean, const float *invstd,
                            const float *gamma, const float *beta, int64_t n, int64_t c,
                            int64_t hw)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t at = (i * c + ch) * hw + p;
                y[at] = (x[at] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
            }
}

/* dy, x (n,c,hw); mean, invstd, gamma (c) ->
 *   dx (n,c,hw) overwritten (skipped if NULL), dgamma (c) +=, dbeta (c) +=
 *   (either skipped if NULL) */
void kp_ref_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *mean, const float *invstd,
                               const float *gamma, int64_t n, int64_t c, int64_t hw)
{
    double m = (double)(n * hw);
    for (int64_t ch = 0; ch < c; ch++) {
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t at = (i * c + ch) * hw + p;
                sdy += dy[at];
                sdyx += dy[at] * ((double)x[at] - mean[ch]) * invstd[ch];
            }
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
        if (!dx)
            continue;
        double k = (double)gamma[ch] * invstd[ch] / m;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t at = (i * c + ch) * hw + p;
                double xhat = ((double)x[at] - mean[ch]) * invstd[ch];
                dx[at] = (float)(k * (m * dy[at] - sdy - xhat * sdyx));
            }
    }
}
