/*
 * emit_grad_dense.c — the dense layer's gradients.
 *
 *   dense_grad_x:  dx[i,k]  = sum_o dy[i,o] W[o,k]     dy [N,out], W [out,in] -> [N,in]
 *   dense_grad_w:  dW[o,k] += sum_i dy[i,o] x[i,k]     dy [N,out], x [N,in]   -> [out,in]
 *   bias_grad:     db[o]   += sum_i dy[i,o]            dy [N,out]             -> [out]
 *                  (and dy [N,C,H,W]: a vector sum over each channel's planes)
 *
 * The first two are GEMMs (gemm.h), C = A·B:
 *
 *             grad_x                   grad_w
 *   C         dx   [N x in]            dW   [out x in], accumulated
 *   A         dy   [N x out]           dy^T [out x N]   (rows contiguous)
 *   B         W    [out x in]          x    [N x in]
 *   k         out                      N (the batch)
 *
 * Every operand is contiguous along the columns of C or readable in
 * place, so the generator packs only where cache sets collide.  Each C
 * element is summed over k in order, from zero or (for a gradient slot)
 * from its current value, by one thread (or, for dense_axpy's halves
 * below, as two fixed partial sums added in order), so results do not
 * depend on the thread count.  The bias gradient sums each output over
 * the batch in order, one thread per vector of outputs.
 *
 * A model compiled for batch 1 takes the input gradient as row updates
 * instead (dense_axpy): dx += dy[k] W[k,:] for k in order, each work item
 * a range of dx's columns that stays in L1 while W streams through row by
 * row.  The GEMM would walk W down its columns, a stride of a whole row
 * per step, which the prefetchers do not follow: for fashion_cnn's dense4
 * (W 128 x 9216) that was the slowest kernel of the batch-1 step.  Each
 * dx element still sums over k in order from zero (or its current value),
 * with the same fused multiply-adds, so the bits are the GEMM's.
 *
 * A weight worth two threads (kp_gemm_worth_threads) is read in two
 * halves of its rows instead, half h's items before half h+1's: item
 * (h, c) sums rows [h kh, (h+1) kh) into partial h of columns c (the
 * call's shared scratch), and the second of the two to finish adds
 * dx[c] (+)= p0[c] + p1[c].  With two threads the first thread's share is
 * then the first half of W's rows, the rows it reads in the forward's dot
 * kernel and writes in the update: cut by columns, each core read half of
 * every row, and on cores that share no cache the update then waited on
 * the other core's copies of the lines it wrote (fashion_cnn's dense4 at
 * batch 1: docs/kernels-gemm.md, "Batch 1 on cores far apart").  The
 * halves come from the shape alone, so the bits do not depend on the host
 * or the thread count (they are no longer the one-pass sum's).  The
 * weight gradient at batch 1 is an outer product, dW[o,:] (+)= dy[o] x,
 * one fused multiply-add per element as in the GEMM (dense_outer): rows of
 * dW stream through once while x stays in cache.
 */
#include "../ir/epilogue.h"
#include "../passes/passes.h"
#include "gemm.h"

typedef struct DenseAxpy {
    int64_t in, out, cv;        /* cv: whole vectors of columns per item */
    int accumulate;
    int dx_arg;                 /* the output's argument */
    int64_t halves, kh;         /* W's rows in `halves` parts (1 or 2) of kh */
    int64_t citems;             /* items per half */
    int64_t part_floats;        /* one partial dx, whole vectors */
    int64_t shared_at;          /* partials, then a counter per column item */
} DenseAxpy;

/* dst's columns [v0, v1) in vectors (or the last, partial vector with
 * masked): for k in [k0, k1) in order, dst[j] = fma(dy[k], W[k][j],
 * dst[j]), from zero unless add, four k at a time between a load and a
 * store of dst */
