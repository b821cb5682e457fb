/*
 * gemm.h — the GEMM generator: C = A·B emitted as LLVM IR with explicit
 * <vw x float> vectors and llvm.fma, for the dense kernels now and for
 * implicit-GEMM convolution next.
 *
 *     C[m x n]  (+)=  A[m x k] · B[k x n]       (per group g, G groups)
 *
 * How it runs.  The node's one parallel region (kp_emit_parallel) has a
 * count of work items; an item owns a tile of C (mci rows x nci columns
 * of one group) and computes it whole, K included, so no two threads ever
 * add into the same element and every element is summed in the same order
 * (k = 0, 1, ...) whatever the thread count.  Inside an item:
 *
 *   for pc in k blocks of kc:                   A block mci x kc  -> scratch
 *     [pack A rows i0.., k pc..]                   (when A is packed)
 *     for jc in column blocks of nc:            B block kc x nc   -> scratch (L2)
 *       [pack B columns jc.., k pc..]              (when B is packed)
 *       for ir in row tiles of mr:              A micro-panel mr x kc  (L1)
 *         for jr in column tiles of nr:         B micro-panel kc x nr  (from L2)
 *           microkernel: mr x nv accumulators, nv = nr / vw
 *
 *          B micro-panel: kc rows of nr floats, one row per k
 *              +----+----+
 *          k=0 | v0 | v1 |   nv vector loads per k
 *              +----+----+
 *   A  a0 ->  acc00 acc01    acc[i][v] = fma(splat(A[i,k]), B[k,v], acc[i][v])
 *      a1 ->  acc10 acc11    mr broadcasts per k
 *      ..
 *
 * The accumulators start at zero (or at C: accumulate mode, and k blocks
 * after the first, whose partial sums wait in C), so an element's sum is
 * one chain of fmas in k order however k is blocked: the blocking changes
 * speed, never bits (a split k, below, adds its chunks' chains in order).  After the last k block the store callback gets the
 * accumulators (bias, epilogues, masks); between k blocks they go to C
 * plainly.
 *
 * Operands.  The microkernel reads A as broadcast scalars at any strides
 * and B as vectors along n, from one of:
 *   - a VIEW, a strided matrix: read in place, or copied into panels by
 *     the stock packer when in place would be slow (B not contiguous along
 *     n, rows whose cache sets collide);
 *   - PANELS (B only): packed before the call, [ceil(n/16)][k][16] —
 *     pack_panels' layout, made once per weight change for inference;
 *   - CUSTOM: a packer callback fills each block (an im2col view, say).
 * Packed blocks live in the thread's scratch buffer (krt_scratch): A as
 * panels of mr rows, [ceil(rows/mr)][kc][mr]; B as panels of 16 columns,
 * [ceil(cols/16)][kc][16].  The rows and columns of C are runtime-sized
 * only through the batch n (a dimension with `batched`); the rest is
 * static, so every loop bound and edge is a constant but those.
 *
 * When C is tiny and k long, k is split into fixed chunks (from the shape,
 * never the thread count) that are work items of their own: each sums
 * into a partial C in the call's shared scratch (krt_scratch_shared), and
 * the last chunk of a tile to finish adds the partials in chunk order.
 *
 * Blocking (mr, nv, kc, nc, the item grid, the split) comes from the
 * shapes, the vector width and the host's cache sizes (gemm_plan.c;
 * docs/kernels-gemm.md).
 */
#ifndef KP_GEMM_H
#define KP_GEMM_H

#include <stdbool.h>

#include "emit.h"

enum {
    KP_GEMM_PANEL = 16,     /* columns of C per B panel (pack_panels' width) */
    KP_GEMM_MAX_MR = 16,    /* rows of a micro-tile, at most */
    KP_GEMM_MAX_NV = 8      /* vectors per row of a micro-tile, at most */
};

/* An extent: size, times the batch n when batched. */
typedef struct KpGemmDim {
    int64_t size;
    bool batched;
} KpGemmDim;

/* A strided matrix in one of the kernel's pointers: element (r, c) of
 * group g at p[arg] + g*gs + r*rs + c*cs floats. */
typedef struct KpGemmView {
    int arg;
    int64_t rs, cs, gs;
} KpGemmView;

/* What a packer fills: lines [l0, l0 + nl) (A: rows of C; B: columns of
 * C) by k [k0, k0 + kc) of group g, into dst as panels of w lines,
 *     dst[(l / w) * kc * w + k * w + l % w]     (l, k relative),
 * lines from nl up to the end of the last panel zero (B) or anything
 * (A).  nl, kc are at most the block the plan sized (KpGemmPlan). */
