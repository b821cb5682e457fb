/*
 * codegen.c — a program (inference and train graph) to one LLVM module.
 *
 *   node i  ->  internal void infer.node<i>.<op>(ptr in0, ..., ptr out, i64 n)
 *               body by the op's emitter (ops.def emit column)
 *   entry   ->  internal void <name>_infer(params, prep, ws, x, y, n):
 *               each value's pointer from its storage, FORWARD node calls
 *               in order; <name>_prepare(params, prep): the PREPARE nodes
 *               (only when the graph has some)
 *   train   ->  train.node<i>.<op> and the training entry points
 *               (codegen_train.c)
 *   karp_model_v1 (descriptor.c) points at the entries
 *
 * The module is verified and its identical functions merged; the new pass
 * manager's pipeline for the target machine (vectorizers on) runs later,
 * on partitions of the module in parallel (partition.c) or on the whole
 * (kp_llvm_optimize).  A module that does not verify is a karpc bug,
 * reported as an internal error.
 */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen.h"
#include "llvm_internal.h"

typedef int (*EmitFn)(KpEmit *e, const KpNode *n, KpDiag *d);

static const EmitFn emitters[KP_OP_COUNT] = {
#define O(op, kind, nin, shape, interp, emit, ...) [KP_OP_##op] = emit,
#include "../ir/ops.def"
#undef O
};

/* Bytes a value may span at run time (the workspace is sized for max_batch). */
static int64_t value_bytes(const KpGraph *g, const KpValue *v)
{
    int64_t n = g->max_batch > 0 ? g->max_batch : 1;
    return kp_value_numel(v, n) * 4;
}

/* May writing `out` touch memory that `in` is read from?  Values in one
 * slab (workspace, parameters, gradients) overlap when their ranges do;
 * the caller's buffers (x, y, target, dx) are each one value. */
static int may_overlap(const KpGraph *g, const KpValue *in, const KpValue *out)
{
    if (in->storage != out->storage)
        return 0;
    int64_t unit = in->storage == KP_STORE_WORKSPACE ? 1 : 4;   /* offsets in bytes or floats */
    if (in->storage != KP_STORE_WORKSPACE && in->storage != KP_STORE_PARAM &&
        in->storage != KP_STORE_GRAD)
        return 1;
    int64_t a0 = in->offset * unit, a1 = a0 + value_bytes(g, in);
    int64_t b0 = out->offset * unit, b1 = b0 + value_bytes(g, out);
    return a0 < b1 && b0 < a1;
}

static LLVMValueRef need(LLVMValueRef arg, const KpValue *v, const char *what, KpDiag *d)
{
    if (!arg)
        kp_error(d, "internal error: value %%%d lives in %s, which this entry point does not have",
                 v->id, what);
    return arg;
}

LLVMValueRef kp_cg_value_ptr(KpEmit *e, const KpEntryEnv *env, const KpValue *v, KpDiag *d)
{
    LLVMValueRef off = kp_i64(e, v->offset);
    switch (v->storage) {
    case KP_STORE_INPUT:
        return need(env->x, v, "x", d);
    case KP_STORE_OUTPUT:
        return need(env->y, v, "y", d);
    case KP_STORE_TARGET:
        return need(env->target, v, "the target", d);
    case KP_STORE_DX:
        return need(env->dx, v, "dx", d);
    case KP_STORE_PREP:
        if (!need(env->prep, v, "the prepared slab", d))
            return NULL;
        return LLVMBuildInBoundsGEP2(e->b, e->f32, env->prep, &off, 1, "");
    case KP_STORE_PARAM:
        if (!need(env->params, v, "the parameters", d))
            return NULL;
        return LLVMBuildInBoundsGEP2(e->b, e->f32, env->params, &off, 1, "");
    case KP_STORE_GRAD:
        if (!need(env->grads, v, "the gradients", d))
            return NULL;
        return LLVMBuildInBoundsGEP2(e->b, e->f32, env->grads, &off, 1, "");
    case KP_STORE_WORKSPACE:
        if (!need(env->ws, v, "the workspace", d))
            return NULL;
        return LLVMBuildInBoundsGEP2(e->b, LLVMInt8TypeInContext(e->ctx), env->ws, &off, 1, "");
    case KP_STORE_NONE:
        break;
    }
    kp_error(d, "internal error: value %%%d has no storage (memory plan not run?)", v->id);
    return NULL;
}

