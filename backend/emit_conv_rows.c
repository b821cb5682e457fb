/*
 * emit_conv_rows.c — the input gradient of a stride-1 convolution,
 * vectorized along dy's rows instead of dx's.
 *
 * The direct kernel of emit_conv.c puts lanes on the output row.  For
 * fashion_cnn's conv2d1 that is dx, 26 wide: 4 vectors of 8 of which 26
 * lanes are used (81%), and the tiles of 2 vectors get 4 channels, 8
 * accumulators.  dy's rows are 24 wide: 3 whole vectors.  So when dy's
 * rows fill more of their vectors than dx's, this kernel sums along dy
 * instead, one set of accumulators per kernel column kj:
 *
 *   S_kj[ix] = sum over f, ki of  W[f, c, ki, kj] · dy[n, f, r + pt - ki, ix]
 *                                      (rows outside dy skipped)
 *   dx[n, c, r, ox] = sum over kj of  S_kj[ox + pl - kj]   (0 outside dy's row)
 *
 * A work item is dx row r of fb channels of one sample: fb * kw * kv
 * accumulators (kv vectors per dy row; 1 x 3 x 3 = 9 for conv2d1), per
 * (f, ki) kv loads of dy, fb * kw broadcasts and fb * kw * kv fmas.  At
 * the end the kw sums are shifted into place in registers (a shuffle of
 * two neighbouring vectors, zero past either end of the row), added in
 * kj order, and stored through the node's epilogues.
 *
 * Every dx element is one fixed sum: per kj one fma chain over (f, ki) in
 * order, then the kj in order, by one thread: no result depends on the
 * thread count.  The order differs from emit_conv.c's, within the
 * rounding the tests allow against the reference kernel.
 */
#include "emit_conv.h"
#include "../ir/epilogue.h"

enum { MAXV = 4, MAXKW = 12, MAXACC = 24 };

typedef struct Rows {
    KpConvMap m;                /* the scatter form: X = dy, Y = dx */
    int64_t kv;                 /* vectors per dy row */
    int64_t fb;                 /* dx channels per item */
} Rows;

/* Lanes [d, d + vw) of the row s[0..kv) (zero outside it). */
static LLVMValueRef shifted(KpEmit *e, LLVMValueRef *s, int64_t kv, int64_t d)
{
    int64_t q = d >= 0 ? d / e->vw : -((-d + e->vw - 1) / e->vw), sh = d - q * e->vw;
    LLVMValueRef zero = kp_fconst(e->vec, 0.0);
    LLVMValueRef lo = q >= 0 && q < kv ? s[q] : zero;
    if (sh == 0)
        return lo;
    LLVMValueRef hi = q + 1 >= 0 && q + 1 < kv ? s[q + 1] : zero;
    LLVMValueRef idx[64];
    for (int l = 0; l < e->vw; l++)
        idx[l] = kp_i32(e, (int32_t)(sh + l));
    return LLVMBuildShuffleVector(e->b, lo, hi, LLVMConstVector(idx, (unsigned)e->vw), "");
}

