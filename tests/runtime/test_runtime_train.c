/*
 * test_runtime_train.c — the training API over the hand-written models of
 * tiny_model.h: what each call hands the generated code (parameters,
 * gradients, optimizer state, the stored input, the step), how gradients
 * accumulate and are cleared, and every refusal with its exact message.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_model.h"
#include "testutil.h"

static KarpModelDesc descs[3]; /* sgd, momentum, adam */
static KarpModelDesc infer_only;

static karp_model *open_trainee(int slots)
{
    descs[slots] = tiny_train_desc(slots);
    karp_model *m = tiny_open(&descs[slots]);
    ck_assert_ptr_nonnull(m);
    return m;
}

static void set_params(karp_model *m)
{
    const float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {0.5f, -1};
    memcpy(m->params, w, sizeof w);
    memcpy(m->params + 16, b, sizeof b);
}

static const float X[12] = {1, 0, 0, 1, 1, 1, 0.5f, -1, 2, 3, 0, -2};
static const float T[8] = {1, 2, 3, 4, -1, 0.5f, 2, 2};

START_TEST(test_info_and_params)
{
    karp_model *m = open_trainee(2);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_int_eq(info.has_train, 1);
    ck_assert_int_eq(info.has_optimizer, 1);
    ck_assert_int_eq(info.target_labels, 0);
    ck_assert_int_eq(info.step, 0);
    ck_assert_str_eq(info.loss, "mse");
    ck_assert_str_eq(info.optimizer, "adam");
    karp_param p;
    ck_assert_int_eq(karp_param_get(m, 1, &p), 0);
    ck_assert_ptr_eq(p.grad, m->grads + 16);
    ck_assert_int_eq(p.trainable, 1);
    ck_assert_int_eq(karp_param_find(m, "stat.running_mean", &p), 0);
    ck_assert_ptr_eq(p.grad, m->grads + 32);
    ck_assert_int_eq(p.trainable, 0);
    for (int i = 0; i < TINY_TRAIN_FLOATS; i++) {
        ck_assert_float_eq(m->grads[i], 0);
        ck_assert_float_eq(m->opt[i], 0);
        ck_assert_float_eq(m->opt[TINY_TRAIN_FLOATS + i], 0);
    }
    ck_assert_uint_eq((uintptr_t)m->grads % 64, 0);
    ck_assert_uint_eq((uintptr_t)m->opt % 64, 0);
    ck_assert_uint_eq((uintptr_t)m->tws % 64, 0);
    karp_close(m);

    infer_only = tiny_desc();
    m = tiny_open(&infer_only);
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_int_eq(info.has_train, 0);
    ck_assert_int_eq(info.has_optimizer, 0);
    karp_close(m);
}
END_TEST

START_TEST(test_train_step_counts_and_matches_by_hand)
{
    karp_model *m = open_trainee(2), *ref = open_trainee(2);
    set_params(m);
    set_params(ref);
    float loss = -1;
    for (int s = 1; s <= 3; s++) {
        ck_assert_int_eq(karp_train_step(m, X, T, 2, &loss), 0);
        float want = tiny_step_adam(ref->params, ref->grads, ref->opt, ref->tws, X, T, 2, s, 0);
        ck_assert_float_eq(loss, want);
        ck_assert_mem_eq(m->params, ref->params, TINY_TRAIN_FLOATS * sizeof(float));
        ck_assert_mem_eq(m->opt, ref->opt, 2 * TINY_TRAIN_FLOATS * sizeof(float));
        karp_info info;
        karp_model_info(m, &info);
        ck_assert_int_eq(info.step, s);
    }
    /* The first loss by hand: y = (1.5, 3) and (6.5, 14) against T. */
    set_params(m);
    memset(m->opt, 0, 2 * TINY_TRAIN_FLOATS * sizeof(float));
    ck_assert_int_eq(karp_train_step(m, X, T, 2, NULL), 0);
    ck_assert_int_eq(karp_train_step(m, X, T, 1, &loss), 0);
    ck_assert_int_eq(karp_train_step(m, X, T, 4, &loss), 0);
    karp_close(m);
    karp_close(ref);

    m = open_trainee(0);
    set_params(m);
    ck_assert_int_eq(karp_train_step(m, X, T, 2, &loss), 0);
    ck_assert_float_eq_tol(loss, (0.25 + 1 + 12.25 + 100) / 4.0, 1e-6);
    karp_close(m);
}
END_TEST

