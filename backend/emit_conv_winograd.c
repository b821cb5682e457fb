/*
 * emit_conv_winograd.c — 3x3 convolutions at stride 1 by Winograd's
 * minimal filtering F(2x2, 3x3) (Lavin and Gray, 2015), for the gather
 * forms of emit_conv.h: conv2d's forward and, at stride 1, its input
 * gradient (one phase: the kernel flipped).
 *
 * The output is cut into tiles of 2x2, tile (ty, tx) reading the 4x4
 * patch d of X from row 2*ty - pt and column 2*tx - pl.  With
 *
 *        | 1  0 -1  0 |         | 1    0    0  |         | 1  1  1  0 |
 *  B^T = | 0  1  1  0 |     G = | 1/2  1/2  1/2|   A^T = | 0  1 -1 -1 |
 *        | 0 -1  1  0 |         | 1/2 -1/2  1/2|
 *        | 0  1  0 -1 |         | 0    0    1  |
 *
 * a tile of Y is A^T [ sum over ci of (G g G^T) . (B^T d B) ] A, so the
 * 9 multiply-adds per output and input channel of the direct kernel
 * become 16 per four outputs (2.25 times fewer): the sum over ci is 16
 * independent GEMMs, one per element xi of the 4x4 transformed tile,
 *
 *   M[co][xi][t] = sum over ci of U[xi][co][ci] V[ci][xi][t]
 *
 * with U the transformed weights and V the transformed patches of the
 * tiles t.  A sample's tiles are numbered row after row (t = r*tw + tx)
 * and a work item is a block of BT of them (whole vectors; the sample's
 * last block takes what is left), so that no lane is lost but in a
 * sample's last vector.  A block may start and end inside a tile row: it
 * transforms the rows it touches whole, its V and M start at its first
 * tile (the part of its first row before that lands in the margin before
 * V, or in the unused tail of the previous row of V), and its output
 * transform stores only its own tiles' columns of a shared row:
 *
 *   V  <- per input channel, each input row the block reads split into
 *         the patches' four columns (three vector loads, even and odd
 *         lanes by shuffles; padding and the row's end are masked loads
 *         whose column masks are constants) and multiplied by B, once
 *         (rowbuf: two tile rows share every other input row); then B^T
 *         over each tile row's four input rows
 *   M  <- the 16 GEMMs, xi by xi (U[xi] and V's rows of xi stay in L1),
 *         register tiles of FB output channels by KV vectors of tiles
 *   Y  <- A^T m A + bias, the two output columns of each tile interleaved
 *         into whole vectors, the node's epilogues, stored masked at the
 *         image's right edge (M[co] is 16 rows side by side: read in order)
 *
 * U, V and M live in the thread's scratch; each call of the kernel (a
 * chunk of items) transforms the weights into its U first, which is why
 * a model compiled for batch 1 keeps the direct kernel.  Narrow layers
 * do too: below 32 channels in or out the GEMMs' short sums and the
 * transforms cost what the saved multiply-adds gain (docs/kernels-conv.md),
 * and so do wide ones whose transformed weights (16 per 9 weights) would
 * not stay in L2, which every item reads whole.
 * Every output is computed by one item in a fixed order: the results do
 * not depend on the thread count.  They differ from the direct kernel's
 * in rounding only (the transforms add and halve exactly representable
 * coefficients; test_conv holds them to the reference kernel's tolerance).
 */
#include "emit_conv_winograd.h"

/* A <vw x i32> shuffle mask from idx. */
static LLVMValueRef shuffle_mask(KpEmit *e, const int *idx)
{
    LLVMValueRef el[64];
    for (int l = 0; l < e->vw; l++)
        el[l] = kp_i32(e, idx[l]);
    return LLVMConstVector(el, (unsigned)e->vw);
}

static LLVMValueRef shuffle(KpEmit *e, LLVMValueRef a, LLVMValueRef b, const int *idx)
{
    return LLVMBuildShuffleVector(e->b, a, b, shuffle_mask(e, idx), "");
}

/* Lanes l of p[at ..] where in[l] (constants), the others zero; all zero
 * where valid (an i1, or NULL: always) is false. */
