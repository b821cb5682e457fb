/*
 * emit_dense.c — y[n,out] = x[n,in] · W[out,in]^T + b[out], as one GEMM
 * (gemm.h): C = y (rows: the batch), A = x read in place, B[k,j] = W[j,k],
 * which is contiguous along k, so the generator packs it into panels per
 * call (the training forward; inference reads panels packed once,
 * dense_packed in emit_prep.c).  The bias and the fused epilogues are
 * applied at the final store.
 *
 * A fused loss (KpNode.loss, passes/fusion.c: the cross_entropy of a
 * head's logits), emitted when e->with_loss:
 *
 *   work item (rows i0 .. i0+mi, every column: the GEMM's full_rows)
 *       GEMM tile -> y rows                          as without the loss
 *       per row r: max, sum e^(y - max)  -> d_output row, terms[r]
 *   after the parallel region, on the calling thread:
 *       loss = (sum in double of terms[0..n), in order) / n
 *
 * terms is the node's range of the call's shared scratch.  Every row
 * gets the float operations cross_entropy and cross_entropy_grad apply
 * to it (kp_emit_xent_rows), and the mean adds the terms in the same
 * order, so the loss and d_output are those of the unfused nodes bit for
 * bit.  Both functions of the node (with and without the loss) cut their
 * work items the same way, so y is the same bits in either.
 */
#include "../ir/epilogue.h"
#include "gemm.h"

typedef struct LossRows {
    const KpNode *n;
    int64_t terms_at;           /* bytes into the shared scratch */
} LossRows;

static void loss_rows(KpEmit *e, const KpKernelArgs *a, LLVMValueRef i0, LLVMValueRef mi,
                      void *user)
{
    const LossRows *lr = user;
    const KpNode *n = lr->n;
    LLVMValueRef terms = kp_scratch_shared_at(e, lr->terms_at);
    kp_emit_xent_rows(e, a->p[n->nin], a->p[n->loss.target], a->p[n->nin + 2], terms, i0,
                      LLVMBuildNSWAdd(e->b, i0, mi, ""), n->out->dims[1], a->n);
}

/* --- one row: dot products along k, W read in place ----------------------
 *
 * Compiled for a largest batch of 1, C is one row and the GEMM would pack
 * all of W into panels on every call to use each float once (the
 * training forward at batch 1: 4.7 MB for fashion_cnn's dense4, three
 * passes over it).  Instead, a work item is vw columns j0.., taken as
 * two halves of rows = vw/2 rows of W each: 2 x rows vector accumulators,
 * acc[r][u] += x[k..k+vw) * W[j0 + r, k..k+vw) for the u-th of each two
 * vectors of k, one fma chain per lane in k order (the vectors left over,
 * then the masked k tail, go to the first chains); then acc[r][0] +
 * acc[r][1], and the vw rows are summed across their lanes by a fixed
 * tree into one vector (lane c: column j0 + c), which gets the bias and
 * the epilogues like a GEMM tile.  Half the rows at a time, not all vw:
 * rows 4 KiB-multiples apart (fashion_cnn's dense4, 9216 inputs) fall
 * into one L1 set, and vw of them outnumber its ways; 8 rows ran 1.3-1.4x
 * faster there and 1.1x on rows apart (docs/kernels-gemm.md).  Each column
 * is summed by one thread in one order: no result depends on the thread
 * count. */
typedef struct DenseDot {
    int64_t in, out;
    KpGemmOut o;
} DenseDot;

