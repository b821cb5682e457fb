/*
 * emit_conv_gemm.c — convolution as implicit GEMM (gemm.h) in NCHW, the
 * three directions of conv2d:
 *
 *               C (+)=                A                   B                 groups   k
 *   forward     y_g [F x OH*OW]       W [F x C*kh*kw]     im2col(x_g)       samples  taps
 *   grad_x      dx_g [C x H*W]        W flipped [C x F*kh*kw]  im2col(dy_g)  samples  F x taps
 *   grad_w      dW [F x C*kh*kw]      dy [F x N*OH*OW]    im2col(x)^T       1        pixels
 *
 * The weight is read in place by the forward (its rows are the taps
 * (ci, ky, kx) in PyTorch's order); im2col is never materialized: the
 * packers of emit_conv_cols.c fill each B block from the image.  The
 * input gradient at stride 1 is the forward convolution of dy, padded
 * by (kh-1)*dh - pt, with the kernel transposed and flipped,
 *     dx[c, iy, ix] = sum_{f,ky',kx'} W[f, c, kh-1-ky', kw-1-kx'] dy[f, iy - pt' + ky'*dh, ...]
 * whose A the packer below gathers per block.  The weight gradient sums
 * over every pixel of every sample (k batched), dy packed as A (rows
 * transposed in registers), im2col^T as B.
 *
 * Every element of C is one fma chain over k in order, summed by one
 * work item (gemm.h), so no result depends on the thread count.  The
 * forward and the input gradient apply bias and the node's fused
 * epilogues at the store (kp_gemm_store_out).
 */
#include "emit_conv.h"
#include "gemm_internal.h"
#include "../ir/epilogue.h"

static LLVMTypeRef ivec(KpEmit *e)
{
    return LLVMVectorType(e->i32, (unsigned)e->vw);
}

/* Lanes q < k (an i64, any value) as <vw x i1>. */
static LLVMValueRef lanes_below(KpEmit *e, LLVMValueRef k)
{
    LLVMValueRef elts[64];
    for (int i = 0; i < e->vw; i++)
        elts[i] = kp_i32(e, i);
    LLVMValueRef t = LLVMBuildTrunc(e->b, kp_min_i64(e, k, kp_i64(e, e->vw)), e->i32, "");
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(ivec(e)), t, kp_i32(e, 0), "");
    v = LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(ivec(e)), LLVMConstNull(ivec(e)), "");
    return LLVMBuildICmp(e->b, LLVMIntSLT, LLVMConstVector(elts, (unsigned)e->vw), v, "");
}

static void store_lanes(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef at, int lanes)
{
    if (lanes < e->vw)
        kp_store_vec_masked(e, v, p, at, lanes);
    else
        kp_store_vec(e, v, p, at);
}

/* --- grad_x's A: W [F,C,kh,kw] transposed and flipped ------------------
 * A[c, f*khkw + t] = W[f, c, khkw-1-t]; lines are c.  Per k and group of
 * vw lines, one gather (the lines are khkw floats apart in W). */
typedef struct WFlip {
    int arg;
    int64_t c, khkw;
} WFlip;

