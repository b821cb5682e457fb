/*
 * emit_conv.c — direct convolution, vectorized along the output width:
 * the gather form of emit_conv.h (conv2d, conv2d_transpose_grad_x), and
 * the scatter form (conv2d_transpose, conv2d_grad_x) as sh x sw gather
 * forms, one per output phase (emit_conv_phase.c).
 *
 * A work item is one output row oy of FB output channels of one sample
 * (small images: all of its rows, emit_conv_flat.c).
 * In the scatter form the row belongs to the phases (oy mod sh, px) for
 * every px, as their row oy / sh: the item computes each phase's part of
 * the row, whose columns px, px + sw, ... are stored as whole vectors
 * scattered every sw floats.  A (phase's) row is cut into tiles of KV
 * vectors (the last tile partial, its layout fixed at compile time).  Per
 * tile, FB*KV accumulators:
 *
 *   for ci, ki (rows outside the input skipped), kj:
 *       KV vectors  x = X[n, ci, iy, ix0 + lane*sw ...]
 *       FB scalars  w = W[co0 + f, ci, ki, kj], splatted
 *       acc[f][v] = fma(x[v], w[f], acc[f][v])
 *
 * A tile whose reads all fall inside the row loads whole vectors (stride
 * 1) or gathers (stride > 1); an edge tile masks the lanes in the padding
 * at run time.  At sw = 2 (the input gradient of a stride-2 convolution)
 * the two phases' columns are not scattered into Y (a scatter of 16
 * floats costs more than the fmas of a one-tap phase): they go to a row
 * buffer on the stack, and the whole row is stored from it as contiguous
 * vectors, each interleaving half a vector of both phases (two shuffles),
 * with the node's epilogues.  Every output element is one lane of one accumulator,
 * summed from the bias over (ci, ki, kj) in order by one thread: the
 * result does not depend on the thread count.
 */
#include "emit_conv_direct.h"
#include "../ir/epilogue.h"

#include <assert.h>
#include <stdlib.h>

int64_t kp_divisor_upto(int64_t c, int64_t cap)
{
    for (int64_t d = cap < c ? cap : c; d > 1; d--)
        if (c % d == 0)
            return d;
    return 1;
}

void kp_conv_geometry(const KpNode *n, int dilated, int64_t *kh, int64_t *kw, int64_t *sh,
                      int64_t *sw, int64_t *pt, int64_t *pl, int64_t *dh, int64_t *dw)
{
    const KpAttrs *a = &n->attr;
    *kh = a->kernel[0], *kw = a->kernel[1];
    *sh = a->stride[0] > 0 ? a->stride[0] : 1, *sw = a->stride[1] > 0 ? a->stride[1] : 1;
    *pt = a->padding[0], *pl = a->padding[1];
    *dh = dilated && a->dilation[0] > 0 ? a->dilation[0] : 1;
    *dw = dilated && a->dilation[1] > 0 ? a->dilation[1] : 1;
}

/* <vw x i1>: lane l < k. */
static LLVMValueRef lanes_mask(KpEmit *e, int k)
{
    return kp_mask_first(e, k);
}

LLVMValueRef kp_conv_load(KpEmit *e, LLVMValueRef X, LLVMValueRef row, LLVMValueRef ix0,
                          int64_t sw, int64_t width, int lanes, int edge)
{
    LLVMValueRef zero = kp_fconst(e->vec, 0.0);
    LLVMValueRef at = LLVMBuildAdd(e->b, row, ix0, "");
    if (!edge && sw == 1)
        return lanes == e->vw ? kp_load_vec(e, X, at) : kp_load_vec_masked(e, X, at, lanes, 0.0);
    LLVMValueRef mask = lanes_mask(e, lanes);
    if (edge) {
        LLVMValueRef ix = kp_lane_index(e, ix0, sw);
        LLVMValueRef w = kp_lane_index(e, kp_i64(e, width), 0);
        LLVMValueRef in = LLVMBuildICmp(e->b, LLVMIntULT, ix, w, "in");
        mask = LLVMBuildAnd(e->b, mask, in, "");
    }
    /* the address of a masked-off lane may lie outside the tensor: plain GEP */
    if (sw == 1) {
        LLVMValueRef p = LLVMBuildGEP2(e->b, e->f32, X, &at, 1, "");
        LLVMTypeRef over[2] = {e->vec, e->ptr};
        LLVMValueRef args[4] = {p, kp_i32(e, 4), mask, zero};
        return kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
    }
    LLVMValueRef idx = kp_lane_index(e, at, sw);
    LLVMValueRef ptrs = LLVMBuildGEP2(e->b, e->f32, X, &idx, 1, "");
    LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {ptrs, kp_i32(e, 4), mask, zero};
    return kp_intrinsic(e, "llvm.masked.gather", over, 2, args, 4);
}

