/*
 * loss.c — the losses, forward and backward side by side.
 *
 * Every loss is the mean (PyTorch's reduction='mean'): cross_entropy over
 * the n samples, the others over all count elements.  Sums are taken in
 * double and the result rounded to float once.  Each backward writes the
 * gradient of that mean with respect to the prediction (overwriting), so
 * it already carries the 1/n or 1/count.
 */
#include <math.h>

#include "ref.h"

/* logits (n,c), labels (n) in [0,c) -> mean_i (logsumexp(logits[i]) - logits[i,label_i]).
 * The row max m is subtracted before exponentiating: logsumexp = m + log sum e^(x-m). */
float kp_ref_cross_entropy_forward(const float *logits, const int32_t *labels, int64_t n, int64_t c)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * c;
        float max = row[0];
        for (int64_t j = 1; j < c; j++)
            if (row[j] > max)
                max = row[j];
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += exp((double)row[j] - max);
        total += (double)max + log(sum) - row[labels[i]];
    }
    return (float)(total / (double)n);
}

/* logits (n,c), labels (n) -> dlogits (n,c) = (softmax(logits[i]) - onehot(label_i)) / n */
void kp_ref_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels,
                                   int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * c;
        float *drow = dlogits + i * c;
        float max = row[0];
        for (int64_t j = 1; j < c; j++)
            if (row[j] > max)
                max = row[j];
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += exp((double)row[j] - max);
        for (int64_t j = 0; j < c; j++) {
            double p = exp((double)row[j] - max) / sum;
            drow[j] = (float)((p - (j == labels[i] ? 1.0 : 0.0)) / (double)n);
        }
    }
}

/* pred, target (count) -> mean (pred - target)^2 */
float kp_ref_mse_forward(const float *pred, const float *target, int64_t count)
{
    double total = 0.0;
    for (int64_t i = 0; i < count; i++) {
        double e = (double)pred[i] - target[i];
        total += e * e;
    }
    return (float)(total / (double)count);
}

/* dpred (count) = 2 (pred - target) / count */
void kp_ref_mse_backward(float *dpred, const float *pred, const float *target, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        dpred[i] = (float)(2.0 * ((double)pred[i] - target[i]) / (double)count);
}

/* log(x) clamped at -100, as PyTorch's binary_cross_entropy does, so that
 * p = 0 or 1 gives a finite loss */
static double clamped_log(double x)
{
    double l = log(x);
    return l < -100.0 ? -100.0 : l;
}

/* p (probabilities), t (count) -> mean -(t log p + (1-t) log(1-p)) */
float kp_ref_bce_forward(const float *p, const float *t, int64_t count)
{
    double total = 0.0;
    for (int64_t i = 0; i < count; i++)
        total -= t[i] * clamped_log(p[i]) + (1.0 - t[i]) * clamped_log(1.0 - p[i]);
    return (float)(total / (double)count);
}

/* dp (count) = (p - t) / max(p (1-p), 1e-12) / count (PyTorch's epsilon) */
void kp_ref_bce_backward(float *dp, const float *p, const float *t, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        double pi = p[i], denom = pi * (1.0 - pi);
        if (denom < 1e-12)
            denom = 1e-12;
        dp[i] = (float)((pi - t[i]) / denom / (double)count);
    }
}

/* z (logits), t (count) -> mean max(z,0) - z t + log(1 + e^-|z|), the
 * stable form of -(t log sigmoid(z) + (1-t) log(1 - sigmoid(z))) */
float kp_ref_bce_logits_forward(const float *z, const float *t, int64_t count)
{
    double total = 0.0;
    for (int64_t i = 0; i < count; i++) {
        double zi = z[i];
        total += (zi > 0.0 ? zi : 0.0) - zi * t[i] + log1p(exp(-fabs(zi)));
    }
    return (float)(total / (double)count);
}

/* dz (count) = (sigmoid(z) - t) / count */
void kp_ref_bce_logits_backward(float *dz, const float *z, const float *t, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        double s = 1.0 / (1.0 + exp(-(double)z[i]));
        dz[i] = (float)((s - t[i]) / (double)count);
    }
}