static void pack_wflip(KpEmit *e, const KpGemmPackArgs *p, void *user)
{
    const WFlip *s = user;
    LLVMValueRef W = p->ka->p[s->arg];
    LLVMValueRef panels = LLVMBuildUDiv(e->b, kp_iaddc(e, p->nl, p->w - 1), kp_i64(e, p->w), "");
    LLVMValueRef idx[64];
    for (int i = 0; i < e->vw; i++)
        idx[i] = kp_i32(e, (int32_t)(i * s->khkw));
    LLVMValueRef lanes = LLVMConstVector(idx, (unsigned)e->vw);
    KpLoop lk, lt;
    kp_loop_begin(e, &lk, kp_i64(e, 0), p->kc, 1, "wk");
    LLVMValueRef k = kp_iadd(e, p->k0, lk.iv);
    LLVMValueRef f = LLVMBuildUDiv(e->b, k, kp_i64(e, s->khkw), "");
    LLVMValueRef t = LLVMBuildURem(e->b, k, kp_i64(e, s->khkw), "");
    LLVMValueRef wf = kp_iadd(e, kp_imulc(e, f, s->c * s->khkw), LLVMBuildNSWSub(e->b, kp_i64(e, s->khkw - 1), t, ""));
    kp_loop_begin(e, &lt, kp_i64(e, 0), panels, 1, "wt");
    for (int ib = 0; ib < p->w; ib += e->vw) {
        LLVMValueRef r0 = kp_iaddc(e, kp_imulc(e, lt.iv, p->w), ib);      /* first line, relative */
        LLVMValueRef rows = LLVMBuildNSWSub(e->b, p->nl, r0, "");
        int width = p->w - ib < e->vw ? p->w - ib : e->vw;
        LLVMValueRef mask = lanes_below(e, kp_min_i64(e, rows, kp_i64(e, width)));
        LLVMValueRef at = kp_iadd(e, wf, kp_imulc(e, kp_iadd(e, p->l0, r0), s->khkw));
        LLVMValueRef base = LLVMBuildGEP2(e->b, e->f32, W, &at, 1, "");
        LLVMValueRef ptrs = LLVMBuildGEP2(e->b, e->f32, base, &lanes, 1, "");
        LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
        LLVMValueRef args[4] = {ptrs, kp_i32(e, 4), mask, kp_fconst(e->vec, 0.0)};
        LLVMValueRef v = kp_intrinsic(e, "llvm.masked.gather", over, 2, args, 4);
        LLVMValueRef dst = kp_iadd(e, LLVMBuildNSWMul(e->b, lt.iv, LLVMBuildNSWMul(e->b, p->kc, kp_i64(e, p->w), ""), ""),
                               kp_iaddc(e, kp_imulc(e, lk.iv, p->w), ib));
        store_lanes(e, v, p->dst, dst, width);
    }
    kp_gemm_loop_end(e, &lt);
    kp_gemm_loop_end(e, &lk);
}

/* --- the three GEMMs ---------------------------------------------------- */

static KpConvCols cols_of(const KpNode *n, int arg, const KpValue *x, const KpValue *y)
{
    KpConvCols s = {.arg = arg, .c = x->dims[1], .h = x->dims[2], .w = x->dims[3],
                    .oh = y->dims[2], .ow = y->dims[3]};
    kp_conv_geometry(n, 1, &s.kh, &s.kw, &s.sh, &s.sw, &s.pt, &s.pl, &s.dh, &s.dw);
    return s;
}

/* x [N,C,H,W], weight [F,C,kh,kw], bias [F] (pointer bias_arg, -1: none)
 * -> y [N,F,OH,OW]: conv2d, and conv2d_transpose_grad_x (x = dy, its
 * weight [C,F,kh,kw] read the same way, no bias) */
int kp_emit_conv_gather_gemm(KpEmit *e, const KpNode *n, int bias_arg, KpDiag *d)
{
    const KpValue *y = n->out;
    KpConvCols cols = cols_of(n, 0, n->in[0], y);
    int64_t f = y->dims[1], npix = y->dims[2] * y->dims[3], k = cols.c * cols.kh * cols.kw;
    KpGemmOut o = {
        .node = n,
        .c = {.arg = n->nin, .rs = npix, .cs = 1, .gs = f * npix},
        .bias_arg = bias_arg,
        .bias_per_row = true,
    };
    KpGemm g = {
        .name = "conv",
        .m = {f, false}, .n = {npix, false}, .k = {k, false}, .groups = {1, true},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = n->attr.wstride > 0 ? n->attr.wstride : k, .cs = 1}},
        .b = {.source = KP_GEMM_CUSTOM, .pack = kp_conv_pack_cols, .pack_user = &cols},
        .c = o.c,
        .accumulate = e->accumulate,
        .store = kp_gemm_store_out,
        .store_user = &o,
    };
    return kp_gemm_emit(e, &g, d);
}

