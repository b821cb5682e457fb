/*
 * emit_conv_cols.c — im2col without the copy: the packers that fill an
 * implicit-GEMM convolution's B blocks straight from an NCHW image
 * (emit_conv.h, KpConvCols).
 *
 * The unit of work is a vector of vw consecutive pixels j (output
 * positions, numbered over all samples).  Those pixels lie on at most
 * S = 1 + ceil((vw-1)/ow) output rows, each row a run of lanes, a
 * segment:
 *
 *     ow = 24, vw = 16, j = 16:   lanes  0 ..  7  row 0, ox 16..23
 *                                  lanes  8 .. 15  row 1, ox  0.. 7
 *
 * For a tap (ky, kx) a segment's lanes read one input row at columns
 * sw*q + e (q the lane): a masked load (stride 1) or a masked gather,
 * the mask keeping the segment's lanes whose column and row fall inside
 * the image (the padding reads as zero).  The masks and addresses depend
 * on the pixels and the tap only, not on the channel, so they are made
 * once per (vector, tap) and reused for every channel ci:
 *
 *   kp_conv_pack_cols (B = im2col [taps x pixels], lines are pixels):
 *     for each 16-pixel panel, each vector of it, each tap:
 *         segments' masks and row addresses
 *         for each channel ci with tap ci*kh*kw + (ky*kw + kx) in the block:
 *             S masked loads -> one vector of the panel's row
 *
 *   kp_conv_pack_cols_t (B = im2col^T [pixels x taps], lines are taps):
 *     for each vector of vw pixels:
 *         every tap's masks and addresses into a small table
 *         for each group of vw lines (taps): vw vectors of pixels,
 *             transposed in registers into vw vectors of taps
 */
#include "emit_conv.h"
#include "gemm_internal.h"

#include <stdlib.h>

enum { MAXSEG = 16 };

typedef struct Segs {
    int n;
    LLVMValueRef g[MAXSEG], oy[MAXSEG];     /* sample, output row (i64) */
    LLVMValueRef qa[MAXSEG], qb[MAXSEG];    /* lanes [qa, qb) (i64) */
    LLVMValueRef ox[MAXSEG];                /* output column of lane qa */
} Segs;

/* One segment at one tap: X index of channel 0 for lane 0's column, and
 * the lanes that read. */
typedef struct Read {
    LLVMValueRef off, mask;
    LLVMValueRef src[2];        /* stride 2: the source lanes of the two loads */
} Read;

static LLVMValueRef sub(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWSub(e->b, a, b, "");
}

static LLVMValueRef udivc(KpEmit *e, LLVMValueRef a, int64_t c)
{
    return c == 1 ? a : LLVMBuildUDiv(e->b, a, kp_i64(e, c), "");
}

static LLVMValueRef uremc(KpEmit *e, LLVMValueRef a, int64_t c)
{
    return c == 1 ? kp_i64(e, 0) : LLVMBuildURem(e->b, a, kp_i64(e, c), "");
}

static LLVMValueRef smax(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSGT, a, b, ""), a, b, "");
}

static LLVMTypeRef ivec(KpEmit *e)
{
    return LLVMVectorType(e->i32, (unsigned)e->vw);
}

/* <vw x i32> of the i64 x */
static LLVMValueRef splat_i32(KpEmit *e, LLVMValueRef x)
{
    LLVMValueRef t = LLVMBuildTrunc(e->b, x, e->i32, "");
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(ivec(e)), t, kp_i32(e, 0), "");
    return LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(ivec(e)), LLVMConstNull(ivec(e)), "");
}

/* <0, step, 2*step, ...> as <vw x i32> */
static LLVMValueRef iota(KpEmit *e, int64_t step)
{
    LLVMValueRef elts[64];
    for (int i = 0; i < e->vw; i++)
        elts[i] = kp_i32(e, (int32_t)(i * step));
    return LLVMConstVector(elts, (unsigned)e->vw);
}

/* Lanes q in [lo, hi) (i64 values) as <vw x i1>. */
static LLVMValueRef lanes_in(KpEmit *e, LLVMValueRef lo, LLVMValueRef hi)
{
    LLVMValueRef q = iota(e, 1);
    return LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, q, splat_i32(e, lo), ""),
                        LLVMBuildICmp(e->b, LLVMIntSLT, q, splat_i32(e, hi), ""), "");
}