/* The output placement: Y[n, co, oy, px + sx*(ox0 + lane)] for the
 * lanes of a tile's vectors; ybase is the element (n, co0, oy, 0). */
static void store(KpEmit *e, const KpKernelArgs *a, const Direct *s, const Phase *p, LLVMValueRef Y,
                  LLVMValueRef ybase, LLVMValueRef ox0, LLVMValueRef acc[16][4], Tile t)
{
    for (int f = 0; f < s->fb; f++) {
        LLVMValueRef yrow = addc(e, ybase, f * s->yh * s->yw);
        for (int v = 0; v < t.nv; v++) {
            int lanes = v == t.nv - 1 && t.rem ? t.rem : e->vw;
            LLVMValueRef r = LLVMBuildLoad2(e->b, e->vec, acc[f][v], "");
            LLVMValueRef q = addc(e, ox0, (int64_t)v * e->vw);
            if (s->sx == 1) {
                r = kp_emit_epilogue(e, e->node, a->p, r, add(e, yrow, q), lanes < e->vw ? lanes : 0);
                if (lanes < e->vw)
                    kp_store_vec_masked(e, r, Y, add(e, yrow, q), lanes);
                else
                    kp_store_vec(e, r, Y, add(e, yrow, q));
                continue;
            }
            if (s->sx == 2) {
                /* the phase's row into the buffer: interleave_row stores Y */
                LLVMValueRef at = add(e, kp_i64(e, (f * 2 + p->px) * s->bufw), q);
                kp_store_vec(e, r, s->buf, at);
                continue;
            }
            /* strided phases scatter: epilogues after the whole row (row_epilogue) */
            LLVMValueRef idx = kp_lane_index(e, add(e, addc(e, yrow, p->px), mul(e, q, s->sx)), s->sx);
            LLVMValueRef ptrs = LLVMBuildGEP2(e->b, e->f32, Y, &idx, 1, "");
            LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
            LLVMValueRef args[4] = {r, ptrs, kp_i32(e, 4), lanes_mask(e, lanes)};
            kp_intrinsic(e, "llvm.masked.scatter", over, 2, args, 4);
        }
    }
}

/* An accumulator's start for output channel co0 + f: its bias, or 0. */
LLVMValueRef kp_conv_acc_init(KpEmit *e, const KpKernelArgs *a, const KpConvMap *m, LLVMValueRef co0,
                              int64_t f)
{
    if (m->ib < 0)
        return kp_fconst(e->vec, 0.0);
    return kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[m->ib], addc(e, co0, f)), ""));
}

