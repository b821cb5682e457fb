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
    LossRows lr = {.n = n};
    if (e->with_loss) {
        int64_t rows = e->g->max_batch > 0 ? e->g->max_batch : 1;
        lr.terms_at = e->scratch_shared_bytes;
        e->scratch_shared_bytes += kp_round_up(rows * 4, 64);
        g.rows = loss_rows;
        g.rows_user = &lr;
    }
    if (kp_gemm_emit(e, &g, d) < 0)
        return -1;
    if (e->with_loss)
        kp_emit_xent_mean(e, kp_scratch_shared_at(e, lr.terms_at), e->n, e->ptr_arg[n->nin + 1]);
    return 0;
}
