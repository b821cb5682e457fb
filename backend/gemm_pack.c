/*
 * gemm_pack.c — the stock packer (gemm.h): one block of a strided matrix
 * into panels of w lines,
 *
 *     dst[t][k][q] = src(line t*w + q, k)      t panel, q lane of the panel
 *
 * A's lines are its rows, B's its columns.  Three ways, by the source:
 *   lines contiguous (A = dy^T, B row-major):  per k, vector copies of w
 *       lines, the last panel masked (its lines past the block read as 0);
 *   k contiguous (A row-major, B = W^T):      vw x vw squares (vw lines,
 *       vw k) loaded as vw vectors and transposed in registers, the k tail
 *       scalar;
 *   neither:                                   scalar copies.
 * B's panels are zero past its last line (the micro-tiles read whole
 * vectors from them); A's rows past the block are never read.
 */
#include "gemm_internal.h"

typedef struct Src {
    LLVMValueRef base;          /* line l0, k k0 */
    int64_t ls, ks;             /* floats between lines, between k */
} Src;

static LLVMValueRef src_at(KpEmit *e, const Src *s, LLVMValueRef l, LLVMValueRef k)
{
    return kp_gep(e, s->base, kp_iadd(e, kp_imulc(e, l, s->ls), kp_imulc(e, k, s->ks)));
}

/* &dst[t][k][q0]: panels of w lines, kc k each */
static LLVMValueRef dst_at(KpEmit *e, const KpGemmPackArgs *p, LLVMValueRef t, LLVMValueRef k,
                           int64_t q0)
{
    LLVMValueRef at = kp_iadd(e, LLVMBuildNSWMul(e->b, kp_imulc(e, t, p->w), p->kc, ""), kp_imulc(e, k, p->w));
    return kp_gep(e, p->dst, LLVMBuildNSWAdd(e->b, at, kp_i64(e, q0), ""));
}