LLVMValueRef kp_wino_row_vector(KpEmit *e, LLVMValueRef p, LLVMValueRef at, const bool *in,
                                LLVMValueRef valid)
{
    int on = 0;
    LLVMValueRef bits[64];
    for (int l = 0; l < e->vw; l++) {
        on += in[l];
        bits[l] = LLVMConstInt(LLVMInt1TypeInContext(e->ctx), in[l], 0);
    }
    if (on == 0)
        return kp_fconst(e->vec, 0.0);
    LLVMValueRef v;
    if (on == e->vw) {
        v = kp_load_vec(e, p, at);
    } else {
        LLVMTypeRef over[2] = {e->vec, e->ptr};
        /* the address of a masked-off lane may lie outside the tensor: plain GEP */
        LLVMValueRef args[4] = {LLVMBuildGEP2(e->b, e->f32, p, &at, 1, ""), kp_i32(e, 4),
                                LLVMConstVector(bits, (unsigned)e->vw), kp_fconst(e->vec, 0.0)};
        v = kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
    }
    return valid ? LLVMBuildSelect(e->b, valid, v, kp_fconst(e->vec, 0.0), "") : v;
}

void kp_wino_split(KpEmit *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef *even_odd)
{
    int even[64], odd[64];
    for (int l = 0; l < e->vw; l++)
        even[l] = 2 * l, odd[l] = 2 * l + 1;
    even_odd[0] = shuffle(e, a, b, even);
    even_odd[1] = shuffle(e, a, b, odd);
}

LLVMValueRef kp_wino_below(KpEmit *e, LLVMValueRef ci0, int64_t c)
{
    return LLVMBuildICmp(e->b, LLVMIntSLT, kp_lane_index(e, ci0, 1), kp_lane_index(e, kp_i64(e, c), 0), "");
}

/* The three rows of G times x0, x1, x2 (a column or a row of a 3x3):
 * out[0..3] = x0, (x0 + x1 + x2)/2, (x0 - x1 + x2)/2, x2. */
static void times_g(KpEmit *e, LLVMValueRef x0, LLVMValueRef x1, LLVMValueRef x2, LLVMValueRef *out)
{
    LLVMValueRef s = kp_wino_fadd(e, x0, x2);
    out[0] = x0;
    out[1] = kp_wino_fhalf(e, kp_wino_fadd(e, s, x1));
    out[2] = kp_wino_fhalf(e, kp_wino_fsub(e, s, x1));
    out[3] = x2;
}

/* B^T x for the four entries x0..x3 of a column or row of a patch. */
static void times_bt(KpEmit *e, LLVMValueRef const *x, LLVMValueRef *out)
{
    out[0] = kp_wino_fsub(e, x[0], x[2]);
    out[1] = kp_wino_fadd(e, x[1], x[2]);
    out[2] = kp_wino_fsub(e, x[2], x[1]);
    out[3] = kp_wino_fsub(e, x[1], x[3]);
}

/* A^T x: the two outputs from four entries. */
static void times_at(KpEmit *e, LLVMValueRef const *x, LLVMValueRef *out)
{
    out[0] = kp_wino_fadd(e, kp_wino_fadd(e, x[0], x[1]), x[2]);
    out[1] = kp_wino_fsub(e, kp_wino_fsub(e, x[1], x[2]), x[3]);
}

/* U[xi][co][ci] = (G g G^T)[xi] for every 3x3 g = W[co, ci], vw input
 * channels at a time (gathered: they are wci floats apart in W). */
