/*
 * emit_conv_winograd_w.c — conv2d's weight gradient for the 3x3 stride-1
 * convolutions whose forward runs by Winograd's F(2x2, 3x3)
 * (emit_conv_winograd.c).  The forward computes a 2x2 tile of Y as
 * A^T [ sum over ci of U . V ] A, U = G g G^T, V = B^T d B; so
 *
 *   dU[xi][co][ci] = sum over the tiles t of every sample of  D[co][xi][t] V[xi][t][ci],
 *   D = A dy A^T  (the tile's 2x2 of dy spread over 4x4),
 *   dW[co][ci] = G^T dU[.][co][ci] G,
 *
 * 16 GEMMs whose reduction runs over the tiles: 2.25 times fewer
 * multiply-adds than the 9 per output and channel pair of the direct
 * weight gradient (emit_conv_grad_w.c).  The tiles are the forward's,
 * those reaching past dy's edge (odd sizes) with their dy outside zero.
 *
 * Work items are S chunks of the batch (S: the host's cores, at most the
 * batch).  A chunk sums its samples' tiles into its partial dU in the
 * call's shared scratch, block by block (a block: RB tile rows of one
 * sample, or whole samples):
 *
 *   V  <- the forward's input transform (kp_wino_transform_input):
 *         V[ci][xi][t], vectors along the tiles
 *   D  <- per output channel, each tile row's two dy rows split into
 *         even and odd columns (constant masks at the edge), A . A^T
 *   dU <- the 16 GEMMs, xi by xi, one of two ways:
 *         - tiles in the lanes, where a block has TILES_PER_FILTER tiles
 *           per output channel or more: vw accumulators (4 output x 4
 *           input channels with AVX-512, 2 x 4 with AVX2), each a vector
 *           of partial sums along the tiles, D's and V's rows streamed as
 *           they are; at the block's end a fixed tree sums them across
 *           their lanes into one vector
 *         - input channels in the lanes: V transposed in vw x vw blocks
 *           to Vt[xi][t][ci]; FB output channels x KV vectors of input
 *           channels in registers, D broadcast, Vt's rows streamed
 *
 * then counts itself done; the chunk that completes the count adds the
 * S partials in order 0, 1, ... and writes dW = G^T dU G (added into a
 * gradient slot that holds values).  Whichever thread that is, and
 * whatever the thread count, the sums are the same (gemm_emit.c's split
 * k works the same way; the last chunk sets the counter back to 0).
 */

#include "emit_conv_winograd.h"

typedef struct WinoW {
    KpWino w;                   /* X = x (pointer 1); the tiles cover dy */
    int64_t cip;                /* input channels in whole vectors */
    bool tiles_in_lanes;        /* the GEMMs' lanes: V's tiles, or Vt's input channels */
    int64_t tsv;                /* rows of Vt per xi: a block's tiles in whole vectors */
    int64_t vt_floats;          /* Vt (0 with the tiles in the lanes) */
    int64_t gb;                 /* samples per block (1 unless rb is th) */
    int64_t chunks;             /* S */
    int64_t part_floats;        /* one chunk's partial dU [16][cout][cip] */
    int64_t shared_at;          /* the partials, then the counter (bytes) */
} WinoW;

enum { IDY = 0, IX = 1, IDW = 2 };

/* Blocks of at least this many tiles when samples are small; per-thread
 * buffers up to this many times L2 (they stream: whole samples measured
 * faster than blocks that fit L2, fashion's conv2d1 1.2 MB against 0.45). */
enum { BLOCK_TILES = 128, SCRATCH_L2 = 4 };

/* Narrower layers keep the direct kernel.  At 16 channels (resnet_cifar's
 * 16->16 32x32 layers) this one measured 94 GFLOP/s counted as direct
 * convolution against 50-60 on 1 thread, 120-143 against 79-86 on 2. */
enum { WINO_W_MIN_CHANNELS = 16 };

