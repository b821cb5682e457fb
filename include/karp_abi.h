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

#define KARP_ABI_VERSION 1u
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

/* params: the parameter slab; ws: the workspace (workspace_bytes, 64-byte
 * aligned); x: n input samples; y: n output samples. */
typedef void (*KarpInferFn)(const float *params, float *ws, const float *x,
                            float *y, int64_t n);

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
} KarpModelDesc;

#endif
