/*
 * shape_rules.h — internal: the shape rules named in ops.def's shape column.
 *
 * A rule reads n's input shapes and attributes, checks them, and sets
 * n->out's rank and dims (and may resolve attributes, e.g. "same" padding
 * into explicit padding).  A mismatch is the user's mistake and is
 * reported against the layer:
 *     m.json: layers[1] (dense1): input must be rank 1 per sample (use flatten), got [N,1,28,28]
 * Rules must be idempotent: running one twice gives the same result.
 */
#ifndef KP_SHAPE_RULES_H
#define KP_SHAPE_RULES_H

#include "ir.h"

#define O(op, kind, nin, shape, ...) int shape(KpGraph *g, KpNode *n, KpDiag *d);
#include "ops.def"
#undef O

/* Report "<file>: <where> (<name>): <what>[, got <shape of got>]" and
 * return -1.  got may be NULL. */
int kp_shape_error(const KpGraph *g, const KpNode *n, KpDiag *d, const KpValue *got,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Set v's shape (rank 0: a scalar, the loss). */
void kp_shape_set(KpValue *v, int rank, const int64_t *dims);

#endif
