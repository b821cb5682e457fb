/*
 * jit.c — the module in-process: ORC LLJIT on a target machine configured
 * like the AOT one (so the JIT and model.so run the same machine code).
 *
 *   LLJIT ── main JITDylib ── the model module (karp_model_v1, <name>_infer, ...)
 *                          ├─ krt_parallel_for, krt_parallel_run, krt_scratch(_shared,
 *                          │  _bind): absolute symbols, this process's runtime
 *                          └─ process symbols (libm, libc) by dlsym
 *
 * The LLJIT is the model's owner: karp_close() disposes it.  Every error
 * path disposes what it still holds; LLVM errors become diagnostics.
 */
#include <stdint.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>

#include "../runtime/model.h"
#include "llvm_internal.h"

static void release_jit(void *owner)
{
    LLVMErrorRef err = LLVMOrcDisposeLLJIT(owner);
    if (err)
        LLVMConsumeError(err);   /* nothing to report to at karp_close */
}

/* The runtime functions generated code calls, by address. */
static LLVMErrorRef define_runtime_symbols(LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } runtime[] = {
        {"krt_parallel_for", (void (*)(void))krt_parallel_for},
        {"krt_parallel_run", (void (*)(void))krt_parallel_run},
        {"krt_scratch", (void (*)(void))krt_scratch},
        {"krt_scratch_shared", (void (*)(void))krt_scratch_shared},
        {"krt_scratch_stride", (void (*)(void))krt_scratch_stride},
        {"krt_scratch_bind", (void (*)(void))krt_scratch_bind},
    };
    enum { NSYM = sizeof runtime / sizeof runtime[0] };
    LLVMOrcCSymbolMapPair syms[NSYM];
    for (int i = 0; i < NSYM; i++)
        syms[i] = (LLVMOrcCSymbolMapPair){
            .Name = LLVMOrcLLJITMangleAndIntern(jit, runtime[i].name),
            .Sym = {.Address = (LLVMOrcExecutorAddress)(uintptr_t)runtime[i].fn,
                    .Flags = {.GenericFlags = LLVMJITSymbolGenericFlagsExported |
                                              LLVMJITSymbolGenericFlagsCallable,
                              .TargetFlags = 0}},
        };
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, NSYM);
    LLVMErrorRef err = LLVMOrcJITDylibDefine(jd, mu);
    if (err)
        LLVMOrcDisposeMaterializationUnit(mu);
    return err;
}

static int create_jit(KpCodegen *cg, LLVMOrcLLJITRef *out, KpDiag *d)
{
    LLVMTargetMachineRef tm = kp_llvm_target_machine(&cg->cfg, d);
    if (!tm)
        return -1;
    LLVMOrcJITTargetMachineBuilderRef jtmb =
        LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm);   /* takes tm */
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);   /* takes jtmb */
    LLVMErrorRef err = LLVMOrcCreateLLJIT(out, builder);            /* takes builder */
    if (err)
        return kp_llvm_error(d, err, "JIT: cannot create LLJIT");
    return 0;
}

/* An optimized module (the node JIT's) as IR: the JIT compiles it. */
static int add_module(KpCodegen *cg, LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd, KpDiag *d)
{
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(cg->mod, cg->tsc);
    cg->mod = NULL;                 /* now the TSM's, then the JIT's */
    LLVMErrorRef err = LLVMOrcLLJITAddLLVMIRModule(jit, jd, tsm);
    return err ? kp_llvm_error(d, err, "JIT: cannot add the module") : 0;
}

/* A model's module: optimized and compiled in partitions, in parallel
 * (partition.c), the objects linked by the JIT. */
static int add_objects(KpCodegen *cg, LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd, KpDiag *d)
{
    LLVMMemoryBufferRef objs[KP_LLVM_MAX_PARTS];
    int n = 0;
    if (kp_llvm_objects(cg, cg->jobs, objs, &n, d) < 0)
        return -1;
    LLVMErrorRef err = NULL;
    for (int i = 0; i < n; i++) {
        if (!err)
            err = LLVMOrcLLJITAddObjectFile(jit, jd, objs[i]);   /* takes the buffer */
        else
            LLVMDisposeMemoryBuffer(objs[i]);
    }
    return err ? kp_llvm_error(d, err, "JIT: cannot add the model's objects") : 0;
}

int kp_llvm_jit_new(KpCodegen *cg, LLVMOrcLLJITRef *out, KpDiag *d)
{
    if (!cg || !cg->mod)
        return kp_error(d, "internal error: no module to JIT-compile");
    LLVMOrcLLJITRef jit;
    if (create_jit(cg, &jit, d) < 0)
        return -1;
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit);
    LLVMErrorRef err = define_runtime_symbols(jit, jd);
    if (err) {
        kp_llvm_error(d, err, "JIT: cannot define the runtime's symbols");
        release_jit(jit);
        return -1;
    }
    LLVMOrcDefinitionGeneratorRef gen;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL);
    if (err) {
        kp_llvm_error(d, err, "JIT: cannot search the process's symbols");
        release_jit(jit);
        return -1;
    }
    LLVMOrcJITDylibAddGenerator(jd, gen);

    if (cg->optimized ? add_module(cg, jit, jd, d) : add_objects(cg, jit, jd, d)) {
        release_jit(jit);
        return -1;
    }
    *out = jit;
    return 0;
}

/* The side job of the compile: the model's slabs, allocated and zeroed
 * (on this VM the kernel's huge-page faults and compaction took 7-90 ms
 * of resnet_cifar's compile when they ran after it). */
static void make_slabs(void *arg)
{
    (void)kp_rt_slabs_alloc(arg);   /* on failure the model allocates, and reports */
}

int kp_llvm_jit(KpCodegen *cg, karp_model **out, KpDiag *d)
{
    *out = NULL;
    LLVMOrcLLJITRef jit;
    cg->side_job = make_slabs;
    cg->side_arg = &cg->slabs;
    int rc = kp_llvm_jit_new(cg, &jit, d);
    cg->side_job = NULL;
    if (rc < 0)
        return -1;
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup(jit, &addr, KARP_DESCRIPTOR_SYMBOL);
    if (err) {
        kp_llvm_error(d, err, "JIT: cannot compile the model");
        release_jit(jit);
        return -1;
    }
    karp_error kerr = {0};
    karp_model *m = kp_rt_model_new_slabs((const KarpModelDesc *)(uintptr_t)addr, &cg->slabs, jit,
                                          release_jit, &kerr);
    if (!m) { /* kp_rt_model_new_slabs released the JIT */
        kp_error(d, "%s", kerr.message);
        return kerr.code == KARP_ENOMEM ? -2 : -1; /* karp_compile keeps KARP_ENOMEM */
    }
    *out = m;
    return 0;
}