/* Segments per vector.  Every caller's vectors start at a pixel that is
 * a multiple of vw within the image's grid (a block starts at a multiple
 * of the panel or, in emit_conv_grad_w.c, of vw, and a sample's pixels
 * are a multiple of vw when ow is), so with ow a multiple of vw a vector
 * never crosses a row: one masked load per packed vector instead of two. */
static int seg_count(const KpConvCols *s, int vw)
{
    if (s->ow % vw == 0)
        return 1;
    int64_t n = 1 + (vw - 1 + s->ow - 1) / s->ow;
    return (int)(n < vw ? n : vw);
}

/* The segments of the vector whose lane 0 is pixel j; lanes from lim on
 * (lim an i64, maybe <= 0) are not pixels and read nothing. */
static void segments(KpEmit *e, const KpConvCols *s, LLVMValueRef j, LLVMValueRef lim, Segs *sg)
{
    sg->n = seg_count(s, e->vw);
    LLVMValueRef l = kp_min_i64(e, smax(e, lim, kp_i64(e, 0)), kp_i64(e, e->vw));
    LLVMValueRef row = udivc(e, j, s->ow), ox0 = uremc(e, j, s->ow);
    for (int k = 0; k < sg->n; k++) {
        LLVMValueRef r = kp_iaddc(e, row, k);
        sg->g[k] = udivc(e, r, s->oh);
        sg->oy[k] = uremc(e, r, s->oh);
        sg->qa[k] = k == 0 ? kp_i64(e, 0) : kp_min_i64(e, l, sub(e, kp_i64(e, k * s->ow), ox0));
        sg->qb[k] = kp_min_i64(e, l, sub(e, kp_i64(e, (k + 1) * s->ow), ox0));
        sg->ox[k] = k == 0 ? ox0 : kp_i64(e, 0);
    }
}

/* Segment k of sg at tap (ky, kx): lane q reads column sw*q + e0 of
 * input row iy. */
static Read seg_read(KpEmit *e, const KpConvCols *s, const Segs *sg, int k, LLVMValueRef ky,
                     LLVMValueRef kx)
{
    LLVMValueRef iy = kp_iadd(e, kp_iaddc(e, kp_imulc(e, sg->oy[k], s->sh), -s->pt), kp_imulc(e, ky, s->dh));
    LLVMValueRef row_in = LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, s->h), "");
    LLVMValueRef e0 = kp_iadd(e, kp_iaddc(e, kp_imulc(e, sub(e, sg->ox[k], sg->qa[k]), s->sw), -s->pl),
                          kp_imulc(e, kx, s->dw));
    LLVMValueRef ix = LLVMBuildAdd(e->b, splat_i32(e, e0), iota(e, s->sw), "");
    LLVMValueRef col_in = LLVMBuildICmp(e->b, LLVMIntULT, ix, splat_i32(e, kp_i64(e, s->w)), "");
    LLVMValueRef mask = LLVMBuildAnd(e->b, lanes_in(e, sg->qa[k], sg->qb[k]), col_in, "");
    Read r;
    LLVMValueRef none = LLVMConstNull(LLVMTypeOf(mask));
    r.mask = LLVMBuildSelect(e->b, row_in, mask, none, "");
    r.off = kp_iadd(e, kp_iadd(e, kp_imulc(e, sg->g[k], s->c * s->h * s->w), kp_imulc(e, iy, s->w)), e0);
    if (s->sw == 2) {
        /* source float i of load h (columns e0 + h*vw + i) is lane (h*vw + i)/2's, if even */
        for (int h = 0; h < 2; h++) {
            LLVMValueRef at[64], par[64];
            for (int i = 0; i < e->vw; i++) {
                at[i] = kp_i32(e, (h * e->vw + i) / 2);
                par[i] = LLVMConstInt(e->i1, (i & 1) == 0, 0);
            }
            LLVMValueRef lane = LLVMConstVector(at, (unsigned)e->vw);
            LLVMValueRef in = LLVMBuildAnd(e->b,
                                           LLVMBuildICmp(e->b, LLVMIntSGE, lane, splat_i32(e, sg->qa[k]), ""),
                                           LLVMBuildICmp(e->b, LLVMIntSLT, lane, splat_i32(e, sg->qb[k]), ""), "");
            LLVMValueRef col = LLVMBuildAdd(e->b, splat_i32(e, e0), iota(e, 1), "");
            col = LLVMBuildAdd(e->b, col, splat_i32(e, kp_i64(e, h * e->vw)), "");
            in = LLVMBuildAnd(e->b, in, LLVMBuildICmp(e->b, LLVMIntULT, col, splat_i32(e, kp_i64(e, s->w)), ""), "");
            in = LLVMBuildAnd(e->b, in, LLVMConstVector(par, (unsigned)e->vw), "");
            r.src[h] = LLVMBuildSelect(e->b, row_in, in, none, "");
        }
    }
    return r;
}

