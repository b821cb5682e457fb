/*
 * emit_conv.h — what the convolution emitters share (internal to backend/).
 *
 * Every convolution-shaped op is one of two sums over a window, NCHW:
 *
 *   gather form (transposed = 0): conv2d, conv2d_transpose_grad_x
 *       Y[n,co,oy,ox] = bias[co] + sum_{ci,ki,kj} X[n,ci,iy,ix] W[w(co,ci,ki,kj)]
 *       iy = oy*sh - pt + ki*dh,  ix = ox*sw - pl + kj*dw
 *   scatter form (transposed = 1): conv2d_transpose, conv2d_grad_x
 *       the same sum over the (iy, ix) with oy = iy*sh - pt + ki*dh
 *
 * X positions outside [0,h) x [0,w) read as zero (padding).  The weight
 * index is w0 + co*wco + ci*wci + ki*wki + kj*wkj, so one kernel serves
 * [F,C,kh,kw] and [C,F,kh,kw] weights.  A scatter form is sh x sw gather
 * forms, one per output phase (oy mod sh, ox mod sw), each with stride 1
 * and part of the kernel, flipped (emit_conv_phase.c).
 */
#ifndef KP_EMIT_CONV_H
#define KP_EMIT_CONV_H

#include "gemm.h"

typedef struct KpConvMap {
    int64_t cin, h, w;          /* X, per sample */
    int64_t cout, oh, ow;       /* Y, per sample */
    int64_t kh, kw, sh, sw, pt, pl, dh, dw;
    int64_t w0, wco, wci, wki, wkj;
    int ix, iw, ib, iy;         /* kernel pointer indices of X, W, bias (-1: none), Y */
    int idy;                    /* a weight gradient's: dy's (X is the image, Y dW) */
    int transposed;
} KpConvMap;

/* Emit Y = the sum of m into the node function: the work split over
 * threads with each Y element summed by one thread in a fixed order. */
void kp_emit_conv(KpEmit *e, const KpConvMap *m);
/* The scatter form m as m->sh * m->sw gather forms: ph[py * m->sw + px]
 * computes the outputs (py + sh*qy, px + sw*qx) of m, with (qy, qx) its
 * output positions (ph->oh, ph->ow of them, maybe 0), stride 1 and the
 * taps of m that reach that phase (ph->kh, ph->kw, maybe 0).  The caller
 * places the outputs. */
void kp_conv_phases(const KpConvMap *m, KpConvMap *ph);

/* The window geometry of a conv or pool node: kernel, stride, dilation
 * (1 for pools) and top/left padding from n->attr. */
void kp_conv_geometry(const KpNode *n, int dilated, int64_t *kh, int64_t *kw, int64_t *sh,
                      int64_t *sw, int64_t *pt, int64_t *pl, int64_t *dh, int64_t *dw);

/* Lanes l < lanes of X[row + ix0 + l*sw] as a <vw x float> (the others
 * zero).  With edge set, lanes whose ix0 + l*sw falls outside [0, width)
 * read zero too (a runtime mask); otherwise all the lanes must be inside. */
LLVMValueRef kp_conv_load(KpEmit *e, LLVMValueRef X, LLVMValueRef row, LLVMValueRef ix0,
                          int64_t sw, int64_t width, int lanes, int edge);

/* The largest divisor of c that is at most cap (at least 1). */
int64_t kp_divisor_upto(int64_t c, int64_t cap);

/* Whether the direct kernel (kp_emit_conv) reads map m's (phase) images
 * as one long row each, lanes along the pixels of a whole small image,
 * at vw floats a vector (emit_conv_flat.c). */
bool kp_conv_flat_taken(const KpConvMap *m, int vw);

/* The direct kernels of conv2d's forward and input gradient (emit_conv.c),
 * for the shapes emit_conv_gemm.c leaves to them. */
void kp_emit_conv2d_direct(KpEmit *e, const KpNode *n);
/* conv2d's gather form: x [N,C,H,W], weight [F,C,kh,kw], bias [F] -> y [N,F,OH,OW] */
KpConvMap kp_conv_forward_map(const KpNode *n);

/* The gather form y = conv(x = in[0], W = in[1]) + bias (pointer
 * bias_arg, -1: none) as implicit GEMM (emit_conv_gemm.c): conv2d, and
 * conv2d_transpose_grad_x; its result as kp_gemm_emit's. */
int kp_emit_conv_gather_gemm(KpEmit *e, const KpNode *n, int bias_arg, KpDiag *d);
void kp_emit_conv2d_grad_x_direct(KpEmit *e, const KpNode *n);
/* The input gradient (scatter form m) at stride 1 summed along dy's rows
 * (emit_conv_rows.c), when those fill more vector lanes than dx's; false
 * (nothing emitted) for any other m. */
bool kp_emit_conv_grad_x_rows(KpEmit *e, const KpConvMap *m);
/* 3x3 stride-1 gather forms by Winograd's F(2x2, 3x3)
 * (emit_conv_winograd.c): whether m is one it takes at a largest batch
 * of max_batch, and the kernel.  kp_emit_conv2d_winograd emits conv2d's
 * forward (or its input gradient) that way when it fits; false (nothing
 * emitted) when not. */
bool kp_conv_winograd_fits(const KpConvMap *m, int64_t max_batch, int64_t min_channels);
/* Fewer input or output channels than this keep the direct forward and
 * input gradient (the GEMMs' sums over the input channels get too short
 * for the transforms).  It was 32 until the blocks of tiles and the
 * prefetches of emit_conv_winograd.c made resnet_cifar's 16-channel
 * layers half again as fast by Winograd (docs/kernels-conv.md). */
