/*
 * emit_identity.c — flatten, reshape, dropout (inference): the data is
 * unchanged.  When the memory plan put the output on the input's storage
 * there is no code; otherwise (the output is the caller's y, say) one
 * memcpy of n*size floats, or memmove if the two may overlap.
 */
#include "emit.h"

int emit_identity(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *in = n->in[0], *out = n->out;
    if (in->storage == out->storage && in->offset == out->offset)
        return 0;
    LLVMValueRef bytes = LLVMBuildNSWMul(e->b, kp_numel(e, out), kp_i64(e, 4), "bytes");
    LLVMValueRef dst = e->ptr_arg[1], src = e->ptr_arg[0];
    if (e->noalias[0])
        LLVMBuildMemCpy(e->b, dst, 4, src, 4, bytes);
    else
        LLVMBuildMemMove(e->b, dst, 4, src, 4, bytes);
    return 0;
}
