/*
 * emit_dense.c — y[n,out] = x[n,in] · W[out,in]^T + b[out], as one GEMM
 * (gemm.h): C = y (rows: the batch), A = x read in place, B[k,j] = W[j,k],
 * which is contiguous along k, so the generator packs it into panels per
 * call (the training forward; inference reads panels packed once,
 * dense_packed in emit_prep.c).  The bias and the fused epilogues are
 * applied at the final store.
 */
#include "../ir/epilogue.h"
#include "gemm.h"

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
    };
    return kp_gemm_emit(e, &g, d);
}