static void transform_weights(KpEmit *e, const KpKernelArgs *a, const KpWino *s, LLVMValueRef U)
{
    const KpConvMap *m = &s->m;
    KpLoop lc, lb;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cout), 1, "wco");
    kp_loop_begin(e, &lb, kp_i64(e, 0), kp_i64(e, m->cin), e->vw, "wci");
    LLVMValueRef mask = kp_wino_below(e, lb.iv, m->cin);
    LLVMValueRef base = kp_iaddc(e, kp_iadd(e, kp_imulc(e, lc.iv, m->wco), kp_imulc(e, lb.iv, m->wci)), m->w0);
    LLVMValueRef g[3][3], t[4][3], u[4][4];
    for (int ki = 0; ki < 3; ki++)
        for (int kj = 0; kj < 3; kj++) {
            LLVMValueRef idx = kp_lane_index(e, kp_iaddc(e, base, ki * m->wki + kj * m->wkj), m->wci);
            LLVMValueRef ptrs = LLVMBuildGEP2(e->b, e->f32, a->p[m->iw], &idx, 1, "");
            LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
            LLVMValueRef args[4] = {ptrs, kp_i32(e, 4), mask, kp_fconst(e->vec, 0.0)};
            g[ki][kj] = kp_intrinsic(e, "llvm.masked.gather", over, 2, args, 4);
        }
    for (int kj = 0; kj < 3; kj++) {
        LLVMValueRef col[4];
        times_g(e, g[0][kj], g[1][kj], g[2][kj], col);
        for (int i = 0; i < 4; i++)
            t[i][kj] = col[i];
    }
    for (int i = 0; i < 4; i++)
        times_g(e, t[i][0], t[i][1], t[i][2], u[i]);
    for (int xi = 0; xi < 16; xi++) {
        LLVMValueRef at = kp_iadd(e, kp_imulc(e, kp_iaddc(e, lc.iv, xi * m->cout), m->cin), lb.iv);
        kp_store_vec_where(e, u[xi / 4][xi % 4], U, at, mask);
    }
    kp_loop_end(e, &lb);
    kp_loop_end(e, &lc);
}

/* A row of the patches of vw tiles from tile column j*vw, as the patches'
 * four columns: the row's floats from column j*2vw - pl loaded as vectors
 * A, B, C (the lanes in the padding masked, the masks constants), zero
 * where valid is false (a row in the padding: rowat is then a row of the
 * image, clamped, so that every read stays in the tensor; a load masked
 * at run time costs several times one masked by a constant), split by
 * shuffles: column c of tile l is float 2l + c. */
static void patch_row(KpEmit *e, const KpWino *s, LLVMValueRef X, LLVMValueRef rowat, LLVMValueRef valid,
                      int64_t j, LLVMValueRef *col)
{
    const KpConvMap *m = &s->m;
    int vw = e->vw;
    int64_t ix0 = 2 * j * vw - m->pl;
    LLVMValueRef v[3];
    for (int k = 0; k < 3; k++) {
        bool in[64];
        for (int l = 0; l < vw; l++) {
            int64_t ix = ix0 + k * vw + l;
            in[l] = ix >= 0 && ix < m->w && (k < 2 || l < 2);
        }
        v[k] = kp_wino_row_vector(e, X, kp_iaddc(e, rowat, ix0 + k * vw), in, valid);
    }
    int next0[64], next1[64];
    for (int l = 0; l < vw; l++) {
        next0[l] = l < vw - 1 ? l + 1 : vw;
        next1[l] = l < vw - 1 ? l + 1 : vw + 1;
    }
    kp_wino_split(e, v[0], v[1], col);
    col[2] = shuffle(e, col[0], v[2], next0);
    col[3] = shuffle(e, col[1], v[2], next1);
}

/* V[ci][xi][r*tw + tx] = (B^T d B)[xi] of tile (ty0 + r, tx) of sample n,
 * for the item's rows r < nrows.  Per input channel, each input row the
 * block reads is loaded and multiplied by B once (rows 2r .. 2r + 3 of
 * the block serve tile row r: every other row serves two), into rowbuf;
 * then B^T over each tile row's four.  A row's last vector runs past its
 * tiles into the next row's place, which that row then overwrites. */
