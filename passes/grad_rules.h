/*
 * grad_rules.h — internal: the gradient rules named in ops.def's grad
 * column, used by kp_pass_autodiff (passes/autodiff.c).
 *
 * A rule is called for a forward node n whose output's gradient dy is
 * complete (the sum over all of n's users).  It appends the nodes that
 * compute the gradients of n's inputs and sets dx[i] to input i's
 * gradient, or leaves it NULL where there is none.  It returns 0, or -1
 * with a diagnostic against n's layer.  A rule never sums: a value read
 * by several nodes gets one contribution from each, which autodiff adds.
 * A rule may hand dy itself on (add does); everything else it returns is
 * the output of a node it appended.
 */
#ifndef KP_GRAD_RULES_H
#define KP_GRAD_RULES_H

#include "passes.h"

#define O(op, kind, nin, shape, interp, emit, grad, ...) \
    int grad(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d);
#include "../ir/ops.def"
#undef O

/* Run the gradient rule of n's op. */
int kp_grad_rule(KpGraph *g, KpNode *n, KpValue *dy, KpValue **dx, KpDiag *d);

/* Append a node op(in...) for the gradient of forward node fwd: it takes
 * fwd's layer name and place (messages point at the layer), and its shape
 * is inferred.  Its output, or NULL with a diagnostic. */
KpValue *kp_grad_node(KpGraph *g, const KpNode *fwd, KpOp op, int nin, KpValue *const *in,
                      KpDiag *d);

#endif