/* The GEMMs take the tiles along their lanes where a block has at least
 * this many tiles per output channel: then the sums across the lanes
 * (about 57 instructions per 4 x 4 register tile, xi and block) cost less
 * than transposing V (about 6 per vector of V, xi and block).  resnet's
 * 16-channel 32 x 32 layers (16 tiles per filter) measured 1.2x faster
 * so; its 32-channel ones (4), fashion's and keras' (2.25) the same or
 * slower (docs/kernels-conv.md). */
enum { TILES_PER_FILTER = 8 };

/* Vt[xi][t][ci] from V[ci][xi][t] for the block's nvec vectors of tiles:
 * vw rows of V at a time, transposed in registers (kp_transpose_vw). */
static void transpose(KpEmit *e, const WinoW *s, LLVMValueRef V, LLVMValueRef Vt, LLVMValueRef nvec)
{
    const KpWino *w = &s->w;
    int vw = e->vw;
    KpLoop lx, lg, lt;
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, 16), 1, "txi");
    kp_loop_begin(e, &lg, kp_i64(e, 0), kp_i64(e, s->cip), vw, "tci");
    kp_loop_begin(e, &lt, kp_i64(e, 0), nvec, 1, "ttv");
    LLVMValueRef t0 = kp_imulc(e, lt.iv, vw);
    LLVMValueRef from = kp_iadd(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, lg.iv, 16), lx.iv), w->ts), t0);
    LLVMValueRef row[64];
    for (int c = 0; c < vw; c++)
        row[c] = kp_load_vec(e, V, kp_iaddc(e, from, (int64_t)c * 16 * w->ts));
    kp_transpose_vw(e, row);
    LLVMValueRef to = kp_iadd(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, lx.iv, s->tsv), t0), s->cip), lg.iv);
    for (int l = 0; l < vw; l++)
        kp_store_vec(e, row[l], Vt, kp_iaddc(e, to, l * s->cip));
    kp_loop_end(e, &lt);
    kp_loop_end(e, &lg);
    kp_loop_end(e, &lx);
}

/* A dy rows's two columns of vw tiles from tile column j*vw: the row's
 * floats from column 2*j*vw as two vectors (the lanes past ow masked
 * by constants), zero if valid is false, split into even and odd. */
static void dy_row(KpEmit *e, const WinoW *s, LLVMValueRef dy, LLVMValueRef rowat, LLVMValueRef valid,
                   int64_t j, LLVMValueRef *col)
{
    const KpConvMap *m = &s->w.m;
    int vw = e->vw;
    LLVMValueRef v[2];
    for (int k = 0; k < 2; k++) {
        bool in[64];
        for (int l = 0; l < vw; l++)
            in[l] = 2 * j * vw + k * vw + l < m->ow;
        v[k] = kp_wino_row_vector(e, dy, kp_iaddc(e, rowat, 2 * j * vw + k * vw), in, valid);
    }
    kp_wino_split(e, v[0], v[1], col);
}

/* A x for the two entries x0, x1 of a row or column of a dy tile:
 * x0, x0 + x1, x0 - x1, -x1. */
static void times_a(KpEmit *e, LLVMValueRef x0, LLVMValueRef x1, LLVMValueRef *out)
{
    out[0] = x0;
    out[1] = kp_wino_fadd(e, x0, x1);
    out[2] = kp_wino_fsub(e, x0, x1);
    out[3] = LLVMBuildFNeg(e->b, x1, "");
}

/* D[co][xi][r*tw + tx] = (A dy A^T)[xi] of tile (ty0 + r, tx) of sample g,
 * for the block's rows r < nrows; a row's last vector runs past its tiles
 * into the next row's place, which that row then overwrites. */
