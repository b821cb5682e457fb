/*
 * emit_pool_vec.c — pooling with vectors of output columns.
 *
 * For an output row oy, vw windows ox0 .. ox0+vw-1 form a chunk.  Each
 * input row under the chunk is loaded once, as whole vectors over the
 * columns the chunk reads (c0 = ox0 sw - pl, span (vw-1) sw + kw), and
 * tap (ky, kx) of window ox0+l is picked out of them by one shuffle:
 *
 *     input row   c0  c0+1  c0+2  c0+3  c0+4 ...      sw = 2, kw = 2
 *     tap kx = 0  l0        l1          l2
 *     tap kx = 1      l0          l1          ...
 *
 * The taps are visited in the reference's order (row-major in the window),
 * so every output is the reference's bit for bit: max keeps the first
 * maximum (a later tap wins only if greater, padding never wins, the first
 * tap inside is taken whatever its value), avg adds the taps to 0 in order
 * and multiplies by 1/(kh kw).
 *
 * Gradients of non-overlapping windows (kh <= sh, kw <= sw) without left
 * padding: every input element lies in at most one window, so dx is
 * written once, row by row, from the window row over it: dy on the
 * window's first maximum (max; its tap index kept per lane) or dy/(kh kw)
 * on every tap (avg), 0 where no window reaches.  One shuffle per output
 * vector interleaves the sw tap vectors back into columns:
 *
 *     G0 = dx of tap kx = 0 per window  g0 g1 g2 ...
 *     G1 = dx of tap kx = 1 per window  h0 h1 h2 ...     ->   g0 h0 g1 h1 g2 h2 ...
 *
 * No zeroing sweep and no scatter; the node's epilogues apply at each
 * store, the element being final.
 *
 * The chunks at a row's ends (padding, a last partial chunk, the columns
 * after the last window) are emitted one by one, their masks known at
 * compile time; the chunks between, whose loads and stores are all inside
 * the row, run as one loop.
 */
#include <math.h>

#include "emit_pool.h"

enum { MAX_LANES = 256 };   /* the widest vector a shuffle here takes */

typedef struct Chunk {
    LLVMValueRef ox0;           /* its first window, i64 */
    int64_t ox0s;               /* the same when known; -1 in the loop over interior chunks */
    int lanes;                  /* windows of the row in the chunk (up to vw) */
} Chunk;

/* One input row under a chunk: columns c0+lo .. c0+lo+ncols-1 loaded */
typedef struct Span {
    LLVMValueRef big;           /* the loaded vectors, concatenated (size lanes) */
    int64_t lo, ncols;
    unsigned size;
} Span;

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