/* The seed of each call: a function of the model file's seed, the step
 * and the call's number within the step; a reset run draws the same. */
START_TEST(test_call_seeds)
{
    karp_model *m = open_trainee(0);
    set_params(m);
    uint64_t seen[6];
    for (int round = 0; round < 2; round++) {
        kp_rt_reset_training(m);
        ck_assert_int_eq(karp_forward(m, X, 2, NULL), 0);        /* step 1, call 0 */
        uint64_t s0 = tiny_last_seed;
        ck_assert_int_eq(karp_forward(m, X, 2, NULL), 0);        /* step 1, call 1 */
        uint64_t s1 = tiny_last_seed;
        ck_assert_int_eq(karp_apply_gradients(m), 0);
        ck_assert_int_eq(karp_forward(m, X, 2, NULL), 0);        /* step 2, call 0 */
        uint64_t s2 = tiny_last_seed;
        ck_assert_int_eq(karp_train_step(m, X, T, 2, NULL), 0);  /* step 2, call 1 */
        uint64_t s3 = tiny_last_seed;
        ck_assert_int_eq(karp_train_step(m, X, T, 2, NULL), 0);  /* step 3, call 0 */
        uint64_t s4 = tiny_last_seed;
        uint64_t now[6] = {s0, s1, s2, s3, s4, kp_rt_call_seed(m, 3)};
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < i; j++)
                ck_assert_msg(now[i] != now[j], "calls %d and %d share a seed", j, i);
        if (round == 1)
            ck_assert_mem_eq(now, seen, sizeof seen);
        memcpy(seen, now, sizeof seen);
    }
    karp_close(m);
}
END_TEST