static void transform_dy(KpEmit *e, const KpKernelArgs *a, const WinoW *s, LLVMValueRef D,
                         LLVMValueRef g, LLVMValueRef ty0, LLVMValueRef nrows)
{
    const KpWino *w = &s->w;
    const KpConvMap *m = &w->m;
    int vw = e->vw;
    KpLoop lc, lr;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cout), 1, "dco");
    LLVMValueRef plane = kp_imulc(e, kp_iadd(e, kp_imulc(e, g, m->cout), lc.iv), m->oh * m->ow);
    kp_loop_begin(e, &lr, kp_i64(e, 0), nrows, 1, "drow");
    LLVMValueRef rowat[2], valid[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        LLVMValueRef y = kp_iaddc(e, kp_imulc(e, kp_iadd(e, ty0, lr.iv), 2), i);
        if (i == 1 && m->oh % 2) {
            /* the last tile row's second row lies past dy: zero */
            valid[i] = LLVMBuildICmp(e->b, LLVMIntSLT, y, kp_i64(e, m->oh), "");
            y = kp_min_i64(e, y, kp_i64(e, m->oh - 1));
        }
        rowat[i] = kp_iadd(e, plane, kp_imulc(e, y, m->ow));
        /* the same row of the next channel (see kp_wino_transform_input) */
        kp_prefetch_span(e, a->p[IDY], kp_iaddc(e, rowat[i], m->oh * m->ow), m->ow);
    }
    LLVMValueRef at = kp_iadd(e, kp_imulc(e, lc.iv, 16 * w->ts), kp_imulc(e, lr.iv, w->tw));
    for (int64_t j = 0; j < w->nj; j++) {
        LLVMValueRef d[2][2], r[2][4];
        for (int i = 0; i < 2; i++) {
            dy_row(e, s, a->p[IDY], rowat[i], valid[i], j, d[i]);
            times_a(e, d[i][0], d[i][1], r[i]);
        }
        for (int b = 0; b < 4; b++) {
            LLVMValueRef col[4];
            times_a(e, r[0][b], r[1][b], col);
            for (int k = 0; k < 4; k++)
                kp_store_vec(e, col[k], D, kp_iaddc(e, at, (k * 4 + b) * w->ts + j * vw));
        }
    }
    kp_loop_end(e, &lr);
    kp_loop_end(e, &lc);
}

/* A vector of tiles at p[at ..]: the lanes of mask (NULL: all), the others zero. */
static LLVMValueRef tiles(KpEmit *e, LLVMValueRef p, LLVMValueRef at, LLVMValueRef mask)
{
    return mask ? kp_load_vec_where(e, p, at, mask, 0.0) : kp_load_vec(e, p, at);
}

/* One step of the tile: the vector of tiles from t = at (mask: the lanes
 * below nt, or NULL) of fb rows of D and kb rows of V. */
static void tile_step(KpEmit *e, LLVMValueRef D, LLVMValueRef V, LLVMValueRef const *drow,
                      LLVMValueRef const *vrow, LLVMValueRef at, LLVMValueRef mask, LLVMValueRef const *acc,
                      int fb, int kb, int KB)
{
    LLVMValueRef d[16], v[16];
    for (int f = 0; f < fb; f++)
        d[f] = tiles(e, D, kp_iadd(e, drow[f], at), mask);
    for (int k = 0; k < kb; k++)
        v[k] = tiles(e, V, kp_iadd(e, vrow[k], at), mask);
    for (int f = 0; f < fb; f++)
        for (int k = 0; k < kb; k++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[f * KB + k], "");
            LLVMBuildStore(e->b, kp_fma(e, d[f], v[k], old), acc[f * KB + k]);
        }
}

/* dU[xi][co0 + f][ci0 + k] += sum over the block's nt tiles of
 * D[co0 + f][xi][t] V[ci0 + k][xi][t], f < fb, k < kb (at most FB x KB
 * = vw): the tiles along the lanes, one accumulator each, summed across
 * their lanes at the end by one fixed tree into a vector whose lane
 * f*KB + k is dU's (f, k). */