static unsigned pow2_at_least(int64_t v)
{
    unsigned p = 1;
    while ((int64_t)p < v)
        p *= 2;
    return p;
}

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef add(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

/* columns one row of a chunk reads: (vw-1) sw + kw */
static int64_t span_cols(const KpEmit *e, const KpPool *s)
{
    return (e->vw - 1) * s->sw + s->kw;
}

/* whether some tap of some window is padding */
static int has_padding(const KpPool *s)
{
    return s->pt > 0 || s->pl > 0 || (s->oh - 1) * s->sh - s->pt + s->kh > s->h ||
           (s->ow - 1) * s->sw - s->pl + s->kw > s->w;
}

/* whether a window row may reach above or below the plane */
static int rows_checked(const KpPool *s)
{
    return s->pt > 0 || (s->oh - 1) * s->sh - s->pt + s->kh > s->h;
}

int kp_pool_vec_ok(const KpEmit *e, const KpPool *s)
{
    if (pow2_at_least(ceil_div(span_cols(e, s), e->vw)) * (unsigned)e->vw > MAX_LANES)
        return 0;
    if (!s->grad)
        return 1;
    return s->kh <= s->sh && s->kw <= s->sw && s->pl == 0 &&
           pow2_at_least(s->sw) * (unsigned)e->vw <= MAX_LANES;
}

/* v[0..nv) (vectors of one type) as one vector, padded with zeros to a
 * power of two of them; v is used as scratch */
static LLVMValueRef concat(KpEmit *e, LLVMValueRef *v, int nv)
{
    while (nv > 1) {
        int k = 0;
        for (int i = 0; i < nv; i += 2) {
            LLVMTypeRef ty = LLVMTypeOf(v[i]);
            unsigned w = LLVMGetVectorSize(ty);
            LLVMValueRef idx[MAX_LANES];
            for (unsigned j = 0; j < 2 * w; j++)
                idx[j] = kp_i32(e, (int32_t)j);
            LLVMValueRef b = i + 1 < nv ? v[i + 1] : LLVMConstNull(ty);
            v[k++] = LLVMBuildShuffleVector(e->b, v[i], b, LLVMConstVector(idx, 2 * w), "");
        }
        nv = k;
    }
    return v[0];
}

/* lanes of big picked by idx (an index of big.size or more: zero) */
static LLVMValueRef pick(KpEmit *e, LLVMValueRef big, const int64_t *idx)
{
    unsigned size = LLVMGetVectorSize(LLVMTypeOf(big));
    LLVMValueRef m[64];
    for (int l = 0; l < e->vw; l++)
        m[l] = kp_i32(e, (int32_t)(idx[l] < (int64_t)size ? idx[l] : size));
    return LLVMBuildShuffleVector(e->b, big, LLVMConstNull(LLVMTypeOf(big)),
                                  LLVMConstVector(m, (unsigned)e->vw), "");
}

/* Load input row `row` (element offset of its column 0) under chunk c. */
static Span load_span(KpEmit *e, LLVMValueRef X, const KpPool *s, const Chunk *c, LLVMValueRef row)
{
    Span sp;
    int64_t cols = span_cols(e, s), full;
    LLVMValueRef c0 = LLVMBuildNSWSub(e->b, mul(e, c->ox0, s->sw), kp_i64(e, s->pl), "c0");
    if (c->ox0s < 0) {
        sp.lo = 0, sp.ncols = cols;
        full = ceil_div(cols, e->vw) * e->vw;
    } else {
        int64_t c0s = c->ox0s * s->sw - s->pl;
        int64_t lo = c0s > 0 ? c0s : 0, hi = c0s + cols < s->w ? c0s + cols : s->w;
        sp.lo = lo - c0s, sp.ncols = hi > lo ? hi - lo : 0;
        full = sp.ncols;
    }
    int nv = (int)ceil_div(sp.ncols, e->vw);
    LLVMValueRef v[MAX_LANES / 4];
    LLVMValueRef at = add(e, row, add(e, c0, kp_i64(e, sp.lo)));
    for (int j = 0; j < nv; j++) {
        LLVMValueRef i = add(e, at, kp_i64(e, j * e->vw));
        int64_t left = full - j * e->vw;
        v[j] = left >= e->vw ? kp_load_vec(e, X, i) : kp_load_vec_masked(e, X, i, (int)left, 0.0);
    }
    if (nv == 0)
        v[nv++] = kp_fconst(e->vec, 0.0);
    sp.big = concat(e, v, nv);
    sp.size = LLVMGetVectorSize(LLVMTypeOf(sp.big));
    return sp;
}

/* Tap kx of the chunk's windows from a loaded row; *inside (NULL: all
 * lanes) says which lanes are input columns, the others read 0. */
static LLVMValueRef tap(KpEmit *e, const KpPool *s, const Chunk *c, const Span *sp, int64_t kx,
                        LLVMValueRef *inside)
{
    int64_t idx[64];
    LLVMValueRef in[64];
    int all = 1;
    for (int l = 0; l < e->vw; l++) {
        int64_t rel = l * s->sw + kx - sp->lo;   /* from the first loaded column */
        int ok = l < c->lanes && rel >= 0 && rel < sp->ncols;
        idx[l] = ok ? rel : (int64_t)sp->size;
        in[l] = LLVMConstInt(e->i1, (unsigned long long)ok, 0);
        all &= ok || l >= c->lanes;
    }
    *inside = all ? NULL : LLVMConstVector(in, (unsigned)e->vw);
    return pick(e, sp->big, idx);
}

/* if (0 <= iy < h) {...}: the join block, the builder inside; NULL when
 * no row can be outside */
static LLVMBasicBlockRef row_inside(KpEmit *e, const KpPool *s, LLVMValueRef iy)
{
    if (!rows_checked(s))
        return NULL;
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(e->ctx, fn, "row.in");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "row.done");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, s->h), ""), then, done);
    LLVMPositionBuilderAtEnd(e->b, then);
    return done;
}