/* Input channel ci's terms of one tile into acc (see tile()). */
static void channel_terms(KpEmit *e, const KpKernelArgs *a, const Phase *p, int64_t fb,
                          LLVMValueRef n, LLVMValueRef co0, LLVMValueRef oy, LLVMValueRef ox0,
                          Tile t, int edge, LLVMValueRef ci, LLVMValueRef acc[16][4])
{
    const KpConvMap *m = &p->m;
    LLVMValueRef X = a->p[m->ix], W = a->p[m->iw];
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMValueRef plane = mul(e, add(e, mul(e, n, m->cin), ci), m->h);
    LLVMValueRef wci = add(e, addc(e, mul(e, co0, m->wco), m->w0), mul(e, ci, m->wci));
    if (m->sh == 1 && m->kh > 1) {
        /* the row the next item (oy + 1) reads first, while this one works */
        LLVMValueRef iy = addc(e, oy, (m->kh - 1) * m->dh - m->pt + 1);
        LLVMValueRef at = add(e, mul(e, add(e, plane, iy), m->w), addc(e, mul(e, ox0, m->sw), -m->pl));
        kp_prefetch_span(e, X, at, (int64_t)t.nv * e->vw + (m->kw - 1) * m->dw);
    }
    KpLoop lk, lj;
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, m->kh), 1, "ki");
    LLVMValueRef iy = add(e, addc(e, mul(e, oy, m->sh), -m->pt), mul(e, lk.iv, m->dh));
    LLVMBasicBlockRef row = LLVMAppendBasicBlockInContext(e->ctx, fn, "row");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(e->ctx, fn, "row.next");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, m->h), ""), row, next);
    LLVMPositionBuilderAtEnd(e->b, row);
    LLVMValueRef xrow = mul(e, add(e, plane, iy), m->w);
    LLVMValueRef wk = add(e, wci, mul(e, lk.iv, m->wki));
    kp_loop_begin(e, &lj, kp_i64(e, 0), kp_i64(e, m->kw), 1, "kj");
    LLVMValueRef ix0 = add(e, addc(e, mul(e, ox0, m->sw), -m->pl), mul(e, lj.iv, m->dw));
    LLVMValueRef xv[4];
    for (int v = 0; v < t.nv; v++) {
        int lanes = v == t.nv - 1 && t.rem ? t.rem : e->vw;
        xv[v] = kp_conv_load(e, X, xrow, addc(e, ix0, (int64_t)v * e->vw * m->sw), m->sw, m->w,
                             lanes, edge);
    }
    LLVMValueRef wj = add(e, wk, mul(e, lj.iv, m->wkj));
    for (int64_t f = 0; f < fb; f++) {
        LLVMValueRef wv = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, W, addc(e, wj, f * m->wco)), "");
        wv = kp_splat(e, wv);
        for (int v = 0; v < t.nv; v++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[f][v], "");
            LLVMBuildStore(e->b, kp_fma(e, xv[v], wv, old), acc[f][v]);
        }
    }
    kp_loop_end_unrolled(e, &lj);
    LLVMBuildBr(e->b, next);
    LLVMPositionBuilderAtEnd(e->b, next);
    kp_loop_end_unrolled(e, &lk);
}

/* Fma chains per accumulator of a tile of fb x nv: one where the tile
 * has the 8 independent chains that hide the fma's latency (4 cycles, 2
 * pipes), else the input channels split among several (ci mod chains),
 * within the register budget: a layer of 1 output channel (the input
 * gradient of a first layer, a generator's last transposed convolution)
 * had one chain and ran at an eighth of the peak. */
static int chains_of(const Direct *s, const Phase *p, Tile t)
{
    int64_t fv = s->fb * t.nv, c = 1;
    if (fv < 8) {
        c = kp_ceil_div(8, fv);
        c = c < s->budget / fv ? c : s->budget / fv;
        c = c < p->m.cin ? c : p->m.cin;
        c = c < MAX_CHAINS ? c : MAX_CHAINS;
    }
    return c > 1 ? (int)c : 1;
}

/* One tile of phase p: output row qy of it, channels co0..co0+fb, from its
 * column ox0; ybase as in store().  With several chains, input channel ci
 * goes to chain ci mod chains, and the chains are added at the end in a
 * fixed tree: every element is still summed in one fixed order. */
static void tile(KpEmit *e, const KpKernelArgs *a, const Direct *s, const Phase *p,
                 LLVMValueRef n, LLVMValueRef co0, LLVMValueRef oy, LLVMValueRef ybase,
                 LLVMValueRef ox0, Tile t, int edge)
{
    const KpConvMap *m = &p->m;
    int chains = chains_of(s, p, t);
    LLVMValueRef acc[MAX_CHAINS][16][4];
    for (int f = 0; f < s->fb; f++) {
        LLVMValueRef init = kp_conv_acc_init(e, a, m, co0, f);
        for (int j = 0; j < chains; j++)
            for (int v = 0; v < t.nv; v++) {
                acc[j][f][v] = kp_alloca(e, e->vec, "acc");
                LLVMBuildStore(e->b, j ? kp_fconst(e->vec, 0.0) : init, acc[j][f][v]);
            }
    }
    int64_t whole = m->cin / chains * chains;
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, whole), chains, "ci");
    for (int j = 0; j < chains; j++)
        channel_terms(e, a, p, s->fb, n, co0, oy, ox0, t, edge, addc(e, lc.iv, j), acc[j]);
    /* several chains: the body is already that many channels long
     * (unrolled as well, the chains made dcgan's generator compile
     * 1.15-1.37x as long as without them) */
    if (chains > 1)
        kp_loop_end(e, &lc);
    else
        kp_loop_end_unrolled(e, &lc);
    for (int64_t ci = whole; ci < m->cin; ci++)
        channel_terms(e, a, p, s->fb, n, co0, oy, ox0, t, edge, kp_i64(e, ci), acc[ci - whole]);
    for (int w = 1; w < chains; w *= 2)
        for (int j = 0; j + w < chains; j += 2 * w)
            for (int f = 0; f < s->fb; f++)
                for (int v = 0; v < t.nv; v++) {
                    LLVMValueRef x = LLVMBuildLoad2(e->b, e->vec, acc[j][f][v], "");
                    LLVMValueRef y = LLVMBuildLoad2(e->b, e->vec, acc[j + w][f][v], "");
                    LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, x, y, ""), acc[j][f][v]);
                }
    store(e, a, s, p, a->p[m->iy], ybase, ox0, acc[0], t);
}

