/*
 * node_jit.c — one node's kernel JIT-compiled alone, exactly as a model
 * compiles it (its emitter, the target's function attributes, the same
 * optimization pipeline), for the kernel tests and bench/gemm_bench.
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
    LLVMValueRef fn = kp_cg_emit_node(&e, "node", n, d);
    LLVMDisposeBuilder(e.b);
    if (fn) {
        LLVMSetLinkage(fn, LLVMExternalLinkage);
        LLVMSetValueName2(fn, "kernel", 6);
    }
    out->scratch_bytes = e.scratch_bytes;
    out->scratch_shared_bytes = e.scratch_shared_bytes;
    out->vector_width = cg->cfg.vector_width;
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