START_TEST(test_forward_backward_apply)
{
    karp_model *m = open_trainee(0);
    set_params(m);
    float x[6];
    memcpy(x, X, sizeof x); /* the first 2 samples */
    float y[4];
    ck_assert_int_eq(karp_forward(m, x, 2, y), 0);
    ck_assert_float_eq(y[0], 1.5f);
    ck_assert_float_eq(y[3], 14.0f);
    ck_assert_int_eq(karp_forward(m, x, 2, NULL), 0);
    /* The caller's buffer may change: backward uses the stored copy. */
    memset(x, 0x7f, sizeof x);
    const float dy[4] = {1, 2, 3, 4};
    float dx[6];
    ck_assert_int_eq(karp_backward(m, dy, dx), 0);
    /* dW = dy^T x: row 0 = 1*(1,0,0) + 3*(1,1,1), row 1 = 2*(1,0,0) + 4*(1,1,1). */
    const float dw[6] = {4, 3, 3, 6, 4, 4}, db[2] = {4, 6};
    ck_assert_mem_eq(m->grads, dw, sizeof dw);
    ck_assert_mem_eq(m->grads + 16, db, sizeof db);
    ck_assert_float_eq(dx[0], 1 * 1 + 4 * 2);
    ck_assert_float_eq(dx[5], 3 * 3 + 6 * 4);
    /* A second backward accumulates (dx may be NULL). */
    ck_assert_int_eq(karp_backward(m, dy, NULL), 0);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(m->grads[i], 2 * dw[i]);
    karp_param p;
    karp_param_find(m, "dense.bias", &p);
    ck_assert_float_eq(p.grad[1], 12);

    /* apply: sgd with lr 0.1 from the accumulated gradient, which it zeroes. */
    ck_assert_int_eq(karp_apply_gradients(m), 0);
    ck_assert_float_eq_tol(m->params[0], 1 - 0.1f * 8, 1e-6);
    ck_assert_float_eq_tol(m->params[17], -1 - 0.1f * 12, 1e-6);
    for (int i = 0; i < TINY_TRAIN_FLOATS; i++)
        ck_assert_float_eq(m->grads[i], 0);
    karp_info info;
    karp_model_info(m, &info);
    ck_assert_int_eq(info.step, 1);

    /* zero_gradients drops a backward's contribution. */
    ck_assert_int_eq(karp_backward(m, dy, NULL), 0);
    ck_assert_float_ne(m->grads[0], 0);
    ck_assert_int_eq(karp_zero_gradients(m), 0);
    for (int i = 0; i < TINY_TRAIN_FLOATS; i++)
        ck_assert_float_eq(m->grads[i], 0);

    /* A train step leaves nothing for karp_backward. */
    ck_assert_int_eq(karp_train_step(m, X, T, 2, NULL), 0);
    ck_assert_int_eq(karp_backward(m, dy, NULL), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_backward: call karp_forward first");

    /* init_params resets gradients, optimizer state and step. */
    ck_assert_int_eq(karp_forward(m, X, 2, NULL), 0);
    ck_assert_int_eq(karp_backward(m, dy, NULL), 0);
    ck_assert_int_eq(karp_init_params(m, 5), 0);
    for (int i = 0; i < TINY_TRAIN_FLOATS; i++)
        ck_assert_float_eq(m->grads[i], 0);
    karp_model_info(m, &info);
    ck_assert_int_eq(info.step, 0);
    ck_assert_int_eq(karp_backward(m, dy, NULL), KARP_EINVAL);
    karp_close(m);

    m = open_trainee(1);
    ck_assert_int_eq(karp_train_step(m, X, T, 2, NULL), 0);
    ck_assert_float_ne(m->opt[0], 0);
    ck_assert_int_eq(karp_init_params(m, 5), 0);
    for (int i = 0; i < TINY_TRAIN_FLOATS; i++)
        ck_assert_float_eq(m->opt[i], 0);
    karp_close(m);
}
END_TEST

static void expect(int rc, int code, const char *msg)
{
    ck_assert_int_eq(rc, code);
    ck_assert_str_eq(karp_last_error(), msg);
}

/* A model whose compiler could not build training code (a layer without a
 * gradient rule) opens and infers; every training call reports the reason. */
START_TEST(test_no_train_reason)
{
    KarpModelDesc d = tiny_desc();
    d.forward = NULL;
    d.backward = NULL;
    d.no_train_reason = "m.json: layers[1] (odd1): training through odd is not supported yet";
    karp_model *m = tiny_open(&d);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_str_eq(info.no_train_reason, d.no_train_reason);
    float x[3] = {1, 2, 3}, y[2], dy[2] = {1, 1};
    int32_t label = 0;
    ck_assert_int_eq(karp_infer(m, x, 1, y), 0);
    const char *expect = "karp_forward: model 'tiny' cannot be trained: m.json: layers[1] (odd1): "
                         "training through odd is not supported yet";
    ck_assert_int_eq(karp_forward(m, x, 1, y), KARP_EUNSUPPORTED);
    ck_assert_str_eq(karp_last_error(), expect);
    ck_assert_int_eq(karp_backward(m, dy, NULL), KARP_EUNSUPPORTED);
    ck_assert_int_eq(karp_train_step(m, x, &label, 1, NULL), KARP_EUNSUPPORTED);
    ck_assert_int_eq(karp_apply_gradients(m), KARP_EUNSUPPORTED);
    karp_close(m);

    /* training code and a reason not to train contradict each other */
    d = tiny_desc();
    d.no_train_reason = "no";
    karp_error err;
    ck_assert_ptr_null(kp_rt_model_new(&d, NULL, NULL, &err));
    ck_assert_int_eq(err.code, KARP_EFORMAT);

    /* Found by fuzzing: with a reason not to train, the sizes were not
     * checked, and opt_slots -1 made karp_init_params clear a negative
     * length of optimizer state. */
    d = tiny_desc();
    d.forward = NULL;
    d.backward = NULL;
    d.no_train_reason = "no";
    d.opt_slots = -1;
    ck_assert_ptr_null(kp_rt_model_new(&d, NULL, NULL, &err));
    ck_assert_int_eq(err.code, KARP_EFORMAT);
    ck_assert_str_eq(err.message,
                     "model 'tiny': invalid descriptor: -1 optimizer slots (0 to 2 allowed)");
    d.opt_slots = 0;
    d.train_workspace_bytes = -64;
    ck_assert_ptr_null(kp_rt_model_new(&d, NULL, NULL, &err));
    ck_assert_str_eq(err.message, "model 'tiny': invalid descriptor: train_workspace_bytes -64");
}
END_TEST

START_TEST(test_refusals)
{
    karp_model *m = open_trainee(0);
    float y[8], dy[8] = {0}, loss;
    expect(karp_train_step(NULL, X, T, 2, &loss), KARP_EINVAL, "karp_train_step: model is NULL");
    expect(karp_train_step(m, NULL, T, 2, &loss), KARP_EINVAL, "karp_train_step: x is NULL");
    expect(karp_train_step(m, X, NULL, 2, &loss), KARP_EINVAL, "karp_train_step: target is NULL");
    expect(karp_train_step(m, X, T, 0, &loss), KARP_EINVAL,
           "karp_train_step: n must be between 1 and 4, got 0");
    expect(karp_train_step(m, X, T, 5, &loss), KARP_EINVAL,
           "karp_train_step: n must be between 1 and 4, got 5");
    expect(karp_forward(NULL, X, 1, y), KARP_EINVAL, "karp_forward: model is NULL");
    expect(karp_forward(m, NULL, 1, y), KARP_EINVAL, "karp_forward: x is NULL");
    expect(karp_forward(m, X, -1, y), KARP_EINVAL,
           "karp_forward: n must be between 1 and 4, got -1");
    expect(karp_backward(m, dy, NULL), KARP_EINVAL, "karp_backward: call karp_forward first");
    expect(karp_backward(NULL, dy, NULL), KARP_EINVAL, "karp_backward: model is NULL");
    ck_assert_int_eq(karp_forward(m, X, 1, y), 0);
    expect(karp_backward(m, NULL, NULL), KARP_EINVAL, "karp_backward: dy is NULL");
    expect(karp_apply_gradients(NULL), KARP_EINVAL, "karp_apply_gradients: model is NULL");
    expect(karp_zero_gradients(NULL), KARP_EINVAL, "karp_zero_gradients: model is NULL");
    /* Refused calls changed nothing. */
    karp_info info;
    karp_model_info(m, &info);
    ck_assert_int_eq(info.step, 0);
    karp_close(m);

    /* No loss, no optimizer: forward and backward only. */
    infer_only = tiny_desc();
    m = tiny_open(&infer_only);
    expect(karp_train_step(m, X, T, 2, &loss), KARP_EUNSUPPORTED,
           "karp_train_step: model 'tiny' has no loss");
    expect(karp_apply_gradients(m), KARP_EUNSUPPORTED,
           "karp_apply_gradients: model 'tiny' has no optimizer");
    ck_assert_int_eq(karp_forward(m, X, 2, y), 0);
    ck_assert_int_eq(karp_backward(m, dy, NULL), 0);
    karp_close(m);

    /* A loss without an optimizer: no train step, but forward/backward. */
    static KarpModelDesc loss_only;
    loss_only = tiny_train_desc(0);
    loss_only.apply = NULL;
    loss_only.train_step = NULL;
    loss_only.optimizer = "none";
    m = tiny_open(&loss_only);
    ck_assert_ptr_nonnull(m);
    expect(karp_train_step(m, X, T, 2, &loss), KARP_EUNSUPPORTED,
           "karp_train_step: model 'trainee' has no optimizer");
    expect(karp_apply_gradients(m), KARP_EUNSUPPORTED,
           "karp_apply_gradients: model 'trainee' has no optimizer");
    karp_close(m);

    /* An optimizer without a loss: apply works, train_step does not. */
    static KarpModelDesc opt_only;
    opt_only = tiny_train_desc(1);
    opt_only.train_step = NULL;
    opt_only.target_kind = KARP_TARGET_NONE;
    opt_only.loss = "none";
    m = tiny_open(&opt_only);
    ck_assert_ptr_nonnull(m);
    expect(karp_train_step(m, X, T, 2, &loss), KARP_EUNSUPPORTED,
           "karp_train_step: model 'trainee' has no loss");
    ck_assert_int_eq(karp_apply_gradients(m), 0);
    karp_model_info(m, &info);
    ck_assert_int_eq(info.step, 1);
    ck_assert_int_eq(info.has_train, 0);
    ck_assert_int_eq(info.has_optimizer, 1);
    karp_close(m);
}
END_TEST

static Suite *train_suite(void)
{
    Suite *s = suite_create("runtime_train");
    TCase *tc = tcase_create("train");
    tcase_add_test(tc, test_info_and_params);
    tcase_add_test(tc, test_train_step_counts_and_matches_by_hand);
    tcase_add_test(tc, test_call_seeds);
    tcase_add_test(tc, test_forward_backward_apply);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_no_train_reason);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(train_suite(), CK_FORK_GETENV);
}