/* Columns a tile reads past its first one: its active lanes' windows. */
static int64_t tile_reach(const KpEmit *e, const Phase *p, Tile t)
{
    int64_t active = (int64_t)t.nv * e->vw - (t.rem ? e->vw - t.rem : 0);
    return (active - 1) * p->m.sw + (p->m.kw - 1) * p->m.dw;
}

/* The partial tile at the end of a row: `last` columns. */
static Tile tail_tile(const KpEmit *e, int64_t last)
{
    return (Tile){(int)((last + e->vw - 1) / e->vw), (int)(last % e->vw)};
}

/* A tile at ox0: the inside variant when every read is in the row.  At a
 * constant column that is known here, and only one variant is emitted:
 * its edge masks fold to constants once the window loop is unrolled, and
 * most of its loads become plain loads.  Else a run-time test picks. */
static void tile_at(KpEmit *e, const KpKernelArgs *a, const Direct *s, const Phase *p,
                    LLVMValueRef n, LLVMValueRef co0, LLVMValueRef oy, LLVMValueRef ybase,
                    LLVMValueRef ox0, Tile t)
{
    const KpConvMap *m = &p->m;
    if (!p->edges) {
        tile(e, a, s, p, n, co0, oy, ybase, ox0, t, 0);
        return;
    }
    if (LLVMIsAConstantInt(ox0)) {
        int64_t lo = LLVMConstIntGetSExtValue(ox0) * m->sw - m->pl;
        tile(e, a, s, p, n, co0, oy, ybase, ox0, t, !(lo >= 0 && lo + tile_reach(e, p, t) < m->w));
        return;
    }
    LLVMValueRef lo = addc(e, mul(e, ox0, m->sw), -m->pl);
    LLVMValueRef hi = addc(e, lo, tile_reach(e, p, t));
    LLVMValueRef inside = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, lo, kp_i64(e, 0), ""),
                                       LLVMBuildICmp(e->b, LLVMIntSLT, hi, kp_i64(e, m->w), ""), "");
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef bi = LLVMAppendBasicBlockInContext(e->ctx, fn, "inside");
    LLVMBasicBlockRef be = LLVMAppendBasicBlockInContext(e->ctx, fn, "edge");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "tile.done");
    LLVMBuildCondBr(e->b, inside, bi, be);
    LLVMPositionBuilderAtEnd(e->b, bi);
    tile(e, a, s, p, n, co0, oy, ybase, ox0, t, 0);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, be);
    tile(e, a, s, p, n, co0, oy, ybase, ox0, t, 1);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, join);
}

/* Row qy of the phases (py, 0..sx-1): their tiles along the row.  A row
 * that reads padding and has few tiles gets each tile at its constant
 * column (tile_at: one variant each, masks folded; the masks computed per
 * load cost more than the fmas at 16 registers); other rows loop. */