void kp_wino_transform_input(KpEmit *e, const KpKernelArgs *a, const KpWino *s, LLVMValueRef V,
                            LLVMValueRef rowbuf, LLVMValueRef n, LLVMValueRef ty0, LLVMValueRef nrows)
{
    const KpConvMap *m = &s->m;
    int vw = e->vw;
    LLVMValueRef X = a->p[m->ix];
    KpLoop lc, lq, lr;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cin), 1, "vci");
    LLVMValueRef plane = kp_imulc(e, kp_iadd(e, kp_imulc(e, n, m->cin), lc.iv), m->h * m->w);
    kp_loop_begin(e, &lq, kp_i64(e, 0), kp_iaddc(e, kp_imulc(e, nrows, 2), 2), 1, "vin");
    LLVMValueRef iy = kp_iadd(e, kp_iaddc(e, kp_imulc(e, ty0, 2), -m->pt), lq.iv);
    LLVMValueRef valid = NULL, iyc = iy;
    if (!s->rows_inside) {
        valid = LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, m->h), "");
        iyc = kp_min_i64(e, kp_max_i64(e, iy, kp_i64(e, 0)), kp_i64(e, m->h - 1));
    }
    LLVMValueRef rowat = kp_iadd(e, plane, kp_imulc(e, iyc, m->w));
    /* the same row of the next channel, read one channel's rows from now:
     * rows of one channel are a short stream the hardware prefetcher
     * hardly starts on before the next channel's begins */
    kp_prefetch_span(e, X, kp_iaddc(e, rowat, m->h * m->w), m->w);
    for (int64_t j = 0; j < s->nj; j++) {
        LLVMValueRef d[4], w[4];
        patch_row(e, s, X, rowat, valid, j, d);
        times_bt(e, d, w);
        LLVMValueRef at = kp_imulc(e, kp_iaddc(e, kp_imulc(e, lq.iv, s->nj), j), 4 * vw);
        for (int k = 0; k < 4; k++)
            kp_store_vec(e, w[k], rowbuf, kp_iaddc(e, at, k * vw));
    }
    kp_loop_end(e, &lq);
    kp_loop_begin(e, &lr, kp_i64(e, 0), nrows, 1, "vrow");
    for (int64_t j = 0; j < s->nj; j++) {
        LLVMValueRef at = kp_iaddc(e, kp_iadd(e, kp_imulc(e, lc.iv, 16 * s->ts), kp_imulc(e, lr.iv, s->tw)), j * vw);
        for (int k = 0; k < 4; k++) {
            LLVMValueRef x[4], v[4];
            for (int i = 0; i < 4; i++) {
                LLVMValueRef q = kp_iaddc(e, kp_imulc(e, lr.iv, 2), i);
                LLVMValueRef slot = kp_iaddc(e, kp_imulc(e, kp_iaddc(e, kp_imulc(e, q, s->nj), j), 4 * vw), k * vw);
                x[i] = kp_load_vec(e, rowbuf, slot);
            }
            times_bt(e, x, v);
            for (int i = 0; i < 4; i++)
                kp_store_vec(e, v[i], V, kp_iaddc(e, at, (i * 4 + k) * s->ts));
        }
    }
    kp_loop_end(e, &lr);
    kp_loop_end(e, &lc);
}

/* M[co0 + f][xi][(tv + k)*vw ..] for f < fb, k < kv: the sum over ci. */
static void gemm_tile(KpEmit *e, const KpWino *s, LLVMValueRef U, LLVMValueRef V, LLVMValueRef M,
                      LLVMValueRef xi, LLVMValueRef co0, LLVMValueRef tv, int fb, int kv)
{
    const KpConvMap *m = &s->m;
    LLVMValueRef acc[8][8];
    for (int f = 0; f < fb; f++)
        for (int k = 0; k < kv; k++) {
            acc[f][k] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[f][k]);
        }
    LLVMValueRef vrow = kp_imulc(e, xi, s->ts);
    LLVMValueRef urow = kp_imulc(e, kp_iadd(e, kp_imulc(e, xi, m->cout), co0), m->cin);
    LLVMValueRef col = kp_imulc(e, tv, e->vw);
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cin), 1, "gci");
    LLVMValueRef vv[8];
    LLVMValueRef vat = kp_iadd(e, kp_iadd(e, vrow, kp_imulc(e, lc.iv, 16 * s->ts)), col);
    for (int k = 0; k < kv; k++)
        vv[k] = kp_load_vec(e, V, kp_iaddc(e, vat, k * e->vw));
    for (int f = 0; f < fb; f++) {
        LLVMValueRef uat = kp_iadd(e, kp_iaddc(e, urow, f * m->cin), lc.iv);
        LLVMValueRef u = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, U, uat), ""));
        for (int k = 0; k < kv; k++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[f][k], "");
            LLVMBuildStore(e->b, kp_fma(e, vv[k], u, old), acc[f][k]);
        }
    }
    kp_loop_end(e, &lc);
    LLVMValueRef mrow = kp_imulc(e, kp_iadd(e, kp_imulc(e, co0, 16), xi), s->ts);
    for (int f = 0; f < fb; f++)
        for (int k = 0; k < kv; k++)
            kp_store_vec(e, LLVMBuildLoad2(e->b, e->vec, acc[f][k], ""), M,
                         kp_iaddc(e, kp_iadd(e, mrow, col), f * 16 * s->ts + k * e->vw));
}

