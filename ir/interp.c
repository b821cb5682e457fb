/*
 * interp.c — run a graph with the reference kernels: the oracle of the
 * tests.  This file holds the dispatch, the buffers, kp_interp_run and
 * the forward rules of dense and the elementwise ops; interp_layers.c the
 * other layers (and the training forms of batchnorm and dropout),
 * interp_grad.c and interp_layers_grad.c the rules of the ops autodiff
 * appends, interp_train.c kp_interp_train.
 *
 * Every activation gets its own buffer of n * sample size floats (no
 * sharing, no views), freed before returning; parameters are read from the
 * slab at value->offset, so the graph must be memory-planned first.  The
 * output is copied into the caller's y.
 */
#include "interp_rules.h"
#include "epilogue.h"

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
    if (v == it->g->input)
        return it->x;
    if (v == it->g->target) {
        assert(v->dtype == KP_F32 && it->target);
        return it->target;
    }
    if (v->role == KP_ROLE_PARAM) {
        assert(v->storage == KP_STORE_PARAM && "the interpreter needs a memory plan");
        return it->params + v->offset;
    }
    assert(it->act[v->id]);
    return it->act[v->id];
}

const int32_t *kp_interp_labels(const KpInterp *it, const KpValue *v)
{
    assert(v == it->g->target && v->dtype == KP_I32 && it->target);
    return it->target;
}

float *kp_interp_out(const KpInterp *it, const KpNode *nd)
{
    assert(it->act[nd->out->id]);
    return it->act[nd->out->id];
}

float *kp_interp_aux(const KpInterp *it, const KpNode *nd, int i)
{
    assert(i >= 0 && i < nd->naux && it->act[nd->aux[i]->id]);
    return it->act[nd->aux[i]->id];
}

float **kp_interp_acts_new(const KpGraph *g)
{
    return calloc((size_t)g->nvalues + 1, sizeof(float *));
}

void kp_interp_acts_free(const KpGraph *g, float **act)
{
    if (!act)
        return;
    for (int i = 0; i < g->nvalues; i++)
        free(act[i]);
    free(act);
}

static int oom(const KpGraph *g, KpDiag *d)
{
    return kp_error(d, "%s: out of memory in the interpreter", g->file ? g->file : "<model>");
}

/* Fused epilogues (ir.h's KpEpilogue), in place on the node's output,
 * with the same reference kernels the unfused nodes would have run. */
static void apply_epilogues(const KpInterp *it, const KpNode *nd)
{
    float *y = it->act[nd->out->id];
    int64_t count = kp_value_numel(nd->out, it->n);
    for (int k = 0; k < nd->nepi; k++) {
        const KpEpilogue *ep = &nd->epi[k];
        const float *a = ep->nargs > 0 ? kp_interp_in(it, nd->in[ep->arg[0]]) : NULL;
        switch (ep->op) {
        case KP_OP_relu: kp_ref_relu_forward(y, y, count); break;
        case KP_OP_leaky_relu: kp_ref_leaky_relu_forward(y, y, ep->alpha, count); break;
        case KP_OP_sigmoid: kp_ref_sigmoid_forward(y, y, count); break;
        case KP_OP_tanh: kp_ref_tanh_forward(y, y, count); break;
        case KP_OP_relu_grad: kp_ref_relu_backward(y, y, a, count); break;
        case KP_OP_leaky_relu_grad: kp_ref_leaky_relu_backward(y, y, a, ep->alpha, count); break;
        case KP_OP_sigmoid_grad: kp_ref_sigmoid_backward(y, y, a, count); break;
        case KP_OP_tanh_grad: kp_ref_tanh_backward(y, y, a, count); break;
        case KP_OP_add:
            for (int j = 0; j < ep->nargs; j++) {
                const float *b = kp_interp_in(it, nd->in[ep->arg[j]]);
                for (int64_t i = 0; i < count; i++)
                    y[i] += b[i];
            }
            break;
        case KP_OP_mul:
            for (int64_t i = 0; i < count; i++)
                y[i] *= a[i];
            break;
        default:
            assert(!"an op the verifier does not allow as an epilogue");
        }
    }
}