typedef struct KpGemmPackArgs {
    const KpKernelArgs *ka;
    LLVMValueRef g, dst;
    LLVMValueRef l0, nl, k0, kc;    /* i64 */
    int w;
    bool is_b;
} KpGemmPackArgs;
typedef void (*KpGemmPackFn)(KpEmit *e, const KpGemmPackArgs *p, void *user);

typedef enum KpGemmSource {
    KP_GEMM_VIEW,
    KP_GEMM_PANELS,
    KP_GEMM_CUSTOM
} KpGemmSource;

/* A is rows x k, B is k x columns; view and source as above.  For
 * PANELS only view.arg and view.gs are read; for CUSTOM only pack. */
typedef struct KpGemmOperand {
    KpGemmSource source;
    KpGemmView view;
    KpGemmPackFn pack;
    void *pack_user;
} KpGemmOperand;

/* A finished micro-tile: rows [i0, i0 + mr) and columns [j0, j0 + nv*vw)
 * of group g, acc[i][v] for row i0+i, columns j0 + v*vw ...; only `lanes`
 * lanes of the last vector are columns of C (vw: all). */
typedef struct KpGemmTile {
    const KpKernelArgs *ka;
    LLVMValueRef g, i0, j0;
    int mr, nv, lanes;
    LLVMValueRef acc[KP_GEMM_MAX_MR][KP_GEMM_MAX_NV];
} KpGemmTile;
typedef void (*KpGemmStoreFn)(KpEmit *e, const KpGemmTile *t, void *user);
/* A work item's rows [i0, i0 + mi) of C, final in every column: stored
 * whole, after the last k block and the store callback. */
typedef void (*KpGemmRowsFn)(KpEmit *e, const KpKernelArgs *ka, LLVMValueRef i0, LLVMValueRef mi,
                             void *user);

typedef struct KpGemm {
    const char *name;           /* names the kernel ("dense") */
    KpGemmDim m, n, k;          /* n (the columns) is never batched */
    KpGemmDim groups;           /* {1, false} for one GEMM */
    KpGemmOperand a, b;
    KpGemmView c;               /* C, cs = 1: partial sums between k blocks,
                                   and where accumulate starts from */
    bool accumulate;            /* C += A·B (the store gets C + A·B) */
    KpGemmStoreFn store;        /* the final store; NULL: plainly through c */
    void *store_user;
    bool full_rows;             /* every work item spans all the columns of C (the
                                   grid cuts rows only; k is never split) */
    KpGemmRowsFn rows;          /* NULL, or run by each work item on its rows once
                                   they are final (needs full_rows, one group) */
    void *rows_user;
} KpGemm;

/* Emit the GEMM as the current node's one parallel region (work items
 * over tiles of C, and chunks of k for a split), recording its scratch
 * need in e->scratch_bytes and e->scratch_shared_bytes.  0, or -1 with a
 * diagnostic for a shape it cannot do. */
int kp_gemm_emit(KpEmit *e, const KpGemm *g, KpDiag *d);

/* The usual final store of a node's output: acc (+ bias, a vector along
 * the columns or a scalar per row, from p[bias_arg]), then the node's
 * epilogues (kp_emit_epilogue at the output's flat index), stored through
 * c with the last vector masked.  user is a KpGemmOut. */
typedef struct KpGemmOut {
    const KpNode *node;         /* whose epilogues apply (NULL: none) */
    KpGemmView c;
    int bias_arg;               /* -1: no bias */
    bool bias_per_row;
} KpGemmOut;
void kp_gemm_store_out(KpEmit *e, const KpGemmTile *t, void *user);

/* The stock packer: the block of p from the strided matrix *view (A:
 * rows x k, B: k x columns), with vector copies where lines or k are
 * contiguous.  For CUSTOM packers that read a view for part of a block. */
void kp_gemm_pack_view(KpEmit *e, const KpGemmPackArgs *p, const KpGemmView *view);

/* The host as the plan sizes blocks for it: L1d and L2 bytes, cores
 * (for other kernels that block for the same caches). */
void kp_gemm_host(int64_t *l1, int64_t *l2, int64_t *cores);

/* Whether a product of macs multiply-adds whose B (read whole by every
 * row) is b_bytes long gains from a thread team (gemm_plan.c: the team's
 * fork and join against the work, or two L2s reading a large B). */
bool kp_gemm_worth_threads(int64_t macs, int64_t b_bytes);

#endif
