/*
 * gemm_internal.h — what the GEMM generator's files share: the plan
 * (gemm_plan.c) that the kernel emitter (gemm_kernel.c) follows.
 */
#ifndef KP_GEMM_INTERNAL_H
#define KP_GEMM_INTERNAL_H

#include "gemm.h"

typedef struct KpGemmPlan {
    int vw;
    int mr, nv;                 /* the main micro-tile: mr rows x nv vectors */
    int row_nv;                 /* vectors of the one-row tiles that finish a
                                   row chunk of fewer than mr rows left (0:
                                   none ever does) */
    int64_t kc;                 /* k block, at most */
    int64_t nc;                 /* columns per block, a multiple of every
                                   tile width; the last block of C may be short */
    bool one_block;             /* an item's columns are one block: the last */
    int64_t mci, nci;           /* a work item's rows (multiple of mr) and
                                   columns (multiple of nc) */
    int64_t nrow_chunks;        /* at the largest batch */
    int64_t ncol_chunks;
    bool pack_a, pack_b;
    bool fuse_b;                /* B packed by the first row tile of each block,
                                   which reads it in place (gemm_kernel.c) */
    int64_t a_floats, b_floats; /* packed blocks in the scratch buffer */
    int64_t scratch_bytes;      /* per thread, 0 if none */
    /* split k (tiny C, long k): at most kchunks_max chunks (1: no split) of
     * kchunk (for a batched k, chunks of about kchunk at run time), their
     * partial C in the shared scratch, then the tiles' counters */
    int64_t kchunks_max, kchunk;
    int64_t m_floats;           /* floats of one partial C, m x n */
    int64_t counters_at;        /* bytes into the shared area */
    int64_t shared_bytes;
    bool parallel;              /* worth a thread team */
    int64_t n_par;              /* a batch below this is one work item (1: never) */
} KpGemmPlan;

/* Choices of the plan forced by KARPC_GEMM_PLAN (gemm_tune.c), for
 * measuring: 0 (pack_a: -1) where the plan chooses. */
typedef struct KpGemmTune {
    int64_t mr, nv, kc, nc, pack_a, rows, cols;
    bool show;                  /* print each plan to stderr */
} KpGemmTune;

/* t from KARPC_GEMM_PLAN; -1 and a message when it does not parse. */
int kp_gemm_tune(KpGemmTune *t, KpDiag *d);

/* The plan for g on vectors of vw floats, sized for the host's caches and
 * cores and for a batch of at most max_batch. */
int kp_gemm_plan(const KpGemm *g, int vw, int64_t max_batch, KpGemmPlan *p, KpDiag *d);

/* kp_loop_end for a loop whose body is already explicit vector code (a
 * micro-tile step, a packing step): LLVM is told not to unroll or
 * vectorize it again, which would only multiply the code. */
void kp_gemm_loop_end(KpEmit *e, KpLoop *l);

/* A vector at ptr, of which only the first `lanes` are touched when
 * fewer than vw (masked; the others read as 0). */
LLVMValueRef kp_gemm_load(KpEmit *e, LLVMValueRef ptr, int lanes);
void kp_gemm_store(KpEmit *e, LLVMValueRef v, LLVMValueRef ptr, int lanes);

/* A strided view's element (r, c) of group g: p[arg] + g*gs + r*rs + c*cs. */
LLVMValueRef kp_gemm_view_at(KpEmit *e, const KpKernelArgs *ka, const KpGemmView *v,
                             LLVMValueRef g, LLVMValueRef r, LLVMValueRef c);

/* One work item: rows [i0, i0 + mi) and columns [j0, jend) of group grp
 * of C, k over [k0, kend) of [0, kfull); scratch the thread's slot (NULL
 * when nothing is packed).  For a chunk of a split k, partials is where
 * its sums go ([m][n] floats, the chunk's), else NULL; a reduction reads
 * nchunks of them from partials (chunk 0's) on. */
typedef struct KpGemmItem {
    LLVMValueRef grp, i0, mi, j0, jend;
    LLVMValueRef k0, kend, kfull;
    LLVMValueRef scratch, partials, nchunks;
} KpGemmItem;

/* The body of a work item (gemm_kernel.c). */
void kp_gemm_item(KpEmit *e, const KpGemm *g, const KpGemmPlan *p, const KpKernelArgs *ka,
                  const KpGemmItem *it);
/* Split k: the item's tile of C from the partials of its chunks, added
 * in chunk order (to C first in accumulate mode), then stored finally. */
void kp_gemm_reduce(KpEmit *e, const KpGemm *g, const KpGemmPlan *p, const KpKernelArgs *ka,
                    const KpGemmItem *it);

#endif
