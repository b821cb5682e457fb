/*
 * prep_util.h — internal to passes/: graph surgery shared by the fold and
 * layout passes (prep_util.c).
 */
#ifndef KP_PREP_UTIL_H
#define KP_PREP_UTIL_H

#include "passes.h"

/* A new PREPARE node op(in[0..nin)) named after `like`, its shape
 * inferred; appended (kp_prep_reorder puts it in place).  NULL with a
 * diagnostic. */
KpNode *kp_prep_node(KpGraph *g, KpOp op, const KpNode *like, int nin, KpValue *const *in,
                     const KpAttrs *attr, KpDiag *d);

/* Put the nodes back in a valid order after surgery: the PREPARE nodes
 * first, then the others, each in their current order, without the nodes
 * flagged in drop[id] (may be NULL); renumber them; drop the values that
 * nothing produces or reads any more (outputs of dropped nodes) and
 * renumber the values; refill the users. */
int kp_prep_reorder(KpGraph *g, const bool *drop, KpDiag *d);

#endif
