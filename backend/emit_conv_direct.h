/*
 * emit_conv_direct.h — what the direct convolution kernel's two files
 * share: emit_conv.c (tiles along output rows) and emit_conv_flat.c
 * (small images read as one row).  Private to the backend.
 */
#ifndef KP_EMIT_CONV_DIRECT_H
#define KP_EMIT_CONV_DIRECT_H

#include "emit_conv.h"

typedef struct Phase {
    KpConvMap m;                /* a gather form over the phase's (qy, qx) */
    int64_t px;                 /* its first output column */
    int64_t kv;                 /* vectors per tile */
    int edges;                  /* some tile may read padding */
} Phase;

typedef struct Direct {
    int64_t cout, yh, yw;       /* Y, per sample */
    int64_t sy, sx;             /* phases: output row oy is row oy / sy of phase oy mod sy */
    int64_t fb;                 /* output channels per item */
    int64_t budget;             /* accumulators a tile may keep */
    int64_t flat;               /* 0, or vectors per tile of a whole phase image (flat_tile) */
    int64_t split_hp;           /* a strided gather read from its input's phases, copied
                                   per sample (split_input): rows per phase image; 0: not */
    int64_t split_groups;       /* split: work items per sample, each a share of the blocks */
    Phase *ph;                  /* [sy * sx] */
    int64_t bufw;               /* sx = 2: floats per phase row in the row buffer */
    LLVMValueRef buf;           /* sx = 2: [fb][2][bufw] floats, in the kernel's frame */
} Direct;

typedef struct Tile {
    int nv, rem;                /* vectors; lanes of the last (0: whole) */
} Tile;

/* The most tiles of a row emitted one by one, each at its column. */
enum { STATIC_TILES = 4, MAX_CHAINS = 8, FLAT_MAX_PIXELS = 256, SPLIT_MAX_BYTES = 256 << 10,
       SPLIT_ITEMS = 4 };

static inline LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static inline LLVMValueRef add(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

static inline LLVMValueRef addc(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWAdd(e->b, a, kp_i64(e, k), "");
}

/* An accumulator's start for output channel co0 + f: its bias, or 0. */
LLVMValueRef kp_conv_acc_init(KpEmit *e, const KpKernelArgs *a, const KpConvMap *m, LLVMValueRef co0,
                              int64_t f);
/* The node's epilogues over `count` floats from ybase in each of the
 * item's fb channel planes, once every phase has stored there. */
void kp_conv_span_epilogue(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef ybase,
                           int64_t count);
/* Accumulators a tile keeps at vw floats a vector. */
int64_t kp_conv_tile_budget(int vw);

/* emit_conv_flat.c: the flat tiles' vectors for phases ph[0..nph) (0:
 * not flat) and channels *fb; the same for a strided gather read from
 * its input's phases, *hp their rows; one work item of a flat plan. */
int64_t kp_conv_flat_plan(const KpConvMap *ph, int64_t nph, int vw, int64_t *fb);
int64_t kp_conv_split_plan(const KpConvMap *m, int vw, int64_t *fb, int64_t *hp);
void kp_conv_flat_item(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef item);

#endif
