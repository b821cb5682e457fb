/*
 * codegen_train.c — the training entry points of a train graph, in the
 * same module as infer (node functions "train.node<i>.<op>"):
 *
 *   forward(params, tws, x, y, n, seed)
 *       FORWARD nodes (the seed for their dropout masks), a head with a
 *       fused loss without it (.noloss); then, if y != NULL, the output
 *       copied to y
 *   backward(params, grads, tws, x, dy, dx, n)
 *       dy copied into d_output's slot; BACKWARD nodes; INPUT_GRAD nodes
 *       only if dx != NULL (those in a group that runs among the BACKWARD
 *       nodes there: the group's function with them if dx != NULL, its
 *       .nodx function without them if not)
 *   apply(params, grads, opt, step)                      (with an optimizer)
 *       UPDATE nodes (which zero the trained gradients as they read them);
 *       grads[trainable_floats, param_floats) zeroed
 *   train_step(params, grads, opt, tws, x, target, n, step, seed) -> loss
 *       FORWARD (a fused loss computed with its head), LOSS, BACKWARD
 *       (groups through .nodx), UPDATE; grads zeroed; the loss scalar
 *       returned                                   (with a loss and an optimizer)
 *       At batch 1 the update may be folded into weight gradients
 *       (fold_update.c): such a dense_grad_w is left out of its group
 *       (.step) or not called, its folded kernel runs right after, and
 *       the update's .rest function leaves its floats out.
 *
 * Within an entry the phases run in that order, each phase's nodes in the
 * graph's (topological) order.  Storage to argument: codegen.h.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

/* Calls to every node of the given phase, in graph order: with whole
 * false, a node's lesser function where it has one (codegen.h: a group
 * without the members that need dx, a node without its fused loss). */
static int run_phase(KpEmit *e, const KpEntryEnv *env, LLVMValueRef *fns, KpPhase phase,
                     bool whole, KpDiag *d)
{
    const KpGraph *g = e->g;
    for (int i = 0; i < g->nnodes; i++) {
        bool full = whole || !fns[g->nnodes + i];
        LLVMValueRef fn = full ? fns[i] : fns[g->nnodes + i];
        if (g->nodes[i]->phase == phase && kp_cg_call_node(e, env, g->nodes[i], fn, full, d) < 0)
            return -1;
    }
    return 0;
}

/* if (p != NULL) { ...the caller's code... }: returns the join block,
 * the builder in the then-block. */
static LLVMBasicBlockRef if_nonnull(KpEmit *e, LLVMValueRef fn, LLVMValueRef p, const char *name)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s.then", name);
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(e->ctx, fn, buf);
    snprintf(buf, sizeof buf, "%s.done", name);
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, buf);
    LLVMBuildCondBr(e->b, LLVMBuildIsNotNull(e->b, p, ""), then, done);
    LLVMPositionBuilderAtEnd(e->b, then);
    return done;
}

/* backward's BACKWARD nodes: a group with INPUT_GRAD members whole if
 * dx != NULL, else through its .nodx function. */
static int run_backward(KpEmit *e, const KpEntryEnv *env, LLVMValueRef *fns, LLVMValueRef dx,
                        KpDiag *d)
{
    const KpGraph *g = e->g;
    for (int i = 0; i < g->nnodes; i++) {
        const KpNode *n = g->nodes[i];
        if (n->phase != KP_PHASE_BACKWARD)
            continue;
        LLVMValueRef nodx = fns[g->nnodes + i];
        if (!nodx) {
            if (kp_cg_call_node(e, env, n, fns[i], true, d) < 0)
                return -1;
            continue;
        }
        LLVMBasicBlockRef with_bb = LLVMAppendBasicBlockInContext(e->ctx, env->fn, "with_dx");
        LLVMBasicBlockRef without_bb = LLVMAppendBasicBlockInContext(e->ctx, env->fn, "without_dx");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, env->fn, "group.done");
        LLVMBuildCondBr(e->b, LLVMBuildIsNotNull(e->b, dx, ""), with_bb, without_bb);
        LLVMPositionBuilderAtEnd(e->b, with_bb);
        KpEntryEnv with = *env;
        with.dx = dx;
        if (kp_cg_call_node(e, &with, n, fns[i], true, d) < 0)
            return -1;
        LLVMBuildBr(e->b, done);
        LLVMPositionBuilderAtEnd(e->b, without_bb);
        if (kp_cg_call_node(e, env, n, nodx, false, d) < 0)
            return -1;
        LLVMBuildBr(e->b, done);
        LLVMPositionBuilderAtEnd(e->b, done);
    }
    return 0;
}

