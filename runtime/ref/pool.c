/*
 * pool.c — 2-d max and average pooling, NCHW, forward and backward side
 * by side.  Window (oy,ox) covers input rows oy*sh - pt .. + kh-1 and
 * columns ox*sw - pl .. + kw-1; taps outside the input are padding.
 *
 *   max: padding never wins (it is -inf); ties go to the first maximum in
 *        row-major window order, which alone receives the gradient.
 *   avg: the sum of the taps inside the input over kh*kw, the padding
 *        counting in the divisor (PyTorch's count_include_pad=True).
 */
#include "ref.h"

#include <math.h>
#include <string.h>

/* The input index of the first maximum of window (i,c,oy,ox), -1 if the
 * window holds only padding. */
static int64_t argmax(const float *x, const KpRefConv *s, int64_t i, int64_t c, int64_t oy,
                      int64_t ox)
{
    int64_t best = -1;
    float m = -INFINITY;
    for (int64_t ky = 0; ky < s->kh; ky++) {
        int64_t iy = oy * s->sh - s->pt + ky;
        if (iy < 0 || iy >= s->h)
            continue;
        for (int64_t kx = 0; kx < s->kw; kx++) {
            int64_t ix = ox * s->sw - s->pl + kx;
            if (ix < 0 || ix >= s->w)
                continue;
            int64_t at = ((i * s->c + c) * s->h + iy) * s->w + ix;
            if (best < 0 || x[at] > m) {
                best = at;
                m = x[at];
            }
        }
    }
    return best;
}

/* x (n,c,h,w) -> y (n,c,oh,ow); a window of padding only gives 0 */
void kp_ref_maxpool2d_forward(float *y, const float *x, const KpRefConv *s)
{
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    int64_t at = argmax(x, s, i, c, oy, ox);
                    y[((i * s->c + c) * s->oh + oy) * s->ow + ox] = at < 0 ? 0.0f : x[at];
                }
}

/* dy (n,c,oh,ow), x (n,c,h,w) -> dx (n,c,h,w), overwritten */
void kp_ref_maxpool2d_backward(float *dx, const float *dy, const float *x, const KpRefConv *s)
{
    memset(dx, 0, (size_t)(s->n * s->c * s->h * s->w) * sizeof *dx);
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    int64_t at = argmax(x, s, i, c, oy, ox);
                    if (at >= 0)
                        dx[at] += dy[((i * s->c + c) * s->oh + oy) * s->ow + ox];
                }
}

/* x (n,c,h,w) -> y (n,c,oh,ow) */
void kp_ref_avgpool2d_forward(float *y, const float *x, const KpRefConv *s)
{
    float inv = 1.0f / (float)(s->kh * s->kw);
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    float acc = 0.0f;
                    for (int64_t ky = 0; ky < s->kh; ky++) {
                        int64_t iy = oy * s->sh - s->pt + ky;
                        if (iy < 0 || iy >= s->h)
                            continue;
                        for (int64_t kx = 0; kx < s->kw; kx++) {
                            int64_t ix = ox * s->sw - s->pl + kx;
                            if (ix >= 0 && ix < s->w)
                                acc += x[((i * s->c + c) * s->h + iy) * s->w + ix];
                        }
                    }
                    y[((i * s->c + c) * s->oh + oy) * s->ow + ox] = acc * inv;
                }
}

/* dy (n,c,oh,ow) -> dx (n,c,h,w), overwritten */
void kp_ref_avgpool2d_backward(float *dx, const float *dy, const KpRefConv *s)
{
    float inv = 1.0f / (float)(s->kh * s->kw);
    memset(dx, 0, (size_t)(s->n * s->c * s->h * s->w) * sizeof *dx);
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    float g = dy[((i * s->c + c) * s->oh + oy) * s->ow + ox] * inv;
                    for (int64_t ky = 0; ky < s->kh; ky++) {
                        int64_t iy = oy * s->sh - s->pt + ky;
                        if (iy < 0 || iy >= s->h)
                            continue;
                        for (int64_t kx = 0; kx < s->kw; kx++) {
                            int64_t ix = ox * s->sw - s->pl + kx;
                            if (ix >= 0 && ix < s->w)
                                dx[((i * s->c + c) * s->h + iy) * s->w + ix] += g;
                        }
                    }
                }
}
