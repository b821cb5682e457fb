/*
 * emit_pool.c — max and average pooling and their gradients, NCHW, the
 * window kh x kw at stride (sh, sw) from the top/left padding (pt, pl),
 * as runtime/ref/pool.c defines them:
 *
 *   maxpool2d       y[oy,ox] = max over the window's inside positions
 *                   (the first maximum wins; padding never does; 0 for a
 *                   window of padding only)
 *   maxpool2d_grad  dx[first argmax of each window] += dy[oy,ox], else 0
 *   avgpool2d       y[oy,ox] = (0 + the inside positions in row-major
 *                   order) * 1/(kh*kw) (the divisor counts the padding,
 *                   PyTorch's default)
 *   avgpool2d_grad  dx[each inside position] += dy[oy,ox] * 1/(kh*kw)
 *
 * Work items are runs of whole (n, c) planes, at least KP_GRAIN elements
 * (kp_emit_parallel_units), so a small batch runs without forking a thread
 * team.  A plane is done by one thread, so nothing depends on the thread
 * count.
 *
 * Most pools take the vector path (emit_pool_vec.c).  The rest — the
 * gradients of overlapping windows or with left padding, and windows too
 * wide for its shuffles — run here one element at a time, plane by plane:
 * the plane zeroed, then the gradient added window after window in (oy,
 * ox) order (the reference's order, so overlapping windows sum the same
 * way), then the node's epilogues over the finished plane while it is in
 * cache.  A forward stores each pooled value through the epilogues.
 */
#include <math.h>

#include "../ir/epilogue.h"
#include "emit_conv.h"
#include "emit_pool.h"

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef add(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

static LLVMValueRef smax(KpEmit *e, LLVMValueRef a, int64_t k)
{
    LLVMValueRef c = kp_i64(e, k);
    return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSGT, a, c, ""), a, c, "");
}

/* The window's taps inside the plane along one axis: [*lo, *hi) of
 * 0..k-1 for the window starting at o*stride - pad. */
static void taps_inside(KpEmit *e, LLVMValueRef o, int64_t stride, int64_t pad, int64_t k,
                        int64_t size, LLVMValueRef *lo, LLVMValueRef *hi)
{
    LLVMValueRef start = LLVMBuildNSWSub(e->b, mul(e, o, stride), kp_i64(e, pad), "");
    *lo = smax(e, LLVMBuildNSWNeg(e->b, start, ""), 0);
    *hi = kp_min_i64(e, LLVMBuildNSWSub(e->b, kp_i64(e, size), start, ""), kp_i64(e, k));
}

/* dx plane at d0 (hw floats) = v, or through the node's epilogues */
static void plane_sweep(KpEmit *e, const KpKernelArgs *a, const KpPool *s, LLVMValueRef d0, int zero)
{
    LLVMValueRef out = a->p[s->node->nin];
    int64_t hw = s->h * s->w;
    KpLoop lz;
    kp_loop_begin(e, &lz, kp_i64(e, 0), kp_i64(e, hw - hw % e->vw), e->vw, zero ? "zero" : "epi");
    LLVMValueRef i = add(e, d0, lz.iv);
    LLVMValueRef v = zero ? kp_fconst(e->vec, 0.0) : kp_load_vec(e, out, i);
    kp_store_vec(e, zero ? v : kp_emit_epilogue(e, s->node, a->p, v, i, 0), out, i);
    kp_loop_end(e, &lz);
    if (hw % e->vw == 0)
        return;
    int rem = (int)(hw % e->vw);
    LLVMValueRef t = add(e, d0, kp_i64(e, hw - rem));
    LLVMValueRef w = zero ? kp_fconst(e->vec, 0.0) : kp_load_vec_masked(e, out, t, rem, 0.0);
    kp_store_vec_masked(e, zero ? w : kp_emit_epilogue(e, s->node, a->p, w, t, rem), out, t, rem);
}