static void phase_row(KpEmit *e, const KpKernelArgs *a, const Direct *s, int64_t py,
                      LLVMValueRef n, LLVMValueRef co0, LLVMValueRef qy, LLVMValueRef ybase)
{
    for (int64_t px = 0; px < s->sx; px++) {
        const Phase *p = &s->ph[py * s->sx + px];
        int64_t T = p->kv * e->vw, nwhole = p->kv ? p->m.ow / T : 0, last = p->m.ow - nwhole * T;
        Tile whole = {(int)p->kv, 0};
        if (p->edges && nwhole + (last > 0) <= STATIC_TILES) {
            for (int64_t i = 0; i < nwhole; i++)
                tile_at(e, a, s, p, n, co0, qy, ybase, kp_i64(e, i * T), whole);
        } else if (nwhole > 0) {
            KpLoop lt;
            kp_loop_begin(e, &lt, kp_i64(e, 0), kp_i64(e, nwhole), 1, "tile");
            tile_at(e, a, s, p, n, co0, qy, ybase, mul(e, lt.iv, T), whole);
            kp_loop_end(e, &lt);
        }
        if (last > 0)
            tile_at(e, a, s, p, n, co0, qy, ybase, kp_i64(e, nwhole * T), tail_tile(e, last));
    }
}

/* The node's epilogues over `count` floats from ybase in each of the
 * item's fb channel planes (an output row, or a whole plane), once every
 * phase has stored its columns there (strided phases scatter their
 * stores, so the epilogues wait for them). */
void kp_conv_span_epilogue(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef ybase,
                           int64_t count)
{
    LLVMValueRef Y = a->p[s->ph[0].m.iy];
    int64_t nwhole = count / e->vw, rem = count % e->vw;
    for (int64_t f = 0; f < s->fb; f++) {
        LLVMValueRef row = addc(e, ybase, f * s->yh * s->yw);
        if (nwhole > 0) {
            KpLoop lv;
            kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, nwhole * e->vw), e->vw, "epi");
            LLVMValueRef at = add(e, row, lv.iv);
            kp_store_vec(e, kp_emit_epilogue(e, e->node, a->p, kp_load_vec(e, Y, at), at, 0), Y, at);
            kp_loop_end(e, &lv);
        }
        if (rem > 0) {
            LLVMValueRef at = addc(e, row, nwhole * e->vw);
            LLVMValueRef x = kp_load_vec_masked(e, Y, at, (int)rem, 0.0);
            kp_store_vec_masked(e, kp_emit_epilogue(e, e->node, a->p, x, at, (int)rem), Y, at, (int)rem);
        }
    }
}

/* sx = 2: output row ybase of the item's fb channels from the row buffer,
 * Y[2q + px] = buf[f][px][q]: vector v of the row interleaves the vw/2
 * columns from q = v*vw/2 of both phases (the buffer's rows have room for
 * the reads past their end; those lanes land past the row, masked). */
static void interleave_row(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef ybase)
{
    LLVMValueRef Y = a->p[s->ph[0].m.iy];
    int64_t nvec = (s->yw + e->vw - 1) / e->vw, rem = s->yw % e->vw;
    LLVMValueRef lo[64], hi[64];
    for (int i = 0; i < e->vw; i++) {
        lo[i] = kp_i32(e, i / 2 + (i % 2) * e->vw);
        hi[i] = kp_i32(e, e->vw / 2 + i / 2 + (i % 2) * e->vw);
    }
    LLVMValueRef mlo = LLVMConstVector(lo, (unsigned)e->vw), mhi = LLVMConstVector(hi, (unsigned)e->vw);
    for (int64_t f = 0; f < s->fb; f++) {
        LLVMValueRef row = addc(e, ybase, f * s->yh * s->yw);
        for (int64_t v = 0; v < nvec; v += 2) {
            int64_t q = v * e->vw / 2;
            LLVMValueRef b0 = kp_load_vec(e, s->buf, kp_i64(e, f * 2 * s->bufw + q));
            LLVMValueRef b1 = kp_load_vec(e, s->buf, kp_i64(e, (f * 2 + 1) * s->bufw + q));
            for (int h = 0; h < 2 && v + h < nvec; h++) {
                LLVMValueRef x = LLVMBuildShuffleVector(e->b, b0, b1, h ? mhi : mlo, "");
                LLVMValueRef at = addc(e, row, (v + h) * e->vw);
                int lanes = v + h == nvec - 1 && rem ? (int)rem : e->vw;
                x = kp_emit_epilogue(e, e->node, a->p, x, at, lanes < e->vw ? lanes : 0);
                if (lanes < e->vw)
                    kp_store_vec_masked(e, x, Y, at, lanes);
                else
                    kp_store_vec(e, x, Y, at);
            }
        }
    }
}

/* item = (n * (cout/fb) + block) * yh + oy; row oy is row oy / sy of the
 * phases (oy mod sy, *) */
