/*
 * emit_grad_dense.c — the dense layer's gradients.
 *
 *   dense_grad_x:  dx[i,k]  = sum_o dy[i,o] W[o,k]     dy [N,out], W [out,in] -> [N,in]
 *   dense_grad_w:  dW[o,k] += sum_i dy[i,o] x[i,k]     dy [N,out], x [N,in]   -> [out,in]
 *   bias_grad:     db[o]   += sum_i dy[i,o]            dy [N,out]             -> [out]
 *                  (and dy [N,C,H,W]: a vector sum over each channel's planes)
 *
 * The first two are GEMMs (gemm.h), C = A·B:
 *
 *             grad_x                   grad_w
 *   C         dx   [N x in]            dW   [out x in], accumulated
 *   A         dy   [N x out]           dy^T [out x N]   (rows contiguous)
 *   B         W    [out x in]          x    [N x in]
 *   k         out                      N (the batch)
 *
 * Every operand is contiguous along the columns of C or readable in
 * place, so the generator packs only where cache sets collide.  Each C
 * element is summed by one thread over k in order, from zero or (for a
 * gradient slot) from its current value, so results do not depend on the
 * thread count.  The bias gradient sums each output over the batch in
 * order, one thread per vector of outputs.
 */
#include "../ir/epilogue.h"
#include "gemm.h"

/* dy [N,out], W [out,in] -> dx [N,in] */
int emit_dense_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t out = n->in[1]->dims[0], in = n->in[1]->dims[1];
    if (e->accumulate && n->nepi > 0)
        return kp_error(d, "internal error: node %d: epilogues on an accumulated dense_grad_x", n->id);
    KpGemmOut o = {.node = n, .c = {.arg = n->nin, .rs = in, .cs = 1}, .bias_arg = -1};
    KpGemm g = {
        .name = "grad_x",
        .m = {1, true}, .n = {in, false}, .k = {out, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = out, .cs = 1}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = in, .cs = 1}},
        .c = o.c,
        .accumulate = e->accumulate,
        .store = kp_gemm_store_out,
        .store_user = &o,
    };
    return kp_gemm_emit(e, &g, d);
}

/* dy [N,out], x [N,in] -> dW [out,in] */
int emit_dense_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t out = n->in[0]->dims[1], in = n->in[1]->dims[1];
    KpGemm g = {
        .name = "grad_w",
        .m = {out, false}, .n = {in, false}, .k = {1, true}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = 1, .cs = out}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = in, .cs = 1}},
        .c = {.arg = 2, .rs = in, .cs = 1},
        .accumulate = e->accumulate,
    };
    return kp_gemm_emit(e, &g, d);
}

static LLVMValueRef load_lanes(KpEmit *e, LLVMValueRef p, LLVMValueRef i, int masked, int rem)
{
    return masked ? kp_load_vec_masked(e, p, i, rem, 0.0) : kp_load_vec(e, p, i);
}

/* db[o0 .. o0+VW) (+)= sum over rows i = 0, 1, ... of dy[i, o0 ..]. */
static void bias_vec(KpEmit *e, const KpKernelArgs *a, int64_t out, LLVMValueRef o0, int masked,
                     int rem)
{
    LLVMValueRef dy = a->p[0], db = a->p[1];
    LLVMValueRef acc = kp_alloca(e, e->vec, "acc");
    LLVMBuildStore(e->b, e->accumulate ? load_lanes(e, db, o0, masked, rem) : kp_fconst(e->vec, 0.0),
                   acc);
    KpLoop li;
    kp_loop_begin(e, &li, kp_i64(e, 0), a->n, 1, "i");
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, out), ""), o0, "");
    LLVMValueRef sum = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""),
                                     load_lanes(e, dy, at, masked, rem), "");
    LLVMBuildStore(e->b, sum, acc);
    kp_loop_end(e, &li);
    LLVMValueRef res = LLVMBuildLoad2(e->b, e->vec, acc, "");
    if (masked)
        kp_store_vec_masked(e, res, db, o0, rem);
    else
        kp_store_vec(e, res, db, o0);
}

/* Items are vectors of o; the last may be partial (masked). */
static void bias_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    int64_t out = *(const int64_t *)user;
    int rem = (int)(out % e->vw);
    int64_t nvec = (out + e->vw - 1) / e->vw;
    KpLoop lv;
    kp_loop_begin(e, &lv, a->begin, a->end, 1, "vec");
    LLVMValueRef o0 = LLVMBuildNSWMul(e->b, lv.iv, kp_i64(e, e->vw), "o0");
    if (rem == 0) {
        bias_vec(e, a, out, o0, 0, 0);
    } else {
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bw = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.whole");
        LLVMBasicBlockRef bp = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.part");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.join");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, lv.iv, kp_i64(e, nvec - 1), ""), bw, bp);
        LLVMPositionBuilderAtEnd(e->b, bw);
        bias_vec(e, a, out, o0, 0, 0);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, bp);
        bias_vec(e, a, out, o0, 1, rem);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    kp_loop_end(e, &lv);
}

/* db[c] (+)= the sum over n of dy[n,c,0..hw), vectors along hw (the last
 * masked), lanes summed by a fixed tree at the end; items are channels. */
typedef struct BiasPlanes {
    int64_t c, hw;
} BiasPlanes;

static void bias_planes_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const BiasPlanes *s = user;
    LLVMValueRef dy = a->p[0], db = a->p[1];
    int64_t nwhole = s->hw / e->vw, rem = s->hw % e->vw;
    LLVMValueRef acc = kp_alloca(e, e->vec, "acc");
    KpLoop lc, li, lv;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "c");
    LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc);
    kp_loop_begin(e, &li, kp_i64(e, 0), a->n, 1, "i");
    LLVMValueRef plane = LLVMBuildNSWMul(
        e->b, LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, s->c), ""), lc.iv, ""),
        kp_i64(e, s->hw), "");
    if (nwhole > 0) {
        kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, nwhole * e->vw), e->vw, "v");
        LLVMValueRef x = kp_load_vec(e, dy, LLVMBuildNSWAdd(e->b, plane, lv.iv, ""));
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""), x, ""), acc);
        kp_loop_end(e, &lv);
    }
    if (rem > 0) {
        LLVMValueRef at = LLVMBuildNSWAdd(e->b, plane, kp_i64(e, nwhole * e->vw), "");
        LLVMValueRef x = kp_load_vec_masked(e, dy, at, (int)rem, 0.0);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""), x, ""), acc);
    }
    kp_loop_end(e, &li);
    LLVMValueRef sum = kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, acc, ""));
    if (e->accumulate)
        sum = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, db, lc.iv), ""), sum, "");
    LLVMBuildStore(e->b, sum, kp_gep(e, db, lc.iv));
    kp_loop_end(e, &lc);
}

/* dy [N,C,...] -> db [C] */
int emit_bias_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0];
    int64_t out = dy->dims[1], hw = 1;
    for (int k = 2; k < dy->rank; k++)
        hw *= dy->dims[k];
    if (hw > 1) {
        BiasPlanes s = {out, hw};
        int parallel = e->g->max_batch * out * hw >= 65536 && out > 1;
        kp_emit_parallel(e, "bias", kp_i64(e, 0), kp_i64(e, out), parallel, bias_planes_kernel, &s);
        return 0;
    }
    int64_t nvec = (out + e->vw - 1) / e->vw;
    int parallel = e->g->max_batch * out >= 65536;
    kp_emit_parallel(e, "bias", kp_i64(e, 0), kp_i64(e, nvec), parallel, bias_kernel, &out);
    return 0;
}