/* The vectors of GEMM work of a block of `tiles` tiles. */
static int64_t block_vectors(int vw, int64_t tiles)
{
    return kp_ceil_div(tiles, vw);
}

/* The 16 GEMMs over the item's nvec vectors of tiles. */
static void gemm(KpEmit *e, const KpWino *s, LLVMValueRef U, LLVMValueRef V, LLVMValueRef M,
                 LLVMValueRef nvec)
{
    KpLoop lx, lc, lt;
    kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, 16), 1, "xi");
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, s->m.cout), s->fb, "gco");
    LLVMValueRef whole = kp_imulc(e, LLVMBuildUDiv(e->b, nvec, kp_i64(e, s->kv), ""), s->kv);
    kp_loop_begin(e, &lt, kp_i64(e, 0), whole, s->kv, "gtv");
    gemm_tile(e, s, U, V, M, lx.iv, lc.iv, lt.iv, (int)s->fb, (int)s->kv);
    kp_loop_end(e, &lt);
    /* the vectors left, one narrower tile: a full block's and a sample's
     * last block's remainders are the only ones that occur */
    LLVMValueRef rest = LLVMBuildNSWSub(e->b, nvec, whole, "");
    int64_t last = (s->th * s->tw) % s->bt;
    for (int r = 1; r < s->kv; r++) {
        if (r != block_vectors(e->vw, s->bt) % s->kv &&
            (last == 0 || r != block_vectors(e->vw, last) % s->kv))
            continue;
        LLVMBasicBlockRef join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntEQ, rest, kp_i64(e, r), ""), "gtv.rest");
        gemm_tile(e, s, U, V, M, lx.iv, lc.iv, whole, (int)s->fb, r);
        kp_if_end(e, join);
    }
    kp_loop_end(e, &lc);
    kp_loop_end(e, &lx);
}

/* Store the 2*nj output vectors of a row from its first column on: the
 * vectors' lanes past ow left alone, and where the row is shared with
 * another block (whole false), the columns outside [c_lo, c_hi) too. */
static void store_output_row(KpEmit *e, LLVMValueRef Y, LLVMValueRef at0, LLVMValueRef *v, int64_t ow,
                             LLVMValueRef whole, LLVMValueRef c_lo, LLVMValueRef c_hi)
{
    int vw = e->vw;
    int64_t nv = kp_ceil_div(ow, vw);
    LLVMBasicBlockRef join = kp_if_begin(e, whole, "ystore.whole");
    for (int64_t q = 0; q < nv; q++) {
        int64_t lanes = ow - q * vw < vw ? ow - q * vw : vw;
        if (lanes < vw)
            kp_store_vec_masked(e, v[q], Y, kp_iaddc(e, at0, q * vw), (int)lanes);
        else
            kp_store_vec(e, v[q], Y, kp_iaddc(e, at0, q * vw));
    }
    kp_if_end(e, join);
    join = kp_if_begin(e, LLVMBuildNot(e->b, whole, ""), "ystore.part");
    LLVMValueRef lo = kp_lane_index(e, c_lo, 0);
    LLVMValueRef hi = kp_lane_index(e, kp_min_i64(e, c_hi, kp_i64(e, ow)), 0);
    for (int64_t q = 0; q < nv; q++) {
        LLVMValueRef col = kp_lane_index(e, kp_i64(e, q * vw), 1);
        LLVMValueRef mask = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, col, lo, ""),
                                         LLVMBuildICmp(e->b, LLVMIntSLT, col, hi, ""), "");
        kp_store_vec_where(e, v[q], Y, kp_iaddc(e, at0, q * vw), mask);
    }
    kp_if_end(e, join);
}

