/*
 * shape_grad.c — shape rules of the gradient ops of the layers other than
 * dense (conv, pooling, batchnorm, masking, concat) and of the training
 * forms of batchnorm and dropout.  karpc builds these nodes itself, so a
 * mismatch is a karpc bug; it is still a diagnostic against the layer.
 */
#include "shape_rules.h"

#include <inttypes.h>

static bool is_batched(const KpValue *v, int rank)
{
    return v->rank == rank && v->dims[0] == KP_DIM_N && v->dtype == KP_F32;
}

/* dy, weight, x -> x's shape (conv2d_grad_x, conv2d_transpose_grad_x) */
int shape_like_third(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *x = n->in[2];
    if (!is_batched(dy, 4) || !is_batched(x, 4))
        return kp_shape_error(g, n, d, dy, "%s: dy and x must be [N,C,H,W]", kp_op_name(n->op));
    kp_shape_set(n->out, x->rank, x->dims);
    return 0;
}

/* dy, x -> x's shape (maxpool2d_grad, avgpool2d_grad) */
int shape_like_second(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    if (!is_batched(dy, 4) || !is_batched(x, 4) || dy->dims[1] != x->dims[1])
        return kp_shape_error(g, n, d, dy, "%s: dy and x must be [N,C,..] of one C",
                              kp_op_name(n->op));
    kp_shape_set(n->out, x->rank, x->dims);
    return 0;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dweight, [F,C,kh,kw] or (transposed) [C,F,kh,kw] */
static int conv_grad_w(KpGraph *g, KpNode *n, KpDiag *d, bool transposed)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    if (!is_batched(dy, 4) || !is_batched(x, 4))
        return kp_shape_error(g, n, d, dy, "%s: dy and x must be [N,C,H,W]", kp_op_name(n->op));
    int64_t f = dy->dims[1], c = x->dims[1];
    kp_shape_set(n->out, 4, (int64_t[]){transposed ? c : f, transposed ? f : c,
                                        n->attr.kernel[0], n->attr.kernel[1]});
    return 0;
}

int shape_conv2d_grad_w(KpGraph *g, KpNode *n, KpDiag *d)
{
    return conv_grad_w(g, n, d, false);
}

int shape_conv2d_transpose_grad_w(KpGraph *g, KpNode *n, KpDiag *d)
{
    return conv_grad_w(g, n, d, true);
}

/* a [N,C,...] (rank-1 or rank-3 samples) -> its channel count C, or -1 */
static int64_t channels(const KpValue *x)
{
    return (is_batched(x, 2) || is_batched(x, 4)) ? x->dims[1] : -1;
}

/* x [N,C] or [N,C,H,W], running_mean [C], running_var [C] -> stats [2,C] */
int shape_batchnorm_stats(KpGraph *g, KpNode *n, KpDiag *d)
{
    int64_t c = channels(n->in[0]);
    if (c < 0)
        return kp_shape_error(g, n, d, n->in[0], "input must be rank 1 or rank 3 per sample");
    for (int i = 1; i < 3; i++)
        if (n->in[i]->rank != 1 || n->in[i]->dims[0] != c)
            return kp_shape_error(g, n, d, n->in[i], "running statistics must be [%" PRId64 "]",
                                  c);
    kp_shape_set(n->out, 2, (int64_t[]){2, c});
    return 0;
}

/* dy, x, stats [2,C] -> dweight [C] */
int shape_batchnorm_grad_w(KpGraph *g, KpNode *n, KpDiag *d)
{
    int64_t c = channels(n->in[1]);
    if (c < 0)
        return kp_shape_error(g, n, d, n->in[1], "batchnorm_grad_w: x must be [N,C] or [N,C,H,W]");
    kp_shape_set(n->out, 1, (int64_t[]){c});
    return 0;
}

/* dy [N,C,...] -> dbias [C] */
int shape_bias_grad(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0];
    if (dy->rank < 2 || dy->dims[0] != KP_DIM_N || dy->dtype != KP_F32)
        return kp_shape_error(g, n, d, dy, "bias_grad: dy must be [N,C,...]");
    kp_shape_set(n->out, 1, (int64_t[]){dy->dims[1]});
    return 0;
}

/* x [N,..,a,..] -> [N,..,slice_size,..] along per-sample axis attr.axis */
int shape_slice(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0];
    const KpAttrs *a = &n->attr;
    if (x->rank < 2 || a->axis < 0 || a->axis >= x->rank - 1)
        return kp_shape_error(g, n, d, x, "slice axis %d is out of range", a->axis);
    int64_t len = x->dims[a->axis + 1];
    if (a->slice_offset < 0 || a->slice_size < 1 || a->slice_offset + a->slice_size > len)
        return kp_shape_error(g, n, d, x,
                              "slice [%" PRId64 ",+%" PRId64 ") does not fit axis %d of length %" PRId64,
                              a->slice_offset, a->slice_size, a->axis, len);
    int64_t dims[KP_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        dims[i] = x->dims[i];
    dims[a->axis + 1] = a->slice_size;
    kp_shape_set(n->out, x->rank, dims);
    return 0;
}
