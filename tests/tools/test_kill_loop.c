/*
 * Killing `karpc train` at any moment never leaves a broken checkpoint.
 *
 * examples/fashion_mlp.json is compiled once to a model.so; then, ITERS
 * times, `karpc train model.so --data mnist:DIR --save ck --save-every 1`
 * (resuming with --load ck once the file exists) is killed with SIGKILL
 * after a delay drawn from a fixed seed, spread from before the first
 * save to well into the run (scaled by how long the first run took to its
 * first save, so a slow build is killed as evenly); every step writes the checkpoint, so the
 * kills land in the middle of writes too.  After each kill: ck does not
 * exist yet, or karp_load reads it (checksums and all) into the model and
 * karp_infer gives finite outputs; the position it records (epoch, batch)
 * never goes back; at most one temporary file lies beside it (the killed
 * writer's: the next writer removes it, atomic_file.h).  The data are
 * small generated IDX files in the Fashion-MNIST layout.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "karp.h"
#include "testutil.h"

extern char **environ;

enum { SIDE = 28, NTRAIN = 2000, NTEST = 64, ITERS = 24 };

static char *dir;

/* Noise images, label = which of 10 bands across the image is brighter. */
static void write_split(const char *split, int n, unsigned seed, unsigned char **pix_out)
{
    unsigned char *pix = malloc((size_t)n * SIDE * SIDE), *lab = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        int q = (int)(rand_r(&seed) % 10);
        lab[i] = (unsigned char)q;
        for (int p = 0; p < SIDE * SIDE; p++) {
            int bright = (p / SIDE) * 10 / SIDE == q ? 120 : 0;
            pix[(size_t)i * SIDE * SIDE + p] = (unsigned char)((int)(rand_r(&seed) % 120) + bright);
        }
    }
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    char *img = kp_test_path(dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    char *lbl = kp_test_path(dir, name);
    int idims[3] = {n, SIDE, SIDE}, ldims[1] = {n};
    ck_assert_int_eq(kp_test_write_idx(img, 3, idims, pix, (long)n * SIDE * SIDE), 0);
    ck_assert_int_eq(kp_test_write_idx(lbl, 1, ldims, lab, n), 0);
    free(img);
    free(lbl);
    free(lab);
    if (pix_out)
        *pix_out = pix;
    else
        free(pix);
}

static int tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long meta_ll(karp_model *m, const char *key)
{
    const char *s = karp_get_metadata(m, key);
    ck_assert_msg(s != NULL, "checkpoint without metadata '%s'", key);
    return atoll(s);
}

START_TEST(kill_loop_never_breaks_the_checkpoint)
{
    char *so = kp_test_path(dir, "model.so"), *ck = kp_test_path(dir, "ck.safetensors");
    KpRun r = kp_test_run("%s %s/examples/fashion_mlp.json -o %s", KARPC_EXE, KARP_SOURCE_DIR, so);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    unsigned char *test_pix;
    write_split("train", NTRAIN, 5, NULL);
    write_split("t10k", NTEST, 6, &test_pix);
    float *x = malloc(16 * SIDE * SIDE * sizeof(float)), y[16 * 10];
    for (int i = 0; i < 16 * SIDE * SIDE; i++)
        x[i] = (float)test_pix[i] / 255.0f;
    free(test_pix);

    karp_error err;
    karp_model *m = karp_open(so, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    char data[512];
    snprintf(data, sizeof data, "mnist:%s", dir);

    unsigned seed = 20261123;
    long start_ms = 0;
    long long last_pos = -1;
    int loaded = 0, absent = 0, mid_write = 0, unchanged = 0;
    for (int it = 0; it < ITERS; it++) {
        int have = access(ck, F_OK) == 0;
        char *argv[16] = {(char *)KARPC_EXE, "train", so, "--data", data, "--epochs", "1000",
                          "--save", ck, "--save-every", "1", "--threads", "1"};
        int argc = 13;
        if (have) {
            argv[argc++] = "--load";
            argv[argc++] = ck;
        }
        argv[argc] = NULL;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        pid_t pid;
        ck_assert_int_eq(posix_spawn(&pid, KARPC_EXE, &fa, NULL, argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
        /* The first run: wait for its first checkpoint, which tells how
         * long a start takes here (an ASan build is slower); later runs
         * are killed 1 ms to start + 800 ms in, so some die before their
         * first save, most amid the saves. */
        if (it == 0) {
            double t0 = now_ms();
            while (access(ck, F_OK) != 0 && now_ms() - t0 < 120000)
                sleep_ms(2);
            ck_assert_msg(access(ck, F_OK) == 0, "no checkpoint after 120 s");
            start_ms = (long)(now_ms() - t0);
        }
        sleep_ms(1 + (long)(rand_r(&seed) % (unsigned)(start_ms + 800)));
        kill(pid, SIGKILL);
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        /* It was still running: karpc never stops by itself here. */
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                      "iteration %d: karpc ended by itself (status %d)", it, st);

        int tmps = tmp_files();
        ck_assert_int_le(tmps, 1);
        mid_write += tmps;
        if (access(ck, F_OK) != 0) {
            ck_assert_msg(!have, "iteration %d: the checkpoint disappeared", it);
            absent++;
            continue;
        }
        ck_assert_msg(karp_load(m, ck) == 0, "iteration %d: %s", it, karp_last_error());
        ck_assert_int_eq(karp_infer(m, x, 16, y), 0);
        for (int i = 0; i < 16 * 10; i++)
            ck_assert_msg(isfinite(y[i]), "iteration %d: output %d is %g", it, i, y[i]);
        long long pos = meta_ll(m, "epoch") * 100000 + meta_ll(m, "batches");
        unchanged += pos == last_pos;
        ck_assert_msg(pos >= last_pos, "iteration %d: the run went back from %lld to %lld", it,
                      last_pos, pos);
        last_pos = pos;
        loaded++;
    }
    fprintf(stderr,
            "kill loop: %d kills, %d before any checkpoint, %d before the run's first save, %d in "
            "the middle of a write, "
            "%d checkpoints loaded, last at epoch %lld batch %lld (start to first save %ld ms)\n",
            ITERS, absent, unchanged, mid_write, loaded, last_pos / 100000, last_pos % 100000,
            start_ms);
    /* Not vacuous: the run did get to write checkpoints. */
    ck_assert_int_gt(loaded, 0);

    /* A run to its end leaves no temp file at all. */
    r = kp_test_run("%s train %s --data %s --epochs %lld --save %s --load %s", KARPC_EXE, so, data,
                    last_pos / 100000 + 1, ck, ck);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    ck_assert_int_eq(tmp_files(), 0);
    ck_assert_int_eq(karp_load(m, ck), 0);
    karp_close(m);
    free(x);
    free(so);
    free(ck);
}
END_TEST

static void setup(void)
{
    dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
}

static Suite *suite(void)
{
    Suite *s = suite_create("kill_loop");
    TCase *tc = tcase_create("kill");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, kill_loop_never_breaks_the_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
