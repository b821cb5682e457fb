/*
 * gemm_kernel.c — the body of a GEMM work item (gemm.h): its k blocks,
 * column blocks, row tiles and micro-tiles.
 *
 * Edges are static but for the batch: a column block is nc wide except
 * the last one of C, whose width is known, so its last tile (narrower,
 * its last vector masked) is emitted once; a row chunk is full micro-tiles
 * but for the last one, whose remainder (fewer than mr rows) is done a row
 * at a time by tiles wide enough for at least 8 fma chains (batch 1 too):
 *
 *   rows of a chunk:   | mr | mr | ... | mr |1|1|1|
 *
 * A B whose rows are contiguous along C's columns but must be packed
 * (rows a multiple of 1 KiB apart) is packed by the first row tile of each
 * block: it reads B in place, stores each vector into the panel as it
 * uses it and prefetches the next tile's lines of the same rows, so the
 * block's trip from L3 or memory overlaps that tile's multiply-adds
 * instead of running alone before them.  The later row tiles read the
 * panels.  A row chunk with no full row tile (a batch below mr) has the
 * packer do it first, as before.
 *
 * A chunk of a split k stores its sums plainly into its own partial C;
 * the reduction walks the same tiles, adding the chunks' partials in
 * chunk order before the final store.
 */

#include "gemm_internal.h"

typedef struct Block {
    KpEmit *e;
    const KpGemm *g;
    const KpGemmPlan *p;
    const KpKernelArgs *ka;
    const KpGemmItem *it;
    LLVMValueRef apk, bpk;      /* packed A and B blocks, if packed */
    LLVMValueRef kfull;         /* K, i64 */
    LLVMValueRef grp, i0, pc, kc, jc, ncur;
    LLVMValueRef first, last;   /* i1: the first and the last k block */
    bool one_k;                 /* K is one block: first and last always */
    bool packing;               /* this row tile reads B in place and packs it */
    bool reduce;                /* the tiles add the chunks' partials (no k) */
    int64_t wlast;              /* columns of the last column block of C */
} Block;

LLVMValueRef kp_gemm_view_at(KpEmit *e, const KpKernelArgs *ka, const KpGemmView *v,
                             LLVMValueRef g, LLVMValueRef r, LLVMValueRef c)
{
    LLVMValueRef at = kp_iadd(e, kp_imulc(e, r, v->rs), kp_imulc(e, c, v->cs));
    if (v->gs != 0)
        at = kp_iadd(e, at, kp_imulc(e, g, v->gs));
    return kp_gep(e, ka->p[v->arg], at);
}

LLVMValueRef kp_gemm_load(KpEmit *e, LLVMValueRef ptr, int lanes)
{
    if (lanes < e->vw)
        return kp_load_vec_masked(e, ptr, kp_i64(e, 0), lanes, 0.0);
    return kp_load_vec(e, ptr, kp_i64(e, 0));
}

void kp_gemm_store(KpEmit *e, LLVMValueRef v, LLVMValueRef ptr, int lanes)
{
    if (lanes < e->vw)
        kp_store_vec_masked(e, v, ptr, kp_i64(e, 0), lanes);
    else
        kp_store_vec(e, v, ptr, kp_i64(e, 0));
}

/* Where A's rows start for this block: row i (of C) at k = pc, and the
 * strides between rows and between k. */
typedef struct ARows {
    LLVMValueRef base;
    int64_t rs, ks;
} ARows;

static ARows a_rows(const Block *s, LLVMValueRef i)
{
    KpEmit *e = s->e;
    ARows a;
    if (s->p->pack_a) {
        LLVMValueRef rel = LLVMBuildNSWSub(e->b, i, s->i0, "");
        LLVMValueRef panel = LLVMBuildUDiv(e->b, rel, kp_i64(e, s->p->mr), "");
        LLVMValueRef lane = LLVMBuildURem(e->b, rel, kp_i64(e, s->p->mr), "");
        LLVMValueRef at = kp_iadd(e, kp_imulc(e, LLVMBuildNSWMul(e->b, panel, s->kc, ""), s->p->mr), lane);
        a.base = kp_gep(e, s->apk, at);
        a.rs = 1;
        a.ks = s->p->mr;
    } else {
        a.base = kp_gemm_view_at(e, s->ka, &s->g->a.view, s->grp, i, s->pc);
        a.rs = s->g->a.view.rs;
        a.ks = s->g->a.view.cs;
    }
    return a;
}

