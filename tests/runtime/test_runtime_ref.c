/*
 * test_runtime_ref.c — the reference kernels: forwards on values computed
 * by hand, backwards against central finite differences in double of the
 * loss L = sum(dy * f(x)).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ref/ref.h"
#include "testutil.h"

START_TEST(test_dense_forward)
{
    /* x (2,3), w (2,3), b (2) */
    const float x[6] = {1, 2, 3, -1, 0, 2};
    const float w[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    const float b[2] = {10, -1};
    float y[4];
    kp_ref_dense_forward(y, x, w, b, 2, 3, 2);
    ck_assert_float_eq(y[0], 10 + 1 - 3);
    ck_assert_float_eq(y[1], -1 + 3);
    ck_assert_float_eq(y[2], 10 - 1 - 2);
    ck_assert_float_eq(y[3], -1 + 0.5f);
    kp_ref_dense_forward(y, x, w, NULL, 2, 3, 2);
    ck_assert_float_eq(y[0], -2);
    ck_assert_float_eq(y[3], 0.5f);
}
END_TEST

START_TEST(test_activation_forward)
{
    const float x[5] = {-2, -0.5f, 0, 0.5f, 3};
    float y[5];
    kp_ref_relu_forward(y, x, 5);
    const float relu[5] = {0, 0, 0, 0.5f, 3};
    ck_assert_mem_eq(y, relu, sizeof y);
    kp_ref_leaky_relu_forward(y, x, 0.1f, 5);
    ck_assert_float_eq_tol(y[0], -0.2f, 1e-7f);
    ck_assert_float_eq_tol(y[1], -0.05f, 1e-7f);
    ck_assert_float_eq(y[4], 3);
    kp_ref_sigmoid_forward(y, x, 5);
    ck_assert_float_eq(y[2], 0.5f);
    ck_assert_float_eq_tol(y[4], 0.95257413f, 1e-6f);
    ck_assert_float_eq_tol(y[0], 0.11920292f, 1e-6f);
    kp_ref_tanh_forward(y, x, 5);
    ck_assert_float_eq(y[2], 0);
    ck_assert_float_eq_tol(y[3], 0.46211716f, 1e-6f);
    ck_assert_float_eq_tol(y[0], -0.96402758f, 1e-6f);
}
END_TEST

START_TEST(test_softmax_forward)
{
    /* Row 0: equal logits; row 1: ln 1, ln 2, ln 5 -> 1/8, 2/8, 5/8;
     * row 2: huge logits, finite only because the max is subtracted. */
    const float x[9] = {3, 3, 3, 0, logf(2), logf(5), 1000, 1000, 0};
    float y[9];
    kp_ref_softmax_forward(y, x, 3, 3);
    for (int j = 0; j < 3; j++)
        ck_assert_float_eq_tol(y[j], 1.0f / 3, 1e-7f);
    ck_assert_float_eq_tol(y[3], 0.125f, 1e-7f);
    ck_assert_float_eq_tol(y[4], 0.25f, 1e-7f);
    ck_assert_float_eq_tol(y[5], 0.625f, 1e-7f);
    ck_assert_float_eq(y[6], 0.5f);
    ck_assert_float_eq(y[7], 0.5f);
    ck_assert_float_eq(y[8], 0.0f);
}
END_TEST

/* Deterministic pseudo-random values in [-1, 1), away from 0 by 0.05
 * (relu's kink), from a small LCG. */
static void fill(float *a, int n, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        float v = (float)(seed >> 8) / 16777216.0f * 2 - 1;
        a[i] = fabsf(v) < 0.05f ? v + 0.1f : v;
    }
}

/* Elementwise op through a common signature, to share the gradient check. */
typedef void (*Fwd)(float *y, const float *x, int64_t n);
typedef void (*Bwd)(float *dx, const float *dy, const float *x, const float *y, int64_t n);

static void leaky_fwd(float *y, const float *x, int64_t n) { kp_ref_leaky_relu_forward(y, x, 0.2f, n); }
static void relu_bwd(float *dx, const float *dy, const float *x, const float *y, int64_t n)
{ kp_ref_relu_backward(dx, dy, x, n); }
static void leaky_bwd(float *dx, const float *dy, const float *x, const float *y, int64_t n)
{ kp_ref_leaky_relu_backward(dx, dy, x, 0.2f, n); }
static void sigmoid_bwd(float *dx, const float *dy, const float *x, const float *y, int64_t n)
{ kp_ref_sigmoid_backward(dx, dy, y, n); }
static void tanh_bwd(float *dx, const float *dy, const float *x, const float *y, int64_t n)
{ kp_ref_tanh_backward(dx, dy, y, n); }

/* sum(dy * f(x)) in double, f through the float forward at one point. */
static double elementwise_loss(Fwd f, const float *dy, double x)
{
    float xf = (float)x, y;
    f(&y, &xf, 1);
    return (double)dy[0] * y;
}

static void check_elementwise(Fwd f, Bwd b)
{
    enum { N = 40 };
    float x[N], y[N], dy[N], dx[N];
    fill(x, N, 1);
    for (int i = 0; i < N; i++)
        x[i] *= 3;
    fill(dy, N, 2);
    f(y, x, N);
    b(dx, dy, x, y, N);
    for (int i = 0; i < N; i++) {
        double h = 1e-3;
        double num = (elementwise_loss(f, &dy[i], x[i] + h) - elementwise_loss(f, &dy[i], x[i] - h)) /
                     (2 * h);
        ck_assert_msg(fabs(num - dx[i]) < 2e-3, "i=%d x=%g: numeric %g, analytic %g", i, x[i], num,
                      dx[i]);
    }
}

