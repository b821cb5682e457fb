/*
 * activation.c — elementwise activations, forward and backward.
 * All arrays hold count floats; dx is overwritten, dx = dy * f'(.).
 * The backward of relu and leaky relu takes the input x; sigmoid and tanh
 * take the output y, from which their derivative is cheapest.
 */
#include <math.h>

#include "ref.h"

/* y = max(x, 0) */
void kp_ref_relu_forward(float *y, const float *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* f'(x) = 1 if x > 0 else 0 (0 at x = 0, as PyTorch) */
void kp_ref_relu_backward(float *dx, const float *dy, const float *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

/* y = x if x > 0 else alpha x */
void kp_ref_leaky_relu_forward(float *y, const float *x, float alpha, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
}

/* f'(x) = 1 if x > 0 else alpha */
void kp_ref_leaky_relu_backward(float *dx, const float *dy, const float *x, float alpha, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
}

/* y = 1 / (1 + e^-x) */
void kp_ref_sigmoid_forward(float *y, const float *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

/* f' = y (1 - y) */
void kp_ref_sigmoid_backward(float *dx, const float *dy, const float *y, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

/* y = tanh x */
void kp_ref_tanh_forward(float *y, const float *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        y[i] = tanhf(x[i]);
}

/* f' = 1 - y^2 */
void kp_ref_tanh_backward(float *dx, const float *dy, const float *y, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}