/* The pixels of the segments' reads r[0..n) at channel offset choff:
 * masked loads (stride 1; stride 2: two loads and the even floats of
 * both) or gathers into one vector, zero elsewhere. */
static LLVMValueRef read_px(KpEmit *e, const KpConvCols *s, LLVMValueRef X, const Read *r, int n,
                            LLVMValueRef choff)
{
    LLVMValueRef v = kp_fconst(e->vec, 0.0);
    for (int k = 0; k < n; k++) {
        LLVMValueRef at = kp_iadd(e, r[k].off, choff);
        /* masked-off lanes may lie outside X: a plain GEP */
        LLVMValueRef ptr = LLVMBuildGEP2(e->b, e->f32, X, &at, 1, "");
        if (s->sw == 1) {
            LLVMTypeRef over[2] = {e->vec, e->ptr};
            LLVMValueRef args[4] = {ptr, kp_i32(e, 4), r[k].mask, v};
            v = kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
        } else if (s->sw == 2) {
            LLVMValueRef half[2], even[64];
            for (int h = 0; h < 2; h++) {
                LLVMValueRef hp = h ? LLVMBuildGEP2(e->b, e->f32, ptr, (LLVMValueRef[]){kp_i64(e, e->vw)}, 1, "")
                                    : ptr;
                LLVMTypeRef over[2] = {e->vec, e->ptr};
                LLVMValueRef args[4] = {hp, kp_i32(e, 4), r[k].src[h], kp_fconst(e->vec, 0.0)};
                half[h] = kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
            }
            for (int i = 0; i < e->vw; i++)
                even[i] = kp_i32(e, 2 * i);
            LLVMValueRef x = LLVMBuildShuffleVector(e->b, half[0], half[1],
                                                    LLVMConstVector(even, (unsigned)e->vw), "");
            v = LLVMBuildSelect(e->b, r[k].mask, x, v, "");
        } else {
            LLVMValueRef idx = iota(e, s->sw);
            LLVMValueRef ptrs = LLVMBuildGEP2(e->b, e->f32, ptr, &idx, 1, "");
            LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
            LLVMValueRef args[4] = {ptrs, kp_i32(e, 4), r[k].mask, v};
            v = kp_intrinsic(e, "llvm.masked.gather", over, 2, args, 4);
        }
    }
    return v;
}

static LLVMValueRef ceil_div(KpEmit *e, LLVMValueRef a, int64_t b)
{
    return udivc(e, kp_iaddc(e, a, b - 1), b);
}

/* Where a block goes: pixel l, tap k (both relative) at
 * dst[(l / 16) * panel + k * kstride + l % 16]. */
typedef struct Dst {
    LLVMValueRef dst, panel, kstride;
    LLVMValueRef k0, kc;
} Dst;

/* Channel ci's taps of one vector of pixels, whose tap 0 goes to at0 +
 * (ci*khkw - k0) * kstride; reads r[tap][seg]; guard: store only taps
 * in [k0, k0 + kc). */
