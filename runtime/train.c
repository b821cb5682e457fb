/*
 * train.c — the training API over a descriptor's forward, backward, apply
 * and train_step: argument checks, the step counter, and the copy of the
 * last forward's input that karp_backward hands back to the generated
 * code (the caller may reuse its buffer in between).
 *
 * State machine of the training workspace: karp_forward fills it (and
 * last_x, last_n); karp_backward may then run any number of times;
 * karp_train_step, karp_load and karp_init_params leave it describing
 * nothing karp_backward could use, so they clear last_n.
 */
#include <string.h>

#include "fpmode.h"
#include "model.h"

static int check_n(const karp_model *m, const char *fn, int64_t n)
{
    if (n < 1 || n > m->desc->max_batch)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: n must be between 1 and %lld, got %lld", fn,
                           (long long)m->desc->max_batch, (long long)n);
    return 0;
}

/* NULL model, or a model whose compiler could not build its training code. */
static int check_model(const karp_model *m, const char *fn)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: model is NULL", fn);
    if (m->desc->no_train_reason)
        return kp_rt_error(NULL, KARP_EUNSUPPORTED, "%s: model '%s' cannot be trained: %s", fn,
                           m->desc->name, m->desc->no_train_reason);
    return 0;
}

typedef struct StepCall {
    karp_model *m;
    const float *x;
    const void *target;
    int64_t n;
    float loss;
} StepCall;

static void step_call(void *arg)
{
    StepCall *c = arg;
    karp_model *m = c->m;
    c->loss = m->desc->train_step(m->params, m->grads, m->opt, m->tws, c->x, c->target, c->n,
                                  m->step, kp_rt_call_seed(m, m->step));
}

/* The step on the thread count m->adapt chooses (adapt.h). */
static float adapted_step(karp_model *m, const float *x, const void *target, int64_t n)
{
    StepCall c = {.m = m, .x = x, .target = target, .n = n};
    kp_rt_adapted_call(&m->adapt, n, step_call, &c);
    return c.loss;
}

int karp_train_step(karp_model *m, const float *x, const void *target, int64_t n, float *loss)
{
    const char *fn = "karp_train_step";
    int rc = check_model(m, fn);
    if (rc)
        return rc;
    const KarpModelDesc *d = m->desc;
    if (d->target_kind == KARP_TARGET_NONE)
        return kp_rt_error(NULL, KARP_EUNSUPPORTED, "%s: model '%s' has no loss", fn, d->name);
    if (!d->train_step)
        return kp_rt_error(NULL, KARP_EUNSUPPORTED, "%s: model '%s' has no optimizer", fn,
                           d->name);
    if (!x)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: x is NULL", fn);
    if (!target)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: target is NULL", fn);
    rc = check_n(m, fn, n);
    if (rc == 0)
        rc = kp_rt_check_input(m, fn, m->step + 1, x, n);
    if (rc)
        return rc;
    kp_rt_apply_threads();
    rc = kp_rt_scratch_reserve(d, &m->train_scratch, fn);
    if (rc)
        return rc;
    m->step++;
    kp_rt_params_changed(m);
    m->last_n = 0; /* tws now holds this x's activations, last_x another's */
    float l = adapted_step(m, x, target, n);
    if (loss)
        *loss = l;
    return kp_rt_check_after(m, fn, m->step, &l, NULL, n, KP_RT_RAN_FORWARD | KP_RT_RAN_LOSS | KP_RT_RAN_BACKWARD);
}

int karp_forward(karp_model *m, const float *x, int64_t n, float *y)
{
    const char *fn = "karp_forward";
    int rc = check_model(m, fn);
    if (rc)
        return rc;
    if (!x)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: x is NULL", fn);
    rc = check_n(m, fn, n);
    if (rc == 0)
        rc = kp_rt_check_input(m, fn, m->step + 1, x, n);
    if (rc)
        return rc;
    kp_rt_apply_threads();
    rc = kp_rt_scratch_reserve(m->desc, &m->train_scratch, fn);
    if (rc)
        return rc;
    /* memmove: x may be last_x itself (a caller replaying the stored input). */
    memmove(m->last_x, x, (size_t)(n * kp_rt_input_size(m->desc)) * sizeof(float));
    m->last_n = n;
    kp_rt_params_changed(m);    /* batchnorm's running statistics */
    unsigned mode = kp_rt_fp_enter();
    m->desc->forward(m->params, m->tws, m->last_x, y, n, kp_rt_call_seed(m, m->step + 1));
    kp_rt_fp_adopt(mode);
    return kp_rt_check_after(m, fn, m->step + 1, NULL, y, n, KP_RT_RAN_FORWARD);
}

int karp_backward(karp_model *m, const float *dy, float *dx)
{
    const char *fn = "karp_backward";
    int rc = check_model(m, fn);
    if (rc)
        return rc;
    if (!dy)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: dy is NULL", fn);
    if (m->last_n == 0)
        return kp_rt_error(NULL, KARP_EINVAL, "%s: call karp_forward first", fn);
    kp_rt_apply_threads();
    rc = kp_rt_scratch_reserve(m->desc, &m->train_scratch, fn);
    if (rc)
        return rc;
    unsigned mode = kp_rt_fp_enter();
    m->desc->backward(m->params, m->grads, m->tws, m->last_x, dy, dx, m->last_n);
    kp_rt_fp_adopt(mode);
    return kp_rt_check_after(m, fn, m->step + 1, NULL, NULL, m->last_n,
                             KP_RT_RAN_BACKWARD | (dx ? KP_RT_RAN_INPUT_GRAD : 0));
}

int karp_apply_gradients(karp_model *m)
{
    const char *fn = "karp_apply_gradients";
    int rc = check_model(m, fn);
    if (rc)
        return rc;
    if (!m->desc->apply)
        return kp_rt_error(NULL, KARP_EUNSUPPORTED, "%s: model '%s' has no optimizer", fn,
                           m->desc->name);
    kp_rt_apply_threads();
    rc = kp_rt_scratch_reserve(m->desc, &m->train_scratch, fn);
    if (rc)
        return rc;
    m->step++;
    kp_rt_params_changed(m);
    unsigned mode = kp_rt_fp_enter();
    m->desc->apply(m->params, m->grads, m->opt, m->step);
    kp_rt_fp_adopt(mode);
    return kp_rt_check_after(m, fn, m->step, NULL, NULL, 0, 0);
}

int karp_zero_gradients(karp_model *m)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_zero_gradients: model is NULL");
    memset(m->grads, 0, (size_t)m->desc->param_floats * sizeof(float));
    return 0;
}
