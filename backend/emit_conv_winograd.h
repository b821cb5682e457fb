/*
 * emit_conv_winograd.h — what the Winograd F(2x2, 3x3) kernels share:
 * the forward and input gradient (emit_conv_winograd.c, where the method
 * is described) and the weight gradient (emit_conv_winograd_w.c).
 */
#ifndef KP_EMIT_CONV_WINOGRAD_H
#define KP_EMIT_CONV_WINOGRAD_H

#include "emit_conv.h"

typedef struct KpWino {
    KpConvMap m;                /* X: m.ix, m.cin, m.h, m.w; the tiles cover m.oh x m.ow */
    int64_t th, tw;             /* tiles per sample: rows, columns */
    int64_t nj;                 /* vectors along a tile row */
    int64_t rb;                 /* tile rows per block (the forward: the most a block spans) */
    int64_t bt;                 /* the forward's tiles per block (a block may start mid-row) */
    int64_t ts;                 /* floats per row of V (a block's tiles and a row's overrun) */
    int64_t fb, kv;             /* GEMM register tile */
    int64_t u_floats, v_floats, m_floats;
    bool rows_inside;           /* every tile's patch rows lie in the image */
} KpWino;

/* th, tw, nj and rows_inside of s from s->m, for vectors of vw floats. */
void kp_wino_tiles(KpWino *s, int vw);
/* The row length of V for blocks of rb tile rows: room for a row's last
 * vector past the block's tiles, and never a multiple of 16 floats (rows
 * 16 * ts apart would share a few L1 sets, which the GEMMs thrash). */
int64_t kp_wino_row_floats(const KpWino *s, int vw, int64_t rb);

/* Lanes l of p[at ..] where in[l] (constants: padding, a row's end),
 * the others zero; all zero where valid (an i1, or NULL: always) is false
 * (a row in the padding, at a clamped address). */
LLVMValueRef kp_wino_row_vector(KpEmit *e, LLVMValueRef p, LLVMValueRef at, const bool *in,
                                LLVMValueRef valid);
/* The even and the odd lanes of a, b side by side: even_odd[0], [1]. */
void kp_wino_split(KpEmit *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef *even_odd);
/* Lanes l with ci0 + l < c, as <vw x i1>. */
LLVMValueRef kp_wino_below(KpEmit *e, LLVMValueRef ci0, int64_t c);

/* The stack buffer kp_wino_transform_input needs, for s->rb tile rows. */
LLVMValueRef kp_wino_rowbuf(KpEmit *e, const KpWino *s);
/* V[ci][xi][r*tw + tx] = (B^T d B)[xi] of tile (ty0 + r, tx) of sample n
 * of X = a->p[s->m.ix], for the block's rows r < nrows (every ci < cin;
 * a row's last vector runs past its tiles into the next row's place). */
void kp_wino_transform_input(KpEmit *e, const KpKernelArgs *a, const KpWino *s, LLVMValueRef V,
                             LLVMValueRef rowbuf, LLVMValueRef n, LLVMValueRef ty0, LLVMValueRef nrows);

static inline LLVMValueRef kp_wino_fadd(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(e->b, a, b, "");
}

static inline LLVMValueRef kp_wino_fsub(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFSub(e->b, a, b, "");
}

static inline LLVMValueRef kp_wino_fhalf(KpEmit *e, LLVMValueRef a)
{
    return LLVMBuildFMul(e->b, a, kp_fconst(LLVMTypeOf(a), 0.5), "");
}

#endif
