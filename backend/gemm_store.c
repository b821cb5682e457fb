/*
 * gemm_store.c — the usual final store of a GEMM that computes a node's
 * output (gemm.h, KpGemmOut): bias, the node's fused epilogues at the
 * output's flat index, the last vector masked to the columns of C.
 */
#include "gemm_internal.h"

void kp_gemm_store_out(KpEmit *e, const KpGemmTile *t, void *user)
{
    const KpGemmOut *o = user;
    const KpGemmView *c = &o->c;
    LLVMValueRef base = c->gs ? LLVMBuildNSWMul(e->b, t->g, kp_i64(e, c->gs), "") : kp_i64(e, 0);
    for (int r = 0; r < t->mr; r++) {
        LLVMValueRef row = LLVMBuildNSWAdd(e->b, t->i0, kp_i64(e, r), "");
        LLVMValueRef at_row = LLVMBuildNSWAdd(e->b, base, LLVMBuildNSWMul(e->b, row, kp_i64(e, c->rs), ""), "");
        LLVMValueRef row_bias = NULL;
        if (o->bias_arg >= 0 && o->bias_per_row)
            row_bias = kp_splat(e, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, t->ka->p[o->bias_arg], row), ""));
        for (int v = 0; v < t->nv; v++) {
            int lanes = v == t->nv - 1 ? t->lanes : e->vw;
            int part = lanes < e->vw ? lanes : 0;
            LLVMValueRef col = LLVMBuildNSWAdd(e->b, t->j0, kp_i64(e, (int64_t)v * e->vw), "");
            LLVMValueRef x = t->acc[r][v];
            if (row_bias)
                x = LLVMBuildFAdd(e->b, x, row_bias, "");
            else if (o->bias_arg >= 0)
                x = LLVMBuildFAdd(e->b, x, kp_gemm_load(e, kp_gep(e, t->ka->p[o->bias_arg], col), lanes), "");
            LLVMValueRef idx = LLVMBuildNSWAdd(e->b, at_row, col, "idx");
            if (o->node)
                x = kp_emit_epilogue(e, o->node, t->ka->p, x, idx, part);
            kp_gemm_store(e, x, kp_gep(e, t->ka->p[c->arg], idx), lanes);
        }
    }
}
