/*
 * emit_grad_dense.c — the dense layer's gradients.
 *
 *   dense_grad_x:  dx[i,k]  = sum_o dy[i,o] W[o,k]     dy [N,out], W [out,in] -> [N,in]
 *   dense_grad_w:  dW[o,k] += sum_i dy[i,o] x[i,k]     dy [N,out], x [N,in]   -> [out,in]
 *   bias_grad:     db[o]   += sum_i dy[i,o]            dy [N,out]             -> [out]
 *                  (and dy [N,C,H,W]: a vector sum over each channel's planes)
 *
 * The first two are one shape of GEMM, C[r,k] (+)= sum_j A[r,j] B[j,k],
 * with B and C rows contiguous along k and A read one scalar at a time:
 *
 *             grad_x           grad_w
 *   r         i (batch, N)     o (out)
 *   j         o (out)          i (batch, N)
 *   A[r,j]    dy[r*out + j]    dy[j*out + r]
 *   B[j,:]    W[j,:]           x[j,:]
 *
 * Work items are (row block of RB rows, column tile of KV vectors):
 *
 *   k ->       tile 0 (KV*VW)  tile 1   ...  last tile (compile-time layout)
 *   rows 0-3  | item 0        | item 1 | ...
 *   rows 4-7  | ...
 *
 * Per j, the KV vectors of B[j, tile] are loaded once and each of the RB
 * rows' A[r,j], splatted, feeds KV fma chains: RB*KV accumulators.  A
 * partial last vector is a masked load/store.  Every C element is summed
 * by one thread over j = 0, 1, ... in order, starting from zero or (for a
 * gradient slot) from its current value, so results do not depend on how
 * items are split across threads.  A row block that is short (n not a
 * multiple of RB) is done one row at a time, in the same order.
 */
#include "emit.h"

enum { RB = 4, KV = 2 };

typedef struct Gemm {
    int64_t sa_r, sa_j;         /* A[r,j] = A[r*sa_r + j*sa_j] */
    int64_t cols;               /* k: the length of B's and C's rows */
    int64_t rows;               /* > 0: constant row count; 0: n */
    int64_t js;                 /* > 0: constant j count; 0: n */
    int ia, ib;                 /* which kernel pointers are A and B */
} Gemm;

/* The layout of one column tile: nv vectors, the last with rem lanes (0: whole). */
typedef struct Tile {
    int nv, rem;
} Tile;

static LLVMValueRef load_lanes(KpEmit *e, LLVMValueRef p, LLVMValueRef i, int masked, int rem)
{
    return masked ? kp_load_vec_masked(e, p, i, rem, 0.0) : kp_load_vec(e, p, i);
}

/* C[r0..r0+nr, k0..k0+tile) for a constant nr rows. */
static void gemm_tile(KpEmit *e, const KpKernelArgs *a, const Gemm *s, LLVMValueRef r0, int nr,
                      LLVMValueRef k0, Tile t)
{
    LLVMValueRef A = a->p[s->ia], B = a->p[s->ib], C = a->p[e->node->nin];
    LLVMValueRef acc[RB][KV], crow[RB];
    for (int r = 0; r < nr; r++) {
        LLVMValueRef row = LLVMBuildNSWAdd(e->b, r0, kp_i64(e, r), "");
        crow[r] = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, row, kp_i64(e, s->cols), ""), k0, "crow");
        for (int v = 0; v < t.nv; v++) {
            acc[r][v] = kp_alloca(e, e->vec, "acc");
            LLVMValueRef init = kp_fconst(e->vec, 0.0);
            if (e->accumulate)
                init = load_lanes(e, C, LLVMBuildNSWAdd(e->b, crow[r], kp_i64(e, v * e->vw), ""),
                                  v == t.nv - 1 && t.rem, t.rem);
            LLVMBuildStore(e->b, init, acc[r][v]);
        }
    }
    LLVMValueRef jend = s->js > 0 ? kp_i64(e, s->js) : a->n;
    KpLoop lj;
    kp_loop_begin(e, &lj, kp_i64(e, 0), jend, 1, "j");
    LLVMValueRef brow = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, lj.iv, kp_i64(e, s->cols), ""), k0, "");
    LLVMValueRef bv[KV];
    for (int v = 0; v < t.nv; v++)
        bv[v] = load_lanes(e, B, LLVMBuildNSWAdd(e->b, brow, kp_i64(e, v * e->vw), ""),
                           v == t.nv - 1 && t.rem, t.rem);
    LLVMValueRef ja = LLVMBuildNSWMul(e->b, lj.iv, kp_i64(e, s->sa_j), "");
    for (int r = 0; r < nr; r++) {
        LLVMValueRef row = LLVMBuildNSWAdd(e->b, r0, kp_i64(e, r), "");
        LLVMValueRef ai = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, row, kp_i64(e, s->sa_r), ""), ja, "");
        LLVMValueRef av = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, A, ai), ""));
        for (int v = 0; v < t.nv; v++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[r][v], "");
            LLVMBuildStore(e->b, kp_fma(e, av, bv[v], old), acc[r][v]);
        }
    }
    kp_loop_end(e, &lj);
    for (int r = 0; r < nr; r++)
        for (int v = 0; v < t.nv; v++) {
            LLVMValueRef sum = LLVMBuildLoad2(e->b, e->vec, acc[r][v], "");
            LLVMValueRef i = LLVMBuildNSWAdd(e->b, crow[r], kp_i64(e, v * e->vw), "");
            sum = kp_emit_epilogue(e, e->node, a->p, sum, i, v == t.nv - 1 && t.rem ? t.rem : 0);
            if (v == t.nv - 1 && t.rem)
                kp_store_vec_masked(e, sum, C, i, t.rem);
            else
                kp_store_vec(e, sum, C, i);
        }
}

