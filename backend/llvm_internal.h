/*
 * llvm_internal.h — what the backend's files share: the codegen state
 * (KpCodegen) and the target machine.  Not installed, not for other folders.
 *
 * Ownership: a KpCodegen owns its ThreadSafeContext (which owns the LLVM
 * context), the module built in it (until the JIT takes it) and one target
 * machine.  The target settings are kept as strings so that the JIT can
 * build a second, identical target machine: LLVM's ORC consumes the one it
 * is given.
 */
#ifndef KP_LLVM_INTERNAL_H
#define KP_LLVM_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

#include "../runtime/model.h"
#include "backend.h"

typedef struct KpTargetConfig {
    char *triple;               /* LLVMGetDefaultTargetTriple, normalized */
    char *cpu;                  /* host CPU name or opts->cpu */
    char *features;             /* "+avx2,+fma,..." */
    LLVMCodeGenOptLevel opt;
    int opt_level;              /* 0..3, for the pass pipeline */
    int vector_width;           /* floats per explicit vector: 16, 8 or 4 */
    char *cpu_features;         /* the descriptor's list ("avx,avx2,fma") */
} KpTargetConfig;

struct KpCodegen {
    KpTargetConfig cfg;
    LLVMOrcThreadSafeContextRef tsc;
    LLVMContextRef ctx;         /* owned by tsc */
    LLVMModuleRef mod;          /* NULL once the JIT took it */
    LLVMTargetMachineRef tm;
    struct KpKernelList *kernels;   /* with keep_kernels: every call of every entry */
    int jobs;                   /* KpTargetOpts.jobs */
    int optimized;              /* the whole module went through the pipeline; 0: only
                                   verified and mergefunc'ed (kp_llvm_objects does the rest) */
    KpPartTimes parts;          /* kp_llvm_objects' partitions, timed */
    /* Work with no part in the code that kp_llvm_objects runs on the first
     * thread done with its partition, while the others still compile (the
     * JIT's model slabs); NULL: none.  It runs exactly once. */
    void (*side_job)(void *arg);
    void *side_arg;
    KpSlabs slabs;              /* the model's slab sizes (kp_llvm_codegen), and the
                                   slabs the JIT has made for it until the model takes them */
};

/* A codegen with an empty module named name for the target t (NULL:
 * host, O3); free with kp_llvm_free. */
int kp_llvm_module_new(const KpTargetOpts *t, const char *name, KpCodegen **out, KpDiag *d);
/* The module e emitted into, finished as every model's is: function
 * attributes for the vector width, verified, optimized. */
struct KpEmit;
int kp_llvm_module_finish(KpCodegen *cg, struct KpEmit *e, KpDiag *d);
/* An LLJIT on cg's target with the runtime's symbols (krt_parallel_for,
 * krt_scratch, krt_scratch_shared, krt_scratch_bind) and the process's, holding cg's module
 * (which it takes).  Dispose with LLVMOrcDisposeLLJIT. */
int kp_llvm_jit_new(KpCodegen *cg, LLVMOrcLLJITRef *out, KpDiag *d);

/* cg's module (verified, mergefunc'ed, not optimized) optimized and
 * compiled to relocatable objects in up to `jobs` partitions, each in a
 * thread of its own (partition.c; jobs 0: kp_llvm_default_jobs).  The
 * module is consumed.  objs must hold KP_LLVM_MAX_PARTS buffers; the
 * caller owns them. */
int kp_llvm_objects(KpCodegen *cg, int jobs, LLVMMemoryBufferRef *objs, int *nobjs, KpDiag *d);
/* ... and cg->side_job, if set, run once on the first thread done. */
/* The CPUs this process may run on, 1..KP_LLVM_MAX_PARTS. */
int kp_llvm_default_jobs(void);
/* default<O{opt_level}> on mod for tm, with the vectorizers and the
 * unroller as karpc sets them; -1 with the message in msg. */
int kp_llvm_run_pipeline(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level,
                         char *msg, size_t cap);
/* The whole module optimized in place (for --emit and the node JIT), if
 * it is not yet. */
int kp_llvm_optimize(KpCodegen *cg, KpDiag *d);

/* Fill cfg from t (NULL: host, O3): CPU, features, vector width and the
 * descriptor's feature list.  Free with kp_llvm_target_config_free. */
int kp_llvm_target_config(const KpTargetOpts *t, KpTargetConfig *cfg, KpDiag *d);
void kp_llvm_target_config_free(KpTargetConfig *cfg);
/* A new target machine for cfg (PIC, default code model); NULL with a
 * diagnostic on failure.  The caller disposes it. */
LLVMTargetMachineRef kp_llvm_target_machine(const KpTargetConfig *cfg, KpDiag *d);
/* Turn an LLVMErrorRef into a diagnostic "<what>: <message>" (consumes it). */
int kp_llvm_error(KpDiag *d, LLVMErrorRef err, const char *what);

/* The entry points a descriptor points at (NULL: absent), and the
 * scratch their kernels take per thread (krt_scratch) and per call
 * (krt_scratch_shared); 0: none. */
typedef struct KpDescEntries {
    LLVMValueRef infer, forward, backward, apply, train_step, prepare;
    int64_t scratch_bytes, scratch_shared_bytes;
} KpDescEntries;
/* The descriptor KARP_DESCRIPTOR_SYMBOL for the inference graph g and the
 * train graph tg (NULL: no training fields, no training entries). */
int kp_llvm_emit_descriptor(LLVMModuleRef mod, const KpGraph *g, const KpGraph *tg,
                            const char *no_train_reason, const char *cpu_features,
                            const KpDescEntries *entries, KpDiag *d);
/* KARP_TARGET_* for a train graph (NONE for NULL). */
int kp_llvm_target_kind(const KpGraph *tg);
/* The named struct types mirroring KarpModelDesc / KarpParamDesc. */
LLVMTypeRef kp_llvm_model_desc_type(LLVMContextRef ctx);
LLVMTypeRef kp_llvm_param_desc_type(LLVMContextRef ctx);

#endif
