/*
 * gemm_emit.c — a GEMM as a node's one parallel region: the work items
 * (group, row chunk, column chunk), item = (g * R + rc) * C + cc, with R
 * row chunks (fewer when the batch is smaller) and C column chunks; the
 * kernel decodes each item and runs its body (gemm_kernel.c) with the
 * thread's scratch buffer for the packed blocks.  A batch too small to be
 * worth a thread team (below the plan's n_par) is one item, R = C = 1,
 * which krt_parallel_for runs on the calling thread.
 *
 * With full_rows an item spans all the columns (C = 1), and a rows
 * callback runs in the item once its rows are final: a row-wise pass
 * over C right after the GEMM wrote it, while it is in cache (the fused
 * loss of a dense head, emit_dense.c).
 *
 * Split k (the plan's kchunks_max > 1): item = tile * S + s for S chunks
 * of k.  Chunk s of a tile sums its k into partial C number s (the call's
 * shared scratch), then counts itself done on the tile's counter; the
 * chunk that completes the count adds the S partials in order 0, 1, ...
 * and stores the tile.  Whichever thread that is, the sums are the same.
 * It also sets the counter back to 0, so the counters are zero when a
 * call starts (the runtime zeroes the shared area when it makes it): the
 * node does nothing but its one parallel region, as a member of a group
 * of nodes must (emit.h), whose members run on every thread at once.
 * Each split GEMM of a module has its own range of the shared area, so
 * two of them in one group never meet.
 *
 *   its range:  | partial C 0 | partial C 1 | ... | counter per tile |
 */
#include "gemm_internal.h"

typedef struct Job {
    const KpGemm *g;
    KpGemmPlan p;
    int64_t shared_at;          /* its range of the shared scratch, in bytes */
} Job;

static LLVMValueRef extent(KpEmit *e, const KpGemmDim *d)
{
    LLVMValueRef size = kp_i64(e, d->size);
    return d->batched ? LLVMBuildNSWMul(e->b, e->n, size, "") : size;
}

static LLVMValueRef ceil_div(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    LLVMValueRef up = LLVMBuildNSWAdd(e->b, a, LLVMBuildNSWSub(e->b, b, kp_i64(e, 1), ""), "");
    return LLVMBuildUDiv(e->b, up, b, "");
}

/* The grid at run time: R, C, the chunk sizes (one chunk each below
 * n_par), and for a split k the chunks S and their length. */
typedef struct Grid {
    LLVMValueRef m, k, rchunks, cchunks, mci, nci;
    LLVMValueRef kchunks, kchunk;
} Grid;

static Grid grid(KpEmit *e, const KpGemm *g, const KpGemmPlan *p)
{
    Grid r = {.m = extent(e, &g->m), .k = extent(e, &g->k)};
    r.rchunks = ceil_div(e, r.m, kp_i64(e, p->mci));
    r.cchunks = kp_i64(e, p->ncol_chunks);
    r.mci = kp_i64(e, p->mci);
    r.nci = kp_i64(e, p->nci);
    if (p->n_par > 1) {
        LLVMValueRef one = kp_i64(e, 1);
        LLVMValueRef small = LLVMBuildICmp(e->b, LLVMIntSLT, e->n, kp_i64(e, p->n_par), "small");
        r.rchunks = LLVMBuildSelect(e->b, small, one, r.rchunks, "");
        r.cchunks = LLVMBuildSelect(e->b, small, one, r.cchunks, "");
        r.mci = LLVMBuildSelect(e->b, small, r.m, r.mci, "");
        r.nci = LLVMBuildSelect(e->b, small, kp_i64(e, g->n.size), r.nci, "");
    }
    r.kchunks = kp_i64(e, p->kchunks_max);
    r.kchunk = kp_i64(e, p->kchunk);
    if (p->kchunks_max > 1 && g->k.batched) {
        /* the plan's rule at this batch: chunks of about kchunk, at most kchunks_max */
        r.kchunks = kp_min_i64(e, ceil_div(e, r.k, r.kchunk), r.kchunks);
        r.kchunk = ceil_div(e, r.k, r.kchunks);
    }
    return r;
}

static LLVMValueRef items_of(KpEmit *e, const KpGemm *g, const Grid *r)
{
    LLVMValueRef items = LLVMBuildNSWMul(e->b, r->rchunks, r->cchunks, "tiles");
    items = LLVMBuildNSWMul(e->b, items, extent(e, &g->groups), "");
    return LLVMBuildNSWMul(e->b, items, r->kchunks, "items");
}