/* Output rows 2*ty, 2*ty + 1 of every channel from M: A^T m A + bias,
 * each tile's two columns interleaved, the epilogues, stored (the columns
 * past ow and a second row past oh left alone).  M's tiles are numbered
 * from tile (ty0, 0); the block owns those in [tfirst, tend). */
static void transform_output(KpEmit *e, const KpKernelArgs *a, const KpWino *s, LLVMValueRef M,
                             LLVMValueRef n, LLVMValueRef ty0, LLVMValueRef nrows, LLVMValueRef tfirst,
                             LLVMValueRef tend)
{
    const KpConvMap *m = &s->m;
    int vw = e->vw;
    LLVMValueRef Y = a->p[m->iy];
    KpLoop lr, lc;
    kp_loop_begin(e, &lr, kp_i64(e, 0), nrows, 1, "yrow");
    LLVMValueRef ty = kp_iadd(e, ty0, lr.iv);
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cout), 1, "yco");
    LLVMValueRef bias = m->ib >= 0 ? kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[m->ib], lc.iv), "")) : NULL;
    LLVMValueRef ybase = kp_imulc(e, kp_iadd(e, kp_imulc(e, kp_iadd(e, kp_imulc(e, n, m->cout), lc.iv), m->oh),
                                             kp_imulc(e, ty, 2)), m->ow);
    /* the epilogues' operands in this channel's next two rows, read one
     * tile row (every channel's) from now: across the channels they are
     * short streams, which the hardware prefetcher does not follow */
    kp_prefetch_epilogue(e, e->node, a->p, kp_iaddc(e, ybase, 2 * m->ow), 2 * m->ow);
    LLVMValueRef mat = kp_iadd(e, kp_imulc(e, lc.iv, 16 * s->ts), kp_imulc(e, lr.iv, s->tw));
    /* the block's tiles of this row: [lo, hi) */
    LLVMValueRef rowt = kp_imulc(e, lr.iv, s->tw);
    LLVMValueRef lo = kp_max_i64(e, LLVMBuildNSWSub(e->b, tfirst, rowt, ""), kp_i64(e, 0));
    LLVMValueRef hi = kp_min_i64(e, LLVMBuildNSWSub(e->b, tend, rowt, ""), kp_i64(e, s->tw));
    LLVMValueRef whole = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, lo, kp_i64(e, 0), ""),
                                      LLVMBuildICmp(e->b, LLVMIntEQ, hi, kp_i64(e, s->tw), ""), "whole");
    LLVMValueRef y[2][64][2];
    for (int64_t j = 0; j < s->nj; j++) {
        LLVMValueRef mv[4][4], t[2][4], x[4], out[2];
        for (int xi = 0; xi < 16; xi++)
            mv[xi / 4][xi % 4] = kp_load_vec(e, M, kp_iaddc(e, mat, xi * s->ts + j * vw));
        for (int c = 0; c < 4; c++) {
            for (int i = 0; i < 4; i++)
                x[i] = mv[i][c];
            times_at(e, x, out);
            t[0][c] = out[0], t[1][c] = out[1];
        }
        for (int i = 0; i < 2; i++) {
            times_at(e, t[i], out);
            for (int c = 0; c < 2; c++) {
                LLVMValueRef v = bias ? kp_wino_fadd(e, out[c], bias) : out[c];
                y[i][j][c] = v;
            }
        }
    }
    /* a second output row past oh (oh odd) in the last tile row only */
    for (int i = 0; i < 2; i++) {
        LLVMBasicBlockRef join = NULL;
        if (i == 1 && m->oh % 2)
            join = kp_if_begin(e, LLVMBuildICmp(e->b, LLVMIntSLT, kp_iaddc(e, kp_imulc(e, ty, 2), 1),
                                                kp_i64(e, m->oh), ""), "yrow.second");
        LLVMValueRef out[128];
        for (int64_t j = 0; j < s->nj; j++)
            for (int h = 0; h < 2; h++) {
                int64_t c0 = 2 * j * vw + h * vw;
                int64_t lanes = m->ow - c0 < vw ? m->ow - c0 : vw;
                if (lanes <= 0)
                    continue;
                LLVMValueRef v = kp_interleave(e, y[i][j][0], y[i][j][1], h);
                LLVMValueRef at = kp_iaddc(e, ybase, i * m->ow + c0);
                out[2 * j + h] = kp_emit_epilogue(e, e->node, a->p, v, at, lanes < vw ? (int)lanes : 0);
            }
        store_output_row(e, Y, kp_iaddc(e, ybase, i * m->ow), out, m->ow, whole, kp_imulc(e, lo, 2),
                         kp_imulc(e, hi, 2));
        if (join)
            kp_if_end(e, join);
    }
    kp_loop_end(e, &lc);
    kp_loop_end(e, &lr);
}