static void channel_taps(KpEmit *e, const KpConvCols *s, LLVMValueRef X, const Dst *d,
                         Read (*r)[MAXSEG], int nseg, LLVMValueRef ci, LLVMValueRef at0, bool guard)
{
    int64_t khkw = s->kh * s->kw, hw = s->h * s->w;
    LLVMValueRef choff = kp_imulc(e, ci, hw);
    LLVMValueRef k0 = sub(e, kp_imulc(e, ci, khkw), d->k0);       /* tap 0's k in the block */
    for (int64_t tap = 0; tap < khkw; tap++) {
        LLVMValueRef kk = kp_iaddc(e, k0, tap);
        LLVMBasicBlockRef join = NULL;
        if (guard) {
            LLVMValueRef in = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, kk, kp_i64(e, 0), ""),
                                           LLVMBuildICmp(e->b, LLVMIntSLT, kk, d->kc, ""), "");
            LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
            LLVMBasicBlockRef st = LLVMAppendBasicBlockInContext(e->ctx, fn, "tap.in");
            join = LLVMAppendBasicBlockInContext(e->ctx, fn, "tap.next");
            LLVMBuildCondBr(e->b, in, st, join);
            LLVMPositionBuilderAtEnd(e->b, st);
        }
        LLVMValueRef x = read_px(e, s, X, r[tap], nseg, choff);
        kp_store_vec(e, x, d->dst, kp_iadd(e, at0, LLVMBuildNSWMul(e->b, kk, d->kstride, "")));
        if (join) {
            LLVMBuildBr(e->b, join);
            LLVMPositionBuilderAtEnd(e->b, join);
        }
    }
}

void kp_conv_cols(KpEmit *e, const KpConvCols *s, LLVMValueRef X, LLVMValueRef dst, LLVMValueRef j,
                  LLVMValueRef nl, LLVMValueRef k0, LLVMValueRef kc, LLVMValueRef panel,
                  LLVMValueRef kstride)
{
    int64_t khkw = s->kh * s->kw;
    Dst d = {.dst = dst, .panel = panel, .kstride = kstride, .k0 = k0, .kc = kc};
    LLVMValueRef first = udivc(e, k0, khkw);
    LLVMValueRef last = udivc(e, kp_iaddc(e, kp_iadd(e, k0, kc), -1), khkw);
    KpLoop lt, lc;
    kp_loop_begin(e, &lt, kp_i64(e, 0), ceil_div(e, nl, KP_GEMM_PANEL), 1, "ct");
    for (int v = 0; v < KP_GEMM_PANEL; v += e->vw) {
        LLVMValueRef q0 = kp_iaddc(e, kp_imulc(e, lt.iv, KP_GEMM_PANEL), v);
        Segs sg;
        segments(e, s, kp_iadd(e, j, q0), sub(e, nl, q0), &sg);
        Read (*r)[MAXSEG] = calloc((size_t)khkw, sizeof *r);
        for (int64_t tap = 0; tap < khkw; tap++)
            for (int k = 0; k < sg.n; k++)
                r[tap][k] = seg_read(e, s, &sg, k, kp_i64(e, tap / s->kw), kp_i64(e, tap % s->kw));
        LLVMValueRef at0 = kp_iadd(e, LLVMBuildNSWMul(e->b, lt.iv, panel, ""), kp_i64(e, v));
        kp_loop_begin(e, &lc, first, kp_iaddc(e, last, 1), 1, "ci");
        LLVMValueRef lo = kp_imulc(e, lc.iv, khkw);
        LLVMValueRef full = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, lo, k0, ""),
                                         LLVMBuildICmp(e->b, LLVMIntSLE, kp_iaddc(e, lo, khkw),
                                                       kp_iadd(e, k0, kc), ""), "");
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bf = LLVMAppendBasicBlockInContext(e->ctx, fn, "ch.full");
        LLVMBasicBlockRef bp = LLVMAppendBasicBlockInContext(e->ctx, fn, "ch.part");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "ch.done");
        LLVMBuildCondBr(e->b, full, bf, bp);
        LLVMPositionBuilderAtEnd(e->b, bf);
        channel_taps(e, s, X, &d, r, sg.n, lc.iv, at0, false);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, bp);
        channel_taps(e, s, X, &d, r, sg.n, lc.iv, at0, true);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
        kp_gemm_loop_end(e, &lc);
        free(r);
    }
    kp_gemm_loop_end(e, &lt);
}

void kp_conv_pack_cols(KpEmit *e, const KpGemmPackArgs *p, void *user)
{
    const KpConvCols *s = user;
    LLVMValueRef j = kp_iadd(e, kp_imulc(e, p->g, s->oh * s->ow), p->l0);
    kp_conv_cols(e, s, p->ka->p[s->arg], p->dst, j, p->nl, p->k0, p->kc,
                 LLVMBuildNSWMul(e->b, p->kc, kp_i64(e, p->w), ""), kp_i64(e, p->w));
}