static void gemm_tile_t(KpEmit *e, const WinoW *s, LLVMValueRef dU, LLVMValueRef D, LLVMValueRef V,
                        LLVMValueRef nt, LLVMValueRef xi, LLVMValueRef co0, LLVMValueRef ci0, int fb, int kb)
{
    const KpWino *w = &s->w;
    int vw = e->vw, KB = (int)w->kv;
    LLVMValueRef acc[64] = {NULL}, drow[16], vrow[16];
    for (int f = 0; f < fb; f++) {
        drow[f] = kp_imulc(e, kp_iadd(e, kp_imulc(e, kp_iaddc(e, co0, f), 16), xi), w->ts);
        for (int k = 0; k < kb; k++) {
            acc[f * KB + k] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[f * KB + k]);
        }
    }
    for (int k = 0; k < kb; k++)
        vrow[k] = kp_imulc(e, kp_iadd(e, kp_imulc(e, kp_iaddc(e, ci0, k), 16), xi), w->ts);
    LLVMValueRef whole = LLVMBuildUDiv(e->b, nt, kp_i64(e, vw), "");
    KpLoop lt;
    kp_loop_begin(e, &lt, kp_i64(e, 0), whole, 1, "gt");
    tile_step(e, D, V, drow, vrow, kp_imulc(e, lt.iv, vw), NULL, acc, fb, kb, KB);
    kp_loop_end(e, &lt);
    /* the block's last tiles: past them, D and V hold other blocks' values */
    LLVMValueRef tail = kp_imulc(e, whole, vw);
    LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntSLT, tail, nt, ""), "gtail");
    LLVMValueRef mask = LLVMBuildICmp(e->b, LLVMIntSLT, kp_lane_index(e, tail, 1), kp_lane_index(e, nt, 0), "");
    tile_step(e, D, V, drow, vrow, tail, mask, acc, fb, kb, KB);
    kp_if_end(e, join);

    LLVMValueRef v[64];
    for (int i = 0; i < vw; i++)
        v[i] = acc[i] ? LLVMBuildLoad2(e->b, e->vec, acc[i], "") : kp_fconst(e->vec, 0.0);
    LLVMValueRef sum = kp_sum_lanes(e, v);
    LLVMTypeRef part = LLVMVectorType(e->f32, (unsigned)kb);
    LLVMValueRef uat = kp_iadd(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, xi, w->m.cout), co0), s->cip), ci0);
    for (int f = 0; f < fb; f++) {
        LLVMValueRef idx[16];
        for (int k = 0; k < kb; k++)
            idx[k] = kp_i32(e, f * KB + k);
        LLVMValueRef add = LLVMBuildShuffleVector(e->b, sum, LLVMGetPoison(e->vec),
                                                  LLVMConstVector(idx, (unsigned)kb), "");
        LLVMValueRef to = kp_gep(e, dU, kp_iaddc(e, uat, f * s->cip));
        LLVMValueRef old = LLVMBuildLoad2(e->b, part, to, "");
        LLVMSetAlignment(old, 4);
        LLVMValueRef st = LLVMBuildStore(e->b, kp_wino_fadd(e, old, add), to);
        LLVMSetAlignment(st, 4);
    }
}

/* Output channels co0 .. co0 + fb: the whole KB-wide tiles of input
 * channels, then the channels left (V: the tiles along the lanes). */
static void gemm_row_t(KpEmit *e, const WinoW *s, LLVMValueRef dU, LLVMValueRef D, LLVMValueRef V,
                       LLVMValueRef nt, LLVMValueRef xi, LLVMValueRef co0, int fb)
{
    int64_t cin = s->w.m.cin, KB = s->w.kv, whole = cin / KB * KB;
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, whole), KB, "gci");
    gemm_tile_t(e, s, dU, D, V, nt, xi, co0, lc.iv, fb, (int)KB);
    kp_loop_end(e, &lc);
    if (cin > whole)
        gemm_tile_t(e, s, dU, D, V, nt, xi, co0, kp_i64(e, whole), fb, (int)(cin - whole));
}

/* dU[xi][co0 + f][(cv0 + k)*vw ..] += sum over the block's nt tiles of
 * D[co0 + f][xi][t] Vt[xi][t][..], for f < fb, k < kv. */