/* The B vector v of the tile at column j, at k = pc, and the floats between k. */
static LLVMValueRef b_vec(const Block *s, LLVMValueRef j, int v, int64_t *ks)
{
    KpEmit *e = s->e;
    int64_t off = (int64_t)v * e->vw;
    if (s->p->pack_b) {
        LLVMValueRef rel = kp_iaddc(e, LLVMBuildNSWSub(e->b, j, s->jc, ""), off);
        LLVMValueRef panel = LLVMBuildUDiv(e->b, rel, kp_i64(e, KP_GEMM_PANEL), "");
        LLVMValueRef at = kp_iadd(e, kp_imulc(e, LLVMBuildNSWMul(e->b, panel, s->kc, ""), KP_GEMM_PANEL),
                              kp_i64(e, off % KP_GEMM_PANEL));
        *ks = KP_GEMM_PANEL;
        return kp_gep(e, s->bpk, at);
    }
    const KpGemmView *bv = &s->g->b.view;
    if (s->g->b.source == KP_GEMM_PANELS) {
        LLVMValueRef panel = LLVMBuildUDiv(e->b, kp_iaddc(e, j, off), kp_i64(e, KP_GEMM_PANEL), "");
        LLVMValueRef at = kp_iadd(e, kp_imulc(e, LLVMBuildNSWMul(e->b, panel, s->kfull, ""), KP_GEMM_PANEL),
                              kp_iaddc(e, kp_imulc(e, s->pc, KP_GEMM_PANEL), off % KP_GEMM_PANEL));
        if (bv->gs != 0)
            at = kp_iadd(e, at, kp_imulc(e, s->grp, bv->gs));
        *ks = KP_GEMM_PANEL;
        return kp_gep(e, s->ka->p[bv->arg], at);
    }
    *ks = bv->rs;
    return kp_gemm_view_at(e, s->ka, bv, s->grp, s->pc, kp_iaddc(e, j, off));
}

/* Element (i + r, j + v*vw) of C, or of the chunk's partials */
static LLVMValueRef c_at(const Block *s, LLVMValueRef i, int r, LLVMValueRef j, int v)
{
    KpEmit *e = s->e;
    LLVMValueRef row = kp_iaddc(e, i, r), col = kp_iaddc(e, j, (int64_t)v * e->vw);
    if (s->it->partials && !s->reduce)
        return kp_gep(e, s->it->partials, kp_iadd(e, kp_imulc(e, row, s->g->n.size), col));
    return kp_gemm_view_at(e, s->ka, &s->g->c, s->grp, row, col);
}

void kp_gemm_loop_end(KpEmit *e, KpLoop *l)
{
    kp_loop_end_with(e, l, KP_LOOP_NO_VECTORIZE);
}

/* The accumulators of a micro-tile over the block's k: from zero (or C:
 * accumulate mode, a k block after the first) an fma per k. */
