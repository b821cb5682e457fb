/*
 * emit_conv_grad_w.c — the weight gradients of the convolutions,
 *
 *   dW[m, t] (+)= sum over samples g and pixels p of  A[g, m, p] · B_g[t, p]
 *
 *   conv2d_grad_w:            A = dy [N,F,OH,OW]   B = im2col(x)  over dy's pixels   dW [F, C*kh*kw]
 *   conv2d_transpose_grad_w:  A = x  [N,C,H,W]     B = im2col(dy) over x's pixels    dW [C, F*kh*kw]
 *
 * a GEMM whose reduction (the pixels) is contiguous in both operands: A
 * is read in place, and B's rows are im2col rows, packed from the image
 * (kp_conv_cols) without any transposition.  So the register tile is a
 * dot-product tile: MR rows of A times NR rows of B, MR*NR vector
 * accumulators whose lanes are pixels p mod vw,
 *
 *   for each vector of vw pixels:   a[i] = A[g, m+i, p..]   (MR loads, in place)
 *                                   b    = B[t+j, p..]      (NR loads, packed)
 *                                   acc[i][j] = fma(a[i], b, acc[i][j])
 *
 * and each accumulator is summed across its lanes (a fixed tree) only at
 * the very end.  A work item owns a block of dW (MB rows x TB taps) whole,
 * over every sample; its vector partial sums wait in its scratch between
 * pixel blocks:
 *
 *   item (m0, t0):
 *     for g, for pixel blocks p0 (PB pixels):
 *       pack B rows t0.. for those pixels         B[TB][PB]   (L2)
 *       for NR-tiles of taps, for MR-tiles of rows:
 *         load the tile's accumulators (0 in the first block), run the
 *         PB pixels, store them
 *     dW[m][t] (+)= hsum(acc[m][t])
 *
 * Items split the taps (each packs only its own rows of B; A, read in
 * place, is what they share) or the rows (each packs all of B) or both,
 * whichever leaves the busiest thread the least work (plan()).  Every
 * element is one chain of fmas per lane in (g, p) order and one tree
 * over the lanes, whatever the items, the thread count or the host's
 * caches: the results do not depend on them.
 *
 * A small dW (its accumulators within SPLIT_ACC bytes: a first layer's
 * 16 x 27, a 1x1 projection's 32 x 16) over many samples is split by the
 * samples instead: SPLIT_CHUNKS fixed chunks of them, each an item over
 * the whole dW, so no thread packs B for rows another thread packs it for
 * too (two row items packed all of im2col twice, and resnet_cifar's stem
 * ran no faster on two threads than on one).  A chunk's lane sums go to
 * its partial dW in the call's shared scratch; the last chunk to finish
 * (kp_last_begin) adds the partials in chunk order.  The chunks come from
 * the shape and the batch, not the host or the thread count.
 */
#include "emit_conv.h"
#include "gemm_internal.h"

typedef struct Dot {
    KpConvCols cols;            /* B */
    int ia;                     /* A's kernel pointer: [N, m, npix] */
    int64_t m, t, npix;
    int mr, nr;                 /* register tile */
    int64_t mb, tb;             /* an item's rows and taps (the last ones fewer) */
    int64_t items_m, items_t;
    int64_t pb, pbr;            /* pixels per block, a sample's part of a B row (a multiple of 16) */
    int64_t gb, brs;            /* samples per block (small images), B's row stride */
    int64_t acc_floats;         /* scratch: acc, then B */
    int64_t chunks;             /* sample chunks (1: none), each an item over all of dW */
    int64_t shared_at;          /* with chunks: partial dW per chunk, then a counter per tap item */
} Dot;

enum { SPLIT_ACC = 64 << 10, SPLIT_CHUNKS = 4 };

/* Costs in multiply-adds: packing one float of B (a vector of vw from
 * one or two masked loads, about 3 cycles) costs what about 6 multiply-
 * adds per lane do; a row of A read from memory once per item, 1. */
enum { PACK_COST = 6, AROW_COST = 1 };

/* The busiest thread's work when items (im x it of them, rows and taps
 * by mb and tb) are cut into contiguous chunks for `cores` threads, as
 * krt_parallel_for cuts them. */
