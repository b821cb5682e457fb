/*
 * dense.c — the fully connected layer, y = x W^T + b (PyTorch's Linear), and the
 * bias gradient every layer with a per-channel bias shares.
 */
#include "ref.h"

/* x (n,in), w (out,in), b (out) or NULL -> y (n,out)
 * Each y[i,o] starts from the bias and accumulates in float, k = 0..in-1. */
void kp_ref_dense_forward(float *y, const float *x, const float *w, const float *b, int64_t n,
                          int64_t in, int64_t out)
{
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * in;
        for (int64_t o = 0; o < out; o++) {
            const float *wo = w + o * in;
            float acc = b ? b[o] : 0.0f;
            for (int64_t k = 0; k < in; k++)
                acc += xi[k] * wo[k];
            y[i * out + o] = acc;
        }
    }
}

/* dy (n,out), x (n,in), w (out,in) ->
 *   dx (n,in)   = dy w          (overwritten; skipped if NULL)
 *   dw (out,in) += dy^T x       (accumulated; skipped if NULL)
 *   db (out)    += sum_i dy[i]  (accumulated; skipped if NULL) */
void kp_ref_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *w, int64_t n, int64_t in, int64_t out)
{
    for (int64_t i = 0; i < n; i++) {
        const float *dyi = dy + i * out;
        const float *xi = x + i * in;
        if (dx) {
            float *dxi = dx + i * in;
            for (int64_t k = 0; k < in; k++) {
                float acc = 0.0f;
                for (int64_t o = 0; o < out; o++)
                    acc += dyi[o] * w[o * in + k];
                dxi[k] = acc;
            }
        }
        for (int64_t o = 0; o < out; o++) {
            if (dw) {
                for (int64_t k = 0; k < in; k++)
                    dw[o * in + k] += dyi[o] * xi[k];
            }
            if (db)
                db[o] += dyi[o];
        }
    }
}

/* dy (n,c,hw) -> db (c) += sum over i and p of dy[i,c,p] */
void kp_ref_bias_backward(float *db, const float *dy, int64_t n, int64_t c, int64_t hw)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t p = 0; p < hw; p++)
                db[ch] += dy[(i * c + ch) * hw + p];
}