static void multiply(const Block *s, int mr, int nv, int lanes, LLVMValueRef i, LLVMValueRef j,
                     LLVMValueRef slot[][KP_GEMM_MAX_NV])
{
    KpEmit *e = s->e;
    const KpGemm *g = s->g;
    bool accumulate = g->accumulate && !s->it->partials;
    ARows a = a_rows(s, i);
    LLVMValueRef bbase[KP_GEMM_MAX_NV], bsrc[KP_GEMM_MAX_NV];
    int64_t bks = 0, rs = g->b.view.rs;
    for (int v = 0; v < nv; v++) {
        bbase[v] = b_vec(s, j, v, &bks);
        if (s->packing)
            bsrc[v] = kp_gemm_view_at(e, s->ka, &g->b.view, s->grp, s->pc, kp_iaddc(e, j, (int64_t)v * e->vw));
    }
    /* lanes past C are read only from packed panels (never past their end) */
    int bmask = s->packing || (!s->p->pack_b && g->b.source == KP_GEMM_VIEW) ? lanes : e->vw;
    LLVMValueRef zero = kp_fconst(e->vec, 0.0);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            LLVMValueRef init = zero;
            if (accumulate || !s->one_k) {
                init = kp_gemm_load(e, c_at(s, i, r, j, v), v == nv - 1 ? lanes : e->vw);
                if (!accumulate)
                    init = LLVMBuildSelect(e->b, s->first, zero, init, "");
            }
            LLVMBuildStore(e->b, init, slot[r][v]);
        }
    KpLoop lk;
    kp_loop_begin(e, &lk, kp_i64(e, 0), s->kc, 1, "k");
    LLVMValueRef bv[KP_GEMM_MAX_NV];
    for (int v = 0; v < nv; v++) {
        if (!s->packing) {
            bv[v] = kp_gemm_load(e, kp_gep(e, bbase[v], kp_imulc(e, lk.iv, bks)), v == nv - 1 ? bmask : e->vw);
            continue;
        }
        /* the source row, the panel's lanes past C zero; the next tile's
         * lines of the same row prefetched (the block comes from L3 or
         * memory once, here, with the multiply-adds to cover it) */
        LLVMValueRef src = kp_gep(e, bsrc[v], kp_imulc(e, lk.iv, rs));
        bv[v] = kp_gemm_load(e, src, v == nv - 1 ? bmask : e->vw);
        kp_gemm_store(e, bv[v], kp_gep(e, bbase[v], kp_imulc(e, lk.iv, bks)), e->vw);
        if (v % (KP_GEMM_PANEL / e->vw) == 0)
            kp_prefetch(e, src, kp_i64(e, (int64_t)nv * e->vw));
    }
    LLVMValueRef ak = kp_imulc(e, lk.iv, a.ks);
    for (int r = 0; r < mr; r++) {
        LLVMValueRef x = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a.base, kp_iaddc(e, ak, r * a.rs)), "");
        LLVMValueRef xs = kp_splat(e, x);
        for (int v = 0; v < nv; v++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, slot[r][v], "");
            LLVMBuildStore(e->b, kp_fma(e, xs, bv[v], old), slot[r][v]);
        }
    }
    kp_gemm_loop_end(e, &lk);
}

/* The accumulators of a micro-tile of a split k: from zero (or C) the
 * chunks' partials added in chunk order. */
static void add_partials(const Block *s, int mr, int nv, int lanes, LLVMValueRef i, LLVMValueRef j,
                         LLVMValueRef slot[][KP_GEMM_MAX_NV])
{
    KpEmit *e = s->e;
    LLVMValueRef zero = kp_fconst(e->vec, 0.0);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            int w = v == nv - 1 ? lanes : e->vw;
            LLVMBuildStore(e->b, s->g->accumulate ? kp_gemm_load(e, c_at(s, i, r, j, v), w) : zero,
                           slot[r][v]);
        }
    int64_t n = s->g->n.size;
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), s->it->nchunks, 1, "chunk");
    LLVMValueRef part = kp_gep(e, s->it->partials, kp_imulc(e, lc.iv, s->p->m_floats));
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            LLVMValueRef at = kp_iadd(e, kp_imulc(e, kp_iaddc(e, i, r), n), kp_iaddc(e, j, (int64_t)v * e->vw));
            LLVMValueRef x = kp_gemm_load(e, kp_gep(e, part, at), v == nv - 1 ? lanes : e->vw);
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, slot[r][v], "");
            LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, old, x, ""), slot[r][v]);
        }
    kp_gemm_loop_end(e, &lc);
}

static void store_plain(const Block *s, const KpGemmTile *t)
{
    for (int r = 0; r < t->mr; r++)
        for (int v = 0; v < t->nv; v++)
            kp_gemm_store(s->e, t->acc[r][v], c_at(s, t->i0, r, t->j0, v),
                        v == t->nv - 1 ? t->lanes : s->e->vw);
}

/* One micro-tile: rows [i, i+mr), columns [j, j + nv*vw), the last
 * vector `lanes` wide: its accumulators, then the store — the final one
 * after the last k block (or the reduction), a plain one before it (and
 * for a chunk of a split k). */