int kp_node_takes_seed(const KpNode *n)
{
    return n->op == KP_OP_dropout_mask;
}

/* An internal noinline function `name` of type ty, its first e->nptr
 * parameters the pointers e->ptr_arg (noalias where e->noalias says), the
 * next one e->n; the builder at its entry. */
static void open_fn(KpEmit *e, const char *name, LLVMTypeRef ty)
{
    e->fn = LLVMAddFunction(e->mod, name, ty);
    LLVMSetLinkage(e->fn, LLVMInternalLinkage);
    /* entries call a node each: inlining them would only copy the
     * kernels into every entry that runs them (and slow down O3) */
    unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(e->fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(e->ctx, noinline, 0));
    unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (int i = 0; i < e->nptr; i++) {
        e->ptr_arg[i] = LLVMGetParam(e->fn, (unsigned)i);
        if (e->noalias[i])
            LLVMAddAttributeAtIndex(e->fn, (unsigned)i + 1,
                                    LLVMCreateEnumAttribute(e->ctx, kind, 0));
    }
    e->n = LLVMGetParam(e->fn, (unsigned)e->nptr);
    e->regions = e->forks = 0;
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, e->fn, "entry"));
}

LLVMValueRef kp_cg_emit_node(KpEmit *e, const char *prefix, const KpNode *n, bool whole,
                             int *forks, KpDiag *d)
{
    LLVMTypeRef params[KP_MAX_ARGS];
    e->node = n;
    e->with_loss = whole && n->loss.on;
    e->update_rest = !whole && n->nin == 0;
    e->nptr = n->nin == 0 ? 3 : n->nin + 1 + n->naux;
    int seeded = kp_node_takes_seed(n), share = n->group > 0 ? 2 : 0;
    for (int i = 0; i < e->nptr; i++)
        params[i] = e->ptr;
    for (int i = 0; i < 1 + seeded + share; i++)
        params[e->nptr + i] = e->i64;
    LLVMTypeRef ty =
        LLVMFunctionType(e->void_t, params, (unsigned)(e->nptr + 1 + seeded + share), 0);
    char name[128];
    snprintf(name, sizeof name, "%s.node%d.%s%s", prefix, n->id, kp_op_name(n->op),
             whole ? "" : n->nin == 0 ? ".rest" : ".noloss");
    /* an input and an output sharing bytes (in place) drop noalias */
    for (int i = 0; i < e->nptr; i++)
        e->noalias[i] = 1;
    for (int i = 0; i < n->nin; i++)
        for (int o = 0; o < kp_node_nout(n); o++)
            if (may_overlap(e->g, n->in[i], kp_node_output(n, o)))
                e->noalias[i] = e->noalias[n->nin + o] = 0;
    e->accumulate = n->out->storage == KP_STORE_GRAD;
    open_fn(e, name, ty);
    e->seed = seeded ? LLVMGetParam(e->fn, (unsigned)e->nptr + 1) : NULL;
    if (share) {
        e->share_t = LLVMGetParam(e->fn, (unsigned)(e->nptr + 1 + seeded));
        e->share_nt = LLVMGetParam(e->fn, (unsigned)(e->nptr + 2 + seeded));
    }
    int rc = emitters[n->op](e, n, d);
    e->accumulate = 0;
    e->with_loss = e->update_rest = false;
    e->seed = e->share_t = e->share_nt = NULL;
    if (rc < 0)
        return NULL;
    if (share && e->regions != 1) {
        kp_error(d, "internal error: node %d (%s) is in group %d, but its emitter made %d "
                 "parallel regions, not one", n->id, kp_op_name(n->op), n->group, e->regions);
        return NULL;
    }
    LLVMBuildRetVoid(e->b);
    if (forks)
        *forks = e->forks;
    return e->fn;
}

/* Whether n runs only when the entry computes dx, in a group that runs
 * among the BACKWARD nodes (passes/group.c). */
