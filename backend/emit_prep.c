/*
 * emit_prep.c — the inference preparation ops (ops.def): the batchnorm
 * folds and the panel packing run in the prepare entry, once per change of
 * the parameters, as plain loops; dense_packed is the forward kernel that
 * reads the packed panels.
 *
 * dense_packed: y = x · W^T + b with W in panels of 16 output columns,
 * panels [ceil(out/16)][in][16], panel[j][k][l] = W[16 j + l][k] (zero
 * past out): the B operand the GEMM's micro-tiles read in place
 * (gemm.h), so inference never packs a weight per call.
 */
#include "gemm.h"

static LLVMValueRef ld(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildLoad2(e->b, e->f32, kp_gep(e, p, i), "");
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

/* y [F,ld]: row r is w's row r, then zeros */
int emit_pad_rows(KpEmit *e, const KpNode *n, KpDiag *d)
{
    (void)d;
    int64_t f = n->in[0]->dims[0], per = kp_value_numel(n->in[0], 1) / f, ldy = n->attr.wstride;
    LLVMValueRef *p = e->ptr_arg;
    LLVMBuildMemSet(e->b, p[1], LLVMConstInt(LLVMInt8TypeInContext(e->ctx), 0, 0),
                    kp_i64(e, f * ldy * (int64_t)sizeof(float)), 4);
    KpLoop lr, li;
    kp_loop_begin(e, &lr, kp_i64(e, 0), kp_i64(e, f), 1, "r");
    LLVMValueRef src = mul(e, lr.iv, per), dst = mul(e, lr.iv, ldy);
    kp_loop_begin(e, &li, kp_i64(e, 0), kp_i64(e, per), 1, "i");
    LLVMValueRef v = ld(e, p[0], LLVMBuildNSWAdd(e->b, src, li.iv, ""));
    LLVMBuildStore(e->b, v, kp_gep(e, p[1], LLVMBuildNSWAdd(e->b, dst, li.iv, "")));
    kp_loop_end(e, &li);
    kp_loop_end(e, &lr);
    return 0;
}

/* --- dense_packed -------------------------------------------------------- */

/* x [N,in], panels [ceil(out/16)][in][16], bias [out] -> y [N,out]: the
 * GEMM of emit_dense.c with B read from the panels in place. */
int emit_dense_packed(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t in = n->in[0]->dims[1], out = n->attr.units;
    if (n->attr.panel != KP_GEMM_PANEL)
        return kp_error(d, "internal error: node %d: panels of %lld floats, the GEMM reads %d",
                        n->id, (long long)n->attr.panel, KP_GEMM_PANEL);
    KpGemmOut o = {
        .node = n,
        .c = {.arg = n->nin, .rs = out, .cs = 1},
        .bias_arg = n->attr.has_bias ? 2 : -1,
    };
    KpGemm g = {
        .name = "dense_packed",
        .m = {1, true}, .n = {out, false}, .k = {in, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = in, .cs = 1}},
        .b = {.source = KP_GEMM_PANELS, .view = {.arg = 1}},
        .c = o.c,
        .store = kp_gemm_store_out,
        .store_user = &o,
    };
    return kp_gemm_emit(e, &g, d);
}