static void direct_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    Direct *s = user;
    int64_t nfb = s->cout / s->fb;
    if (s->sx == 2 && !s->flat) {
        s->buf = kp_alloca(e, LLVMArrayType(e->f32, (unsigned)(s->fb * 2 * s->bufw)), "rowbuf");
        LLVMSetAlignment(s->buf, 64);
    }
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    if (s->flat) {
        kp_conv_flat_item(e, a, s, li.iv);
        kp_loop_end(e, &li);
        return;
    }
    LLVMValueRef oy = LLVMBuildSRem(e->b, li.iv, kp_i64(e, s->yh), "oy");
    LLVMValueRef t = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, s->yh), "");
    LLVMValueRef co0 = mul(e, LLVMBuildSRem(e->b, t, kp_i64(e, nfb), ""), s->fb);
    LLVMValueRef n = LLVMBuildSDiv(e->b, t, kp_i64(e, nfb), "n");
    LLVMValueRef ybase = mul(e, add(e, mul(e, add(e, mul(e, n, s->cout), co0), s->yh), oy), s->yw);
    if (s->sy == 1) {
        phase_row(e, a, s, 0, n, co0, oy, ybase);
    } else {
        LLVMValueRef qy = LLVMBuildUDiv(e->b, oy, kp_i64(e, s->sy), "qy");
        LLVMValueRef py = LLVMBuildURem(e->b, oy, kp_i64(e, s->sy), "py");
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "phase.done");
        /* py < sy: the last phase is the default */
        LLVMBasicBlockRef last = LLVMAppendBasicBlockInContext(e->ctx, fn, "phase");
        LLVMValueRef sw = LLVMBuildSwitch(e->b, py, last, (unsigned)(s->sy - 1));
        for (int64_t r = 0; r < s->sy; r++) {
            LLVMBasicBlockRef bb = last;
            if (r < s->sy - 1) {
                bb = LLVMAppendBasicBlockInContext(e->ctx, fn, "phase");
                LLVMAddCase(sw, kp_i64(e, r), bb);
            }
            LLVMPositionBuilderAtEnd(e->b, bb);
            phase_row(e, a, s, r, n, co0, qy, ybase);
            LLVMBuildBr(e->b, join);
        }
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    if (s->sx == 2)
        interleave_row(e, a, s, ybase);
    else if (s->sx > 1 && e->node->nepi > 0)
        kp_conv_span_epilogue(e, a, s, ybase, s->yw);
    kp_loop_end(e, &li);
}

/* Vectors per tile for a row of nvec vectors.  AVX-512 (32 registers):
 * up to 4.  AVX2 (16 registers: 12 accumulators, the row's vectors and a
 * broadcast): a row of up to 3 vectors is one tile, so that no short tile
 * runs with too few accumulators to hide the fma latency (4 cycles, 2
 * pipes: 8 chains); a longer row in tiles of 3 where they divide it, else 2. */
static int64_t tile_vectors(int vw, int64_t nvec)
{
    if (vw >= 16)
        return nvec < 4 ? nvec : 4;
    if (nvec <= 3)
        return nvec;
    return nvec % 3 == 0 ? 3 : 2;
}

/* Accumulators a tile keeps: 16 of AVX-512's 32 registers, 12 of AVX2's 16. */
int64_t kp_conv_tile_budget(int vw)
{
    return vw >= 16 ? 16 : 12;
}

