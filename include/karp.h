/*
 * karp.h — the karpc runtime API (libkarprt).
 *
 * A karp_model is one compiled network: its code (from a shared library
 * written by `karpc model.json -o model.so`, or JIT-compiled in-process by
 * karp_compile() in libkarpc, see karpc.h), its parameters and its
 * workspace.  Both paths give the same handle.
 *
 * Conventions
 *   - Every function that can fail returns 0 or a negative KARP_E* code
 *     (functions returning a pointer return NULL instead).  The reason is
 *     a one-line message: in *err where the function takes one, and always
 *     in karp_last_error(), which is per thread.
 *   - The library never prints, never exits and never aborts on a caller's
 *     mistake.
 *   - Ownership: a karp_model owns its parameters and workspace; pointers
 *     returned by karp_param_*() and karp_model_info() stay valid until
 *     karp_close().  Buffers passed in (x, y, target) stay the caller's.
 *   - Threads: karp_infer may run on one model from several threads at
 *     once.  Every other call that takes a model reads or changes its
 *     state: one thread at a time per model, and not while karp_infer runs
 *     on it.  Different models are independent (each thread may compile,
 *     open, train and infer its own).  karp_last_error is per thread;
 *     karp_set_threads is one setting for the whole process.  karp_compile
 *     (karpc.h) may run on several threads at once.
 *   - Tensors are dense row-major float32, batch first: x holds n samples
 *     of the input shape, y receives n samples of the output shape.
 */
#ifndef KARP_H
#define KARP_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KARP_VERSION_MAJOR 0
#define KARP_VERSION_MINOR 1

#define KARP_MAX_RANK 4

enum {
    KARP_OK = 0,
    KARP_EINVAL = -1,     /* a bad argument: NULL, n out of range, wrong name */
    KARP_EIO = -2,        /* a file could not be read or written */
    KARP_EFORMAT = -3,    /* a file is malformed, truncated or does not match */
    KARP_EABI = -4,       /* a model.so built for another ABI version */
    KARP_ECPU = -5,       /* the code needs CPU features this machine lacks */
    KARP_ENOMEM = -6,     /* out of memory */
    KARP_EMODEL = -7,     /* the model file is invalid (see the message) */
    KARP_ECOMPILE = -8,   /* code generation failed */
    KARP_EUNSUPPORTED = -9, /* valid, but not available for this model */
    KARP_ENUMERIC = -10   /* a NaN or Inf found by karp_set_check_numerics */
};

typedef struct karp_model karp_model;

/* One data-augmentation transform (a model file's train.augment, and
 * karp_loader_new in karp_data.h), applied per sample. */
enum {
    KARP_AUG_HFLIP = 1,        /* mirror left-right with probability 1/2 */
    KARP_AUG_RANDOM_CROP = 2,  /* value = padding: zero-pad, then crop back at a random offset */
    KARP_AUG_ROTATE = 3,       /* value = degrees: rotate by a uniform angle in [-v, v] */
    KARP_AUG_NOISE = 4         /* value = std: add N(0, std^2) to every element */
};
typedef struct karp_augment {
    int32_t kind;              /* KARP_AUG_* */
    float value;
} karp_augment;

typedef struct karp_error {
    int code;              /* 0 or a KARP_E* code */
    char message[1024];    /* one line, no trailing newline */
} karp_error;

/* A parameter tensor.  data points into the model's parameter slab. */
typedef struct karp_param {
    const char *name;      /* PyTorch state_dict name, e.g. "dense1.weight" */
    int rank;
    int64_t shape[KARP_MAX_RANK];
    int64_t size;          /* number of floats */
    float *data;
    float *grad;           /* its accumulated gradient (same shape) */
    int trainable;         /* 0 for running statistics */
} karp_param;

