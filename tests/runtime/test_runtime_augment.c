/*
 * test_runtime_augment.c — the augmentation transforms on small hand-made
 * images, pixel for pixel: hflip reverses rows; random_crop is a shifted
 * window with zeros where the padding came in, every offset reachable;
 * rotate by 0 is the identity, quarter turns move pixels exactly, a 45°
 * turn interpolates as computed by hand; noise has the asked mean and std;
 * the list's order and its draws; per-channel normalization of a sample;
 * the per-sample generator; the checks of a list.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"
#include "runtime/model.h"
#include "testutil.h"

static const double PI = 3.14159265358979323846;

/* x[i] = i + 1: every pixel distinct and nonzero. */
static void iota(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)(i + 1);
}

START_TEST(hflip_reverses_rows)
{
    float x[2 * 2 * 3];
    iota(x, 12);
    kp_aug_hflip(x, 2, 2, 3);
    const float want[12] = {3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10};
    ck_assert_mem_eq(x, want, sizeof want);

    /* Through the list: with probability 1/2, either untouched or flipped. */
    karp_augment aug = {KARP_AUG_HFLIP, 0};
    int64_t shape[3] = {2, 2, 3};
    float tmp[12], orig[12];
    iota(orig, 12);
    int flipped = 0;
    for (int i = 0; i < 400; i++) {
        KpRng r;
        kp_augment_rng(&r, 7, 0, i);
        iota(x, 12);
        kp_augment_sample(x, tmp, 3, shape, 12, &aug, 1, &r);
        int same = memcmp(x, orig, sizeof x) == 0, flip = memcmp(x, want, sizeof x) == 0;
        ck_assert(same || flip);
        flipped += flip;
    }
    ck_assert_int_gt(flipped, 160);
    ck_assert_int_lt(flipped, 240);
}
END_TEST

/* The window of a [1,3,4] image of 1..12 zero-padded by p at offset (dy, dx). */
static void window(float *out, int p, int dy, int dx)
{
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 4; x++) {
            int sy = y + dy - p, sx = x + dx - p;
            out[y * 4 + x] = sy >= 0 && sy < 3 && sx >= 0 && sx < 4 ? (float)(sy * 4 + sx + 1) : 0;
        }
}