/* Rows [r0, r0 + nrows) of one tile: RB at once when the block is full,
 * else one at a time. */
static void gemm_rows(KpEmit *e, const KpKernelArgs *a, const Gemm *s, LLVMValueRef r0,
                      LLVMValueRef nrows, LLVMValueRef k0, Tile t)
{
    if (s->rows > 0 && s->rows % RB == 0) {     /* every block is full */
        gemm_tile(e, a, s, r0, RB, k0, t);
        return;
    }
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(e->ctx, fn, "rows.full");
    LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(e->ctx, fn, "rows.part");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "rows.join");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, nrows, kp_i64(e, RB), ""), full, part);
    LLVMPositionBuilderAtEnd(e->b, full);
    gemm_tile(e, a, s, r0, RB, k0, t);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, part);
    KpLoop lr;
    kp_loop_begin(e, &lr, r0, LLVMBuildNSWAdd(e->b, r0, nrows, ""), 1, "r");
    gemm_tile(e, a, s, lr.iv, 1, k0, t);
    kp_loop_end(e, &lr);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, join);
}

static int64_t tile_floats(const KpEmit *e)
{
    return (int64_t)KV * e->vw;
}

static void gemm_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Gemm *s = user;
    int64_t tf = tile_floats(e), nkt = (s->cols + tf - 1) / tf;
    int64_t last = s->cols - (nkt - 1) * tf;    /* floats in the last tile, 1..tf */
    Tile whole = {KV, 0};
    Tile lastt = {(int)((last + e->vw - 1) / e->vw), (int)(last % e->vw)};
    LLVMValueRef rows = s->rows > 0 ? kp_i64(e, s->rows) : a->n;

    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef rb = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, nkt), "rb");
    LLVMValueRef kt = LLVMBuildNSWSub(e->b, li.iv, LLVMBuildNSWMul(e->b, rb, kp_i64(e, nkt), ""), "kt");
    LLVMValueRef r0 = LLVMBuildNSWMul(e->b, rb, kp_i64(e, RB), "r0");
    LLVMValueRef nrows = LLVMBuildNSWSub(e->b, kp_min_i64(e, LLVMBuildNSWAdd(e->b, r0, kp_i64(e, RB), ""), rows),
                                         r0, "nrows");
    LLVMValueRef k0 = LLVMBuildNSWMul(e->b, kt, kp_i64(e, tf), "k0");
    if (lastt.nv == KV && lastt.rem == 0) {
        gemm_rows(e, a, s, r0, nrows, k0, whole);
    } else {
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bw = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.whole");
        LLVMBasicBlockRef bl = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.last");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.join");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, kt, kp_i64(e, nkt - 1), ""), bw, bl);
        LLVMPositionBuilderAtEnd(e->b, bw);
        gemm_rows(e, a, s, r0, nrows, k0, whole);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, bl);
        gemm_rows(e, a, s, r0, nrows, k0, lastt);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    kp_loop_end(e, &li);
}

static void emit_gemm(KpEmit *e, const Gemm *s, int64_t macs_at_max_batch)
{
    int64_t tf = tile_floats(e), nkt = (s->cols + tf - 1) / tf;
    LLVMValueRef rows = s->rows > 0 ? kp_i64(e, s->rows) : e->n;
    LLVMValueRef nrb = LLVMBuildSDiv(e->b, LLVMBuildNSWAdd(e->b, rows, kp_i64(e, RB - 1), ""),
                                     kp_i64(e, RB), "nrb");
    LLVMValueRef items = LLVMBuildNSWMul(e->b, nrb, kp_i64(e, nkt), "items");
    /* as for dense: below ~64k multiply-adds a thread team costs more than it saves */
    kp_emit_parallel(e, "gemm", kp_i64(e, 0), items, macs_at_max_batch >= 65536, gemm_kernel,
                     (void *)s);
}

/* dy [N,out], W [out,in] -> dx [N,in] */
int emit_dense_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t out = n->in[1]->dims[0], in = n->in[1]->dims[1];
    Gemm s = {.sa_r = out, .sa_j = 1, .cols = in, .rows = 0, .js = out, .ia = 0, .ib = 1};
    emit_gemm(e, &s, e->g->max_batch * in * out);
    return 0;
}