/* stride 1: dy [N,F,OH,OW], weight [F,C,kh,kw], x (shape) -> dx [N,C,H,W] */
static int grad_x_gemm(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *dx = n->out;
    KpConvCols cols = cols_of(n, 0, dy, dx);
    cols.pt = (cols.kh - 1) * cols.dh - cols.pt;
    cols.pl = (cols.kw - 1) * cols.dw - cols.pl;
    int64_t c = dx->dims[1], npix = dx->dims[2] * dx->dims[3], khkw = cols.kh * cols.kw;
    WFlip wf = {.arg = 1, .c = c, .khkw = khkw};
    KpGemmOut o = {.node = n, .c = {.arg = n->nin, .rs = npix, .cs = 1, .gs = c * npix}, .bias_arg = -1};
    KpGemm g = {
        .name = "conv_grad_x",
        .m = {c, false}, .n = {npix, false}, .k = {cols.c * khkw, false}, .groups = {1, true},
        .a = {.source = KP_GEMM_CUSTOM, .pack = pack_wflip, .pack_user = &wf},
        .b = {.source = KP_GEMM_CUSTOM, .pack = kp_conv_pack_cols, .pack_user = &cols},
        .c = o.c,
        .accumulate = e->accumulate,
        .store = kp_gemm_store_out,
        .store_user = &o,
    };
    return kp_gemm_emit(e, &g, d);
}

/* --- by shape: the GEMMs, or the direct kernels -------------------------- */

/* The part of its lanes the direct kernel (emit_conv.c) fills on rows of
 * ow outputs: a row is whole vectors, the last one partial. */
static double direct_lanes(int64_t ow, int vw)
{
    return (double)ow / (double)((ow + vw - 1) / vw * vw);
}

/* At stride 1, whether the GEMM beats the direct kernel for a C of `rows`
 * rows and output rows of ow: the GEMM loses about 10/rows of its time to
 * packing B (each packed float serves `rows` rows), the direct kernel the
 * lanes past the end of each row (measured, docs/kernels-conv.md). */
static bool gemm_wins(int64_t rows, int64_t ow, int vw)
{
    return direct_lanes(ow, vw) * (1.0 + 10.0 / (double)rows) < 0.9;
}

static bool strided(const KpNode *n)
{
    return n->attr.stride[0] > 1 || n->attr.stride[1] > 1;
}

/* The forward: at strides above 1 the GEMM (the direct kernel gathers
 * there) unless the direct kernel reads small images from the input's
 * phases (emit_conv_flat.c), else by gemm_wins over the filters. */
int emit_conv2d(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *y = n->out;
    if (kp_emit_conv2d_winograd(e, n, false))
        return 0;
    KpConvMap m = kp_conv_forward_map(n);
    if (strided(n) ? !kp_conv_flat_taken(&m, e->vw) : gemm_wins(y->dims[1], y->dims[3], e->vw))
        return kp_emit_conv_gather_gemm(e, n, kp_node_op_nin(n) >= 3 && n->in[2] ? 2 : -1, d);
    kp_emit_conv2d_direct(e, n);
    return 0;
}

/* The input gradient: for ragged dx rows of at most a vector the kernel
 * with lanes along dx's channels (emit_conv_grad_x_outer.c), since
 * Winograd's tiles would fill half a vector of a row or less (keras_cnn's
 * conv2d2: 7 tiles of 16 lanes; the channel-lane kernel ran 1.3x faster
 * on one thread, 1.7x on two, docs/kernels-conv.md); else Winograd, else
 * that kernel for other ragged rows; else at stride 1 by gemm_wins over
 * the input channels; a larger stride is split into phases by the direct
 * kernel. */
int emit_conv2d_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dx = n->out;
    bool narrow = dx->dims[3] <= e->vw;
    if ((narrow && kp_emit_conv2d_grad_x_outer(e, n)) || kp_emit_conv2d_winograd(e, n, true) ||
        (!narrow && kp_emit_conv2d_grad_x_outer(e, n)))
        return 0;
    if (!strided(n) && gemm_wins(dx->dims[1], dx->dims[3], e->vw))
        return grad_x_gemm(e, n, d);
    kp_emit_conv2d_grad_x_direct(e, n);
    return 0;
}
