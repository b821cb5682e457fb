/*
 * ref.h — reference kernels: plain, obviously correct C for every op,
 * forward and backward side by side.  They are the oracle of the tests
 * and the baseline of `karpc bench`; speed is not their concern.
 * Shapes are written above each kernel; all tensors are row-major.
 */
#ifndef KP_REF_H
#define KP_REF_H

#include <stdint.h>

/* x (n,in), w (out,in), b (out) or NULL -> y (n,out) */
void kp_ref_dense_forward(float *y, const float *x, const float *w, const float *b, int64_t n,
                          int64_t in, int64_t out);
/* dy (n,out) -> dx (n,in) (may be NULL), dw (out,in) +=, db (out) += (may be NULL) */
void kp_ref_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *w, int64_t n, int64_t in, int64_t out);

/* elementwise over count floats: y = f(x); backward dx = dy * f'(.) */
void kp_ref_relu_forward(float *y, const float *x, int64_t count);
void kp_ref_relu_backward(float *dx, const float *dy, const float *x, int64_t count);
void kp_ref_leaky_relu_forward(float *y, const float *x, float alpha, int64_t count);
void kp_ref_leaky_relu_backward(float *dx, const float *dy, const float *x, float alpha, int64_t count);
void kp_ref_sigmoid_forward(float *y, const float *x, int64_t count);
void kp_ref_sigmoid_backward(float *dx, const float *dy, const float *y, int64_t count);
void kp_ref_tanh_forward(float *y, const float *x, int64_t count);
void kp_ref_tanh_backward(float *dx, const float *dy, const float *y, int64_t count);

/* x (rows,cols) -> y (rows,cols), softmax along each row */
void kp_ref_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols);
/* y, dy (rows,cols) -> dx (rows,cols) */
void kp_ref_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols);

/* Losses: the mean over the batch, with the gradient beside each.
 * cross_entropy: logits (n,c), labels (n) in [0,c) -> mean of
 *   -log softmax(logits)[label]; dlogits (n,c) = (softmax - onehot) / n */
float kp_ref_cross_entropy_forward(const float *logits, const int32_t *labels, int64_t n, int64_t c);
void kp_ref_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *labels,
                                   int64_t n, int64_t c);
/* mse: pred, target (count) -> mean (pred-target)^2; dpred = 2 (pred-target) / count */
float kp_ref_mse_forward(const float *pred, const float *target, int64_t count);
void kp_ref_mse_backward(float *dpred, const float *pred, const float *target, int64_t count);
/* bce: probabilities p, targets t (count) -> mean -(t log p + (1-t) log(1-p)),
 * each log clamped at -100 as PyTorch does; dp = (p - t) / max(p (1-p), 1e-12) / count */
float kp_ref_bce_forward(const float *p, const float *t, int64_t count);
void kp_ref_bce_backward(float *dp, const float *p, const float *t, int64_t count);
/* bce_logits: logits z, targets t (count) -> mean max(z,0) - z t + log(1 + exp(-|z|));
 * dz = (sigmoid(z) - t) / count */
float kp_ref_bce_logits_forward(const float *z, const float *t, int64_t count);
void kp_ref_bce_logits_backward(float *dz, const float *z, const float *t, int64_t count);

/* Optimizer steps over count floats (DESIGN.md's formulas); step counts
 * from 1.
 * sgd:      theta -= lr (g + wd theta)
 * momentum: v = beta v + (1-beta) g; theta -= lr v
 * adam:     m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *           theta -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) */
void kp_ref_sgd_update(float *theta, const float *g, int64_t count, float lr, float wd);
void kp_ref_momentum_update(float *theta, const float *g, float *v, int64_t count, float lr,
                            float beta);
void kp_ref_adam_update(float *theta, const float *g, float *m, float *v, int64_t count,
                        int64_t step, float lr, float beta1, float beta2, float eps);

#endif
