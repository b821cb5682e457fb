/*
 * prep_util.c — see prep_util.h.
 */
#include "prep_util.h"

#include <stdlib.h>

KpNode *kp_prep_node(KpGraph *g, KpOp op, const KpNode *like, int nin, KpValue *const *in,
                     const KpAttrs *attr, KpDiag *d)
{
    KpNode *n = kp_node_new(g, op, like->name, like->where, nin, in);
    if (!n) {
        kp_error(d, "%s: out of memory", g->file ? g->file : "<model>");
        return NULL;
    }
    n->attr = *attr;
    n->phase = KP_PHASE_PREPARE;
    return kp_node_infer_shape(g, n, d) ? NULL : n;
}

int kp_prep_reorder(KpGraph *g, const bool *drop, KpDiag *d)
{
    KpNode **order = malloc((size_t)g->nnodes * sizeof *order);
    bool *live = calloc((size_t)g->nvalues + 1, sizeof *live);
    if (!order || !live) {
        free(order), free(live);
        return kp_error(d, "%s: out of memory", g->file ? g->file : "<model>");
    }
    int m = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < g->nnodes; k++) {
            KpNode *n = g->nodes[k];
            if ((drop && drop[n->id]) || (n->phase == KP_PHASE_PREPARE) != (pass == 0))
                continue;
            order[m++] = n;
        }
    for (int k = 0; k < g->nnodes; k++)
        if (drop && drop[g->nodes[k]->id])
            g->nodes[k]->out->producer = NULL;
    for (int k = 0; k < m; k++) {
        g->nodes[k] = order[k];
        order[k]->id = k;
        live[order[k]->out->id] = true;
        for (int i = 0; i < order[k]->nin; i++)
            live[order[k]->in[i]->id] = true;
    }
    g->nnodes = m;
    const KpValue *keep[] = {g->input, g->output, g->target, g->d_output, g->d_input, g->loss_value};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (keep[i])
            live[keep[i]->id] = true;
    int nv = 0;
    for (int i = 0; i < g->nvalues; i++) {
        KpValue *v = g->values[i];
        if (!live[i] && v->role == KP_ROLE_ACT && !v->producer)
            continue;
        v->id = nv;
        g->values[nv++] = v;
    }
    g->nvalues = nv;
    free(order), free(live);
    kp_fill_uses(g);
    return 0;
}
