/*
 * conv.c — 2-d convolution and its transpose, NCHW, forward and backward
 * side by side (PyTorch's Conv2d and ConvTranspose2d, cross-correlation).
 *
 * One index map serves all four kernels: output pixel (oy,ox) of the conv
 * reads input pixel
 *     iy = oy*sh - pt + ky*dh,   ix = ox*sw - pl + kx*dw
 * and taps outside [0,h) x [0,w) are the zero padding.  The bottom/right
 * padding is whatever s->oh, s->ow imply, so TensorFlow's uneven "same"
 * needs nothing special.  The transposed conv is the adjoint of that map:
 * its input is the conv's output side and its output the conv's input
 * side, so it scatters where the conv gathers.
 */
#include "ref.h"

#include <string.h>

/* x (n,c,h,w), w (f,c,kh,kw) with filters s->wf floats apart if set, b (f) or NULL -> y (n,f,oh,ow) */
void kp_ref_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                           const KpRefConv *s)
{
    int64_t wf = s->wf > 0 ? s->wf : s->c * s->kh * s->kw;
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t f = 0; f < s->f; f++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    float acc = b ? b[f] : 0.0f;
                    for (int64_t c = 0; c < s->c; c++)
                        for (int64_t ky = 0; ky < s->kh; ky++) {
                            int64_t iy = oy * s->sh - s->pt + ky * s->dh;
                            if (iy < 0 || iy >= s->h)
                                continue;
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t ix = ox * s->sw - s->pl + kx * s->dw;
                                if (ix < 0 || ix >= s->w)
                                    continue;
                                acc += x[((i * s->c + c) * s->h + iy) * s->w + ix] *
                                       w[f * wf + (c * s->kh + ky) * s->kw + kx];
                            }
                        }
                    y[((i * s->f + f) * s->oh + oy) * s->ow + ox] = acc;
                }
}

/* dy (n,f,oh,ow), x (n,c,h,w), w (f,c,kh,kw) ->
 *   dx (n,c,h,w)     overwritten (skipped if NULL; reads w)
 *   dw (f,c,kh,kw)   += (skipped if NULL; reads x)
 *   db (f)           += sum of dy over n, oh, ow (skipped if NULL) */
void kp_ref_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const KpRefConv *s)
{
    if (dx)
        memset(dx, 0, (size_t)(s->n * s->c * s->h * s->w) * sizeof *dx);
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t f = 0; f < s->f; f++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    float g = dy[((i * s->f + f) * s->oh + oy) * s->ow + ox];
                    if (db)
                        db[f] += g;
                    for (int64_t c = 0; c < s->c; c++)
                        for (int64_t ky = 0; ky < s->kh; ky++) {
                            int64_t iy = oy * s->sh - s->pt + ky * s->dh;
                            if (iy < 0 || iy >= s->h)
                                continue;
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t ix = ox * s->sw - s->pl + kx * s->dw;
                                if (ix < 0 || ix >= s->w)
                                    continue;
                                int64_t xi = ((i * s->c + c) * s->h + iy) * s->w + ix;
                                int64_t wi = ((f * s->c + c) * s->kh + ky) * s->kw + kx;
                                if (dx)
                                    dx[xi] += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                        }
                }
}

/* The transposed conv: x (n,c,h,w), w (c,f,kh,kw), b (f) or NULL -> y (n,f,oh,ow).
 * Input pixel (iy,ix) adds x * w into output pixel (oy,ox) = (iy*sh - pt + ky*dh, ...). */
void kp_ref_conv2d_transpose_forward(float *y, const float *x, const float *w, const float *b,
                                     const KpRefConv *s)
{
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t f = 0; f < s->f; f++)
            for (int64_t p = 0; p < s->oh * s->ow; p++)
                y[(i * s->f + f) * s->oh * s->ow + p] = b ? b[f] : 0.0f;
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t iy = 0; iy < s->h; iy++)
                for (int64_t ix = 0; ix < s->w; ix++) {
                    float v = x[((i * s->c + c) * s->h + iy) * s->w + ix];
                    for (int64_t f = 0; f < s->f; f++)
                        for (int64_t ky = 0; ky < s->kh; ky++) {
                            int64_t oy = iy * s->sh - s->pt + ky * s->dh;
                            if (oy < 0 || oy >= s->oh)
                                continue;
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t ox = ix * s->sw - s->pl + kx * s->dw;
                                if (ox < 0 || ox >= s->ow)
                                    continue;
                                y[((i * s->f + f) * s->oh + oy) * s->ow + ox] +=
                                    v * w[((c * s->f + f) * s->kh + ky) * s->kw + kx];
                            }
                        }
                }
}

/* dy (n,f,oh,ow), x (n,c,h,w), w (c,f,kh,kw) ->
 *   dx (n,c,h,w)     overwritten: the conv2d of dy with w (skipped if NULL; reads w)
 *   dw (c,f,kh,kw)   += (skipped if NULL; reads x)
 *   db (f)           += sum of dy over n, oh, ow (skipped if NULL) */
void kp_ref_conv2d_transpose_backward(float *dx, float *dw, float *db, const float *dy,
                                      const float *x, const float *w, const KpRefConv *s)
{
    for (int64_t i = 0; db && i < s->n; i++)
        for (int64_t f = 0; f < s->f; f++)
            for (int64_t p = 0; p < s->oh * s->ow; p++)
                db[f] += dy[(i * s->f + f) * s->oh * s->ow + p];
    for (int64_t i = 0; i < s->n; i++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t iy = 0; iy < s->h; iy++)
                for (int64_t ix = 0; ix < s->w; ix++) {
                    int64_t xi = ((i * s->c + c) * s->h + iy) * s->w + ix;
                    float acc = 0.0f;
                    for (int64_t f = 0; f < s->f; f++)
                        for (int64_t ky = 0; ky < s->kh; ky++) {
                            int64_t oy = iy * s->sh - s->pt + ky * s->dh;
                            if (oy < 0 || oy >= s->oh)
                                continue;
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t ox = ix * s->sw - s->pl + kx * s->dw;
                                if (ox < 0 || ox >= s->ow)
                                    continue;
                                float g = dy[((i * s->f + f) * s->oh + oy) * s->ow + ox];
                                int64_t wi = ((c * s->f + f) * s->kh + ky) * s->kw + kx;
                                if (dx)
                                    acc += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                        }
                    if (dx)
                        dx[xi] = acc;
                }
}