void kp_emit_conv(KpEmit *e, const KpConvMap *map)
{
    Direct s = {.cout = map->cout, .yh = map->oh, .yw = map->ow, .sy = 1, .sx = 1};
    KpConvMap *maps = &(KpConvMap){0};
    if (map->transposed) {
        s.sy = map->sh, s.sx = map->sw;
        maps = calloc((size_t)(s.sy * s.sx), sizeof *maps);
        assert(maps);
        kp_conv_phases(map, maps);
    } else {
        maps[0] = *map;
    }
    s.ph = calloc((size_t)(s.sy * s.sx), sizeof *s.ph);
    assert(s.ph);
    int64_t budget = kp_conv_tile_budget(e->vw), kvtop = 1;
    for (int64_t i = 0; i < s.sy * s.sx; i++) {
        Phase *p = &s.ph[i];
        const KpConvMap *m = &maps[i];
        int64_t nvec = (m->ow + e->vw - 1) / e->vw;
        p->m = *m;
        p->px = i % s.sx;
        p->kv = tile_vectors(e->vw, nvec);
        kvtop = p->kv > kvtop ? p->kv : kvtop;
        /* every read inside the row: no left padding and the last output's window fits */
        p->edges = !(m->pl <= 0 && (m->ow - 1) * m->sw - m->pl + (m->kw - 1) * m->dw <= m->w - 1);
    }
    s.fb = kp_divisor_upto(s.cout, budget / kvtop);
    s.budget = budget;
    int64_t ffb;
    s.flat = map->transposed || (map->sh == 1 && map->sw == 1)
                 ? kp_conv_flat_plan(maps, s.sy * s.sx, e->vw, &ffb)
                 : kp_conv_split_plan(map, e->vw, &ffb, &s.split_hp);
    if (s.flat)
        s.fb = ffb;
    int64_t split_bytes = 4 * map->cin * map->sh * map->sw * s.split_hp * map->ow;
    if (split_bytes > e->scratch_bytes)
        e->scratch_bytes = split_bytes;
    /* a sample an item, but at a largest batch below 4 up to 4 items a
     * sample (each copies its input: SPLIT_ITEMS), for the threads */
    s.split_groups = s.split_hp ? kp_divisor_upto(s.cout / s.fb, kp_ceil_div(SPLIT_ITEMS, e->g->max_batch)) : 1;
    /* the widest phase row, whole vectors, and room for interleave_row's
     * reads of half a vector past it */
    int64_t pw = 0;
    for (int64_t i = 0; i < s.sy * s.sx; i++)
        pw = s.ph[i].m.ow > pw ? s.ph[i].m.ow : pw;
    s.bufw = ((pw + e->vw - 1) / e->vw + 1) * e->vw;
    const KpConvMap *m = map;
    /* work items: rows of fb channels; flat: fb channels; split: a sample's share */
    int64_t per = s.split_hp ? s.split_groups : m->cout / s.fb * (s.flat ? 1 : m->oh);
    LLVMValueRef items = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, per), "items");
    int64_t macs = e->g->max_batch * m->cout * m->oh * m->ow * m->cin * m->kh * m->kw;
    kp_emit_parallel(e, "conv", kp_i64(e, 0), items, macs >= 65536, direct_kernel, &s);
    free(s.ph);
    if (map->transposed)
        free(maps);
}

/* conv2d's gather form: x [N,C,H,W], weight [F,C,kh,kw], bias [F] -> y [N,F,OH,OW] */
KpConvMap kp_conv_forward_map(const KpNode *n)
{
    const KpValue *x = n->in[0], *y = n->out;
    KpConvMap m = {.cin = x->dims[1], .h = x->dims[2], .w = x->dims[3],
                   .cout = y->dims[1], .oh = y->dims[2], .ow = y->dims[3],
                   .ix = 0, .iw = 1, .ib = kp_node_op_nin(n) >= 3 && n->in[2] ? 2 : -1, .iy = n->nin};
    kp_conv_geometry(n, 1, &m.kh, &m.kw, &m.sh, &m.sw, &m.pt, &m.pl, &m.dh, &m.dw);
    m.wco = n->attr.wstride > 0 ? n->attr.wstride : m.cin * m.kh * m.kw;   /* rows padded by layout.c */
    m.wci = m.kh * m.kw, m.wki = m.kw, m.wkj = 1;
    return m;
}

/* conv2d_grad_x's scatter form: dy [N,F,OH,OW], weight [F,C,kh,kw], x (shape) -> dx [N,C,H,W] */
KpConvMap kp_conv_grad_x_map(const KpNode *n)
{
    const KpValue *dy = n->in[0], *dx = n->out;
    KpConvMap m = {.cin = dy->dims[1], .h = dy->dims[2], .w = dy->dims[3],
                   .cout = dx->dims[1], .oh = dx->dims[2], .ow = dx->dims[3],
                   .ix = 0, .iw = 1, .ib = -1, .iy = n->nin, .transposed = 1};
    kp_conv_geometry(n, 1, &m.kh, &m.kw, &m.sh, &m.sw, &m.pt, &m.pl, &m.dh, &m.dw);
    m.wco = m.kh * m.kw, m.wci = m.cout * m.kh * m.kw, m.wki = m.kw, m.wkj = 1;
    return m;
}

