/*
 * shapes.c — shape inference: every node's output shape from its op's
 * shape rule (ops.def), in topological order, so each rule sees shaped
 * inputs.  Stops at the first user error.
 */
#include "passes.h"

int kp_pass_shapes(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    for (int k = 0; k < g->nnodes; k++)
        if (kp_node_infer_shape(g, g->nodes[k], d))
            return -1;
    return 0;
}