START_TEST(test_activation_backward)
{
    check_elementwise(kp_ref_relu_forward, relu_bwd);
    check_elementwise(leaky_fwd, leaky_bwd);
    check_elementwise(kp_ref_sigmoid_forward, sigmoid_bwd);
    check_elementwise(kp_ref_tanh_forward, tanh_bwd);
}
END_TEST

/* L = sum(dy * dense(x, w, b)) computed in double, for finite differences. */
enum { DN = 3, DIN = 4, DOUT = 5 };
static double dense_loss(const double *x, const double *w, const double *b, const float *dy)
{
    double l = 0;
    for (int i = 0; i < DN; i++)
        for (int o = 0; o < DOUT; o++) {
            double acc = b[o];
            for (int k = 0; k < DIN; k++)
                acc += x[i * DIN + k] * w[o * DIN + k];
            l += dy[i * DOUT + o] * acc;
        }
    return l;
}

/* d L / d v[i] by central differences, v one of the double copies. */
static double numeric(double *v, int i, const double *x, const double *w, const double *b,
                      const float *dy)
{
    double h = 1e-5, keep = v[i];
    v[i] = keep + h;
    double up = dense_loss(x, w, b, dy);
    v[i] = keep - h;
    double down = dense_loss(x, w, b, dy);
    v[i] = keep;
    return (up - down) / (2 * h);
}

START_TEST(test_dense_backward)
{
    float x[DN * DIN], w[DOUT * DIN], dy[DN * DOUT];
    fill(x, DN * DIN, 3);
    fill(w, DOUT * DIN, 4);
    fill(dy, DN * DOUT, 5);
    double xd[DN * DIN], wd[DOUT * DIN], bd[DOUT] = {0.1, -0.2, 0.3, 0, 1};
    for (int i = 0; i < DN * DIN; i++)
        xd[i] = x[i];
    for (int i = 0; i < DOUT * DIN; i++)
        wd[i] = w[i];

    float dx[DN * DIN], dw[DOUT * DIN], db[DOUT];
    for (int i = 0; i < DOUT * DIN; i++)
        dw[i] = 1.0f; /* dw and db accumulate */
    for (int i = 0; i < DOUT; i++)
        db[i] = -1.0f;
    memset(dx, 0x7f, sizeof dx); /* dx is overwritten */
    kp_ref_dense_backward(dx, dw, db, dy, x, w, DN, DIN, DOUT);
    for (int i = 0; i < DN * DIN; i++)
        ck_assert_double_eq_tol(dx[i], numeric(xd, i, xd, wd, bd, dy), 1e-5);
    for (int i = 0; i < DOUT * DIN; i++)
        ck_assert_double_eq_tol(dw[i] - 1.0, numeric(wd, i, xd, wd, bd, dy), 1e-5);
    for (int i = 0; i < DOUT; i++)
        ck_assert_double_eq_tol(db[i] + 1.0, numeric(bd, i, xd, wd, bd, dy), 1e-5);

    /* NULL outputs are skipped. */
    kp_ref_dense_backward(NULL, dw, NULL, dy, x, w, DN, DIN, DOUT);
    kp_ref_dense_backward(dx, NULL, NULL, dy, x, w, DN, DIN, DOUT);
}
END_TEST

/* L = sum(dy * softmax(x)) for one row, in double. */
static double softmax_loss(const double *x, const float *dy, int n)
{
    double max = x[0], sum = 0, l = 0;
    for (int j = 1; j < n; j++)
        max = fmax(max, x[j]);
    for (int j = 0; j < n; j++)
        sum += exp(x[j] - max);
    for (int j = 0; j < n; j++)
        l += dy[j] * exp(x[j] - max) / sum;
    return l;
}

START_TEST(test_softmax_backward)
{
    enum { R = 3, C = 6 };
    float x[R * C], y[R * C], dy[R * C], dx[R * C];
    fill(x, R * C, 6);
    for (int i = 0; i < R * C; i++)
        x[i] *= 4;
    fill(dy, R * C, 7);
    kp_ref_softmax_forward(y, x, R, C);
    kp_ref_softmax_backward(dx, dy, y, R, C);
    for (int r = 0; r < R; r++) {
        double xd[C];
        for (int j = 0; j < C; j++)
            xd[j] = x[r * C + j];
        for (int j = 0; j < C; j++) {
            double h = 1e-5, keep = xd[j];
            xd[j] = keep + h;
            double up = softmax_loss(xd, dy + r * C, C);
            xd[j] = keep - h;
            double down = softmax_loss(xd, dy + r * C, C);
            xd[j] = keep;
            ck_assert_double_eq_tol(dx[r * C + j], (up - down) / (2 * h), 1e-5);
        }
    }
}
END_TEST

static Suite *ref_suite(void)
{
    Suite *s = suite_create("runtime_ref");
    TCase *tc = tcase_create("forward");
    tcase_add_test(tc, test_dense_forward);
    tcase_add_test(tc, test_activation_forward);
    tcase_add_test(tc, test_softmax_forward);
    suite_add_tcase(s, tc);
    tc = tcase_create("backward");
    tcase_add_test(tc, test_dense_backward);
    tcase_add_test(tc, test_activation_backward);
    tcase_add_test(tc, test_softmax_backward);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(ref_suite(), CK_FORK_GETENV);
}
