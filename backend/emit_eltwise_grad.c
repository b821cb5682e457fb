/*
 * emit_eltwise_grad.c — the activations' gradients, elementwise, as
 * runtime/ref/activation.c writes them (same operations, same order):
 *   relu_grad(dy, x)        dx = x > 0 ? dy : 0
 *   leaky_relu_grad(dy, x)  dx = x > 0 ? dy : alpha dy
 *   sigmoid_grad(dy, y)     dx = dy y (1 - y)
 *   tanh_grad(dy, y)        dx = dy (1 - y y)
 */
#include "emit.h"

static LLVMValueRef f_relu_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x[1], kp_fconst(ty, 0.0), "");
    return LLVMBuildSelect(e->b, pos, x[0], kp_fconst(ty, 0.0), "");
}

static LLVMValueRef f_leaky_relu_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x[1], kp_fconst(ty, 0.0), "");
    LLVMValueRef neg = LLVMBuildFMul(e->b, kp_fconst(ty, n->attr.alpha), x[0], "");
    return LLVMBuildSelect(e->b, pos, x[0], neg, "");
}

static LLVMValueRef f_sigmoid_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef one_minus = LLVMBuildFSub(e->b, kp_fconst(ty, 1.0), x[1], "");
    return LLVMBuildFMul(e->b, LLVMBuildFMul(e->b, x[0], x[1], ""), one_minus, "");
}

static LLVMValueRef f_tanh_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef yy = LLVMBuildFMul(e->b, x[1], x[1], "");
    return LLVMBuildFMul(e->b, x[0], LLVMBuildFSub(e->b, kp_fconst(ty, 1.0), yy, ""), "");
}

int emit_relu_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_relu_grad);
}

int emit_leaky_relu_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_leaky_relu_grad);
}

int emit_sigmoid_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_sigmoid_grad);
}

int emit_tanh_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_tanh_grad);
}

KpMapFn kp_map_eltwise_grad(KpOp op)
{
    switch (op) {
    case KP_OP_relu_grad: return f_relu_grad;
    case KP_OP_leaky_relu_grad: return f_leaky_relu_grad;
    case KP_OP_sigmoid_grad: return f_sigmoid_grad;
    case KP_OP_tanh_grad: return f_tanh_grad;
    default: return NULL;
    }
}
