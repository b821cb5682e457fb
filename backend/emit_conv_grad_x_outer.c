/*
 * emit_conv_grad_x_outer.c — conv2d's input gradient at stride 1 for
 * images of few pixels, the vector lanes along dx's channels:
 *
 *   dx[n, c, r, ox] = sum over f, ki, kj of  W[f, c, ki, kj] · dy[n, f, r + pt - ki, ox + pl - kj]
 *                                             (dy outside its image: no term)
 *
 * The direct and row kernels (emit_conv.c, emit_conv_rows.c) put the
 * lanes along a row of dx or dy; a 13-wide row (keras_cnn's conv2d2) fills
 * 13 of 16 lanes, a 26-wide one (fashion_cnn's conv2d1) 26 of 32.  Here a
 * register tile is p pixels of one dx row by cv vectors of channels:
 *
 *   per thread and call:  Wt[f][ki][kj][c] <- W[f, c, ki, kj]  (vw x vw blocks transposed in
 *               registers, at the tail of the thread's scratch slot, by its first piece of work)
 *   per tile:   for f, ki (dy row r + pt - ki inside), kj:
 *                   w[v]  = Wt[f][ki][kj][c0 + v*vw ..]           (cv loads)
 *                   b     = dy[n, f, r + pt - ki, ox + pl - kj]   (a broadcast per pixel ox)
 *                   acc[ox][v] = fma(b, w[v], acc[ox][v])
 *               then each channel vector of the tile transposed into vectors along
 *               the row, the node's epilogues, a store of p lanes
 *
 * A tile's pixels are static (one code per tile of the row), so the terms
 * that fall off dy's left or right edge are left out when the code is
 * emitted; rows off its top or bottom are skipped at run time.  A work
 * item is one tile; every dx element is one chain of fmas in (f, ki, kj)
 * order summed by one thread, whatever the thread count.
 */
#include "emit_conv.h"
#include "gemm_internal.h"
#include "../ir/epilogue.h"

enum { MAXP = 16, MAXCV = 2, MAXTX = 6, MAX_WT = 256 << 10 };

typedef struct GxOuter {
    KpConvMap m;                /* the scatter form: X = dy (cin = F), Y = dx (cout = C) */
    int64_t taps;               /* kh * kw */
    int64_t cvt, cpad;          /* vectors of dx channels, channels padded to them */
    int cv;                     /* channel vectors per tile */
    int64_t nblk;               /* channel blocks of cv vectors (the last maybe fewer) */
    int p, ntx;                 /* pixels per tile (the last tile maybe fewer), tiles per row */
    int64_t wt_bytes;           /* Wt: cin * taps * cpad floats */
    int64_t shared_at;          /* the count of calls (i64) in the shared scratch */
} GxOuter;

/* Tiles: cv channel vectors by p pixels in 24 of the 32 registers, the
 * row cut into ntx tiles of nearly equal width. */
static void plan(GxOuter *s, int vw)
{
    const KpConvMap *m = &s->m;
    int budget = 24;
    s->taps = m->kh * m->kw;
    s->cvt = kp_ceil_div(m->cout, vw);
    s->cpad = s->cvt * vw;
    s->cv = (int)(s->cvt < MAXCV ? s->cvt : MAXCV);
    s->nblk = kp_ceil_div(s->cvt, s->cv);
    int64_t p = budget / s->cv;
    p = p < vw ? p : vw;
    p = p < m->ow ? p : m->ow;
    s->ntx = (int)kp_ceil_div(m->ow, p);
    s->p = (int)kp_ceil_div(m->ow, s->ntx);
    s->wt_bytes = 4 * m->cin * s->taps * s->cpad;
}

/* Wt[(f*taps + t)*cpad + c] = W[f, c, t] for the vw channels from cb
 * (rows of them real, the others zero) and every tap. */
static void transpose_w(KpEmit *e, const GxOuter *s, LLVMValueRef W, LLVMValueRef Wt, LLVMValueRef f,
                        LLVMValueRef cb, int rows)
{
    const KpConvMap *m = &s->m;
    for (int64_t t0 = 0; t0 < s->taps; t0 += e->vw) {
        int lanes = (int)(s->taps - t0 < e->vw ? s->taps - t0 : e->vw);
        LLVMValueRef row[64];
        for (int i = 0; i < e->vw; i++) {
            LLVMValueRef at = kp_iaddc(e, kp_iadd(e, kp_imulc(e, kp_iaddc(e, cb, i), m->wco), kp_imulc(e, f, m->wci)),
                                       m->w0 + t0);
            row[i] = i >= rows ? kp_fconst(e->vec, 0.0)
                     : lanes < e->vw ? kp_load_vec_masked(e, W, at, lanes, 0.0)
                                     : kp_load_vec(e, W, at);
        }
        kp_transpose_vw(e, row);
        for (int l = 0; l < lanes; l++)
            kp_store_vec(e, row[l], Wt, kp_iadd(e, kp_imulc(e, kp_iaddc(e, kp_imulc(e, f, s->taps), t0 + l), s->cpad), cb));
    }
}

