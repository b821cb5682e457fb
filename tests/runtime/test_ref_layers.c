/*
 * test_ref_layers.c — the layer reference kernels of runtime/ref/ on
 * numbers computed by hand (conv, transposed conv, pools with their tie
 * and padding conventions, masking, the bias gradient), and the transposed
 * conv as the exact adjoint of the conv: <conv(x), y> = <x, convT(y)> over
 * strides, paddings (incl. the uneven "same") and dilations.  The
 * gradients themselves are checked against finite differences in
 * tests/passes/test_grad_layers.c.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ref/ref.h"
#include "testutil.h"

/* 1x1x3x3 input 1..9, kernel [[1,0],[0,-1]], bias 10, stride 1, no padding:
 * y[i,j] = x[i,j] - x[i+1,j+1] + 10 = 10 - 4 = 6 everywhere. */
START_TEST(conv_by_hand)
{
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 0, 0, -1}, b = 10;
    KpRefConv s = {.n = 1, .c = 1, .h = 3, .w = 3, .f = 1, .kh = 2, .kw = 2, .oh = 2, .ow = 2,
                   .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    float y[4], dx[9], dw[4] = {0}, db = 0;
    kp_ref_conv2d_forward(y, x, w, &b, &s);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(y[i], 6);
    const float dy[4] = {1, 0, 0, 0};
    kp_ref_conv2d_backward(dx, dw, &db, dy, x, w, &s);
    ck_assert_float_eq(dx[0], 1);
    ck_assert_float_eq(dx[4], -1);
    ck_assert_float_eq(dx[8], 0);
    ck_assert_float_eq(dw[0], 1);     /* x[0,0] */
    ck_assert_float_eq(dw[3], 5);     /* x[1,1] */
    ck_assert_float_eq(db, 1);
    /* padding 1, dilation 2, stride 2 on the same input: output 2x2,
     * y[0,0] = x[-1,-1]*1 - x[1,1] = -5 + 10 */
    s = (KpRefConv){.n = 1, .c = 1, .h = 3, .w = 3, .f = 1, .kh = 2, .kw = 2, .oh = 2, .ow = 2,
                    .sh = 2, .sw = 2, .pt = 1, .pl = 1, .dh = 2, .dw = 2};
    kp_ref_conv2d_forward(y, x, w, &b, &s);
    ck_assert_float_eq(y[0], 5);
    ck_assert_float_eq(y[3], 10 + 5 - 0);   /* x[1,1] - x[3,3](pad) */
}
END_TEST

/* Transposed conv, stride 2, kernel 2x2 of ones on x = [[1,2],[3,4]]:
 * each input pixel fills its own 2x2 block. */
START_TEST(conv_transpose_by_hand)
{
    const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
    KpRefConv s = {.n = 1, .c = 1, .h = 2, .w = 2, .f = 1, .kh = 2, .kw = 2, .oh = 4, .ow = 4,
                   .sh = 2, .sw = 2, .dh = 1, .dw = 1};
    float y[16];
    kp_ref_conv2d_transpose_forward(y, x, w, NULL, &s);
    const float want[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    for (int i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], want[i]);
}
END_TEST

static uint64_t rng = 7;

static float urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* <conv(x), y> = <x, convT(y)> for one weight array: the conv's (f,c,kh,kw)
 * is the transposed conv's (in,out,kh,kw) going from f channels back to c. */
static void adjoint(int64_t h, int64_t w, int64_t k, int64_t st, int64_t pad, int64_t dil,
                    int64_t extra)
{
    int64_t c = 3, f = 2, eff = dil * (k - 1) + 1;
    int64_t oh = (h + 2 * pad + extra - eff) / st + 1, ow = (w + 2 * pad + extra - eff) / st + 1;
    KpRefConv s = {.n = 2, .c = c, .h = h, .w = w, .f = f, .kh = k, .kw = k, .oh = oh, .ow = ow,
                   .sh = st, .sw = st, .pt = pad, .pl = pad, .dh = dil, .dw = dil};
    /* the transposed conv goes from (f, oh, ow) back to (c, h, w) */
    KpRefConv t = {.n = 2, .c = f, .h = oh, .w = ow, .f = c, .kh = k, .kw = k, .oh = h, .ow = w,
                   .sh = st, .sw = st, .pt = pad, .pl = pad, .dh = dil, .dw = dil};
    int64_t nx = 2 * c * h * w, ny = 2 * f * oh * ow, nw = f * c * k * k;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *wt = malloc(nw * 4);
    float *cx = malloc(ny * 4), *ty = malloc(nx * 4);
    for (int64_t i = 0; i < nx; i++)
        x[i] = urand();
    for (int64_t i = 0; i < ny; i++)
        y[i] = urand();
    for (int64_t i = 0; i < nw; i++)
        wt[i] = urand();
    kp_ref_conv2d_forward(cx, x, wt, NULL, &s);
    kp_ref_conv2d_transpose_forward(ty, y, wt, NULL, &t);
    double a = 0, b = 0;
    for (int64_t i = 0; i < ny; i++)
        a += (double)cx[i] * y[i];
    for (int64_t i = 0; i < nx; i++)
        b += (double)x[i] * ty[i];
    ck_assert_msg(fabs(a - b) < 1e-4 * fmax(1, fabs(a)), "h%ld k%ld s%ld p%ld d%ld: %g vs %g",
                  (long)h, (long)k, (long)st, (long)pad, (long)dil, a, b);
    free(x), free(y), free(wt), free(cx), free(ty);
}