START_TEST(random_crop_is_a_shifted_window)
{
    float x[12], tmp[12], want[12];
    /* Offsets given: (0,0) brings zeros in at the top and the left. */
    iota(x, 12);
    kp_aug_crop(x, tmp, 1, 3, 4, 1, 0, 0);
    const float top_left[12] = {0, 0, 0, 0, 0, 1, 2, 3, 0, 5, 6, 7};
    ck_assert_mem_eq(x, top_left, sizeof x);
    iota(x, 12);
    kp_aug_crop(x, tmp, 1, 3, 4, 1, 1, 1); /* the centre: unchanged */
    window(want, 1, 1, 1);
    ck_assert_mem_eq(x, want, sizeof x);
    iota(x, 12);
    kp_aug_crop(x, tmp, 1, 3, 4, 2, 4, 0); /* down 2, right 2 */
    const float shifted[12] = {0, 0, 9, 10, 0, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_mem_eq(x, shifted, sizeof x);

    /* Drawn: every result one of the 25 windows of p = 2, each reached,
     * and the same per (seed, epoch, index). */
    karp_augment aug = {KARP_AUG_RANDOM_CROP, 2};
    int64_t shape[3] = {1, 3, 4};
    int seen[5][5] = {{0}};
    for (int i = 0; i < 1000; i++) {
        KpRng r;
        kp_augment_rng(&r, 3, 1, i);
        iota(x, 12);
        kp_augment_sample(x, tmp, 3, shape, 12, &aug, 1, &r);
        int found = 0;
        for (int dy = 0; dy < 5 && !found; dy++)
            for (int dx = 0; dx < 5 && !found; dx++) {
                window(want, 2, dy, dx);
                if (memcmp(x, want, sizeof x) == 0) {
                    seen[dy][dx]++;
                    found = 1;
                }
            }
        ck_assert(found);
        float again[12];
        kp_augment_rng(&r, 3, 1, i);
        iota(again, 12);
        kp_augment_sample(again, tmp, 3, shape, 12, &aug, 1, &r);
        ck_assert_mem_eq(x, again, sizeof x);
    }
    for (int dy = 0; dy < 5; dy++)
        for (int dx = 0; dx < 5; dx++)
            ck_assert_int_gt(seen[dy][dx], 10);
}
END_TEST

START_TEST(rotate_maps_pixels)
{
    float x[2 * 3 * 3], tmp[18], orig[18];
    iota(orig, 18);
    /* 0: the identity. */
    memcpy(x, orig, sizeof x);
    kp_aug_rotate(x, tmp, 2, 3, 3, 0.0);
    ck_assert_mem_eq(x, orig, sizeof x);
    /* A quarter turn counter-clockwise: out[i][j] = in[j][W-1-i], both
     * channels alike. */
    memcpy(x, orig, sizeof x);
    kp_aug_rotate(x, tmp, 2, 3, 3, PI / 2);
    const float ccw[18] = {3, 6, 9, 2, 5, 8, 1, 4, 7, 12, 15, 18, 11, 14, 17, 10, 13, 16};
    ck_assert_mem_eq(x, ccw, sizeof x);
    /* Clockwise, on an even side (the centre between pixels). */
    float y[16], t16[16];
    iota(y, 16);
    kp_aug_rotate(y, t16, 1, 4, 4, -PI / 2);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            ck_assert_float_eq(y[i * 4 + j], (float)((3 - j) * 4 + i + 1));
    /* 45° on a 5x5 of ones: the centre stays, corner (0,0) reads row 0 at
     * height 2 - 2√2 between the zero above and the ones: 3 - 2√2. */
    float z[25], t25[25];
    for (int i = 0; i < 25; i++)
        z[i] = 1;
    kp_aug_rotate(z, t25, 1, 5, 5, PI / 4);
    ck_assert_float_eq_tol(z[12], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(z[0], (float)(3 - 2 * sqrt(2.0)), 1e-6f);

    /* Through the list: degrees 0 is the identity; a drawn angle is the
     * same per (seed, epoch, index) and changes the image. */
    karp_augment aug = {KARP_AUG_ROTATE, 0};
    int64_t shape[3] = {2, 3, 3};
    KpRng r;
    kp_augment_rng(&r, 1, 0, 0);
    memcpy(x, orig, sizeof x);
    kp_augment_sample(x, tmp, 3, shape, 18, &aug, 1, &r);
    ck_assert_mem_eq(x, orig, sizeof x);
    aug.value = 30;
    kp_augment_rng(&r, 1, 0, 5);
    memcpy(x, orig, sizeof x);
    kp_augment_sample(x, tmp, 3, shape, 18, &aug, 1, &r);
    ck_assert(memcmp(x, orig, sizeof x) != 0);
    /* The angle is the first draw: a = 30 (2u - 1) degrees. */
    KpRng r2;
    kp_augment_rng(&r2, 1, 0, 5);
    double a = 30.0 * (2.0 * (double)kp_rng_uniform(&r2) - 1.0);
    float w[18];
    memcpy(w, orig, sizeof w);
    kp_aug_rotate(w, tmp, 2, 3, 3, a * PI / 180);
    ck_assert_mem_eq(x, w, sizeof x);
}
END_TEST

START_TEST(noise_mean_and_std)
{
    enum { N = 200000 };
    float *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y);
    karp_augment aug = {KARP_AUG_NOISE, 0.5f};
    int64_t shape[3] = {N, 0, 0};
    KpRng r;
    kp_augment_rng(&r, 9, 2, 4);
    kp_augment_sample(x, NULL, 1, shape, N, &aug, 1, &r);
    double sum = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        sum += x[i];
        sq += (double)x[i] * x[i];
    }
    double mean = sum / N, sd = sqrt(sq / N - mean * mean);
    ck_assert_double_lt(fabs(mean), 0.01);
    ck_assert_double_lt(fabs(sd - 0.5), 0.005);
    kp_augment_rng(&r, 9, 2, 4);
    kp_augment_sample(y, NULL, 1, shape, N, &aug, 1, &r);
    ck_assert_mem_eq(x, y, N * sizeof *x);
    kp_augment_rng(&r, 9, 2, 5); /* another sample: other noise */
    kp_augment_sample(y, NULL, 1, shape, N, &aug, 1, &r);
    ck_assert(memcmp(x, y, N * sizeof *x) != 0);
    free(x);
    free(y);
}
END_TEST

