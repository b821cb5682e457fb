/*
 * shape_prep.c — shape rules and reference executions of the inference
 * preparation ops (ops.def: bn_fold_weight, bn_fold_bias, pack_panels,
 * dense_packed).  The preparation ops read parameters only, so their
 * outputs have no batch dimension; the interpreter runs them on plain C
 * loops, the way the prepare entry does once per parameter change.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "interp_rules.h"
#include "shape_rules.h"

static bool is_vector(const KpValue *v, int64_t len)
{
    return v->rank == 1 && v->dims[0] == len;
}

/* weight [F,...], gamma [F], var [F] -> weight's shape */
int shape_bn_fold_weight(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *w = n->in[0];
    if (w->rank < 2 || w->dims[0] == KP_DIM_N)
        return kp_shape_error(g, n, d, w, "folded weight must be a parameter of rank 2 or more");
    for (int i = 1; i < 3; i++)
        if (!is_vector(n->in[i], w->dims[0]))
            return kp_shape_error(g, n, d, n->in[i], "batchnorm parameter must be [%" PRId64 "]",
                                  w->dims[0]);
    kp_shape_set(n->out, w->rank, w->dims);
    return 0;
}

/* gamma, beta, mean, var [F], bias [F] (optional) -> [F] */
int shape_bn_fold_bias(KpGraph *g, KpNode *n, KpDiag *d)
{
    if (n->nin != 4 && n->nin != 5)
        return kp_shape_error(g, n, d, NULL, "bn_fold_bias takes 4 or 5 inputs, got %d", n->nin);
    int64_t f = n->in[0]->dims[0];
    for (int i = 0; i < n->nin; i++)
        if (!is_vector(n->in[i], f))
            return kp_shape_error(g, n, d, n->in[i], "operand %d must be [%" PRId64 "]", i, f);
    kp_shape_set(n->out, 1, (int64_t[]){f});
    return 0;
}

/* weight [out,in] -> [ceil(out/P),in,P] */
int shape_pack_panels(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *w = n->in[0];
    int64_t p = n->attr.panel;
    if (p < 1)
        return kp_shape_error(g, n, d, NULL, "panel width must be positive, got %" PRId64, p);
    if (w->rank != 2 || w->dims[0] == KP_DIM_N)
        return kp_shape_error(g, n, d, w, "packed weight must be a [out,in] parameter");
    n->attr.units = w->dims[0];
    kp_shape_set(n->out, 3, (int64_t[]){(w->dims[0] + p - 1) / p, w->dims[1], p});
    return 0;
}

/* weight [F,...] -> [F, wstride], wstride at least the floats of a row */
int shape_pad_rows(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *w = n->in[0];
    if (w->rank < 2 || w->dims[0] == KP_DIM_N)
        return kp_shape_error(g, n, d, w, "padded weight must be a [F,...] parameter");
    int64_t per = kp_value_numel(w, 1) / w->dims[0];
    if (n->attr.wstride < per)
        return kp_shape_error(g, n, d, w, "row stride %" PRId64 " is less than a row (%" PRId64 " floats)",
                              n->attr.wstride, per);
    kp_shape_set(n->out, 2, (int64_t[]){w->dims[0], n->attr.wstride});
    return 0;
}

/* x [N,in], panels [ceil(units/P),in,P], bias [units]?, epilogue operands -> [N,units] */
int shape_dense_packed(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0], *pw = n->in[1];
    int64_t units = n->attr.units, p = n->attr.panel;
    if (n->nin < 2 || (n->attr.has_bias && n->nin < 3))
        return kp_shape_error(g, n, d, NULL, "dense_packed needs x, panels%s",
                              n->attr.has_bias ? " and a bias" : "");
    if (x->rank != 2)
        return kp_shape_error(g, n, d, x, "input must be rank 1 per sample (use flatten)");
    if (p < 1 || pw->rank != 3 || pw->dims[0] != (units + p - 1) / p || pw->dims[1] != x->dims[1] ||
        pw->dims[2] != p)
        return kp_shape_error(g, n, d, pw, "panels must be [%" PRId64 ",%" PRId64 ",%" PRId64 "]",
                              p > 0 ? (units + p - 1) / p : 0, x->dims[1], p);
    if (n->attr.has_bias && !is_vector(n->in[2], units))
        return kp_shape_error(g, n, d, n->in[2], "bias must be [%" PRId64 "]", units);
    kp_shape_set(n->out, 2, (int64_t[]){KP_DIM_N, units});
    return 0;
}

