/*
 * emit_conv_grad_w_outer.c — conv2d's weight gradient as a sum of outer
 * products, for images of few pixels:
 *
 *   dW[co, t] (+)= sum over samples g and pixels p of  dy[g, co, p] · x[g, tap t at p]
 *
 * with the vector lanes along the output channels co.  The dot kernel
 * (emit_conv_grad_w.c) puts them along the pixels and sums each element
 * across its lanes at the end; on a small image that tree costs as much
 * as the fmas (keras_cnn's conv2d2: 121 pixels, 8 vectors of fmas per
 * 16-lane tree), and it packs im2col rows of x first.  Here:
 *
 *   per sample g:   dyT[p][co] <- dy[g, co, p]     (vw x vw blocks transposed in registers)
 *   per register tile of R taps by CV vectors of channels:
 *     for each pixel p = (oy, ox):
 *       d[v] = dyT[p][co0 + v*vw ..]                        (CV loads)
 *       b    = x[g, ci, oy*sh + ki*dh, ox*sw + kj*dw]       (a broadcast per tap (ci, ki, kj))
 *       acc[j][v] = fma(b, d[v], acc[j][v])
 *
 * x is read in place when every window stays inside the image.  A padded
 * layer reads it in place too where its tiles are of whole input channels
 * and it has few forms of the pixel: the pixels whose windows reach into
 * the padding (a row or two at each edge) each take a form of their own
 * that leaves out the taps outside the image (known at compile time), in
 * the same (oy, ox) order.  Otherwise x is read from a copy of the sample
 * with its border, made for the input channels the call's items read.
 * A work item is one register tile of dW
 * (taps by channel vectors); its sums wait in the scratch between samples
 * and go to dW, transposed, after the last.
 *
 * Over many pixels (more than KP_OUTER_MAX_PIXELS in the largest batch)
 * an item is instead a chunk of the samples over all of dW: OUTER_CHUNKS
 * fixed chunks (the first n mod OUTER_CHUNKS one sample longer), so that
 * each thread transposes and copies only its own samples (with items of
 * tiles, every thread did it for every sample; resnet_cifar's stride-2
 * layer then ran no faster on two threads than on one).  A chunk's sums
 * go to its partial dW in the call's shared scratch, and the last chunk to
 * finish (kp_last_begin) adds the partials in chunk order.
 * Every element is one chain of fmas in (g, oy, ox) order (per chunk),
 * whatever the items or the thread count: the results do not depend on
 * them.
 */
#include "emit_conv.h"
#include "gemm_internal.h"

typedef struct Outer {
    int64_t f, c, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw;
    int64_t t, npix;            /* taps c*kh*kw, pixels oh*ow */
    int64_t fv, fpad;           /* vectors of channels, channels padded to them */
    int r, cv;                  /* register tile: taps by vectors of channels */
    int64_t tiles_t, blocks_f;  /* items: tiles_t * blocks_f */
    /* the windows' extent, from (-pt, -pl); copied (padded) into xp[c][hp][wpr]
     * when it reaches outside the image and the forms below do not serve,
     * else x read in place */
    bool copy;
    /* the pixels whose windows stay inside: rows [ylo, yhi) by columns
     * [xlo, xhi); forms: the others read x in place, each row and column
     * outside them a form of the pixel (spans) */
    int64_t ylo, yhi, xlo, xhi;
    bool forms;
    int64_t hp, wpr;
    int64_t acc_at, xp_at;      /* scratch: dyT, the sums acc[t][fpad], xp */
    int64_t chunks;             /* sample chunks (1: none), each an item over all of dW */
    int64_t shared_at;          /* with chunks: partial dW [f][t] per chunk, then a counter */
    int idy, ix, idw;           /* kernel pointers: dy, x, dW */
} Outer;

/* Chunks of the samples, and the largest dW (bytes) split by them: the
 * partials wait in the shared scratch, one per chunk.  MAX_R: the most
 * taps a register tile holds (one channel vector with AVX-512, plan()). */
enum { OUTER_CHUNKS = 4, OUTER_CHUNK_DW = 1 << 20, MAX_R = 28 };

/* Forms of the pixel at most (rows alone or in one run, by columns
 * alone or in one run) for a padded layer read in place. */
enum { MAX_FORMS = 16 };

/* The tile's sums: zero at the first sample, kept in the scratch until the
 * last, then written (added to what is there when accumulate) to dst,
 * [f][t] like dW. */