static bool dx_member(const KpGraph *g, const KpNode *n)
{
    return n->phase == KP_PHASE_INPUT_GRAD && kp_node_run_phase(g, n) == KP_PHASE_BACKWARD;
}

int kp_cg_folded(const KpEmit *e, int id)
{
    for (int k = 0; e->folded && k < e->folded->count; k++)
        if (e->folded->node[k] == id)
            return k;
    return -1;
}

bool kp_cg_left_out(const KpEmit *e, const KpNode *n)
{
    return dx_member(e->g, n) || kp_cg_folded(e, n->id) >= 0;
}

/* fold(dy, x, params, opt, step): the k-th folded update's kernel
 * (emit_optim.c), named after its dense_grad_w node. */
static LLVMValueRef emit_folded(KpEmit *e, const char *prefix, int k, KpDiag *d)
{
    const KpGraph *g = e->g;
    const KpNode *gw = g->nodes[e->folded->node[k]], *u = g->nodes[e->folded->update];
    e->nptr = 4;
    LLVMTypeRef params[5] = {e->ptr, e->ptr, e->ptr, e->ptr, e->i64};
    char name[128];
    snprintf(name, sizeof name, "%s.node%d.%s.%s", prefix, gw->id, kp_op_name(gw->op),
             kp_op_name(u->op));
    e->node = gw;
    for (int i = 0; i < e->nptr; i++)
        e->noalias[i] = 1;     /* workspace, parameters and state: apart */
    open_fn(e, name, LLVMFunctionType(e->void_t, params, (unsigned)e->nptr + 1, 0));
    if (kp_emit_folded_update(e, gw, u, d) < 0)
        return NULL;
    LLVMBuildRetVoid(e->b);
    return e->fn;
}

/* The functions of the group of nodes [i, end), whose node functions are
 * fns[i, end): the group's into fns[i] (NULL into the other members'),
 * when some members run only with dx, the group's without them into
 * fns[nnodes + i], and when train_step folds some into the update (and
 * others remain), the group's without those either into fns[2 nnodes + i]. */
static int emit_group(KpEmit *e, const char *prefix, int grp, LLVMValueRef *fns, const int *forks,
                      int i, int end, KpDiag *d)
{
    const KpGraph *g = e->g;
    LLVMValueRef part[KP_CG_GROUP_ARGS], step[KP_CG_GROUP_ARGS];
    int fork = 0, part_fork = 0, count = 0, step_fork = 0, nstep = 0;
    for (int j = i; j < end; j++) {
        fork |= forks[j] > 0;
        if (!dx_member(g, g->nodes[j]) && count < KP_CG_GROUP_ARGS) {
            part[count++] = fns[j];
            part_fork |= forks[j] > 0;
        }
        if (!kp_cg_left_out(e, g->nodes[j]) && nstep < KP_CG_GROUP_ARGS) {
            step[nstep++] = fns[j];
            step_fork |= forks[j] > 0;
        }
    }
    char name[128];
    snprintf(name, sizeof name, "%s.group%d", prefix, grp);
    LLVMValueRef whole = kp_cg_emit_group(e, name, fns + i, end - i, fork, d);
    if (!whole)
        return -1;
    if (count < end - i) {
        snprintf(name, sizeof name, "%s.group%d.nodx", prefix, grp);
        if (!(fns[g->nnodes + i] = kp_cg_emit_group(e, name, part, count, part_fork, d)))
            return -1;
    }
    if (nstep > 0 && nstep < count) {
        snprintf(name, sizeof name, "%s.group%d.step", prefix, grp);
        if (!(fns[2 * g->nnodes + i] = kp_cg_emit_group(e, name, step, nstep, step_fork, d)))
            return -1;
    }
    fns[i] = whole;
    for (int j = i + 1; j < end; j++)
        fns[j] = NULL;
    return 0;
}

