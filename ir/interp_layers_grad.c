/*
 * interp_layers_grad.c — reference executions of the gradient ops of the
 * layers beyond dense: conv2d and its transpose, the pools, batchnorm in
 * training, masking, and the bias gradient they share with dense.  Each
 * overwrites its output; kp_interp_exec adds a parameter gradient into
 * the slab.
 */
#include "interp_rules.h"

#include <string.h>

static void zero(float *p, int64_t count)
{
    memset(p, 0, (size_t)count * sizeof *p);
}

/* dy [N,F,OH,OW], weight [F,C,kh,kw], x (shape) -> dx [N,C,H,W] */
int interp_conv2d_grad_x(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[2], nd->in[0], it->n, true);
    kp_ref_conv2d_backward(kp_interp_out(it, nd), NULL, NULL, kp_interp_in(it, nd->in[0]), NULL,
                           kp_interp_in(it, nd->in[1]), &s);
    return 0;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dweight [F,C,kh,kw] */
int interp_conv2d_grad_w(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[1], nd->in[0], it->n, true);
    float *dw = kp_interp_out(it, nd);
    zero(dw, kp_value_numel(nd->out, 1));
    kp_ref_conv2d_backward(NULL, dw, NULL, kp_interp_in(it, nd->in[0]),
                           kp_interp_in(it, nd->in[1]), NULL, &s);
    return 0;
}

/* dy [N,F,OH,OW], weight [C,F,kh,kw], x (shape) -> dx [N,C,H,W] */
int interp_conv2d_transpose_grad_x(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[2], nd->in[0], it->n, true);
    kp_ref_conv2d_transpose_backward(kp_interp_out(it, nd), NULL, NULL,
                                     kp_interp_in(it, nd->in[0]), NULL,
                                     kp_interp_in(it, nd->in[1]), &s);
    return 0;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dweight [C,F,kh,kw] */
int interp_conv2d_transpose_grad_w(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[1], nd->in[0], it->n, true);
    float *dw = kp_interp_out(it, nd);
    zero(dw, kp_value_numel(nd->out, 1));
    kp_ref_conv2d_transpose_backward(NULL, dw, NULL, kp_interp_in(it, nd->in[0]),
                                     kp_interp_in(it, nd->in[1]), NULL, &s);
    return 0;
}

/* dy [N,C,OH,OW], x [N,C,H,W] -> dx [N,C,H,W] */
int interp_maxpool2d_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[1], nd->in[0], it->n, false);
    kp_ref_maxpool2d_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                              kp_interp_in(it, nd->in[1]), &s);
    return 0;
}

int interp_avgpool2d_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpRefConv s = kp_interp_conv(nd, nd->in[1], nd->in[0], it->n, false);
    kp_ref_avgpool2d_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), &s);
    return 0;
}

/* dy, x [N,C,...], stats [2,C], weight [C] -> dx */
int interp_batchnorm_grad_x(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[1];
    int64_t c = x->dims[1];
    const float *stats = kp_interp_in(it, nd->in[2]);
    kp_ref_batchnorm_backward(kp_interp_out(it, nd), NULL, NULL, kp_interp_in(it, nd->in[0]),
                              kp_interp_in(it, x), stats, stats + c,
                              kp_interp_in(it, nd->in[3]), it->n, c, kp_interp_hw(x));
    return 0;
}

/* dy, x [N,C,...], stats [2,C] -> dweight [C] */
int interp_batchnorm_grad_w(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[1];
    int64_t c = x->dims[1];
    const float *stats = kp_interp_in(it, nd->in[2]);
    float *dg = kp_interp_out(it, nd);
    zero(dg, c);
    kp_ref_batchnorm_backward(NULL, dg, NULL, kp_interp_in(it, nd->in[0]), kp_interp_in(it, x),
                              stats, stats + c, NULL, it->n, c, kp_interp_hw(x));
    return 0;
}

/* dy, x [N,C,...], stats [2,C], weight [C] -> dx, aux dweight [C], dbias [C] */
int interp_batchnorm_bwd(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *x = nd->in[1];
    int64_t c = x->dims[1];
    const float *stats = kp_interp_in(it, nd->in[2]);
    float *dg = kp_interp_aux(it, nd, 0), *db = kp_interp_aux(it, nd, 1);
    zero(dg, c);
    zero(db, c);
    kp_ref_batchnorm_backward(kp_interp_out(it, nd), dg, db, kp_interp_in(it, nd->in[0]),
                              kp_interp_in(it, x), stats, stats + c,
                              kp_interp_in(it, nd->in[3]), it->n, c, kp_interp_hw(x));
    return 0;
}

/* dy [N,C,...] -> dbias [C], the sum over every axis but 1 */
int interp_bias_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const KpValue *dy = nd->in[0];
    float *db = kp_interp_out(it, nd);
    zero(db, dy->dims[1]);
    kp_ref_bias_backward(db, kp_interp_in(it, dy), it->n, dy->dims[1], kp_interp_hw(dy));
    return 0;
}

/* dy, x [N,F] -> dx: dy where the sample is kept, 0 where masked */
int interp_masking_grad(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_masking_backward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                            kp_interp_in(it, nd->in[1]), nd->attr.value, it->n,
                            nd->in[1]->dims[1]);
    return 0;
}
