/*
 * epilogue.h — the facts about fused epilogues (ir.h's KpEpilogue) that
 * the fusion pass, the verifier, the interpreter and the emitters share.
 *
 * Input slots: a node's own operands come first, in[0 .. kp_node_op_nin),
 * then the operands its epilogues added (and a fused loss's target).  An epilogue argument either
 * names one of those added slots or, for an op with a fixed input count,
 * one of the node's own operands (the same value read twice).  So the
 * node's own operand count is the op table's count, or for a variadic op
 * (dense, conv2d with an optional bias, add) the first added slot.
 */
#ifndef KP_EPILOGUE_H
#define KP_EPILOGUE_H

#include <stdbool.h>

#include "ir.h"

/* Ops whose emitter applies epilogues at every store of its output (and
 * whose interpreter rule is followed by them): the one list the fusion
 * pass and the verifier use. */
static inline bool kp_op_takes_epilogue(KpOp op)
{
    switch (op) {
    /* kp_emit_map ops (emit_map.c) */
    case KP_OP_relu: case KP_OP_leaky_relu: case KP_OP_sigmoid: case KP_OP_tanh:
    case KP_OP_add: case KP_OP_mul:
    case KP_OP_relu_grad: case KP_OP_leaky_relu_grad: case KP_OP_sigmoid_grad:
    case KP_OP_tanh_grad:
    case KP_OP_mse_grad: case KP_OP_bce_grad: case KP_OP_bce_logits_grad:
    /* gemm and convolution */
    case KP_OP_dense: case KP_OP_dense_grad_x: case KP_OP_conv2d: case KP_OP_dense_packed:
    case KP_OP_conv2d_grad_x: case KP_OP_conv2d_transpose: case KP_OP_conv2d_transpose_grad_x:
    /* pooling and its gradients (emit_pool.c) */
    case KP_OP_maxpool2d: case KP_OP_avgpool2d: case KP_OP_maxpool2d_grad:
    case KP_OP_avgpool2d_grad:
    /* normalization */
    case KP_OP_batchnorm: case KP_OP_batchnorm_train: case KP_OP_batchnorm_fwd:
    case KP_OP_batchnorm_bwd:
        return true;
    default:
        return false;
    }
}

/* Ops that can become an epilogue (ir.h's list). */
static inline bool kp_op_is_epilogue(KpOp op)
{
    switch (op) {
    case KP_OP_relu: case KP_OP_leaky_relu: case KP_OP_sigmoid: case KP_OP_tanh:
    case KP_OP_add: case KP_OP_mul:
    case KP_OP_relu_grad: case KP_OP_leaky_relu_grad: case KP_OP_sigmoid_grad:
    case KP_OP_tanh_grad:
        return true;
    default:
        return false;
    }
}

/* The node's own operand count (see above; a fused loss's target,
 * KpNode.loss, is an added slot too). */
static inline int kp_node_op_nin(const KpNode *n)
{
    int fixed = kp_op_nin(n->op);
    if (fixed >= 0)
        return fixed;
    int first = n->nin;
    for (int k = 0; k < n->nepi; k++)
        for (int a = 0; a < n->epi[k].nargs; a++)
            if (n->epi[k].arg[a] < first)
                first = n->epi[k].arg[a];
    if (n->loss.on && n->loss.target < first)
        first = n->loss.target;
    return first;
}

/* Ops whose emitter computes a fused loss (KpNode.loss) from its output's
 * rows: the one list the fusion pass and the verifier use. */
static inline bool kp_op_takes_loss(KpOp op)
{
    return op == KP_OP_dense;
}

/* Ops whose emitter can also sum its final output (after the epilogues)
 * into a bias gradient, the folded bias_grad of fusion.c: it finishes
 * (n, c) planes one at a time, so each plane's sum is taken while the
 * plane is in cache.  The node then has that gradient as its one aux
 * output (kp_node_folded_bias). */
static inline bool kp_op_takes_bias_grad(KpOp op)
{
    return op == KP_OP_maxpool2d_grad || op == KP_OP_avgpool2d_grad;
}

/* The bias gradient n adds its output's sums into, or NULL. */
static inline KpValue *kp_node_folded_bias(const KpNode *n)
{
    return kp_op_takes_bias_grad(n->op) && n->naux == 1 ? n->aux[0] : NULL;
}

#endif