/* [hflip, random_crop 1] and the reverse: each transform draws in turn
 * (hflip one 64-bit draw, its top bit; the crop dy then dx below 2p+1). */
START_TEST(order_of_application)
{
    karp_augment fc[2] = {{KARP_AUG_HFLIP, 0}, {KARP_AUG_RANDOM_CROP, 1}};
    karp_augment cf[2] = {{KARP_AUG_RANDOM_CROP, 1}, {KARP_AUG_HFLIP, 0}};
    int64_t shape[3] = {1, 3, 4};
    float x[12], want[12], tmp[12];
    int differ = 0;
    for (int i = 0; i < 64; i++) {
        KpRng r, d;
        kp_augment_rng(&r, 5, 0, i);
        kp_augment_rng(&d, 5, 0, i);
        iota(x, 12);
        kp_augment_sample(x, tmp, 3, shape, 12, fc, 2, &r);
        iota(want, 12);
        if (kp_rng_next(&d) >> 63)
            kp_aug_hflip(want, 1, 3, 4);
        int64_t dy = (int64_t)kp_rng_below(&d, 3), dx = (int64_t)kp_rng_below(&d, 3);
        kp_aug_crop(want, tmp, 1, 3, 4, 1, dy, dx);
        ck_assert_mem_eq(x, want, sizeof x);

        kp_augment_rng(&r, 5, 0, i);
        kp_augment_rng(&d, 5, 0, i);
        iota(x, 12);
        kp_augment_sample(x, tmp, 3, shape, 12, cf, 2, &r);
        iota(want, 12);
        dy = (int64_t)kp_rng_below(&d, 3);
        dx = (int64_t)kp_rng_below(&d, 3);
        kp_aug_crop(want, tmp, 1, 3, 4, 1, dy, dx);
        if (kp_rng_next(&d) >> 63)
            kp_aug_hflip(want, 1, 3, 4);
        ck_assert_mem_eq(x, want, sizeof x);
        differ += dx != 1;
    }
    ck_assert_int_gt(differ, 0);
}
END_TEST

START_TEST(normalize_per_channel)
{
    KpDataset ds = {.count = 1, .rank = 3, .shape = {2, 1, 2}, .sample_size = 4};
    float x[4] = {0.5f, 1.0f, 0.25f, 0.75f};
    const float mean[2] = {0.5f, 0.25f}, std[2] = {0.5f, 0.25f};
    ck_assert_int_eq(kp_data_normalize_check(&ds, mean, 2, std, 2), 0);
    kp_data_normalize_sample(&ds, x, mean, 2, std, 2);
    const float want[4] = {0, 1, 0, 2};
    ck_assert_mem_eq(x, want, sizeof x);
    ck_assert_int_eq(kp_data_normalize_check(&ds, mean, 3, std, 2), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "normalize: 3 means and 2 stds for 2 channels (give 1 or 2)");
    const float zero = 0;
    ck_assert_int_eq(kp_data_normalize_check(&ds, mean, 1, &zero, 1), KARP_EINVAL);
}
END_TEST