static void dense_dot_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const DenseDot *s = user;
    int64_t vw = e->vw, kw = s->in / vw, krem = s->in % vw;
    int R = vw > 2 ? (int)vw / 2 : (int)vw, U = (int)vw / R;     /* rows at a time, chains a row */
    int64_t kmain = kw / U * U;         /* vectors of k in whole steps of U */
    LLVMValueRef X = a->p[0], W = a->p[1];
    KpLoop li, lk;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "cols");
    LLVMValueRef j0 = LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, vw), "j0");
    LLVMValueRef v[64];
    for (int g = 0; g < vw / R; g++) {
        LLVMValueRef wrow[64], acc[64][16];
        for (int r = 0; r < R; r++) {
            /* columns past the end read the last row; their lanes are not stored */
            LLVMValueRef j = kp_min_i64(e, LLVMBuildNSWAdd(e->b, j0, kp_i64(e, g * R + r), ""),
                                        kp_i64(e, s->out - 1));
            wrow[r] = LLVMBuildNSWMul(e->b, j, kp_i64(e, s->in), "");
            for (int u = 0; u < U; u++) {
                acc[r][u] = kp_alloca(e, e->vec, "acc");
                LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[r][u]);
            }
        }
        /* step 0: the whole steps of U vectors; 1: the vectors left; 2: the masked tail */
        for (int step = 0; step < 3; step++) {
            int64_t nvec = step == 0 ? U : step == 1 ? kw - kmain : 1;
            if ((step == 0 && kmain == 0) || (step == 1 && nvec == 0) || (step == 2 && !krem))
                continue;
            LLVMValueRef k;
            if (step == 0) {
                kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain * vw), U * vw, "k");
                k = lk.iv;
            } else {
                k = kp_i64(e, (step == 1 ? kmain : kw) * vw);
            }
            for (int u = 0; u < nvec; u++) {
                LLVMValueRef ku = LLVMBuildNSWAdd(e->b, k, kp_i64(e, u * vw), "");
                LLVMValueRef xv = step == 2 ? kp_load_vec_masked(e, X, ku, (int)krem, 0.0)
                                            : kp_load_vec(e, X, ku);
                for (int r = 0; r < R; r++) {
                    LLVMValueRef at = LLVMBuildNSWAdd(e->b, wrow[r], ku, "");
                    LLVMValueRef wv = step == 2 ? kp_load_vec_masked(e, W, at, (int)krem, 0.0)
                                                : kp_load_vec(e, W, at);
                    LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[r][u], "");
                    LLVMBuildStore(e->b, kp_fma(e, xv, wv, old), acc[r][u]);
                }
            }
            if (step == 0)
                kp_loop_end(e, &lk);
        }
        for (int r = 0; r < R; r++) {
            LLVMValueRef part[16];
            for (int u = 0; u < U; u++)
                part[u] = LLVMBuildLoad2(e->b, e->vec, acc[r][u], "");
            for (int w = U; w > 1; w /= 2)      /* a fixed tree: adjacent pairs */
                for (int p = 0; p < w / 2; p++)
                    part[p] = LLVMBuildFAdd(e->b, part[2 * p], part[2 * p + 1], "");
            v[g * R + r] = part[0];
        }
    }
    KpGemmTile t = {.ka = a, .g = kp_i64(e, 0), .i0 = kp_i64(e, 0), .j0 = j0, .mr = 1, .nv = 1,
                    .lanes = (int)vw};
    t.acc[0][0] = kp_sum_lanes(e, v);
    int64_t last = s->out % vw;
    if (last) {
        /* the last item's columns are fewer: its own masked store */
        LLVMValueRef is_last = LLVMBuildICmp(e->b, LLVMIntEQ, li.iv, kp_i64(e, s->out / vw), "");
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bl = LLVMAppendBasicBlockInContext(e->ctx, fn, "cols.last");
        LLVMBasicBlockRef bw = LLVMAppendBasicBlockInContext(e->ctx, fn, "cols.whole");
        LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "cols.done");
        LLVMBuildCondBr(e->b, is_last, bl, bw);
        LLVMPositionBuilderAtEnd(e->b, bl);
        KpGemmTile tl = t;
        tl.lanes = (int)last;
        kp_gemm_store_out(e, &tl, (void *)&s->o);
        LLVMBuildBr(e->b, done);
        LLVMPositionBuilderAtEnd(e->b, bw);
        kp_gemm_store_out(e, &t, (void *)&s->o);
        LLVMBuildBr(e->b, done);
        LLVMPositionBuilderAtEnd(e->b, done);
    } else {
        kp_gemm_store_out(e, &t, (void *)&s->o);
    }
    kp_loop_end(e, &li);
}

static void dense_dot(KpEmit *e, int64_t in, int64_t out, const KpGemmOut *o)
{
    DenseDot s = {.in = in, .out = out, .o = *o};
    int64_t items = (out + e->vw - 1) / e->vw;
    bool parallel = items > 1 && kp_gemm_worth_threads(in * out, 4 * in * out);
    kp_emit_parallel(e, "dense_dot", kp_i64(e, 0), kp_i64(e, items), parallel, dense_dot_kernel, &s);
}

int emit_dense(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t in = n->in[1]->dims[1], out = n->in[1]->dims[0];
    int has_bias = kp_node_op_nin(n) >= 3 && n->in[2] != NULL;
    KpGemmOut o = {
        .node = n,
        .c = {.arg = n->nin, .rs = out, .cs = 1},
        .bias_arg = has_bias ? 2 : -1,
    };
    KpGemm g = {
        .name = "dense",
        .m = {1, true}, .n = {out, false}, .k = {in, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = in, .cs = 1}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = 1, .cs = in}},
        .c = o.c,
        .accumulate = e->accumulate,
        .store = kp_gemm_store_out,
        .store_user = &o,
        .full_rows = n->loss.on,
    };
    if (!e->with_loss && !e->accumulate && e->g->max_batch == 1) {
        dense_dot(e, in, out, &o);
        return 0;
    }
    LossRows lr = {.n = n};
    if (e->with_loss) {
        int64_t rows = e->g->max_batch > 0 ? e->g->max_batch : 1;
        lr.terms_at = kp_scratch_shared_take(e, "loss_terms", rows * 4, 0);
        g.rows = loss_rows;
        g.rows_user = &lr;
    }
    if (kp_gemm_emit(e, &g, d) < 0)
        return -1;
    if (e->with_loss)
        kp_emit_xent_mean(e, kp_scratch_shared_at(e, lr.terms_at), e->n, e->ptr_arg[n->nin + 1]);
    return 0;
}
