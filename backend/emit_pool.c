/*
 * emit_pool.c — max and average pooling and their gradients, NCHW, the
 * window kh x kw at stride (sh, sw) from the top/left padding (pt, pl):
 *
 *   maxpool2d       y[oy,ox] = max over the window's inside positions
 *                   (the first maximum wins; padding never does)
 *   maxpool2d_grad  dx = 0; dx[first argmax of each window] += dy[oy,ox]
 *   avgpool2d       y[oy,ox] = (sum over the inside positions) / (kh*kw)
 *                   (the divisor counts the padding, PyTorch's default)
 *   avgpool2d_grad  dx = 0; dx[each inside position] += dy[oy,ox] / (kh*kw)
 *
 * Items are (n, c) planes; a plane is done by one thread in (oy, ox, ki,
 * kj) order, so overlapping windows add up the same way every time.  The
 * node's fused epilogues (a relu_grad after a pooling gradient, say) apply
 * at the store of a pooled value, and for a gradient once its plane is
 * complete, in a second sweep over the plane.
 */
#include <math.h>

#include "../ir/epilogue.h"
#include "emit_conv.h"

typedef struct Pool {
    int64_t h, w, oh, ow, kh, kw, sh, sw, pt, pl;
    int ix, idy, iout;           /* kernel pointers: x, dy (-1: none), the output */
    int grad, max;
} Pool;

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef add(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

/* if (0 <= v < lim) {...}: returns the join block, the builder inside */
static LLVMBasicBlockRef inside(KpEmit *e, LLVMValueRef v, int64_t lim)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(e->ctx, fn, "in");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "in.done");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, v, kp_i64(e, lim), ""), then, done);
    LLVMPositionBuilderAtEnd(e->b, then);
    return done;
}

static void close_block(KpEmit *e, LLVMBasicBlockRef done)
{
    LLVMBuildBr(e->b, done);
    LLVMPositionBuilderAtEnd(e->b, done);
}

