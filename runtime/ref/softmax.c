/*
 * softmax.c — softmax along the last axis, forward and backward.
 */
#include <math.h>

#include "ref.h"

/* x (rows,cols) -> y (rows,cols), y[r,j] = e^(x[r,j] - m) / sum_k e^(x[r,k] - m),
 * m = max_k x[r,k] so that no exponential overflows. */
void kp_ref_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float max = -INFINITY;
        for (int64_t j = 0; j < cols; j++)
            if (xr[j] > max)
                max = xr[j];
        float sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) {
            yr[j] = expf(xr[j] - max);
            sum += yr[j];
        }
        for (int64_t j = 0; j < cols; j++)
            yr[j] /= sum;
    }
}

/* y, dy (rows,cols) -> dx (rows,cols), dx[r,j] = y[r,j] (dy[r,j] - sum_k dy[r,k] y[r,k]) */
void kp_ref_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols;
        const float *dyr = dy + r * cols;
        float dot = 0.0f;
        for (int64_t j = 0; j < cols; j++)
            dot += dyr[j] * yr[j];
        for (int64_t j = 0; j < cols; j++)
            dx[r * cols + j] = yr[j] * (dyr[j] - dot);
    }
}