typedef struct Sums {
    LLVMValueRef first, last, dst;
    bool accumulate;
} Sums;

/* The outputs [lo, hi) of an axis of `out` whose windows o*st - pad +
 * k*d (k < taps) all fall inside [0, n). */
static void inside(int64_t out, int64_t n, int64_t st, int64_t pad, int64_t taps, int64_t d, int64_t *lo,
                   int64_t *hi)
{
    int64_t last = n - 1 + pad - (taps - 1) * d;   /* o*st at most this */
    *lo = pad > 0 ? kp_ceil_div(pad, st) : 0;
    *hi = last < 0 ? 0 : last / st + 1;
    *lo = *lo < out ? *lo : out;
    *hi = *hi < out ? *hi : out;
    *hi = *hi > *lo ? *hi : *lo;
}

static int64_t span_count(int64_t out, int64_t lo, int64_t hi)
{
    return lo + (out - hi) + (hi > lo);
}

/* Register tile accumulators: 24 vectors of the 32 with AVX-512, 12 of 16
 * with AVX2, the rest for the channel vectors and the broadcast; with
 * one channel vector and AVX-512, 28 (resnet's stem: its 27 taps in one
 * tile, dy's row read once a pixel, 4-6% faster than 18 + 9 taps).  Taps
 * tiles of whole input channels when one fits: the taps' offsets in x are
 * then constants from one base, so the pixel loop keeps one index for all
 * of them, not a pointer per tap (12 adds a pixel beside 24 fmas). */
static void plan(Outer *s, int vw, int64_t max_batch)
{
    int budget = vw >= 16 ? 24 : 12;
    s->fv = kp_ceil_div(s->f, vw);
    s->fpad = s->fv * vw;
    s->cv = (int)(s->fv < budget / 6 ? s->fv : budget / 6);
    s->r = s->cv == 1 && vw >= 16 ? MAX_R : budget / s->cv;
    if (s->kh * s->kw <= s->r)
        s->r = (int)(s->r / (s->kh * s->kw) * (s->kh * s->kw));
    s->tiles_t = kp_ceil_div(s->t, s->r);
    s->blocks_f = kp_ceil_div(s->fv, s->cv);
    s->acc_at = s->npix * s->fpad;
    s->hp = (s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1;
    int64_t wp = (s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1;
    s->copy = s->pt != 0 || s->pl != 0 || s->hp > s->h || wp > s->w;
    inside(s->oh, s->h, s->sh, s->pt, s->kh, s->dh, &s->ylo, &s->yhi);
    inside(s->ow, s->w, s->sw, s->pl, s->kw, s->dw, &s->xlo, &s->xhi);
    int64_t forms = span_count(s->oh, s->ylo, s->yhi) * span_count(s->ow, s->xlo, s->xhi);
    s->forms = s->copy && s->r % (s->kh * s->kw) == 0 && forms <= MAX_FORMS;
    s->copy = s->copy && !s->forms;
    s->wpr = s->copy ? kp_round_up(wp, vw) : s->w;
    s->xp_at = s->acc_at + s->tiles_t * s->r * s->fpad;
    s->chunks = max_batch * s->npix > KP_OUTER_MAX_PIXELS ? OUTER_CHUNKS : 1;
}

/* xp[ci][yy][xx] = x_g[ci][yy - pt][xx - pl] for ci in [c0, c1), zero
 * outside the image: rows of vectors, their lanes past the image masked
 * (runtime masks).  With ahead, the same lines of the next sample are
 * prefetched into L2 as they go: the image comes from memory (a layer's
 * input, written long before its weight gradient), and its lines then
 * arrive while this sample's tiles run instead of stalling the next copy. */
static void copy_padded(KpEmit *e, const Outer *s, LLVMValueRef xg, LLVMValueRef xp, LLVMValueRef c0,
                        LLVMValueRef c1, bool ahead)
{
    KpLoop lc, ly, lx;
    kp_loop_begin(e, &lc, c0, c1, 1, "pc");
    kp_loop_begin(e, &ly, kp_i64(e, 0), kp_i64(e, s->hp), 1, "py");
    LLVMValueRef iy = kp_iaddc(e, ly.iv, -s->pt);
    LLVMValueRef in = LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, s->h), "");
    /* a row in the padding reads row 0 with every lane masked */
    LLVMValueRef iyc = LLVMBuildSelect(e->b, in, iy, kp_i64(e, 0), "");
    LLVMValueRef row = kp_imulc(e, kp_iadd(e, kp_imulc(e, lc.iv, s->h), iyc), s->w);
    LLVMValueRef width = LLVMBuildSelect(e->b, in, kp_i64(e, s->w), kp_i64(e, 0), "");
    LLVMValueRef dst = kp_imulc(e, kp_iadd(e, kp_imulc(e, lc.iv, s->hp), ly.iv), s->wpr);
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, s->wpr), e->vw, "px");
    LLVMValueRef ix = kp_lane_index(e, kp_iaddc(e, lx.iv, -s->pl), 1);
    LLVMValueRef ok = LLVMBuildICmp(e->b, LLVMIntULT, ix, kp_lane_index(e, width, 0), "");
    LLVMValueRef at = kp_iaddc(e, kp_iadd(e, row, lx.iv), -s->pl);
    LLVMTypeRef over[2] = {e->vec, e->ptr};
    LLVMValueRef args[4] = {LLVMBuildGEP2(e->b, e->f32, xg, &at, 1, ""), kp_i32(e, 4), ok, kp_fconst(e->vec, 0.0)};
    kp_store_vec(e, kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4), xp, kp_iadd(e, dst, lx.iv));
    if (ahead)
        kp_prefetch_l2(e, xg, kp_iaddc(e, at, s->c * s->h * s->w));
    kp_loop_end(e, &lx);
    kp_loop_end(e, &ly);
    kp_loop_end(e, &lc);
}