/* <vw x i1>: lane i set when first + i < limit (i64 values) */
static LLVMValueRef lanes_below(KpEmit *e, LLVMValueRef first, LLVMValueRef limit)
{
    LLVMValueRef iota[64];
    for (int i = 0; i < e->vw; i++)
        iota[i] = kp_i64(e, i);
    LLVMTypeRef vi = LLVMVectorType(e->i64, (unsigned)e->vw);
    LLVMValueRef room = LLVMBuildNSWSub(e->b, limit, first, "");
    LLVMValueRef splat = LLVMBuildInsertElement(e->b, LLVMGetPoison(vi), room, kp_i32(e, 0), "");
    splat = LLVMBuildShuffleVector(e->b, splat, LLVMGetPoison(vi),
                                   LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
    return LLVMBuildICmp(e->b, LLVMIntSGT, splat, LLVMConstVector(iota, (unsigned)e->vw), "");
}

static LLVMValueRef masked_load(KpEmit *e, LLVMValueRef ptr, LLVMValueRef mask)
{
    LLVMTypeRef over[2] = {e->vec, e->ptr};
    LLVMValueRef args[4] = {ptr, kp_i32(e, 4), mask, kp_fconst(e->vec, 0.0)};
    return kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
}

/* One vector of lines at dst, of which `lanes` belong to the panel.  A
 * panel no wider than a vector (every stock plan's A) is written in
 * increasing address order and A's block has a vector of slack after it
 * (the plan's a_floats), so a short vector is stored whole: its lanes past
 * the panel land where the next store (or the next panel, or the slack)
 * goes, and are overwritten.  A masked store is microcoded on AMD cores
 * (AVX2): it was a quarter of the time of a 64x128x9216 dense on a Zen 3,
 * which packs 6-row panels.  A wider panel (mr above the vector width,
 * forced by KARPC_GEMM_PLAN) is written a vector of lines at a time over
 * all k, so its short vector would land on lines already written: masked. */
static void store_panel(KpEmit *e, const KpGemmPackArgs *p, LLVMValueRef v, LLVMValueRef dst, int lanes)
{
    kp_gemm_store(e, v, dst, p->is_b || p->w > e->vw ? lanes : e->vw);
}

/* Steps of k ahead that the A packer prefetches its source lines: each
 * step is a line (or two) on a page of its own where dy^T's rows are
 * 1024 outputs long, too far for the hardware prefetcher to follow. */
#define PACK_AHEAD 16

/* A's panels narrower than a vector, g = vw / w of them to a vector, in
 * groups of `lines` vectors: per k those vectors of lines loaded, the
 * same lines `PACK_AHEAD` steps on prefetched, and each vector's w-lane
 * parts stored into its g panels; from panel t0 for the whole groups
 * there; returns the first panel left.  Each line of the source is read
 * once, not once per panel (dy^T at 1024 outputs: a line per step of k,
 * 4 KiB apart, gone from L1 before the next panel's pass came back), and
 * a page, once entered, gives `lines` vectors. */
static LLVMValueRef pack_line_groups(KpEmit *e, const KpGemmPackArgs *p, const Src *s, LLVMValueRef t0,
                                     LLVMValueRef panels, int lines)
{
    int g = e->vw / p->w, per = g * lines;
    LLVMValueRef left = LLVMBuildNSWSub(e->b, panels, t0, "");
    LLVMValueRef groups = LLVMBuildUDiv(e->b, left, kp_i64(e, per), "groups");
    KpLoop lg, lk;
    kp_loop_begin(e, &lg, kp_i64(e, 0), groups, 1, "pg");
    LLVMValueRef t = kp_iadd(e, t0, kp_imulc(e, lg.iv, per));
    LLVMValueRef l[4], mask[4];
    for (int u = 0; u < lines; u++) {
        l[u] = kp_imulc(e, kp_iaddc(e, t, u * g), p->w);
        mask[u] = lanes_below(e, l[u], p->nl);
    }
    kp_loop_begin(e, &lk, kp_i64(e, 0), p->kc, 1, "pk");
    for (int u = 0; u < lines; u++) {
        LLVMValueRef v = masked_load(e, src_at(e, s, l[u], lk.iv), mask[u]);
        kp_prefetch(e, src_at(e, s, l[u], kp_iaddc(e, lk.iv, PACK_AHEAD)), kp_i64(e, 0));
        for (int i = 0; i < g; i++) {
            LLVMValueRef idx[64];
            for (int q = 0; q < p->w; q++)
                idx[q] = kp_i32(e, i * p->w + q);
            LLVMValueRef part = LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(e->vec),
                                                       LLVMConstVector(idx, (unsigned)p->w), "");
            LLVMValueRef st = LLVMBuildStore(e->b, part, dst_at(e, p, kp_iaddc(e, t, u * g + i), lk.iv, 0));
            LLVMSetAlignment(st, 4);
        }
    }
    kp_gemm_loop_end(e, &lk);
    kp_gemm_loop_end(e, &lg);
    return kp_iadd(e, t0, kp_imulc(e, groups, per));
}

/* Lines contiguous: per panel and k, the w lines in vectors, masked to
 * the lines the block has (A's narrow panels first in groups). */
static void pack_lines(KpEmit *e, const KpGemmPackArgs *p, const Src *s)
{
    LLVMValueRef panels = LLVMBuildUDiv(e->b, LLVMBuildNSWAdd(e->b, p->nl, kp_i64(e, p->w - 1), ""),
                                        kp_i64(e, p->w), "panels");
    LLVMValueRef from = kp_i64(e, 0);
    if (!p->is_b && p->w < e->vw && e->vw % p->w == 0) {
        from = pack_line_groups(e, p, s, from, panels, 2);
        from = pack_line_groups(e, p, s, from, panels, 1);
    }
    KpLoop lt, lk;
    kp_loop_begin(e, &lt, from, panels, 1, "pt");
    LLVMValueRef l = kp_imulc(e, lt.iv, p->w);
    for (int q = 0; q < p->w; q += e->vw) {
        LLVMValueRef lq = LLVMBuildNSWAdd(e->b, l, kp_i64(e, q), "");
        LLVMValueRef mask = lanes_below(e, lq, p->nl);
        kp_loop_begin(e, &lk, kp_i64(e, 0), p->kc, 1, "pk");
        LLVMValueRef v = masked_load(e, src_at(e, s, lq, lk.iv), mask);
        store_panel(e, p, v, dst_at(e, p, lt.iv, lk.iv, q), p->w - q < e->vw ? p->w - q : e->vw);
        kp_gemm_loop_end(e, &lk);
    }
    kp_gemm_loop_end(e, &lt);
}