static void micro(const Block *s, int mr, int nv, int lanes, LLVMValueRef i, LLVMValueRef j)
{
    KpEmit *e = s->e;
    const KpGemm *g = s->g;
    LLVMValueRef slot[KP_GEMM_MAX_MR][KP_GEMM_MAX_NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            slot[r][v] = kp_alloca(e, e->vec, "acc");
    if (s->reduce)
        add_partials(s, mr, nv, lanes, i, j, slot);
    else
        multiply(s, mr, nv, lanes, i, j, slot);
    KpGemmTile t = {.ka = s->ka, .g = s->grp, .i0 = i, .j0 = j, .mr = mr, .nv = nv, .lanes = lanes};
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            t.acc[r][v] = LLVMBuildLoad2(e->b, e->vec, slot[r][v], "");
    if (s->it->partials && !s->reduce) {
        store_plain(s, &t);
        return;
    }
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef join = NULL;
    if (!s->one_k && !s->reduce) {
        LLVMBasicBlockRef fin = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.final");
        LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.partial");
        join = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.done");
        LLVMBuildCondBr(e->b, s->last, fin, part);
        LLVMPositionBuilderAtEnd(e->b, part);
        store_plain(s, &t);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, fin);
    }
    if (g->store)
        g->store(e, &t, g->store_user);
    else
        store_plain(s, &t);
    if (join) {
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
}

/* Rows [i, i+mr) across the column block: tiles of nv vectors, then the
 * narrower last tile of C when this block ends there.  When an item's
 * columns are one block, that block is the last and its width known. */
static void row_tiles(const Block *s, int mr, int nv, LLVMValueRef i)
{
    KpEmit *e = s->e;
    int64_t nr = (int64_t)nv * e->vw, edge = s->wlast % nr;
    LLVMValueRef full = kp_i64(e, s->wlast / nr);
    if (!s->p->one_block)
        full = LLVMBuildUDiv(e->b, s->ncur, kp_i64(e, nr), "tiles");
    if (!s->p->one_block || s->wlast >= nr) {
        KpLoop lt;
        kp_loop_begin(e, &lt, kp_i64(e, 0), full, 1, "jt");
        micro(s, mr, nv, e->vw, i, kp_iadd(e, s->jc, kp_imulc(e, lt.iv, nr)));
        kp_loop_end(e, &lt);
    }
    if (edge == 0)
        return;
    LLVMBasicBlockRef join = NULL;
    if (!s->p->one_block) {
        LLVMValueRef end = kp_iadd(e, s->jc, s->ncur);
        join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntEQ, end, kp_i64(e, s->g->n.size), ""), "edge");
    }
    int nve = (int)((edge + e->vw - 1) / e->vw);
    int lanes = (int)(edge - (int64_t)(nve - 1) * e->vw);
    micro(s, mr, nve, lanes, i, kp_iadd(e, s->jc, kp_imulc(e, full, nr)));
    if (join)
        kp_if_end(e, join);
}

static void pack(const Block *s, const KpGemmOperand *op, LLVMValueRef dst, LLVMValueRef l0,
                 LLVMValueRef nl, int w, bool is_b)
{
    KpGemmPackArgs a = {.ka = s->ka, .g = s->grp, .dst = dst, .l0 = l0, .nl = nl,
                        .k0 = s->pc, .kc = s->kc, .w = w, .is_b = is_b};
    if (op->source == KP_GEMM_CUSTOM)
        op->pack(s->e, &a, op->pack_user);
    else
        kp_gemm_pack_view(s->e, &a, &op->view);
}

/* The rows [i0, i0 + mi) of the item across the column block: tiles of
 * mr rows, then one-row tiles for what is left. */