static void axpy_columns(KpEmit *e, const KpKernelArgs *a, const DenseAxpy *s, LLVMValueRef dx,
                         int64_t k0, int64_t k1, int add, LLVMValueRef v0, LLVMValueRef v1, int masked)
{
    LLVMValueRef dy = a->p[0], W = a->p[1];
    int rem = (int)(s->in % e->vw);
    KpLoop lj, lk;
    if (!add) {
        kp_loop_begin(e, &lj, v0, v1, 1, "zero");
        LLVMValueRef j = kp_imulc(e, lj.iv, e->vw);
        if (masked)
            kp_store_vec_masked(e, kp_fconst(e->vec, 0.0), dx, j, rem);
        else
            kp_store_vec(e, kp_fconst(e->vec, 0.0), dx, j);
        kp_loop_end(e, &lj);
    }
    int64_t groups = (k1 - k0) / 4;
    for (int tail = 0; tail < 2; tail++) {
        int64_t nk = tail ? (k1 - k0) % 4 : 4;
        if (nk == 0 || (!tail && groups == 0))
            continue;
        LLVMValueRef kq;
        if (!tail) {
            kp_loop_begin(e, &lk, kp_i64(e, k0), kp_i64(e, k0 + groups * 4), 4, "k");
            kq = lk.iv;
        } else {
            kq = kp_i64(e, k0 + groups * 4);
        }
        LLVMValueRef d[4], row[4];
        for (int q = 0; q < nk; q++) {
            LLVMValueRef k = kp_iaddc(e, kq, q);
            d[q] = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, dy, k), "dy"));
            row[q] = kp_imulc(e, k, s->in);
        }
        kp_loop_begin(e, &lj, v0, v1, 1, "j");
        LLVMValueRef j = kp_imulc(e, lj.iv, e->vw);
        LLVMValueRef c = masked ? kp_load_vec_masked(e, dx, j, rem, 0.0) : kp_load_vec(e, dx, j);
        for (int q = 0; q < nk; q++) {
            LLVMValueRef at = kp_iadd(e, row[q], j);
            LLVMValueRef w = masked ? kp_load_vec_masked(e, W, at, rem, 0.0) : kp_load_vec(e, W, at);
            c = kp_fma(e, d[q], w, c);
        }
        if (masked)
            kp_store_vec_masked(e, c, dx, j, rem);
        else
            kp_store_vec(e, c, dx, j);
        kp_loop_end(e, &lj);
        if (!tail)
            kp_loop_end(e, &lk);
    }
}

/* dx's columns [v0, v1) (+)= p0 + p1, in that order */
static void add_halves(KpEmit *e, const DenseAxpy *s, LLVMValueRef dx, LLVMValueRef p0, LLVMValueRef v0,
                       LLVMValueRef v1, int masked)
{
    int rem = (int)(s->in % e->vw);
    LLVMValueRef p1 = kp_gep(e, p0, kp_i64(e, s->part_floats));
    KpLoop lj;
    kp_loop_begin(e, &lj, v0, v1, 1, "j");
    LLVMValueRef j = kp_imulc(e, lj.iv, e->vw);
    LLVMValueRef c = LLVMBuildFAdd(e->b, kp_load_vec(e, p0, j), kp_load_vec(e, p1, j), "");
    if (s->accumulate)
        c = LLVMBuildFAdd(e->b, masked ? kp_load_vec_masked(e, dx, j, rem, 0.0) : kp_load_vec(e, dx, j), c, "");
    if (masked)
        kp_store_vec_masked(e, c, dx, j, rem);
    else
        kp_store_vec(e, c, dx, j);
    kp_loop_end(e, &lj);
}

/* The columns of item c: whole vectors [c cv, min((c+1) cv, in / vw)),
 * and for the last item the partial vector too; dst's sums over rows
 * [k0, k1), or the halves added. */
static void item_columns(KpEmit *e, const KpKernelArgs *a, const DenseAxpy *s, LLVMValueRef c,
                         LLVMValueRef dst, int64_t k0, int64_t k1, int add, LLVMValueRef part0)
{
    int64_t whole = s->in / e->vw;
    LLVMValueRef v0 = kp_imulc(e, c, s->cv);
    LLVMValueRef v1 = kp_min_i64(e, kp_imulc(e, kp_iaddc(e, c, 1), s->cv), kp_i64(e, whole));
    for (int masked = 0; masked < 2; masked++) {
        LLVMBasicBlockRef join = NULL;
        if (masked) {
            if (s->in % e->vw == 0)
                break;
            v0 = kp_i64(e, whole);
            v1 = kp_i64(e, whole + 1);
            join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntEQ, c, kp_i64(e, s->citems - 1), ""),
                               "partial");
        }
        if (part0)
            add_halves(e, s, dst, part0, v0, v1, masked);
        else
            axpy_columns(e, a, s, dst, k0, k1, add, v0, v1, masked);
        if (join)
            kp_if_end(e, join);
    }
}

