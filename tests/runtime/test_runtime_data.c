/*
 * test_runtime_data.c — CIFAR-10 and CSV readers on small files written
 * here (good, truncated, malformed: each with its exact message),
 * kp_data_open's dispatch, normalization, and the batcher (every sample
 * once per epoch, an order fixed by (seed, epoch), the partial last batch,
 * skipping to resume).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/data.h"
#include "runtime/model.h"
#include "testutil.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/karp_rt_data_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void in_tmp(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *name, const void *bytes, size_t n)
{
    char path[256];
    in_tmp(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(bytes, 1, n, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* `records` CIFAR records: label (first + r) % 10, pixel i = (r + i) % 256. */
static void write_cifar(const char *name, int records, int first, size_t cut)
{
    size_t n = (size_t)records * 3073;
    unsigned char *b = malloc(n);
    for (int r = 0; r < records; r++) {
        b[r * 3073] = (unsigned char)((first + r) % 10);
        for (int i = 0; i < 3072; i++)
            b[r * 3073 + 1 + i] = (unsigned char)((r + i) % 256);
    }
    write_file(name, b, n - cut);
    free(b);
}

static void expect_error(int rc, int code, karp_error *err, const char *msg)
{
    ck_assert_int_eq(rc, code);
    ck_assert_int_eq(err->code, code);
    ck_assert_str_eq(err->message, msg);
}