static void rows_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Rows *s = user;
    const KpConvMap *m = &s->m;
    int64_t kv = s->kv, fb = s->fb, nfb = m->cout / fb;
    LLVMValueRef X = a->p[m->ix], W = a->p[m->iw], Y = a->p[m->iy];
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef oy = LLVMBuildSRem(e->b, li.iv, kp_i64(e, m->oh), "oy");
    LLVMValueRef t = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, m->oh), "");
    LLVMValueRef co0 = kp_imulc(e, LLVMBuildSRem(e->b, t, kp_i64(e, nfb), ""), fb);
    LLVMValueRef n = LLVMBuildSDiv(e->b, t, kp_i64(e, nfb), "n");

    LLVMValueRef acc[MAXACC][MAXV];     /* [fi * kw + kj][v] */
    for (int64_t i = 0; i < fb * m->kw; i++)
        for (int64_t v = 0; v < kv; v++) {
            acc[i][v] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[i][v]);
        }
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    KpLoop lc, lk;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cin), 1, "f");
    LLVMValueRef plane = kp_imulc(e, kp_iadd(e, kp_imulc(e, n, m->cin), lc.iv), m->h);
    /* the dy row the next item (r + 1) reads first, while this one works */
    LLVMValueRef next = kp_imulc(e, kp_iadd(e, plane, kp_iaddc(e, oy, m->pt + 1)), m->w);
    kp_prefetch_span(e, X, next, m->w);                 /* may pass the end */
    LLVMValueRef wf = kp_iadd(e, kp_iaddc(e, kp_imulc(e, co0, m->wco), m->w0), kp_imulc(e, lc.iv, m->wci));
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, m->kh), 1, "ki");
    LLVMValueRef iy = LLVMBuildNSWSub(e->b, kp_iaddc(e, oy, m->pt), lk.iv, "");
    LLVMBasicBlockRef row = LLVMAppendBasicBlockInContext(e->ctx, fn, "row");
    LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(e->ctx, fn, "row.next");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, m->h), ""), row, skip);
    LLVMPositionBuilderAtEnd(e->b, row);
    LLVMValueRef xrow = kp_imulc(e, kp_iadd(e, plane, iy), m->w);
    LLVMValueRef xv[MAXV];
    for (int64_t v = 0; v < kv; v++) {
        int64_t lanes = m->w - v * e->vw;
        LLVMValueRef at = kp_iaddc(e, xrow, v * e->vw);
        xv[v] = lanes >= e->vw ? kp_load_vec(e, X, at) : kp_load_vec_masked(e, X, at, (int)lanes, 0.0);
    }
    LLVMValueRef wk = kp_iadd(e, wf, kp_imulc(e, lk.iv, m->wki));
    for (int64_t fi = 0; fi < fb; fi++)
        for (int64_t kj = 0; kj < m->kw; kj++) {
            LLVMValueRef at = kp_iaddc(e, wk, fi * m->wco + kj * m->wkj);
            LLVMValueRef wv = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, W, at), ""));
            for (int64_t v = 0; v < kv; v++) {
                LLVMValueRef slot = acc[fi * m->kw + kj][v];
                LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, slot, "");
                LLVMBuildStore(e->b, kp_fma(e, xv[v], wv, old), slot);
            }
        }
    LLVMBuildBr(e->b, skip);
    LLVMPositionBuilderAtEnd(e->b, skip);
    kp_loop_end_unrolled(e, &lk);
    kp_loop_end_unrolled(e, &lc);

    /* dx[ox] = sum over kj of S_kj[ox + pl - kj], vector u at ox = u*vw */
    LLVMValueRef yplane = kp_imulc(e, kp_iadd(e, kp_imulc(e, n, m->cout), co0), m->oh);
    LLVMValueRef ybase = kp_imulc(e, kp_iadd(e, yplane, oy), m->ow);
    int64_t nu = (m->ow + e->vw - 1) / e->vw;
    for (int64_t fi = 0; fi < fb; fi++) {
        LLVMValueRef sv[MAXKW][MAXV];
        for (int64_t kj = 0; kj < m->kw; kj++)
            for (int64_t v = 0; v < kv; v++)
                sv[kj][v] = LLVMBuildLoad2(e->b, e->vec, acc[fi * m->kw + kj][v], "");
        LLVMValueRef yrow = kp_iaddc(e, ybase, fi * m->oh * m->ow);
        for (int64_t u = 0; u < nu; u++) {
            LLVMValueRef r = NULL;
            for (int64_t kj = 0; kj < m->kw; kj++) {
                LLVMValueRef x = shifted(e, sv[kj], kv, u * e->vw + m->pl - kj);
                r = r ? LLVMBuildFAdd(e->b, r, x, "") : x;
            }
            int64_t lanes = m->ow - u * e->vw;
            LLVMValueRef at = kp_iaddc(e, yrow, u * e->vw);
            r = kp_emit_epilogue(e, e->node, a->p, r, at, lanes < e->vw ? (int)lanes : 0);
            if (lanes < e->vw)
                kp_store_vec_masked(e, r, Y, at, (int)lanes);
            else
                kp_store_vec(e, r, Y, at);
        }
    }
    kp_loop_end(e, &li);
}

/* The part of its lanes a row of w floats fills. */
static double lanes_used(int64_t w, int vw)
{
    return (double)w / (double)((w + vw - 1) / vw * vw);
}

bool kp_emit_conv_grad_x_rows(KpEmit *e, const KpConvMap *m)
{
    if (!m->transposed || m->sh != 1 || m->sw != 1 || m->dh != 1 || m->dw != 1 || m->kw > MAXKW)
        return false;
    if (lanes_used(m->w, e->vw) <= lanes_used(m->ow, e->vw))
        return false;
    /* registers: the accumulators, a dy row's vectors and a broadcast */
    int64_t regs = e->vw >= 16 ? 32 : 16, kv = (m->w + e->vw - 1) / e->vw;
    int64_t room = regs - kv - 1;
    if (kv > MAXV || m->kw * kv > room)
        return false;
    int64_t cap = room / (m->kw * kv);
    if (cap * m->kw > MAXACC)
        cap = MAXACC / m->kw;
    Rows s = {.m = *m, .kv = kv, .fb = kp_divisor_upto(m->cout, cap)};
    LLVMValueRef items = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, m->cout / s.fb * m->oh), "items");
    int64_t macs = e->g->max_batch * m->cout * m->oh * m->ow * m->cin * m->kh * m->kw;
    kp_emit_parallel(e, "conv_rows", kp_i64(e, 0), items, macs >= 65536, rows_kernel, &s);
    return true;
}
