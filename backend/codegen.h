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
#include "kernels.h"

typedef struct KpEntryEnv {
    LLVMValueRef fn;            /* the entry being built */
    LLVMValueRef params, ws, x, y, grads, opt, target, dx, prep;
    LLVMValueRef n, step;       /* i64 */
    LLVMValueRef seed;          /* i64, forward and train_step only */
} KpEntryEnv;

/* <prefix>.node<id>.<op>: node n's function, internal, its body from the
 * op's emitter; (params, grads, opt, step) for a node without inputs (an
 * update); a member of a group takes two more i64s, its share t of nt
 * (emit.h).  With whole false, a node with a fused loss (KpNode.loss)
 * without it, <prefix>.node<id>.<op>.noloss (the same arguments).  *forks
 * (when not NULL): how many of its parallel regions may run on several
 * threads (a small node's run on the caller's thread).  NULL with a
 * diagnostic. */
LLVMValueRef kp_cg_emit_node(KpEmit *e, const char *prefix, const KpNode *n, bool whole,
                             int *forks, KpDiag *d);
/* One function per node of e->g, named "<prefix>.node<id>.<op>", and one
 * per group, "<prefix>.group<k>"; returns an array of 3 * g->nnodes
 * functions (free() it), NULL with a diagnostic.  fns[i] is what the
 * entries call for node i: its node function, or for the first member of
 * a group the group's function, NULL for the group's other members.
 * fns[nnodes + i] is, where some entries do less, what they call instead
 * (NULL for every other node):
 *   - for the first member of a group that runs INPUT_GRAD members among
 *     the BACKWARD nodes (kp_node_run_phase), the group's function without
 *     those members, "<prefix>.group<k>.nodx", for an entry without dx;
 *   - for a node with a fused loss, its function without the loss, for an
 *     entry that does not run the LOSS phase.
 * fns[2 nnodes + i], with e->folded (train_step's folded updates): for
 * the first member of a group with folded members and others, the
 * group's function without the folded and the dx members,
 * "<prefix>.group<k>.step"; for the update, its function without the
 * folded ranges, "<prefix>.node<id>.<op>.rest".  The folded kernels go
 * into e->folded->fn, "<prefix>.node<id>.dense_grad_w.<update op>". */
LLVMValueRef *kp_cg_emit_nodes(KpEmit *e, const char *prefix, KpDiag *d);
/* A call to fn, what kp_cg_emit_nodes gave for node n, from the entry
 * (builder positioned in it): n's arguments, or the arguments of every
 * member of n's group one after the other.  whole false: fn is the
 * lesser function fns[nnodes + n->id], whose arguments leave out the
 * members that run only with dx and give null pointers for a fused
 * loss's target and outputs, and (with e->folded) the folded members.
 * Nothing for fn NULL. */
int kp_cg_call_node(KpEmit *e, const KpEntryEnv *env, const KpNode *n, LLVMValueRef fn,
                    bool whole, KpDiag *d);
/* k if node id is e->folded's k-th folded dense_grad_w, else -1 (always
 * -1 without e->folded). */
int kp_cg_folded(const KpEmit *e, int id);
/* Whether a lesser call (kp_cg_call_node, whole false) leaves group member
 * n out: it runs only with dx, or train_step folds it into the update. */
bool kp_cg_left_out(const KpEmit *e, const KpNode *n);
/* The most arguments a group's function takes. */
#define KP_CG_GROUP_ARGS 256
/* The function `name` of a group whose members' node functions (emitted
 * with a share of the work, emit.h) are members[0..count) (codegen_group.c):
 *     name(the members' arguments, one after the other)
 * runs every member on every thread, each on its share; with fork 0
 * (no member's work is worth threads) on the calling thread alone. */
LLVMValueRef kp_cg_emit_group(KpEmit *e, const char *name, const LLVMValueRef *members, int count,
                              int fork, KpDiag *d);
/* The pointer to v's first element inside the entry. */
LLVMValueRef kp_cg_value_ptr(KpEmit *e, const KpEntryEnv *env, const KpValue *v, KpDiag *d);
/* For e->kernels (kernels.c): the record of a call the entry env->fn makes
 * to fn, computing nodes[0..nnodes), with the arguments args[0..nargs), and
 * the descriptions of those arguments.  0, or -1 with a diagnostic. */
int kp_cg_note_call(KpEmit *e, const KpEntryEnv *env, LLVMValueRef fn, const KpNode *const *nodes,
                    int nnodes, const KpKernelArg *args, int nargs, KpDiag *d);
KpKernelArg kp_karg_value(const KpValue *v);
KpKernelArg kp_karg(KpKargKind kind);
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