/* dyT[p][cb + i] = dy_g[cb + i][p] for a block of vw channels from cb
 * (rows of them real: the others zero) and vw pixels from pb (lanes of
 * them real: only those stored). */
static void transpose_block(KpEmit *e, const Outer *s, LLVMValueRef dyg, LLVMValueRef dyT, LLVMValueRef cb,
                            LLVMValueRef pb, int rows, int lanes)
{
    LLVMValueRef row[64];
    for (int i = 0; i < e->vw; i++) {
        LLVMValueRef at = kp_iadd(e, kp_imulc(e, kp_iaddc(e, cb, i), s->npix), pb);
        row[i] = i >= rows ? kp_fconst(e->vec, 0.0)
                 : lanes < e->vw ? kp_load_vec_masked(e, dyg, at, lanes, 0.0)
                                 : kp_load_vec(e, dyg, at);
    }
    kp_transpose_vw(e, row);
    for (int l = 0; l < lanes; l++)
        kp_store_vec(e, row[l], dyT, kp_iadd(e, kp_imulc(e, kp_iaddc(e, pb, l), s->fpad), cb));
}

/* The pixels' blocks of vw for a block of channels (rows of them real). */
static void transpose_pixels(KpEmit *e, const Outer *s, LLVMValueRef dyg, LLVMValueRef dyT, LLVMValueRef cb,
                             int rows)
{
    int64_t whole = s->npix / e->vw * e->vw;
    KpLoop lp;
    kp_loop_begin(e, &lp, kp_i64(e, 0), kp_i64(e, whole), e->vw, "tp");
    transpose_block(e, s, dyg, dyT, cb, lp.iv, rows, e->vw);
    kp_loop_end(e, &lp);
    if (s->npix > whole)
        transpose_block(e, s, dyg, dyT, cb, kp_i64(e, whole), rows, (int)(s->npix - whole));
}

static void transpose_dy(KpEmit *e, const Outer *s, LLVMValueRef dyg, LLVMValueRef dyT)
{
    int64_t whole = s->f / e->vw * e->vw;
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, whole), e->vw, "tc");
    transpose_pixels(e, s, dyg, dyT, lc.iv, e->vw);
    kp_loop_end(e, &lc);
    if (s->f > whole)
        transpose_pixels(e, s, dyg, dyT, kp_i64(e, whole), (int)(s->f - whole));
}

/* dW[co][t0 + j] (+)= sum[j][v] lane l, co = co0 + v*vw + l (below f):
 * the tile transposed in registers, vw taps at a time, so that each
 * channel's taps are one masked store. */
