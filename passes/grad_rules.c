/*
 * grad_rules.c — the gradient of each forward op, written with the
 * gradient ops of ops.def (shapes as in the shape rules):
 *
 *   dense    y = x W^T + b      dx = dense_grad_x(dy, W)   dW = dense_grad_w(dy, x)
 *                               db = dense_grad_b(dy)
 *   relu, leaky_relu            dx = *_grad(dy, x)         (f' from the input)
 *   sigmoid, tanh, softmax      dx = *_grad(dy, y)         (f' from the output)
 *   flatten, reshape            dx = reshape(dy) to x's per-sample shape
 *   add      y = x1 + x2 + ...  dxi = dy for every i
 */
#include "grad_rules.h"

#include <assert.h>

typedef int (*GradFn)(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d);

static const GradFn grad_rules[KP_OP_COUNT] = {
#define O(op, kind, nin, shape, interp, emit, grad) grad,
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
    n->attr.alpha = fwd->attr.alpha;
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
    if (n->nin == 3 && !(dx[2] = kp_grad_node(g, n, KP_OP_dense_grad_b, 1, &dy, d)))
        return -1;
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

int grad_relu(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return from_input(g, n, KP_OP_relu_grad, dy, dx, d);
}

int grad_leaky_relu(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
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

int grad_unsupported(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    return kp_error(d, "%s: %s (%s): training through %s is not supported yet",
                    g->file ? g->file : "<model>", n->where ? n->where : "?",
                    n->name ? n->name : "?", kp_op_name(n->op));
}

/* gradient, loss and update ops are never differentiated */
int grad_none(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d)
{
    assert(!"autodiff differentiates a gradient, loss or update node");
    return -1;
}