/* n * size(v) floats, in bytes. */
static LLVMValueRef value_bytes(KpEmit *e, const KpValue *v, LLVMValueRef n)
{
    int64_t per = kp_value_sample_size(v) * 4;
    if (v->rank > 0 && v->dims[0] == KP_DIM_N)
        return LLVMBuildNSWMul(e->b, n, kp_i64(e, per), "bytes");
    return kp_i64(e, per);
}

/* The trainable floats the folded kernels update. */
static int64_t folded_floats(const KpEmit *e)
{
    int64_t sum = 0;
    for (int k = 0; e->folded && k < e->folded->count; k++)
        sum += kp_value_numel(kp_folded_grad(e->g, e->folded, k), 1);
    return sum;
}

/* After an update: the gradients of the parameters it does not train
 * (running statistics, after trainable_floats) zeroed; the update zeroed
 * the others as it read them (emit_optim.c). */
static void zero_grads(KpEmit *e, const KpEntryEnv *env)
{
    int64_t from = e->g->trainable_floats, count = e->g->param_floats - from;
    if (count <= 0)
        return;
    LLVMValueRef at = LLVMBuildInBoundsGEP2(e->b, e->f32, env->grads, (LLVMValueRef[]){kp_i64(e, from)},
                                            1, "");
    LLVMBuildMemSet(e->b, at, LLVMConstInt(LLVMInt8TypeInContext(e->ctx), 0, 0),
                    kp_i64(e, count * 4), 4);
}

static LLVMValueRef emit_forward(KpEmit *e, LLVMValueRef *fns, KpDiag *d)
{
    LLVMTypeRef pt[6] = {e->ptr, e->ptr, e->ptr, e->ptr, e->i64, e->i64};
    LLVMValueRef fn = kp_cg_entry(e, "forward", LLVMFunctionType(e->void_t, pt, 6, 0));
    KpEntryEnv env = {.fn = fn, .params = LLVMGetParam(fn, 0), .ws = LLVMGetParam(fn, 1),
                      .x = LLVMGetParam(fn, 2), .n = LLVMGetParam(fn, 4),
                      .seed = LLVMGetParam(fn, 5)};
    LLVMValueRef y = LLVMGetParam(fn, 3);
    if (run_phase(e, &env, fns, KP_PHASE_FORWARD, false, d) < 0)
        return NULL;
    LLVMBasicBlockRef done = if_nonnull(e, fn, y, "y");
    LLVMValueRef out = kp_cg_value_ptr(e, &env, e->g->output, d);
    if (!out)
        return NULL;
    LLVMBuildMemCpy(e->b, y, 4, out, 4, value_bytes(e, e->g->output, env.n));
    LLVMBuildBr(e->b, done);
    LLVMPositionBuilderAtEnd(e->b, done);
    LLVMBuildRetVoid(e->b);
    return fn;
}

