/*
 * fold_update.c — which weight gradients train_step folds its optimizer
 * step into (emit.h's KpFolded; the kernel is emit_optim.c's).
 *
 * Only in a model compiled for batch 1: there a dense layer's weight
 * gradient is the outer product dy x, one multiply per element, which the
 * step can compute where it needs it instead of reading it back from the
 * gradient slab.  A dense_grad_w node is folded when
 *   - the train graph has one update node, an sgd, momentum or adam step
 *     over its trainable floats;
 *   - the node runs among the BACKWARD nodes (train_step runs it), has no
 *     epilogue and writes the gradient of trainable floats that no other
 *     node writes (so the gradient is its product alone);
 *   - no BACKWARD node after the node's group reads those parameters: the
 *     folded step changes them right after the group, where the unfolded
 *     step would change them after the whole backward;
 *   - (KP_FOLD_AUTO) the layer's floats, 16 bytes each in the parameter,
 *     gradient and optimizer slabs, do not fit in the L2 caches of the
 *     cores.  The fold saves four passes over the gradient slab, but its
 *     kernel is one more parallel region in the step; from L2 the passes
 *     cost less than that.  Measured on the 2-core Zen 4 (1 MiB of L2
 *     each), batch 1, 2 threads, cores near, alternated runs: fashion_cnn's
 *     dense4 (1.2 M floats, 19 MB) 864-914 -> 749-761 us a step (with
 *     Adam's one division fewer, emit_optim.c), keras_cnn's dense5 (102 k floats,
 *     1.6 MB) 157-160 -> 166-177 us.
 * karp_backward and karp_apply are untouched: they still write and read
 * the gradients.
 */
#include <string.h>

#include "backend.h"
#include "emit.h"
#include "gemm.h"

static bool overlaps(const KpValue *v, KpStorage storage, int64_t from, int64_t floats)
{
    return v->storage == storage && v->offset < from + floats &&
           from < v->offset + kp_value_numel(v, 1);
}

/* Whether a node other than n writes into the gradients [from, +floats). */
static bool written_elsewhere(const KpGraph *g, const KpNode *n, int64_t from, int64_t floats)
{
    for (int i = 0; i < g->nnodes; i++) {
        const KpNode *m = g->nodes[i];
        for (int o = 0; m != n && o < kp_node_nout(m); o++)
            if (overlaps(kp_node_output(m, o), KP_STORE_GRAD, from, floats))
                return true;
    }
    return false;
}

/* Whether a BACKWARD node from id `from_id` on reads the parameters
 * [from, +floats). */
static bool read_after(const KpGraph *g, int from_id, int64_t from, int64_t floats)
{
    for (int i = from_id; i < g->nnodes; i++) {
        const KpNode *m = g->nodes[i];
        for (int k = 0; m->phase == KP_PHASE_BACKWARD && k < m->nin; k++)
            if (overlaps(m->in[k], KP_STORE_PARAM, from, floats))
                return true;
    }
    return false;
}

/* min_floats: a smaller layer is left as it is (KP_FOLD_AUTO's rule) */
static bool foldable(const KpGraph *g, const KpNode *n, int64_t trained, int64_t min_floats)
{
    if (kp_value_numel(n->out, 1) < min_floats)
        return false;
    if (n->op != KP_OP_dense_grad_w || n->phase != KP_PHASE_BACKWARD || n->nepi > 0 ||
        n->out->storage != KP_STORE_GRAD || n->in[0]->rank != 2 || n->in[1]->rank != 2)
        return false;
    int64_t from = n->out->offset, floats = kp_value_numel(n->out, 1);
    return from >= 0 && from + floats <= trained &&
           n->in[0]->dims[1] * n->in[1]->dims[1] == floats &&
           !written_elsewhere(g, n, from, floats) && !read_after(g, kp_group_end(g, n), from, floats);
}

void kp_fold_updates(const KpGraph *g, int mode, KpFolded *f)
{
    memset(f, 0, sizeof *f);
    f->update = -1;
    if (g->max_batch != 1 || mode == KP_FOLD_NEVER)
        return;
    const KpNode *u = NULL;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i]->phase != KP_PHASE_UPDATE)
            continue;
        if (u)
            return;     /* two updates: not a graph autodiff makes */
        u = g->nodes[i];
    }
    if (!u || u->nin != 0 || !kp_emit_can_fold_update(u->op))
        return;
    int64_t trained = kp_value_numel(u->out, 1), min_floats = 0;
    if (mode == KP_FOLD_AUTO) {
        int64_t l1, l2, cores;
        kp_gemm_host(&l1, &l2, &cores);
        min_floats = l2 * cores / 16 + 1;   /* 16 bytes a float over the slabs */
    }
    for (int i = 0; i < g->nnodes && f->count < KP_MAX_FOLDED; i++) {
        const KpNode *n = g->nodes[i];
        if (!foldable(g, n, trained, min_floats))
            continue;
        /* keep the ranges ascending (they are disjoint: no other node
         * writes a folded node's gradients) */
        int k = f->count++;
        while (k > 0 && kp_folded_grad(g, f, k - 1)->offset > n->out->offset) {
            f->node[k] = f->node[k - 1];
            k--;
        }
        f->node[k] = n->id;
    }
    if (f->count > 0)
        f->update = u->id;
}
