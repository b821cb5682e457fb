/*
 * shape_rules.c — shape inference for the ops that are not convolutions
 * or pools (those are in shape_conv.c), and kp_node_infer_shape, which
 * dispatches through the op table.
 *
 * Activations are [N, sample dims...]: dims[0] is always KP_DIM_N, so "a
 * rank-1 sample" is a rank-2 value [N,F] and "a rank-3 sample" is
 * [N,C,H,W].
 */
#include "shape_rules.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

typedef int (*ShapeFn)(KpGraph *g, KpNode *n, KpDiag *d);

static const ShapeFn shape_rules[KP_OP_COUNT] = {
#define O(op, kind, nin, shape, ...) shape,
#include "ops.def"
#undef O
};

int kp_node_infer_shape(KpGraph *g, KpNode *n, KpDiag *d)
{
    assert(n->op >= 0 && n->op < KP_OP_COUNT);
    for (int i = 0; i < n->nin; i++)
        assert(n->in[i] && n->in[i]->rank > 0);
    return shape_rules[n->op](g, n, d);
}

int kp_shape_error(const KpGraph *g, const KpNode *n, KpDiag *d, const KpValue *got,
                   const char *fmt, ...)
{
    char what[512], shape[128] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (got)
        kp_shape_str(got, shape, sizeof shape);
    return kp_error(d, "%s: %s (%s): %s%s%s", g->file ? g->file : "<model>",
                    n->where ? n->where : "?", n->name ? n->name : kp_op_name(n->op), what,
                    got ? ", got " : "", shape);
}

void kp_shape_set(KpValue *v, int rank, const int64_t *dims)
{
    assert(rank >= 0 && rank <= KP_MAX_RANK);
    v->rank = rank;
    for (int i = 0; i < rank; i++)
        v->dims[i] = dims[i];
    for (int i = rank; i < KP_MAX_RANK; i++)
        v->dims[i] = 0;
}

static bool is_vector(const KpValue *v, int64_t len)
{
    return v->rank == 1 && v->dims[0] == len;
}

/* x [N,in], weight [units,in], bias [units] (optional) -> [N,units] */
int shape_dense(KpGraph *g, KpNode *n, KpDiag *d)
{
    assert(n->nin == 2 || n->nin == 3);
    const KpValue *x = n->in[0], *w = n->in[1];
    int64_t units = n->attr.units;
    if (x->rank != 2)
        return kp_shape_error(g, n, d, x, "input must be rank 1 per sample (use flatten)");
    int64_t in = x->dims[1];
    if (w->rank != 2 || w->dims[0] != units || w->dims[1] != in)
        return kp_shape_error(g, n, d, w, "weight must be [%" PRId64 ",%" PRId64 "]", units, in);
    if (n->nin == 3 && !is_vector(n->in[2], units))
        return kp_shape_error(g, n, d, n->in[2], "bias must be [%" PRId64 "]", units);
    kp_shape_set(n->out, 2, (int64_t[]){KP_DIM_N, units});
    return 0;
}

/* x [N,F] or [N,C,H,W]; weight, bias, running_mean, running_var [C] -> x's shape */
int shape_batchnorm(KpGraph *g, KpNode *n, KpDiag *d)
{
    assert(n->nin == 5);
    const KpValue *x = n->in[0];
    if (x->rank != 2 && x->rank != 4)
        return kp_shape_error(g, n, d, x, "input must be rank 1 or rank 3 per sample");
    int64_t c = x->dims[1];
    for (int i = 1; i < 5; i++)
        if (!is_vector(n->in[i], c))
            return kp_shape_error(g, n, d, n->in[i], "parameter %s must be [%" PRId64 "]",
                                  n->in[i]->name ? n->in[i]->name : "?", c);
    kp_shape_set(n->out, x->rank, x->dims);
    return 0;
}

/* x [N,F] -> [N,F] */
int shape_masking(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0];
    if (x->rank != 2)
        return kp_shape_error(g, n, d, x, "input must be rank 1 per sample (use flatten)");
    kp_shape_set(n->out, 2, x->dims);
    return 0;
}

/* Format a per-sample shape given in an attribute, "[7,7,-1]" (no N). */
static void attr_shape_str(const int64_t *dims, int rank, char *buf, size_t size)
{
    int len = snprintf(buf, size, "[");
    for (int i = 0; i < rank && len > 0 && (size_t)len < size; i++)
        len += snprintf(buf + len, size - (size_t)len, "%s%" PRId64, i ? "," : "", dims[i]);
    if (len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, "]");
}

/* x [N,...] -> [N, attr.reshape_dims...] with the same element count; one
 * dim may be -1 and is then inferred. */