LLVMValueRef *kp_cg_emit_nodes(KpEmit *e, const char *prefix, KpDiag *d)
{
    const KpGraph *g = e->g;
    LLVMValueRef *fns = calloc(3 * (size_t)g->nnodes + 1, sizeof *fns);
    int *forks = calloc((size_t)g->nnodes + 1, sizeof *forks);
    if (!fns || !forks) {
        free(fns);
        free(forks);
        kp_error(d, "out of memory");
        return NULL;
    }
    for (int i = 0; i < g->nnodes; i++) {
        const KpNode *n = g->nodes[i];
        if (!(fns[i] = kp_cg_emit_node(e, prefix, n, true, &forks[i], d)) ||
            (n->loss.on && !(fns[g->nnodes + i] = kp_cg_emit_node(e, prefix, n, false, NULL, d))) ||
            (e->folded && e->folded->update == i &&
             !(fns[2 * g->nnodes + i] = kp_cg_emit_node(e, prefix, n, false, NULL, d)))) {
            free(fns);
            free(forks);
            return NULL;
        }
    }
    for (int k = 0; e->folded && k < e->folded->count; k++)
        if (!(e->folded->fn[k] = emit_folded(e, prefix, k, d))) {
            free(fns);
            free(forks);
            return NULL;
        }
    /* a group's first member: the group's function; the others: NULL */
    for (int i = 0; i < g->nnodes;) {
        int end = kp_group_end(g, g->nodes[i]);
        int grp = g->nodes[i]->group;
        if (grp > 0 && emit_group(e, prefix, grp, fns, forks, i, end, d) < 0) {
            free(fns);
            free(forks);
            return NULL;
        }
        i = end;
    }
    free(forks);
    return fns;
}

/* The arguments of n's node function in the entry, and in what[] the
 * same arguments described for e->kernels; their count, or -1.  Without
 * its fused loss (whole false), null pointers for the loss's target and
 * outputs: the function does not touch them, and karp_forward's entry
 * has no target. */
static int node_args(KpEmit *e, const KpEntryEnv *env, const KpNode *n, bool whole,
                     LLVMValueRef *args, KpKernelArg *what, KpDiag *d)
{
    if (n->nin == 0) {
        LLVMValueRef out = kp_cg_value_ptr(e, env, n->out, d);
        if (!out || !need(env->grads, n->out, "the gradients", d) ||
            !need(env->opt, n->out, "the optimizer state", d) || !need(env->step, n->out, "step", d))
            return -1;
        args[0] = out, args[1] = env->grads, args[2] = env->opt, args[3] = env->step;
        what[0] = kp_karg_value(n->out), what[1] = kp_karg(KP_KARG_GRADS);
        what[2] = kp_karg(KP_KARG_OPT), what[3] = kp_karg(KP_KARG_STEP);
        return 4;
    }
    bool unused_loss = n->loss.on && !whole;
    for (int k = 0; k < n->nin; k++) {
        what[k] = kp_karg_value(n->in[k]);
        if (unused_loss && k == n->loss.target)
            args[k] = LLVMConstPointerNull(e->ptr);
        else if (!(args[k] = kp_cg_value_ptr(e, env, n->in[k], d)))
            return -1;
    }
    for (int o = 0; o < kp_node_nout(n); o++) {
        what[n->nin + o] = kp_karg_value(kp_node_output(n, o));
        if (unused_loss && o > 0)
            args[n->nin + o] = LLVMConstPointerNull(e->ptr);
        else if (!(args[n->nin + o] = kp_cg_value_ptr(e, env, kp_node_output(n, o), d)))
            return -1;
    }
    int nargs = n->nin + kp_node_nout(n);
    what[nargs] = kp_karg(KP_KARG_N);
    args[nargs++] = env->n;
    if (kp_node_takes_seed(n)) {
        if (!env->seed)
            return kp_error(d, "internal error: node %d needs the call's seed, which this "
                            "entry point does not have", n->id);
        what[nargs] = kp_karg(KP_KARG_SEED);
        args[nargs++] = env->seed;
    }
    return nargs;
}