static void row_done(KpEmit *e, LLVMBasicBlockRef done)
{
    if (!done)
        return;
    LLVMBuildBr(e->b, done);
    LLVMPositionBuilderAtEnd(e->b, done);
}

/* The chunk's windows of row oy over plane xp of X: the max (*best) and the
 * tap index of the first maximum (*code, -1 for a window of padding only),
 * or the sum (*best) for avg. */
static void reduce_windows(KpEmit *e, LLVMValueRef X, const KpPool *s, const Chunk *c,
                           LLVMValueRef xp, LLVMValueRef oy, LLVMValueRef *best, LLVMValueRef *code)
{
    LLVMTypeRef ivec = LLVMVectorType(e->i32, (unsigned)e->vw);
    LLVMValueRef m = kp_alloca(e, e->vec, "best"), k = kp_alloca(e, ivec, "code");
    int pad = has_padding(s);
    LLVMBuildStore(e->b, kp_fconst(e->vec, s->max ? -INFINITY : 0.0), m);
    LLVMBuildStore(e->b, LLVMConstAllOnes(ivec), k);
    LLVMValueRef iy0 = LLVMBuildNSWSub(e->b, mul(e, oy, s->sh), kp_i64(e, s->pt), "iy0");
    for (int64_t ky = 0; ky < s->kh; ky++) {
        LLVMValueRef iy = add(e, iy0, kp_i64(e, ky));
        LLVMBasicBlockRef done = row_inside(e, s, iy);
        Span sp = load_span(e, X, s, c, add(e, xp, mul(e, iy, s->w)));
        for (int64_t kx = 0; kx < s->kw; kx++) {
            LLVMValueRef inside, t = tap(e, s, c, &sp, kx, &inside);
            LLVMValueRef cur = LLVMBuildLoad2(e->b, e->vec, m, "");
            if (!s->max) {
                LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, cur, t, ""), m);
                continue;
            }
            LLVMValueRef take;
            LLVMValueRef kc = LLVMBuildLoad2(e->b, ivec, k, "");
            if (!pad && ky == 0 && kx == 0) {
                take = LLVMConstAllOnes(LLVMVectorType(e->i1, (unsigned)e->vw));
            } else {
                take = LLVMBuildFCmp(e->b, LLVMRealOGT, t, cur, "");
                if (pad) {
                    LLVMValueRef none = LLVMBuildICmp(e->b, LLVMIntSLT, kc, LLVMConstNull(ivec), "");
                    take = LLVMBuildOr(e->b, take, none, "");
                    if (inside)
                        take = LLVMBuildAnd(e->b, take, inside, "");
                }
            }
            LLVMValueRef here = kp_iconst_like(e, e->vec, (int32_t)(ky * s->kw + kx));
            LLVMBuildStore(e->b, LLVMBuildSelect(e->b, take, t, cur, ""), m);
            LLVMBuildStore(e->b, LLVMBuildSelect(e->b, take, here, kc, ""), k);
        }
        row_done(e, done);
    }
    *best = LLVMBuildLoad2(e->b, e->vec, m, "");
    *code = LLVMBuildLoad2(e->b, ivec, k, "");
}

/* The output vector v of `valid` lanes (all: vw) at element at of the
 * output, through the node's epilogues. */
static void store_out(KpEmit *e, const KpKernelArgs *a, const KpPool *s, LLVMValueRef v,
                      LLVMValueRef at, int valid)
{
    LLVMValueRef out = a->p[s->node->nin];
    v = kp_emit_epilogue(e, s->node, a->p, v, at, valid < e->vw ? valid : 0);
    if (valid < e->vw)
        kp_store_vec_masked(e, v, out, at, valid);
    else
        kp_store_vec(e, v, out, at);
}