/* dy [N,out], x [N,in] -> dW [out,in] */
int emit_dense_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t out = n->in[0]->dims[1], in = n->in[1]->dims[1];
    Gemm s = {.sa_r = 1, .sa_j = out, .cols = in, .rows = out, .js = 0, .ia = 0, .ib = 1};
    emit_gemm(e, &s, e->g->max_batch * in * out);
    return 0;
}

/* db[o0 .. o0+VW) (+)= sum over rows i = 0, 1, ... of dy[i, o0 ..]. */
static void bias_vec(KpEmit *e, const KpKernelArgs *a, int64_t out, LLVMValueRef o0, int masked,
                     int rem)
{
    LLVMValueRef dy = a->p[0], db = a->p[1];
    LLVMValueRef acc = kp_alloca(e, e->vec, "acc");
    LLVMBuildStore(e->b, e->accumulate ? load_lanes(e, db, o0, masked, rem) : kp_fconst(e->vec, 0.0),
                   acc);
    KpLoop li;
    kp_loop_begin(e, &li, kp_i64(e, 0), a->n, 1, "i");
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, out), ""), o0, "");
    LLVMValueRef sum = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""),
                                     load_lanes(e, dy, at, masked, rem), "");
    LLVMBuildStore(e->b, sum, acc);
    kp_loop_end(e, &li);
    LLVMValueRef res = LLVMBuildLoad2(e->b, e->vec, acc, "");
    if (masked)
        kp_store_vec_masked(e, res, db, o0, rem);
    else
        kp_store_vec(e, res, db, o0);
}

/* Items are vectors of o; the last may be partial (masked). */
static void bias_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    int64_t out = *(const int64_t *)user;
    int rem = (int)(out % e->vw);
    int64_t nvec = (out + e->vw - 1) / e->vw;
    KpLoop lv;
    kp_loop_begin(e, &lv, a->begin, a->end, 1, "vec");
    LLVMValueRef o0 = LLVMBuildNSWMul(e->b, lv.iv, kp_i64(e, e->vw), "o0");
    if (rem == 0) {
        bias_vec(e, a, out, o0, 0, 0);
    } else {
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bw = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.whole");
        LLVMBasicBlockRef bp = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.part");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.join");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, lv.iv, kp_i64(e, nvec - 1), ""), bw, bp);
        LLVMPositionBuilderAtEnd(e->b, bw);
        bias_vec(e, a, out, o0, 0, 0);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, bp);
        bias_vec(e, a, out, o0, 1, rem);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    kp_loop_end(e, &lv);
}

/* db[c] (+)= the sum over n of dy[n,c,0..hw), vectors along hw (the last
 * masked), lanes summed by a fixed tree at the end; items are channels. */
typedef struct BiasPlanes {
    int64_t c, hw;
} BiasPlanes;

static void bias_planes_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const BiasPlanes *s = user;
    LLVMValueRef dy = a->p[0], db = a->p[1];
    int64_t nwhole = s->hw / e->vw, rem = s->hw % e->vw;
    LLVMValueRef acc = kp_alloca(e, e->vec, "acc");
    KpLoop lc, li, lv;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "c");
    LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc);
    kp_loop_begin(e, &li, kp_i64(e, 0), a->n, 1, "i");
    LLVMValueRef plane = LLVMBuildNSWMul(
        e->b, LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, s->c), ""), lc.iv, ""),
        kp_i64(e, s->hw), "");
    if (nwhole > 0) {
        kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, nwhole * e->vw), e->vw, "v");
        LLVMValueRef x = kp_load_vec(e, dy, LLVMBuildNSWAdd(e->b, plane, lv.iv, ""));
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""), x, ""), acc);
        kp_loop_end(e, &lv);
    }
    if (rem > 0) {
        LLVMValueRef at = LLVMBuildNSWAdd(e->b, plane, kp_i64(e, nwhole * e->vw), "");
        LLVMValueRef x = kp_load_vec_masked(e, dy, at, (int)rem, 0.0);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""), x, ""), acc);
    }
    kp_loop_end(e, &li);
    LLVMValueRef sum = kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, acc, ""));
    if (e->accumulate)
        sum = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, db, lc.iv), ""), sum, "");
    LLVMBuildStore(e->b, sum, kp_gep(e, db, lc.iv));
    kp_loop_end(e, &lc);
}

/* dy [N,C,...] -> db [C] */
int emit_bias_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0];
    int64_t out = dy->dims[1], hw = 1;
    for (int k = 2; k < dy->rank; k++)
        hw *= dy->dims[k];
    if (hw > 1) {
        BiasPlanes s = {out, hw};
        int parallel = e->g->max_batch * out * hw >= 65536 && out > 1;
        kp_emit_parallel(e, "bias", kp_i64(e, 0), kp_i64(e, out), parallel, bias_planes_kernel, &s);
        return 0;
    }
    int64_t nvec = (out + e->vw - 1) / e->vw;
    int parallel = e->g->max_batch * out >= 65536;
    kp_emit_parallel(e, "bias", kp_i64(e, 0), kp_i64(e, nvec), parallel, bias_kernel, &out);
    return 0;
}