/* A fused loss (KpNode.loss): its two nodes as they were before the
 * fusion, over the node's final output and the target. */
static int run_fused_loss(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    KpNode part = {.op = nd->loss.op, .name = nd->name, .where = nd->where, .nin = 2,
                   .in = {nd->out, nd->in[nd->loss.target]}, .out = nd->aux[0],
                   .phase = KP_PHASE_LOSS};
    if (interp_rules[part.op](it, &part, d))
        return -1;
    part.op = nd->loss.grad_op;
    part.out = nd->aux[1];
    return interp_rules[part.op](it, &part, d);
}

int kp_interp_exec(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    /* The optimizer updates the slab in place: its output needs no buffer. */
    for (int o = 0; o < kp_node_nout(nd) && nd->phase != KP_PHASE_UPDATE; o++) {
        const KpValue *v = kp_node_output(nd, o);
        if (it->act[v->id])
            continue;
        size_t count = (size_t)kp_value_numel(v, it->n);
        it->act[v->id] = malloc((count ? count : 1) * sizeof(float));
        if (!it->act[v->id])
            return oom(it->g, d);
    }
    if (interp_rules[nd->op](it, nd, d))
        return -1;
    if (nd->nepi > 0)
        apply_epilogues(it, nd);
    const KpValue *bias = kp_node_folded_bias(nd);
    if (bias) {
        /* the bias_grad fusion.c folded in, over the final output */
        float *db = it->act[bias->id];
        memset(db, 0, (size_t)bias->dims[0] * sizeof(float));
        kp_ref_bias_backward(db, it->act[nd->out->id], it->n, nd->out->dims[1],
                             kp_interp_hw(nd->out));
    }
    if (nd->loss.on && it->run_loss && run_fused_loss(it, nd, d))
        return -1;
    for (int o = 0; o < kp_node_nout(nd); o++) {
        const KpValue *v = kp_node_output(nd, o);
        if (v->storage != KP_STORE_GRAD)
            continue;
        assert(it->grads && v->grad_of);
        float *slab = it->grads + v->grad_of->offset;
        const float *mine = it->act[v->id];
        for (int64_t i = 0, count = kp_value_numel(v, it->n); i < count; i++)
            slab[i] += mine[i];
    }
    return 0;
}

int kp_interp_run(const KpGraph *g, const float *params, const float *x, int64_t n, float *y,
                  KpDiag *d)
{
    assert(n >= 1 && g->output);
    float **act = kp_interp_acts_new(g);
    if (!act)
        return oom(g, d);
    KpInterp it = {.g = g, .params = params, .x = x, .n = n, .act = act};
    /* the PREPARE nodes (folded and packed weights) first, as karp_infer does */
    for (int k = 0; k < 2 * g->nnodes; k++) {
        KpPhase want = k < g->nnodes ? KP_PHASE_PREPARE : KP_PHASE_FORWARD;
        if (g->nodes[k % g->nnodes]->phase != want)
            continue;
        if (kp_interp_exec(&it, g->nodes[k % g->nnodes], d)) {
            kp_interp_acts_free(g, act);
            return -1;
        }
    }
    memcpy(y, kp_interp_in(&it, g->output), (size_t)kp_value_numel(g->output, n) * sizeof(float));
    kp_interp_acts_free(g, act);
    return 0;
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
    const float *b = kp_node_op_nin(nd) == 3 ? kp_interp_in(it, nd->in[2]) : NULL;
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

/* x1, x2, ... (count each) -> y = ((x1 + x2) + x3) + ..., in float, in
 * input order (the residual add, and autodiff's sum of gradients) */
int interp_add(const KpInterp *it, const KpNode *nd, KpDiag *d)
{
    float *y = kp_interp_out(it, nd);
    int64_t count = kp_value_numel(nd->out, it->n);
    memcpy(y, kp_interp_in(it, nd->in[0]), (size_t)count * sizeof(float));
    for (int k = 1; k < kp_node_op_nin(nd); k++) {
        const float *xk = kp_interp_in(it, nd->in[k]);
        for (int64_t i = 0; i < count; i++)
            y[i] += xk[i];
    }
    return 0;
}