/* y[oy, chunk] of plane p */
static void forward_chunk(KpEmit *e, const KpKernelArgs *a, const KpPool *s, const Chunk *c,
                          LLVMValueRef p, LLVMValueRef oy)
{
    LLVMValueRef best, code;
    reduce_windows(e, a->p[0], s, c, mul(e, p, s->h * s->w), oy, &best, &code);
    LLVMValueRef v;
    if (!s->max) {
        v = LLVMBuildFMul(e->b, best, kp_fconst(e->vec, 1.0f / (float)(s->kh * s->kw)), "");
    } else if (has_padding(s)) {
        LLVMValueRef some = LLVMBuildICmp(e->b, LLVMIntSGE, code, LLVMConstNull(LLVMTypeOf(code)), "");
        v = LLVMBuildSelect(e->b, some, best, kp_fconst(e->vec, 0.0), "");
    } else {
        v = best;
    }
    LLVMValueRef at = add(e, add(e, mul(e, p, s->oh * s->ow), mul(e, oy, s->ow)), c->ox0);
    store_out(e, a, s, v, at, c->lanes);
}

/* Row iy of dx (plane p) under chunk c, from the tap vectors g[0..sw):
 * interleaved into columns ox0 sw .. (ox0 + vw) sw - 1, those inside the
 * row stored. */
static void store_dx_row(KpEmit *e, const KpKernelArgs *a, const KpPool *s, const Chunk *c,
                         LLVMValueRef p, LLVMValueRef iy, LLVMValueRef *g)
{
    LLVMValueRef big = concat(e, g, (int)s->sw);
    LLVMValueRef row = add(e, mul(e, p, s->h * s->w), mul(e, iy, s->w));
    for (int64_t q = 0; q < s->sw; q++) {
        int64_t valid = e->vw;
        if (c->ox0s >= 0) {
            int64_t left = s->w - (c->ox0s * s->sw + q * e->vw);
            if (left <= 0)
                break;
            valid = left < e->vw ? left : e->vw;
        }
        int64_t idx[64];
        for (int k = 0; k < e->vw; k++) {
            int64_t col = q * e->vw + k;             /* from the chunk's first column */
            idx[k] = (col % s->sw) * e->vw + col / s->sw;
        }
        LLVMValueRef at = add(e, row, add(e, mul(e, c->ox0, s->sw), kp_i64(e, q * e->vw)));
        store_out(e, a, s, pick(e, big, idx), at, (int)valid);
    }
}

/* dx of the input rows under window row oy and chunk c, plane p */
static void grad_chunk(KpEmit *e, const KpKernelArgs *a, const KpPool *s, const Chunk *c,
                       LLVMValueRef p, LLVMValueRef oy)
{
    LLVMValueRef best, code = NULL, dy;
    if (s->max && c->lanes > 0)
        reduce_windows(e, a->p[1], s, c, mul(e, p, s->h * s->w), oy, &best, &code);
    LLVMValueRef at = add(e, add(e, mul(e, p, s->oh * s->ow), mul(e, oy, s->ow)), c->ox0);
    if (c->lanes == 0)
        dy = kp_fconst(e->vec, 0.0);
    else if (c->lanes < e->vw)
        dy = kp_load_vec_masked(e, a->p[0], at, c->lanes, 0.0);
    else
        dy = kp_load_vec(e, a->p[0], at);
    if (!s->max)
        dy = LLVMBuildFMul(e->b, dy, kp_fconst(e->vec, 1.0f / (float)(s->kh * s->kw)), "");
    LLVMValueRef iy0 = LLVMBuildNSWSub(e->b, mul(e, oy, s->sh), kp_i64(e, s->pt), "iy0");
    for (int64_t ky = 0; ky < s->sh; ky++) {
        LLVMValueRef iy = add(e, iy0, kp_i64(e, ky));
        LLVMBasicBlockRef done = row_inside(e, s, iy);
        LLVMValueRef g[MAX_LANES / 4];
        for (int64_t kx = 0; kx < s->sw; kx++) {
            g[kx] = kp_fconst(e->vec, 0.0);
            if (ky >= s->kh || kx >= s->kw || c->lanes == 0)
                continue;
            if (!s->max) {
                g[kx] = dy;
                continue;
            }
            LLVMValueRef here = kp_iconst_like(e, e->vec, (int32_t)(ky * s->kw + kx));
            g[kx] = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, code, here, ""), dy,
                                    kp_fconst(e->vec, 0.0), "");
        }
        store_dx_row(e, a, s, c, p, iy, g);
        row_done(e, done);
    }
}