int shape_reshape(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0];
    const KpAttrs *a = &n->attr;
    char want[128];
    attr_shape_str(a->reshape_dims, a->reshape_rank, want, sizeof want);
    if (a->reshape_rank < 1 || a->reshape_rank > KP_MAX_RANK - 1)
        return kp_shape_error(g, n, d, NULL, "reshape target %s must have 1 to %d dimensions",
                              want, KP_MAX_RANK - 1);
    int64_t known = 1, elems = kp_value_sample_size(x);
    int infer = -1;
    for (int i = 0; i < a->reshape_rank; i++) {
        int64_t dim = a->reshape_dims[i];
        if (dim == -1 && infer < 0)
            infer = i;
        else if (dim == -1)
            return kp_shape_error(g, n, d, NULL, "reshape target %s may contain one -1 only",
                                  want);
        else if (dim <= 0)
            return kp_shape_error(g, n, d, NULL,
                                  "reshape target %s must have positive dimensions", want);
        else
            known *= dim;
    }
    int64_t dims[KP_MAX_RANK] = {KP_DIM_N};
    for (int i = 0; i < a->reshape_rank && i + 1 < KP_MAX_RANK; i++)  /* bound checked above */
        dims[i + 1] = a->reshape_dims[i];
    if (infer >= 0) {
        if (elems % known != 0)
            return kp_shape_error(g, n, d, x,
                                  "cannot reshape %" PRId64 " elements per sample into %s",
                                  elems, want);
        dims[infer + 1] = elems / known;
    } else if (known != elems) {
        return kp_shape_error(g, n, d, x,
                              "reshape target %s has %" PRId64
                              " elements per sample, the input %" PRId64,
                              want, known, elems);
    }
    kp_shape_set(n->out, a->reshape_rank + 1, dims);
    return 0;
}

/* x [N,d1,...] -> [N, d1*...] */
int shape_flatten(KpGraph *g, KpNode *n, KpDiag *d)
{
    kp_shape_set(n->out, 2, (int64_t[]){KP_DIM_N, kp_value_sample_size(n->in[0])});
    return 0;
}

/* x -> x's shape (elementwise ops, dropout) */
int shape_same(KpGraph *g, KpNode *n, KpDiag *d)
{
    kp_shape_set(n->out, n->in[0]->rank, n->in[0]->dims);
    return 0;
}

/* x [N,...,C] -> the same shape; softmax runs over the last axis C. */
int shape_softmax(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0];
    if (x->rank < 2)
        return kp_shape_error(g, n, d, x, "softmax needs at least one axis per sample");
    kp_shape_set(n->out, x->rank, x->dims);
    return 0;
}

static bool same_shape(const KpValue *a, const KpValue *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

/* x1, x2, ... all of one shape -> that shape */
int shape_add(KpGraph *g, KpNode *n, KpDiag *d)
{
    if (n->nin < 2)
        return kp_shape_error(g, n, d, NULL, "add needs at least 2 inputs, got %d", n->nin);
    for (int i = 1; i < n->nin; i++) {
        if (!same_shape(n->in[0], n->in[i])) {
            char first[128];
            kp_shape_str(n->in[0], first, sizeof first);
            return kp_shape_error(g, n, d, n->in[i],
                                  "add inputs must all have the shape of input 0 %s, input %d",
                                  first, i);
        }
    }
    kp_shape_set(n->out, n->in[0]->rank, n->in[0]->dims);
    return 0;
}

/* x1 [N,..,a1,..], x2 [N,..,a2,..], ... -> [N,..,a1+a2+..,..]: joined along
 * per-sample axis attr.axis (0 = channels), every other dim equal. */
int shape_concat(KpGraph *g, KpNode *n, KpDiag *d)
{
    if (n->nin < 2)
        return kp_shape_error(g, n, d, NULL, "concat needs at least 2 inputs, got %d", n->nin);
    const KpValue *x0 = n->in[0];
    int axis = n->attr.axis;
    if (axis < 0 || axis >= x0->rank - 1)
        return kp_shape_error(g, n, d, x0, "concat axis %d is out of range for rank-%d samples",
                              axis, x0->rank - 1);
    int64_t dims[KP_MAX_RANK];
    for (int i = 0; i < x0->rank; i++)
        dims[i] = x0->dims[i];
    for (int k = 1; k < n->nin; k++) {
        const KpValue *x = n->in[k];
        bool ok = x->rank == x0->rank;
        for (int i = 0; ok && i < x0->rank; i++)
            ok = i == axis + 1 || x->dims[i] == x0->dims[i];
        if (!ok) {
            char first[128];
            kp_shape_str(x0, first, sizeof first);
            return kp_shape_error(g, n, d, x,
                                  "concat inputs must match input 0 %s except along axis %d, "
                                  "input %d",
                                  first, axis, k);
        }
        dims[axis + 1] += x->dims[axis + 1];
    }
    kp_shape_set(n->out, x0->rank, dims);
    return 0;
}