void kp_wino_tiles(KpWino *s, int vw)
{
    const KpConvMap *m = &s->m;
    s->th = kp_ceil_div(m->oh, 2);
    s->tw = kp_ceil_div(m->ow, 2);
    s->nj = kp_ceil_div(s->tw, vw);
    s->rows_inside = m->pt <= 0 && 2 * (s->th - 1) - m->pt + 3 <= m->h - 1;
}

/* ts, or ts + 8 if V's rows of one xi, 16*ts floats apart, would be a
 * multiple of 1 KiB apart: they would share a few L1 sets */
static int64_t off_sets(int64_t ts)
{
    return ts % 16 == 0 ? ts + 8 : ts;
}

int64_t kp_wino_row_floats(const KpWino *s, int vw, int64_t rb)
{
    return off_sets(kp_round_up((rb - 1) * s->tw + s->nj * vw, vw));
}

LLVMValueRef kp_wino_rowbuf(KpEmit *e, const KpWino *s)
{
    LLVMValueRef rowbuf = kp_alloca(e, LLVMArrayType(e->f32, (unsigned)((2 * s->rb + 2) * s->nj * 4 * e->vw)), "rowbuf");
    LLVMSetAlignment(rowbuf, 64);
    return rowbuf;
}

/* Floats before V: room for the part of a block's first tile row that
 * lies before the block's first tile (at most tw - 1 floats). */
static int64_t v_margin(const KpWino *s, int vw)
{
    return kp_round_up(s->tw, vw);
}

/* item = n * blocks + block; block b is tiles [b*bt, min(b*bt + bt, th*tw))
 * of sample n, which touch tile rows ty0 .. ty0 + nrows - 1 */
static void wino_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const KpWino *s = user;
    LLVMValueRef U = kp_scratch(e);
    LLVMValueRef V = kp_gep(e, U, kp_i64(e, s->u_floats + v_margin(s, e->vw)));
    LLVMValueRef M = kp_gep(e, V, kp_i64(e, s->v_floats));
    LLVMValueRef rowbuf = kp_wino_rowbuf(e, s);
    transform_weights(e, a, s, U);
    /* the lanes past an item's tiles are read, never used: keep them finite */
    LLVMBuildMemSet(e->b, kp_gep(e, U, kp_i64(e, s->u_floats)), LLVMConstInt(LLVMInt8TypeInContext(e->ctx), 0, 0),
                    kp_i64(e, 4 * (v_margin(s, e->vw) + s->v_floats + s->m_floats)), 4);
    int64_t tiles = s->th * s->tw, blocks = kp_ceil_div(tiles, s->bt);
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef n = LLVMBuildUDiv(e->b, li.iv, kp_i64(e, blocks), "n");
    LLVMValueRef t0 = kp_imulc(e, LLVMBuildURem(e->b, li.iv, kp_i64(e, blocks), ""), s->bt);
    LLVMValueRef t1 = kp_min_i64(e, kp_iaddc(e, t0, s->bt), kp_i64(e, tiles));
    LLVMValueRef ty0 = LLVMBuildUDiv(e->b, t0, kp_i64(e, s->tw), "ty0");
    LLVMValueRef nrows = LLVMBuildNSWSub(e->b, LLVMBuildUDiv(e->b, kp_iaddc(e, t1, -1), kp_i64(e, s->tw), ""),
                                         kp_iaddc(e, ty0, -1), "nrows");
    /* the block's first tile, counted from its first row's start */
    LLVMValueRef skew = LLVMBuildNSWSub(e->b, t0, kp_imulc(e, ty0, s->tw), "skew");
    LLVMValueRef back = LLVMBuildNeg(e->b, skew, "");
    kp_wino_transform_input(e, a, s, kp_gep(e, V, back), rowbuf, n, ty0, nrows);
    LLVMValueRef nvec = LLVMBuildUDiv(e->b, kp_iaddc(e, LLVMBuildNSWSub(e->b, t1, t0, ""), e->vw - 1),
                                      kp_i64(e, e->vw), "");
    gemm(e, s, U, V, M, nvec);
    transform_output(e, a, s, kp_gep(e, M, back), n, ty0, nrows, skew,
                     LLVMBuildNSWAdd(e->b, skew, LLVMBuildNSWSub(e->b, t1, t0, ""), ""));
    kp_loop_end(e, &li);
}

