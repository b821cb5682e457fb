/*
 * tiny_model.h — hand-written "compiled models" for the runtime tests.
 *
 * tiny_desc(): y = W x + b with W (2,3) "dense.weight" and b (2)
 * "dense.bias", inference only (forward and backward, no loss, no
 * optimizer), and a counter of release() calls.
 *
 * tiny_train_desc(slots): the same layer trained with an mse loss (mean
 * over all n*2 outputs) and sgd (0 slots), momentum (1) or adam (2), lr
 * 0.1, written out in C the way DESIGN.md states the updates; plus a
 * non-trainable "stat.running_mean" (2) after the trainable floats.
 * Each test program includes this once.
 */
#ifndef KP_TEST_TINY_MODEL_H
#define KP_TEST_TINY_MODEL_H

#include <math.h>
#include <string.h>

#include "runtime/model.h"

#define TINY_UNUSED __attribute__((unused))
#define TINY_LR 0.1f

/* params: W at float 0, b at float 16 (offsets are 64-byte aligned). */
static void tiny_infer(const float *params, const float *prep, float *ws, const float *x, float *y,
                       int64_t n)
{
    (void)prep, (void)ws;
    const float *w = params, *b = params + 16;
    for (int64_t i = 0; i < n; i++)
        for (int o = 0; o < 2; o++) {
            float acc = b[o];
            for (int k = 0; k < 3; k++)
                acc += w[o * 3 + k] * x[i * 3 + k];
            y[i * 2 + o] = acc;
        }
}

/* The seed the last forward or train_step was called with. */
static uint64_t tiny_last_seed;

/* Keeps y in tws (4 samples * 2 floats), as generated code keeps activations. */
static void tiny_forward(const float *params, float *tws, const float *x, float *y, int64_t n,
                         uint64_t seed)
{
    tiny_last_seed = seed;
    tiny_infer(params, NULL, NULL, x, tws, n);
    if (y)
        memcpy(y, tws, (size_t)n * 2 * sizeof(float));
}

static void tiny_backward(const float *params, float *grads, float *tws, const float *x,
                          const float *dy, float *dx, int64_t n)
{
    (void)tws;
    for (int64_t i = 0; i < n; i++)
        for (int o = 0; o < 2; o++) {
            for (int k = 0; k < 3; k++)
                grads[o * 3 + k] += dy[i * 2 + o] * x[i * 3 + k];
            grads[16 + o] += dy[i * 2 + o];
        }
    for (int64_t i = 0; dx && i < n; i++)
        for (int k = 0; k < 3; k++)
            dx[i * 3 + k] = params[k] * dy[i * 2] + params[3 + k] * dy[i * 2 + 1];
}

#define TINY_TRAINABLE 32
#define TINY_TRAIN_FLOATS 34

static void tiny_apply_sgd(float *params, float *grads, float *opt, int64_t step)
{
    (void)opt;
    (void)step;
    for (int k = 0; k < TINY_TRAINABLE; k++) {
        params[k] -= TINY_LR * grads[k];
        grads[k] = 0.0f;
    }
}

static void tiny_apply_momentum(float *params, float *grads, float *opt, int64_t step)
{
    (void)step;
    for (int k = 0; k < TINY_TRAINABLE; k++) {
        opt[k] = 0.9f * opt[k] + 0.1f * grads[k];
        params[k] -= TINY_LR * opt[k];
        grads[k] = 0.0f;
    }
}

static void tiny_apply_adam(float *params, float *grads, float *opt, int64_t step)
{
    float *mv = opt, *vv = opt + TINY_TRAIN_FLOATS;
    double c1 = 1.0 - pow(0.9, (double)step), c2 = 1.0 - pow(0.999, (double)step);
    for (int k = 0; k < TINY_TRAINABLE; k++) {
        float g = grads[k];
        mv[k] = 0.9f * mv[k] + 0.1f * g;
        vv[k] = 0.999f * vv[k] + 0.001f * g * g;
        double mh = mv[k] / c1, vh = vv[k] / c2;
        params[k] -= (float)(TINY_LR * mh / (sqrt(vh) + 1e-8));
        grads[k] = 0.0f;
    }
}