/* Any strides: element by element; B's lines past the block zeroed. */
static void pack_scalar(KpEmit *e, const KpGemmPackArgs *p, const Src *s)
{
    KpLoop ll, lk;
    kp_loop_begin(e, &ll, kp_i64(e, 0), p->nl, 1, "pl");
    LLVMValueRef t = LLVMBuildUDiv(e->b, ll.iv, kp_i64(e, p->w), "");
    LLVMValueRef q = LLVMBuildURem(e->b, ll.iv, kp_i64(e, p->w), "");
    LLVMValueRef row = kp_iadd(e, LLVMBuildNSWMul(e->b, kp_imulc(e, t, p->w), p->kc, ""), q);
    kp_loop_begin(e, &lk, kp_i64(e, 0), p->kc, 1, "pk");
    LLVMValueRef x = LLVMBuildLoad2(e->b, e->f32, src_at(e, s, ll.iv, lk.iv), "");
    LLVMBuildStore(e->b, x, kp_gep(e, p->dst, kp_iadd(e, row, kp_imulc(e, lk.iv, p->w))));
    kp_gemm_loop_end(e, &lk);
    kp_gemm_loop_end(e, &ll);
    if (!p->is_b)
        return;
    LLVMValueRef end = kp_imulc(e, LLVMBuildUDiv(e->b, LLVMBuildNSWAdd(e->b, p->nl, kp_i64(e, p->w - 1), ""),
                                             kp_i64(e, p->w), ""), p->w);
    kp_loop_begin(e, &ll, p->nl, end, 1, "pz");
    t = LLVMBuildUDiv(e->b, ll.iv, kp_i64(e, p->w), "");
    q = LLVMBuildURem(e->b, ll.iv, kp_i64(e, p->w), "");
    row = kp_iadd(e, LLVMBuildNSWMul(e->b, kp_imulc(e, t, p->w), p->kc, ""), q);
    kp_loop_begin(e, &lk, kp_i64(e, 0), p->kc, 1, "pk");
    LLVMBuildStore(e->b, kp_fconst(e->f32, 0.0), kp_gep(e, p->dst, kp_iadd(e, row, kp_imulc(e, lk.iv, p->w))));
    kp_gemm_loop_end(e, &lk);
    kp_gemm_loop_end(e, &ll);
}

/* v[0..vw) transposed in place: v[j][i] becomes v[i][j].  Each stage
 * swaps the off-diagonal b x b blocks of every 2b x 2b block, with one
 * two-input shuffle per vector. */
static void transpose(KpEmit *e, LLVMValueRef *v)
{
    int vw = e->vw;
    for (int b = vw / 2; b >= 1; b /= 2)
        for (int i = 0; i < vw; i++) {
            if (i & b)
                continue;
            LLVMValueRef mi[64], mj[64];
            for (int c = 0; c < vw; c++) {
                mi[c] = kp_i32(e, (c & b) == 0 ? c : vw + c - b);
                mj[c] = kp_i32(e, (c & b) == 0 ? c + b : vw + c);
            }
            LLVMValueRef a = v[i], bb = v[i + b];
            v[i] = LLVMBuildShuffleVector(e->b, a, bb, LLVMConstVector(mi, (unsigned)vw), "");
            v[i + b] = LLVMBuildShuffleVector(e->b, a, bb, LLVMConstVector(mj, (unsigned)vw), "");
        }
}

/* k contiguous: per panel, chunk of vw k and group of vw lines, the
 * lines' vectors transposed into one vector of lines per k; lines past
 * the block read as zero (masked loads that touch nothing); the k past
 * the last whole chunk element by element. */
