/*
 * test_ref_losses.c — the loss reference kernels (runtime/ref/loss.c):
 * forwards on values computed by hand, including the numerically hard
 * ends (large logits, p = 0 or 1), and backwards against central finite
 * differences of the forward.  (In tests/runtime rather than tests/ref:
 * it needs only libkarprt.)
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ref/ref.h"
#include "testutil.h"

START_TEST(cross_entropy_forward)
{
    /* row 0: log 3; row 1: log(e + e^2 + e^3) - 3 */
    const float logits[6] = {0, 0, 0, 1, 2, 3};
    const int32_t labels[2] = {1, 2};
    double want = (log(3.0) + log(exp(1.0) + exp(2.0) + exp(3.0)) - 3) / 2;
    ck_assert_float_eq_tol(kp_ref_cross_entropy_forward(logits, labels, 2, 3), want, 1e-6);
    /* the row max is subtracted: no overflow at 1000 */
    const float big[2] = {1000, 0};
    const int32_t l0 = 0, l1 = 1;
    ck_assert_float_eq_tol(kp_ref_cross_entropy_forward(big, &l0, 1, 2), 0, 1e-6);
    ck_assert_float_eq_tol(kp_ref_cross_entropy_forward(big, &l1, 1, 2), 1000, 1e-3);
    float dl[2];
    kp_ref_cross_entropy_backward(dl, big, &l1, 1, 2);
    ck_assert_float_eq_tol(dl[0], 1, 1e-6);
    ck_assert_float_eq_tol(dl[1], -1, 1e-6);
}
END_TEST

START_TEST(mse_bce_forward)
{
    const float p[3] = {1, 2, 3}, t[3] = {1, 0, 5};
    ck_assert_float_eq_tol(kp_ref_mse_forward(p, t, 3), 8.0 / 3, 1e-6);
    const float q[2] = {0.5f, 0.9f}, u[2] = {1, 0};
    ck_assert_float_eq_tol(kp_ref_bce_forward(q, u, 2), (log(2.0) - log(1 - 0.9f)) / 2, 1e-6);
    /* PyTorch clamps each log at -100 */
    const float zero_one[2] = {0, 1}, ones[2] = {1, 1};
    ck_assert_float_eq_tol(kp_ref_bce_forward(zero_one, ones, 2), 50, 1e-5);
    const float z[2] = {0, 2};
    ck_assert_float_eq_tol(kp_ref_bce_logits_forward(z, u, 2),
                           (log(2.0) + 2 + log1p(exp(-2.0))) / 2, 1e-6);
    const float far[2] = {100, -100};
    ck_assert_float_eq_tol(kp_ref_bce_logits_forward(far, ones, 2), 50, 1e-4);
}
END_TEST

typedef float (*LossFn)(const float *p, const float *t, int64_t count);
typedef void (*LossGradFn)(float *dp, const float *p, const float *t, int64_t count);

/* max |analytic - numeric| / max|numeric| with central differences, h = 1e-3 */
static double fd_error(LossFn f, LossGradFn df, float *p, const float *t, int64_t count)
{
    float *dp = malloc((size_t)count * sizeof *dp);
    df(dp, p, t, count);
    double diff = 0, scale = 1e-6;
    for (int64_t i = 0; i < count; i++) {
        float keep = p[i], h = 1e-3f;
        p[i] = keep + h;
        double up = f(p, t, count);
        p[i] = keep - h;
        double down = f(p, t, count);
        p[i] = keep;
        double num = (up - down) / (double)(2 * h);
        diff = fmax(diff, fabs(dp[i] - num));
        scale = fmax(scale, fabs(num));
    }
    free(dp);
    return diff / scale;
}

static const int32_t *ce_labels;
static int64_t ce_classes;

static float ce_forward(const float *p, const float *t, int64_t count)
{
    return kp_ref_cross_entropy_forward(p, ce_labels, count / ce_classes, ce_classes);
}

static void ce_backward(float *dp, const float *p, const float *t, int64_t count)
{
    kp_ref_cross_entropy_backward(dp, p, ce_labels, count / ce_classes, ce_classes);
}

START_TEST(backward_vs_finite_differences)
{
    enum { COUNT = 15 };
    float p[COUNT], t[COUNT], prob[COUNT];
    int32_t labels[5] = {0, 2, 1, 2, 0};
    for (int i = 0; i < COUNT; i++) {
        p[i] = (float)sin(1.7 * i + 0.3) * 2;
        t[i] = (float)(0.5 + 0.45 * cos(2.3 * i));
        prob[i] = (float)(0.1 + 0.8 * (0.5 + 0.5 * sin(0.9 * i)));
    }
    ck_assert_double_lt(fd_error(kp_ref_mse_forward, kp_ref_mse_backward, p, t, COUNT), 1e-3);
    ck_assert_double_lt(fd_error(kp_ref_bce_forward, kp_ref_bce_backward, prob, t, COUNT), 1e-3);
    ck_assert_double_lt(
        fd_error(kp_ref_bce_logits_forward, kp_ref_bce_logits_backward, p, t, COUNT), 1e-3);
    ce_labels = labels;
    ce_classes = 3;
    ck_assert_double_lt(fd_error(ce_forward, ce_backward, p, t, COUNT), 1e-3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ref_losses");
    TCase *tc = tcase_create("losses");
    tcase_add_test(tc, cross_entropy_forward);
    tcase_add_test(tc, mse_bce_forward);
    tcase_add_test(tc, backward_vs_finite_differences);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK_GETENV);
}
