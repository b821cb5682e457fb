/*
 * emit_prep.c — the inference preparation ops (ops.def): the batchnorm
 * folds and the panel packing run in the prepare entry, once per change of
 * the parameters, as plain loops; dense_packed is the forward kernel that
 * reads the packed panels.
 *
 * dense_packed: y[r, P*j + l] = sum_k x[r,k] * panel[j][k][l] (+ bias),
 * panels [np][in][P] (P = attr.panel, a multiple of the vector width vw:
 * V = P/vw vectors per panel).  Work items are (row block, panel) pairs,
 * item = rb * np + j.  A full block of RB rows keeps RB x V accumulators:
 * per k, one panel load per vector feeds RB fmas, each with x[r,k]
 * broadcast.  A block of fewer rows (batch 1) runs one row at a time with
 * KU accumulators per vector along k (k unrolled by KU), added in a fixed
 * order, so its fma chains do not wait on each other.  The bias is added
 * and the epilogues applied at the store; the last panel, when out % P is
 * not 0, stores with masks.
 *
 *        panel j -> |<- P floats ->|
 *   row r0    acc[0][0..V)    += bcast(x[r0,k]) * panel[j][k][:]
 *   row r0+1  acc[1][0..V)    ...
 */
#include "emit.h"

enum { RB = 4, KU = 4 };

typedef struct Packed {
    const KpNode *node;
    int64_t in, out, p, np;
    int v;                      /* vectors per panel */
    int has_bias;
} Packed;

static LLVMValueRef ld(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildLoad2(e->b, e->f32, kp_gep(e, p, i), "");
}

static LLVMValueRef add(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWAdd(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

/* --- bn_fold_weight, bn_fold_bias, pack_panels: run once, plain loops -- */

static LLVMValueRef fold_scale(KpEmit *e, const KpNode *n, LLVMValueRef gamma, LLVMValueRef var)
{
    LLVMValueRef s = LLVMBuildFAdd(e->b, var, kp_fconst(e->f32, n->attr.eps), "");
    LLVMTypeRef ty = e->f32;
    s = kp_intrinsic(e, "llvm.sqrt", &ty, 1, &s, 1);
    return LLVMBuildFDiv(e->b, gamma, s, "scale");
}

/* w' [F,per] = w * gamma[f] / sqrt(var[f] + eps) */
int emit_bn_fold_weight(KpEmit *e, const KpNode *n, KpDiag *d)
{
    (void)d;
    int64_t f = n->in[0]->dims[0], per = kp_value_numel(n->in[0], 1) / f;
    LLVMValueRef *p = e->ptr_arg;
    KpLoop lc, li;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, f), 1, "c");
    LLVMValueRef s = fold_scale(e, n, ld(e, p[1], lc.iv), ld(e, p[2], lc.iv));
    LLVMValueRef base = mul(e, lc.iv, per);
    kp_loop_begin(e, &li, kp_i64(e, 0), kp_i64(e, per), 1, "i");
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, base, li.iv, "");
    LLVMBuildStore(e->b, LLVMBuildFMul(e->b, ld(e, p[0], at), s, ""), kp_gep(e, p[3], at));
    kp_loop_end(e, &li);
    kp_loop_end(e, &lc);
    return 0;
}

/* b'[f] = (b[f] - mean[f]) * gamma[f] / sqrt(var[f] + eps) + beta[f] */
int emit_bn_fold_bias(KpEmit *e, const KpNode *n, KpDiag *d)
{
    (void)d;
    LLVMValueRef *p = e->ptr_arg;
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, n->out->dims[0]), 1, "c");
    LLVMValueRef c = lc.iv;
    LLVMValueRef s = fold_scale(e, n, ld(e, p[0], c), ld(e, p[3], c));
    LLVMValueRef b = n->nin == 5 ? ld(e, p[4], c) : kp_fconst(e->f32, 0.0);
    LLVMValueRef y = LLVMBuildFMul(e->b, LLVMBuildFSub(e->b, b, ld(e, p[2], c), ""), s, "");
    y = LLVMBuildFAdd(e->b, y, ld(e, p[1], c), "");
    LLVMBuildStore(e->b, y, kp_gep(e, p[n->nin], c));
    kp_loop_end(e, &lc);
    return 0;
}

