/*
 * interp_layers.c — reference executions of the forward layers beyond
 * dense and the elementwise activations: conv2d and its transpose, the
 * pools, batchnorm (inference; and in training its batch statistics and
 * normalization), masking, concat, and dropout's training form (its mask
 * and the mul).  Each calls the runtime/ref/ kernel of its op.
 */
#include "interp_rules.h"
#include "epilogue.h"

#include <stdlib.h>
#include <string.h>

KpRefConv kp_interp_conv(const KpNode *nd, const KpValue *x, const KpValue *y, int64_t n,
                         bool dilated)
{
    const KpAttrs *a = &nd->attr;
    return (KpRefConv){.n = n, .c = x->dims[1], .h = x->dims[2], .w = x->dims[3],
                       .f = y->dims[1], .kh = a->kernel[0], .kw = a->kernel[1],
                       .oh = y->dims[2], .ow = y->dims[3], .sh = a->stride[0],
                       .sw = a->stride[1], .pt = a->padding[0], .pl = a->padding[1],
                       .dh = dilated ? a->dilation[0] : 1, .dw = dilated ? a->dilation[1] : 1,
                       .wf = a->wstride};
}

int64_t kp_interp_hw(const KpValue *x)
{
    int64_t hw = 1;
    for (int i = 2; i < x->rank; i++)
        hw *= x->dims[i];
    return hw;
}

/* x [N,C,H,W], weight [F,C,kh,kw], bias [F] (optional) -> y [N,F,OH,OW] */
int interp_conv2d(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[0], nd->out, it->n, true);
    const float *b = kp_node_op_nin(nd) == 3 ? kp_interp_in(it, nd->in[2]) : NULL;
    kp_ref_conv2d_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                          kp_interp_in(it, nd->in[1]), b, &s);
    return 0;
}

/* x [N,C,H,W], weight [C,F,kh,kw], bias [F] (optional) -> y [N,F,OH,OW] */
int interp_conv2d_transpose(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[0], nd->out, it->n, true);
    const float *b = kp_node_op_nin(nd) == 3 ? kp_interp_in(it, nd->in[2]) : NULL;
    kp_ref_conv2d_transpose_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                                    kp_interp_in(it, nd->in[1]), b, &s);
    return 0;
}

/* x [N,C,H,W] -> y [N,C,OH,OW] */
int interp_maxpool2d(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[0], nd->out, it->n, false);
    kp_ref_maxpool2d_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), &s);
    return 0;
}

int interp_avgpool2d(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[0], nd->out, it->n, false);
    kp_ref_avgpool2d_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), &s);
    return 0;
}

/* x [N,C,...], weight, bias, running_mean, running_var [C] -> y (inference) */
int interp_batchnorm(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[0];
    kp_ref_batchnorm_infer(kp_interp_out(it, nd), kp_interp_in(it, x),
                           kp_interp_in(it, nd->in[1]), kp_interp_in(it, nd->in[2]),
                           kp_interp_in(it, nd->in[3]), kp_interp_in(it, nd->in[4]),
                           nd->attr.eps, it->n, x->dims[1], kp_interp_hw(x));
    return 0;
}

/* x [N,C,...], running_mean, running_var [C] (nd's inputs 0, 1, 2) ->
 * stats [2,C] = (mean, invstd).  The running statistics are updated in the
 * slab only by a call that runs the forward (it->update_stats): a backward
 * that recomputes the activations leaves them. */
static int batch_stats(const KpInterp *it, const KpNode *nd, float *stats, KpDiag *d)
{
    const KpValue *x = nd->in[0];
    int64_t c = x->dims[1];
    float *scratch = NULL, *rm, *rv;
    if (it->update_stats && it->train_params) {
        rm = it->train_params + nd->in[1]->offset;
        rv = it->train_params + nd->in[2]->offset;
    } else {
        scratch = calloc((size_t)(2 * c), sizeof *scratch);
        if (!scratch)
            return kp_error(d, "%s: out of memory in the interpreter",
                            it->g->file ? it->g->file : "<model>");
        rm = scratch;
        rv = scratch + c;
    }
    kp_ref_batchnorm_stats(stats, stats + c, rm, rv, kp_interp_in(it, x), nd->attr.eps,
                           nd->attr.momentum, it->n, c, kp_interp_hw(x));
    free(scratch);
    return 0;
}