KpConvMap kp_conv_grad_w_map(const KpNode *n)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    KpConvMap m = {.cin = x->dims[1], .h = x->dims[2], .w = x->dims[3],
                   .cout = dy->dims[1], .oh = dy->dims[2], .ow = dy->dims[3],
                   .ix = 1, .iw = -1, .ib = -1, .iy = 2, .idy = 0};
    kp_conv_geometry(n, 1, &m.kh, &m.kw, &m.sh, &m.sw, &m.pt, &m.pl, &m.dh, &m.dw);
    return m;
}

void kp_emit_conv2d_direct(KpEmit *e, const KpNode *n)
{
    KpConvMap m = kp_conv_forward_map(n);
    kp_emit_conv(e, &m);
}

bool kp_emit_conv2d_winograd(KpEmit *e, const KpNode *n, bool grad_x)
{
    KpConvMap m = grad_x ? kp_conv_grad_x_map(n) : kp_conv_forward_map(n);
    if (m.transposed) {
        if (m.sh != 1 || m.sw != 1)
            return false;
        KpConvMap one;
        kp_conv_phases(&m, &one);     /* stride 1: one phase, the kernel flipped */
        m = one;
    }
    /* it stores its outputs: a gradient slot to add into stays with the others */
    if (e->accumulate || !kp_conv_winograd_fits(&m, e->g ? e->g->max_batch : 1, KP_WINO_MIN_CHANNELS))
        return false;
    kp_emit_conv_winograd(e, &m);
    return true;
}

/* x [N,C,H,W], weight [C,F,kh,kw], bias [F] -> y [N,F,OH,OW] */
int emit_conv2d_transpose(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0], *y = n->out;
    KpConvMap m = {.cin = x->dims[1], .h = x->dims[2], .w = x->dims[3],
                   .cout = y->dims[1], .oh = y->dims[2], .ow = y->dims[3],
                   .ix = 0, .iw = 1, .ib = kp_node_op_nin(n) >= 3 && n->in[2] ? 2 : -1, .iy = n->nin,
                   .transposed = 1};
    kp_conv_geometry(n, 1, &m.kh, &m.kw, &m.sh, &m.sw, &m.pt, &m.pl, &m.dh, &m.dw);
    m.wco = m.kh * m.kw, m.wci = m.cout * m.kh * m.kw, m.wki = m.kw, m.wkj = 1;
    kp_emit_conv(e, &m);
    return 0;
}

void kp_emit_conv2d_grad_x_direct(KpEmit *e, const KpNode *n)
{
    KpConvMap m = kp_conv_grad_x_map(n);
    if (!kp_emit_conv_grad_x_rows(e, &m))
        kp_emit_conv(e, &m);
}

bool kp_emit_conv2d_grad_x_outer(KpEmit *e, const KpNode *n)
{
    KpConvMap m = kp_conv_grad_x_map(n);
    if (e->accumulate || !kp_conv_grad_x_outer_fits(&m, e->g ? e->g->max_batch : 1, e->vw))
        return false;
    kp_emit_conv_grad_x_outer(e, &m);
    return true;
}

/* dy [N,F,OH,OW], weight [C,F,kh,kw], x (shape) -> dx [N,C,H,W]: the
 * forward convolution of dy; strided, as the forward is, by the GEMM
 * (the direct kernel would gather every other column: dcgan's 14x14 ->
 * 7x7 ran at 20% of the peak, docs/kernels-conv.md) unless read from its
 * input's phases */
int emit_conv2d_transpose_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *dx = n->out;
    KpConvMap m = {.cin = dy->dims[1], .h = dy->dims[2], .w = dy->dims[3],
                   .cout = dx->dims[1], .oh = dx->dims[2], .ow = dx->dims[3],
                   .ix = 0, .iw = 1, .ib = -1, .iy = 3};
    kp_conv_geometry(n, 1, &m.kh, &m.kw, &m.sh, &m.sw, &m.pt, &m.pl, &m.dh, &m.dw);
    m.wco = m.cin * m.kh * m.kw, m.wci = m.kh * m.kw, m.wki = m.kw, m.wkj = 1;
    if ((m.sh > 1 || m.sw > 1) && !kp_conv_flat_taken(&m, e->vw))
        return kp_emit_conv_gather_gemm(e, n, -1, d);
    kp_emit_conv(e, &m);
    return 0;
}
