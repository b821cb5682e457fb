/*
 * Compiling and freeing 100 models in one process leaks nothing.
 *
 * 100 small models, varied (MLPs, convolutions with batchnorm and dropout,
 * three optimizers, widths), each JIT-compiled with karp_compile, run
 * (karp_infer, karp_train_step, karp_save + karp_load) and closed; every
 * tenth a model file with an error, which must fail cleanly.
 *
 * In the sanitizer build LeakSanitizer checks at exit (tests/lsan.supp
 * allows only LLVM's own one-time allocations).  In the normal build the
 * heap in use (mallinfo2) and the resident set (/proc/self/statm) are
 * compared after a warm-up of WARMUP models and after the rest: the bounds
 * are far below what keeping one compiled model per iteration would cost.
 */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "karpc.h"
#include "testutil.h"

/* KARP_LEAK_MODELS=N runs fewer (for valgrind: docs/reliability.md). */
static int MODELS = 100;
enum { WARMUP = 20 };

static const char *const optimizers[3] = {"{\"type\": \"sgd\", \"lr\": 0.1}",
                                          "{\"type\": \"momentum\", \"lr\": 0.05}",
                                          "{\"type\": \"adam\", \"lr\": 0.01}"};

/* Model i's JSON into buf; *in receives its input size. */
static void model_json(int i, char *buf, size_t cap, int *in)
{
    int u = 3 + i % 11;
    const char *opt = optimizers[i % 3];
    switch ((i / 3) % 3) {
    case 0:
        *in = 6;
        snprintf(buf, cap,
                 "{\"karp\": 1, \"name\": \"mlp%d\", \"input\": {\"shape\": [6]},"
                 " \"layers\": [{\"type\": \"dense\", \"units\": %d, \"activation\": \"%s\"},"
                 " {\"type\": \"dense\", \"units\": 3}],"
                 " \"loss\": \"cross_entropy\", \"optimizer\": %s, \"batch\": 4, \"seed\": %d}",
                 i, u, i % 2 ? "relu" : "tanh", opt, i);
        break;
    case 1:
        *in = 36;
        snprintf(buf, cap,
                 "{\"karp\": 1, \"name\": \"cnn%d\", \"input\": {\"shape\": [1, 6, 6]},"
                 " \"layers\": [{\"type\": \"conv2d\", \"filters\": %d, \"kernel\": 3,"
                 " \"activation\": \"relu\"}, {\"type\": \"batchnorm\"},"
                 " {\"type\": \"maxpool2d\", \"size\": 2}, {\"type\": \"flatten\"},"
                 " {\"type\": \"dropout\", \"rate\": 0.25}, {\"type\": \"dense\", \"units\": 3}],"
                 " \"loss\": \"cross_entropy\", \"optimizer\": %s, \"batch\": 4, \"seed\": %d}",
                 i, 1 + i % 4, opt, i);
        break;
    default:
        *in = 8;
        snprintf(buf, cap,
                 "{\"karp\": 1, \"name\": \"bn%d\", \"input\": {\"shape\": [8]},"
                 " \"layers\": [{\"type\": \"dense\", \"units\": %d}, {\"type\": \"batchnorm\"},"
                 " {\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"dense\", \"units\": 3}],"
                 " \"loss\": \"cross_entropy\", \"optimizer\": %s, \"batch\": 4, \"seed\": %d}",
                 i, u, opt, i);
    }
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static long heap_kb(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

static void one_model(const char *dir, int i)
{
    char json[2048], name[64];
    int in = 0;
    snprintf(name, sizeof name, "m%d.json", i);
    char *path = kp_test_path(dir, name);
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.opt_level = i % 4 == 0 ? 0 : 1;
    karp_error err;
    if (i % 10 == 9) {
        /* A broken file: the failure path must free what it made. */
        ck_assert_int_eq(kp_test_write_file(path, "{\"karp\": 1, \"name\": \"bad\", \"input\": "
                                                  "{\"shape\": [4]}, \"layers\": [{\"type\": "
                                                  "\"dense\", \"units\": -1}]}"),
                         0);
        ck_assert_ptr_null(karp_compile(path, &o, &err));
        free(path);
        return;
    }
    model_json(i, json, sizeof json, &in);
    ck_assert_int_eq(kp_test_write_file(path, json), 0);
    karp_model *m = karp_compile(path, &o, &err);
    ck_assert_msg(m != NULL, "model %d: %s", i, err.message);
    float x[4 * 36], y[4 * 3], loss = 0;
    int32_t labels[4] = {0, 1, 2, 1};
    for (int k = 0; k < 4 * in; k++)
        x[k] = (float)((k * 7 + i) % 13) / 13.0f - 0.5f;
    ck_assert_int_eq(karp_infer(m, x, 4, y), 0);
    ck_assert_int_eq(karp_train_step(m, x, labels, 4, &loss), 0);
    snprintf(name, sizeof name, "m%d.safetensors", i);
    char *ck = kp_test_path(dir, name);
    ck_assert_int_eq(karp_save(m, ck), 0);
    ck_assert_int_eq(karp_load(m, ck), 0);
    unlink(ck);
    free(ck);
    karp_close(m);
    unlink(path);
    free(path);
}

START_TEST(compile_and_free_100_models)
{
    char *dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    const char *env = getenv("KARP_LEAK_MODELS");
    if (env && atoi(env) > 0)
        MODELS = atoi(env);
    long rss0 = 0, heap0 = 0;
    for (int i = 0; i < MODELS; i++) {
        if (i == WARMUP) {
            malloc_trim(0);
            rss0 = rss_kb();
            heap0 = heap_kb();
        }
        one_model(dir, i);
    }
    malloc_trim(0);
    long rss1 = rss_kb(), heap1 = heap_kb();
    fprintf(stderr,
            "leak: after %d models heap %ld kB rss %ld kB; after %d heap %ld kB rss %ld kB\n", WARMUP,
            heap0, rss0, MODELS, heap1, rss1);
#if !KP_TEST_ASAN
    if (MODELS > WARMUP) {
        /* 80 models more; a compiled model's code and buffers alone are
         * tens to hundreds of kB, so a per-model leak of them (or of 7 kB
         * of anything) would not pass these bounds.  Measured: +2 kB
         * heap, +0 kB resident. */
        ck_assert_msg(heap1 - heap0 < 512, "the heap grew by %ld kB over %d models",
                      heap1 - heap0, MODELS - WARMUP);
        ck_assert_msg(rss1 - rss0 < 4096, "the resident set grew by %ld kB over %d models",
                      rss1 - rss0, MODELS - WARMUP);
    }
#endif
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("leak_jit");
    TCase *tc = tcase_create("leak");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, compile_and_free_100_models);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