/* forward, mse against target [n,2], backward, apply; the mean loss. */
static float tiny_step(KarpApplyFn apply, float *params, float *grads, float *opt, float *tws,
                       const float *x, const void *target, int64_t n, int64_t step,
                       uint64_t seed)
{
    const float *t = target;
    float dy[8];
    double loss = 0.0;
    tiny_forward(params, tws, x, NULL, n, seed);
    for (int64_t i = 0; i < 2 * n; i++) {
        float e = tws[i] - t[i];
        loss += (double)e * e;
        dy[i] = 2.0f * e / (float)(2 * n);
    }
    tiny_backward(params, grads, tws, x, dy, NULL, n);
    apply(params, grads, opt, step);
    return (float)(loss / (double)(2 * n));
}

static float tiny_step_sgd(float *p, float *g, float *o, float *tws, const float *x,
                           const void *t, int64_t n, int64_t step, uint64_t seed)
{
    return tiny_step(tiny_apply_sgd, p, g, o, tws, x, t, n, step, seed);
}

static float tiny_step_momentum(float *p, float *g, float *o, float *tws, const float *x,
                                const void *t, int64_t n, int64_t step, uint64_t seed)
{
    return tiny_step(tiny_apply_momentum, p, g, o, tws, x, t, n, step, seed);
}

static float tiny_step_adam(float *p, float *g, float *o, float *tws, const float *x,
                            const void *t, int64_t n, int64_t step, uint64_t seed)
{
    return tiny_step(tiny_apply_adam, p, g, o, tws, x, t, n, step, seed);
}

static const KarpParamDesc tiny_params[3] = {
    {"dense.weight", 2, KARP_INIT_UNIFORM_FAN_IN, {2, 3}, 0, 6, 3, 2},
    {"dense.bias", 1, KARP_INIT_UNIFORM_FAN_IN, {2}, 16, 2, 3, 2},
    {"stat.running_mean", 1, KARP_INIT_ZEROS, {2}, 32, 2, 0, 0},
};

static TINY_UNUSED KarpModelDesc tiny_desc(void)
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
        .target_kind = KARP_TARGET_NONE,
        .opt_slots = 0,
        .trainable_floats = 18,
        .train_workspace_bytes = 4 * 2 * sizeof(float),
        .forward = tiny_forward,
        .backward = tiny_backward,
    };
    return d;
}

/* slots: 0 sgd, 1 momentum, 2 adam. */
static TINY_UNUSED KarpModelDesc tiny_train_desc(int slots)
{
    static const KarpApplyFn applies[3] = {tiny_apply_sgd, tiny_apply_momentum, tiny_apply_adam};
    static const KarpTrainStepFn steps[3] = {tiny_step_sgd, tiny_step_momentum, tiny_step_adam};
    static const char *const names[3] = {"sgd", "momentum", "adam"};
    KarpModelDesc d = tiny_desc();
    d.name = "trainee";
    d.nparams = 3;
    d.param_floats = TINY_TRAIN_FLOATS;
    d.loss = "mse";
    d.optimizer = names[slots];
    d.target_kind = KARP_TARGET_DENSE;
    d.opt_slots = slots;
    d.trainable_floats = TINY_TRAINABLE;
    d.apply = applies[slots];
    d.train_step = steps[slots];
    return d;
}

static int tiny_releases;
static void tiny_release(void *owner)
{
    (void)owner;
    tiny_releases++;
}

/* A model over a static descriptor (the descriptor must outlive it). */
static TINY_UNUSED karp_model *tiny_open(const KarpModelDesc *d)
{
    karp_error err;
    karp_model *m = kp_rt_model_new(d, NULL, tiny_release, &err);
    return m;
}

#endif