int kp_cg_call_node(KpEmit *e, const KpEntryEnv *env, const KpNode *n, LLVMValueRef fn,
                    bool whole, KpDiag *d)
{
    if (!fn)
        return 0;   /* a group member: its group's function runs it */
    const KpGraph *g = e->g;
    int end = kp_group_end(g, n);
    LLVMValueRef args[KP_CG_GROUP_ARGS];
    KpKernelArg what[KP_CG_GROUP_ARGS];     /* the same arguments, for e->kernels */
    const KpNode *ran[KP_CG_GROUP_ARGS];    /* the nodes the call computes */
    int nargs = 0, nran = 0;
    for (int k = n->id; k < end; k++) {
        if (!whole && kp_cg_left_out(e, g->nodes[k]))
            continue;
        if (nargs + KP_MAX_ARGS > KP_CG_GROUP_ARGS)
            return kp_error(d, "internal error: group %d has too many arguments", n->group);
        int c = node_args(e, env, g->nodes[k], whole, args + nargs, what + nargs, d);
        if (c < 0)
            return -1;
        nargs += c;
        ran[nran++] = g->nodes[k];
    }
    LLVMBuildCall2(e->b, LLVMGlobalGetValueType(fn), fn, args, (unsigned)nargs, "");
    if (!e->kernels)
        return 0;
    return kp_cg_note_call(e, env, fn, ran, nran, what, nargs, d);
}

LLVMValueRef kp_cg_entry(KpEmit *e, const char *what, LLVMTypeRef ty)
{
    char name[256];
    snprintf(name, sizeof name, "%s_%s", e->g->name ? e->g->name : "model", what);
    LLVMValueRef fn = LLVMAddFunction(e->mod, name, ty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, fn, "entry"));
    return fn;
}

/* <name>_infer(params, prep, ws, x, y, n): the FORWARD nodes in order;
 * <name>_prepare(params, prep): the PREPARE nodes (*prepare NULL if none). */
static LLVMValueRef emit_infer(KpEmit *e, LLVMValueRef *prepare, KpDiag *d)
{
    const KpGraph *g = e->g;
    *prepare = NULL;
    LLVMValueRef *fns = kp_cg_emit_nodes(e, "infer", d);
    if (!fns)
        return NULL;
    LLVMTypeRef params[6] = {e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->i64};
    LLVMValueRef infer = kp_cg_entry(e, "infer", LLVMFunctionType(e->void_t, params, 6, 0));
    KpEntryEnv env = {.fn = infer};
    env.params = LLVMGetParam(infer, 0);
    env.prep = LLVMGetParam(infer, 1);
    env.ws = LLVMGetParam(infer, 2);
    env.x = LLVMGetParam(infer, 3);
    env.y = LLVMGetParam(infer, 4);
    env.n = LLVMGetParam(infer, 5);
    int nprep = 0;
    for (int i = 0; i < g->nnodes && infer; i++) {
        nprep += g->nodes[i]->phase == KP_PHASE_PREPARE;
        if (g->nodes[i]->phase == KP_PHASE_FORWARD && kp_cg_call_node(e, &env, g->nodes[i], fns[i], true, d) < 0)
            infer = NULL;
    }
    if (infer)
        LLVMBuildRetVoid(e->b);
    if (infer && nprep > 0) {
        LLVMValueRef prep = kp_cg_entry(e, "prepare", LLVMFunctionType(e->void_t, params, 2, 0));
        KpEntryEnv penv = {.fn = prep, .n = kp_i64(e, 1)};
        penv.params = LLVMGetParam(prep, 0);
        penv.prep = LLVMGetParam(prep, 1);
        for (int i = 0; i < g->nnodes && prep; i++)
            if (g->nodes[i]->phase == KP_PHASE_PREPARE &&
                kp_cg_call_node(e, &penv, g->nodes[i], fns[i], true, d) < 0)
                prep = NULL;
        if (prep)
            LLVMBuildRetVoid(e->b);
        else
            infer = NULL;
        *prepare = prep;
    }
    free(fns);
    return infer;
}

/* nounwind everywhere; with 512-bit vectors, tell the x86 backend to keep
 * them whole (it may otherwise split them for CPUs that prefer 256). */
