/*
 * The main job on the real data: examples/fashion_mlp.json trained on
 * Fashion-MNIST reaches at least 84% test accuracy after one epoch and
 * 87.5% after five, and `karpc eval` with the saved checkpoint prints the
 * same test line to the last digit.  Needs Debian's dataset-fashion-mnist
 * (scripts/setup.sh installs it); without it the test says it is skipped.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define DATASET "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

/* The test accuracy of log row `epoch` (CSV: epoch,train_loss,train_acc,
 * test_loss,test_acc,...). */
static double test_acc(const char *csv, int epoch)
{
    double v[5];
    kp_test_log_row(csv, epoch, v);
    return v[4];
}

START_TEST(fashion_mlp_reaches_targets)
{
    if (access(DATASET, R_OK) != 0) {
        printf("skipped: %s is not installed (scripts/setup.sh installs dataset-fashion-mnist)\n",
               DATASET);
        return;
    }
    char *dir = kp_test_tmpdir();
    char *ckpt = kp_test_path(dir, "m.safetensors"), *log = kp_test_path(dir, "log.csv");
    KpRun r = kp_test_run("%s train %s/examples/fashion_mlp.json --data fashion-mnist --epochs 5 "
                          "--save %s --log %s",
                          KARPC_EXE, KARP_SOURCE_DIR, ckpt, log);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char *csv = kp_test_read_file(log, NULL);
    ck_assert_ptr_nonnull(csv);
    double one = test_acc(csv, 1), five = test_acc(csv, 5);
    printf("fashion_mlp: test accuracy %.2f%% after 1 epoch, %.2f%% after 5\n", one, five);
    ck_assert_msg(one >= 84.0, "1 epoch: %.2f%% < 84%%", one);
    ck_assert_msg(five >= 87.5, "5 epochs: %.2f%% < 87.5%%", five);

    /* the last epoch's test line, as train printed it */
    const char *line = strstr(r.out, "epoch 5/5:");
    ck_assert_ptr_nonnull(line);
    const char *test = strstr(line, "test loss");
    ck_assert_ptr_nonnull(test);
    char *want = kp_test_first_line(test);
    char *bar = strstr(want, " |");
    if (bar)
        *bar = '\0';

    KpRun e = kp_test_run("%s eval %s/examples/fashion_mlp.json --data fashion-mnist --load %s",
                          KARPC_EXE, KARP_SOURCE_DIR, ckpt);
    ck_assert_msg(e.status == 0, "%s", e.err);
    ck_assert_msg(strstr(e.out, want) != NULL, "eval printed:\n%s\nexpected the line: %s", e.out,
                  want);
    kp_test_run_free(&e);
    kp_test_run_free(&r);
    free(want);
    free(csv);
    free(ckpt);
    free(log);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fashion");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, fashion_mlp_reaches_targets);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK_GETENV);
}