START_TEST(generator_per_sample)
{
    KpRng a, b;
    kp_augment_rng(&a, 1, 2, 3);
    kp_augment_rng(&b, 1, 2, 3);
    ck_assert_uint_eq(kp_rng_next(&a), kp_rng_next(&b));
    uint64_t base;
    kp_augment_rng(&a, 1, 2, 3);
    base = kp_rng_next(&a);
    kp_augment_rng(&a, 0, 2, 3);
    ck_assert_uint_ne(kp_rng_next(&a), base);
    kp_augment_rng(&a, 1, 3, 3);
    ck_assert_uint_ne(kp_rng_next(&a), base);
    kp_augment_rng(&a, 1, 2, 4);
    ck_assert_uint_ne(kp_rng_next(&a), base);
    kp_augment_rng(&a, 1, 3, 2); /* not symmetric in epoch and index */
    ck_assert_uint_ne(kp_rng_next(&a), base);
}
END_TEST

START_TEST(check_refuses)
{
    karp_error err;
    karp_augment ok[4] = {{KARP_AUG_HFLIP, 0}, {KARP_AUG_RANDOM_CROP, 4},
                          {KARP_AUG_ROTATE, 15}, {KARP_AUG_NOISE, 0.1f}};
    ck_assert_int_eq(kp_augment_check(ok, 4, 3, "augment", &err), 0);
    ck_assert_int_eq(kp_augment_check(NULL, 0, 1, "augment", &err), 0);
    ck_assert_int_eq(kp_augment_check(ok + 3, 1, 1, "augment", &err), 0); /* noise: any rank */

    ck_assert_int_eq(kp_augment_check(ok, 4, 1, "augment", &err), KARP_EINVAL);
    ck_assert_str_eq(err.message, "augment[0]: hflip needs image samples [C,H,W], these have "
                                  "rank 1 (only noise applies to them)");
    karp_augment bad = {9, 0};
    ck_assert_int_eq(kp_augment_check(&bad, 1, 3, "augment", &err), KARP_EINVAL);
    ck_assert_str_eq(err.message, "augment[0]: unknown kind 9");
    bad = (karp_augment){KARP_AUG_RANDOM_CROP, 1.5f};
    ck_assert_int_eq(kp_augment_check(&bad, 1, 3, "augment", &err), KARP_EINVAL);
    ck_assert_str_eq(err.message, "augment[0]: random_crop: bad value 1.5 (padding: an integer >= 0)");
    bad = (karp_augment){KARP_AUG_ROTATE, 200};
    ck_assert_int_eq(kp_augment_check(&bad, 1, 3, "aug", &err), KARP_EINVAL);
    ck_assert_str_eq(err.message, "aug[0]: rotate: bad value 200 (degrees: 0 to 180)");
    bad = (karp_augment){KARP_AUG_NOISE, -1};
    ck_assert_int_eq(kp_augment_check(&bad, 1, 3, "augment", &err), KARP_EINVAL);
    ck_assert_str_eq(err.message, "augment[0]: noise: bad value -1 (std: >= 0)");
    bad = (karp_augment){KARP_AUG_NOISE, NAN};
    ck_assert_int_eq(kp_augment_check(&bad, 1, 3, "augment", &err), KARP_EINVAL);
    ck_assert_int_eq(kp_augment_check(ok, 65, 3, "augment", &err), KARP_EINVAL);
    ck_assert_str_eq(err.message, "augment: 65 transforms (0 to 64, and a list)");
    ck_assert_int_eq(kp_augment_check(NULL, 2, 3, "augment", &err), KARP_EINVAL);
    ck_assert_str_eq(kp_augment_name(KARP_AUG_ROTATE), "rotate");
    ck_assert_ptr_null(kp_augment_name(0));
}
END_TEST

static Suite *augment_suite(void)
{
    Suite *s = suite_create("runtime_augment");
    TCase *tc = tcase_create("augment");
    tcase_add_test(tc, hflip_reverses_rows);
    tcase_add_test(tc, random_crop_is_a_shifted_window);
    tcase_add_test(tc, rotate_maps_pixels);
    tcase_add_test(tc, noise_mean_and_std);
    tcase_add_test(tc, order_of_application);
    tcase_add_test(tc, normalize_per_channel);
    tcase_add_test(tc, generator_per_sample);
    tcase_add_test(tc, check_refuses);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(augment_suite(), CK_FORK_GETENV);
}
