/*
 * karp_abi.h — the binary contract between generated code and libkarprt.
 *
 * Every compiled model (a model.so, or a module in the JIT) defines one
 * constant descriptor, exported from a shared library under the symbol
 * KARP_DESCRIPTOR_SYMBOL.  The runtime builds a karp_model from it.
 * Changing any struct below means bumping KARP_ABI_VERSION; the loader
 * refuses a descriptor whose abi_version differs.
 *
 * The backend emits these structs as LLVM constants field by field, in
 * this order and with these C types (backend/descriptor.c mirrors them).
 */
#ifndef KARP_ABI_H
#define KARP_ABI_H

#include <stdint.h>

#include "karp.h"

#define KARP_ABI_VERSION 5u
#define KARP_DESCRIPTOR_SYMBOL "karp_model_v1"

/* How a parameter is initialized (karp_init_params). */
enum {
    KARP_INIT_ZEROS = 0,
    KARP_INIT_ONES = 1,
    KARP_INIT_UNIFORM_FAN_IN = 2, /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default */
    KARP_INIT_HE = 3,             /* N(0, 2/fan_in) */
    KARP_INIT_XAVIER = 4          /* U(-a, a), a = sqrt(6/(fan_in+fan_out)) */
};

typedef struct KarpParamDesc {
    const char *name;        /* "dense1.weight" */
    int32_t rank;
    int32_t init;            /* KARP_INIT_* */
    int64_t shape[4];
    int64_t offset;          /* in floats, into the parameter slab (64-byte aligned) */
    int64_t size;            /* in floats */
    int64_t fan_in;
    int64_t fan_out;
} KarpParamDesc;

/* What karp_train_step's target is. */
enum {
    KARP_TARGET_NONE = 0,       /* no loss */
    KARP_TARGET_LABELS = 1,     /* int32 class labels [n] (cross_entropy) */
    KARP_TARGET_DENSE = 2       /* floats shaped like the output [n, output...] */
};

/*
 * The entry points.  params: the parameter slab (param_floats); grads: the
 * gradient slab, same layout as params, zero at rest; opt: optimizer state,
 * opt_slots * param_floats floats (adam: m at [0, param_floats), v after);
 * ws: the inference workspace (workspace_bytes); tws: the training
 * workspace (train_workspace_bytes), which keeps the activations of
 * forward for backward; step: optimizer steps taken, counting this one
 * (1 for the first); seed: the random stream of this call (dropout masks),
 * chosen by the runtime (kp_rt_call_seed).  All 64-byte aligned.
 *
 *   infer       y = model(x), inference mode; prep as the last prepare left it
 *   forward     training mode, activations kept in tws; y (may be NULL) the output
 *   backward    after forward with the same x and n: dy is the gradient of
 *               the output; parameter gradients are accumulated into grads;
 *               dx (may be NULL) receives the gradient of the input
 *   apply       one optimizer step over the trainable parameters
 *               [0, trainable_floats) from grads, then grads zeroed
 *   train_step  forward, loss, backward, apply; returns the mean loss
 */
typedef void (*KarpInferFn)(const float *params, const float *prep, float *ws,
                            const float *x, float *y, int64_t n);
/* prepare (ABI 4): prep (prep_floats) computed from params — folded
 * batchnorm, packed weights; run by the runtime whenever the parameters
 * changed before the next infer, never per call. */
typedef void (*KarpPrepareFn)(const float *params, float *prep);
/* bind_scratch (ABI 5): the pool the code's kernels take their scratch
 * from, for the calls the calling thread makes next: an area all chunks
 * of a call share (scratch_shared_bytes) and nslots slots of stride bytes,
 * one per chunk of a parallel loop (scratch_bytes each); the runtime binds
 * one before every entry point it calls (runtime/scratch.c). */
typedef void (*KarpBindScratchFn)(void *shared, void *slots, int64_t stride, int64_t nslots);
typedef void (*KarpForwardFn)(const float *params, float *tws, const float *x,
                              float *y, int64_t n, uint64_t seed);
