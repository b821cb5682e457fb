/*
 * simplify.c — dead code, common subexpressions and data-free identities.
 *
 * One sweep over the nodes in topological order rewrites each node's
 * inputs and then looks at the node itself:
 *
 *   reshape chain   B = reshape|flatten(A), A = reshape|flatten(x)
 *                   -> B = reshape(x) to B's shape (A may become dead)
 *   identity        reshape|flatten to the shape it already has, add of
 *                   one input -> its users read the input instead
 *   common subexpr  same op, same inputs in the same order, equal
 *                   attributes, same phase, no epilogues, as an earlier
 *                   node -> its users read the earlier node's output
 *
 * A value is only ever replaced when it is an ordinary activation (role
 * ACT) and none of the graph's special values (output, loss, d_output,
 * d_input): those are named by the entry points and the memory plan.
 *
 * Then dead-code elimination walks backwards from the roots, marking what
 * they read:
 *
 *   roots = the output, loss, d_output, d_input, every parameter-gradient
 *           writer (role GRAD) and the optimizer update (phase UPDATE)
 *
 * Side effects: batchnorm_stats also updates the running statistics in
 * the parameter slab.  It is kept while its batch statistics are read
 * (always, on a live path: batchnorm_train reads them); a batchnorm on a
 * dead branch goes, statistics update and all, as in PyTorch, where a
 * module the forward never calls keeps its buffers, and in Keras, where a
 * layer off the path from input to output is not part of the model.
 * dropout_mask draws random numbers but has no effect beyond its output:
 * it may die, never merge (two masks are two draws).  Neither merges with
 * anything, nor does the update.  Parameters are never removed, read or
 * not: both graphs of a model must keep one parameter layout.
 *
 * Unreachable nodes and their output values are dropped, nodes and values
 * renumbered in order, and the users refilled (kp_fill_uses).
 */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct Counts {
    int dead, merged, chains, identities, values;
} Counts;

/* ops that write more than their output (never merged) */
static bool has_side_effect(KpOp op)
{
    return op == KP_OP_batchnorm_stats || op == KP_OP_sgd_update ||
           op == KP_OP_momentum_update || op == KP_OP_adam_update;
}

static bool is_special(const KpGraph *g, const KpValue *v)
{
    return v == g->input || v == g->output || v == g->loss_value || v == g->d_output ||
           v == g->d_input || v == g->target;
}

/* whether every read of v may be redirected to another value */
static bool replaceable(const KpGraph *g, const KpValue *v)
{
    return v->role == KP_ROLE_ACT && !is_special(g, v);
}