/* An IDX header: magic for rank dims, then the dimensions (big-endian). */
static size_t idx_header(unsigned char *b, int rank, const uint32_t *dims)
{
    b[0] = b[1] = 0;
    b[2] = 0x08;
    b[3] = (unsigned char)rank;
    for (int i = 0; i < rank; i++)
        for (int k = 0; k < 4; k++)
            b[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    return 4 + 4 * (size_t)rank;
}

START_TEST(test_idx)
{
    char img[256], lbl[256];
    in_tmp(img, sizeof img, "img");
    in_tmp(lbl, sizeof lbl, "lbl");
    static unsigned char b[200000];
    uint32_t two[3] = {2, 2, 3}, n2[1] = {2};
    size_t h = idx_header(b, 3, two);
    for (int i = 0; i < 12; i++)
        b[h + i] = (unsigned char)(i * 20);
    write_file("img", b, h + 12);
    h = idx_header(b, 1, n2);
    b[h] = 4;
    b[h + 1] = 1;
    write_file("lbl", b, h + 2);
    KpDataset ds;
    karp_error err;
    ck_assert_int_eq(kp_data_load_idx(img, lbl, &ds, &err), 0);
    ck_assert_int_eq(ds.count, 2);
    ck_assert_int_eq(ds.sample_size, 6);
    ck_assert_int_eq(ds.nclasses, 5);
    ck_assert_int_eq(ds.labels[1], 1);
    ck_assert_float_eq_tol(ds.x[11], 220.0f / 255.0f, 1e-7f);
    kp_data_free(&ds);

    /* Found by fuzzing: a header claiming 2^28 images of 4096x4096 made
     * the reader allocate 2^52 bytes before reading any pixel (and a
     * smaller claim gigabytes); now memory follows the file's contents. */
    uint32_t huge[3] = {1u << 28, 4096, 4096};
    h = idx_header(b, 3, huge);
    write_file("img", b, h + 4);
    char msg[512];
    snprintf(msg, sizeof msg,
             "%s: truncated at byte 20: expected 4503599627370496 bytes of pixels", img);
    expect_error(kp_data_load_idx(img, lbl, &ds, &err), KARP_EFORMAT, &err, msg);
    ck_assert_ptr_null(ds.x);

    /* truncated past the first 64 KB chunk: the offset is in the file */
    uint32_t big[3] = {2, 256, 256};
    h = idx_header(b, 3, big);
    write_file("img", b, h + 100000);
    snprintf(msg, sizeof msg, "%s: truncated at byte 100016: expected 131072 bytes of pixels",
             img);
    expect_error(kp_data_load_idx(img, lbl, &ds, &err), KARP_EFORMAT, &err, msg);
}
END_TEST

START_TEST(test_cifar10)
{
    for (int i = 1; i <= 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", i);
        write_cifar(name, 2, i, 0);
    }
    write_cifar("test_batch.bin", 3, 0, 0);
    KpDataset ds;
    karp_error err;
    ck_assert_int_eq(kp_data_load_cifar10(tmpdir, "train", &ds, &err), 0);
    ck_assert_int_eq(ds.count, 10);
    ck_assert_int_eq(ds.rank, 3);
    ck_assert_int_eq(ds.shape[0], 3);
    ck_assert_int_eq(ds.shape[2], 32);
    ck_assert_int_eq(ds.sample_size, 3072);
    ck_assert_int_eq(ds.nclasses, 10);
    ck_assert_ptr_null(ds.targets);
    ck_assert_int_eq(ds.labels[0], 1);  /* file 1, record 0 */
    ck_assert_int_eq(ds.labels[9], 6);  /* file 5, record 1 */
    ck_assert_float_eq(ds.x[3072 + 5], 6 / 255.0f);
    ck_assert_float_eq(ds.x[255], 1.0f);
    kp_data_free(&ds);

    char spec[128];
    snprintf(spec, sizeof spec, "cifar10:%s", tmpdir);
    ck_assert_int_eq(kp_data_open(spec, "test", &ds, &err), 0);
    ck_assert_int_eq(ds.count, 3);
    ck_assert_int_eq(ds.labels[2], 2);
    kp_data_free(&ds);

    char path[256], msg[512];
    write_cifar("test_batch.bin", 3, 0, 100);
    in_tmp(path, sizeof path, "test_batch.bin");
    snprintf(msg, sizeof msg, "%s: truncated record at byte 6146: 2973 of 3073 bytes", path);
    expect_error(kp_data_load_cifar10(tmpdir, "test", &ds, &err), KARP_EFORMAT, &err, msg);
    ck_assert_ptr_null(ds.x);

    unsigned char bad[3073] = {10};
    write_file("test_batch.bin", bad, sizeof bad);
    snprintf(msg, sizeof msg, "%s: byte 0: label 10 is not a class 0..9", path);
    expect_error(kp_data_load_cifar10(tmpdir, "test", &ds, &err), KARP_EFORMAT, &err, msg);

    write_file("test_batch.bin", bad, 0);
    snprintf(msg, sizeof msg, "%s: empty file, expected records of 3073 bytes", path);
    expect_error(kp_data_load_cifar10(tmpdir, "test", &ds, &err), KARP_EFORMAT, &err, msg);

    in_tmp(path, sizeof path, "data_batch_3.bin");
    remove(path);
    snprintf(msg, sizeof msg, "%s: cannot open: No such file or directory", path);
    expect_error(kp_data_load_cifar10(tmpdir, "train", &ds, &err), KARP_EIO, &err, msg);

    expect_error(kp_data_load_cifar10(tmpdir, "valid", &ds, &err), KARP_EINVAL, &err,
                 "kp_data_load_cifar10: split must be \"train\" or \"test\", got 'valid'");

    /* The tarball's directory is found under its parent. */
    in_tmp(path, sizeof path, "cifar-10-batches-bin");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    write_cifar("cifar-10-batches-bin/test_batch.bin", 4, 0, 0);
    ck_assert_int_eq(kp_data_load_cifar10(tmpdir, "test", &ds, &err), 0);
    ck_assert_int_eq(ds.count, 4);
    kp_data_free(&ds);
}
END_TEST

static int load_csv_text(const char *text, KpDataset *ds, karp_error *err, char *path)
{
    write_file("d.csv", text, strlen(text));
    in_tmp(path, 256, "d.csv");
    return kp_data_load_csv(path, ds, err);
}

START_TEST(test_csv)
{
    KpDataset ds;
    karp_error err;
    char path[256], msg[512];
    ck_assert_int_eq(load_csv_text("label,a,b\r\n1, 0.5,2\n0,-1e2,3\n\n2,4,  5 \n", &ds, &err,
                                   path), 0);
    ck_assert_int_eq(ds.count, 3);
    ck_assert_int_eq(ds.rank, 1);
    ck_assert_int_eq(ds.shape[0], 2);
    ck_assert_int_eq(ds.sample_size, 2);
    const float x[6] = {0.5f, 2, -100, 3, 4, 5};
    ck_assert_mem_eq(ds.x, x, sizeof x);
    ck_assert_ptr_nonnull(ds.labels);
    ck_assert_int_eq(ds.labels[2], 2);
    ck_assert_int_eq(ds.nclasses, 3);
    ck_assert_float_eq(ds.targets[0], 1);
    kp_data_free(&ds);

    /* Real-valued targets: floats only; no header, no final newline. */
    ck_assert_int_eq(load_csv_text("0.25,1\n-3,2", &ds, &err, path), 0);
    ck_assert_int_eq(ds.count, 2);
    ck_assert_ptr_null(ds.labels);
    ck_assert_int_eq(ds.nclasses, 0);
    ck_assert_float_eq(ds.targets[1], -3);
    ck_assert_float_eq(ds.x[1], 2);
    kp_data_free(&ds);

    snprintf(msg, sizeof msg, "%s:3: expected 3 numbers, found 2", path);
    expect_error(load_csv_text("y,a,b\n1,2,3\n4,5\n", &ds, &err, path), KARP_EFORMAT, &err, msg);
    ck_assert_ptr_null(ds.x);
    snprintf(msg, sizeof msg, "%s:2:6: not a number: 'abc'", path);
    expect_error(load_csv_text("1,2,3\n4,5, abc\n", &ds, &err, path), KARP_EFORMAT, &err, msg);
    snprintf(msg, sizeof msg, "%s:1:3: not a number: ''", path);
    expect_error(load_csv_text("1,,3\n", &ds, &err, path), KARP_EFORMAT, &err, msg);
    snprintf(msg, sizeof msg, "%s:2:1: not a number: 'nan'", path);
    expect_error(load_csv_text("1,2\nnan,3\n", &ds, &err, path), KARP_EFORMAT, &err, msg);
    snprintf(msg, sizeof msg, "%s:1: expected a target and at least one feature, found 1 field",
             path);
    expect_error(load_csv_text("5\n6\n", &ds, &err, path), KARP_EFORMAT, &err, msg);
    snprintf(msg, sizeof msg, "%s: no rows of numbers", path);
    expect_error(load_csv_text("y,x\n\n", &ds, &err, path), KARP_EFORMAT, &err, msg);
    expect_error(load_csv_text("", &ds, &err, path), KARP_EFORMAT, &err, msg);
    in_tmp(path, sizeof path, "none.csv");
    snprintf(msg, sizeof msg, "%s: cannot open: No such file or directory", path);
    expect_error(kp_data_load_csv(path, &ds, &err), KARP_EIO, &err, msg);
}
END_TEST

START_TEST(test_open_dispatch)
{
    KpDataset ds;
    karp_error err;
    write_file("tr.csv", "1,2\n0,3\n", 8);
    write_file("te.csv", "1,9\n", 4);
    char spec[256];
    snprintf(spec, sizeof spec, "csv:%s/tr.csv:%s/te.csv", tmpdir, tmpdir);
    ck_assert_int_eq(kp_data_has_test(spec), 1);
    ck_assert_int_eq(kp_data_open(spec, "train", &ds, &err), 0);
    ck_assert_int_eq(ds.count, 2);
    kp_data_free(&ds);
    ck_assert_int_eq(kp_data_open(spec, "test", &ds, &err), 0);
    ck_assert_int_eq(ds.count, 1);
    ck_assert_float_eq(ds.x[0], 9);
    kp_data_free(&ds);

    char msg[512];
    snprintf(spec, sizeof spec, "csv:%s/tr.csv", tmpdir);
    ck_assert_int_eq(kp_data_has_test(spec), 0);
    ck_assert_int_eq(kp_data_open(spec, "train", &ds, &err), 0);
    kp_data_free(&ds);
    snprintf(msg, sizeof msg, "--data %s: no test file (write csv:TRAIN.csv:TEST.csv)", spec);
    expect_error(kp_data_open(spec, "test", &ds, &err), KARP_EINVAL, &err, msg);

    ck_assert_int_eq(kp_data_has_test("fashion-mnist"), 1);
    expect_error(kp_data_open("imagenet", "train", &ds, &err), KARP_EINVAL, &err,
                 "--data imagenet: expected fashion-mnist, fashion-mnist:DIR, mnist:DIR, "
                 "cifar10:DIR or csv:TRAIN.csv[:TEST.csv]");
    expect_error(kp_data_open("cifar10:", "train", &ds, &err), KARP_EINVAL, &err,
                 "--data cifar10:: no directory after 'cifar10:'");
    expect_error(kp_data_open("csv:", "train", &ds, &err), KARP_EINVAL, &err,
                 "--data csv:: empty file name");
    expect_error(kp_data_open("mnist:/x", "dev", &ds, &err), KARP_EINVAL, &err,
                 "kp_data_open: split must be \"train\" or \"test\", got 'dev'");
    expect_error(kp_data_open("mnist:/nowhere", "test", &ds, &err), KARP_EIO, &err,
                 "--data mnist:/nowhere: cannot find /nowhere/t10k-images-idx3-ubyte.gz (is "
                 "dataset-fashion-mnist installed?)");
}
END_TEST

/* A dataset of n samples whose features are (i, -i) and labels i % 7. */
static KpDataset counting(int64_t n)
{
    KpDataset ds = {0};
    ds.count = n;
    ds.rank = 1;
    ds.shape[0] = 2;
    ds.sample_size = 2;
    ds.x = malloc((size_t)n * 2 * sizeof(float));
    ds.labels = malloc((size_t)n * sizeof(int32_t));
    ds.targets = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        ds.x[2 * i] = (float)i;
        ds.x[2 * i + 1] = (float)-i;
        ds.labels[i] = (int32_t)(i % 7);
        ds.targets[i] = (float)i / 2;
    }
    return ds;
}

