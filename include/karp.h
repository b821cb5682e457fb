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
    KARP_EUNSUPPORTED = -9 /* valid, but not available for this model */
};

typedef struct karp_model karp_model;

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
} karp_info;

/* Load a shared library written by `karpc model.json -o model.so`.  Checks
 * the ABI version and the CPU features the code needs, allocates and
 * initializes the parameters from the model's seed.  NULL on failure. */
karp_model *karp_open(const char *path, karp_error *err);

/* Release everything the model owns.  NULL is accepted. */
void karp_close(karp_model *m);

/* y[n, output] = model(x[n, input]), inference mode.  1 <= n <= max_batch.
 * A model has one workspace: do not call this on the same model from two
 * threads at once (two models are independent). */
int karp_infer(karp_model *m, const float *x, int64_t n, float *y);

/* Fill *info.  The strings belong to the model. */
int karp_model_info(const karp_model *m, karp_info *info);

/* Parameters, in the model's order (the order of the checkpoint). */
int karp_param_count(const karp_model *m);
int karp_param_get(const karp_model *m, int index, karp_param *p);
int karp_param_find(const karp_model *m, const char *name, karp_param *p);

/* Re-initialize every parameter as PyTorch does by default, from seed. */
int karp_init_params(karp_model *m, uint64_t seed);

/* Write the parameters (and, for a trained model, the optimizer state) to
 * a safetensors file.  The file is written to a temporary name and renamed:
 * an existing file is replaced whole or not at all. */
int karp_save(const karp_model *m, const char *path);

/* Read parameters from a safetensors file.  Every parameter of the model
 * must be present with the same shape and dtype F32; on any mismatch
 * nothing is changed. */
int karp_load(karp_model *m, const char *path);

/* Threads used by the parallel loops of every model (OpenMP); 0 = default. */
int karp_set_threads(int nthreads);

/* The calling thread's last error message ("" if none). */
const char *karp_last_error(void);

/* A constant name for a KARP_E* code. */
const char *karp_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
