/*
 * optim.c — the optimizer steps of DESIGN.md, one loop over count floats
 * of the parameter slab (theta), its gradients (g) and the optimizer
 * state.  Arithmetic in float, in the order written, which the generated
 * apply follows; only adam's bias corrections are computed in double and
 * rounded once.
 */
#include <math.h>

#include "ref.h"

/* theta, g (count): theta -= lr (g + wd theta) */
void kp_ref_sgd_update(float *theta, const float *g, int64_t count, float lr, float wd)
{
    for (int64_t i = 0; i < count; i++)
        theta[i] -= lr * (g[i] + wd * theta[i]);
}

/* theta, g, v (count): v = beta v + (1-beta) g; theta -= lr v
 * (torch.optim.SGD(momentum=beta, dampening=beta)); v starts at 0 */
void kp_ref_momentum_update(float *theta, const float *g, float *v, int64_t count, float lr,
                            float beta)
{
    for (int64_t i = 0; i < count; i++) {
        v[i] = beta * v[i] + (1.0f - beta) * g[i];
        theta[i] -= lr * v[i];
    }
}

/* theta, g, m, v (count), step t >= 1:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   theta -= (lr / c1) m / (sqrt(v) / sqrt(c2) + eps),  c1 = 1-b1^t, c2 = 1-b2^t
 * which is lr m_hat / (sqrt(v_hat) + eps) arranged as torch.optim.Adam does. */
void kp_ref_adam_update(float *theta, const float *g, float *m, float *v, int64_t count,
                        int64_t step, float lr, float beta1, float beta2, float eps)
{
    float step_size = (float)((double)lr / (1.0 - pow((double)beta1, (double)step)));
    float sqrt_c2 = (float)sqrt(1.0 - pow((double)beta2, (double)step));
    for (int64_t i = 0; i < count; i++) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        theta[i] -= step_size * m[i] / (sqrtf(v[i]) / sqrt_c2 + eps);
    }
}
