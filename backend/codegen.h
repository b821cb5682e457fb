/*
 * codegen.h — what codegen.c (the module, node functions, infer) and
 * codegen_train.c (the training entry points) share.  Internal to backend/.
 *
 * An entry point maps every value's storage to one of its arguments:
 *
 *   INPUT  -> x        OUTPUT -> y        PARAM     -> params + offset floats
 *   TARGET -> target   DX     -> dx       WORKSPACE -> ws (tws) + offset bytes
 *   GRAD   -> grads + offset floats
 *   PREP   -> prep + offset floats
 *
 * An argument the entry does not have is NULL in KpEntryEnv; a node that
 * needs it there is a karpc bug (an internal error).
 */
#ifndef KP_CODEGEN_H
#define KP_CODEGEN_H

#include "emit.h"

typedef struct KpEntryEnv {
    LLVMValueRef fn;            /* the entry being built */
    LLVMValueRef params, ws, x, y, grads, opt, target, dx, prep;
    LLVMValueRef n, step;       /* i64 */
    LLVMValueRef seed;          /* i64, forward and train_step only */
} KpEntryEnv;

/* <prefix>.node<id>.<op>: node n's function, internal, its body from the
 * op's emitter; (params, grads, opt, step) for a node without inputs (an
 * update).  NULL with a diagnostic. */
LLVMValueRef kp_cg_emit_node(KpEmit *e, const char *prefix, const KpNode *n, KpDiag *d);
/* One function per node of e->g, named "<prefix>.node<id>.<op>"; returns
 * an array of g->nnodes functions (free() it), NULL with a diagnostic. */
LLVMValueRef *kp_cg_emit_nodes(KpEmit *e, const char *prefix, KpDiag *d);
/* A call to node n's function fn from the entry (builder positioned in it). */
int kp_cg_call_node(KpEmit *e, const KpEntryEnv *env, const KpNode *n, LLVMValueRef fn, KpDiag *d);
/* The pointer to v's first element inside the entry. */
LLVMValueRef kp_cg_value_ptr(KpEmit *e, const KpEntryEnv *env, const KpValue *v, KpDiag *d);
/* An internal function "<model>_<what>" of type ty, the builder at its entry. */
LLVMValueRef kp_cg_entry(KpEmit *e, const char *what, LLVMTypeRef ty);

/* The training entry points of the train graph e->g (codegen_train.c):
 * forward, backward, apply (NULL without an optimizer) and train_step
 * (NULL without a loss or an optimizer), node functions prefixed "train". */
typedef struct KpTrainEntries {
    LLVMValueRef forward, backward, apply, train_step;
} KpTrainEntries;
int kp_cg_train_entries(KpEmit *e, KpTrainEntries *out, KpDiag *d);

#endif