static void dense_axpy_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const DenseAxpy *s = user;
    LLVMValueRef dx = a->p[s->dx_arg];
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    if (s->halves == 1) {
        item_columns(e, a, s, li.iv, dx, 0, s->out, s->accumulate, NULL);
        kp_loop_end(e, &li);
        return;
    }
    LLVMValueRef h = LLVMBuildUDiv(e->b, li.iv, kp_i64(e, s->citems), "half");
    LLVMValueRef c = LLVMBuildURem(e->b, li.iv, kp_i64(e, s->citems), "cols");
    LLVMValueRef part0 = kp_scratch_shared_at(e, s->shared_at);     /* partials, then counters */
    LLVMValueRef second = LLVMBuildICmp(e->b, LLVMIntEQ, h, kp_i64(e, 1), "");
    LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildNot(e->b, second, ""), "first_half");
    item_columns(e, a, s, c, part0, 0, s->kh, 0, NULL);
    kp_if_end(e, join);
    join = kp_if_begin(e, second, "second_half");
    item_columns(e, a, s, c, kp_gep(e, part0, kp_i64(e, s->part_floats)), s->kh, s->out, 0, NULL);
    kp_if_end(e, join);
    LLVMTypeRef i8 = LLVMInt8TypeInContext(e->ctx);
    LLVMValueRef at = kp_iaddc(e, kp_imulc(e, c, 8), 4 * 2 * s->part_floats);
    LLVMValueRef counter = LLVMBuildInBoundsGEP2(e->b, i8, part0, &at, 1, "counter");
    join = kp_last_begin(e, counter, kp_i64(e, 2));
    item_columns(e, a, s, c, dx, 0, 0, 0, part0);
    kp_last_end(e, counter, join);
    kp_loop_end(e, &li);
}

/* The items: at most 4 KiB of dx each (in L1 with the rows' vectors),
 * a multiple of the host's cores in number where that cuts evenly. */
static void dense_axpy(KpEmit *e, const KpNode *n, int64_t in, int64_t out)
{
    int64_t l1, l2, cores;
    kp_gemm_host(&l1, &l2, &cores);
    int64_t whole = in / e->vw, most = 1024 / e->vw;
    int64_t rounds = kp_ceil_div(whole, cores * most);
    DenseAxpy s = {.in = in, .out = out, .accumulate = e->accumulate, .dx_arg = n->nin, .halves = 1};
    s.cv = whole ? kp_ceil_div(whole, cores * (rounds ? rounds : 1)) : 1;
    s.citems = kp_ceil_div(whole ? whole : 1, s.cv);
    bool worth = kp_gemm_worth_threads(in * out, 4 * in * out);
    if (kp_dense_grad_x_halves(e->g, n)) {
        s.halves = 2;
        s.kh = kp_ceil_div(out, 2);
        s.part_floats = kp_round_up(in, e->vw);
        int64_t bytes = 4 * 2 * s.part_floats + 8 * s.citems;
        s.shared_at = kp_scratch_shared_take(e, "dense_axpy", bytes, s.part_floats);
    }
    int64_t items = s.halves * s.citems;
    bool parallel = items > 1 && worth;
    kp_emit_parallel(e, "dense_axpy", kp_i64(e, 0), kp_i64(e, items), parallel, dense_axpy_kernel, &s);
}

typedef struct DenseOuter {
    int64_t in, rows;           /* rows of dW per item */
    int64_t out;
    int accumulate;
} DenseOuter;