static void set_function_attrs(KpEmit *e)
{
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    char width[16];
    snprintf(width, sizeof width, "%d", e->vw * 32);
    for (LLVMValueRef f = LLVMGetFirstFunction(e->mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                LLVMCreateEnumAttribute(e->ctx, nounwind, 0));
        if (e->vw < 16)
            continue;
        static const char *keys[] = {"min-legal-vector-width", "prefer-vector-width"};
        for (int i = 0; i < 2; i++)
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                    LLVMCreateStringAttribute(e->ctx, keys[i], (unsigned)strlen(keys[i]),
                                                              width, (unsigned)strlen(width)));
    }
}

void kp_emit_init(KpEmit *e, LLVMContextRef ctx, LLVMModuleRef mod, const KpGraph *g, int vw)
{
    memset(e, 0, sizeof *e);
    e->ctx = ctx;
    e->mod = mod;
    e->g = g;
    e->vw = vw;
    e->f32 = LLVMFloatTypeInContext(e->ctx);
    e->i1 = LLVMInt1TypeInContext(e->ctx);
    e->i32 = LLVMInt32TypeInContext(e->ctx);
    e->i64 = LLVMInt64TypeInContext(e->ctx);
    e->ptr = LLVMPointerTypeInContext(e->ctx, 0);
    e->void_t = LLVMVoidTypeInContext(e->ctx);
    e->vec = LLVMVectorType(e->f32, (unsigned)e->vw);
    LLVMTypeRef body[3] = {e->ptr, e->i64, e->i64};
    e->body_ty = LLVMFunctionType(e->void_t, body, 3, 0);
    LLVMTypeRef pfor[4] = {e->ptr, e->ptr, e->i64, e->i64};
    e->pfor_ty = LLVMFunctionType(e->void_t, pfor, 4, 0);
    e->pfor = LLVMAddFunction(e->mod, "krt_parallel_for", e->pfor_ty);
    e->b = LLVMCreateBuilderInContext(e->ctx);
}

/* Nothing compares the address of a module-internal function (kernel
 * bodies are only called, or handed to krt_parallel_for), so they are all
 * unnamed_addr.  mergefunc then replaces a twin outright instead of leaving
 * a thunk: a thunk to a small body (a batchnorm plane loop) had -O2's
 * inliner copy the body back into it, and a node function calling its own
 * twin never matched its twin's caller.  resnet_cifar: 141 -> 97 function
 * definitions, 19924 -> 18082 instructions of machine code
 * (docs/compile-time.md, item 10). */
static void mark_unnamed(LLVMModuleRef mod)
{
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f) && LLVMGetLinkage(f) == LLVMInternalLinkage)
            LLVMSetUnnamedAddress(f, LLVMGlobalUnnamedAddr);
}

/* Verified, then mergefunc: layers of one shape get identical kernels
 * (resnet's twin blocks), and each is then optimized and compiled once.
 * The rest of the pipeline runs in kp_llvm_objects, per partition, or in
 * kp_llvm_optimize on the whole module. */
static int verify_and_merge(KpCodegen *cg, KpDiag *d)
{
    char *msg = NULL;
    if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
        kp_error(d, "internal error: the generated module does not verify: %s", msg ? msg : "");
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    mark_unnamed(cg->mod);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(cg->mod, "mergefunc", cg->tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err)
        return kp_llvm_error(d, err, "internal error: LLVM optimization failed");
    return 0;
}

int kp_llvm_optimize(KpCodegen *cg, KpDiag *d)
{
    if (cg->optimized)
        return 0;
    if (!cg->mod)
        return kp_error(d, "internal error: no module to optimize");
    char msg[512];
    if (kp_llvm_run_pipeline(cg->mod, cg->tm, cg->cfg.opt_level, msg, sizeof msg) < 0)
        return kp_error(d, "internal error: LLVM optimization failed: %s", msg);
    cg->optimized = 1;
    return 0;
}