/* panels[j][k][l] = w[P*j + l][k], 0 past out */
int emit_pack_panels(KpEmit *e, const KpNode *n, KpDiag *d)
{
    (void)d;
    int64_t out = n->in[0]->dims[0], in = n->in[0]->dims[1], pw = n->attr.panel;
    int64_t np = n->out->dims[0];
    LLVMValueRef *p = e->ptr_arg;
    LLVMValueRef bytes = kp_i64(e, np * in * pw * (int64_t)sizeof(float));
    LLVMBuildMemSet(e->b, p[1], LLVMConstInt(LLVMInt8TypeInContext(e->ctx), 0, 0), bytes, 4);
    KpLoop lo, lk;
    kp_loop_begin(e, &lo, kp_i64(e, 0), kp_i64(e, out), 1, "o");
    LLVMValueRef j = LLVMBuildSDiv(e->b, lo.iv, kp_i64(e, pw), "j");
    LLVMValueRef l = LLVMBuildSRem(e->b, lo.iv, kp_i64(e, pw), "l");
    LLVMValueRef dst = LLVMBuildNSWAdd(e->b, mul(e, mul(e, j, in), pw), l, "");
    LLVMValueRef src = mul(e, lo.iv, in);
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, in), 1, "k");
    LLVMValueRef v = ld(e, p[0], LLVMBuildNSWAdd(e->b, src, lk.iv, ""));
    LLVMBuildStore(e->b, v, kp_gep(e, p[1], LLVMBuildNSWAdd(e->b, dst, mul(e, lk.iv, pw), "")));
    kp_loop_end(e, &lk);
    kp_loop_end(e, &lo);
    return 0;
}

/* --- dense_packed -------------------------------------------------------- */

/* lanes of vector c of the panel that hold columns: vw, or fewer (0: none)
 * in the last panel when partial */
static int chunk_lanes(KpEmit *e, const Packed *s, int c, int partial)
{
    if (!partial)
        return e->vw;
    int64_t last = s->out - (s->np - 1) * s->p;
    int64_t k = last - (int64_t)c * e->vw;
    return k <= 0 ? 0 : k >= e->vw ? e->vw : (int)k;
}

/* y[r, P*j + c*vw ...] = acc (+ bias), epilogues, stored (masked if partial) */
static void store(KpEmit *e, const KpKernelArgs *a, const Packed *s, LLVMValueRef r,
                  LLVMValueRef j, LLVMValueRef *acc, int partial)
{
    LLVMValueRef y = a->p[s->node->nin];
    LLVMValueRef col0 = mul(e, j, s->p);
    LLVMValueRef row = mul(e, r, s->out);
    for (int c = 0; c < s->v; c++) {
        int lanes = chunk_lanes(e, s, c, partial);
        if (lanes == 0)
            continue;
        int masked = lanes < e->vw;
        LLVMValueRef col = add(e, col0, (int64_t)c * e->vw);
        LLVMValueRef v = acc[c];
        if (s->has_bias) {
            LLVMValueRef b = masked ? kp_load_vec_masked(e, a->p[2], col, lanes, 0.0)
                                    : kp_load_vec(e, a->p[2], col);
            v = LLVMBuildFAdd(e->b, v, b, "");
        }
        LLVMValueRef idx = LLVMBuildNSWAdd(e->b, row, col, "idx");
        v = kp_emit_epilogue(e, s->node, a->p, v, idx, masked ? lanes : 0);
        if (masked)
            kp_store_vec_masked(e, v, y, idx, lanes);
        else
            kp_store_vec(e, v, y, idx);
    }
}

/* the stores of rows[0..nr), full or last-panel form chosen at run time */
static void store_rows(KpEmit *e, const KpKernelArgs *a, const Packed *s, LLVMValueRef *rows,
                       int nr, LLVMValueRef j, LLVMValueRef acc[][4])
{
    if (s->out % s->p == 0) {
        for (int i = 0; i < nr; i++)
            store(e, a, s, rows[i], j, acc[i], 0);
        return;
    }
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(e->ctx, fn, "full");
    LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(e->ctx, fn, "part");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "join");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, j, kp_i64(e, s->np - 1), ""), full, part);
    for (int form = 0; form < 2; form++) {
        LLVMPositionBuilderAtEnd(e->b, form ? part : full);
        for (int i = 0; i < nr; i++)
            store(e, a, s, rows[i], j, acc[i], form);
        LLVMBuildBr(e->b, join);
    }
    LLVMPositionBuilderAtEnd(e->b, join);
}

static LLVMValueRef bcast_x(KpEmit *e, const KpKernelArgs *a, const Packed *s, LLVMValueRef r,
                            LLVMValueRef k)
{
    return kp_splat(e, ld(e, a->p[0], LLVMBuildNSWAdd(e->b, mul(e, r, s->in), k, "")));
}

static LLVMValueRef panel_vec(KpEmit *e, const KpKernelArgs *a, const Packed *s, LLVMValueRef j,
                              LLVMValueRef k, int c)
{
    LLVMValueRef at = mul(e, LLVMBuildNSWAdd(e->b, mul(e, j, s->in), k, ""), s->p);
    return kp_load_vec(e, a->p[1], add(e, at, (int64_t)c * e->vw));
}

static void fma_into(KpEmit *e, LLVMValueRef slot, LLVMValueRef x, LLVMValueRef w)
{
    LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, slot, "");
    LLVMBuildStore(e->b, kp_fma(e, x, w, old), slot);
}

static LLVMValueRef zero_slot(KpEmit *e)
{
    LLVMValueRef slot = kp_alloca(e, e->vec, "acc");
    LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), slot);
    return slot;
}