enum { KP_WINO_MIN_CHANNELS = 16 };
void kp_emit_conv_winograd(KpEmit *e, const KpConvMap *m);
bool kp_emit_conv2d_winograd(KpEmit *e, const KpNode *n, bool grad_x);
/* conv2d_grad_w's sum m (kp_conv_grad_w_map) the same way
 * (emit_conv_winograd_w.c) when its forward fits; false (nothing emitted)
 * when not. */
bool kp_emit_conv2d_winograd_w(KpEmit *e, const KpConvMap *m);
/* Whether that kernel takes m at a largest batch of max_batch with its
 * GEMMs' lanes along the tiles (not along the input channels). */
bool kp_conv_winograd_w_tiles_in_lanes(const KpConvMap *m, int64_t max_batch, int vw);

/* conv2d_grad_w's sum, dy [N,F,OH,OW], x [N,C,H,W] -> dW [F,C,kh,kw], as
 * the forward's map (cin, h, w: x; cout, oh, ow: dy): X is pointer 1, the
 * output dW pointer 2 (the weight and bias unused). */
KpConvMap kp_conv_grad_w_map(const KpNode *n);

/* dW[w] = the chunks' partial sums part[c * stride + w] added in chunk
 * order (added to dW[w] when accumulate): what the last chunk to finish
 * does for each element. */
void kp_conv_chunks_add(KpEmit *e, LLVMValueRef part, LLVMValueRef w, int64_t chunks, int64_t stride,
                        LLVMValueRef dW, bool accumulate);

/* conv2d's weight gradient as outer products, the lanes along the output
 * channels (emit_conv_grad_w_outer.c): whether m (the forward's map) is
 * one it takes at a largest batch of max_batch, and the kernel (pointers:
 * dy, x, dW).  It takes at least as many taps as filters, whole vectors
 * of filters or at least four, and images whose pixels over the largest
 * batch are at most KP_OUTER_MAX_PIXELS (there the dot kernel's sums
 * across lanes and im2col packing cost the most) or, past that, a largest
 * batch of 4 or more and a dW of at most 1 MiB (then it works by chunks
 * of the samples). */
enum { KP_OUTER_MAX_PIXELS = 4096 };
bool kp_conv_grad_w_outer_fits(const KpConvMap *m, int64_t max_batch, int vw);
/* Whether that kernel reads x in place (true) or from a copy of each
 * sample with its border (a padded layer whose register tiles are not of
 * whole input channels, or whose border rows and columns would need more
 * than 16 forms of the pixel). */
bool kp_conv_grad_w_outer_in_place(const KpConvMap *m, int64_t max_batch, int vw);
void kp_emit_conv2d_grad_w_outer(KpEmit *e, const KpConvMap *m);

/* conv2d_grad_x's scatter form: dy [N,F,OH,OW] (X, pointer 0), the
 * weight [F,C,kh,kw] (pointer 1) -> dx [N,C,H,W]. */
KpConvMap kp_conv_grad_x_map(const KpNode *n);

/* conv2d's input gradient at stride 1 with the lanes along dx's channels
 * (emit_conv_grad_x_outer.c), for the scatter form m: whether it takes m
 * at a largest batch of max_batch (16-float vectors, dx's pixels over it
 * at most KP_OUTER_MAX_PIXELS unless its rows are at most a vector wide,
 * dx rows leaving an eighth of their vectors
 * idle or more, whole vectors of dx channels or at least four, no
 * dilation, a transposed weight of at most 256 KiB), and the kernel.
 * kp_emit_conv2d_grad_x_outer emits a node that way when it fits and its
 * dx is not a slot to add into; false (nothing emitted) when not. */
bool kp_conv_grad_x_outer_fits(const KpConvMap *m, int64_t max_batch, int vw);
void kp_emit_conv_grad_x_outer(KpEmit *e, const KpConvMap *m);
bool kp_emit_conv2d_grad_x_outer(KpEmit *e, const KpNode *n);

/* The columns an implicit-GEMM convolution reads from an image X
 * [N,c,h,w] (emit_conv_cols.c): output position (oy, ox) of sample g
 * and tap t = (ci*kh + ky)*kw + kx read
 *     X[g, ci, oy*sh - pt + ky*dh, ox*sw - pl + kx*dw]   (0 outside)
 * and pixel j = (g*oh + oy)*ow + ox numbers the positions of all samples. */
typedef struct KpConvCols {
    int arg;                    /* X's kernel pointer */
    int64_t c, h, w;            /* X, per sample */
    int64_t oh, ow;             /* output positions, per sample */
    int64_t kh, kw, sh, sw, pt, pl, dh, dw;
} KpConvCols;

/* A block of im2col(X) into dst: pixels [j, j + nl) of the output grid
 * (numbered over all samples) by taps [k0, k0 + kc), pixel l and tap k
 * (relative) at dst[(l / 16) * panel + k * kstride + l % 16], the pixels
 * from nl to the end of the last 16 zero.  The GEMM's B panels are
 * panel = kc*16, kstride = 16; rows of taps are panel = 16, kstride =
 * the row's length. */
void kp_conv_cols(KpEmit *e, const KpConvCols *s, LLVMValueRef X, LLVMValueRef dst, LLVMValueRef j,
                  LLVMValueRef nl, LLVMValueRef k0, LLVMValueRef kc, LLVMValueRef panel,
                  LLVMValueRef kstride);

/* The packer (gemm.h KpGemmPackFn) of B = im2col(X_g) [taps x pixels of
 * sample g], user a KpConvCols: lines are the pixels of group g, k the
 * taps. */
void kp_conv_pack_cols(KpEmit *e, const KpGemmPackArgs *p, void *user);

#endif
