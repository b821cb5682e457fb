/*
 * kernels.h — the kernels an entry point calls, callable one at a time:
 * karpc bench times each in place (tools/bench_kernels.c).
 *
 * kp_llvm_codegen with KpTargetOpts.keep_kernels records every call an
 * entry makes, in the entry's order: the kernel (a node's function, or a
 * group's, codegen_group.c: one or more nodes), the nodes it computes and
 * its arguments as the entry passes them (kp_cg_call_node writes the call
 * and the record from the same argument list).  Pointer arguments are
 * recorded as the value's storage and offset from the memory plan
 * (codegen.h's table), and resolved at run time against the buffers of a
 * call (KpEntryBufs) the way kp_cg_value_ptr resolves them inside the
 * entry.
 *
 * Each kernel also gets a trampoline, the only functions keep_kernels
 * exports from the JIT:
 *     void bench.<kernel>(ptr args)     loads its arguments from args[i]
 *                                       (8 bytes each) and calls the kernel
 * so a kernel of any argument count is called with its own types; the
 * kernels themselves keep their internal linkage.
 */
#ifndef KP_KERNELS_H
#define KP_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

typedef enum KpKargKind {
    KP_KARG_VALUE,      /* a pointer to a value (storage, offset) */
    KP_KARG_N,          /* i64: the batch */
    KP_KARG_SEED,       /* i64: the call's seed */
    KP_KARG_STEP,       /* i64: the optimizer step */
    KP_KARG_GRADS,      /* the gradient slab, whole */
    KP_KARG_OPT         /* the optimizer state, whole */
} KpKargKind;

typedef struct KpKernelArg {
    KpKargKind kind;
    int value;              /* VALUE: the value's id in its graph */
    KpStorage storage;      /* VALUE: KpValue.storage and .offset */
    int64_t offset;
    int64_t sample_bytes;   /* VALUE: bytes per sample (times n), or */
    int64_t fixed_bytes;    /*   bytes independent of n */
} KpKernelArg;

typedef struct KpKernel {
    char entry[24];         /* the entry calling it: "infer", "train_step", ... */
    char symbol[96];        /* its function: "train.node12.dense_grad_w", "train.group3" */
    char trampoline[112];   /* "bench.<symbol>", exported */
    bool train;             /* its nodes are the train graph's (else inference's) */
    int nnodes;
    int *node;              /* the nodes it computes: ids in that graph (malloc'd) */
    int nargs;
    KpKernelArg *arg;       /* its arguments in order (malloc'd) */
    int64_t update_floats;  /* a call that updates part of the trainable floats
                               (train_step's folded updates, emit_optim.c): how
                               many; 0: all its update node's */
} KpKernel;

/* Every call of every entry, entries in the order they were emitted. */
typedef struct KpKernelList {
    int n, cap;
    KpKernel *k;
} KpKernelList;

void kp_kernel_list_free(KpKernelList *l);
/* After kp_llvm_codegen with keep_kernels: the listing, now the caller's
 * (free with kp_kernel_list_free); NULL without keep_kernels. */
KpKernelList *kp_llvm_take_kernels(KpCodegen *cg);
/* Floats per explicit vector of the generated code (16, 8 or 4). */
int kp_llvm_vector_width(const KpCodegen *cg);

/* The address of an exported function of a model made by kp_llvm_jit. 0,
 * or -1 with a diagnostic. */
int kp_llvm_jit_lookup(karp_model *m, const char *symbol, void **addr, KpDiag *d);

/* The buffers of one entry call: the model's slabs (kp_entry_bufs) and the
 * caller's x, y, target, dx, n, step and seed. */
typedef struct KpEntryBufs {
    float *params, *prep, *grads, *opt;
    void *ws;               /* the workspace of the entry: inference's or training's */
    const float *x;
    float *y, *dx;
    const void *target;
    int64_t n, step;
    uint64_t seed;
    int64_t param_floats, opt_floats;
} KpEntryBufs;

/* m's slabs (a model from kp_llvm_jit or karp_open); ws the training
 * workspace if train, else the first inference workspace — the one a
 * karp_infer on a single thread uses.  The caller's fields are zeroed. */
void kp_entry_bufs(karp_model *m, bool train, KpEntryBufs *b);
/* The argument word a kernel gets: a pointer, or n, the seed, the step. */
uint64_t kp_kernel_arg_word(const KpKernelArg *a, const KpEntryBufs *b);
/* The bytes a pointer argument spans at b->n (0 for the integers). */
int64_t kp_kernel_arg_bytes(const KpKernelArg *a, const KpEntryBufs *b);
/* Call a kernel through its trampoline (the address of k->trampoline) with
 * its argument words w[0, k->nargs). */
void kp_kernel_call(void *trampoline, const uint64_t *w);

#endif
