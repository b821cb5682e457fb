/*
 * interp.c — run a graph with the reference kernels: the oracle of the
 * tests.
 *
 * Every activation gets its own buffer of n * sample size floats (no
 * sharing, no views), freed before returning; parameters are read from the
 * slab at value->offset, so the graph must be memory-planned first.  The
 * output is copied into the caller's y.
 */
#include "interp_rules.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/ref/ref.h"

typedef int (*InterpFn)(const KpInterp *it, const KpNode *nd, KpDiag *d);

static const InterpFn interp_rules[KP_OP_COUNT] = {
#define O(op, kind, nin, shape, interp, ...) interp,
#include "ops.def"
#undef O
};

const float *kp_interp_in(const KpInterp *it, const KpValue *v)
{
    switch (v->role) {
    case KP_ROLE_INPUT:
        return it->x;
    case KP_ROLE_PARAM:
        assert(v->storage == KP_STORE_PARAM && "kp_interp_run needs a memory plan");
        return it->params + v->offset;
    default:
        assert(it->act[v->id]);
        return it->act[v->id];
    }
}

float *kp_interp_out(const KpInterp *it, const KpNode *nd)
{
    assert(it->act[nd->out->id]);
    return it->act[nd->out->id];
}

static void free_acts(float **act, int nvalues)
{
    for (int i = 0; i < nvalues; i++)
        free(act[i]);
    free(act);
}

int kp_interp_run(const KpGraph *g, const float *params, const float *x, int64_t n, float *y,
                  KpDiag *d)
{
    assert(n >= 1 && g->output);
    float **act = calloc((size_t)g->nvalues, sizeof *act);
    if (!act)
        return kp_error(d, "%s: out of memory in the interpreter", g->file ? g->file : "<model>");
    KpInterp it = {.g = g, .params = params, .x = x, .n = n, .act = act};
    for (int k = 0; k < g->nnodes; k++) {
        const KpNode *nd = g->nodes[k];
        size_t bytes = (size_t)kp_value_numel(nd->out, n) * sizeof(float);
        act[nd->out->id] = malloc(bytes ? bytes : 1);
        if (!act[nd->out->id]) {
            free_acts(act, g->nvalues);
            return kp_error(d, "%s: out of memory in the interpreter",
                            g->file ? g->file : "<model>");
        }
        if (interp_rules[nd->op](&it, nd, d)) {
            free_acts(act, g->nvalues);
            return -1;
        }
    }
    memcpy(y, kp_interp_in(&it, g->output), (size_t)kp_value_numel(g->output, n) * sizeof(float));
    free_acts(act, g->nvalues);
    return 0;
}

int interp_unsupported(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    return kp_error(d, "%s: %s (%s): no reference execution for %s yet",
                    it->g->file ? it->g->file : "<model>", nd->where ? nd->where : "?",
                    nd->name ? nd->name : "?", kp_op_name(nd->op));
}

/* x -> y, the same floats (flatten, reshape, dropout in inference) */
int interp_identity(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    memcpy(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
           (size_t)kp_value_numel(nd->out, it->n) * sizeof(float));
    return 0;
}

/* x (n,in), weight (out,in), bias (out) or none -> y (n,out) */
int interp_dense(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    const float *b = nd->nin == 3 ? kp_interp_in(it, nd->in[2]) : NULL;
    kp_ref_dense_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                         kp_interp_in(it, nd->in[1]), b, it->n, nd->in[0]->dims[1],
                         nd->out->dims[1]);
    return 0;
}

/* elementwise over all n * sample floats */
int interp_relu(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_relu_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                        kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_sigmoid(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_sigmoid_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                           kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_tanh(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_tanh_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]),
                        kp_value_numel(nd->out, it->n));
    return 0;
}

int interp_leaky_relu(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    kp_ref_leaky_relu_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), nd->attr.alpha,
                              kp_value_numel(nd->out, it->n));
    return 0;
}

/* x (rows, cols) -> y (rows, cols): cols is the last axis, rows all others */
int interp_softmax(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    int64_t cols = nd->out->dims[nd->out->rank - 1];
    int64_t rows = kp_value_numel(nd->out, it->n) / cols;
    kp_ref_softmax_forward(kp_interp_out(it, nd), kp_interp_in(it, nd->in[0]), rows, cols);
    return 0;
}
