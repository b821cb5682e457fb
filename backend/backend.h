/*
 * backend.h — LLVM code generation (through the LLVM C API).
 *
 * kp_llvm_codegen() turns a planned graph (after kp_pipeline_infer) into
 * one LLVM module: one function per node with noalias pointers and the
 * model's constant trip counts, parallel loops through krt_parallel_for(),
 * the entry <name>_infer, and the descriptor KARP_DESCRIPTOR_SYMBOL
 * (karp_abi.h).  From there it is optimized for the target and printed
 * (--emit=llvm|asm), or optimized and compiled in parallel partitions
 * into objects that are linked into a shared library or by the JIT.  Both ways use the same target
 * machine settings, so they give bit-identical results.
 */
#ifndef KP_BACKEND_H
#define KP_BACKEND_H

#include "../include/karp.h"
#include "../ir/ir.h"
#include "../passes/passes.h"

typedef enum KpFoldUpdates {
    KP_FOLD_AUTO,       /* where the layer's slabs do not fit in the cores' L2 */
    KP_FOLD_NEVER,
    KP_FOLD_ALWAYS      /* wherever it is correct */
} KpFoldUpdates;

typedef struct KpTargetOpts {
    int opt_level;              /* 0..3 */
    const char *cpu;            /* NULL: host */
    const char *features;       /* NULL: host features */
    bool keep_kernels;          /* kernels exported and their calls listed (kernels.h):
                                   karpc bench */
    int jobs;                   /* threads optimizing and compiling partitions of the
                                   module; 0: one per CPU, at most KP_LLVM_MAX_JOBS */
    int vector_width;           /* floats per explicit vector; 0: the target's (16 with
                                   AVX-512, 8 with AVX, else 4).  Tests set 16 or 4 to run
                                   the other widths' kernels on this CPU (LLVM splits or
                                   widens the vectors): same results, other speed */
    KpFoldUpdates fold_updates; /* train_step's optimizer step in the weight gradients
                                   at batch 1 (backend/fold_update.c): AUTO, or the
                                   tests' NEVER and ALWAYS, to compare the two */
} KpTargetOpts;

/* The most threads compiling a module, and the most partitions it is
 * compiled in (so objects per model): three per thread. */
#define KP_LLVM_MAX_JOBS 8
#define KP_LLVM_MAX_PARTS (3 * KP_LLVM_MAX_JOBS)

typedef enum KpEmitKind { KP_EMIT_LLVM, KP_EMIT_ASM, KP_EMIT_OBJ } KpEmitKind;

typedef struct KpCodegen KpCodegen;   /* LLVM context, module, target machine */

/* Build and optimize the module for g.  *out is freed by kp_llvm_free. */
/* The two graphs of one model: inference, and training (forward in
 * training mode, loss, backward, update; see KpPhase).  They share the
 * parameter layout. */
typedef struct KpProgram {
    KpGraph *infer;
    KpGraph *train;             /* NULL when the model cannot be trained: */
    char *no_train_reason;      /* then why (malloc'd), else NULL */
} KpProgram;

int kp_llvm_codegen(const KpProgram *p, const KpTargetOpts *t, KpCodegen **out, KpDiag *d);
/* Write the module as LLVM IR text, assembly or an object file (the
 * whole module optimized as one). */
int kp_llvm_emit_file(KpCodegen *cg, KpEmitKind kind, const char *path, KpDiag *d);
/* The module optimized and compiled in parallel partitions (jobs), as the
 * JIT does it, written to <stem>.0.o .. <stem>.<n-1>.o for kp_link_shared;
 * *nobjs: how many were written (the caller removes them, also on failure).
 * The module is consumed. */
int kp_llvm_write_objects(KpCodegen *cg, const char *stem, int *nobjs, KpDiag *d);
/* JIT-compile the module (ORC LLJIT) and wrap it in a karp_model.  The
 * module is consumed; cg must still be freed.  The JIT lives as long as
 * the model and is released by karp_close(). */
/* -1 on failure, -2 when the runtime refused the model for memory (KARP_ENOMEM). */
int kp_llvm_jit(KpCodegen *cg, karp_model **out, KpDiag *d);
void kp_llvm_free(KpCodegen *cg);
/* The partitions the module was compiled in (kp_llvm_jit,
 * kp_llvm_write_objects): how many, by how many threads, and each one's
 * size (IR instructions before optimization) and time in LLVM's
 * optimization pipeline and in code generation, in ms (karpc --stats);
 * n = 0 before they ran or when the module was optimized whole. */
typedef struct KpPartTimes {
    int n, threads;
    int64_t insts[KP_LLVM_MAX_PARTS];
    double pipeline_ms[KP_LLVM_MAX_PARTS], codegen_ms[KP_LLVM_MAX_PARTS];
} KpPartTimes;
KpPartTimes kp_llvm_part_times(const KpCodegen *cg);

/* One node of a planned graph (values with storage) JIT-compiled alone,
 * as a model compiles it, into
 *     void kernel(ptr in0, ..., ptr out, i64 n)
 * for kernel tests and benchmarks.  The caller binds scratch (bytes per
 * thread and shared, krt_scratch_bind in runtime/model.h) before calling
 * a kernel that needs it.  Free with kp_llvm_node_jit_free. */
typedef struct KpNodeJit {
    void *jit;                  /* the LLJIT */
    void *fn;                   /* kernel */
    int64_t scratch_bytes, scratch_shared_bytes;
} KpNodeJit;
int kp_llvm_node_jit(const KpGraph *g, const KpNode *n, const KpTargetOpts *t, KpNodeJit *out,
                     KpDiag *d);
void kp_llvm_node_jit_free(KpNodeJit *j);
/* A node of the dense family (dense, dense_packed, dense_grad_x,
 * dense_grad_w) between in and out features, alone in g with its values
 * stored as a model keeps them (x the input, W and the bias parameters,
 * panels prepared, dy in the workspace, dW a gradient slot: added into),
 * for kp_llvm_node_jit.  Its kernel takes the inputs in ops.def's order,
 * then the output.  NULL with a diagnostic. */
KpNode *kp_dense_node(KpGraph *g, KpOp op, int64_t in, int64_t out, KpDiag *d);

/* Link objects into a shared library with the static runtime
 * (libkarprt.a) by the system C compiler.  runtime_lib NULL: found next to
 * the karpc executable or in the build tree. */
int kp_link_shared(const char *const *objs, int nobjs, const char *so_path,
                   const char *runtime_lib, KpDiag *d);
/* Write the C header for a compiled model (sizes, shapes, the descriptor). */
int kp_write_header(const KpGraph *g, const char *path, KpDiag *d);

/* The front half of every build, shared by karp_compile and the karpc
 * command: parse and check the model file, lower it to a graph, run the
 * inference pipeline (po NULL: defaults).  max_batch_override > 0 replaces
 * the file's "batch".  On success *out is the planned graph (free with
 * kp_graph_free); on failure *out is NULL and d holds the diagnostic. */
int kp_build_graph(const char *path, const KpPassOpts *po, int64_t max_batch_override,
                   KpGraph **out, KpDiag *d);

/* Both graphs of a model (the file parsed once): p->infer through
 * kp_pipeline_infer, p->train through kp_pipeline_train.  Free with
 * kp_program_free (NULL members allowed). */
int kp_build_program(const char *path, const KpPassOpts *po, int64_t max_batch_override,
                     KpProgram *p, KpDiag *d);
void kp_program_free(KpProgram *p);

#endif