/* item i: rows [i rows, min((i+1) rows, out)) of dW */
static void dense_outer_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const DenseOuter *s = user;
    LLVMValueRef dy = a->p[0], x = a->p[1], dW = a->p[2];
    int64_t whole = s->in / e->vw;
    int rem = (int)(s->in % e->vw);
    KpLoop li, lo, lj;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef o0 = kp_imulc(e, li.iv, s->rows);
    LLVMValueRef o1 = kp_min_i64(e, kp_iaddc(e, o0, s->rows), kp_i64(e, s->out));
    kp_loop_begin(e, &lo, o0, o1, 1, "row");
    LLVMValueRef d = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, dy, lo.iv), "dy"));
    LLVMValueRef row = kp_imulc(e, lo.iv, s->in);
    for (int masked = 0; masked < 2; masked++) {
        if (masked && !rem)
            break;
        LLVMValueRef j;
        if (!masked) {
            kp_loop_begin(e, &lj, kp_i64(e, 0), kp_i64(e, whole), 1, "j");
            j = kp_imulc(e, lj.iv, e->vw);
        } else {
            j = kp_i64(e, whole * e->vw);
        }
        LLVMValueRef at = kp_iadd(e, row, j);
        LLVMValueRef xv = masked ? kp_load_vec_masked(e, x, j, rem, 0.0) : kp_load_vec(e, x, j);
        LLVMValueRef c = kp_fconst(e->vec, 0.0);
        if (s->accumulate)
            c = masked ? kp_load_vec_masked(e, dW, at, rem, 0.0) : kp_load_vec(e, dW, at);
        c = kp_fma(e, d, xv, c);
        if (masked)
            kp_store_vec_masked(e, c, dW, at, rem);
        else
            kp_store_vec(e, c, dW, at);
        if (!masked)
            kp_loop_end(e, &lj);
    }
    kp_loop_end(e, &lo);
    kp_loop_end(e, &li);
}

static void dense_outer(KpEmit *e, int64_t in, int64_t out)
{
    int64_t l1, l2, cores;
    kp_gemm_host(&l1, &l2, &cores);
    DenseOuter s = {.in = in, .out = out, .accumulate = e->accumulate};
    /* a multiple of the cores in items, each at least 16 KiB of dW */
    int64_t items = cores * kp_ceil_div(out, cores * kp_ceil_div(4096, in));
    items = items > out ? out : items;
    s.rows = kp_ceil_div(out, items);
    items = kp_ceil_div(out, s.rows);
    bool parallel = items > 1 && kp_gemm_worth_threads(in * out, 4 * in * out);
    kp_emit_parallel(e, "dense_outer", kp_i64(e, 0), kp_i64(e, items), parallel, dense_outer_kernel, &s);
}

/* dy [N,out], W [out,in] -> dx [N,in] */
int emit_dense_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t out = n->in[1]->dims[0], in = n->in[1]->dims[1];
    if (e->accumulate && n->nepi > 0)
        return kp_error(d, "internal error: node %d: epilogues on an accumulated dense_grad_x", n->id);
    KpGemmOut o = {.node = n, .c = {.arg = n->nin, .rs = in, .cs = 1}, .bias_arg = -1};
    KpGemm g = {
        .name = "grad_x",
        .m = {1, true}, .n = {in, false}, .k = {out, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = out, .cs = 1}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = in, .cs = 1}},
        .c = o.c,
        .accumulate = e->accumulate,
        .store = kp_gemm_store_out,
        .store_user = &o,
    };
    if (e->g->max_batch == 1 && n->nepi == 0) {
        dense_axpy(e, n, in, out);
        return 0;
    }
    return kp_gemm_emit(e, &g, d);
}

/* dy [N,out], x [N,in] -> dW [out,in] */
int emit_dense_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t out = n->in[0]->dims[1], in = n->in[1]->dims[1];
    KpGemm g = {
        .name = "grad_w",
        .m = {out, false}, .n = {in, false}, .k = {1, true}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = 1, .cs = out}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = in, .cs = 1}},
        .c = {.arg = 2, .rs = in, .cs = 1},
        .accumulate = e->accumulate,
    };
    if (e->g->max_batch == 1) {
        dense_outer(e, in, out);
        return 0;
    }
    return kp_gemm_emit(e, &g, d);
}

static LLVMValueRef load_lanes(KpEmit *e, LLVMValueRef p, LLVMValueRef i, int masked, int rem)
{
    return masked ? kp_load_vec_masked(e, p, i, rem, 0.0) : kp_load_vec(e, p, i);
}

/* db[o] (+)= the sum over rows i < a->n of dy[i, o] (a->p[0] = dy [n, out],
 * a->p[1] = db), summed in row order; items are vectors of o, the last
 * may be partial (masked). */
typedef struct BiasRows {
    int64_t out;
    int accumulate;
} BiasRows;