static void transpose_weights(KpEmit *e, const GxOuter *s, LLVMValueRef W, LLVMValueRef Wt)
{
    int64_t whole = s->m.cout / e->vw * e->vw;
    KpLoop lf, lc;
    kp_loop_begin(e, &lf, kp_i64(e, 0), kp_i64(e, s->m.cin), 1, "wf");
    if (whole > 0) {
        kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, whole), e->vw, "wc");
        transpose_w(e, s, W, Wt, lf.iv, lc.iv, e->vw);
        kp_loop_end(e, &lc);
    }
    if (s->m.cout > whole)
        transpose_w(e, s, W, Wt, lf.iv, kp_i64(e, whole), (int)(s->m.cout - whole));
    kp_loop_end(e, &lf);
}

/* Tile tx of row r of sample n, channel vectors [v0, v0 + cv). */
static void tile(KpEmit *e, const KpKernelArgs *a, const GxOuter *s, LLVMValueRef Wt, LLVMValueRef n,
                 LLVMValueRef r, LLVMValueRef v0, int tx, int cv)
{
    const KpConvMap *m = &s->m;
    LLVMValueRef X = a->p[m->ix], Y = a->p[m->iy];
    int64_t ox0 = (int64_t)tx * s->p;
    int p = (int)(m->ow - ox0 < s->p ? m->ow - ox0 : s->p);
    LLVMValueRef acc[MAXP][MAXCV];
    for (int i = 0; i < p; i++)
        for (int v = 0; v < cv; v++) {
            acc[i][v] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[i][v]);
        }
    LLVMValueRef c0 = kp_imulc(e, v0, e->vw);
    KpLoop lf, lk;
    kp_loop_begin(e, &lf, kp_i64(e, 0), kp_i64(e, m->cin), 1, "f");
    LLVMValueRef plane = kp_imulc(e, kp_iadd(e, kp_imulc(e, n, m->cin), lf.iv), m->h);
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, m->kh), 1, "ki");
    LLVMValueRef iy = LLVMBuildNSWSub(e->b, kp_iaddc(e, r, m->pt), lk.iv, "");
    LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, m->h), ""), "gx.row");
    LLVMValueRef xrow = kp_imulc(e, kp_iadd(e, plane, iy), m->w);
    LLVMValueRef wrow = kp_iadd(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, lf.iv, m->kh), lk.iv), m->kw * s->cpad), c0);
    for (int64_t kj = 0; kj < m->kw; kj++) {
        LLVMValueRef wv[MAXCV];
        for (int v = 0; v < cv; v++)
            wv[v] = kp_load_vec(e, Wt, kp_iaddc(e, wrow, kj * s->cpad + v * e->vw));
        for (int i = 0; i < p; i++) {
            int64_t ix = ox0 + i + m->pl - kj;
            if (ix < 0 || ix >= m->w)
                continue;       /* off dy's row: no term */
            LLVMValueRef b = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, X, kp_iaddc(e, xrow, ix)), ""));
            for (int v = 0; v < cv; v++) {
                LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[i][v], "");
                LLVMBuildStore(e->b, kp_fma(e, b, wv[v], old), acc[i][v]);
            }
        }
    }
    kp_if_end(e, join);
    kp_loop_end_unrolled(e, &lk);
    kp_gemm_loop_end(e, &lf);

    /* per channel vector: the tile transposed into rows of p pixels */
    LLVMValueRef ybase = kp_iaddc(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, n, m->cout * m->oh), r), m->ow), ox0);
    for (int v = 0; v < cv; v++) {
        LLVMValueRef row[64];
        for (int i = 0; i < e->vw; i++)
            row[i] = i < p ? LLVMBuildLoad2(e->b, e->vec, acc[i][v], "") : kp_fconst(e->vec, 0.0);
        kp_transpose_vw(e, row);
        for (int l = 0; l < e->vw; l++) {
            LLVMValueRef c = kp_iaddc(e, c0, v * e->vw + l);
            LLVMBasicBlockRef in = NULL;
            if (m->cout % e->vw != 0)
                in = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntSLT, c, kp_i64(e, m->cout), ""), "gx.c");
            LLVMValueRef at = kp_iadd(e, ybase, kp_imulc(e, c, m->oh * m->ow));
            kp_gemm_store(e, kp_emit_epilogue(e, e->node, a->p, row[l], at, p < e->vw ? p : 0), kp_gep(e, Y, at), p);
            if (in)
                kp_if_end(e, in);
        }
    }
}

/* item = ((n * nblk + blk) * oh + r) * ntx + tx: one code per tile of the
 * row, and per width of the channel block (the last may be narrower) */
