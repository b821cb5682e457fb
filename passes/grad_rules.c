/*
 * grad_rules.c — the gradient of each forward op, written with the
 * gradient ops of ops.def (shapes as in the shape rules).  A gradient node
 * takes its forward node's attributes (a conv's gradients read its
 * kernel, stride, padding, dilation):
 *
 *   dense    y = x W^T + b      dx = dense_grad_x(dy, W)   dW = dense_grad_w(dy, x)
 *                               db = bias_grad(dy)
 *   conv2d   y = x * W + b      dx = conv2d_grad_x(dy, W, x)   dW = conv2d_grad_w(dy, x)
 *                               db = bias_grad(dy)
 *   conv2d_transpose            the same with conv2d_transpose_grad_x/_w
 *   maxpool2d, avgpool2d        dx = *_grad(dy, x)
 *   batchnorm_train(x, stats, gamma, beta)
 *                               dx = batchnorm_grad_x(dy, x, stats, gamma)
 *                               dgamma = batchnorm_grad_w(dy, x, stats)
 *                               dbeta = bias_grad(dy); none to stats: the
 *                               gradient through the batch statistics is
 *                               inside batchnorm_grad_x
 *   mul      y = a b            da = mul(dy, b)            db = mul(dy, a)
 *   dropout_mask                none (a constant of the call's seed)
 *   masking                     dx = masking_grad(dy, x)
 *   relu, leaky_relu            dx = *_grad(dy, y)         (f' from the output: y > 0
 *                                                          iff x > 0; leaky_relu with
 *                                                          alpha < 0 reads x instead)
 *   sigmoid, tanh, softmax      dx = *_grad(dy, y)         (f' from the output)
 *   flatten, reshape            dx = reshape(dy) to x's per-sample shape
 *   add      y = x1 + x2 + ...  dxi = dy for every i
 *   concat   y = [x1 x2 ...]    dxi = slice(dy) at xi's place along the axis
 *
 * A value used twice (a residual branch, concat of one value with itself)
 * gets one contribution per use, which autodiff sums.
 */
#include "grad_rules.h"

#include <assert.h>

typedef int (*GradFn)(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d);

static const GradFn grad_rules[KP_OP_COUNT] = {
#define O(op, kind, nin, shape, interp, emit, grad, ...) grad,
#include "../ir/ops.def"
#undef O
};

int kp_grad_rule(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    assert(n->op >= 0 && n->op < KP_OP_COUNT);
    return grad_rules[n->op](g, n, dy, dx, d);
}

KpValue *kp_grad_node(KpGraph *g, const KpNode *fwd, KpOp op, int nin, KpValue *const *in,
                      KpDiag *d)
{
    KpNode *n = kp_node_new(g, op, fwd->name, fwd->where, nin, in);
    if (!n) {
        kp_error(d, "%s: out of memory", g->file ? g->file : "<model>");
        return NULL;
    }
    n->attr = fwd->attr;
    if (kp_node_infer_shape(g, n, d))
        return NULL;
    return n->out;
}

/* x [N,in], W [out,in], b [out] (optional) */
int grad_dense(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    dx[0] = kp_grad_node(g, n, KP_OP_dense_grad_x, 2, (KpValue *[]){dy, n->in[1]}, d);
    dx[1] = kp_grad_node(g, n, KP_OP_dense_grad_w, 2, (KpValue *[]){dy, n->in[0]}, d);
    if (!dx[0] || !dx[1])
        return -1;
    if (n->nin == 3 && !(dx[2] = kp_grad_node(g, n, KP_OP_bias_grad, 1, &dy, d)))
        return -1;
    return 0;
}

/* x [N,C,H,W], W, b [F] (optional): gx(dy, W, x), gw(dy, x), bias_grad(dy) */
static int conv_like(KpGraph *g, KpNode *n, KpOp gx, KpOp gw, KpValue *dy, KpValue **dx,
                     KpDiag *d)
{
    dx[0] = kp_grad_node(g, n, gx, 3, (KpValue *[]){dy, n->in[1], n->in[0]}, d);
    dx[1] = kp_grad_node(g, n, gw, 2, (KpValue *[]){dy, n->in[0]}, d);
    if (!dx[0] || !dx[1])
        return -1;
    if (n->nin == 3 && !(dx[2] = kp_grad_node(g, n, KP_OP_bias_grad, 1, &dy, d)))
        return -1;
    return 0;
}

int grad_conv2d(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return conv_like(g, n, KP_OP_conv2d_grad_x, KP_OP_conv2d_grad_w, dy, dx, d);
}

int grad_conv2d_transpose(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return conv_like(g, n, KP_OP_conv2d_transpose_grad_x, KP_OP_conv2d_transpose_grad_w, dy,
                     dx, d);
}