static void gemm_tile_c(KpEmit *e, const WinoW *s, LLVMValueRef dU, LLVMValueRef D, LLVMValueRef Vt,
                        LLVMValueRef nt, LLVMValueRef xi, LLVMValueRef co0, LLVMValueRef cv0, int fb, int kv)
{
    const KpWino *w = &s->w;
    LLVMValueRef acc[24][4];
    LLVMValueRef uat = kp_iadd(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, xi, w->m.cout), co0), s->cip),
                               kp_imulc(e, cv0, e->vw));
    for (int f = 0; f < fb; f++)
        for (int k = 0; k < kv; k++) {
            acc[f][k] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, kp_load_vec(e, dU, kp_iaddc(e, uat, f * s->cip + k * e->vw)), acc[f][k]);
        }
    LLVMValueRef drow = kp_imulc(e, kp_iadd(e, kp_imulc(e, co0, 16), xi), w->ts);
    LLVMValueRef vrow = kp_iadd(e, kp_imulc(e, kp_imulc(e, xi, s->tsv), s->cip), kp_imulc(e, cv0, e->vw));
    KpLoop lt;
    kp_loop_begin(e, &lt, kp_i64(e, 0), nt, 1, "gt");
    LLVMValueRef vv[4];
    LLVMValueRef vat = kp_iadd(e, vrow, kp_imulc(e, lt.iv, s->cip));
    for (int k = 0; k < kv; k++)
        vv[k] = kp_load_vec(e, Vt, kp_iaddc(e, vat, k * e->vw));
    for (int f = 0; f < fb; f++) {
        LLVMValueRef dat = kp_iadd(e, kp_iaddc(e, drow, f * 16 * w->ts), lt.iv);
        LLVMValueRef dv = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, D, dat), ""));
        for (int k = 0; k < kv; k++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[f][k], "");
            LLVMBuildStore(e->b, kp_fma(e, dv, vv[k], old), acc[f][k]);
        }
    }
    kp_loop_end(e, &lt);
    for (int f = 0; f < fb; f++)
        for (int k = 0; k < kv; k++)
            kp_store_vec(e, LLVMBuildLoad2(e->b, e->vec, acc[f][k], ""), dU,
                         kp_iaddc(e, uat, f * s->cip + k * e->vw));
}

/* Output channels co0 .. co0 + fb: the whole KV tiles of input channel
 * vectors, then the vectors left (Vt: the channels along the lanes). */
static void gemm_row_c(KpEmit *e, const WinoW *s, LLVMValueRef dU, LLVMValueRef D, LLVMValueRef Vt,
                       LLVMValueRef nt, LLVMValueRef xi, LLVMValueRef co0, int fb)
{
    int64_t ncv = s->cip / e->vw, whole = ncv / s->w.kv * s->w.kv;
    KpLoop lv;
    kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, whole), s->w.kv, "gcv");
    gemm_tile_c(e, s, dU, D, Vt, nt, xi, co0, lv.iv, fb, (int)s->w.kv);
    kp_loop_end(e, &lv);
    if (ncv > whole)
        gemm_tile_c(e, s, dU, D, Vt, nt, xi, co0, kp_i64(e, whole), fb, (int)(ncv - whole));
}

/* The 16 GEMMs of a block of nt tiles into the chunk's dU. */
static void gemm(KpEmit *e, const WinoW *s, LLVMValueRef dU, LLVMValueRef D, LLVMValueRef V, LLVMValueRef nt)
{
    void (*row)(KpEmit *, const WinoW *, LLVMValueRef, LLVMValueRef, LLVMValueRef, LLVMValueRef,
                LLVMValueRef, LLVMValueRef, int) = s->tiles_in_lanes ? gemm_row_t : gemm_row_c;
    int64_t cout = s->w.m.cout, whole = cout / s->w.fb * s->w.fb;
    KpLoop lx, lc;
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, 16), 1, "gxi");
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, whole), s->w.fb, "gco");
    row(e, s, dU, D, V, nt, lx.iv, lc.iv, (int)s->w.fb);
    kp_loop_end(e, &lc);
    if (cout > whole)
        row(e, s, dU, D, V, nt, lx.iv, kp_i64(e, whole), (int)(cout - whole));
    kp_loop_end(e, &lx);
}

