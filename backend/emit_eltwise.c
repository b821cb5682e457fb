/*
 * emit_eltwise.c — relu, leaky_relu, sigmoid, tanh: y[i] = f(x[i]); and
 * add: y[i] = x0[i] + x1[i] + ... (left to right), over the flat n*size
 * elements, through kp_emit_map.
 */
#include "emit.h"

static LLVMValueRef f_relu(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x[0], kp_fconst(ty, 0.0), "");
    return LLVMBuildSelect(e->b, pos, x[0], kp_fconst(ty, 0.0), "");
}

static LLVMValueRef f_leaky_relu(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x[0], kp_fconst(ty, 0.0), "");
    LLVMValueRef neg = LLVMBuildFMul(e->b, x[0], kp_fconst(ty, n->attr.alpha), "");
    return LLVMBuildSelect(e->b, pos, x[0], neg, "");
}

static LLVMValueRef f_sigmoid(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    return kp_emit_sigmoid(e, x[0]);
}

static LLVMValueRef f_tanh(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    return kp_emit_tanh(e, x[0]);
}

static LLVMValueRef f_add(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMValueRef s = x[0];
    for (int k = 1; k < n->nin; k++)
        s = LLVMBuildFAdd(e->b, s, x[k], "");
    return s;
}

int emit_relu(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_relu);
}

int emit_leaky_relu(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_leaky_relu);
}

int emit_sigmoid(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_sigmoid);
}

int emit_tanh(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_tanh);
}

int emit_add(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_add);
}

KpMapFn kp_map_eltwise(KpOp op)
{
    switch (op) {
    case KP_OP_relu: return f_relu;
    case KP_OP_leaky_relu: return f_leaky_relu;
    case KP_OP_sigmoid: return f_sigmoid;
    case KP_OP_tanh: return f_tanh;
    case KP_OP_add: return f_add;
    default: return NULL;
    }
}