/* RB rows from r0, panel j: RB x V accumulators sharing each panel load */
static void block_full(KpEmit *e, const KpKernelArgs *a, const Packed *s, LLVMValueRef r0,
                       LLVMValueRef j)
{
    LLVMValueRef slot[RB][4], rows[RB], acc[RB][4];
    for (int i = 0; i < RB; i++) {
        rows[i] = add(e, r0, i);
        for (int c = 0; c < s->v; c++)
            slot[i][c] = zero_slot(e);
    }
    KpLoop lk;
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, s->in), 1, "k");
    LLVMValueRef w[4], x[RB];
    for (int c = 0; c < s->v; c++)
        w[c] = panel_vec(e, a, s, j, lk.iv, c);
    for (int i = 0; i < RB; i++) {
        x[i] = bcast_x(e, a, s, rows[i], lk.iv);
        for (int c = 0; c < s->v; c++)
            fma_into(e, slot[i][c], x[i], w[c]);
    }
    kp_loop_end(e, &lk);
    for (int i = 0; i < RB; i++)
        for (int c = 0; c < s->v; c++)
            acc[i][c] = LLVMBuildLoad2(e->b, e->vec, slot[i][c], "");
    store_rows(e, a, s, rows, RB, j, acc);
}

/* one row r, panel j: KU accumulators per vector along k, then added */
static void block_row(KpEmit *e, const KpKernelArgs *a, const Packed *s, LLVMValueRef r,
                      LLVMValueRef j)
{
    LLVMValueRef slot[KU][4], acc[1][4];
    for (int u = 0; u < KU; u++)
        for (int c = 0; c < s->v; c++)
            slot[u][c] = zero_slot(e);
    int64_t kmain = s->in - s->in % KU;
    KpLoop lk;
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), KU, "k");
        for (int u = 0; u < KU; u++) {
            LLVMValueRef k = add(e, lk.iv, u);
            LLVMValueRef x = bcast_x(e, a, s, r, k);
            for (int c = 0; c < s->v; c++)
                fma_into(e, slot[u][c], x, panel_vec(e, a, s, j, k, c));
        }
        kp_loop_end(e, &lk);
    }
    for (int64_t k = kmain; k < s->in; k++) {
        LLVMValueRef x = bcast_x(e, a, s, r, kp_i64(e, k));
        for (int c = 0; c < s->v; c++)
            fma_into(e, slot[0][c], x, panel_vec(e, a, s, j, kp_i64(e, k), c));
    }
    for (int c = 0; c < s->v; c++) {
        LLVMValueRef sum = LLVMBuildLoad2(e->b, e->vec, slot[0][c], "");
        for (int u = 1; u < KU; u++)
            sum = LLVMBuildFAdd(e->b, sum, LLVMBuildLoad2(e->b, e->vec, slot[u][c], ""), "");
        acc[0][c] = sum;
    }
    store_rows(e, a, s, &r, 1, j, acc);
}

static void packed_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Packed *s = user;
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef rb = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, s->np), "rb");
    LLVMValueRef j = LLVMBuildSub(e->b, li.iv, mul(e, rb, s->np), "j");
    LLVMValueRef r0 = mul(e, rb, RB);
    LLVMValueRef r1 = kp_min_i64(e, add(e, r0, RB), a->n);
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(e->ctx, fn, "rows.full");
    LLVMBasicBlockRef few = LLVMAppendBasicBlockInContext(e->ctx, fn, "rows.few");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "rows.join");
    LLVMValueRef nr = LLVMBuildSub(e->b, r1, r0, "nr");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, nr, kp_i64(e, RB), ""), full, few);
    LLVMPositionBuilderAtEnd(e->b, full);
    block_full(e, a, s, r0, j);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, few);
    KpLoop lr;
    kp_loop_begin(e, &lr, r0, r1, 1, "r");
    block_row(e, a, s, lr.iv, j);
    kp_loop_end(e, &lr);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, join);
    kp_loop_end(e, &li);
}

int emit_dense_packed(KpEmit *e, const KpNode *n, KpDiag *d)
{
    Packed s = {
        .node = n,
        .in = n->in[0]->dims[1],
        .out = n->attr.units,
        .p = n->attr.panel,
        .np = n->in[1]->dims[0],
        .has_bias = n->attr.has_bias,
    };
    if (s.p % e->vw != 0 || s.p / e->vw > 4)
        return kp_error(d, "internal error: node %d: panel width %lld is not 1 to 4 vectors of %d",
                        n->id, (long long)s.p, e->vw);
    s.v = (int)(s.p / e->vw);
    LLVMValueRef nrb = LLVMBuildSDiv(e->b, add(e, e->n, RB - 1), kp_i64(e, RB), "nrb");
    LLVMValueRef items = mul(e, nrb, s.np);
    /* below ~64k multiply-adds a thread team costs more than it saves */
    int parallel = e->g->max_batch * s.in * s.out >= 65536;
    kp_emit_parallel(e, "dense_packed", kp_i64(e, 0), items, parallel, packed_kernel, &s);
    return 0;
}