static double span(const Dot *s, int64_t mb, int64_t tb, int64_t cores)
{
    int64_t im = kp_ceil_div(s->m, mb), it = kp_ceil_div(s->t, tb), items = im * it;
    int64_t nt = items < cores ? items : cores, q = items / nt, r = items % nt, first = 0;
    double worst = 0;
    for (int64_t c = 0; c < nt; c++) {
        int64_t count = q + (c < r);
        double sum = 0;
        for (int64_t i = first; i < first + count; i++) {
            int64_t rows = i / it == im - 1 ? s->m - (im - 1) * mb : mb;
            int64_t taps = i % it == it - 1 ? s->t - (it - 1) * tb : tb;
            sum += (double)(rows * taps + PACK_COST * taps + AROW_COST * rows);
        }
        first += count;
        worst = sum > worst ? sum : worst;
    }
    return worst;
}

/* The blocking, from the shapes, the vector width and the host: rows and
 * taps per item minimizing the busiest thread's work (a split of the taps
 * re-reads A, a split of the rows packs B again), with the item's partial
 * sums and B block in half of L2. */
static void plan(Dot *s, int vw, int64_t max_batch)
{
    int64_t l1, l2, cores;
    kp_gemm_host(&l1, &l2, &cores);
    s->mr = vw >= 16 ? 4 : 2;
    s->nr = 6;
    /* a tile's rows of A and B over a block's pixels in half of L1: the B
     * rows are read again by every row tile, from L1 only if they stay */
    int64_t pbmax = l1 / 2 / (4 * (s->mr + s->nr)) / vw * vw;
    pbmax = pbmax < 64 ? 64 : pbmax > 1024 ? 1024 : pbmax;
    s->pb = kp_round_up(s->npix, vw) <= pbmax ? s->npix
            : kp_round_up(kp_ceil_div(s->npix, kp_ceil_div(s->npix, pbmax)), vw);
    /* rows a multiple of 1 KiB apart would share L1 sets (4 KiB: every row) */
    s->pbr = kp_round_up(s->pb, KP_GEMM_PANEL);
    if (s->pbr % 256 == 0)
        s->pbr += KP_GEMM_PANEL;
    /* a small image: several samples a block, so that a tile's partial
     * sums wait in scratch once per block, not once per sample (keras's
     * conv2d2 has 121 pixels: 16 vectors of fmas per save and restore),
     * the tile's rows over them within all of L1: resnet's stride-2
     * layer (256 pixels) then gets 2 samples a block instead of 1, which
     * measured faster than keeping B's rows in half of L1 */
    s->gb = s->pb == s->npix ? 2 * pbmax / s->pbr : 1;
    s->gb = s->gb < 1 ? 1 : s->gb > max_batch ? max_batch : s->gb;
    s->brs = s->gb * s->pbr;
    if (s->gb > 1 && s->brs % 256 == 0)
        s->brs += KP_GEMM_PANEL;
    /* a small dW over many samples: chunks of the samples, all of dW an
     * item; otherwise rows and taps split by the busiest thread's work */
    s->chunks = 1;
    int64_t mall = kp_round_up(s->m, s->mr), tall = kp_round_up(s->t, s->nr);
    if (4 * mall * tall * vw <= SPLIT_ACC && max_batch >= SPLIT_CHUNKS &&
        max_batch * s->m * s->t * s->npix >= (1 << 19)) {
        s->chunks = SPLIT_CHUNKS;
        s->mb = mall, s->tb = tall;
    } else {
        double best = -1;
        for (int64_t it = 1; it <= kp_ceil_div(s->t, s->nr) && it <= 64; it++) {
            int64_t tb = kp_round_up(kp_ceil_div(s->t, it), s->nr);
            for (int64_t im = 1; im <= kp_ceil_div(s->m, s->mr) && im <= 16; im++) {
                int64_t mb = kp_round_up(kp_ceil_div(s->m, im), s->mr);
                int64_t bytes = 4 * (mb * tb * vw + tb * s->brs);
                if (bytes > l2 / 2 && (tb > s->nr || mb > s->mr))
                    continue;
                double cost = span(s, mb, tb, cores);
                if (best < 0 || cost < best * 0.999) {
                    best = cost;
                    s->mb = mb, s->tb = tb;
                }
            }
        }
    }
    s->items_t = kp_ceil_div(s->t, s->tb);
    s->items_m = kp_ceil_div(s->m, s->mb);
    s->acc_floats = s->mb * s->tb * vw;
}