/* A chunk of a split k: its sums into its partial C, then the tile's
 * counter; the last chunk of the tile adds them all and resets it. */
static void split_item(KpEmit *e, const Job *j, const KpKernelArgs *a, KpGemmItem *it,
                       const Grid *r, LLVMValueRef tile, LLVMValueRef s)
{
    const KpGemm *g = j->g;
    const KpGemmPlan *p = &j->p;
    LLVMTypeRef i8 = LLVMInt8TypeInContext(e->ctx);
    LLVMValueRef shared = kp_scratch_shared_at(e, j->shared_at);
    it->k0 = LLVMBuildNSWMul(e->b, s, r->kchunk, "k0");
    it->kend = kp_min_i64(e, LLVMBuildNSWAdd(e->b, it->k0, r->kchunk, ""), r->k);
    LLVMValueRef part0 = kp_gep(e, shared, kp_i64(e, 0));
    it->partials = kp_gep(e, part0, LLVMBuildNSWMul(e->b, s, kp_i64(e, p->m_floats), ""));
    kp_gemm_item(e, g, p, a, it);
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, kp_i64(e, p->counters_at),
                                      LLVMBuildNSWMul(e->b, tile, kp_i64(e, 8), ""), "");
    LLVMValueRef counter = LLVMBuildInBoundsGEP2(e->b, i8, shared, &at, 1, "");
    LLVMBasicBlockRef join = kp_last_begin(e, counter, r->kchunks);
    it->partials = part0;
    it->nchunks = r->kchunks;
    kp_gemm_reduce(e, g, p, a, it);
    kp_last_end(e, counter, join);
}

static void kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Job *j = user;
    const KpGemm *g = j->g;
    const KpGemmPlan *p = &j->p;
    KpGemmItem it = {.scratch = p->scratch_bytes > 0 ? kp_scratch(e) : NULL};
    Grid r = grid(e, g, p);
    it.kfull = r.k;
    LLVMValueRef per_group = LLVMBuildNSWMul(e->b, r.rchunks, r.cchunks, "");
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef tile = LLVMBuildUDiv(e->b, li.iv, r.kchunks, "tile");
    LLVMValueRef s = LLVMBuildURem(e->b, li.iv, r.kchunks, "chunk");
    it.grp = LLVMBuildUDiv(e->b, tile, per_group, "g");
    LLVMValueRef rest = LLVMBuildURem(e->b, tile, per_group, "");
    LLVMValueRef rc = LLVMBuildUDiv(e->b, rest, r.cchunks, "rc");
    LLVMValueRef cc = LLVMBuildURem(e->b, rest, r.cchunks, "cc");
    it.i0 = LLVMBuildNSWMul(e->b, rc, r.mci, "i0");
    it.mi = kp_min_i64(e, r.mci, LLVMBuildNSWSub(e->b, r.m, it.i0, ""));
    it.j0 = LLVMBuildNSWMul(e->b, cc, r.nci, "j0");
    it.jend = kp_min_i64(e, LLVMBuildNSWAdd(e->b, it.j0, r.nci, ""), kp_i64(e, g->n.size));
    if (p->kchunks_max > 1) {
        split_item(e, j, a, &it, &r, tile, s);
    } else {
        it.k0 = kp_i64(e, 0);
        it.kend = r.k;
        kp_gemm_item(e, g, p, a, &it);
        if (g->rows)
            g->rows(e, a, it.i0, it.mi, g->rows_user);
    }
    kp_loop_end(e, &li);
}

int kp_gemm_emit(KpEmit *e, const KpGemm *g, KpDiag *d)
{
    Job j = {.g = g};
    if (kp_gemm_plan(g, e->vw, e->g->max_batch, &j.p, d) < 0)
        return -1;
    if (g->rows && (!g->full_rows || g->groups.size != 1 || g->groups.batched ||
                    j.p.ncol_chunks != 1 || j.p.kchunks_max != 1))
        return kp_error(d, "internal error: GEMM %s: a rows callback needs work items of "
                        "whole rows", g->name);
    if (j.p.scratch_bytes > e->scratch_bytes)
        e->scratch_bytes = j.p.scratch_bytes;
    j.shared_at = kp_scratch_shared_take(e, "gemm", j.p.shared_bytes, j.p.counters_at);
    Grid r = grid(e, g, &j.p);
    kp_emit_parallel(e, g->name, kp_i64(e, 0), items_of(e, g, &r), j.p.parallel, kernel, &j);
    return 0;
}
