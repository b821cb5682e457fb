/*
 * fold.c — constant work of an inference graph moved to the prepare
 * entry (KP_PHASE_PREPARE: computed from the parameters once, when they
 * change, never per call).
 *
 * 1. Batchnorm folding.  In inference a batchnorm is an affine map per
 *    channel, y = (x - mean) * s + beta with s = gamma / sqrt(var + eps).
 *    When x is the output of a conv2d or dense read by nothing else and
 *    without fused epilogues, the map goes into that layer's weight and
 *    bias, per output channel f:
 *
 *        W'[f,...] = W[f,...] * s[f]            (bn_fold_weight)
 *        b'[f]     = (b[f] - mean[f]) * s[f] + beta[f]   (bn_fold_bias, b = 0 without bias)
 *
 *        W  b                       W gamma var     gamma beta mean var b
 *        |  |                        \   |   /         \    |    |   /  /
 *    x - conv - bn - ...   ==>    bn_fold_weight      bn_fold_bias        [prepare]
 *                                           \             /
 *                                      x - conv(W', b') - ...
 *
 *    The batchnorm node is removed; its readers read the conv's output.
 *    Parameters keep their PyTorch layout: the folded copies live in the
 *    prepared slab.
 *
 * 2. Hoisting (constant folding).  A FORWARD node whose inputs are all
 *    parameters or PREPARE values computes the same floats on every call:
 *    it becomes PREPARE too.  The graph output and seeded ops stay.
 *
 * Train graphs are left alone (the batch statistics are not constants).
 */
#include "passes.h"
#include "prep_util.h"

#include <stdlib.h>

static bool is_const(const KpValue *v)
{
    return v->role == KP_ROLE_PARAM || (v->producer && v->producer->phase == KP_PHASE_PREPARE);
}

/* Fold batchnorm bn into the conv2d or dense before it, if it can be. */
static int fold_one(KpGraph *g, KpNode *bn, bool *drop, KpDiag *d)
{
    KpValue *x = bn->in[0];
    KpNode *p = x->producer;
    if (!p || (p->op != KP_OP_conv2d && p->op != KP_OP_dense) || p->phase != KP_PHASE_FORWARD ||
        p->nepi > 0 || x->nusers != 1 || x == g->output)
        return 0;
    KpValue *gamma = bn->in[1], *beta = bn->in[2], *mean = bn->in[3], *var = bn->in[4];
    KpValue *bias = p->nin >= 3 ? p->in[2] : NULL;
    KpAttrs at = {.eps = bn->attr.eps};
    KpNode *w = kp_prep_node(g, KP_OP_bn_fold_weight, bn, 3, (KpValue *[]){p->in[1], gamma, var},
                             &at, d);
    if (!w)
        return -1;
    KpNode *b = kp_prep_node(g, KP_OP_bn_fold_bias, bn, bias ? 5 : 4,
                             (KpValue *[]){gamma, beta, mean, var, bias}, &at, d);
    if (!b)
        return -1;
    p->in[1] = w->out;
    p->in[2] = b->out;
    p->nin = 3;
    p->attr.has_bias = true;
    for (int k = 0; k < g->nnodes; k++)
        for (int i = 0; i < g->nodes[k]->nin; i++)
            if (g->nodes[k]->in[i] == bn->out)
                g->nodes[k]->in[i] = x;
    if (g->output == bn->out)
        g->output = x;
    drop[bn->id] = true;
    return 1;
}

static bool hoistable(const KpGraph *g, const KpNode *n)
{
    if (n->phase != KP_PHASE_FORWARD || n->nin == 0 || n->out == g->output ||
        n->op == KP_OP_dropout_mask || n->out->rank < 1 || n->out->dims[0] == KP_DIM_N)
        return false;
    for (int i = 0; i < n->nin; i++)
        if (!is_const(n->in[i]))
            return false;
    return true;
}

int kp_pass_fold(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (g->training) {
        kp_pass_report(o, "train graph: nothing folded");
        return 0;
    }
    kp_fill_uses(g);
    int n0 = g->nnodes, folded = 0, hoisted = 0;
    bool *drop = calloc(3 * (size_t)n0 + 1, sizeof *drop);   /* 2 new nodes per fold */
    if (!drop)
        return kp_error(d, "%s: out of memory", g->file ? g->file : "<model>");
    for (int k = 0; k < n0; k++) {
        KpNode *n = g->nodes[k];
        if (n->op != KP_OP_batchnorm || n->phase != KP_PHASE_FORWARD)
            continue;
        int rc = fold_one(g, n, drop, d);
        if (rc < 0) {
            free(drop);
            return -1;
        }
        folded += rc;
        kp_fill_uses(g);
    }
    for (int k = 0; k < n0; k++)
        if (!drop[g->nodes[k]->id] && hoistable(g, g->nodes[k])) {
            g->nodes[k]->phase = KP_PHASE_PREPARE;
            hoisted++;
        }
    int rc = kp_prep_reorder(g, drop, d);
    free(drop);
    kp_pass_report(o, "folded %d batchnorms into conv/dense, hoisted %d nodes to prepare", folded,
                   hoisted);
    return rc;
}