typedef struct Item {
    LLVMValueRef acc, bp;       /* scratch: partial sums, B's rows */
    LLVMValueRef g, gn, p0, pn; /* samples g .. g+gn, pixel block */
    LLVMValueRef first;         /* i1: the item's first block */
    LLVMValueRef m0, t0;        /* the item's first row and tap */
} Item;


/* Rows [mm, mm+mr) x taps [tt, tt+nr) (relative to the item) over the
 * block's pixels: the accumulators from the item's sums (zero in its
 * first block) and back. */
static void tile(KpEmit *e, const KpKernelArgs *a, const Dot *s, const Item *it, LLVMValueRef mm,
                 LLVMValueRef tt, int mr, int nr)
{
    LLVMValueRef slot[8][8];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            LLVMValueRef at = kp_imulc(e, kp_iadd(e, kp_imulc(e, kp_iaddc(e, mm, i), s->tb), kp_iaddc(e, tt, j)), e->vw);
            slot[i][j] = kp_alloca(e, e->vec, "acc");
            LLVMValueRef init = LLVMBuildSelect(e->b, it->first, kp_fconst(e->vec, 0.0),
                                                kp_load_vec(e, it->acc, at), "");
            LLVMBuildStore(e->b, init, slot[i][j]);
        }
    /* per sample g + gi of the block: A row m + i at pixel p0; B row t + j */
    KpLoop ls;
    kp_loop_begin(e, &ls, kp_i64(e, 0), it->gn, 1, "gs");
    LLVMValueRef arow[8], brow[8];
    for (int i = 0; i < mr; i++) {
        LLVMValueRef g = kp_iadd(e, it->g, ls.iv);
        LLVMValueRef r = kp_iadd(e, kp_imulc(e, g, s->m), kp_iadd(e, it->m0, kp_iaddc(e, mm, i)));
        arow[i] = kp_iadd(e, kp_imulc(e, r, s->npix), it->p0);
    }
    for (int j = 0; j < nr; j++)
        brow[j] = kp_iadd(e, kp_imulc(e, kp_iaddc(e, tt, j), s->brs), kp_imulc(e, ls.iv, s->pbr));
    LLVMValueRef whole = LLVMBuildUDiv(e->b, it->pn, kp_i64(e, e->vw), "");
    LLVMValueRef rest = LLVMBuildURem(e->b, it->pn, kp_i64(e, e->vw), "");
    for (int last = 0; last < 2; last++) {
        KpLoop lq;
        LLVMBasicBlockRef join = NULL;
        LLVMValueRef q;
        if (!last) {
            kp_loop_begin(e, &lq, kp_i64(e, 0), kp_imulc(e, whole, e->vw), e->vw, "px");
            q = lq.iv;
        } else {
            /* the block's last vector, lanes past pn masked (B's are zero) */
            join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntNE, rest, kp_i64(e, 0), ""), "px.last");
            q = kp_imulc(e, whole, e->vw);
        }
        LLVMValueRef av[8];
        for (int i = 0; i < mr; i++) {
            LLVMValueRef at = kp_iadd(e, arow[i], q);
            if (!last) {
                av[i] = kp_load_vec(e, a->p[s->ia], at);
                /* the next row tile's rows of A: short runs (a block's pixels)
                 * the hardware prefetchers barely start on before the tile
                 * moves on; their loads from L2 were a third of its time */
                kp_prefetch(e, a->p[s->ia], kp_iaddc(e, at, (int64_t)mr * s->npix));
            } else {
                LLVMValueRef idx[64];
                for (int l = 0; l < e->vw; l++)
                    idx[l] = kp_i64(e, l);
                LLVMTypeRef vi = LLVMVectorType(e->i64, (unsigned)e->vw);
                LLVMValueRef splat = LLVMBuildInsertElement(e->b, LLVMGetPoison(vi), rest, kp_i32(e, 0), "");
                splat = LLVMBuildShuffleVector(e->b, splat, LLVMGetPoison(vi),
                                               LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
                LLVMValueRef mask = LLVMBuildICmp(e->b, LLVMIntSGT, splat,
                                                  LLVMConstVector(idx, (unsigned)e->vw), "");
                LLVMValueRef ptr = LLVMBuildGEP2(e->b, e->f32, a->p[s->ia], &at, 1, "");
                LLVMTypeRef over[2] = {e->vec, e->ptr};
                LLVMValueRef args[4] = {ptr, kp_i32(e, 4), mask, kp_fconst(e->vec, 0.0)};
                av[i] = kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
            }
        }
        for (int j = 0; j < nr; j++) {
            LLVMValueRef b = kp_load_vec(e, it->bp, kp_iadd(e, brow[j], q));
            for (int i = 0; i < mr; i++) {
                LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, slot[i][j], "");
                LLVMBuildStore(e->b, kp_fma(e, av[i], b, old), slot[i][j]);
            }
        }
        if (!last)
            kp_gemm_loop_end(e, &lq);
        else
            kp_if_end(e, join);
    }
    kp_gemm_loop_end(e, &ls);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            LLVMValueRef at = kp_imulc(e, kp_iadd(e, kp_imulc(e, kp_iaddc(e, mm, i), s->tb), kp_iaddc(e, tt, j)), e->vw);
            kp_store_vec(e, LLVMBuildLoad2(e->b, e->vec, slot[i][j], ""), it->acc, at);
        }
}

