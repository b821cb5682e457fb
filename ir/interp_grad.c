/*
 * interp_grad.c — reference executions of the ops autodiff appends: the
 * gradients of dense and the activations, the losses and their gradients,
 * and the optimizer steps (the other layers' gradients are in
 * interp_layers_grad.c).  Each calls the runtime/ref/ kernel of its op and
 * overwrites its output (kp_interp_exec does the accumulate into the
 * gradient slab).
 */
#include "interp_rules.h"

#include <inttypes.h>
#include <string.h>

#include "../runtime/ref/ref.h"

/* dy (n,out), weight (out,in) -> dx (n,in) = dy weight */
int interp_dense_grad_x(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const float *dy = kp_interp_in(it, nd->in[0]), *w = kp_interp_in(it, nd->in[1]);
    /* x is read only for dweight, which is not asked for: pass dy. */
    kp_ref_dense_backward(kp_interp_out(it, nd), NULL, NULL, dy, dy, w, it->n, nd->out->dims[1],
                          nd->in[0]->dims[1]);
    return 0;
}

/* dy (n,out), x (n,in) -> dweight (out,in) = dy^T x */
int interp_dense_grad_w(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    float *dw = kp_interp_out(it, nd);
    int64_t out = nd->out->dims[0], in = nd->out->dims[1];
    memset(dw, 0, (size_t)(out * in) * sizeof(float));
    kp_ref_dense_backward(NULL, dw, NULL, kp_interp_in(it, nd->in[0]), kp_interp_in(it, nd->in[1]),
                          NULL, it->n, in, out);
    return 0;
}

/* dy, x (count) -> dx (count); x is the forward input */
int interp_relu_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_relu_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                         kp_interp_in(it, nd->in[1]), kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_leaky_relu_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_leaky_relu_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                               kp_interp_in(it, nd->in[1]), nd->attr.alpha,
                               kp_value_numel(nd->out, it->n));
    return 0;
}

/* dy, y (count) -> dx (count); y is the forward output */
int interp_sigmoid_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_sigmoid_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                            kp_interp_in(it, nd->in[1]), kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_tanh_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_tanh_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                         kp_interp_in(it, nd->in[1]), kp_value_numel(nd->out, it->n));
    return 0;
}

/* dy, y (rows, cols) -> dx (rows, cols); softmax along the last axis */
int interp_softmax_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    int64_t cols = nd->out->dims[nd->out->rank - 1];
    int64_t rows = kp_value_numel(nd->out, it->n) / cols;
    kp_ref_softmax_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                            kp_interp_in(it, nd->in[1]), rows, cols);
    return 0;
}

/* The labels of a cross_entropy node, checked to lie in [0,C): the kernels
 * index with them.  NULL with a diagnostic otherwise. */
static const int32_t *checked_labels(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const int32_t *labels = kp_interp_labels(it, nd->in[1]);
    int64_t c = nd->in[0]->dims[1];
    for (int64_t i = 0; i < it->n; i++) {
        if (labels[i] < 0 || labels[i] >= c) {
            kp_error(d, "%s: loss (cross_entropy): label %" PRId32 " of sample %" PRId64
                        " is outside [0,%" PRId64 ")",
                     it->g->file ? it->g->file : "<model>", labels[i], i, c);
            return NULL;
        }
    }
    return labels;
}

/* logits (n,c), labels (n) -> the mean loss (1) */
int interp_cross_entropy(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const int32_t *labels = checked_labels(it, nd, d);
    if (!labels)
        return -1;
    kp_interp_out(it, nd)[0] = kp_ref_cross_entropy_forward(kp_interp_in(it, nd->in[0]), labels,
                                                            it->n, nd->in[0]->dims[1]);
    return 0;
}

/* logits (n,c), labels (n) -> dlogits (n,c) */
int interp_cross_entropy_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const int32_t *labels = checked_labels(it, nd, d);
    if (!labels)
        return -1;
    kp_ref_cross_entropy_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), labels,
                                  it->n, nd->in[0]->dims[1]);
    return 0;
}

/* prediction, target (count) -> the mean loss (1) */
int interp_mse(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_interp_out(it, nd)[0] = kp_ref_mse_forward(kp_interp_in(it, nd->in[0]),
                                                  kp_interp_in(it, nd->in[1]),
                                                  kp_value_numel(nd->in[0], it->n));
    return 0;
}

int interp_bce(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_interp_out(it, nd)[0] = kp_ref_bce_forward(kp_interp_in(it, nd->in[0]),
                                                  kp_interp_in(it, nd->in[1]),
                                                  kp_value_numel(nd->in[0], it->n));
    return 0;
}

int interp_bce_logits(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_interp_out(it, nd)[0] = kp_ref_bce_logits_forward(kp_interp_in(it, nd->in[0]),
                                                         kp_interp_in(it, nd->in[1]),
                                                         kp_value_numel(nd->in[0], it->n));
    return 0;
}

/* prediction, target (count) -> dprediction (count) */
int interp_mse_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_mse_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                        kp_interp_in(it, nd->in[1]), kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_bce_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_bce_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                        kp_interp_in(it, nd->in[1]), kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_bce_logits_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_bce_logits_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                               kp_interp_in(it, nd->in[1]), kp_value_numel(nd->out, it->n));
    return 0;
}

/* The optimizer steps: over the trainable part of the slab, [0, dims[0])
 * of params, grads and the state (momentum: v at opt[0..]; adam: m at
 * opt[0..], v at opt[param_floats..]). */
int interp_sgd_update(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpOptimHyper *h = &nd->attr.optim;
    kp_ref_sgd_update(it->train_params, it->grads, nd->out->dims[0], h->lr, h->weight_decay);
    return 0;
}

int interp_momentum_update(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpOptimHyper *h = &nd->attr.optim;
    kp_ref_momentum_update(it->train_params, it->grads, it->opt, nd->out->dims[0], h->lr,
                           h->beta);
    return 0;
}

int interp_adam_update(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpOptimHyper *h = &nd->attr.optim;
    kp_ref_adam_update(it->train_params, it->grads, it->opt, it->opt + it->g->param_floats,
                       nd->out->dims[0], it->step, h->lr, h->beta1, h->beta2, h->eps);
    return 0;
}
