/*
 * Every model file in examples/ compiles both ways (JIT in this process, and
 * `karpc X -o X.so` loaded with karp_open), both give the same outputs on
 * a small batch, and where the model has a loss and an optimizer, 5 steps
 * of karp_train_step on a fixed random batch lower the loss on that batch.
 *
 * resnet_cifar.json also trains through `karpc train --data cifar10:DIR`
 * on a small generated set in the CIFAR-10 binary format (data_batch_1..5,
 * test_batch; 1 label byte + 3072 pixel bytes per record), where each class
 * has its own colour and a stripe direction under noise: the train loss
 * falls from the first epoch to the last and the test accuracy beats
 * chance by far.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "karpc.h"
#include "testutil.h"

#define INFER_N 3
#define TRAIN_N 8
#define TRAIN_STEPS 5

static uint64_t rng_state = 0x452821e638d01377ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float urand(void)
{
    return (float)(rnd() >> 8) / (float)(1 << 24);
}

/* Mean cross-entropy of logits y [n,c] against labels. */
static double cross_entropy(const float *y, const int32_t *labels, int64_t n, int64_t c)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = y + i * c;
        double mx = z[0], sum = 0;
        for (int64_t j = 1; j < c; j++)
            mx = fmax(mx, z[j]);
        for (int64_t j = 0; j < c; j++)
            sum += exp(z[j] - mx);
        total += mx + log(sum) - z[labels[i]];
    }
    return total / (double)n;
}

/* Mean squared distance of y to one-hot labels (the other losses' target
 * as karpc train builds it), for a model whose loss is not cross_entropy. */
static double loss_of(const karp_info *info, const float *y, const int32_t *labels, int64_t n)
{
    if (strcmp(info->loss, "cross_entropy") == 0)
        return cross_entropy(y, labels, n, info->output_size);
    double total = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < info->output_size; j++) {
            double d = y[i * info->output_size + j] - (j == labels[i]);
            total += d * d;
        }
    return total / (double)(n * info->output_size);
}

/* One example: compile both ways, infer, train. */
static void check_example(const char *dir, const char *file)
{
    char path[4096], so[4096];
    snprintf(path, sizeof path, "%s/examples/%s", KARP_SOURCE_DIR, file);
    snprintf(so, sizeof so, "%s/%.*s.so", dir, (int)(strlen(file) - 5), file);

    karp_error err;
    karp_model *jit = karp_compile(path, NULL, &err);
    ck_assert_msg(jit != NULL, "%s: %s", file, err.message);
    KpRun r = kp_test_run("%s %s -o %s", KARPC_EXE, path, so);
    ck_assert_msg(r.status == 0, "%s: karpc -o failed: %s", file, r.err);
    kp_test_run_free(&r);
    karp_model *aot = karp_open(so, &err);
    ck_assert_msg(aot != NULL, "%s: %s", file, err.message);

    karp_info info;
    ck_assert_int_eq(karp_model_info(jit, &info), 0);
    int64_t n = info.max_batch < TRAIN_N ? info.max_batch : TRAIN_N;
    float *x = malloc(sizeof(float) * (size_t)(n * info.input_size));
    float *y1 = malloc(sizeof(float) * (size_t)(n * info.output_size));
    float *y2 = malloc(sizeof(float) * (size_t)(n * info.output_size));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n * info.input_size; i++)
        x[i] = 2.0f * urand() - 1.0f;
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int32_t)(rnd() % (uint32_t)info.output_size);

    int64_t ni = n < INFER_N ? n : INFER_N;
    ck_assert_msg(karp_infer(jit, x, ni, y1) == 0, "%s: %s", file, karp_last_error());
    ck_assert_msg(karp_infer(aot, x, ni, y2) == 0, "%s: %s", file, karp_last_error());
    for (int64_t i = 0; i < ni * info.output_size; i++) {
        ck_assert_msg(isfinite(y1[i]), "%s: output %lld is %g", file, (long long)i, y1[i]);
        ck_assert_msg(y1[i] == y2[i], "%s: output %lld: JIT %.9g, .so %.9g", file, (long long)i,
                      y1[i], y2[i]);
    }

    if (!info.has_train) {
        printf("%-20s JIT and .so agree on %lld samples; no loss, not trained\n", file,
               (long long)ni);
    } else {
        ck_assert_msg(info.no_train_reason == NULL, "%s: %s", file, info.no_train_reason);
        ck_assert_msg(info.target_labels, "%s: expected a model trained on class labels", file);
        ck_assert_int_eq(karp_forward(jit, x, n, y1), 0);
        double before = loss_of(&info, y1, labels, n);
        for (int s = 0; s < TRAIN_STEPS; s++) {
            float loss;
            ck_assert_msg(karp_train_step(jit, x, labels, n, &loss) == 0, "%s: %s", file,
                          karp_last_error());
            ck_assert_msg(isfinite(loss), "%s: step %d: loss %g", file, s + 1, loss);
        }
        ck_assert_int_eq(karp_forward(jit, x, n, y1), 0);
        double after = loss_of(&info, y1, labels, n);
        printf("%-20s JIT and .so agree on %lld samples; %d steps on one batch of %lld: loss "
               "%.4f -> %.4f\n",
               file, (long long)ni, TRAIN_STEPS, (long long)n, before, after);
        ck_assert_msg(after < before, "%s: %d train steps did not lower the loss: %.6f -> %.6f",
                      file, TRAIN_STEPS, before, after);
    }
    free(x);
    free(y1);
    free(y2);
    free(labels);
    karp_close(jit);
    karp_close(aot);
}