/* G^T x for the four entries x0..x3 of a column or row of dU:
 * x0 + (x1 + x2)/2, (x1 - x2)/2, (x1 + x2)/2 + x3. */
static void times_gt(KpEmit *e, LLVMValueRef const *x, LLVMValueRef *out)
{
    LLVMValueRef h = kp_wino_fhalf(e, kp_wino_fadd(e, x[1], x[2]));
    out[0] = kp_wino_fadd(e, x[0], h);
    out[1] = kp_wino_fhalf(e, kp_wino_fsub(e, x[1], x[2]));
    out[2] = kp_wino_fadd(e, h, x[3]);
}

/* dW (+)= G^T (the chunks' partials added in order) G, vw input channels
 * at a time (scattered: they are 9 floats apart in dW). */
static void finish(KpEmit *e, const KpKernelArgs *a, const WinoW *s, LLVMValueRef part0,
                   LLVMValueRef chunks)
{
    const KpConvMap *m = &s->w.m;
    int vw = e->vw;
    KpLoop lc, lv, ls;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cout), 1, "wco");
    kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, m->cin), vw, "wci");
    LLVMValueRef at = kp_iadd(e, kp_imulc(e, lc.iv, s->cip), lv.iv);
    LLVMValueRef sum[16];
    for (int xi = 0; xi < 16; xi++) {
        sum[xi] = kp_alloca(e, e->vec, "du");
        LLVMBuildStore(e->b, kp_load_vec(e, part0, kp_iaddc(e, at, xi * m->cout * s->cip)), sum[xi]);
    }
    kp_loop_begin(e, &ls, kp_i64(e, 1), chunks, 1, "wsum");
    LLVMValueRef pat = kp_iadd(e, at, kp_imulc(e, ls.iv, s->part_floats));
    for (int xi = 0; xi < 16; xi++) {
        LLVMValueRef v = kp_load_vec(e, part0, kp_iaddc(e, pat, xi * m->cout * s->cip));
        LLVMBuildStore(e->b, kp_wino_fadd(e, LLVMBuildLoad2(e->b, e->vec, sum[xi], ""), v), sum[xi]);
    }
    kp_loop_end(e, &ls);
    LLVMValueRef u[4][4], t[3][4], out[3][3];
    for (int xi = 0; xi < 16; xi++)
        u[xi / 4][xi % 4] = LLVMBuildLoad2(e->b, e->vec, sum[xi], "");
    for (int b = 0; b < 4; b++) {
        LLVMValueRef x[4] = {u[0][b], u[1][b], u[2][b], u[3][b]}, y[3];
        times_gt(e, x, y);
        for (int k = 0; k < 3; k++)
            t[k][b] = y[k];
    }
    for (int k = 0; k < 3; k++)
        times_gt(e, t[k], out[k]);
    LLVMValueRef mask = kp_wino_below(e, lv.iv, m->cin);
    LLVMValueRef base = kp_imulc(e, kp_iadd(e, kp_imulc(e, lc.iv, m->cin), lv.iv), 9);
    for (int k = 0; k < 9; k++) {
        LLVMValueRef idx = kp_lane_index(e, kp_iaddc(e, base, k), 9);
        LLVMValueRef v = out[k / 3][k % 3];
        if (e->accumulate)
            v = kp_wino_fadd(e, v, kp_gather_where(e, a->p[IDW], idx, mask));
        kp_scatter_where(e, v, a->p[IDW], idx, mask);
    }
    kp_loop_end(e, &lv);
    kp_loop_end(e, &lc);
}

