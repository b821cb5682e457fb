/*
 * tiny_model.h — a hand-written "compiled model" for the runtime tests:
 * y = W x + b with W (2,3) "dense.weight" and b (2) "dense.bias", and a
 * counter of release() calls.  Each test program includes it once.
 */
#ifndef KP_TEST_TINY_MODEL_H
#define KP_TEST_TINY_MODEL_H

#include <string.h>

#include "runtime/model.h"

/* params: W at float 0, b at float 16 (offsets are 64-byte aligned). */
static void tiny_infer(const float *params, float *ws, const float *x, float *y, int64_t n)
{
    const float *w = params, *b = params + 16;
    for (int64_t i = 0; i < n; i++)
        for (int o = 0; o < 2; o++) {
            float acc = b[o];
            for (int k = 0; k < 3; k++)
                acc += w[o * 3 + k] * x[i * 3 + k];
            y[i * 2 + o] = acc;
        }
}

static const KarpParamDesc tiny_params[2] = {
    {"dense.weight", 2, KARP_INIT_UNIFORM_FAN_IN, {2, 3}, 0, 6, 3, 2},
    {"dense.bias", 1, KARP_INIT_UNIFORM_FAN_IN, {2}, 16, 2, 3, 2},
};

static KarpModelDesc tiny_desc(void)
{
    KarpModelDesc d = {
        .abi_version = KARP_ABI_VERSION,
        .nparams = 2,
        .name = "tiny",
        .cpu_features = "",
        .loss = "none",
        .optimizer = "none",
        .input_rank = 1,
        .output_rank = 1,
        .input_shape = {3},
        .output_shape = {2},
        .max_batch = 4,
        .param_floats = 18,
        .workspace_bytes = 0,
        .seed = 42,
        .params = tiny_params,
        .infer = tiny_infer,
    };
    return d;
}

static int tiny_releases;
static void tiny_release(void *owner)
{
    (void)owner;
    tiny_releases++;
}

/* A model over a static descriptor (the descriptor must outlive it). */
static karp_model *tiny_open(const KarpModelDesc *d)
{
    karp_error err;
    karp_model *m = kp_rt_model_new(d, NULL, tiny_release, &err);
    return m;
}

#endif
