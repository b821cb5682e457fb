/*
 * emit_conv_scatter.c — the scatter form of emit_conv.h at a stride > 1
 * (conv2d_transpose and conv2d_grad_x of strided convolutions), one
 * output element at a time:
 *
 *   Y[n,co,oy,ox] = bias[co] + sum_{ci,ki,kj} X[n,ci,iy,ix] W[...]
 *       over the (ki, kj) with oy + pt - ki*dh = iy*sh, 0 <= iy < h
 *                          and ox + pl - kj*dw = ix*sw, 0 <= ix < w
 *
 * Items are (n, co) planes; each element is summed over (ci, ki, kj) in
 * order by one thread.  Plain scalar code: correct for every geometry,
 * not fast (the stride-1 case goes through the vectorized gather form).
 */
#include "emit_conv.h"

/* *pos = (o + pad - k*dil) / s when that is an integer in [0, lim), else
 * a false condition. */
static LLVMValueRef source(KpEmit *e, LLVMValueRef o, LLVMValueRef k, int64_t pad, int64_t dil,
                           int64_t s, int64_t lim, LLVMValueRef *pos)
{
    LLVMValueRef t = LLVMBuildNSWSub(e->b, LLVMBuildNSWAdd(e->b, o, kp_i64(e, pad), ""),
                                     LLVMBuildNSWMul(e->b, k, kp_i64(e, dil), ""), "");
    LLVMValueRef ge0 = LLVMBuildICmp(e->b, LLVMIntSGE, t, kp_i64(e, 0), "");
    /* t >= 0 when it matters, so unsigned division and remainder are exact */
    LLVMValueRef q = LLVMBuildUDiv(e->b, t, kp_i64(e, s), "");
    LLVMValueRef r = LLVMBuildURem(e->b, t, kp_i64(e, s), "");
    LLVMValueRef ok = LLVMBuildAnd(e->b, ge0, LLVMBuildICmp(e->b, LLVMIntEQ, r, kp_i64(e, 0), ""), "");
    ok = LLVMBuildAnd(e->b, ok, LLVMBuildICmp(e->b, LLVMIntSLT, q, kp_i64(e, lim), ""), "");
    *pos = q;
    return ok;
}

/* if (cond) { ... }: returns the join block, the builder in the then-block */
static LLVMBasicBlockRef when(KpEmit *e, LLVMValueRef cond, const char *name)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(e->ctx, fn, name);
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "");
    LLVMBuildCondBr(e->b, cond, then, done);
    LLVMPositionBuilderAtEnd(e->b, then);
    return done;
}

static void scatter_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const KpConvMap *m = user;
    LLVMValueRef X = a->p[m->ix], W = a->p[m->iw], Y = a->p[m->iy];
    LLVMValueRef acc = kp_alloca(e, e->f32, "acc");
    KpLoop li, ly, lx, lc, lk, lj;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "plane");
    LLVMValueRef co = LLVMBuildSRem(e->b, li.iv, kp_i64(e, m->cout), "co");
    LLVMValueRef n = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, m->cout), "n");
    LLVMValueRef init = m->ib >= 0 ? LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[m->ib], co), "")
                                   : kp_fconst(e->f32, 0.0);
    LLVMValueRef wco = LLVMBuildNSWAdd(e->b, kp_i64(e, m->w0),
                                       LLVMBuildNSWMul(e->b, co, kp_i64(e, m->wco), ""), "");
    kp_loop_begin(e, &ly, kp_i64(e, 0), kp_i64(e, m->oh), 1, "oy");
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, m->ow), 1, "ox");
    LLVMBuildStore(e->b, init, acc);
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cin), 1, "ci");
    LLVMValueRef plane = LLVMBuildNSWMul(
        e->b, LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, n, kp_i64(e, m->cin), ""), lc.iv, ""),
        kp_i64(e, m->h), "");
    LLVMValueRef wci = LLVMBuildNSWAdd(e->b, wco, LLVMBuildNSWMul(e->b, lc.iv, kp_i64(e, m->wci), ""), "");
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, m->kh), 1, "ki");
    LLVMValueRef iy;
    LLVMBasicBlockRef rowdone = when(e, source(e, ly.iv, lk.iv, m->pt, m->dh, m->sh, m->h, &iy), "row");
    LLVMValueRef xrow = LLVMBuildNSWMul(e->b, LLVMBuildNSWAdd(e->b, plane, iy, ""), kp_i64(e, m->w), "");
    LLVMValueRef wki = LLVMBuildNSWAdd(e->b, wci, LLVMBuildNSWMul(e->b, lk.iv, kp_i64(e, m->wki), ""), "");
    kp_loop_begin(e, &lj, kp_i64(e, 0), kp_i64(e, m->kw), 1, "kj");
    LLVMValueRef ix;
    LLVMBasicBlockRef coldone = when(e, source(e, lx.iv, lj.iv, m->pl, m->dw, m->sw, m->w, &ix), "col");
    LLVMValueRef xv = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, X, LLVMBuildNSWAdd(e->b, xrow, ix, "")), "");
    LLVMValueRef wi = LLVMBuildNSWAdd(e->b, wki, LLVMBuildNSWMul(e->b, lj.iv, kp_i64(e, m->wkj), ""), "");
    LLVMValueRef wv = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, W, wi), "");
    LLVMBuildStore(e->b, kp_fma(e, xv, wv, LLVMBuildLoad2(e->b, e->f32, acc, "")), acc);
    LLVMBuildBr(e->b, coldone);
    LLVMPositionBuilderAtEnd(e->b, coldone);
    kp_loop_end(e, &lj);
    LLVMBuildBr(e->b, rowdone);
    LLVMPositionBuilderAtEnd(e->b, rowdone);
    kp_loop_end(e, &lk);
    kp_loop_end(e, &lc);
    LLVMValueRef yi = LLVMBuildNSWAdd(
        e->b, LLVMBuildNSWMul(e->b, LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, m->oh), ""), ly.iv, ""),
                              kp_i64(e, m->ow), ""),
        lx.iv, "");
    LLVMBuildStore(e->b, LLVMBuildLoad2(e->b, e->f32, acc, ""), kp_gep(e, Y, yi));
    kp_loop_end(e, &lx);
    kp_loop_end(e, &ly);
    kp_loop_end(e, &li);
}

void kp_emit_conv_scatter(KpEmit *e, const KpConvMap *m)
{
    LLVMValueRef items = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, m->cout), "planes");
    int64_t macs = e->g->max_batch * m->cout * m->oh * m->ow * m->cin * m->kh * m->kw;
    kp_emit_parallel(e, "conv_scatter", kp_i64(e, 0), items, macs >= 65536, scatter_kernel,
                     (void *)m);
}
