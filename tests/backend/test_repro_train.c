/*
 * Reproducibility: the same model file, seed and thread count give
 * bit-identical losses and parameters, run after run; and (the kernels
 * split work between threads by elements, and reduce in fixed trees:
 * backend/emit.h) the thread count does not change them either: 1 and 2
 * threads give the same bits.
 *
 * Three models: an MLP; a CNN with batchnorm and dropout; an MLP with
 * batchnorm and dropout.  Each run JIT-compiles the model afresh,
 * initializes it from the seed and trains STEPS steps of cross-entropy on
 * fixed generated batches; the losses of every step and every parameter
 * (running statistics included) are compared with memcmp.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "karpc.h"
#include "testutil.h"

/* Sizes such that every kernel runs in parallel: kernels below about
 * 65536 multiply-adds (or elements) at the batch run on one thread. */
enum { STEPS = 12, BATCH = 32, MAXIN = 3 * 16 * 16 };

static const char *const models[3] = {
    "{\"karp\": 1, \"name\": \"mlp\", \"input\": {\"shape\": [100]},"
    " \"layers\": [{\"type\": \"dense\", \"units\": 64, \"activation\": \"relu\"},"
    " {\"type\": \"dense\", \"units\": 10}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.01},"
    " \"batch\": 32, \"seed\": 1}",
    "{\"karp\": 1, \"name\": \"cnn\", \"input\": {\"shape\": [3, 16, 16]},"
    " \"layers\": [{\"type\": \"conv2d\", \"filters\": 16, \"kernel\": 3},"
    " {\"type\": \"batchnorm\"}, {\"type\": \"relu\"}, {\"type\": \"maxpool2d\", \"size\": 2},"
    " {\"type\": \"flatten\"}, {\"type\": \"dropout\", \"rate\": 0.3},"
    " {\"type\": \"dense\", \"units\": 10}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"momentum\", \"lr\": 0.05},"
    " \"batch\": 32, \"seed\": 1}",
    "{\"karp\": 1, \"name\": \"bnmlp\", \"input\": {\"shape\": [100]},"
    " \"layers\": [{\"type\": \"dense\", \"units\": 2048}, {\"type\": \"batchnorm\"},"
    " {\"type\": \"tanh\"}, {\"type\": \"dropout\", \"rate\": 0.5},"
    " {\"type\": \"dense\", \"units\": 10}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1},"
    " \"batch\": 32, \"seed\": 1}",
};
static const int inputs[3] = {100, 3 * 16 * 16, 100};
static const char *const names[3] = {"mlp", "cnn with batchnorm and dropout",
                                     "mlp with batchnorm and dropout"};

typedef struct Run {
    float loss[STEPS];
    float *params;          /* every parameter, concatenated */
    size_t nparams;
} Run;

static void run(int which, int threads, uint64_t seed, Run *r)
{
    char *dir = kp_test_tmpdir();
    char *path = kp_test_path(dir, "m.json");
    ck_assert_int_eq(kp_test_write_file(path, models[which]), 0);
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.opt_level = KP_TEST_OPT(3);
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    ck_assert_int_eq(karp_set_threads(threads), 0);
    ck_assert_int_eq(karp_init_params(m, seed), 0);
    int in = inputs[which];
    float *x = malloc((size_t)BATCH * MAXIN * sizeof(float));
    int32_t labels[BATCH];
    unsigned s = 1234;
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < BATCH * in; i++)
            x[i] = (float)(rand_r(&s) % 2001) / 1000.0f - 1.0f;
        for (int i = 0; i < BATCH; i++)
            labels[i] = (int32_t)(rand_r(&s) % 10);
        ck_assert_int_eq(karp_train_step(m, x, labels, BATCH, &r->loss[step]), 0);
    }
    r->nparams = 0;
    int np = karp_param_count(m);
    for (int k = 0; k < np; k++) {
        karp_param p;
        ck_assert_int_eq(karp_param_get(m, k, &p), 0);
        r->nparams += (size_t)p.size;
    }
    r->params = malloc(r->nparams * sizeof(float));
    size_t at = 0;
    for (int k = 0; k < np; k++) {
        karp_param p;
        karp_param_get(m, k, &p);
        memcpy(r->params + at, p.data, (size_t)p.size * sizeof(float));
        at += (size_t)p.size;
    }
    free(x);
    karp_close(m);
    karp_set_threads(0);
    kp_test_rmdir(dir);
    free(dir);
    free(path);
}

static void expect_same(const Run *a, const Run *b, const char *what, int which)
{
    for (int i = 0; i < STEPS; i++)
        ck_assert_msg(memcmp(&a->loss[i], &b->loss[i], sizeof(float)) == 0,
                      "%s, %s: step %d loss %.9g vs %.9g", names[which], what, i, a->loss[i],
                      b->loss[i]);
    ck_assert_uint_eq(a->nparams, b->nparams);
    /* a plain loop: a ck_assert per float writes to Check's message file */
    for (size_t i = 0; i < a->nparams; i++)
        if (memcmp(&a->params[i], &b->params[i], sizeof(float)) != 0)
            ck_abort_msg("%s, %s: parameter float %zu is %.9g vs %.9g", names[which], what, i,
                         a->params[i], b->params[i]);
}

START_TEST(same_seed_same_bits)
{
    int which = _i;
    Run r1[2], r2[2];
    for (int t = 0; t < 2; t++) {
        run(which, t + 1, 77, &r1[t]);
        run(which, t + 1, 77, &r2[t]);
        expect_same(&r1[t], &r2[t], t ? "2 threads, run to run" : "1 thread, run to run", which);
    }
    expect_same(&r1[0], &r1[1], "1 thread vs 2 threads", which);
    /* Not vacuous: the loss moved, and another seed changes the bits. */
    ck_assert_float_ne(r1[0].loss[0], r1[0].loss[STEPS - 1]);
    Run other;
    run(which, 1, 78, &other);
    ck_assert(memcmp(other.params, r1[0].params, other.nparams * sizeof(float)) != 0);
    free(other.params);
    for (int t = 0; t < 2; t++) {
        free(r1[t].params);
        free(r2[t].params);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("repro_train");
    TCase *tc = tcase_create("repro");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, same_seed_same_bits, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