/* What a model is.  Shapes are per sample (the batch is n). */
typedef struct karp_info {
    const char *name;          /* the model's name, a C identifier */
    int input_rank;
    int64_t input_shape[KARP_MAX_RANK];
    int64_t input_size;        /* floats per input sample */
    int output_rank;
    int64_t output_shape[KARP_MAX_RANK];
    int64_t output_size;       /* floats per output sample */
    int64_t max_batch;         /* largest n accepted */
    int nparams;
    int64_t param_floats;      /* total parameter floats */
    int64_t workspace_bytes;
    const char *loss;          /* "cross_entropy", ..., or "none" */
    const char *optimizer;     /* "adam", "sgd", "momentum" or "none" */
    const char *cpu_features;  /* comma-separated features the code needs */
    int has_train;             /* 1 if karp_train_step() is available */
    int has_optimizer;         /* 1 if karp_apply_gradients() is available */
    int target_labels;         /* 1: the target is int32 class labels [n];
                                  0: floats shaped like the output */
    int64_t step;              /* optimizer steps taken (saved in checkpoints) */
    const char *no_train_reason; /* NULL, or why the model cannot be trained
                                    (a layer without training support yet) */
    uint64_t seed;             /* the model file's seed */
    /* the model file's "train" section, for tools such as karpc train;
     * the library itself does not apply them */
    int64_t train_epochs;      /* 0: not given */
    int normalize_nmean;       /* train.normalize: 0 (none), 1, or one per channel */
    int normalize_nstd;
    const float *normalize_mean;
    const float *normalize_std;
    int naugment;              /* train.augment, in order */
    const karp_augment *augment;
} karp_info;

/* Load a shared library written by `karpc model.json -o model.so`.  Checks
 * the ABI version and the CPU features the code needs, allocates and
 * initializes the parameters from the model's seed.  NULL on failure. */
karp_model *karp_open(const char *path, karp_error *err);

/* Release everything the model owns.  NULL is accepted. */
void karp_close(karp_model *m);

/* y[n, output] = model(x[n, input]), inference mode.  1 <= n <= max_batch.
 * Thread-safe: several threads may call it on one model at once (each
 * call gets its own workspace from a pool the model grows on demand; the
 * results are those of one thread), as long as no training call,
 * karp_load, karp_init_params or karp_close runs on that model then. */
int karp_infer(karp_model *m, const float *x, int64_t n, float *y);

/*
 * Training.  A model with a loss and an optimizer has karp_train_step; every
 * model has karp_forward and karp_backward; a model with an optimizer has
 * karp_apply_gradients — unless one of its layers cannot be trained yet
 * (karp_info.no_train_reason), when they all fail with KARP_EUNSUPPORTED
 * and that reason.  They share one training workspace, separate from
 * karp_infer's.
 */

/* One step: forward in training mode, the loss against target (int32
 * labels [n] for cross_entropy, else floats shaped like the output [n,
 * ...]), backward, the optimizer update.  *loss (may be NULL) receives the
 * mean loss of the batch. */
int karp_train_step(karp_model *m, const float *x, const void *target, int64_t n, float *loss);

/* Forward in training mode, keeping what karp_backward needs; x is copied.
 * y (may be NULL) receives the output. */
int karp_forward(karp_model *m, const float *x, int64_t n, float *y);

/* After karp_forward: dy is the gradient of a loss with respect to the
 * output [n, output]; the parameter gradients are accumulated (added to
 * what is there); dx (may be NULL) receives the gradient with respect to
 * the input [n, input]. */
int karp_backward(karp_model *m, const float *dy, float *dx);

/* One optimizer step from the accumulated gradients, which are then zeroed. */
int karp_apply_gradients(karp_model *m);

/* Zero the accumulated gradients (drop a karp_backward's contribution). */
int karp_zero_gradients(karp_model *m);

