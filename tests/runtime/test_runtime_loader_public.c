/*
 * test_runtime_loader_public.c — karp_data.h on a small IDX set written
 * here (label = sample index, so a batch names its samples): the dataset
 * accessors; the loader's batches (every sample once per epoch, the
 * partial last one, the same for the same (seed, epoch), with and without
 * the background thread, augmented or not); skip; normalization after
 * augmentation; the errors.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "karp_data.h"
#include "runtime/data.h"
#include "testutil.h"

enum { N = 10, SIDE = 4, SIZE = SIDE * SIDE };

static char *dir, spec[512];

static void put_idx(const char *name, int rank, const int *dims, const unsigned char *data,
                    long len)
{
    char *path = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_idx(path, rank, dims, data, len), 0);
    free(path);
}

/* Pixel j of sample i: (i * 16 + j + 1) / 255. */
static void setup(void)
{
    dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    unsigned char pix[N * SIZE], lab[N];
    for (int i = 0; i < N * SIZE; i++)
        pix[i] = (unsigned char)(i + 1);
    for (int i = 0; i < N; i++)
        lab[i] = (unsigned char)i;
    int idims[3] = {N, SIDE, SIDE}, ldims[1] = {N};
    put_idx("train-images-idx3-ubyte.gz", 3, idims, pix, sizeof pix);
    put_idx("train-labels-idx1-ubyte.gz", 1, ldims, lab, sizeof lab);
    snprintf(spec, sizeof spec, "mnist:%s", dir);
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
}

START_TEST(dataset_accessors)
{
    karp_error err = {0};
    karp_dataset *d = karp_data_open(spec, "train", &err);
    ck_assert_msg(d != NULL, "%s", err.message);
    ck_assert_int_eq(karp_data_count(d), N);
    int64_t shape[3];
    ck_assert_int_eq(karp_data_shape(d, shape), 3);
    ck_assert_int_eq(shape[0], 1);
    ck_assert_int_eq(shape[1], SIDE);
    ck_assert_int_eq(shape[2], SIDE);
    ck_assert_int_eq(karp_data_sample_size(d), SIZE);
    ck_assert_int_eq(karp_data_classes(d), N);
    ck_assert_float_eq(karp_data_x(d)[17], 18.0f / 255.0f);
    ck_assert_int_eq(karp_data_labels(d)[7], 7);
    const float mean = 0.5f, sd = 0.25f;
    ck_assert_int_eq(karp_data_normalize(d, &mean, 1, &sd, 1), 0);
    ck_assert_float_eq(karp_data_x(d)[17], (18.0f / 255.0f - 0.5f) / 0.25f);
    karp_data_close(d);

    ck_assert_ptr_null(karp_data_open(spec, "test", &err)); /* no t10k files */
    ck_assert_int_eq(err.code, KARP_EIO);
    ck_assert_ptr_null(karp_data_open("nonsense", "train", &err));
    ck_assert_int_eq(err.code, KARP_EINVAL);
    karp_data_close(NULL);
}
END_TEST

/* One epoch's batches: the labels in order into ids, each batch's n into
 * ns; every sample's pixels checked against its label when plain. */
static int epoch_of(karp_loader *l, const karp_dataset *d, int64_t e, int plain, int *ids,
                    int64_t *ns, float *xs)
{
    ck_assert_int_eq(karp_loader_epoch(l, e), 0);
    int k = 0, nb = 0;
    const float *x;
    const int32_t *lab;
    int64_t n;
    while ((n = karp_loader_next(l, &x, &lab)) > 0) {
        for (int64_t i = 0; i < n; i++, k++) {
            ids[k] = lab[i];
            if (xs)
                memcpy(xs + k * SIZE, x + i * SIZE, SIZE * sizeof(float));
            if (plain)
                ck_assert_mem_eq(x + i * SIZE, karp_data_x(d) + lab[i] * SIZE,
                                 SIZE * sizeof(float));
        }
        ns[nb++] = n;
    }
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(karp_loader_next(l, &x, &lab), 0); /* stays at the end */
    return nb;
}