static void rows(const Block *s, LLVMValueRef mi)
{
    KpEmit *e = s->e;
    const KpGemmPlan *p = s->p;
    LLVMValueRef full = LLVMBuildUDiv(e->b, mi, kp_i64(e, p->mr), "rowtiles");
    LLVMValueRef from = kp_i64(e, 0);
    if (p->fuse_b && !s->reduce) {
        /* the first row tile packs B; without one, the packer does */
        LLVMValueRef some = LLVMBuildICmp(e->b, LLVMIntUGT, full, kp_i64(e, 0), "");
        LLVMBasicBlockRef no = kp_if_begin(e, LLVMBuildNot(e->b, some, ""), "pack");
        pack(s, &s->g->b, s->bpk, s->jc, s->ncur, KP_GEMM_PANEL, true);
        kp_if_end(e, no);
        LLVMBasicBlockRef yes = kp_if_begin(e, some, "fused");
        Block first = *s;
        first.packing = true;
        row_tiles(&first, p->mr, p->nv, s->i0);
        kp_if_end(e, yes);
        from = LLVMBuildZExt(e->b, some, e->i64, "");
    }
    KpLoop lr;
    kp_loop_begin(e, &lr, from, full, 1, "it");
    row_tiles(s, p->mr, p->nv, kp_iadd(e, s->i0, kp_imulc(e, lr.iv, p->mr)));
    kp_loop_end(e, &lr);
    if (p->row_nv == 0)
        return;
    kp_loop_begin(e, &lr, kp_imulc(e, full, p->mr), mi, 1, "ir");
    row_tiles(s, 1, p->row_nv, kp_iadd(e, s->i0, lr.iv));
    kp_loop_end(e, &lr);
}

static Block block(KpEmit *e, const KpGemm *g, const KpGemmPlan *p, const KpKernelArgs *ka,
                   const KpGemmItem *it)
{
    Block s = {.e = e, .g = g, .p = p, .ka = ka, .it = it, .grp = it->grp, .i0 = it->i0};
    int64_t n = g->n.size, last_chunk = (p->ncol_chunks - 1) * p->nci;
    s.wlast = (n - last_chunk) - (n - last_chunk - 1) / p->nc * p->nc;
    return s;
}

/* The item's k blocks; per block its A rows packed, then per column
 * block its B columns packed and the rows computed. */
void kp_gemm_item(KpEmit *e, const KpGemm *g, const KpGemmPlan *p, const KpKernelArgs *ka,
                  const KpGemmItem *it)
{
    Block s = block(e, g, p, ka, it);
    s.kfull = it->kfull;
    if (p->pack_a)
        s.apk = it->scratch;
    if (p->pack_b)
        s.bpk = kp_gep(e, it->scratch, kp_i64(e, p->a_floats));
    s.one_k = !g->k.batched && g->k.size <= p->kc && p->kchunks_max == 1;
    KpLoop lp;
    kp_loop_begin(e, &lp, it->k0, it->kend, p->kc, "pc");
    s.pc = lp.iv;
    s.kc = kp_min_i64(e, kp_i64(e, p->kc), LLVMBuildNSWSub(e->b, it->kend, lp.iv, ""));
    s.first = LLVMBuildICmp(e->b, LLVMIntEQ, lp.iv, it->k0, "first");
    s.last = LLVMBuildICmp(e->b, LLVMIntSGE, kp_iadd(e, lp.iv, s.kc), it->kend, "last");
    if (p->pack_a)
        pack(&s, &g->a, s.apk, it->i0, it->mi, p->mr, false);
    KpLoop lj;
    kp_loop_begin(e, &lj, it->j0, it->jend, p->nc, "jc");
    s.jc = lj.iv;
    s.ncur = kp_min_i64(e, kp_i64(e, p->nc), LLVMBuildNSWSub(e->b, it->jend, lj.iv, ""));
    if (p->pack_b && !p->fuse_b)
        pack(&s, &g->b, s.bpk, s.jc, s.ncur, KP_GEMM_PANEL, true);
    rows(&s, it->mi);
    kp_loop_end(e, &lj);
    kp_loop_end(e, &lp);
}

void kp_gemm_reduce(KpEmit *e, const KpGemm *g, const KpGemmPlan *p, const KpKernelArgs *ka,
                    const KpGemmItem *it)
{
    Block s = block(e, g, p, ka, it);
    s.reduce = true;
    KpLoop lj;
    kp_loop_begin(e, &lj, it->j0, it->jend, p->nc, "jc");
    s.jc = lj.iv;
    s.ncur = kp_min_i64(e, kp_i64(e, p->nc), LLVMBuildNSWSub(e->b, it->jend, lj.iv, ""));
    rows(&s, it->mi);
    kp_loop_end(e, &lj);
}