static bool dims_equal(const int64_t *a, const int64_t *b, int rank)
{
    for (int i = 0; i < rank; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static bool same_shape(const KpValue *a, const KpValue *b)
{
    return a->dtype == b->dtype && a->rank == b->rank && dims_equal(a->dims, b->dims, a->rank);
}

/* Every attribute, field by field (padding bytes make memcmp unsafe).
 * Fields an op does not read compare equal in practice; when they do not,
 * a merge is missed, never made wrongly. */
static bool attrs_equal(const KpAttrs *a, const KpAttrs *b)
{
    const KpOptimHyper *p = &a->optim, *q = &b->optim;
    return a->units == b->units && a->filters == b->filters &&
           dims_equal(a->kernel, b->kernel, 2) && dims_equal(a->stride, b->stride, 2) &&
           dims_equal(a->padding, b->padding, 2) && a->pad_mode == b->pad_mode &&
           dims_equal(a->dilation, b->dilation, 2) &&
           dims_equal(a->output_padding, b->output_padding, 2) && a->has_bias == b->has_bias &&
           a->alpha == b->alpha && a->eps == b->eps && a->momentum == b->momentum &&
           a->rate == b->rate && a->value == b->value && a->axis == b->axis &&
           a->slice_offset == b->slice_offset && a->slice_size == b->slice_size &&
           a->reshape_rank == b->reshape_rank &&
           dims_equal(a->reshape_dims, b->reshape_dims, a->reshape_rank) && p->lr == q->lr &&
           p->weight_decay == q->weight_decay && p->beta == q->beta && p->beta1 == q->beta1 &&
           p->beta2 == q->beta2 && p->eps == q->eps;
}

static bool mergeable(const KpNode *n)
{
    return n->nin > 0 && n->nepi == 0 && !has_side_effect(n->op) && n->op != KP_OP_dropout_mask &&
           n->phase != KP_PHASE_UPDATE && n->out->role == KP_ROLE_ACT;
}

static bool same_computation(const KpNode *a, const KpNode *b)
{
    if (a->op != b->op || a->nin != b->nin || a->phase != b->phase || !same_shape(a->out, b->out))
        return false;
    for (int i = 0; i < a->nin; i++)
        if (a->in[i] != b->in[i])
            return false;
    return attrs_equal(&a->attr, &b->attr);
}

static bool is_reshape(const KpNode *n)
{
    return (n->op == KP_OP_reshape || n->op == KP_OP_flatten) && n->nepi == 0;
}

/* repl[v->id]: the value that reads of v now read instead (NULL: v itself) */
static KpValue *resolve(KpValue **repl, KpValue *v)
{
    while (repl[v->id])
        v = repl[v->id];
    return v;
}

/* B = reshape|flatten(A), A = reshape|flatten(x): B = reshape(x) */
static bool collapse_chain(KpNode *n)
{
    if (!is_reshape(n))
        return false;
    KpNode *a = n->in[0]->producer;
    if (!a || !is_reshape(a) || n->out->rank < 2 ||
        n->out->dims[0] != KP_DIM_N || n->out->rank - 1 > KP_MAX_RANK - 1)
        return false;
    n->in[0] = a->in[0];
    n->op = KP_OP_reshape;
    n->attr.reshape_rank = n->out->rank - 1;
    for (int i = 1; i < n->out->rank; i++)
        n->attr.reshape_dims[i - 1] = n->out->dims[i];
    return true;
}

static bool is_identity(const KpNode *n)
{
    if (is_reshape(n))
        return same_shape(n->in[0], n->out);
    return n->op == KP_OP_add && n->nin == 1 && n->nepi == 0 && same_shape(n->in[0], n->out);
}

static void sweep(KpGraph *g, KpValue **repl, Counts *c)
{
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        for (int i = 0; i < n->nin; i++)
            n->in[i] = resolve(repl, n->in[i]);
        if (collapse_chain(n))
            c->chains++;
        if (!replaceable(g, n->out))
            continue;
        if (is_identity(n)) {
            repl[n->out->id] = n->in[0];
            c->identities++;
            continue;
        }
        if (!mergeable(n))
            continue;
        for (int j = 0; j < k; j++) {
            KpNode *m = g->nodes[j];
            if (!repl[m->out->id] && mergeable(m) && same_computation(m, n)) {
                repl[n->out->id] = m->out;
                c->merged++;
                break;
            }
        }
    }
}

static bool is_root(const KpGraph *g, const KpNode *n)
{
    const KpValue *v = n->out;
    return v == g->output || v == g->loss_value || v == g->d_output || v == g->d_input ||
           v->role == KP_ROLE_GRAD || n->phase == KP_PHASE_UPDATE;
}

/* Mark the live nodes, then keep only them and the values they produce. */
static void eliminate(KpGraph *g, bool *live, Counts *c)
{
    for (int k = g->nnodes - 1; k >= 0; k--) {
        KpNode *n = g->nodes[k];
        if (!live[k] && !is_root(g, n))
            continue;
        live[k] = true;
        for (int i = 0; i < n->nin; i++)
            if (n->in[i]->producer)
                live[n->in[i]->producer->id] = true;
    }
    int kept = 0;
    for (int k = 0; k < g->nnodes; k++) {
        if (!live[k]) {
            g->nodes[k]->out->producer = NULL;
            g->nodes[k]->out->id = -1;      /* dropped below */
            continue;
        }
        g->nodes[kept] = g->nodes[k];
        g->nodes[kept]->id = kept;
        kept++;
    }
    c->dead = g->nnodes - kept;
    g->nnodes = kept;
    int nv = 0;
    for (int i = 0; i < g->nvalues; i++) {
        KpValue *v = g->values[i];
        if (v->id < 0)
            continue;
        v->id = nv;
        g->values[nv++] = v;
    }
    c->values = g->nvalues - nv;
    g->nvalues = nv;
}

int kp_pass_simplify(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    Counts c = {0};
    KpValue **repl = calloc((size_t)g->nvalues + 1, sizeof *repl);
    bool *live = calloc((size_t)g->nnodes + 1, sizeof *live);
    if (!repl || !live) {
        free(repl);
        free(live);
        return kp_error(d, "out of memory");
    }
    sweep(g, repl, &c);
    eliminate(g, live, &c);
    free(repl);
    free(live);
    kp_fill_uses(g);
    kp_pass_report(o, "removed %d dead node%s, merged %d common subexpression%s, "
                      "collapsed %d reshape chain%s, bypassed %d identit%s",
                   c.dead, c.dead == 1 ? "" : "s", c.merged, c.merged == 1 ? "" : "s", c.chains,
                   c.chains == 1 ? "" : "s", c.identities, c.identities == 1 ? "y" : "ies");
    return 0;
}