static void write_dw(KpEmit *e, const Outer *s, const Sums *o, LLVMValueRef sum[][4], LLVMValueRef t0,
                     LLVMValueRef co0, int r, int cv)
{
    LLVMValueRef dW = o->dst;
    for (int v = 0; v < cv; v++)
        for (int jb = 0; jb < r; jb += e->vw) {
            int taps = r - jb < e->vw ? r - jb : e->vw;
            LLVMValueRef row[64];
            for (int i = 0; i < e->vw; i++)
                row[i] = i < taps ? sum[jb + i][v] : kp_fconst(e->vec, 0.0);
            kp_transpose_vw(e, row);
            for (int l = 0; l < e->vw; l++) {
                LLVMValueRef co = kp_iaddc(e, co0, v * e->vw + l);
                LLVMValueRef at = kp_iadd(e, kp_imulc(e, co, s->t), kp_iaddc(e, t0, jb));
                LLVMBasicBlockRef join = NULL;
                if (s->f % e->vw != 0)
                    join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntSLT, co, kp_i64(e, s->f), ""), "co.in");
                LLVMValueRef x = row[l], to = kp_gep(e, dW, at);
                if (o->accumulate)
                    x = LLVMBuildFAdd(e->b, kp_gemm_load(e, to, taps), x, "");
                kp_gemm_store(e, x, to, taps);
                if (join)
                    kp_if_end(e, join);
            }
        }
}

/* What the pixels of a tile share: x (or its copy), its taps' offsets
 * from a pixel's window origin, their rows and columns in the window,
 * the accumulators. */
typedef struct Taps {
    int r, cv;
    LLVMValueRef x, dyT, co0;
    LLVMValueRef off[MAX_R];
    int64_t ky[MAX_R], kx[MAX_R];   /* with forms */
    LLVMValueRef (*slot)[4];
} Taps;

/* The fmas of pixel (oy, ox), xrow = oy*sh*wpr, prow = oy*ow: every tap,
 * or those in use. */
static void pixel(KpEmit *e, const Outer *s, const Taps *t, LLVMValueRef xrow, LLVMValueRef prow,
                  LLVMValueRef ox, const bool *use)
{
    LLVMValueRef xat = kp_iadd(e, xrow, kp_imulc(e, ox, s->sw));
    LLVMValueRef dat = kp_iadd(e, kp_imulc(e, kp_iadd(e, prow, ox), s->fpad), t->co0);
    LLVMValueRef d[4];
    for (int v = 0; v < t->cv; v++)
        d[v] = kp_load_vec(e, t->dyT, kp_iaddc(e, dat, v * e->vw));
    for (int j = 0; j < t->r; j++) {
        if (use && !use[j])
            continue;
        LLVMValueRef b = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, t->x, kp_iadd(e, t->off[j], xat)), ""));
        for (int v = 0; v < t->cv; v++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, t->slot[j][v], "");
            LLVMBuildStore(e->b, kp_fma(e, b, d[v], old), t->slot[j][v]);
        }
    }
}

/* Outputs [from, to) of an axis that share a form of the pixel. */
typedef struct Span {
    int64_t from, to;
} Span;

/* The spans of an axis of `out` outputs whose windows stay inside from lo
 * to hi (inside): each output before lo or from hi alone, those in
 * between as one run.  Returns their count, span_count's. */
static int spans(int64_t out, int64_t lo, int64_t hi, Span *sp)
{
    int n = 0;
    for (int64_t o = 0; o < lo; o++)
        sp[n++] = (Span){o, o + 1};
    if (hi > lo)
        sp[n++] = (Span){lo, hi};
    for (int64_t o = hi; o < out; o++)
        sp[n++] = (Span){o, o + 1};
    return n;
}

/* Window offset k of every output of span o on an axis of n inside it? */
static bool span_in(Span o, int64_t st, int64_t pad, int64_t k, int64_t n)
{
    int64_t first = o.from * st - pad + k, last = (o.to - 1) * st - pad + k;
    return first >= 0 && last < n;
}

/* The rows of span y, their pixels span by span of xs (with forms, the
 * taps outside the image left out).  With ahead, the rows of the next
 * sample's channels from where each row of pixels starts, prefetched
 * into L2 (nch channels): the image comes from memory (a layer's input,
 * written long before its weight gradient). */