/* item c: chunk c of the batch, samples [c*n/S, (c+1)*n/S) */
static void wino_w_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const WinoW *s = user;
    const KpWino *w = &s->w;
    LLVMTypeRef i8 = LLVMInt8TypeInContext(e->ctx);
    LLVMValueRef V = kp_scratch(e);
    LLVMValueRef Vt = kp_gep(e, V, kp_i64(e, w->v_floats));
    LLVMValueRef D = kp_gep(e, Vt, kp_i64(e, s->vt_floats));
    LLVMValueRef rowbuf = kp_wino_rowbuf(e, w);
    /* V's channels past cin are transposed into lanes of the GEMMs too:
     * zero (the lanes past a block's tiles are never read) */
    if (!s->tiles_in_lanes && s->cip > w->m.cin)
        LLVMBuildMemSet(e->b, kp_gep(e, V, kp_i64(e, w->m.cin * 16 * w->ts)), LLVMConstInt(i8, 0, 0),
                        kp_i64(e, 4 * (s->cip - w->m.cin) * 16 * w->ts), 4);
    LLVMValueRef shared = kp_scratch_shared_at(e, s->shared_at);
    LLVMValueRef chunks = kp_min_i64(e, a->n, kp_i64(e, s->chunks));
    int64_t blocks = kp_ceil_div(w->th, w->rb);
    KpLoop li, lg, lb;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "chunk");
    LLVMValueRef dU = kp_gep(e, shared, kp_imulc(e, li.iv, s->part_floats));
    LLVMBuildMemSet(e->b, dU, LLVMConstInt(i8, 0, 0), kp_i64(e, 4 * s->part_floats), 4);
    LLVMValueRef g0 = LLVMBuildUDiv(e->b, LLVMBuildNSWMul(e->b, li.iv, a->n, ""), chunks, "");
    LLVMValueRef g1 = LLVMBuildUDiv(e->b, LLVMBuildNSWMul(e->b, kp_iaddc(e, li.iv, 1), a->n, ""), chunks, "");
    kp_loop_begin(e, &lg, g0, g1, s->gb, "sample");
    LLVMValueRef gn = kp_min_i64(e, kp_i64(e, s->gb), LLVMBuildNSWSub(e->b, g1, lg.iv, ""));
    kp_loop_begin(e, &lb, kp_i64(e, 0), kp_i64(e, blocks), 1, "block");
    LLVMValueRef ty0 = kp_imulc(e, lb.iv, w->rb);
    LLVMValueRef nrows = kp_min_i64(e, kp_i64(e, w->rb), LLVMBuildNSWSub(e->b, kp_i64(e, w->th), ty0, ""));
    /* the block's samples one after the other along t (gb > 1: whole samples) */
    KpLoop ls;
    kp_loop_begin(e, &ls, kp_i64(e, 0), gn, 1, "gs");
    LLVMValueRef t0 = kp_imulc(e, ls.iv, w->th * w->tw), g = kp_iadd(e, lg.iv, ls.iv);
    kp_wino_transform_input(e, a, w, kp_gep(e, V, t0), rowbuf, g, ty0, nrows);
    transform_dy(e, a, s, kp_gep(e, D, t0), g, ty0, nrows);
    kp_loop_end(e, &ls);
    LLVMValueRef nt = kp_imulc(e, LLVMBuildNSWMul(e->b, nrows, gn, ""), w->tw);
    if (!s->tiles_in_lanes)
        transpose(e, s, V, Vt, LLVMBuildUDiv(e->b, kp_iaddc(e, nt, e->vw - 1), kp_i64(e, e->vw), ""));
    gemm(e, s, dU, D, s->tiles_in_lanes ? V : Vt, nt);
    kp_loop_end(e, &lb);
    kp_loop_end(e, &lg);

    LLVMValueRef cat = kp_i64(e, s->chunks * s->part_floats * 4);
    LLVMValueRef counter = LLVMBuildInBoundsGEP2(e->b, i8, shared, &cat, 1, "");
    LLVMBasicBlockRef join = kp_last_begin(e, counter, chunks);
    finish(e, a, s, shared, chunks);
    kp_last_end(e, counter, join);
    kp_loop_end(e, &li);
}

/* V, Vt and D for blocks of rb tile rows of gb samples */
static int64_t scratch_floats(const WinoW *s, int vw, int64_t rb, int64_t gb)
{
    int64_t ts = kp_wino_row_floats(&s->w, vw, rb * gb), tsv = kp_round_up(rb * gb * s->w.tw, vw);
    return 16 * (s->cip * ts + tsv * s->cip + s->w.m.cout * ts);
}

