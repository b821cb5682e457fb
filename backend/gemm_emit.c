/*
 * gemm_emit.c — a GEMM as a node's one parallel region: the work items
 * (group, row chunk, column chunk), item = (g * R + rc) * C + cc, with R
 * row chunks (fewer when the batch is smaller) and C column chunks; the
 * kernel decodes each item and runs its body (gemm_kernel.c) with the
 * thread's scratch buffer for the packed blocks.  A batch too small to be
 * worth a thread team (below the plan's n_par) is one item, R = C = 1,
 * which krt_parallel_for runs on the calling thread.
 */
#include "gemm_internal.h"

typedef struct Job {
    const KpGemm *g;
    KpGemmPlan p;
} Job;

static LLVMValueRef extent(KpEmit *e, const KpGemmDim *d)
{
    LLVMValueRef size = kp_i64(e, d->size);
    return d->batched ? LLVMBuildNSWMul(e->b, e->n, size, "") : size;
}

static LLVMValueRef ceil_div(KpEmit *e, LLVMValueRef a, int64_t b)
{
    return LLVMBuildUDiv(e->b, LLVMBuildNSWAdd(e->b, a, kp_i64(e, b - 1), ""), kp_i64(e, b), "");
}

/* ptr krt_scratch(void): this thread's buffer of the model's scratch_bytes */
static LLVMValueRef call_scratch(KpEmit *e)
{
    LLVMTypeRef ty = LLVMFunctionType(e->ptr, NULL, 0, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(e->mod, "krt_scratch");
    if (!fn)
        fn = LLVMAddFunction(e->mod, "krt_scratch", ty);
    return LLVMBuildCall2(e->b, ty, fn, NULL, 0, "scratch");
}

/* The grid at run time: R, C and the chunk sizes, one chunk each below n_par. */
typedef struct Grid {
    LLVMValueRef m, rchunks, cchunks, mci, nci;
} Grid;

static Grid grid(KpEmit *e, const KpGemm *g, const KpGemmPlan *p)
{
    Grid r = {.m = extent(e, &g->m)};
    r.rchunks = ceil_div(e, r.m, p->mci);
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
    return r;
}

static void kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Job *j = user;
    const KpGemm *g = j->g;
    const KpGemmPlan *p = &j->p;
    LLVMValueRef scratch = p->scratch_bytes > 0 ? call_scratch(e) : NULL;
    LLVMValueRef k = extent(e, &g->k);
    Grid r = grid(e, g, p);
    LLVMValueRef per_group = LLVMBuildNSWMul(e->b, r.rchunks, r.cchunks, "");
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef grp = LLVMBuildUDiv(e->b, li.iv, per_group, "g");
    LLVMValueRef rest = LLVMBuildURem(e->b, li.iv, per_group, "");
    LLVMValueRef rc = LLVMBuildUDiv(e->b, rest, r.cchunks, "rc");
    LLVMValueRef cc = LLVMBuildURem(e->b, rest, r.cchunks, "cc");
    LLVMValueRef i0 = LLVMBuildNSWMul(e->b, rc, r.mci, "i0");
    LLVMValueRef mi = kp_min_i64(e, r.mci, LLVMBuildNSWSub(e->b, r.m, i0, ""));
    LLVMValueRef j0 = LLVMBuildNSWMul(e->b, cc, r.nci, "j0");
    LLVMValueRef jend = kp_min_i64(e, LLVMBuildNSWAdd(e->b, j0, r.nci, ""), kp_i64(e, g->n.size));
    kp_gemm_item(e, g, p, a, scratch, grp, i0, mi, j0, jend, k);
    kp_loop_end(e, &li);
}

int kp_gemm_emit(KpEmit *e, const KpGemm *g, KpDiag *d)
{
    Job j = {.g = g};
    if (kp_gemm_plan(g, e->vw, e->g->max_batch, &j.p, d) < 0)
        return -1;
    if (j.p.scratch_bytes > e->scratch_bytes)
        e->scratch_bytes = j.p.scratch_bytes;
    Grid r = grid(e, g, &j.p);
    LLVMValueRef items = LLVMBuildNSWMul(e->b, r.rchunks, r.cchunks, "items");
    items = LLVMBuildNSWMul(e->b, items, extent(e, &g->groups), "");
    kp_emit_parallel(e, g->name, kp_i64(e, 0), items, j.p.parallel, kernel, &j);
    return 0;
}