/* One epoch's order of sample indices, checking each batch's contents. */
static void epoch_order(KpBatcher *b, int64_t *order, int64_t count, int64_t batch)
{
    const float *x;
    const int32_t *labels;
    const float *targets;
    int64_t n, seen = 0;
    while ((n = kp_batcher_next(b, &x, &labels, &targets)) > 0) {
        ck_assert_int_eq(n, count - seen < batch ? count - seen : batch);
        for (int64_t i = 0; i < n; i++) {
            int64_t s = (int64_t)x[2 * i];
            ck_assert_float_eq(x[2 * i + 1], (float)-s);
            ck_assert_int_eq(labels[i], s % 7);
            ck_assert_float_eq(targets[i], (float)s / 2);
            order[seen + i] = s;
        }
        seen += n;
    }
    ck_assert_int_eq(seen, count);
    ck_assert_int_eq(kp_batcher_next(b, &x, NULL, NULL), 0);
}

START_TEST(test_batcher)
{
    enum { N = 103, B = 10 };
    KpDataset ds = counting(N);
    KpBatcher b, c;
    ck_assert_int_eq(kp_batcher_init(&b, &ds, B, 42), 0);
    ck_assert_int_eq(kp_batcher_init(&c, &ds, B, 42), 0);
    int64_t o1[N], o2[N], o3[N];
    for (int epoch = 0; epoch < 3; epoch++) {
        kp_batcher_epoch(&b, epoch);
        epoch_order(&b, o1, N, B);
        int seen[N] = {0};
        for (int i = 0; i < N; i++)
            seen[o1[i]]++;
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(seen[i], 1);
        /* The same (seed, epoch) gives the same order, whatever came before. */
        kp_batcher_epoch(&c, epoch);
        epoch_order(&c, o2, N, B);
        ck_assert_mem_eq(o1, o2, sizeof o1);
        kp_batcher_epoch(&c, epoch + 1);
        epoch_order(&c, o3, N, B);
        ck_assert_msg(memcmp(o1, o3, sizeof o1) != 0, "epochs %d and %d agree", epoch, epoch + 1);
    }
    /* Another seed, another order; the first epoch is shuffled too. */
    kp_batcher_free(&c);
    ck_assert_int_eq(kp_batcher_init(&c, &ds, B, 43), 0);
    kp_batcher_epoch(&b, 0);
    epoch_order(&b, o1, N, B);
    epoch_order(&c, o2, N, B);
    ck_assert_msg(memcmp(o1, o2, sizeof o1) != 0, "seeds 42 and 43 agree");
    int identity = 1;
    for (int i = 0; i < N; i++)
        identity &= o1[i] == i;
    ck_assert_int_eq(identity, 0);

    /* Resume: skip 4 batches of epoch 1, then the rest is the same. */
    kp_batcher_epoch(&b, 1);
    epoch_order(&b, o1, N, B);
    kp_batcher_free(&c);
    ck_assert_int_eq(kp_batcher_init(&c, &ds, B, 42), 0);
    kp_batcher_epoch(&c, 1);
    ck_assert_int_eq(kp_batcher_skip(&c, 4), 0);
    const float *x;
    ck_assert_int_eq(kp_batcher_next(&c, &x, NULL, NULL), B);
    ck_assert_float_eq(x[0], (float)o1[40]);
    ck_assert_int_eq(kp_batcher_skip(&c, 6), 0); /* the partial batch is the last one */
    ck_assert_int_eq(kp_batcher_next(&c, &x, NULL, NULL), 0);
    kp_batcher_epoch(&c, 1);
    ck_assert_int_eq(kp_batcher_skip(&c, 10), 0);
    ck_assert_int_eq(kp_batcher_next(&c, &x, NULL, NULL), 3);
    ck_assert_float_eq(x[0], (float)o1[100]);
    ck_assert_int_eq(kp_batcher_skip(&c, 100), 0);
    ck_assert_int_eq(kp_batcher_next(&c, &x, NULL, NULL), 0);
    ck_assert_int_eq(kp_batcher_skip(&c, -1), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "kp_batcher_skip: k must be >= 0, got -1");
    kp_batcher_free(&c);
    kp_batcher_free(&b);

    /* A batch larger than the dataset; a dataset without labels. */
    free(ds.labels);
    ds.labels = NULL;
    ck_assert_int_eq(kp_batcher_init(&b, &ds, 1000, 1), 0);
    const int32_t *labels = (const int32_t *)&b;
    ck_assert_int_eq(kp_batcher_next(&b, &x, &labels, NULL), N);
    ck_assert_ptr_null(labels);
    kp_batcher_free(&b);
    kp_batcher_free(&b);

    ck_assert_int_eq(kp_batcher_init(&b, &ds, 0, 1), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "kp_batcher_init: batch must be >= 1, got 0");
    ck_assert_int_eq(kp_batcher_init(&b, NULL, 4, 1), KARP_EINVAL);
    kp_data_free(&ds);
}
END_TEST