START_TEST(batches_once_per_epoch)
{
    karp_dataset *d = karp_data_open(spec, "train", NULL);
    ck_assert_ptr_nonnull(d);
    karp_loader *l = karp_loader_new(d, 3, 42, NULL, 0, NULL);
    ck_assert_ptr_nonnull(l);
    int ids[N], again[N], other[N];
    int64_t ns[8];
    ck_assert_int_eq(epoch_of(l, d, 0, 1, ids, ns, NULL), 4);
    ck_assert_int_eq(ns[0], 3);
    ck_assert_int_eq(ns[3], 1); /* the partial last batch */
    int seen[N] = {0};
    for (int i = 0; i < N; i++)
        seen[ids[i]]++;
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(seen[i], 1);
    epoch_of(l, d, 1, 1, other, ns, NULL);
    ck_assert(memcmp(ids, other, sizeof ids) != 0); /* another epoch, another order */
    epoch_of(l, d, 0, 1, again, ns, NULL);
    ck_assert_mem_eq(ids, again, sizeof ids);

    /* The batcher's order: a run resumed with either sees the same. */
    KpBatcher b;
    ck_assert_int_eq(kp_batcher_init(&b, kp_dataset_of(d), 3, 42), 0);
    kp_batcher_epoch(&b, 1);
    const int32_t *lab;
    int k = 0;
    int64_t n;
    while ((n = kp_batcher_next(&b, NULL, &lab, NULL)) > 0)
        for (int64_t i = 0; i < n; i++)
            ck_assert_int_eq(lab[i], other[k++]);
    kp_batcher_free(&b);
    karp_loader_free(l);
    karp_data_close(d);
}
END_TEST

START_TEST(threaded_equals_synchronous)
{
    karp_dataset *d = karp_data_open(spec, "train", NULL);
    ck_assert_ptr_nonnull(d);
    karp_augment aug[4] = {{KARP_AUG_HFLIP, 0}, {KARP_AUG_RANDOM_CROP, 1},
                           {KARP_AUG_ROTATE, 20}, {KARP_AUG_NOISE, 0.05f}};
    karp_loader *t = karp_loader_new(d, 4, 7, aug, 4, NULL);
    KpLoader *s = kp_loader_new(kp_dataset_of(d), 4, 7, aug, 4, 0, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(s);
    static float xt[N * SIZE], xs[N * SIZE];
    int it[N], is[N];
    int64_t ns[8];
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(epoch_of(t, d, e, 0, it, ns, xt), 3);
        ck_assert_int_eq(epoch_of(s, d, e, 0, is, ns, xs), 3);
        ck_assert_mem_eq(it, is, sizeof it);
        ck_assert_mem_eq(xt, xs, sizeof xt);
        for (int i = 0; i < N; i++) /* augmented: not the dataset's pixels */
            ck_assert(memcmp(xt + i * SIZE, karp_data_x(d) + it[i] * SIZE, SIZE * 4) != 0);
    }
    /* A sample's pixels depend on (seed, epoch, sample), not its batch. */
    karp_loader *b2 = karp_loader_new(d, 2, 7, aug, 4, NULL);
    static float x2[N * SIZE];
    int i2[N];
    epoch_of(b2, d, 2, 0, i2, ns, x2);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (i2[i] == it[j])
                ck_assert_mem_eq(x2 + i * SIZE, xt + j * SIZE, SIZE * sizeof(float));
    karp_loader_free(b2);
    karp_loader_free(t);
    karp_loader_free(s);
    karp_data_close(d);
}
END_TEST

START_TEST(skip_resumes)
{
    karp_dataset *d = karp_data_open(spec, "train", NULL);
    karp_augment aug = {KARP_AUG_NOISE, 0.1f};
    karp_loader *l = karp_loader_new(d, 3, 1, &aug, 1, NULL);
    int ids[N];
    int64_t ns[8];
    static float full[N * SIZE];
    epoch_of(l, d, 5, 0, ids, ns, full);
    ck_assert_int_eq(karp_loader_epoch(l, 5), 0);
    ck_assert_int_eq(karp_loader_skip(l, 2), 0);
    const float *x;
    const int32_t *lab;
    ck_assert_int_eq(karp_loader_next(l, &x, &lab), 3);
    ck_assert_int_eq(lab[0], ids[6]);
    ck_assert_mem_eq(x, full + 6 * SIZE, 3 * SIZE * sizeof(float));
    ck_assert_int_eq(karp_loader_next(l, &x, &lab), 1);
    ck_assert_int_eq(karp_loader_next(l, &x, &lab), 0);
    ck_assert_int_eq(karp_loader_epoch(l, 5), 0);
    ck_assert_int_eq(karp_loader_skip(l, 9), 0); /* past the end: the end */
    ck_assert_int_eq(karp_loader_next(l, &x, &lab), 0);
    ck_assert_int_eq(karp_loader_skip(l, -1), KARP_EINVAL);
    karp_loader_free(l);
    karp_data_close(d);
}
END_TEST

