/*
 * interp_node.h — single nodes through the reference interpreter, on
 * inputs the caller supplies: karpc bench times the reference kernel of a
 * generated kernel on copies of the very inputs the generated one read.
 *
 * A KpInterpNode holds, for nodes of one memory-planned graph on n
 * samples, a buffer per activation (given by kp_interp_node_set, or made
 * by a node run before) and the caller's slabs: parameters (written by an
 * update and by batchnorm's running statistics), gradients (accumulated
 * into), optimizer state.  Pass copies: runs change them.
 */
#ifndef KP_INTERP_NODE_H
#define KP_INTERP_NODE_H

#include "ir.h"

typedef struct KpInterpNode KpInterpNode;

/* For nodes of g on n samples; step and seed as the entry's call gets
 * them.  NULL when out of memory.  Free with kp_interp_node_free. */
KpInterpNode *kp_interp_node_new(const KpGraph *g, int64_t n, float *params, float *grads,
                                 float *opt, int64_t step, uint64_t seed);
void kp_interp_node_free(KpInterpNode *s);

/* Copy kp_value_numel(v, n) elements at src into v's buffer: the model
 * input, the target or an activation (not a parameter: those are read
 * from the slab).  0, or -1 when out of memory. */
int kp_interp_node_set(KpInterpNode *s, const KpValue *v, const void *src);

/* Run node nd with its reference rule (epilogues and the accumulate into
 * the gradient slab included, as kp_interp_run does, and a fused loss, as
 * train_step runs it).  0, or -1 with a diagnostic. */
int kp_interp_node_run(KpInterpNode *s, const KpNode *nd, KpDiag *d);

#endif