/* The item's rows (mn of them) by nr taps from tt: whole MR-tiles, then
 * the rows left (only in the last row item). */
static void row_tiles(KpEmit *e, const KpKernelArgs *a, const Dot *s, const Item *it,
                      LLVMValueRef mn, LLVMValueRef tt, int nr)
{
    KpLoop lm;
    LLVMValueRef whole = kp_imulc(e, LLVMBuildUDiv(e->b, mn, kp_i64(e, s->mr), ""), s->mr);
    kp_loop_begin(e, &lm, kp_i64(e, 0), whole, s->mr, "mt");
    tile(e, a, s, it, lm.iv, tt, s->mr, nr);
    kp_loop_end(e, &lm);
    int rem = (int)(s->m % s->mr);
    if (rem == 0)
        return;
    LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntSLT, whole, mn, ""), "mt.rest");
    tile(e, a, s, it, whole, tt, rem, nr);
    kp_if_end(e, join);
}

static void dot_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Dot *s = user;
    LLVMValueRef scratch = kp_scratch(e);
    Item it = {.acc = scratch, .bp = kp_gep(e, scratch, kp_i64(e, s->acc_floats))};
    KpLoop li, lg, lp, lt;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    /* item = (chunk * items_m + row item) * items_t + tap item */
    LLVMValueRef blk = LLVMBuildURem(e->b, li.iv, kp_i64(e, s->items_m * s->items_t), "");
    LLVMValueRef chunk = LLVMBuildUDiv(e->b, li.iv, kp_i64(e, s->items_m * s->items_t), "chunk");
    LLVMValueRef im = LLVMBuildUDiv(e->b, blk, kp_i64(e, s->items_t), "");
    LLVMValueRef itt = LLVMBuildURem(e->b, blk, kp_i64(e, s->items_t), "");
    LLVMValueRef g0, g1;
    kp_chunk_samples(e, a->n, kp_i64(e, s->chunks), chunk, &g0, &g1);
    it.m0 = kp_imulc(e, im, s->mb);
    it.t0 = kp_imulc(e, itt, s->tb);
    LLVMValueRef mn = kp_min_i64(e, kp_i64(e, s->mb), LLVMBuildNSWSub(e->b, kp_i64(e, s->m), it.m0, ""));
    LLVMValueRef tn = kp_min_i64(e, kp_i64(e, s->tb), LLVMBuildNSWSub(e->b, kp_i64(e, s->t), it.t0, ""));
    kp_loop_begin(e, &lg, g0, g1, s->gb, "g");
    it.g = lg.iv;
    it.gn = kp_min_i64(e, kp_i64(e, s->gb), LLVMBuildNSWSub(e->b, g1, lg.iv, ""));
    kp_loop_begin(e, &lp, kp_i64(e, 0), kp_i64(e, s->npix), s->pb, "pb");
    it.p0 = lp.iv;
    it.first = LLVMBuildICmp(e->b, LLVMIntEQ, LLVMBuildOr(e->b, LLVMBuildNSWSub(e->b, lg.iv, g0, ""), lp.iv, ""),
                             kp_i64(e, 0), "first");
    it.pn = kp_min_i64(e, kp_i64(e, s->pb), LLVMBuildNSWSub(e->b, kp_i64(e, s->npix), lp.iv, ""));
    KpLoop lgs;
    kp_loop_begin(e, &lgs, kp_i64(e, 0), it.gn, 1, "pack");
    LLVMValueRef j = kp_iadd(e, kp_imulc(e, kp_iadd(e, lg.iv, lgs.iv), s->npix), lp.iv);
    kp_conv_cols(e, &s->cols, a->p[s->cols.arg], kp_gep(e, it.bp, kp_imulc(e, lgs.iv, s->pbr)), j,
                 it.pn, it.t0, tn, kp_i64(e, KP_GEMM_PANEL), kp_i64(e, s->brs));
    kp_loop_end(e, &lgs);
    LLVMValueRef twhole = kp_imulc(e, LLVMBuildUDiv(e->b, tn, kp_i64(e, s->nr), ""), s->nr);
    kp_loop_begin(e, &lt, kp_i64(e, 0), twhole, s->nr, "tt");
    row_tiles(e, a, s, &it, mn, lt.iv, s->nr);
    kp_loop_end(e, &lt);
    int trem = (int)(s->t % s->nr);
    if (trem > 0) {
        LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntSLT, twhole, tn, ""), "tt.rest");
        row_tiles(e, a, s, &it, mn, twhole, trem);
        kp_if_end(e, join);
    }
    kp_loop_end(e, &lp);
    kp_loop_end(e, &lg);

    /* dW[m0 + m][t0 + t] (+)= the lanes of acc[m][t], summed by a fixed tree
     * (with chunks: into the chunk's partial, 0 for a chunk without samples) */
    KpLoop lm, lk;
    LLVMValueRef dW = a->p[2], shared = NULL, part = dW, some = NULL;
    if (s->chunks > 1) {
        some = LLVMBuildICmp(e->b, LLVMIntULT, g0, g1, "some");
        shared = kp_scratch_shared_at(e, s->shared_at);
        part = kp_gep(e, shared, LLVMBuildNSWMul(e->b, chunk, kp_i64(e, s->m * s->t), ""));
    }
    kp_loop_begin(e, &lm, kp_i64(e, 0), mn, 1, "wm");
    kp_loop_begin(e, &lk, kp_i64(e, 0), tn, 1, "wt");
    LLVMValueRef v = kp_load_vec(e, it.acc, kp_imulc(e, kp_iadd(e, kp_imulc(e, lm.iv, s->tb), lk.iv), e->vw));
    LLVMValueRef sum = kp_reduce_add(e, v);
    LLVMValueRef at = kp_iadd(e, kp_imulc(e, kp_iadd(e, it.m0, lm.iv), s->t), kp_iadd(e, it.t0, lk.iv));
    if (s->chunks > 1)
        sum = LLVMBuildSelect(e->b, some, sum, kp_fconst(e->f32, 0.0), "");
    else if (e->accumulate)
        sum = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, dW, at), ""), sum, "");
    LLVMBuildStore(e->b, sum, kp_gep(e, part, at));
    kp_loop_end(e, &lk);
    kp_loop_end(e, &lm);
    if (s->chunks > 1) {
        /* the block's last chunk: dW (+)= p0 + p1 + ..., in chunk order */
        LLVMTypeRef i8 = LLVMInt8TypeInContext(e->ctx);
        LLVMValueRef cat = kp_iaddc(e, kp_imulc(e, blk, 8), 4 * s->chunks * s->m * s->t);
        LLVMValueRef counter = LLVMBuildInBoundsGEP2(e->b, i8, shared, &cat, 1, "counter");
        LLVMBasicBlockRef join = kp_last_begin(e, counter, kp_i64(e, s->chunks));
        kp_loop_begin(e, &lm, kp_i64(e, 0), mn, 1, "sm");
        kp_loop_begin(e, &lk, kp_i64(e, 0), tn, 1, "st");
        LLVMValueRef w = kp_iadd(e, kp_imulc(e, kp_iadd(e, it.m0, lm.iv), s->t), kp_iadd(e, it.t0, lk.iv));
        kp_conv_chunks_add(e, shared, w, s->chunks, s->m * s->t, dW, e->accumulate);
        kp_loop_end(e, &lk);
        kp_loop_end(e, &lm);
        kp_last_end(e, counter, join);
    }
    kp_loop_end(e, &li);
}

