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
/* The bias gradient of dense, conv2d, conv2d_transpose and batchnorm's beta:
 * dy (n,c,hw) -> db (c) += the sum over n and hw */
void kp_ref_bias_backward(float *db, const float *dy, int64_t n, int64_t c, int64_t hw);

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

/* Convolution, NCHW.  Padding pt/pl is the top/left padding; the bottom/
 * right padding is whatever the output size implies (uneven "same").
 * conv2d: x (n,c,h,w), w (f,c,kh,kw), b (f) or NULL -> y (n,f,oh,ow) */
typedef struct KpRefConv {
    int64_t n, c, h, w;        /* input */
    int64_t f, kh, kw;         /* filters, kernel */
    int64_t oh, ow;            /* output */
    int64_t sh, sw, pt, pl, dh, dw;  /* stride, top/left padding, dilation */
    int64_t wf;                /* conv2d forward: floats between filters of w; 0: c*kh*kw
                                  (a weight whose rows passes/layout.c padded) */
} KpRefConv;
void kp_ref_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                           const KpRefConv *s);
/* dy (n,f,oh,ow) -> dx (n,c,h,w) (may be NULL), dw (f,c,kh,kw) +=, db (f) += (each may be
 * NULL; x is read only for dw, w only for dx) */
void kp_ref_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const KpRefConv *s);
/* conv2d_transpose, PyTorch's ConvTranspose2d: x (n,c,h,w), w (c,f,kh,kw), b (f)
 * -> y (n,f,oh,ow); the adjoint of conv2d with the same geometry (s->h,w the
 * transposed conv's input, s->oh,ow its output) */
void kp_ref_conv2d_transpose_forward(float *y, const float *x, const float *w, const float *b,
                                     const KpRefConv *s);
void kp_ref_conv2d_transpose_backward(float *dx, float *dw, float *db, const float *dy,
                                      const float *x, const float *w, const KpRefConv *s);

/* Pooling, window kh x kw (s->f unused, s->c channels): x (n,c,h,w) -> y (n,c,oh,ow).
 * max: padding never wins; the gradient goes to the first maximum of each window.
 * avg: the divisor counts the padding (PyTorch's count_include_pad=True). */
void kp_ref_maxpool2d_forward(float *y, const float *x, const KpRefConv *s);
void kp_ref_maxpool2d_backward(float *dx, const float *dy, const float *x, const KpRefConv *s);
void kp_ref_avgpool2d_forward(float *y, const float *x, const KpRefConv *s);
void kp_ref_avgpool2d_backward(float *dx, const float *dy, const KpRefConv *s);

/* Batch normalization over x (n,c,hw) (hw = 1 for rank-1 samples).
 * Inference: y = (x - rmean) / sqrt(rvar + eps) * gamma + beta.
 * Training: stats = (mean, invstd = 1/sqrt(biased var + eps)) per channel;
 * running r = (1-momentum) r + momentum b with the unbiased variance. */
void kp_ref_batchnorm_infer(float *y, const float *x, const float *gamma, const float *beta,
                            const float *rmean, const float *rvar, float eps, int64_t n,
                            int64_t c, int64_t hw);
void kp_ref_batchnorm_stats(float *mean, float *invstd, float *rmean, float *rvar, const float *x,
                            float eps, float momentum, int64_t n, int64_t c, int64_t hw);
void kp_ref_batchnorm_train(float *y, const float *x, const float *mean, const float *invstd,
                            const float *gamma, const float *beta, int64_t n, int64_t c,
                            int64_t hw);
/* dx (may be NULL), dgamma +=, dbeta += (each may be NULL) */
void kp_ref_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *mean, const float *invstd,
                               const float *gamma, int64_t n, int64_t c, int64_t hw);

/* Masking (Keras): x (n,d): a sample whose d features all equal value is zeroed. */
void kp_ref_masking_forward(float *y, const float *x, float value, int64_t n, int64_t d);
void kp_ref_masking_backward(float *dx, const float *dy, const float *x, float value, int64_t n,
                             int64_t d);

/* Dropout's mask: element i of count is 1/(1-rate) if
 *   u = splitmix64(seed ^ (i * 0x9E3779B97F4A7C15)), (u >> 40) * 2^-24 >= rate
 * else 0.  splitmix64(z): z += 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 * z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31.  The generated code computes
 * exactly the same. */
void kp_ref_dropout_mask(float *mask, int64_t count, uint64_t seed, float rate);
/* The seed of the dropout node with key node_id (KpNode.key: numbered at creation,
 * independent of the optimizing passes) within a call seeded with call_seed. */
static inline uint64_t kp_ref_dropout_node_seed(uint64_t call_seed, int node_id)
{
    return call_seed ^ (0x632BE59BD9B4E019ull * (uint64_t)(node_id + 1));
}

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
