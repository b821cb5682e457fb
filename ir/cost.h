/*
 * cost.h — what one node costs: floating-point operations and bytes moved
 * (ops.def's cost column), the figures karpc bench turns into GFLOP/s,
 * GB/s and a fraction of the machine's peak.
 *
 *   flops  2 per multiply-add for gemm and convolution (dense, conv2d and
 *          their gradients, padding included: the full kernel window at
 *          every output pixel); for the other ops the arithmetic of the
 *          formula per element (ir/cost_rules.c lists each), plus one per
 *          element for every fused epilogue and for the accumulate (+=)
 *          into a gradient slot
 *   bytes  every input read once and the output written once (read and
 *          written when it accumulates), at n samples: the compulsory
 *          traffic, not what the caches see
 *
 * A kernel that computes several nodes costs their sum; a node with a
 * fused loss (KpNode.loss) costs the loss's two nodes more.
 */
#ifndef KP_COST_H
#define KP_COST_H

#include "ir.h"

typedef struct KpCost {
    double flops;
    double bytes;
} KpCost;

/* The cost of node nd on n samples (n >= 1), from its op's cost rule. */
KpCost kp_node_cost(const KpNode *nd, int64_t n);

#endif