/* db[o0 .. o0+VW) (+)= sum over rows i = 0, 1, ... of dy[i, o0 ..]. */
static void bias_vec(KpEmit *e, const KpKernelArgs *a, int64_t out, int accumulate,
                     LLVMValueRef o0, int masked, int rem)
{
    LLVMValueRef dy = a->p[0], db = a->p[1];
    LLVMValueRef acc = kp_alloca(e, e->vec, "acc");
    LLVMBuildStore(e->b, accumulate ? load_lanes(e, db, o0, masked, rem) : kp_fconst(e->vec, 0.0),
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

static void bias_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const BiasRows *r = user;
    int64_t out = r->out;
    int rem = (int)(out % e->vw);
    int64_t nvec = (out + e->vw - 1) / e->vw;
    KpLoop lv;
    kp_loop_begin(e, &lv, a->begin, a->end, 1, "vec");
    LLVMValueRef o0 = LLVMBuildNSWMul(e->b, lv.iv, kp_i64(e, e->vw), "o0");
    if (rem == 0) {
        bias_vec(e, a, out, r->accumulate, o0, 0, 0);
    } else {
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bw = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.whole");
        LLVMBasicBlockRef bp = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.part");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "vec.join");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, lv.iv, kp_i64(e, nvec - 1), ""), bw, bp);
        LLVMPositionBuilderAtEnd(e->b, bw);
        bias_vec(e, a, out, r->accumulate, o0, 0, 0);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, bp);
        bias_vec(e, a, out, r->accumulate, o0, 1, rem);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    kp_loop_end(e, &lv);
}

/* The sum of the hw floats at p + at: PLANE_ACCS vector accumulators
 * taking the vectors in turn (the masked tail into the next one), then a
 * fixed tree over them and over the lanes. */
enum { PLANE_ACCS = 4 };

static LLVMValueRef plane_sum(KpEmit *e, LLVMValueRef p, LLVMValueRef at, int64_t hw)
{
    int64_t vw = e->vw, nv = hw / vw, rem = hw % vw, looped = nv / PLANE_ACCS * PLANE_ACCS;
    LLVMValueRef acc[PLANE_ACCS];
    for (int u = 0; u < PLANE_ACCS; u++) {
        acc[u] = kp_alloca(e, e->vec, "psum");
        LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[u]);
    }
    if (looped > 0) {
        KpLoop lv;
        kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, looped * vw), PLANE_ACCS * vw, "psum");
        for (int u = 0; u < PLANE_ACCS; u++) {
            LLVMValueRef j = LLVMBuildNSWAdd(e->b, lv.iv, kp_i64(e, u * vw), "");
            LLVMValueRef v = kp_load_vec(e, p, LLVMBuildNSWAdd(e->b, at, j, ""));
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[u], "");
            LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, old, v, ""), acc[u]);
        }
        kp_loop_end(e, &lv);
    }
    for (int64_t j = looped; j < nv + (rem > 0); j++) {
        LLVMValueRef i = LLVMBuildNSWAdd(e->b, at, kp_i64(e, j * vw), "");
        LLVMValueRef v = j < nv ? kp_load_vec(e, p, i) : kp_load_vec_masked(e, p, i, (int)rem, 0.0);
        LLVMValueRef u = acc[j % PLANE_ACCS];
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, u, ""), v, ""), u);
    }
    LLVMValueRef v[PLANE_ACCS];
    for (int u = 0; u < PLANE_ACCS; u++)
        v[u] = LLVMBuildLoad2(e->b, e->vec, acc[u], "");
    return kp_reduce_add(e, LLVMBuildFAdd(e->b, LLVMBuildFAdd(e->b, v[0], v[1], ""),
                                          LLVMBuildFAdd(e->b, v[2], v[3], ""), ""));
}

int64_t kp_plane_sums_take(KpEmit *e, int64_t channels)
{
    int64_t rows = e->g->max_batch > 0 ? e->g->max_batch : 1;
    return kp_scratch_shared_take(e, "plane_sums", rows * channels * 4, 0);
}

void kp_emit_plane_sum_store(KpEmit *e, LLVMValueRef sums, LLVMValueRef src, LLVMValueRef plane,
                             int64_t hw)
{
    LLVMValueRef sum = plane_sum(e, src, LLVMBuildNSWMul(e->b, plane, kp_i64(e, hw), ""), hw);
    LLVMBuildStore(e->b, sum, kp_gep(e, sums, plane));
}