typedef void (*ChunkFn)(KpEmit *e, const KpKernelArgs *a, const KpPool *s, const Chunk *c,
                        LLVMValueRef p, LLVMValueRef oy);

/* Every chunk of row oy: nchunks of them, those in [ia, ib) as a loop. */
static void each_chunk(KpEmit *e, const KpKernelArgs *a, const KpPool *s, ChunkFn f,
                       LLVMValueRef p, LLVMValueRef oy, int64_t nchunks, int64_t ia, int64_t ib)
{
    for (int64_t j = 0; j < nchunks; j++) {
        if (j == ia && ib - ia >= 2) {
            KpLoop lc;
            kp_loop_begin(e, &lc, kp_i64(e, ia * e->vw), kp_i64(e, ib * e->vw), e->vw, "chunk");
            Chunk c = {lc.iv, -1, e->vw};
            f(e, a, s, &c, p, oy);
            kp_loop_end(e, &lc);
            j = ib - 1;
            continue;
        }
        int64_t lanes = s->ow - j * e->vw;
        Chunk c = {kp_i64(e, j * e->vw), j * e->vw,
                   (int)(lanes < 0 ? 0 : lanes < e->vw ? lanes : e->vw)};
        f(e, a, s, &c, p, oy);
    }
}

/* Whether chunk j is interior: vw windows whose loads (and for a
 * gradient, stores) all fall inside the row. */
static int interior(const KpEmit *e, const KpPool *s, int64_t j)
{
    int64_t ox0 = j * e->vw, c0 = ox0 * s->sw - s->pl;
    int64_t loaded = ceil_div(span_cols(e, s), e->vw) * e->vw;
    if (ox0 + e->vw > s->ow || c0 < 0 || c0 + loaded > s->w)
        return 0;
    return !s->grad || ox0 * s->sw + s->sw * e->vw <= s->w;
}

void kp_pool_vec_plane(KpEmit *e, const KpKernelArgs *a, const KpPool *s, LLVMValueRef p)
{
    /* a gradient's chunks cover every input column; a forward's, the windows */
    int64_t nchunks = s->grad ? ceil_div(s->w, s->sw * e->vw) : ceil_div(s->ow, e->vw);
    int64_t ia = 0, ib = 0;
    while (ia < nchunks && !interior(e, s, ia))
        ia++;
    for (ib = ia; ib < nchunks && interior(e, s, ib);)
        ib++;
    KpLoop ly;
    kp_loop_begin(e, &ly, kp_i64(e, 0), kp_i64(e, s->oh), 1, "oy");
    /* a forward's window row: the rows it reads, a page on.  On the 2-core
     * Intel Xeon, batch 64, two threads: fashion_cnn's maxpool in the step
     * 351-371 -> 304-313 us, keras_cnn's 132-139 -> 119-127 and 41-50 ->
     * 35-39 (`karpc bench`, in-step column, two rounds each); the steps
     * 0.98-0.99x the time in alternated `bench/train_steps --ab` runs,
     * resnet_cifar's unchanged.  The gradients gained nothing from it. */
    if (!s->grad) {
        LLVMValueRef xrow = add(e, mul(e, p, s->h * s->w), mul(e, ly.iv, s->sh * s->w));
        kp_prefetch_span(e, a->p[0], kp_iaddc(e, xrow, KP_PREFETCH_PAGE_AHEAD), s->sh * s->w);
    }
    each_chunk(e, a, s, s->grad ? grad_chunk : forward_chunk, p, ly.iv, nchunks, ia, ib);
    kp_loop_end(e, &ly);
    if (!s->grad || s->oh * s->sh - s->pt >= s->h)
        return;
    /* the rows below the last window row: zero */
    KpLoop lr;
    kp_loop_begin(e, &lr, kp_i64(e, s->oh * s->sh - s->pt), kp_i64(e, s->h), 1, "rest");
    LLVMValueRef row = add(e, mul(e, p, s->h * s->w), mul(e, lr.iv, s->w));
    for (int64_t col = 0; col < s->w; col += e->vw) {
        int64_t left = s->w - col;
        store_out(e, a, s, kp_fconst(e->vec, 0.0), add(e, row, kp_i64(e, col)),
                  (int)(left < e->vw ? left : e->vw));
    }
    kp_loop_end(e, &lr);
}