typedef void (*KarpBackwardFn)(const float *params, float *grads, float *tws,
                               const float *x, const float *dy, float *dx, int64_t n);
typedef void (*KarpApplyFn)(float *params, float *grads, float *opt, int64_t step);
typedef float (*KarpTrainStepFn)(float *params, float *grads, float *opt, float *tws,
                                 const float *x, const void *target, int64_t n,
                                 int64_t step, uint64_t seed);

/* Where a value of the train graph lives after a train step (ABI 4), for
 * the numerics check: it reads each value in schedule order. */
enum {
    KARP_VAL_TWS = 0,        /* offset in bytes into the training workspace */
    KARP_VAL_GRADS = 1,      /* offset in floats into the gradient slab */
    KARP_VAL_PARAMS = 2      /* offset in floats into the parameter slab */
};
typedef struct KarpValueDesc {
    const char *layer;       /* the layer it belongs to ("conv2d0"), "loss", "optimizer" */
    const char *op;          /* the op producing it ("relu", "dense_grad_x") */
    int32_t where;           /* KARP_VAL_* */
    int32_t phase;           /* 0 forward, 1 loss, 2 backward, 3 input gradient, 4 update */
    int64_t offset;
    int64_t sample_floats;   /* floats per sample (times n), or 0 */
    int64_t fixed_floats;    /* floats independent of n (parameters, statistics), or 0 */
} KarpValueDesc;

typedef struct KarpModelDesc {
    uint32_t abi_version;    /* KARP_ABI_VERSION */
    uint32_t nparams;
    const char *name;
    const char *cpu_features;/* comma-separated, LLVM names: "avx2,fma,avx512f" */
    const char *loss;        /* "none" for an inference-only model */
    const char *optimizer;   /* "none" if no optimizer */
    int32_t input_rank;
    int32_t output_rank;
    int64_t input_shape[4];  /* per sample */
    int64_t output_shape[4];
    int64_t max_batch;
    int64_t param_floats;
    int64_t workspace_bytes;
    uint64_t seed;
    const KarpParamDesc *params;
    KarpInferFn infer;
    /* training (ABI 2) */
    int32_t target_kind;     /* KARP_TARGET_* */
    int32_t opt_slots;       /* 0 sgd or none, 1 momentum, 2 adam */
    int64_t trainable_floats;
    int64_t train_workspace_bytes;
    KarpForwardFn forward;   /* present unless no_train_reason */
    KarpBackwardFn backward; /* present unless no_train_reason */
    KarpApplyFn apply;       /* NULL without an optimizer */
    KarpTrainStepFn train_step; /* NULL without a loss or an optimizer */
    const char *no_train_reason; /* NULL; or why the model has no training code (an
                                    op without a gradient rule yet): then forward,
                                    backward, apply and train_step are all NULL */
    /* the model file's "train" defaults, for tools (the runtime does not apply them) */
    int64_t train_epochs;    /* 0: not given */
    int32_t norm_nmean;      /* train.normalize: 0 (none), 1, or one per channel */
    int32_t norm_nstd;
    const float *norm_mean;  /* norm_nmean floats */
    const float *norm_std;   /* norm_nstd floats */
    int64_t naugment;        /* train.augment (ABI 3): naugment transforms, in order */
    const karp_augment *augment;
    /* ABI 4 */
    int64_t prep_floats;     /* the prepared slab, 0 if the model has none */
    KarpPrepareFn prepare;   /* NULL when prep_floats is 0 */
    int64_t nvalues;         /* the train graph's node outputs, in schedule order */
    const KarpValueDesc *values; /* (for --check-numerics), NULL when nvalues is 0 */
    /* ABI 5 */
    int64_t scratch_bytes;   /* per thread, for the kernels' packed blocks (0: none) */
    int64_t scratch_shared_bytes; /* per call, shared by its threads (0: none) */
    KarpBindScratchFn bind_scratch; /* present when either is > 0 */
} KarpModelDesc;

#endif