/* s's blocks, scratch layout and GEMM for s->w.m at a largest batch of
 * max_batch and vectors of vw floats. */
static void plan(WinoW *s, int64_t max_batch, int vw)
{
    KpWino *w = &s->w;
    const KpConvMap *m = &w->m;
    int64_t l1, l2, cores;
    kp_gemm_host(&l1, &l2, &cores);
    s->cip = kp_round_up(m->cin, vw);
    kp_wino_tiles(w, vw);
    s->chunks = cores < max_batch ? cores : max_batch;
    s->part_floats = 16 * m->cout * s->cip;
    /* a block: a whole sample, or several of a small one (at least
     * BLOCK_TILES tiles: a register tile's sums wait in dU once per block),
     * as long as V, Vt and D stay within SCRATCH_L2 times L2 */
    for (w->rb = w->th, s->gb = 1; w->rb > 1 && scratch_floats(s, vw, w->rb, 1) * 4 > SCRATCH_L2 * l2; w->rb--)
        ;
    w->rb = kp_ceil_div(w->th, kp_ceil_div(w->th, w->rb));
    if (w->rb == w->th) {
        s->gb = kp_ceil_div(BLOCK_TILES, w->th * w->tw);
        s->gb = s->gb > max_batch ? max_batch : s->gb;
        while (s->gb > 1 && scratch_floats(s, vw, w->rb, s->gb) * 4 > SCRATCH_L2 * l2)
            s->gb--;
    }
    w->ts = kp_wino_row_floats(w, vw, w->rb * s->gb);
    s->tiles_in_lanes = w->rb * s->gb * w->tw >= TILES_PER_FILTER * m->cout;
    if (s->tiles_in_lanes) {
        w->kv = vw < 4 ? vw : 4;
        w->fb = vw / w->kv;
        w->v_floats = 16 * m->cin * w->ts;
    } else {
        w->kv = s->cip / vw < 2 ? s->cip / vw : 2;
        w->fb = (vw >= 16 ? 24 : 12) / w->kv;
        w->fb = w->fb > m->cout ? m->cout : w->fb;
        w->v_floats = 16 * s->cip * w->ts;
        s->tsv = kp_round_up(w->rb * s->gb * w->tw, vw);
        s->vt_floats = 16 * s->tsv * s->cip;
    }
}

bool kp_conv_winograd_w_tiles_in_lanes(const KpConvMap *m, int64_t max_batch, int vw)
{
    if (!kp_conv_winograd_fits(m, max_batch, WINO_W_MIN_CHANNELS))
        return false;
    WinoW s = {.w = {.m = *m}};
    plan(&s, max_batch, vw);
    return s.tiles_in_lanes;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dW [F,C,3,3] */
bool kp_emit_conv2d_winograd_w(KpEmit *e, const KpConvMap *map)
{
    KpConvMap m = *map;
    int64_t max_batch = e->g ? e->g->max_batch : 1;
    if (!kp_conv_winograd_fits(&m, max_batch, WINO_W_MIN_CHANNELS))
        return false;
    int vw = e->vw;
    WinoW s = {.w = {.m = m}};
    KpWino *w = &s.w;
    plan(&s, max_batch, vw);
    int64_t bytes = 4 * (w->v_floats + s.vt_floats + 16 * m.cout * w->ts);
    if (bytes > e->scratch_bytes)
        e->scratch_bytes = bytes;
    s.shared_at = kp_scratch_shared_take(e, "conv_winograd_w", 4 * s.chunks * s.part_floats + 8,
                                         4 * s.chunks * s.part_floats);
    LLVMValueRef items = kp_min_i64(e, e->n, kp_i64(e, s.chunks));
    int64_t macs = max_batch * m.cout * m.oh * m.ow * m.cin * 9;
    kp_emit_parallel(e, "conv_winograd_w", kp_i64(e, 0), items, s.chunks > 1 && macs >= (1 << 19),
                     wino_w_kernel, &s);
    return true;
}
