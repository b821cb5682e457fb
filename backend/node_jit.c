/*
 * node_jit.c — one node's kernel JIT-compiled alone, exactly as a model
 * compiles it (its emitter, the target's function attributes, the same
 * optimization pipeline), for the kernel tests and bench/gemm_bench; and
 * the nodes of the dense family to compile that way.
 */
#include <stdint.h>

#include <llvm-c/LLJIT.h>

#include "codegen.h"
#include "llvm_internal.h"

int kp_llvm_node_jit(const KpGraph *g, const KpNode *n, const KpTargetOpts *t, KpNodeJit *out,
                     KpDiag *d)
{
    *out = (KpNodeJit){0};
    KpCodegen *cg;
    if (kp_llvm_module_new(t, "node", &cg, d) < 0)
        return -1;
    KpEmit e;
    kp_emit_init(&e, cg->ctx, cg->mod, g, cg->cfg.vector_width);
    LLVMValueRef fn = kp_cg_emit_node(&e, "node", n, true, NULL, d);
    LLVMDisposeBuilder(e.b);
    if (fn) {
        LLVMSetLinkage(fn, LLVMExternalLinkage);
        LLVMSetValueName2(fn, "kernel", 6);
    }
    out->scratch_bytes = e.scratch_bytes + e.scratch_tail_bytes;
    out->scratch_shared_bytes = e.scratch_shared_bytes;
    LLVMOrcLLJITRef jit = NULL;
    int rc = !fn || kp_llvm_module_finish(cg, &e, d) < 0 || kp_llvm_jit_new(cg, &jit, d) < 0 ? -1 : 0;
    kp_llvm_free(cg);
    if (rc < 0)
        return -1;
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit, &addr, "kernel");
    if (err) {
        kp_llvm_error(d, err, "JIT: cannot compile the node");
        LLVMConsumeError(LLVMOrcDisposeLLJIT(jit));
        return -1;
    }
    out->jit = jit;
    out->fn = (void *)(uintptr_t)addr;
    return 0;
}

void kp_llvm_node_jit_free(KpNodeJit *j)
{
    if (j->jit)
        LLVMConsumeError(LLVMOrcDisposeLLJIT((LLVMOrcLLJITRef)j->jit));
    *j = (KpNodeJit){0};
}

static KpValue *value(KpGraph *g, int rank, const int64_t *dims, KpStorage st, int64_t offset)
{
    KpValue *v = kp_value_new(g, KP_ROLE_ACT, KP_F32, rank, dims);
    if (v) {
        v->storage = st;
        v->offset = offset;
    }
    return v;
}

KpNode *kp_dense_node(KpGraph *g, KpOp op, int64_t in, int64_t out, KpDiag *d)
{
    int64_t x[2] = {KP_DIM_N, in}, dy[2] = {KP_DIM_N, out}, w[2] = {out, in};
    int64_t panels[3] = {(out + 15) / 16, in, 16}, bias[1] = {out};
    KpValue *v[3];
    int nin = 2;
    switch (op) {
    case KP_OP_dense:
    case KP_OP_dense_packed:
        v[0] = value(g, 2, x, KP_STORE_INPUT, 0);
        v[1] = op == KP_OP_dense ? value(g, 2, w, KP_STORE_PARAM, 0) : value(g, 3, panels, KP_STORE_PREP, 0);
        v[2] = value(g, 1, bias, KP_STORE_PARAM, out * in + 64);
        nin = 3;
        break;
    case KP_OP_dense_grad_x:
        v[0] = value(g, 2, dy, KP_STORE_WORKSPACE, 0);
        v[1] = value(g, 2, w, KP_STORE_PARAM, 0);
        break;
    case KP_OP_dense_grad_w:
        v[0] = value(g, 2, dy, KP_STORE_WORKSPACE, 0);
        v[1] = value(g, 2, x, KP_STORE_INPUT, 0);
        break;
    default:
        kp_error(d, "internal error: %s is not of the dense family", kp_op_name(op));
        return NULL;
    }
    for (int i = 0; i < nin; i++)
        if (!v[i]) {
            kp_error(d, "out of memory");
            return NULL;
        }
    KpNode *n = kp_node_new(g, op, "node", "", nin, v);
    if (!n) {
        kp_error(d, "out of memory");
        return NULL;
    }
    n->attr.units = out;
    if (op == KP_OP_dense_packed) {
        n->attr.panel = 16;
        n->attr.has_bias = true;
    }
    if (kp_node_infer_shape(g, n, d) < 0)
        return NULL;
    n->out->storage = op == KP_OP_dense_grad_w ? KP_STORE_GRAD : KP_STORE_OUTPUT;
    n->out->offset = op == KP_OP_dense_grad_w ? out * in + 64 : 0;
    return n;
}