int interp_batchnorm_stats(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    return batch_stats(it, nd, kp_interp_out(it, nd), d);
}

/* x, running_mean, running_var, weight, bias -> y, aux stats: the two
 * above in one */
int interp_batchnorm_fwd(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[0];
    int64_t c = x->dims[1];
    float *stats = kp_interp_aux(it, nd, 0);
    if (batch_stats(it, nd, stats, d))
        return -1;
    kp_ref_batchnorm_train(kp_interp_out(it, nd), kp_interp_in(it, x), stats, stats + c,
                           kp_interp_in(it, nd->in[3]), kp_interp_in(it, nd->in[4]), it->n, c,
                           kp_interp_hw(x));
    return 0;
}

/* x [N,C,...], stats [2,C], weight [C], bias [C] -> y */
int interp_batchnorm_train(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[0];
    int64_t c = x->dims[1];
    const float *stats = kp_interp_in(it, nd->in[1]);
    kp_ref_batchnorm_train(kp_interp_out(it, nd), kp_interp_in(it, x), stats, stats + c,
                           kp_interp_in(it, nd->in[2]), kp_interp_in(it, nd->in[3]), it->n, c,
                           kp_interp_hw(x));
    return 0;
}

/* x [N,F] -> y [N,F] */
int interp_masking(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_masking_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), nd->attr.value,
                           it->n, nd->in[0]->dims[1]);
    return 0;
}

/* x (for its shape) -> mask, 0 or 1/(1-rate), seeded by the call and the node */
int interp_dropout_mask(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_dropout_mask(kp_interp_out(it, nd), kp_value_numel(nd->out, it->n),
                        kp_ref_dropout_node_seed(it->seed, nd->key), nd->attr.rate);
    return 0;
}

/* a, b (count) -> a*b */
int interp_mul(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    float *y = kp_interp_out(it, nd);
    const float *a = kp_interp_in(it, nd->in[0]), *b = kp_interp_in(it, nd->in[1]);
    for (int64_t i = 0, count = kp_value_numel(nd->out, it->n); i < count; i++)
        y[i] = a[i] * b[i];
    return 0;
}

/* A value [N, d1, .., dr] seen around per-sample axis `axis`: outer =
 * n * d1 * .. * d_axis blocks, each of len(axis) * inner floats. */
static int64_t outer_of(const KpValue *v, int axis, int64_t n)
{
    int64_t outer = n;
    for (int i = 1; i <= axis; i++)
        outer *= v->dims[i];
    return outer;
}

static int64_t inner_of(const KpValue *v, int axis)
{
    int64_t inner = 1;
    for (int i = axis + 2; i < v->rank; i++)
        inner *= v->dims[i];
    return inner;
}

/* x1, x2, ... -> y, joined along per-sample axis attr.axis */
int interp_concat(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    int axis = nd->attr.axis;
    float *y = kp_interp_out(it, nd);
    int64_t outer = outer_of(nd->out, axis, it->n), inner = inner_of(nd->out, axis);
    int64_t ystride = nd->out->dims[axis + 1] * inner;
    for (int64_t o = 0; o < outer; o++) {
        int64_t at = 0;
        for (int k = 0; k < nd->nin; k++) {
            int64_t len = nd->in[k]->dims[axis + 1] * inner;
            memcpy(y + o * ystride + at, kp_interp_in(it, nd->in[k]) + o * len,
                   (size_t)len * sizeof *y);
            at += len;
        }
    }
    return 0;
}

/* x -> the part [slice_offset, +slice_size) along per-sample axis attr.axis */
int interp_slice(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[0];
    int axis = nd->attr.axis;
    int64_t outer = outer_of(x, axis, it->n), inner = inner_of(x, axis);
    int64_t xstride = x->dims[axis + 1] * inner, len = nd->attr.slice_size * inner;
    const float *src = kp_interp_in(it, x) + nd->attr.slice_offset * inner;
    float *y = kp_interp_out(it, nd);
    for (int64_t o = 0; o < outer; o++)
        memcpy(y + o * len, src + o * xstride, (size_t)len * sizeof *y);
    return 0;
}