START_TEST(conv_transpose_is_adjoint)
{
    adjoint(5, 6, 3, 1, 0, 1, 0);
    adjoint(7, 5, 3, 2, 1, 1, 0);
    adjoint(6, 6, 4, 1, 1, 1, 1);   /* uneven "same": one more at the bottom/right */
    adjoint(8, 7, 2, 3, 0, 2, 0);
    adjoint(1, 1, 3, 1, 1, 1, 0);
}
END_TEST

/* Ties go to the first maximum; padding never wins, even over negatives;
 * avg divides by the whole window, padding included. */
START_TEST(pools_by_hand)
{
    const float x[4] = {2, 2, -3, -1};   /* 1x1x2x2 */
    KpRefConv s = {.n = 1, .c = 1, .h = 2, .w = 2, .kh = 2, .kw = 2, .oh = 1, .ow = 1, .sh = 2,
                   .sw = 2, .dh = 1, .dw = 1};
    float y[4], dx[4];
    const float one[4] = {1, 1, 1, 1};
    kp_ref_maxpool2d_forward(y, x, &s);
    ck_assert_float_eq(y[0], 2);
    kp_ref_maxpool2d_backward(dx, one, x, &s);
    ck_assert_float_eq(dx[0], 1);
    ck_assert_float_eq(dx[1], 0);
    const float neg[4] = {-5, -4, -3, -2};
    /* window 2, stride 1, padding 1 on 2x2: a 3x3 output */
    s = (KpRefConv){.n = 1, .c = 1, .h = 2, .w = 2, .kh = 2, .kw = 2, .oh = 3, .ow = 3, .sh = 1,
                    .sw = 1, .pt = 1, .pl = 1, .dh = 1, .dw = 1};
    float y9[9], one9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    kp_ref_maxpool2d_forward(y9, neg, &s);
    ck_assert_float_eq(y9[0], -5);
    ck_assert_float_eq(y9[4], -2);
    ck_assert_float_eq(y9[8], -2);
    kp_ref_avgpool2d_forward(y9, neg, &s);
    ck_assert_float_eq(y9[0], -5 / 4.0f);
    ck_assert_float_eq(y9[4], -14 / 4.0f);
    kp_ref_avgpool2d_backward(dx, one9, &s);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(dx[i], 1);   /* each pixel is in 4 windows of weight 1/4 */
}
END_TEST

START_TEST(masking_and_bias_by_hand)
{
    const float x[6] = {0, 0, 0, 1, 0, 2}, dy[6] = {1, 2, 3, 4, 5, 6};
    float y[6], dx[6];
    kp_ref_masking_forward(y, x, 0, 3, 2);
    kp_ref_masking_backward(dx, dy, x, 0, 3, 2);
    const float wy[6] = {0, 0, 0, 1, 0, 2}, wdx[6] = {0, 0, 3, 4, 5, 6};
    for (int i = 0; i < 6; i++) {
        ck_assert_float_eq(y[i], wy[i]);
        ck_assert_float_eq(dx[i], wdx[i]);
    }
    float db[3] = {100, 0, 0};
    kp_ref_bias_backward(db, dy, 1, 3, 2);   /* (1,3,2): channel sums 3, 7, 11, accumulated */
    ck_assert_float_eq(db[0], 103);
    ck_assert_float_eq(db[1], 7);
    ck_assert_float_eq(db[2], 11);
}
END_TEST

static Suite *ref_layers_suite(void)
{
    Suite *s = suite_create("ref_layers");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, conv_by_hand);
    tcase_add_test(tc, conv_transpose_by_hand);
    tcase_add_test(tc, conv_transpose_is_adjoint);
    tcase_add_test(tc, pools_by_hand);
    tcase_add_test(tc, masking_and_bias_by_hand);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(ref_layers_suite(), CK_FORK_GETENV);
}
