/*
 * interp_rules.h — internal: the reference executions named in ops.def's
 * interp column, used by kp_interp_run (ir/interp.c) and kp_interp_train
 * (ir/interp_train.c).
 *
 * A rule runs one node on it->n samples: it reads its inputs through
 * kp_interp_in() (or kp_interp_labels() for int32 labels) and writes its
 * output through kp_interp_out(), calling the reference kernels of
 * runtime/ref/.  A rule always overwrites its output buffer; for an output
 * stored in the gradient slab (KP_STORE_GRAD) kp_interp_exec then adds the
 * buffer into the slab, which is the accumulate (+=) of the ABI.  A rule
 * returns 0, or -1 with a diagnostic.
 */
#ifndef KP_INTERP_RULES_H
#define KP_INTERP_RULES_H

#include "ir.h"
#include "../runtime/ref/ref.h"

typedef struct KpInterp {
    const KpGraph *g;
    const float *params;    /* the parameter slab (offsets from the memory plan) */
    const float *x;         /* the model input, n samples */
    int64_t n;              /* samples in this run */
    float **act;            /* per value id: its buffer (n * sample floats), or NULL */
    /* train graphs (kp_interp_train); NULL/0 for kp_interp_run */
    const void *target;     /* int32 labels or floats */
    float *train_params;    /* params, writable: the optimizer updates them */
    float *grads;           /* the gradient slab, param_floats */
    float *opt;             /* optimizer state, opt_slots * param_floats */
    int64_t step;           /* optimizer steps, counting this one */
    uint64_t seed;          /* the call's random stream: dropout masks */
    bool update_stats;      /* batchnorm_stats updates the running statistics
                               in train_params (a call that asked for FORWARD) */
    bool run_loss;          /* a node's fused loss (KpNode.loss) runs: the call
                               runs the LOSS phase */
} KpInterp;

#define O(op, kind, nin, shape, interp, ...) \
    int interp(const KpInterp *it, const KpNode *nd, KpDiag *d);
#include "ops.def"
#undef O

/* The data of input value v: the caller's x or float target, a parameter
 * in the slab, or an activation buffer. */
const float *kp_interp_in(const KpInterp *it, const KpValue *v);
/* The int32 labels of the target v. */
const int32_t *kp_interp_labels(const KpInterp *it, const KpValue *v);
/* The output buffer of node nd, and of its aux output i. */
float *kp_interp_out(const KpInterp *it, const KpNode *nd);
float *kp_interp_aux(const KpInterp *it, const KpNode *nd, int i);

/* The geometry of a windowed op (conv, transposed conv, pool) for the
 * reference kernels: x its forward input, y its forward output, n samples;
 * dilated false for pools (dilation 1). */
KpRefConv kp_interp_conv(const KpNode *nd, const KpValue *x, const KpValue *y, int64_t n,
                         bool dilated);
/* The elements per channel of x [N,C,...] (1 for [N,C]). */
int64_t kp_interp_hw(const KpValue *x);

/* Run node nd: give its outputs buffers, run its rule, its epilogues and,
 * with it->run_loss, its fused loss, and for a gradient slab output add
 * the result into it->grads.  0, or -1 with a diagnostic (out of memory,
 * or the rule's). */
int kp_interp_exec(const KpInterp *it, const KpNode *nd, KpDiag *d);
/* A fresh per-value buffer table for g (NULL when out of memory), and its
 * release with every buffer in it. */
float **kp_interp_acts_new(const KpGraph *g);
void kp_interp_acts_free(const KpGraph *g, float **act);

#endif