static void pool_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Pool *s = user;
    LLVMValueRef X = s->ix >= 0 ? a->p[s->ix] : NULL, out = a->p[s->iout];
    LLVMValueRef acc = kp_alloca(e, e->f32, "acc"), arg = kp_alloca(e, e->i64, "arg");
    LLVMValueRef div = kp_fconst(e->f32, (double)(s->kh * s->kw));
    KpLoop lp, ly, lx, lk, lj, lz;
    kp_loop_begin(e, &lp, a->begin, a->end, 1, "plane");
    LLVMValueRef in0 = mul(e, lp.iv, s->h * s->w), out0 = mul(e, lp.iv, s->oh * s->ow);
    LLVMValueRef dx0 = in0;
    if (s->grad) {
        kp_loop_begin(e, &lz, kp_i64(e, 0), kp_i64(e, s->h * s->w), 1, "zero");
        LLVMBuildStore(e->b, kp_fconst(e->f32, 0.0), kp_gep(e, out, add(e, dx0, lz.iv)));
        kp_loop_end(e, &lz);
    }
    kp_loop_begin(e, &ly, kp_i64(e, 0), kp_i64(e, s->oh), 1, "oy");
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, s->ow), 1, "ox");
    LLVMValueRef o = add(e, add(e, out0, mul(e, ly.iv, s->ow)), lx.iv);
    LLVMValueRef g = NULL;
    if (s->grad) {
        g = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[s->idy], o), "dy");
        if (!s->max)
            g = LLVMBuildFDiv(e->b, g, div, "");
    }
    LLVMBuildStore(e->b, kp_fconst(e->f32, s->max ? -INFINITY : 0.0), acc);
    LLVMBuildStore(e->b, kp_i64(e, -1), arg);
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, s->kh), 1, "ki");
    LLVMValueRef iy = add(e, LLVMBuildNSWSub(e->b, mul(e, ly.iv, s->sh), kp_i64(e, s->pt), ""), lk.iv);
    LLVMBasicBlockRef rowdone = inside(e, iy, s->h);
    kp_loop_begin(e, &lj, kp_i64(e, 0), kp_i64(e, s->kw), 1, "kj");
    LLVMValueRef ix = add(e, LLVMBuildNSWSub(e->b, mul(e, lx.iv, s->sw), kp_i64(e, s->pl), ""), lj.iv);
    LLVMBasicBlockRef coldone = inside(e, ix, s->w);
    LLVMValueRef at = add(e, add(e, in0, mul(e, iy, s->w)), ix);
    if (s->max) {
        LLVMValueRef v = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, X, at), "");
        LLVMValueRef best = LLVMBuildLoad2(e->b, e->f32, acc, "");
        LLVMValueRef gt = LLVMBuildFCmp(e->b, LLVMRealOGT, v, best, "");
        LLVMBuildStore(e->b, LLVMBuildSelect(e->b, gt, v, best, ""), acc);
        LLVMBuildStore(e->b, LLVMBuildSelect(e->b, gt, at, LLVMBuildLoad2(e->b, e->i64, arg, ""), ""), arg);
    } else if (s->grad) {
        LLVMValueRef p = kp_gep(e, out, at);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, p, ""), g, ""), p);
    } else {
        LLVMValueRef v = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, X, at), "");
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, acc, ""), v, ""), acc);
    }
    close_block(e, coldone);
    kp_loop_end(e, &lj);
    close_block(e, rowdone);
    kp_loop_end(e, &lk);
    if (!s->grad) {
        LLVMValueRef r = LLVMBuildLoad2(e->b, e->f32, acc, "");
        if (!s->max)
            r = LLVMBuildFDiv(e->b, r, div, "");
        r = kp_emit_epilogue(e, e->node, a->p, r, o, 0);
        LLVMBuildStore(e->b, r, kp_gep(e, out, o));
    } else if (s->max) {
        LLVMValueRef best = LLVMBuildLoad2(e->b, e->i64, arg, "");
        LLVMBasicBlockRef done = inside(e, LLVMBuildNSWSub(e->b, best, in0, ""), s->h * s->w);
        LLVMValueRef p = kp_gep(e, out, best);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, p, ""), g, ""), p);
        close_block(e, done);
    }
    kp_loop_end(e, &lx);
    kp_loop_end(e, &ly);
    if (s->grad && e->node->nepi > 0) {
        kp_loop_begin(e, &lz, kp_i64(e, 0), kp_i64(e, s->h * s->w), 1, "epi");
        LLVMValueRef i = add(e, dx0, lz.iv);
        LLVMValueRef v = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, out, i), "");
        LLVMBuildStore(e->b, kp_emit_epilogue(e, e->node, a->p, v, i, 0), kp_gep(e, out, i));
        kp_loop_end(e, &lz);
    }
    kp_loop_end(e, &lp);
}

/* x or dy [N,C,*,*] (in 0), x [N,C,H,W] (in 1 of a gradient) -> out */
static int emit_pool(KpEmit *e, const KpNode *n, int grad, int max)
{
    const KpValue *x = grad ? n->in[1] : n->in[0], *y = grad ? n->in[0] : n->out;
    Pool s = {.h = x->dims[2], .w = x->dims[3], .oh = y->dims[2], .ow = y->dims[3],
              .ix = grad ? (max ? 1 : -1) : 0, .idy = grad ? 0 : -1, .iout = n->nin,
              .grad = grad, .max = max};
    int64_t dh, dw;
    kp_conv_geometry(n, 0, &s.kh, &s.kw, &s.sh, &s.sw, &s.pt, &s.pl, &dh, &dw);
    int64_t c = x->dims[1];
    LLVMValueRef planes = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, c), "planes");
    int64_t work = e->g->max_batch * c * s.oh * s.ow * s.kh * s.kw;
    kp_emit_parallel(e, max ? "maxpool" : "avgpool", kp_i64(e, 0), planes, work >= 65536,
                     pool_kernel, &s);
    return 0;
}

int emit_maxpool2d(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 0, 1);
}

int emit_avgpool2d(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 0, 0);
}

int emit_maxpool2d_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 1, 1);
}

int emit_avgpool2d_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_pool(e, n, 1, 0);
}