/* db[c] (+)= the sums of the planes dy[n,c] (plane_sum) added in the order
 * of n.  In a group, items are channels.  Alone in its region, items are
 * runs of planes, sample-major like the kernel that wrote dy, so a thread
 * mostly reads the planes its own core wrote; each plane's sum goes to the
 * shared scratch (kp_emit_plane_sum_store), and after the region the
 * calling thread adds them in the order of n (kp_emit_plane_sums_add).  A
 * pooling gradient that folds the bias gradient (emit_pool.c) does the
 * same.  All three add the same plane sums in the same order, so fused and
 * unfused builds agree bit for bit, whatever the thread count. */
typedef struct BiasPlanes {
    int64_t c, hw;
    int64_t sums_at;            /* kp_plane_sums_take's range */
} BiasPlanes;

static void plane_sums_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const BiasPlanes *s = user;
    LLVMValueRef sums = kp_scratch_shared_at(e, s->sums_at);
    KpLoop lp;
    kp_loop_begin(e, &lp, a->begin, a->end, 1, "plane");
    kp_emit_plane_sum_store(e, sums, a->p[0], lp.iv, s->hw);
    kp_loop_end(e, &lp);
}

static void bias_planes_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const BiasPlanes *s = user;
    LLVMValueRef dy = a->p[0], db = a->p[1];
    LLVMValueRef acc = kp_alloca(e, e->f32, "acc");
    KpLoop lc, li;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "c");
    LLVMValueRef at = kp_gep(e, db, lc.iv);
    LLVMBuildStore(e->b, e->accumulate ? LLVMBuildLoad2(e->b, e->f32, at, "") : kp_fconst(e->f32, 0),
                   acc);
    kp_loop_begin(e, &li, kp_i64(e, 0), a->n, 1, "i");
    LLVMValueRef plane = LLVMBuildNSWMul(
        e->b, LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, s->c), ""), lc.iv, ""),
        kp_i64(e, s->hw), "");
    LLVMValueRef sum = plane_sum(e, dy, plane, s->hw);
    LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, acc, ""), sum, ""), acc);
    kp_loop_end(e, &li);
    LLVMBuildStore(e->b, LLVMBuildLoad2(e->b, e->f32, acc, ""), at);
    kp_loop_end(e, &lc);
}

/* dy [N,C,...] -> db [C] */
int emit_bias_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0];
    int64_t out = dy->dims[1], hw = 1;
    for (int k = 2; k < dy->rank; k++)
        hw *= dy->dims[k];
    if (hw > 1 && n->group == 0 && e->g->max_batch > 1) {
        /* a region of its own: planes sample-major, as their producer cut them */
        BiasPlanes s = {out, hw, kp_plane_sums_take(e, out)};
        kp_emit_parallel_units(e, "bias", out, hw, plane_sums_kernel, &s);
        kp_emit_plane_sums_add(e, s.sums_at, e->ptr_arg[1], out, e->accumulate);
        return 0;
    }
    if (hw > 1) {
        BiasPlanes s = {out, hw, -1};
        int parallel = e->g->max_batch * out * hw >= 65536 && out > 1;
        kp_emit_parallel(e, "bias", kp_i64(e, 0), kp_i64(e, out), parallel, bias_planes_kernel, &s);
        return 0;
    }
    int64_t nvec = (out + e->vw - 1) / e->vw;
    int parallel = e->g->max_batch * out >= 65536;
    BiasRows r = {out, e->accumulate};
    kp_emit_parallel(e, "bias", kp_i64(e, 0), kp_i64(e, nvec), parallel, bias_kernel, &r);
    return 0;
}

void kp_emit_plane_sums_add(KpEmit *e, int64_t sums_at, LLVMValueRef db, int64_t channels,
                            int accumulate)
{
    BiasRows r = {channels, accumulate};
    KpKernelArgs a = {.p = {kp_scratch_shared_at(e, sums_at), db}, .n = e->n,
                      .begin = kp_i64(e, 0), .end = kp_i64(e, (channels + e->vw - 1) / e->vw)};
    bias_kernel(e, &a, &r);
}