/* x, stats, gamma, beta (see the table above) */
int grad_batchnorm_train(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    KpValue *x = n->in[0], *stats = n->in[1];
    dx[0] = kp_grad_node(g, n, KP_OP_batchnorm_grad_x, 4, (KpValue *[]){dy, x, stats, n->in[2]},
                         d);
    dx[2] = kp_grad_node(g, n, KP_OP_batchnorm_grad_w, 3, (KpValue *[]){dy, x, stats}, d);
    dx[3] = kp_grad_node(g, n, KP_OP_bias_grad, 1, &dy, d);
    return dx[0] && dx[2] && dx[3] ? 0 : -1;
}

int grad_mul(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    dx[0] = kp_grad_node(g, n, KP_OP_mul, 2, (KpValue *[]){dy, n->in[1]}, d);
    dx[1] = kp_grad_node(g, n, KP_OP_mul, 2, (KpValue *[]){dy, n->in[0]}, d);
    return dx[0] && dx[1] ? 0 : -1;
}

/* the mask is a constant of the call's seed: nothing flows back */
int grad_dropout_mask(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return 0;
}

/* x [N,..,a1,..], x2 [N,..,a2,..], ...: each gets its part of dy */
int grad_concat(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    int axis = n->attr.axis;
    int64_t offset = 0;
    for (int i = 0; i < n->nin; i++) {
        KpNode *s = kp_node_new(g, KP_OP_slice, n->name, n->where, 1, &dy);
        if (!s)
            return kp_error(d, "%s: out of memory", g->file ? g->file : "<model>");
        s->attr.axis = axis;
        s->attr.slice_offset = offset;
        s->attr.slice_size = n->in[i]->dims[axis + 1];
        if (kp_node_infer_shape(g, s, d))
            return -1;
        dx[i] = s->out;
        offset += s->attr.slice_size;
    }
    return 0;
}

/* f' from the forward input x */
static int from_input(KpGraph *g, KpNode *n, KpOp op, KpValue *dy, KpValue **dx, KpDiag *d)
{
    dx[0] = kp_grad_node(g, n, op, 2, (KpValue *[]){dy, n->in[0]}, d);
    return dx[0] ? 0 : -1;
}

/* f' from the forward output y */
static int from_output(KpGraph *g, KpNode *n, KpOp op, KpValue *dy, KpValue **dx, KpDiag *d)
{
    dx[0] = kp_grad_node(g, n, op, 2, (KpValue *[]){dy, n->out}, d);
    return dx[0] ? 0 : -1;
}

int grad_maxpool2d(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_input(g, n, KP_OP_maxpool2d_grad, dy, dx, d);
}

int grad_avgpool2d(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_input(g, n, KP_OP_avgpool2d_grad, dy, dx, d);
}

int grad_masking(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_input(g, n, KP_OP_masking_grad, dy, dx, d);
}

/* relu_grad reads y, not x: the sign test gives the same answer (y > 0
 * iff x > 0), and then x's only user is the relu, which the fusion pass
 * can make an epilogue of the dense or conv producing x even in training. */
int grad_relu(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_output(g, n, KP_OP_relu_grad, dy, dx, d);
}

/* The same for alpha >= 0 (y > 0 iff x > 0); a negative slope flips the
 * sign of y for x < 0, so then the gradient reads x. */
int grad_leaky_relu(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    if (n->attr.alpha >= 0.0f)
        return from_output(g, n, KP_OP_leaky_relu_grad, dy, dx, d);
    return from_input(g, n, KP_OP_leaky_relu_grad, dy, dx, d);
}

int grad_sigmoid(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_output(g, n, KP_OP_sigmoid_grad, dy, dx, d);
}

int grad_tanh(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_output(g, n, KP_OP_tanh_grad, dy, dx, d);
}

int grad_softmax(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_output(g, n, KP_OP_softmax_grad, dy, dx, d);
}

/* flatten and reshape: dy [N, y's sample] back to [N, x's sample], a view */
int grad_reshape(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    const KpValue *x = n->in[0];
    assert(x->rank >= 2 && x->dims[0] == KP_DIM_N);
    KpNode *r = kp_node_new(g, KP_OP_reshape, n->name, n->where, 1, &dy);
    if (!r)
        return kp_error(d, "%s: out of memory", g->file ? g->file : "<model>");
    r->attr.reshape_rank = x->rank - 1;
    for (int i = 1; i < x->rank; i++)
        r->attr.reshape_dims[i - 1] = x->dims[i];
    if (kp_node_infer_shape(g, r, d))
        return -1;
    dx[0] = r->out;
    return 0;
}

/* every input gets dy itself */
int grad_add(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    for (int i = 0; i < n->nin; i++)
        dx[i] = dy;
    return 0;
}

/* gradient, loss and update ops, and the inference forms of batchnorm and
 * dropout, are never differentiated */
int grad_none(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    assert(!"autodiff reached an op that is never differentiated");
    return -1;
}