void kp_conv_chunks_add(KpEmit *e, LLVMValueRef part, LLVMValueRef w, int64_t chunks, int64_t stride,
                        LLVMValueRef dW, bool accumulate)
{
    LLVMValueRef total = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, part, w), "");
    for (int64_t c = 1; c < chunks; c++) {
        LLVMValueRef p = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, part, kp_iaddc(e, w, c * stride)), "");
        total = LLVMBuildFAdd(e->b, total, p, "");
    }
    if (accumulate)
        total = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, dW, w), ""), total, "");
    LLVMBuildStore(e->b, total, kp_gep(e, dW, w));
}

static void emit_dot(KpEmit *e, Dot *s)
{
    plan(s, e->vw, e->g->max_batch > 0 ? e->g->max_batch : 1);
    int64_t bytes = 4 * (s->acc_floats + s->tb * s->brs);
    if (bytes > e->scratch_bytes)
        e->scratch_bytes = bytes;
    int64_t items = s->chunks * s->items_m * s->items_t;
    int64_t macs = e->g->max_batch * s->m * s->t * s->npix;
    if (s->chunks > 1)
        s->shared_at = kp_scratch_shared_take(e, "conv_grad_w_chunks",
                                              4 * s->chunks * s->m * s->t + 8 * s->items_m * s->items_t,
                                              s->m * s->t);
    kp_emit_parallel(e, "conv_grad_w", kp_i64(e, 0), kp_i64(e, items), macs >= (1 << 19) && items > 1,
                     dot_kernel, s);
}