static void row_span(KpEmit *e, const Outer *s, const Taps *t, Span y, const Span *xs, int nx, LLVMValueRef ahead,
                     int64_t nch)
{
    bool use[MAX_R];
    KpLoop ly;
    LLVMValueRef oy = kp_i64(e, y.from);
    if (y.to - y.from > 1) {
        kp_loop_begin(e, &ly, kp_i64(e, y.from), kp_i64(e, y.to), 1, "oy");
        oy = ly.iv;
    }
    LLVMValueRef xrow = kp_imulc(e, oy, s->sh * s->wpr), prow = kp_imulc(e, oy, s->ow);
    for (int64_t c = 0; ahead && c < nch; c++)
        for (int64_t i = 0; i < s->sh; i++)
            for (int64_t l = 0; l < s->w; l += 16)
                kp_prefetch_l2(e, t->x, kp_iadd(e, ahead, kp_iaddc(e, xrow, c * s->h * s->w + i * s->w + l)));
    for (int k = 0; k < nx; k++) {
        for (int j = 0; j < t->r && s->forms; j++)
            use[j] = span_in(y, s->sh, s->pt, t->ky[j], s->h) && span_in(xs[k], s->sw, s->pl, t->kx[j], s->w);
        const bool *u = s->forms ? use : NULL;
        if (xs[k].to - xs[k].from == 1) {
            pixel(e, s, t, xrow, prow, kp_i64(e, xs[k].from), u);
            continue;
        }
        KpLoop lx;
        kp_loop_begin(e, &lx, kp_i64(e, xs[k].from), kp_i64(e, xs[k].to), 1, "ox");
        pixel(e, s, t, xrow, prow, lx.iv, u);
        kp_gemm_loop_end(e, &lx);
    }
    if (y.to - y.from > 1)
        kp_gemm_loop_end(e, &ly);
}

/* Taps [t0, t0 + r) by channel vectors [v0, v0 + cv) over sample g's
 * pixels: the sums from acc (zero for the first sample) and back; with
 * prefetch (chunks of samples) and forms, the next sample's rows
 * prefetched as they go (row_span). */
static void tile(KpEmit *e, const Outer *s, const Sums *o, LLVMValueRef x, LLVMValueRef dyT, LLVMValueRef acc,
                 LLVMValueRef g, LLVMValueRef t0, LLVMValueRef v0, int r, int cv, bool prefetch)
{
    LLVMValueRef slot[MAX_R][4];
    Taps t = {.r = r, .cv = cv, .x = x, .dyT = dyT, .co0 = kp_imulc(e, v0, e->vw), .slot = slot};
    LLVMValueRef first = o->first;
    int64_t khkw = s->kh * s->kw, hr = s->copy ? s->hp : s->h;
    LLVMValueRef xg = s->copy ? kp_i64(e, 0) : kp_imulc(e, g, s->c * s->h * s->w);
    /* read in place with forms: offsets from the window's origin (-pt, -pl) */
    int64_t origin = s->forms ? -s->pt * s->w - s->pl : 0;
    /* tiles of whole channels (plan): t0's channel, then constants */
    LLVMValueRef ch0 = s->r % khkw == 0 ? LLVMBuildUDiv(e->b, t0, kp_i64(e, khkw), "") : NULL;
    LLVMValueRef cbase = ch0 ? kp_iadd(e, xg, kp_imulc(e, ch0, hr * s->wpr)) : NULL;
    for (int j = 0; j < r; j++) {
        LLVMValueRef tap = kp_iaddc(e, t0, j);
        if (cbase) {
            int64_t k = j % khkw;
            t.ky[j] = k / s->kw * s->dh, t.kx[j] = k % s->kw * s->dw;
            t.off[j] = kp_iaddc(e, cbase, j / khkw * hr * s->wpr + t.ky[j] * s->wpr + t.kx[j] + origin);
        } else {
            LLVMValueRef ci = LLVMBuildUDiv(e->b, tap, kp_i64(e, khkw), "");
            LLVMValueRef k = LLVMBuildURem(e->b, tap, kp_i64(e, khkw), "");
            LLVMValueRef ki = LLVMBuildUDiv(e->b, k, kp_i64(e, s->kw), "");
            LLVMValueRef kj = LLVMBuildURem(e->b, k, kp_i64(e, s->kw), "");
            t.off[j] = kp_iadd(e, kp_iadd(e, xg, kp_imulc(e, ci, hr * s->wpr)),
                               kp_iadd(e, kp_imulc(e, ki, s->dh * s->wpr), kp_imulc(e, kj, s->dw)));
        }
        for (int v = 0; v < cv; v++) {
            LLVMValueRef at = kp_iadd(e, kp_imulc(e, tap, s->fpad), kp_iaddc(e, t.co0, v * e->vw));
            slot[j][v] = kp_alloca(e, e->vec, "acc");
            LLVMValueRef init = LLVMBuildSelect(e->b, first, kp_fconst(e->vec, 0.0), kp_load_vec(e, acc, at), "");
            LLVMBuildStore(e->b, init, slot[j][v]);
        }
    }
    Span ys[MAX_FORMS], xs[MAX_FORMS];
    int ny = 1, nx = 1;
    ys[0] = (Span){0, s->oh}, xs[0] = (Span){0, s->ow};
    LLVMValueRef ahead = NULL;
    if (s->forms) {
        ny = spans(s->oh, s->ylo, s->yhi, ys);
        nx = spans(s->ow, s->xlo, s->xhi, xs);
        if (prefetch)
            ahead = kp_iaddc(e, cbase, s->c * s->h * s->w);
    }
    for (int i = 0; i < ny; i++)
        row_span(e, s, &t, ys[i], xs, nx, ahead, r / khkw);
    LLVMValueRef sum[MAX_R][4];
    for (int j = 0; j < r; j++)
        for (int v = 0; v < cv; v++)
            sum[j][v] = LLVMBuildLoad2(e->b, e->vec, slot[j][v], "");
    LLVMValueRef last = o->last;
    LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildNot(e->b, last, ""), "keep");
    for (int j = 0; j < r; j++)
        for (int v = 0; v < cv; v++) {
            LLVMValueRef at = kp_iadd(e, kp_imulc(e, kp_iaddc(e, t0, j), s->fpad), kp_iaddc(e, t.co0, v * e->vw));
            kp_store_vec(e, sum[j][v], acc, at);
        }
    kp_if_end(e, join);
    join = kp_if_begin(e, last, "write");
    write_dw(e, s, o, sum, t0, t.co0, r, cv);
    kp_if_end(e, join);
}

