/*
 * emit_epilogue.c — fused elementwise epilogues (ir.h's KpEpilogue) at a
 * kernel's store: the result of the producing op runs through each
 * epilogue op in turn, the other operands loaded at the same flat index,
 * before it is written (or added into a gradient slot).  The op code is
 * the same map function the unfused node would have used, so a fused and
 * an unfused build compute the same operations in the same order.
 */
#include "emit.h"

KpMapFn kp_epilogue_fn(KpOp op)
{
    if (op == KP_OP_mul)
        return kp_map_mul();
    KpMapFn f = kp_map_eltwise(op);
    return f ? f : kp_map_eltwise_grad(op);
}

static LLVMValueRef load_at(KpEmit *e, LLVMValueRef p, LLVMValueRef idx, int vec, int lanes)
{
    if (!vec)
        return LLVMBuildLoad2(e->b, e->f32, kp_gep(e, p, idx), "");
    if (lanes > 0 && lanes < e->vw)
        return kp_load_vec_masked(e, p, idx, lanes, 0.0);
    return kp_load_vec(e, p, idx);
}

LLVMValueRef kp_emit_epilogue(KpEmit *e, const KpNode *n, const LLVMValueRef *p, LLVMValueRef v,
                              LLVMValueRef idx, int lanes)
{
    int vec = LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMVectorTypeKind;
    for (int k = 0; k < n->nepi; k++) {
        const KpEpilogue *ep = &n->epi[k];
        LLVMValueRef x[KP_MAX_IN];
        x[0] = v;
        for (int a = 0; a < ep->nargs; a++)
            x[a + 1] = load_at(e, p[ep->arg[a]], idx, vec, lanes);
        /* the map functions read the op's slope and input count from a node */
        KpNode as = {.op = ep->op, .nin = ep->nargs + 1};
        as.attr.alpha = ep->alpha;
        v = kp_epilogue_fn(ep->op)(e, x, &as);
    }
    return v;
}

void kp_prefetch_epilogue(KpEmit *e, const KpNode *n, const LLVMValueRef *p, LLVMValueRef idx,
                          int64_t floats)
{
    for (int k = 0; k < n->nepi; k++)
        for (int a = 0; a < n->epi[k].nargs; a++)
            kp_prefetch_span(e, p[n->epi[k].arg[a]], idx, floats);
}
