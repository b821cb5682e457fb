/*
 * emit_eltwise.c — relu, leaky_relu, sigmoid, tanh: y[i] = f(x[i]) over
 * the flat n*size elements.
 *
 * Items are chunks of CHUNK elements (a multiple of every vector width);
 * in a chunk, whole <VW x float> vectors, then a scalar loop for the few
 * elements left at the very end.  f is written once, for a float or a
 * vector of floats, so both loops share it.
 */
#include "emit.h"

enum { CHUNK = 4096 };

typedef LLVMValueRef (*EltFn)(KpEmit *e, LLVMValueRef x, const KpNode *n);

typedef struct Elt {
    EltFn f;
    const KpNode *node;
} Elt;

static void elt_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Elt *elt = user;
    LLVMValueRef x = a->p[0], y = a->p[1];
    LLVMValueRef count = kp_numel(e, elt->node->out);
    KpLoop li, lv, ls;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "chunk");
    LLVMValueRef lo = LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, CHUNK), "lo");
    LLVMValueRef hi = kp_min_i64(e, LLVMBuildNSWAdd(e->b, lo, kp_i64(e, CHUNK), ""), count);
    LLVMValueRef len = LLVMBuildNSWSub(e->b, hi, lo, "");
    LLVMValueRef vlen = LLVMBuildAnd(e->b, len, kp_i64(e, ~(int64_t)(e->vw - 1)), "");
    LLVMValueRef vend = LLVMBuildNSWAdd(e->b, lo, vlen, "vend");

    kp_loop_begin(e, &lv, lo, vend, e->vw, "v");
    kp_store_vec(e, elt->f(e, kp_load_vec(e, x, lv.iv), elt->node), y, lv.iv);
    kp_loop_end(e, &lv);

    kp_loop_begin(e, &ls, vend, hi, 1, "s");
    LLVMValueRef xs = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, x, ls.iv), "");
    LLVMBuildStore(e->b, elt->f(e, xs, elt->node), kp_gep(e, y, ls.iv));
    kp_loop_end(e, &ls);

    kp_loop_end(e, &li);
}

static int emit_elt(KpEmit *e, const KpNode *n, EltFn f)
{
    Elt elt = {f, n};
    LLVMValueRef count = kp_numel(e, n->out);
    LLVMValueRef items = LLVMBuildSDiv(e->b, LLVMBuildNSWAdd(e->b, count, kp_i64(e, CHUNK - 1), ""),
                                       kp_i64(e, CHUNK), "items");
    int parallel = e->g->max_batch * kp_value_sample_size(n->out) > CHUNK;
    kp_emit_parallel(e, kp_op_name(n->op), kp_i64(e, 0), items, parallel, elt_kernel, &elt);
    return 0;
}

static LLVMValueRef f_relu(KpEmit *e, LLVMValueRef x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x, kp_fconst(ty, 0.0), "");
    return LLVMBuildSelect(e->b, pos, x, kp_fconst(ty, 0.0), "");
}

static LLVMValueRef f_leaky_relu(KpEmit *e, LLVMValueRef x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x, kp_fconst(ty, 0.0), "");
    LLVMValueRef neg = LLVMBuildFMul(e->b, x, kp_fconst(ty, n->attr.alpha), "");
    return LLVMBuildSelect(e->b, pos, x, neg, "");
}

static LLVMValueRef f_sigmoid(KpEmit *e, LLVMValueRef x, const KpNode *n)
{
    return kp_emit_sigmoid(e, x);
}

static LLVMValueRef f_tanh(KpEmit *e, LLVMValueRef x, const KpNode *n)
{
    return kp_emit_tanh(e, x);
}

int emit_relu(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_elt(e, n, f_relu);
}

int emit_leaky_relu(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_elt(e, n, f_leaky_relu);
}

int emit_sigmoid(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_elt(e, n, f_sigmoid);
}

int emit_tanh(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_elt(e, n, f_tanh);
}