/* The item's tile: whole, or the last taps (t % r of them) or the last
 * channel vectors (fv % cv of them), each its own code. */
static void item_tile(KpEmit *e, const Outer *s, const Sums *o, LLVMValueRef x, LLVMValueRef dyT,
                      LLVMValueRef acc, LLVMValueRef g, LLVMValueRef tt, LLVMValueRef fb, bool prefetch)
{
    int rrem = (int)(s->t % s->r), crem = (int)(s->fv % s->cv);
    LLVMValueRef t0 = kp_imulc(e, tt, s->r), v0 = kp_imulc(e, fb, s->cv);
    LLVMValueRef last_t = LLVMBuildICmp(e->b, LLVMIntEQ, tt, kp_i64(e, s->tiles_t - 1), "");
    LLVMValueRef last_f = LLVMBuildICmp(e->b, LLVMIntEQ, fb, kp_i64(e, s->blocks_f - 1), "");
    for (int lt = 0; lt < 2; lt++)
        for (int lf = 0; lf < 2; lf++) {
            if ((lt && !rrem) || (lf && !crem))
                continue;
            LLVMValueRef ct = rrem ? (lt ? last_t : LLVMBuildNot(e->b, last_t, "")) : NULL;
            LLVMValueRef cf = crem ? (lf ? last_f : LLVMBuildNot(e->b, last_f, "")) : NULL;
            LLVMValueRef cond = ct && cf ? LLVMBuildAnd(e->b, ct, cf, "") : ct ? ct : cf;
            LLVMBasicBlockRef join = cond ? kp_if_begin(e, cond, "otile") : NULL;
            tile(e, s, o, x, dyT, acc, g, t0, v0, lt ? rrem : s->r, lf ? crem : s->cv, prefetch);
            if (join)
                kp_if_end(e, join);
        }
}