static int is_json(const char *name)
{
    size_t len = strlen(name);
    return len > 5 && strcmp(name + len - 5, ".json") == 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(every_example_compiles_infers_and_trains)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/examples", KARP_SOURCE_DIR);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    char *names[64];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (is_json(e->d_name) && count < 64)
            names[count++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)count, sizeof names[0], by_name);
    ck_assert_int_ge(count, 5);

    char *dir = kp_test_tmpdir();
    for (int i = 0; i < count; i++) {
        check_example(dir, names[i]);
        free(names[i]);
    }
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

/* A learnable CIFAR-10 stand-in. */
#define CIFAR_TRAIN_PER_FILE 40
#define CIFAR_TEST 200
#define CIFAR_EPOCHS 4

/* One record of class c: the class's colour (each channel low, middle or
 * high) plus stripes along rows (even classes) or columns (odd ones), and
 * noise. */
static void cifar_record(unsigned char *rec, int c)
{
    static const int level[3] = {50, 128, 205};
    rec[0] = (unsigned char)c;
    int colour[3] = {level[c % 3], level[(c / 3) % 3], level[(c + c / 3 + 1) % 3]};
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 32; j++) {
                int stripe = ((c % 2 ? j : i) / 4) % 2 ? 30 : -30;
                int v = colour[ch] + stripe + (int)(rnd() % 61) - 30;
                rec[1 + ch * 1024 + i * 32 + j] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static void cifar_file(const char *dir, const char *name, int records)
{
    char *path = kp_test_path(dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char rec[3073];
    for (int r = 0; r < records; r++) {
        cifar_record(rec, (int)(rnd() % 10));
        ck_assert_int_eq(fwrite(rec, 1, sizeof rec, f), sizeof rec);
    }
    ck_assert_int_eq(fclose(f), 0);
    free(path);
}

START_TEST(resnet_cifar_learns_generated_cifar10)
{
    char *dir = kp_test_tmpdir();
    char name[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", i);
        cifar_file(dir, name, CIFAR_TRAIN_PER_FILE);
    }
    cifar_file(dir, "test_batch.bin", CIFAR_TEST);
    char *log = kp_test_path(dir, "log.csv");
    KpRun r = kp_test_run("%s train %s/examples/resnet_cifar.json --data cifar10:%s --epochs %d "
                          "--batch 20 --threads 2 --log %s",
                          KARPC_EXE, KARP_SOURCE_DIR, dir, CIFAR_EPOCHS, log);
    ck_assert_msg(r.status == 0, "karpc train failed:\n%s", r.err);
    printf("%s", r.out);
    char *csv = kp_test_read_file(log, NULL);
    ck_assert_ptr_nonnull(csv);
    double first[5], last[5];
    kp_test_log_row(csv, 1, first);
    kp_test_log_row(csv, CIFAR_EPOCHS, last);
    ck_assert_msg(last[1] < first[1], "train loss did not fall: epoch 1 %.4f, epoch %d %.4f",
                  first[1], CIFAR_EPOCHS, last[1]);
    ck_assert_msg(last[4] >= 30.0, "test accuracy %.2f%% after %d epochs (chance is 10%%)",
                  last[4], CIFAR_EPOCHS);
    kp_test_run_free(&r);
    free(csv);
    free(log);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("examples");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, every_example_compiles_infers_and_trains);
    tcase_add_test(tc, resnet_cifar_learns_generated_cifar10);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK_GETENV);
}
