/*
 * Issue 4's check on the real data: examples/fashion_cnn.json trained on
 * Fashion-MNIST for its 2 epochs reaches at least 90% test accuracy.  About
 * 7 minutes at 2 threads (200 s an epoch).  Needs Debian's
 * dataset-fashion-mnist (scripts/setup.sh installs it); without it the test
 * says it is skipped.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define DATASET "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

START_TEST(fashion_cnn_reaches_90_percent)
{
    if (access(DATASET, R_OK) != 0) {
        printf("skipped: %s is not installed (scripts/setup.sh installs dataset-fashion-mnist)\n",
               DATASET);
        return;
    }
    char *dir = kp_test_tmpdir();
    char *log = kp_test_path(dir, "log.csv");
    KpRun r = kp_test_run("%s train %s/examples/fashion_cnn.json --data fashion-mnist --log %s",
                          KARPC_EXE, KARP_SOURCE_DIR, log);
    ck_assert_msg(r.status == 0, "%s", r.err);
    printf("%s", r.out);
    char *csv = kp_test_read_file(log, NULL);
    ck_assert_ptr_nonnull(csv);
    double v[5];
    kp_test_log_row(csv, 2, v);
    ck_assert_msg(v[4] >= 90.0, "2 epochs: test accuracy %.2f%% < 90%%", v[4]);
    kp_test_run_free(&r);
    free(csv);
    free(log);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fashion_cnn");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, fashion_cnn_reaches_90_percent);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK_GETENV);
}