static void pack_transposed(KpEmit *e, const KpGemmPackArgs *p, const Src *s)
{
    int vw = e->vw;
    LLVMValueRef panels = LLVMBuildUDiv(e->b, LLVMBuildNSWAdd(e->b, p->nl, kp_i64(e, p->w - 1), ""),
                                        kp_i64(e, p->w), "panels");
    LLVMValueRef kfull = kp_imulc(e, LLVMBuildUDiv(e->b, p->kc, kp_i64(e, vw), ""), vw);
    LLVMValueRef all = kp_mask_first(e, vw), none = LLVMConstNull(LLVMTypeOf(all));
    KpLoop lt, lk;
    kp_loop_begin(e, &lt, kp_i64(e, 0), panels, 1, "pt");
    LLVMValueRef l0 = kp_imulc(e, lt.iv, p->w);
    kp_loop_begin(e, &lk, kp_i64(e, 0), kfull, vw, "pk");
    for (int q = 0; q < p->w; q += vw) {
        LLVMValueRef v[64];
        for (int i = 0; i < vw; i++) {
            LLVMValueRef l = LLVMBuildNSWAdd(e->b, l0, kp_i64(e, q + i), "");
            LLVMValueRef in = LLVMBuildICmp(e->b, LLVMIntSLT, l, p->nl, "");
            v[i] = masked_load(e, src_at(e, s, l, lk.iv), LLVMBuildSelect(e->b, in, all, none, ""));
        }
        transpose(e, v);
        int lanes = p->w - q < vw ? p->w - q : vw;
        for (int j = 0; j < vw; j++)
            store_panel(e, p, v[j], dst_at(e, p, lt.iv, LLVMBuildNSWAdd(e->b, lk.iv, kp_i64(e, j), ""), q),
                        lanes);
    }
    kp_gemm_loop_end(e, &lk);
    kp_gemm_loop_end(e, &lt);
    /* the k tail: every line of the block (B's lines past it stay as the
     * zero-filled chunks left them only if a chunk ran: zero them here) */
    KpLoop ll;
    LLVMValueRef lend = p->is_b ? kp_imulc(e, panels, p->w) : p->nl;
    kp_loop_begin(e, &ll, kp_i64(e, 0), lend, 1, "pl");
    LLVMValueRef t = LLVMBuildUDiv(e->b, ll.iv, kp_i64(e, p->w), "");
    LLVMValueRef q = LLVMBuildURem(e->b, ll.iv, kp_i64(e, p->w), "");
    LLVMValueRef in = LLVMBuildICmp(e->b, LLVMIntSLT, ll.iv, p->nl, "");
    LLVMValueRef row = kp_iadd(e, LLVMBuildNSWMul(e->b, kp_imulc(e, t, p->w), p->kc, ""), q);
    kp_loop_begin(e, &lk, kfull, p->kc, 1, "pk");
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef bl = LLVMAppendBasicBlockInContext(e->ctx, fn, "pk.load");
    LLVMBasicBlockRef bj = LLVMAppendBasicBlockInContext(e->ctx, fn, "pk.store");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(e->b);
    LLVMBuildCondBr(e->b, in, bl, bj);
    LLVMPositionBuilderAtEnd(e->b, bl);
    LLVMValueRef x = LLVMBuildLoad2(e->b, e->f32, src_at(e, s, ll.iv, lk.iv), "");
    LLVMBuildBr(e->b, bj);
    LLVMPositionBuilderAtEnd(e->b, bj);
    LLVMValueRef val = LLVMBuildPhi(e->b, e->f32, "");
    LLVMValueRef vals[2] = {kp_fconst(e->f32, 0.0), x};
    LLVMBasicBlockRef bbs[2] = {from, bl};
    LLVMAddIncoming(val, vals, bbs, 2);
    LLVMBuildStore(e->b, val, kp_gep(e, p->dst, kp_iadd(e, row, kp_imulc(e, lk.iv, p->w))));
    kp_gemm_loop_end(e, &lk);
    kp_gemm_loop_end(e, &ll);
}

void kp_gemm_pack_view(KpEmit *e, const KpGemmPackArgs *p, const KpGemmView *view)
{
    Src s = {.ls = p->is_b ? view->cs : view->rs, .ks = p->is_b ? view->rs : view->cs};
    LLVMValueRef r = p->is_b ? p->k0 : p->l0, c = p->is_b ? p->l0 : p->k0;
    s.base = kp_gemm_view_at(e, p->ka, view, p->g, r, c);
    if (s.ls == 1)
        pack_lines(e, p, &s);
    else if (s.ks == 1)
        pack_transposed(e, p, &s);
    else
        pack_scalar(e, p, &s);
}