static LLVMValueRef emit_backward(KpEmit *e, LLVMValueRef *fns, KpDiag *d)
{
    LLVMTypeRef pt[7] = {e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->i64};
    LLVMValueRef fn = kp_cg_entry(e, "backward", LLVMFunctionType(e->void_t, pt, 7, 0));
    KpEntryEnv env = {.fn = fn, .params = LLVMGetParam(fn, 0), .grads = LLVMGetParam(fn, 1),
                      .ws = LLVMGetParam(fn, 2), .x = LLVMGetParam(fn, 3), .n = LLVMGetParam(fn, 6)};
    LLVMValueRef dy = LLVMGetParam(fn, 4), dx = LLVMGetParam(fn, 5);
    const KpValue *dout = e->g->d_output;
    if (dout) {
        LLVMValueRef slot = kp_cg_value_ptr(e, &env, dout, d);
        if (!slot)
            return NULL;
        LLVMBuildMemCpy(e->b, slot, 4, dy, 4, value_bytes(e, dout, env.n));
    }
    if (run_backward(e, &env, fns, dx, d) < 0)
        return NULL;
    LLVMBasicBlockRef done = if_nonnull(e, fn, dx, "dx");
    env.dx = dx;
    if (run_phase(e, &env, fns, KP_PHASE_INPUT_GRAD, true, d) < 0)
        return NULL;
    LLVMBuildBr(e->b, done);
    LLVMPositionBuilderAtEnd(e->b, done);
    LLVMBuildRetVoid(e->b);
    return fn;
}

static LLVMValueRef emit_apply(KpEmit *e, LLVMValueRef *fns, KpDiag *d)
{
    LLVMTypeRef pt[4] = {e->ptr, e->ptr, e->ptr, e->i64};
    LLVMValueRef fn = kp_cg_entry(e, "apply", LLVMFunctionType(e->void_t, pt, 4, 0));
    KpEntryEnv env = {.fn = fn, .params = LLVMGetParam(fn, 0), .grads = LLVMGetParam(fn, 1),
                      .opt = LLVMGetParam(fn, 2), .step = LLVMGetParam(fn, 3)};
    if (run_phase(e, &env, fns, KP_PHASE_UPDATE, true, d) < 0)
        return NULL;
    zero_grads(e, &env);
    LLVMBuildRetVoid(e->b);
    return fn;
}

/* train_step's call of the k-th folded kernel: fold(dy, x, params, opt,
 * step), listed as computing the dense_grad_w and the update's share. */
static int call_folded(KpEmit *e, const KpEntryEnv *env, int k, KpDiag *d)
{
    const KpGraph *g = e->g;
    const KpNode *gw = g->nodes[e->folded->node[k]], *u = g->nodes[e->folded->update];
    LLVMValueRef args[5];
    KpKernelArg what[5];
    const KpValue *vals[3] = {gw->in[0], gw->in[1], u->out};
    for (int i = 0; i < 3; i++) {
        if (!(args[i] = kp_cg_value_ptr(e, env, vals[i], d)))
            return -1;
        what[i] = kp_karg_value(vals[i]);
    }
    args[3] = env->opt, what[3] = kp_karg(KP_KARG_OPT);
    args[4] = env->step, what[4] = kp_karg(KP_KARG_STEP);
    LLVMValueRef fn = e->folded->fn[k];
    LLVMBuildCall2(e->b, LLVMGlobalGetValueType(fn), fn, args, 5, "");
    if (!e->kernels)
        return 0;
    const KpNode *nodes[2] = {gw, u};
    if (kp_cg_note_call(e, env, fn, nodes, 2, what, 5, d) < 0)
        return -1;
    e->kernels->k[e->kernels->n - 1].update_floats = kp_value_numel(gw->out, 1);
    return 0;
}

/* train_step's BACKWARD nodes: a group through its .step function (or
 * .nodx, or whole), then the folded kernels of its members; a folded node
 * outside a group as its folded kernel. */