START_TEST(normalize_after_augment)
{
    karp_dataset *d = karp_data_open(spec, "train", NULL);
    karp_augment aug = {KARP_AUG_RANDOM_CROP, 2};
    karp_loader *l = karp_loader_new(d, 4, 3, &aug, 1, NULL);
    const float mean = 0.5f, sd = 0.5f;
    ck_assert_int_eq(karp_loader_normalize(l, &mean, 1, &sd, 1), 0);
    const float *x;
    const int32_t *lab;
    int64_t n, padded = 0;
    while ((n = karp_loader_next(l, &x, &lab)) > 0)
        for (int64_t i = 0; i < n * SIZE; i++) {
            /* a pixel moved by the crop, normalized, or padding: black, -1 */
            padded += x[i] == -1.0f;
            int found = x[i] == -1.0f;
            for (int j = 0; j < N * SIZE && !found; j++)
                found = x[i] == (karp_data_x(d)[j] - 0.5f) / 0.5f;
            ck_assert(found);
        }
    ck_assert_int_gt(padded, 0);
    ck_assert_int_eq(karp_loader_normalize(l, &mean, 2, &sd, 1), KARP_EINVAL);
    ck_assert_int_eq(karp_loader_normalize(l, NULL, 0, NULL, 0), 0); /* off */
    ck_assert_int_eq(karp_loader_epoch(l, 0), 0);
    n = karp_loader_next(l, &x, &lab);
    for (int64_t i = 0; i < n * SIZE; i++)
        ck_assert(x[i] >= 0 && x[i] <= 1);
    karp_loader_free(l);
    karp_data_close(d);
}
END_TEST

START_TEST(loader_errors)
{
    karp_error err = {0};
    karp_dataset *d = karp_data_open(spec, "train", NULL);
    ck_assert_ptr_null(karp_loader_new(NULL, 3, 0, NULL, 0, &err));
    ck_assert_str_eq(err.message, "karp_loader_new: dataset is NULL");
    ck_assert_ptr_null(karp_loader_new(d, 0, 0, NULL, 0, &err));
    ck_assert_str_eq(err.message, "karp_loader_new: batch must be >= 1, got 0");
    karp_augment bad = {7, 1};
    ck_assert_ptr_null(karp_loader_new(d, 3, 0, &bad, 1, &err));
    ck_assert_int_eq(err.code, KARP_EINVAL);
    ck_assert_str_eq(err.message, "augment[0]: unknown kind 7");
    ck_assert_str_eq(karp_last_error(), "augment[0]: unknown kind 7");
    bad = (karp_augment){KARP_AUG_ROTATE, -5};
    ck_assert_ptr_null(karp_loader_new(d, 3, 0, &bad, 1, &err));
    ck_assert_str_eq(err.message, "augment[0]: rotate: bad value -5 (degrees: 0 to 180)");
    karp_data_close(d);

    /* rank-1 samples (CSV): only noise. */
    char *csv = kp_test_path(dir, "t.csv");
    ck_assert_int_eq(kp_test_write_file(csv, "1,0.5,0.25\n0,1,2\n"), 0);
    char cspec[600];
    snprintf(cspec, sizeof cspec, "csv:%s", csv);
    d = karp_data_open(cspec, "train", &err);
    ck_assert_msg(d != NULL, "%s", err.message);
    karp_augment flip = {KARP_AUG_HFLIP, 0}, noise = {KARP_AUG_NOISE, 0.1f};
    ck_assert_ptr_null(karp_loader_new(d, 2, 0, &flip, 1, &err));
    ck_assert_str_eq(err.message, "augment[0]: hflip needs image samples [C,H,W], these have "
                                  "rank 1 (only noise applies to them)");
    karp_loader *l = karp_loader_new(d, 2, 0, &noise, 1, &err);
    ck_assert_ptr_nonnull(l);
    const float *x;
    ck_assert_int_eq(karp_loader_next(l, &x, NULL), 2);
    karp_loader_free(l);
    karp_loader_free(NULL);
    karp_data_close(d);
    free(csv);
    ck_assert_int_eq(karp_loader_epoch(NULL, 0), KARP_EINVAL);
    ck_assert_int_lt(karp_loader_next(NULL, &x, NULL), 0);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("runtime_loader_public");
    TCase *tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, dataset_accessors);
    tcase_add_test(tc, batches_once_per_epoch);
    tcase_add_test(tc, threaded_equals_synchronous);
    tcase_add_test(tc, skip_resumes);
    tcase_add_test(tc, normalize_after_augment);
    tcase_add_test(tc, loader_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(loader_suite(), CK_FORK_GETENV);
}