/* per output channel f: s = gamma[f] / sqrt(var[f] + eps), w'[f,...] = w[f,...] * s */
int interp_bn_fold_weight(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    (void)d;
    const float *w = kp_interp_in(it, nd->in[0]), *gamma = kp_interp_in(it, nd->in[1]);
    const float *var = kp_interp_in(it, nd->in[2]);
    float *y = kp_interp_out(it, nd);
    int64_t f = nd->in[0]->dims[0], per = kp_value_numel(nd->in[0], 1) / f;
    for (int64_t c = 0; c < f; c++) {
        float s = gamma[c] / sqrtf(var[c] + nd->attr.eps);
        for (int64_t i = 0; i < per; i++)
            y[c * per + i] = w[c * per + i] * s;
    }
    return 0;
}

/* b'[f] = (b[f] - mean[f]) * gamma[f] / sqrt(var[f] + eps) + beta[f] */
int interp_bn_fold_bias(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    (void)d;
    const float *gamma = kp_interp_in(it, nd->in[0]), *beta = kp_interp_in(it, nd->in[1]);
    const float *mean = kp_interp_in(it, nd->in[2]), *var = kp_interp_in(it, nd->in[3]);
    const float *b = nd->nin == 5 ? kp_interp_in(it, nd->in[4]) : NULL;
    float *y = kp_interp_out(it, nd);
    for (int64_t c = 0; c < nd->out->dims[0]; c++) {
        float s = gamma[c] / sqrtf(var[c] + nd->attr.eps);
        y[c] = ((b ? b[c] : 0.0f) - mean[c]) * s + beta[c];
    }
    return 0;
}

/* w [out,in] -> panels [np,in,P] */
int interp_pack_panels(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    (void)d;
    const float *w = kp_interp_in(it, nd->in[0]);
    float *y = kp_interp_out(it, nd);
    int64_t out = nd->in[0]->dims[0], in = nd->in[0]->dims[1], p = nd->attr.panel;
    int64_t np = nd->out->dims[0];
    for (int64_t j = 0; j < np; j++)
        for (int64_t k = 0; k < in; k++)
            for (int64_t l = 0; l < p; l++) {
                int64_t o = j * p + l;
                y[(j * in + k) * p + l] = o < out ? w[o * in + k] : 0.0f;
            }
    return 0;
}

/* w [F,per] -> [F,wstride]: each row, then zeros */
int interp_pad_rows(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    (void)d;
    const float *w = kp_interp_in(it, nd->in[0]);
    float *y = kp_interp_out(it, nd);
    int64_t f = nd->in[0]->dims[0], per = kp_value_numel(nd->in[0], 1) / f, ld = nd->attr.wstride;
    for (int64_t r = 0; r < f; r++)
        for (int64_t i = 0; i < ld; i++)
            y[r * ld + i] = i < per ? w[r * per + i] : 0.0f;
    return 0;
}

/* y[r,o] = sum_k x[r,k] * panels[o/P][k][o%P] (+ bias[o]); epilogues by kp_interp_exec */
int interp_dense_packed(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    (void)d;
    const float *x = kp_interp_in(it, nd->in[0]), *pw = kp_interp_in(it, nd->in[1]);
    const float *b = nd->attr.has_bias ? kp_interp_in(it, nd->in[2]) : NULL;
    float *y = kp_interp_out(it, nd);
    int64_t in = nd->in[0]->dims[1], out = nd->attr.units, p = nd->attr.panel;
    for (int64_t r = 0; r < it->n; r++)
        for (int64_t o = 0; o < out; o++) {
            const float *col = pw + (o / p) * in * p + o % p;
            float acc = b ? b[o] : 0.0f;
            for (int64_t k = 0; k < in; k++)
                acc += x[r * in + k] * col[k * p];
            y[r * out + o] = acc;
        }
    return 0;
}