/* The GEMM's cost for a block of `tiles` tiles: vectors of tiles, a lone
 * vector outside the whole register tiles counting double (FB chains of
 * fmas only: latency-bound). */
static int64_t block_cost(const KpWino *s, int vw, int64_t tiles)
{
    int64_t nvec = block_vectors(vw, tiles), rest = nvec % s->kv;
    return nvec - rest + (rest == 1 ? 2 : rest);
}

/* The row length of V and M for blocks of bt tiles: a block's first row
 * starts up to tw - 1 floats before it, its last row's last vector ends
 * up to nj*vw - 1 floats past its last tile. */
static int64_t block_row_floats(const KpWino *s, int vw, int64_t bt)
{
    return off_sets(kp_round_up(bt - 1 + s->nj * vw, vw));
}

bool kp_conv_winograd_fits(const KpConvMap *m, int64_t max_batch, int64_t min_channels)
{
    /* the transformed weights, read whole by every item, within L2 */
    int64_t l1, l2, cores;
    kp_gemm_host(&l1, &l2, &cores);
    return !m->transposed && m->kh == 3 && m->kw == 3 && m->sh == 1 && m->sw == 1 && m->dh == 1 &&
           m->dw == 1 && m->cin >= min_channels && m->cout >= min_channels &&
           4 * 16 * m->cin * m->cout <= l2 && max_batch >= 2;
}

void kp_emit_conv_winograd(KpEmit *e, const KpConvMap *map)
{
    int64_t l1, l2, cores;
    kp_gemm_host(&l1, &l2, &cores);
    KpWino s = {.m = *map};
    kp_wino_tiles(&s, e->vw);
    s.kv = e->vw >= 16 ? 4 : 3;
    s.fb = kp_divisor_upto(map->cout, 4);
    /* tiles per item: whole vectors, the fewest vectors of GEMM work over a
     * sample's blocks, and of those the fewest blocks (each transforms the
     * rows it touches whole), V and M of a block in half of L2 */
    int64_t tiles = s.th * s.tw, best = -1, best_blocks = 0;
    for (int64_t bt = e->vw;; bt += e->vw) {
        int64_t fill = bt < tiles ? bt : tiles;
        if (bt > e->vw && 4 * 16 * (map->cin + map->cout) * block_row_floats(&s, e->vw, fill) > l2 / 2)
            break;
        int64_t cost = (tiles / fill) * block_cost(&s, e->vw, fill), blocks = kp_ceil_div(tiles, fill);
        if (tiles % fill)
            cost += block_cost(&s, e->vw, tiles % fill);
        if (best < 0 || cost < best || (cost == best && blocks < best_blocks)) {
            best = cost;
            best_blocks = blocks;
            s.bt = fill;
        }
        if (fill == tiles)
            break;
    }
    s.ts = block_row_floats(&s, e->vw, s.bt);
    /* the most tile rows a block touches: from its first row's last tile */
    s.rb = (s.tw - 1 + s.bt - 1) / s.tw + 1;
    if (s.rb > s.th)
        s.rb = s.th;
    s.u_floats = 16 * map->cout * map->cin;
    s.v_floats = 16 * map->cin * s.ts;
    s.m_floats = 16 * map->cout * s.ts;
    int64_t bytes = 4 * (s.u_floats + v_margin(&s, e->vw) + s.v_floats + s.m_floats);
    if (bytes > e->scratch_bytes)
        e->scratch_bytes = bytes;
    LLVMValueRef items = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, kp_ceil_div(tiles, s.bt)), "items");
    kp_emit_parallel(e, "conv_winograd", kp_i64(e, 0), items, 1, wino_kernel, &s);
}
