/*
 * graph_stats.c — the figures --stats prints for a graph: how many
 * kernels it runs and how many bytes its transient values would take if
 * each had its own range (what the memory plan is measured against).
 * A kernel is one parallel region an entry runs: a node, or a group of
 * nodes (passes/group.c) counted once.
 */
#include "passes.h"

int kp_graph_kernel_count(const KpGraph *g)
{
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const KpNode *n = g->nodes[i];
        if (n->phase == KP_PHASE_PREPARE)
            continue;   /* run once when the parameters change, not per call */
        if (n->group > 0 && i > 0 && g->nodes[i - 1]->group == n->group)
            continue;   /* the group was counted at its first member */
        if (!kp_op_is_view(n->op)) {
            k++;
            continue;
        }
        /* a view costs nothing unless the plan put it elsewhere (a copy) */
        k += n->out->storage != KP_STORE_NONE &&
             (n->out->storage != n->in[0]->storage || n->out->offset != n->in[0]->offset);
    }
    return k;
}

int64_t kp_graph_transient_bytes(const KpGraph *g)
{
    int64_t bytes = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const KpNode *n = g->nodes[i];
        if (kp_op_is_view(n->op) || n->phase == KP_PHASE_UPDATE || n->phase == KP_PHASE_PREPARE)
            continue;
        for (int o = 0; o < kp_node_nout(n); o++) {
            const KpValue *v = kp_node_output(n, o);
            if (v->role != KP_ROLE_ACT || (v == g->output && !g->training) || v == g->d_input)
                continue;
            bytes += (kp_value_numel(v, g->max_batch) * 4 + 63) / 64 * 64;
        }
    }
    if (g->d_output && !g->d_output->producer)
        bytes += (kp_value_numel(g->d_output, g->max_batch) * 4 + 63) / 64 * 64;
    return bytes;
}