START_TEST(test_normalize)
{
    KpDataset ds = {0};
    ds.count = 2;
    ds.rank = 3;
    ds.shape[0] = 2;
    ds.shape[1] = 1;
    ds.shape[2] = 2;
    ds.sample_size = 4;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ds.x = x;
    const float mean[2] = {1, 3}, std[2] = {2, 0.5f};
    ck_assert_int_eq(kp_data_normalize(&ds, mean, 2, std, 2), 0);
    const float want[8] = {0, 0.5f, 0, 2, 2, 2.5f, 8, 10};
    ck_assert_mem_eq(x, want, sizeof want);
    ck_assert_int_eq(kp_data_normalize(&ds, mean, 1, std, 1), 0);
    ck_assert_float_eq(x[7], 4.5f);
    ck_assert_int_eq(kp_data_normalize(&ds, mean, 3, std, 1), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "normalize: 3 means and 1 stds for 2 channels (give 1 or 2)");
    const float zero[1] = {0};
    ck_assert_int_eq(kp_data_normalize(&ds, mean, 1, zero, 1), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "normalize: std[0] is 0, must be > 0");
    ck_assert_float_eq(x[7], 4.5f);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("runtime_data");
    TCase *tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_idx);
    tcase_add_test(tc, test_cifar10);
    tcase_add_test(tc, test_csv);
    tcase_add_test(tc, test_open_dispatch);
    tcase_add_test(tc, test_batcher);
    tcase_add_test(tc, test_normalize);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(data_suite(), CK_FORK_GETENV);
}
