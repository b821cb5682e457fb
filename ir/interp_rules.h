/*
 * interp_rules.h — internal: the reference executions named in ops.def's
 * interp column, used by kp_interp_run (ir/interp.c).
 *
 * A rule runs one node on it->n samples: it reads its inputs through
 * kp_interp_in() and writes its output through kp_interp_out(), calling
 * the reference kernels of runtime/ref/.  It returns 0, or -1 with a
 * diagnostic.
 */
#ifndef KP_INTERP_RULES_H
#define KP_INTERP_RULES_H

#include "ir.h"

typedef struct KpInterp {
    const KpGraph *g;
    const float *params;    /* the parameter slab (offsets from the memory plan) */
    const float *x;         /* the model input, n samples */
    int64_t n;              /* samples in this run */
    float **act;            /* per value id: the activation buffer, or NULL */
} KpInterp;

#define O(op, kind, nin, shape, interp, ...) \
    int interp(const KpInterp *it, const KpNode *nd, KpDiag *d);
#include "ops.def"
#undef O

/* The data of input value v: the caller's x, a parameter in the slab, or
 * an activation buffer. */
const float *kp_interp_in(const KpInterp *it, const KpValue *v);
/* The output buffer of node nd. */
float *kp_interp_out(const KpInterp *it, const KpNode *nd);

#endif