/* item = fb * tiles_t + tt */
static void outer_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Outer *s = user;
    LLVMValueRef dyT = kp_scratch(e);
    LLVMValueRef acc = kp_gep(e, dyT, kp_i64(e, s->acc_at));
    KpLoop lg, li;
    /* the input channels the items' taps read: those of tap tiles
     * [tb, te] when the items are one run of them, else all */
    LLVMValueRef c0 = kp_i64(e, 0), c1 = kp_i64(e, s->c);
    if (s->copy) {
        LLVMValueRef tb = LLVMBuildURem(e->b, a->begin, kp_i64(e, s->tiles_t), "");
        LLVMValueRef te = LLVMBuildURem(e->b, kp_iaddc(e, a->end, -1), kp_i64(e, s->tiles_t), "");
        LLVMValueRef run = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntULE, tb, te, ""),
                                        LLVMBuildICmp(e->b, LLVMIntSLE, LLVMBuildNSWSub(e->b, a->end, a->begin, ""),
                                                      kp_i64(e, s->tiles_t), ""), "");
        int64_t khkw = s->kh * s->kw;
        LLVMValueRef lo = LLVMBuildUDiv(e->b, kp_imulc(e, tb, s->r), kp_i64(e, khkw), "");
        LLVMValueRef hi = kp_min_i64(e, kp_imulc(e, kp_iaddc(e, te, 1), s->r), kp_i64(e, s->t));
        hi = LLVMBuildUDiv(e->b, kp_iaddc(e, hi, khkw - 1), kp_i64(e, khkw), "");
        c0 = LLVMBuildSelect(e->b, run, lo, c0, "");
        c1 = LLVMBuildSelect(e->b, run, hi, c1, "");
    }
    kp_loop_begin(e, &lg, kp_i64(e, 0), a->n, 1, "g");
    transpose_dy(e, s, kp_gep(e, a->p[s->idy], kp_imulc(e, lg.iv, s->f * s->npix)), dyT);
    LLVMValueRef x = a->p[s->ix];
    if (s->copy) {
        x = kp_gep(e, dyT, kp_i64(e, s->xp_at));
        copy_padded(e, s, kp_gep(e, a->p[s->ix], kp_imulc(e, lg.iv, s->c * s->h * s->w)), x, c0, c1, false);
    }
    Sums o = {.first = LLVMBuildICmp(e->b, LLVMIntEQ, lg.iv, kp_i64(e, 0), "first"),
              .last = LLVMBuildICmp(e->b, LLVMIntEQ, lg.iv, LLVMBuildNSWSub(e->b, a->n, kp_i64(e, 1), ""), "last"),
              .dst = a->p[s->idw], .accumulate = e->accumulate};
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    item_tile(e, s, &o, x, dyT, acc, lg.iv, LLVMBuildURem(e->b, li.iv, kp_i64(e, s->tiles_t), ""),
              LLVMBuildUDiv(e->b, li.iv, kp_i64(e, s->tiles_t), ""), false);
    kp_loop_end(e, &li);
    kp_loop_end(e, &lg);
}

/* item = chunk: its samples [g0, g1) over every tile into its partial dW,
 * zero when it has none; the last chunk to finish adds the partials. */
static void chunk_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Outer *s = user;
    LLVMValueRef dyT = kp_scratch(e);
    LLVMValueRef acc = kp_gep(e, dyT, kp_i64(e, s->acc_at));
    LLVMValueRef x = s->copy ? kp_gep(e, dyT, kp_i64(e, s->xp_at)) : a->p[s->ix];
    LLVMValueRef shared = kp_scratch_shared_at(e, s->shared_at);
    int64_t ft = s->f * s->t;
    KpLoop li, lg, lt, lw;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "chunk");
    LLVMValueRef g0, g1;
    kp_chunk_samples(e, a->n, kp_i64(e, s->chunks), li.iv, &g0, &g1);
    LLVMValueRef part = kp_gep(e, shared, kp_imulc(e, li.iv, ft));
    LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntEQ, g0, g1, ""), "none");
    kp_loop_begin(e, &lw, kp_i64(e, 0), kp_i64(e, ft), 1, "zero");
    LLVMBuildStore(e->b, kp_fconst(e->f32, 0.0), kp_gep(e, part, lw.iv));
    kp_loop_end(e, &lw);
    kp_if_end(e, join);
    kp_loop_begin(e, &lg, g0, g1, 1, "g");
    transpose_dy(e, s, kp_gep(e, a->p[s->idy], kp_imulc(e, lg.iv, s->f * s->npix)), dyT);
    if (s->copy)
        copy_padded(e, s, kp_gep(e, a->p[s->ix], kp_imulc(e, lg.iv, s->c * s->h * s->w)), x, kp_i64(e, 0),
                    kp_i64(e, s->c), true);
    Sums o = {.first = LLVMBuildICmp(e->b, LLVMIntEQ, lg.iv, g0, "first"),
              .last = LLVMBuildICmp(e->b, LLVMIntEQ, lg.iv, kp_iaddc(e, g1, -1), "last"), .dst = part};
    kp_loop_begin(e, &lt, kp_i64(e, 0), kp_i64(e, s->tiles_t * s->blocks_f), 1, "tile");
    item_tile(e, s, &o, x, dyT, acc, lg.iv, LLVMBuildURem(e->b, lt.iv, kp_i64(e, s->tiles_t), ""),
              LLVMBuildUDiv(e->b, lt.iv, kp_i64(e, s->tiles_t), ""), true);
    kp_loop_end(e, &lt);
    kp_loop_end(e, &lg);
    /* the last chunk: dW (+)= p0 + p1 + ..., in chunk order */
    LLVMTypeRef i8 = LLVMInt8TypeInContext(e->ctx);
    LLVMValueRef cat = kp_i64(e, 4 * s->chunks * ft);
    LLVMValueRef counter = LLVMBuildInBoundsGEP2(e->b, i8, shared, &cat, 1, "counter");
    join = kp_last_begin(e, counter, kp_i64(e, s->chunks));
    kp_loop_begin(e, &lw, kp_i64(e, 0), kp_i64(e, ft), 1, "sum");
    kp_conv_chunks_add(e, shared, lw.iv, s->chunks, ft, a->p[s->idw], e->accumulate);
    kp_loop_end(e, &lw);
    kp_last_end(e, counter, join);
    kp_loop_end(e, &li);
}