int kp_llvm_module_new(const KpTargetOpts *t, const char *name, KpCodegen **out, KpDiag *d)
{
    *out = NULL;
    KpCodegen *cg = calloc(1, sizeof *cg);
    if (!cg)
        return kp_error(d, "out of memory");
    if (kp_llvm_target_config(t, &cg->cfg, d) < 0) {
        free(cg);
        return -1;
    }
    if (!(cg->tm = kp_llvm_target_machine(&cg->cfg, d))) {
        kp_llvm_free(cg);
        return -1;
    }
    cg->tsc = LLVMOrcCreateNewThreadSafeContext();
    cg->ctx = LLVMOrcThreadSafeContextGetContext(cg->tsc);
    cg->mod = LLVMModuleCreateWithNameInContext(name, cg->ctx);
    LLVMSetTarget(cg->mod, cg->cfg.triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(cg->tm);
    LLVMSetModuleDataLayout(cg->mod, td);
    LLVMDisposeTargetData(td);
    *out = cg;
    return 0;
}

int kp_llvm_module_finish(KpCodegen *cg, KpEmit *e, KpDiag *d)
{
    set_function_attrs(e);
    if (verify_and_merge(cg, d) < 0)
        return -1;
    return kp_llvm_optimize(cg, d);
}

/* The slabs the model will allocate, as the descriptor gives them
 * (descriptor.c; runtime/model.c's slab_sizes). */
static void set_slab_sizes(KpCodegen *cg, const KpProgram *p)
{
    const KpGraph *g = p->infer, *tg = p->train;
    int64_t input = 1;
    for (int i = 1; i < g->input->rank; i++)
        input *= g->input->dims[i];
    cg->slabs = (KpSlabs){
        .param_floats = g->param_floats,
        .opt_slots = tg ? tg->opt_slots : 0,
        .prep_floats = g->prep_floats,
        .input_floats = g->max_batch * input,
        .workspace_bytes = g->workspace_bytes,
        .train_workspace_bytes = tg ? tg->workspace_bytes : 0,
    };
}

int kp_llvm_codegen(const KpProgram *p, const KpTargetOpts *t, KpCodegen **out, KpDiag *d)
{
    *out = NULL;
    const KpGraph *g = p->infer;
    if (!g)
        return kp_error(d, "internal error: a program without its inference graph");
    KpCodegen *cg;
    if (kp_llvm_module_new(t, g->name ? g->name : "model", &cg, d) < 0)
        return -1;
    cg->jobs = t ? t->jobs : 0;
    KpEmit e;
    kp_emit_init(&e, cg->ctx, cg->mod, g, cg->cfg.vector_width);
    e.fold_updates = t->fold_updates;
    if (t->keep_kernels && !(e.kernels = cg->kernels = calloc(1, sizeof *cg->kernels))) {
        LLVMDisposeBuilder(e.b);
        kp_llvm_free(cg);
        return kp_error(d, "out of memory");
    }
    KpDescEntries entries = {0};
    entries.infer = emit_infer(&e, &entries.prepare, d);
    int rc = entries.infer ? 0 : -1;
    if (rc == 0 && p->train) {
        KpTrainEntries te;
        e.g = p->train;
        rc = kp_cg_train_entries(&e, &te, d);
        entries.forward = te.forward;
        entries.backward = te.backward;
        entries.apply = te.apply;
        entries.train_step = te.train_step;
        e.g = g;
    }
    entries.scratch_bytes = e.scratch_bytes + e.scratch_tail_bytes;
    entries.scratch_shared_bytes = e.scratch_shared_bytes;
    if (rc == 0)
        rc = kp_llvm_emit_descriptor(cg->mod, g, p->train, p->no_train_reason,
                                     cg->cfg.cpu_features, &entries, d);
    LLVMDisposeBuilder(e.b);
    if (rc == 0) {
        set_function_attrs(&e);
        rc = verify_and_merge(cg, d);
    }
    if (rc < 0) {
        kp_llvm_free(cg);
        return -1;
    }
    set_slab_sizes(cg, p);
    *out = cg;
    return 0;
}

void kp_llvm_free(KpCodegen *cg)
{
    if (!cg)
        return;
    if (cg->mod)
        LLVMDisposeModule(cg->mod);
    if (cg->tsc)
        LLVMOrcDisposeThreadSafeContext(cg->tsc);
    if (cg->tm)
        LLVMDisposeTargetMachine(cg->tm);
    kp_llvm_target_config_free(&cg->cfg);
    kp_kernel_list_free(cg->kernels);
    kp_rt_slabs_free(&cg->slabs);
    free(cg);
}