static int run_step_backward(KpEmit *e, const KpEntryEnv *env, LLVMValueRef *fns, KpDiag *d)
{
    const KpGraph *g = e->g;
    int N = g->nnodes;
    for (int i = 0; i < N; i++) {
        const KpNode *n = g->nodes[i];
        if (n->phase != KP_PHASE_BACKWARD || !fns[i])
            continue;   /* another phase, or a group member after the first */
        int end = kp_group_end(g, n), kept = 0;
        for (int k = i; k < end; k++)
            kept += !kp_cg_left_out(e, g->nodes[k]);
        LLVMValueRef fn = fns[2 * N + i] ? fns[2 * N + i] : fns[N + i] ? fns[N + i] : fns[i];
        if (kept > 0 && kp_cg_call_node(e, env, n, fn, false, d) < 0)
            return -1;
        for (int k = i; k < end; k++) {
            int f = kp_cg_folded(e, k);
            if (f >= 0 && call_folded(e, env, f, d) < 0)
                return -1;
        }
    }
    return 0;
}

static LLVMValueRef emit_train_step(KpEmit *e, LLVMValueRef *fns, KpDiag *d)
{
    LLVMTypeRef pt[9] = {e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->i64, e->i64, e->i64};
    LLVMValueRef fn = kp_cg_entry(e, "train_step", LLVMFunctionType(e->f32, pt, 9, 0));
    KpEntryEnv env = {.fn = fn, .params = LLVMGetParam(fn, 0), .grads = LLVMGetParam(fn, 1),
                      .opt = LLVMGetParam(fn, 2), .ws = LLVMGetParam(fn, 3),
                      .x = LLVMGetParam(fn, 4), .target = LLVMGetParam(fn, 5),
                      .n = LLVMGetParam(fn, 6), .step = LLVMGetParam(fn, 7),
                      .seed = LLVMGetParam(fn, 8)};
    /* the forward with the losses fused into it, the backward without dx */
    if (run_phase(e, &env, fns, KP_PHASE_FORWARD, true, d) < 0 ||
        run_phase(e, &env, fns, KP_PHASE_LOSS, true, d) < 0 || run_step_backward(e, &env, fns, d) < 0)
        return NULL;
    int64_t folded = folded_floats(e);
    for (int i = 0; i < e->g->nnodes; i++) {
        const KpNode *n = e->g->nodes[i];
        LLVMValueRef rest = fns[2 * e->g->nnodes + i];
        int64_t left = kp_value_numel(n->out, 1) - folded;
        if (n->phase != KP_PHASE_UPDATE || (rest && left == 0))
            continue;   /* not an update, or every float folded */
        if (kp_cg_call_node(e, &env, n, rest ? rest : fns[i], true, d) < 0)
            return NULL;
        if (rest && e->kernels)
            e->kernels->k[e->kernels->n - 1].update_floats = left;
    }
    zero_grads(e, &env);
    LLVMValueRef loss = kp_cg_value_ptr(e, &env, e->g->loss_value, d);
    if (!loss)
        return NULL;
    LLVMBuildRet(e->b, LLVMBuildLoad2(e->b, e->f32, loss, "loss"));
    return fn;
}

int kp_cg_train_entries(KpEmit *e, KpTrainEntries *out, KpDiag *d)
{
    const KpGraph *g = e->g;
    memset(out, 0, sizeof *out);
    int has_optim = g->optimizer && strcmp(g->optimizer, "none") != 0;
    int has_loss = g->loss_value != NULL;
    KpFolded folded;
    kp_fold_updates(g, e->fold_updates, &folded);
    /* only train_step calls the folded kernels and the lesser functions
     * they need (the other entries see no folds) */
    if (!has_loss || !has_optim)
        folded.count = 0;
    e->folded = folded.count > 0 ? &folded : NULL;
    LLVMValueRef *fns = kp_cg_emit_nodes(e, "train", d);
    e->folded = NULL;
    if (!fns)
        return -1;
    int rc = -1;
    if (!(out->forward = emit_forward(e, fns, d)) || !(out->backward = emit_backward(e, fns, d)))
        goto done;
    if (has_optim && !(out->apply = emit_apply(e, fns, d)))
        goto done;
    e->folded = folded.count > 0 ? &folded : NULL;
    if (has_optim && has_loss && !(out->train_step = emit_train_step(e, fns, d)))
        goto done;
    rc = 0;
done:
    e->folded = NULL;
    free(fns);
    return rc;
}
