/*
 * masking.c — Keras's Masking on rank-1 samples: a sample whose features
 * all equal value is zeroed, the others pass unchanged.  The mask is a
 * constant of the input, as in Keras: a masked sample gets no gradient.
 */
#include "ref.h"

#include <stdbool.h>

static bool masked(const float *xi, float value, int64_t d)
{
    for (int64_t k = 0; k < d; k++)
        if (xi[k] != value)
            return false;
    return true;
}

/* x (n,d) -> y (n,d) */
void kp_ref_masking_forward(float *y, const float *x, float value, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        bool m = masked(x + i * d, value, d);
        for (int64_t k = 0; k < d; k++)
            y[i * d + k] = m ? 0.0f : x[i * d + k];
    }
}

/* dy, x (n,d) -> dx (n,d): dy where the sample is kept, 0 where masked */
void kp_ref_masking_backward(float *dx, const float *dy, const float *x, float value, int64_t n,
                             int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        bool m = masked(x + i * d, value, d);
        for (int64_t k = 0; k < d; k++)
            dx[i * d + k] = m ? 0.0f : dy[i * d + k];
    }
}