/* One plane, one element at a time. */
static void scalar_plane(KpEmit *e, const KpKernelArgs *a, const KpPool *s, LLVMValueRef p)
{
    LLVMValueRef X = s->grad ? (s->max ? a->p[1] : NULL) : a->p[0], out = a->p[s->node->nin];
    LLVMValueRef acc = kp_alloca(e, e->f32, "acc"), arg = kp_alloca(e, e->i64, "arg");
    LLVMValueRef inv = kp_fconst(e->f32, 1.0f / (float)(s->kh * s->kw));
    LLVMValueRef in0 = mul(e, p, s->h * s->w), o0 = mul(e, p, s->oh * s->ow);
    if (s->grad)
        plane_sweep(e, a, s, in0, 1);
    KpLoop ly, lx, lk, lj;
    kp_loop_begin(e, &ly, kp_i64(e, 0), kp_i64(e, s->oh), 1, "oy");
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, s->ow), 1, "ox");
    LLVMValueRef o = add(e, add(e, o0, mul(e, ly.iv, s->ow)), lx.iv);
    LLVMValueRef g = NULL;
    if (s->grad) {
        g = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[0], o), "dy");
        if (!s->max)
            g = LLVMBuildFMul(e->b, g, inv, "");
    }
    LLVMBuildStore(e->b, kp_fconst(e->f32, 0.0), acc);
    LLVMBuildStore(e->b, kp_i64(e, -1), arg);
    LLVMValueRef ky0, ky1, kx0, kx1;
    taps_inside(e, ly.iv, s->sh, s->pt, s->kh, s->h, &ky0, &ky1);
    taps_inside(e, lx.iv, s->sw, s->pl, s->kw, s->w, &kx0, &kx1);
    LLVMValueRef top = LLVMBuildNSWSub(e->b, mul(e, ly.iv, s->sh), kp_i64(e, s->pt), "");
    LLVMValueRef left = LLVMBuildNSWSub(e->b, mul(e, lx.iv, s->sw), kp_i64(e, s->pl), "");
    kp_loop_begin(e, &lk, ky0, ky1, 1, "ky");
    kp_loop_begin(e, &lj, kx0, kx1, 1, "kx");
    LLVMValueRef at = add(e, add(e, in0, mul(e, add(e, top, lk.iv), s->w)), add(e, left, lj.iv));
    if (s->max) {
        /* the first tap inside is taken, a later one only if greater */
        LLVMValueRef v = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, X, at), "");
        LLVMValueRef best = LLVMBuildLoad2(e->b, e->f32, acc, "");
        LLVMValueRef prev = LLVMBuildLoad2(e->b, e->i64, arg, "");
        LLVMValueRef take = LLVMBuildOr(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, v, best, ""),
                                        LLVMBuildICmp(e->b, LLVMIntSLT, prev, kp_i64(e, 0), ""), "");
        LLVMBuildStore(e->b, LLVMBuildSelect(e->b, take, v, best, ""), acc);
        LLVMBuildStore(e->b, LLVMBuildSelect(e->b, take, at, prev, ""), arg);
    } else if (s->grad) {
        LLVMValueRef q = kp_gep(e, out, at);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, q, ""), g, ""), q);
    } else {
        LLVMValueRef v = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, X, at), "");
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, acc, ""), v, ""), acc);
    }
    kp_loop_end(e, &lj);
    kp_loop_end(e, &lk);
    LLVMValueRef r = LLVMBuildLoad2(e->b, e->f32, acc, "");
    LLVMValueRef best = LLVMBuildLoad2(e->b, e->i64, arg, "");
    LLVMValueRef some = LLVMBuildICmp(e->b, LLVMIntSGE, best, kp_i64(e, 0), "");
    if (!s->grad) {
        if (s->max)
            r = LLVMBuildSelect(e->b, some, r, kp_fconst(e->f32, 0.0), "");
        else
            r = LLVMBuildFMul(e->b, r, inv, "");
        r = kp_emit_epilogue(e, s->node, a->p, r, o, 0);
        LLVMBuildStore(e->b, r, kp_gep(e, out, o));
    } else if (s->max) {
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(e->ctx, fn, "hit");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "hit.done");
        LLVMBuildCondBr(e->b, some, then, done);
        LLVMPositionBuilderAtEnd(e->b, then);
        LLVMValueRef q = kp_gep(e, out, best);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, q, ""), g, ""), q);
        LLVMBuildBr(e->b, done);
        LLVMPositionBuilderAtEnd(e->b, done);
    }
    kp_loop_end(e, &lx);
    kp_loop_end(e, &ly);
    if (s->grad && s->node->nepi > 0)
        plane_sweep(e, a, s, in0, 0);
}

static void pool_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const KpPool *s = user;
    LLVMValueRef sums = s->sums_at >= 0 ? kp_scratch_shared_at(e, s->sums_at) : NULL;
    KpLoop lp;
    kp_loop_begin(e, &lp, a->begin, a->end, 1, "plane");
    if (kp_pool_vec_ok(e, s))
        kp_pool_vec_plane(e, a, s, lp.iv);
    else
        scalar_plane(e, a, s, lp.iv);
    if (sums)   /* the finished dx plane's sum, while it is in L1 */
        kp_emit_plane_sum_store(e, sums, a->p[s->node->nin], lp.iv, s->h * s->w);
    kp_loop_end(e, &lp);
}

/* x or dy [N,C,*,*] (in 0), x [N,C,H,W] (in 1 of a gradient) -> out, and
 * a folded bias gradient db [C] (aux 0 of a gradient): its planes' sums
 * (kp_emit_plane_sum_store), then on the calling thread db[c] += the sums of channel c
 * in sample order, so no sum depends on the thread count. */
static int emit_pool(KpEmit *e, const KpNode *n, int grad, int max, KpDiag *d)
{
    const KpValue *x = grad ? n->in[1] : n->in[0], *y = grad ? n->in[0] : n->out;
    const KpValue *bias = kp_node_folded_bias(n);
    KpPool s = {.h = x->dims[2], .w = x->dims[3], .oh = y->dims[2], .ow = y->dims[3],
                .grad = grad, .max = max, .node = n, .sums_at = -1};
    int64_t dh, dw;
    kp_conv_geometry(n, 0, &s.kh, &s.kw, &s.sh, &s.sw, &s.pt, &s.pl, &dh, &dw);
    if (bias) {
        if (bias->storage != KP_STORE_GRAD)
            return kp_error(d, "internal error: %s's folded bias gradient is no gradient slot",
                            kp_op_name(n->op));
        s.sums_at = kp_plane_sums_take(e, x->dims[1]);
    }
    /* items: planes, each reading and writing h w + oh ow elements */
    kp_emit_parallel_units(e, max ? "maxpool" : "avgpool", x->dims[1], s.h * s.w + s.oh * s.ow,
                           pool_kernel, &s);
    if (bias)
        kp_emit_plane_sums_add(e, s.sums_at, e->ptr_arg[n->nin + 1], x->dims[1], 1);
    return 0;
}

int emit_maxpool2d(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 0, 1, d);
}

int emit_avgpool2d(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 0, 0, d);
}

int emit_maxpool2d_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 1, 1, d);
}

int emit_avgpool2d_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 1, 0, d);
}