bool kp_conv_grad_w_outer_fits(const KpConvMap *m, int64_t max_batch, int vw)
{
    /* whole vectors of channels, or few lanes lost; and at least as many
     * taps as channels: transposing dy costs what packing im2col rows
     * costs the dot kernel, per channel and per tap (fashion's conv2d0,
     * 9 taps by 32 channels, measured 6.4 us against 5.9 at batch 1) */
    if ((m->cout % vw != 0 && m->cout < 4 * vw) || m->cin * m->kh * m->kw < m->cout)
        return false;
    /* more pixels: chunks of the samples, their partial dWs within bounds */
    return max_batch * m->oh * m->ow <= KP_OUTER_MAX_PIXELS ||
           (max_batch >= OUTER_CHUNKS && 4 * m->cout * m->cin * m->kh * m->kw <= OUTER_CHUNK_DW);
}

static Outer outer_of(const KpConvMap *m, int vw, int64_t max_batch)
{
    Outer s = {.f = m->cout, .c = m->cin, .h = m->h, .w = m->w, .oh = m->oh, .ow = m->ow,
               .kh = m->kh, .kw = m->kw, .sh = m->sh, .sw = m->sw, .pt = m->pt, .pl = m->pl,
               .dh = m->dh, .dw = m->dw, .idy = m->idy, .ix = m->ix, .idw = m->iy};
    s.t = s.c * s.kh * s.kw;
    s.npix = s.oh * s.ow;
    plan(&s, vw, max_batch);
    return s;
}

bool kp_conv_grad_w_outer_in_place(const KpConvMap *m, int64_t max_batch, int vw)
{
    return !outer_of(m, vw, max_batch).copy;
}

void kp_emit_conv2d_grad_w_outer(KpEmit *e, const KpConvMap *m)
{
    int64_t max_batch = e->g ? e->g->max_batch : 1;
    Outer s = outer_of(m, e->vw, max_batch);
    int64_t bytes = 4 * (s.xp_at + (s.copy ? s.c * s.hp * s.wpr : 0));
    if (bytes > e->scratch_bytes)
        e->scratch_bytes = bytes;
    int64_t macs = max_batch * s.f * s.t * s.npix;
    if (s.chunks > 1) {
        s.shared_at = kp_scratch_shared_take(e, "conv_grad_w_outer_chunks", 4 * s.chunks * s.f * s.t + 8,
                                             s.f * s.t);
        kp_emit_parallel(e, "conv_grad_w_outer", kp_i64(e, 0), kp_i64(e, s.chunks), macs >= (1 << 19),
                         chunk_kernel, &s);
        return;
    }
    int64_t items = s.tiles_t * s.blocks_f;
    kp_emit_parallel(e, "conv_grad_w_outer", kp_i64(e, 0), kp_i64(e, items), macs >= (1 << 19) && items > 1,
                     outer_kernel, &s);
}