/* on = 1: from now on karp_train_step, karp_forward, karp_backward and
 * karp_apply_gradients check for NaN and Inf — the input batch before the
 * call; after it, for a model compiled with check_numerics
 * (karp_compile_options, karpc train --check-numerics), every value the
 * call computed in schedule order, then the loss, karp_forward's output,
 * then each parameter and gradient in the model's order — and return
 * KARP_ENUMERIC at the first one, with a message naming the step and the
 * layer, e.g. "karp_train_step: step 37: +Inf in layer 'dense4' (dense
 * output, element 3 of sample 12)" or, without the value list, "...: NaN
 * in layer 'dense4' (parameter dense4.weight, element 12)".  The call's work is done (the step is
 * counted); the caller should stop.  on = 0: no checks (the default). */
int karp_set_check_numerics(karp_model *m, int on);

/* Fill *info.  The strings belong to the model. */
int karp_model_info(const karp_model *m, karp_info *info);

/* Parameters, in the model's order (the order of the checkpoint). */
int karp_param_count(const karp_model *m);
int karp_param_get(const karp_model *m, int index, karp_param *p);
int karp_param_find(const karp_model *m, const char *name, karp_param *p);

/* Tell the model its parameters were written through a karp_param.data
 * pointer kept from before its last karp_infer: inference keeps internal
 * copies of some weights (folded batchnorm, packed panels) made once when
 * the parameters change.  karp_param_get/find, karp_init_params, karp_load
 * and the training calls already say so themselves. */
int karp_params_changed(karp_model *m);

/* Re-initialize every parameter as PyTorch does by default, from seed. */
int karp_init_params(karp_model *m, uint64_t seed);

/* Write the parameters, and for a model with an optimizer its state and
 * step count, to a safetensors file, with the metadata set by
 * karp_set_metadata.  The file is written to a temporary name and renamed:
 * an existing file is replaced whole or not at all.  Names: the parameters'
 * PyTorch names; optimizer state "optimizer.<param>.exp_avg" and
 * ".exp_avg_sq" (adam), ".momentum_buffer" (momentum); the step
 * "optimizer.step" (I64, shape []).  Integrity metadata: "karp.signature"
 * (FNV-1a 64 of every parameter's "name:F32:[shape]"), "karp.crc32c.<tensor>"
 * (CRC-32C of each tensor's bytes); docs/reliability.md. */
int karp_save(const karp_model *m, const char *path);

/* Read parameters from a safetensors file.  Every parameter of the model
 * must be present with the same shape and dtype F32.  Optimizer state is
 * all there or all absent: absent (a PyTorch state_dict, say) leaves the
 * optimizer fresh (zero state, step 0).  On any mismatch nothing changes.
 * A file carrying karp_save's checksums and signature is verified against
 * them (a corrupted tensor is refused by name); files without them load.
 * The file's metadata (less the "karp." keys) becomes readable through
 * karp_get_metadata. */
int karp_load(karp_model *m, const char *path);

/* String metadata written into the next karp_save's "__metadata__"
 * (key and value copied; value NULL removes the key).  Keys "format",
 * "karp_model" and "karp.*" are karpc's own. */
int karp_set_metadata(karp_model *m, const char *key, const char *value);
/* A metadata value from the last karp_load (or karp_set_metadata), NULL if
 * absent.  Valid until the next karp_load or karp_set_metadata. */
const char *karp_get_metadata(const karp_model *m, const char *key);

/* Threads used by the parallel loops of every model (OpenMP's setting);
 * 0 = default.  The loops run on the runtime's own threads; a host with
 * OpenMP work of its own sets KARP_THREAD_POOL=openmp in the environment
 * to run them on OpenMP's instead (docs/abi.md, "Threads").  It is the
 * most karp_train_step uses: a step measured faster on one thread (two
 * cores that share no cache) runs on one; KARP_ADAPTIVE_THREADS=0 in the
 * environment turns that off (docs/abi.md, "Adaptive thread count"). */
int karp_set_threads(int nthreads);

/* The calling thread's last error message ("" if none). */
const char *karp_last_error(void);

/* A constant name for a KARP_E* code. */
const char *karp_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