static void gx_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const GxOuter *s = user;
    const KpConvMap *m = &s->m;
    /* Wt: this thread's copy at the tail of its slot, made by its first
     * piece of this call (the tag differs from the call's count) */
    LLVMValueRef call = LLVMBuildLoad2(e->b, e->i64, kp_scratch_shared_at(e, s->shared_at), "call");
    LLVMValueRef tag;
    LLVMValueRef Wt = kp_scratch_tail(e, s->wt_bytes, &tag);
    LLVMValueRef stale = LLVMBuildICmp(e->b, LLVMIntNE, LLVMBuildLoad2(e->b, e->i64, tag, ""), call, "stale");
    LLVMBasicBlockRef built = kp_if_begin(e, stale, "wt.build");
    transpose_weights(e, s, a->p[m->iw], Wt);
    LLVMBuildStore(e->b, call, tag);
    kp_if_end(e, built);
    int crem = (int)(s->cvt % s->cv);
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef tx = LLVMBuildURem(e->b, li.iv, kp_i64(e, s->ntx), "tx");
    LLVMValueRef t = LLVMBuildUDiv(e->b, li.iv, kp_i64(e, s->ntx), "");
    LLVMValueRef r = LLVMBuildURem(e->b, t, kp_i64(e, m->oh), "r");
    t = LLVMBuildUDiv(e->b, t, kp_i64(e, m->oh), "");
    LLVMValueRef blk = LLVMBuildURem(e->b, t, kp_i64(e, s->nblk), "blk");
    LLVMValueRef n = LLVMBuildUDiv(e->b, t, kp_i64(e, s->nblk), "n");
    LLVMValueRef v0 = kp_imulc(e, blk, s->cv);
    LLVMValueRef last = LLVMBuildICmp(e->b, LLVMIntEQ, blk, kp_i64(e, s->nblk - 1), "");
    for (int k = 0; k < s->ntx; k++) {
        LLVMBasicBlockRef jt = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntEQ, tx, kp_i64(e, k), ""), "gx.tile");
        for (int lb = 0; lb < 2; lb++) {
            if (lb && !crem)
                continue;
            LLVMValueRef cond = crem ? (lb ? last : LLVMBuildNot(e->b, last, "")) : NULL;
            LLVMBasicBlockRef jb = cond ? kp_if_begin(e, cond, "gx.blk") : NULL;
            tile(e, a, s, Wt, n, r, v0, k, lb ? crem : s->cv);
            if (jb)
                kp_if_end(e, jb);
        }
        kp_if_end(e, jt);
    }
    kp_loop_end(e, &li);
}

bool kp_conv_grad_x_outer_fits(const KpConvMap *m, int64_t max_batch, int vw)
{
    /* 16-float vectors (32 registers): with AVX2's 8 floats and 16
     * registers the tiles were 6 pixels by 2 vectors, and fashion_cnn's
     * conv2d1 ran at 59 GFLOP/s against the direct kernel's 104 (keras_cnn's
     * conv2d2: 62 against 63; x86-64-v3 code on the Zen 4, one thread) */
    if (vw < 16 || !m->transposed || m->sh != 1 || m->sw != 1 || m->dh != 1 || m->dw != 1 || m->wki != m->kw ||
        m->wkj != 1)
        return false;
    /* whole vectors of dx channels, or few lanes lost; and dx rows that
     * leave an eighth or more of the direct kernel's lanes idle (rows of
     * whole vectors, resnet_cifar's 32 and 16 wide, ran as fast or faster
     * direct: 92% of peak on 2 threads against 64-92%) */
    if ((m->cout % vw != 0 && m->cout < 4 * vw) || 8 * m->ow >= 7 * kp_round_up(m->ow, vw))
        return false;
    GxOuter s = {.m = *m};
    plan(&s, vw);
    /* every thread keeps its own copy of the transposed weight: at most
     * MAX_WT bytes (keras' and fashion's layers: 72 KiB) */
    /* rows of at most a vector at any batch (there it beats Winograd:
     * emit_conv2d_grad_x), wider ones up to KP_OUTER_MAX_PIXELS */
    bool pixels = m->ow <= vw || max_batch * m->oh * m->ow <= KP_OUTER_MAX_PIXELS;
    return s.ntx <= MAXTX && pixels && s.wt_bytes <= MAX_WT;
}

void kp_emit_conv_grad_x_outer(KpEmit *e, const KpConvMap *m)
{
    GxOuter s = {.m = *m};
    plan(&s, e->vw);
    s.shared_at = kp_scratch_shared_take(e, "conv_grad_x_outer", 8, 0);
    /* the count of calls, bumped once per call on the calling thread:
     * before the region here, in a group as this function's prologue */
    LLVMBasicBlockRef body = kp_prologue_begin(e);
    LLVMValueRef count = kp_scratch_shared_at(e, s.shared_at);
    LLVMBuildStore(e->b, kp_iaddc(e, LLVMBuildLoad2(e->b, e->i64, count, ""), 1), count);
    kp_prologue_end(e, body);
    LLVMValueRef items = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, s.nblk * m->oh * s.ntx), "items");
    int64_t macs = (e->g ? e->g->max_batch : 1) * m->cout * m->oh * m->ow * m->cin * s.taps;
    kp_emit_parallel(e, "conv_grad_x_outer", kp_i64(e, 0), items, macs >= 65536, gx_kernel, &s);
}