static KpConvCols cols_of(const KpNode *n, int arg, const KpValue *img, const KpValue *grid)
{
    KpConvCols c = {.arg = arg, .c = img->dims[1], .h = img->dims[2], .w = img->dims[3],
                    .oh = grid->dims[2], .ow = grid->dims[3]};
    kp_conv_geometry(n, 1, &c.kh, &c.kw, &c.sh, &c.sw, &c.pt, &c.pl, &c.dh, &c.dw);
    return c;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dW [F,C,kh,kw]: A = dy, B = im2col(x) */
int emit_conv2d_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    KpConvMap m = kp_conv_grad_w_map(n);
    if (kp_emit_conv2d_winograd_w(e, &m))
        return 0;
    const KpValue *dy = n->in[0], *x = n->in[1];
    if (kp_conv_grad_w_outer_fits(&m, e->g ? e->g->max_batch : 1, e->vw)) {
        kp_emit_conv2d_grad_w_outer(e, &m);
        return 0;
    }
    Dot s = {.cols = cols_of(n, 1, x, dy), .ia = 0, .m = dy->dims[1],
             .npix = dy->dims[2] * dy->dims[3]};
    s.t = s.cols.c * s.cols.kh * s.cols.kw;
    emit_dot(e, &s);
    return 0;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dW [C,F,kh,kw].  The layer's forward
 * is the input gradient of the convolution of weight [C,F,kh,kw] from
 * images like dy to images like x, so this is that convolution's weight
 * gradient with x in dy's place: by outer products where they fit (lanes
 * along C; dcgan's 256 -> 128 at 7x7 ran at 27% of the peak by the dot
 * kernel), else A = x, B = im2col(dy). */
int emit_conv2d_transpose_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    KpConvMap m = {.cin = dy->dims[1], .h = dy->dims[2], .w = dy->dims[3],
                   .cout = x->dims[1], .oh = x->dims[2], .ow = x->dims[3],
                   .ix = 0, .iw = -1, .ib = -1, .iy = 2, .idy = 1};
    kp_conv_geometry(n, 1, &m.kh, &m.kw, &m.sh, &m.sw, &m.pt, &m.pl, &m.dh, &m.dw);
    if (kp_conv_grad_w_outer_fits(&m, e->g ? e->g->max_batch : 1, e->vw)) {
        kp_emit_conv2d_grad_w_outer(e, &m);
        return 0;
    }
    Dot s = {.cols = cols_of(n, 0, dy, x), .ia = 1, .m = x->dims[1], .npix = x->dims[2] * x->dims[3]};
    s.t = s.cols.c * s.cols.kh * s.cols.kw;
    emit_dot(e, &s);
    return 0;
}
