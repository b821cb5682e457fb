/*
 * fgsm.h — the fast gradient sign method (Goodfellow et al., 2015) on the
 * public API: the gradient of a classifier's cross-entropy with respect to
 * its raw input pixels, and the attack built from it,
 *
 *     x_adv = clip(x + eps * sign(grad_x loss(model(normalize(x)), label)), 0, 1).
 *
 * Pixels stay raw ([0,1]) on the host side, so eps is in pixel units; the
 * model file's train.normalize is applied just before the model sees them,
 * and its Jacobian (1/std per channel) is applied to the gradient that
 * karp_backward returns.
 *
 * The gradient comes from karp_forward (training mode), the softmax
 * cross-entropy gradient computed here, and karp_backward with dx; the
 * parameter gradients that backward accumulates are dropped at once
 * (karp_zero_gradients), so an attack never counts as a training step.  A
 * model with batchnorm would still update its running statistics in that
 * forward; fashion_cnn has none.
 */
#ifndef FGSM_H
#define FGSM_H

#include <stdint.h>

#include <karp.h>

/* One classifier with the buffers for batches of up to cap samples.  The
 * model stays the caller's; fgsm_free releases the buffers only. */
typedef struct FgsmModel {
    karp_model *m;
    karp_info info;
    int64_t cap;
    int nchan;             /* normalization channels (0: none) */
    int64_t plane;         /* floats per channel of one sample */
    float *xn;             /* [cap, input]  normalized input */
    float *logits;         /* [cap, classes] */
    float *dy;             /* [cap, classes] */
    float *dx;             /* [cap, input]  gradient w.r.t. the normalized input */
} FgsmModel;

/* Bind m (a cross_entropy classifier); 0 or -1 with the reason in err. */
int fgsm_init(FgsmModel *f, karp_model *m, int64_t cap, char *err, int errlen);
void fgsm_free(FgsmModel *f);

/* out = (x - mean[c]) / std[c] for n samples (a copy when the model has
 * no train.normalize).  out may equal x. */
void fgsm_normalize(const FgsmModel *f, const float *x, int64_t n, float *out);

/* Mean softmax cross-entropy of logits [n, c] against labels, and its
 * gradient dy [n, c] = (softmax - onehot) / n.  Returns the loss. */
double fgsm_ce_grad(const float *logits, const int32_t *labels, int64_t n, int64_t c, float *dy);

/* grad [n, input] = d mean-loss / d x for raw pixels x.  *loss (may be
 * NULL) receives the mean loss, *correct (may be NULL) the number of
 * samples the model classified right (both on x, training-mode forward).
 * 0, or a KARP_E* code from the runtime. */
int fgsm_input_grad(FgsmModel *f, const float *x, const int32_t *labels, int64_t n, float *grad,
                    double *loss, int64_t *correct);

/* x_adv [n, input] = clip(x + eps * sign(grad), 0, 1); a zero gradient
 * leaves the pixel as it is.  grad is scratch of n * input floats (it holds
 * the gradient afterwards).  x_adv may not alias x. */
int fgsm_attack(FgsmModel *f, const float *x, const int32_t *labels, int64_t n, float eps,
                float *grad, float *x_adv, double *loss, int64_t *correct);

/* Correct predictions of karp_infer on raw pixels x (normalized here). */
int fgsm_count_correct(FgsmModel *f, const float *x, const int32_t *labels, int64_t n,
                       int64_t *correct);

#endif
