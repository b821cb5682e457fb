/*
 * test_gemm_models.c — the GEMM kernels inside models, both ways a model
 * is built (JIT and model.so), and the scratch memory they take
 * (runtime/scratch.c).
 *
 * The model: 1024 inputs (rows of x 4 KiB apart, so the GEMM packs A as
 * well as W^T: both inference and training take scratch), dense 129 relu,
 * dense 17, cross-entropy, sgd; largest batch 19.
 *
 *   jit_and_so       infer at n = 1, 6, 19 against the interpreter; JIT
 *                    and model.so give the same bits, 1 and 2 threads too;
 *                    train steps likewise
 *   scratch_enomem   a thread count whose scratch cannot be had: every
 *                    call refuses with KARP_ENOMEM, then works again
 *   concurrent_infer four threads calling karp_infer on one model at once
 *                    get the single-threaded bits
 *   split_k          a weight gradient of 4 x 64 over a batch of 4096: its
 *                    k split into chunks whose partial sums live in the
 *                    call's shared scratch; JIT, model.so, 1 and 2 threads
 *                    give the same bits, near the interpreter's
 *   twin_ranges      twin layers (3x3 convolutions of 16 channels, whose
 *                    Winograd weight gradients keep partial sums and a
 *                    counter in the shared scratch) share one range of it:
 *                    three twins take no more than two; and the counters
 *                    they share are back at zero after every call (two
 *                    backward passes give the same bits, as do 1 and 2
 *                    threads)
 *   batch_one_dx     a model compiled for batch 1 takes the dense input
 *                    gradient as row updates (dense_axpy) and the weight
 *                    gradient as an outer product (dense_outer): dx (1003
 *                    and 300 wide: partial vectors, 4-row groups and their
 *                    remainder) and dW match the reference, with the same
 *                    bits as the GEMMs of the model compiled for batch 2,
 *                    also when a second backward adds to the gradients
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelbuild.h"
#include "numcheck.h"
#include "runtime/model.h"
#include "runtime/ref/ref.h"

enum { IN = 1024, OUT = 17, MAXB = 19 };

static const char *model_json =
    "{\"karp\": 1, \"name\": \"gm\", \"input\": {\"shape\": [1024]}, \"layers\": ["
    "{\"type\": \"dense\", \"units\": 129, \"activation\": \"relu\"},"
    "{\"type\": \"dense\", \"units\": 17}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.05},"
    " \"batch\": 19, \"seed\": 3}";

typedef struct Built {
    char *dir;
    KpProgram prog;
    karp_model *jit, *so;
} Built;

static void build(Built *b)
{
    b->dir = kp_test_tmpdir();
    kp_test_build_model(b->dir, "gm", model_json, KP_TEST_OPT(3), &b->prog, &b->jit, &b->so);
}

static void unbuild(Built *b)
{
    karp_close(b->jit);
    karp_close(b->so);
    kp_program_free(&b->prog);
    kp_test_rmdir(b->dir);
    free(b->dir);
}

static float *inputs(int64_t n, uint64_t seed)
{
    float *x = malloc((size_t)(n * IN) * sizeof *x);
    for (int64_t i = 0; i < n * IN; i++)
        x[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    return x;
}

/* The parameter slab of m (every parameter, in order). */
static void params_of(karp_model *m, float *out, size_t cap)
{
    size_t at = 0;
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        ck_assert_int_eq(karp_param_get(m, i, &p), 0);
        ck_assert(at + (size_t)p.size <= cap);
        memcpy(out + at, p.data, (size_t)p.size * sizeof(float));
        at += (size_t)p.size;
    }
}

START_TEST(jit_and_so)
{
    Built b;
    build(&b);
    const int64_t batches[3] = {1, 6, MAXB};
    for (int k = 0; k < 3; k++) {
        int64_t n = batches[k];
        float *x = inputs(n, 7 + (uint64_t)k);
        float yj[MAXB * OUT], ys[MAXB * OUT], y1[MAXB * OUT], yr[MAXB * OUT];
        ck_assert_int_eq(karp_infer(b.jit, x, n, yj), 0);
        ck_assert_int_eq(karp_infer(b.so, x, n, ys), 0);
        karp_set_threads(1);
        ck_assert_int_eq(karp_infer(b.jit, x, n, y1), 0);
        karp_set_threads(0);
        ck_assert_msg(memcmp(yj, ys, (size_t)(n * OUT) * sizeof(float)) == 0, "n=%lld: JIT and .so differ",
                      (long long)n);
        ck_assert_msg(memcmp(yj, y1, (size_t)(n * OUT) * sizeof(float)) == 0,
                      "n=%lld: 1 and 2 threads differ", (long long)n);
        KpDiag d;
        kp_diag_init(&d);
        ck_assert_msg(kp_interp_run(b.prog.infer, b.jit->params, x, n, yr, &d) == 0, "%s", d.msg);
        double r = kp_test_tolerance_ratio(yj, yr, n * OUT);
        ck_assert_msg(r <= 1.0, "n=%lld: off by %.3g x tolerance", (long long)n, r);
        free(x);
    }
    /* training: the same losses and parameters to the bit */
    for (int step = 0; step < 3; step++) {
        float *x = inputs(MAXB, 100 + (uint64_t)step);
        int32_t labels[MAXB];
        for (int i = 0; i < MAXB; i++)
            labels[i] = (i * 7 + step) % OUT;
        float lj, ls;
        ck_assert_int_eq(karp_train_step(b.jit, x, labels, MAXB, &lj), 0);
        ck_assert_int_eq(karp_train_step(b.so, x, labels, MAXB, &ls), 0);
        ck_assert_msg(memcmp(&lj, &ls, sizeof lj) == 0, "step %d: loss %.9g (JIT) vs %.9g (.so)", step,
                      lj, ls);
        free(x);
    }
    static float pj[IN * 129 + 129 + 129 * OUT + OUT], ps[IN * 129 + 129 + 129 * OUT + OUT];
    params_of(b.jit, pj, sizeof pj / sizeof pj[0]);
    params_of(b.so, ps, sizeof ps / sizeof ps[0]);
    ck_assert_msg(memcmp(pj, ps, sizeof pj) == 0, "trained parameters differ between JIT and .so");
    unbuild(&b);
}
END_TEST

START_TEST(scratch_enomem)
{
    Built b;
    build(&b);
    ck_assert_int_gt((int)b.jit->desc->scratch_bytes, 0);
    float *x = inputs(MAXB, 5);
    float y[MAXB * OUT], loss;
    int32_t labels[MAXB] = {0};
    karp_model *models[2] = {b.jit, b.so};
    for (int k = 0; k < 2; k++) {
        karp_model *m = models[k];
        /* a slot per thread for a million threads: more than any machine has */
        ck_assert_int_eq(karp_set_threads(1 << 20), 0);
        ck_assert_int_eq(karp_infer(m, x, MAXB, y), KARP_ENOMEM);
        ck_assert_msg(strstr(karp_last_error(), "karp_infer: out of memory reserving") != NULL, "%s",
                      karp_last_error());
        ck_assert_msg(strstr(karp_last_error(), "scratch for 1048576 threads") != NULL, "%s",
                      karp_last_error());
        ck_assert_int_eq(karp_train_step(m, x, labels, MAXB, &loss), KARP_ENOMEM);
        ck_assert_int_eq(karp_forward(m, x, MAXB, y), KARP_ENOMEM);
        ck_assert_int_eq(karp_set_threads(0), 0);
        ck_assert_int_eq(karp_infer(m, x, MAXB, y), 0);
        ck_assert_int_eq(karp_train_step(m, x, labels, MAXB, &loss), 0);
    }
    free(x);
    unbuild(&b);
}
END_TEST

typedef struct Worker {
    karp_model *m;
    const float *x;
    const float *want;          /* MAXB outputs per batch size, single-threaded */
    int bad;
} Worker;

static void *worker(void *arg)
{
    Worker *w = arg;
    float y[MAXB * OUT];
    for (int call = 0; call < 60; call++) {
        int64_t n = 1 + call % MAXB;
        if (karp_infer(w->m, w->x, n, y) != 0 ||
            memcmp(y, w->want + (n - 1) * MAXB * OUT, (size_t)(n * OUT) * sizeof(float)) != 0)
            w->bad++;
    }
    return NULL;
}

START_TEST(concurrent_infer)
{
    Built b;
    build(&b);
    float *x = inputs(MAXB, 11);
    float *want = malloc((size_t)(MAXB * MAXB * OUT) * sizeof *want);
    for (int64_t n = 1; n <= MAXB; n++)
        ck_assert_int_eq(karp_infer(b.jit, x, n, want + (n - 1) * MAXB * OUT), 0);
    pthread_t th[4];
    Worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (Worker){.m = b.jit, .x = x, .want = want};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].bad == 0, "thread %d: %d calls differ from the single-threaded bits", i,
                      w[i].bad);
    }
    free(x);
    free(want);
    unbuild(&b);
}
END_TEST

START_TEST(split_k)
{
    enum { SIN = 64, SOUT = 4, SB = 4096 };
    static const char json[] =
        "{\"karp\": 1, \"name\": \"sk\", \"input\": {\"shape\": [64]}, \"layers\": ["
        "{\"type\": \"dense\", \"units\": 4}], \"loss\": \"mse\","
        " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.01}, \"batch\": 4096, \"seed\": 9}";
    char *dir = kp_test_tmpdir();
    KpProgram prog;
    karp_model *jit, *so;
    kp_test_build_model(dir, "sk", json, KP_TEST_OPT(3), &prog, &jit, &so);
    ck_assert_int_gt((int)jit->desc->scratch_shared_bytes, 0);
    uint64_t seed = 21;
    float *x = malloc(SB * SIN * sizeof *x), *dy = malloc(SB * SOUT * sizeof *dy);
    for (int i = 0; i < SB * SIN; i++)
        x[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    for (int i = 0; i < SB * SOUT; i++)
        dy[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    float g[4][SOUT * SIN];
    karp_model *models[4] = {jit, so, jit, so};
    for (int k = 0; k < 4; k++) {
        karp_set_threads(k < 2 ? 0 : 1);
        float y[SB * SOUT];
        ck_assert_int_eq(karp_zero_gradients(models[k]), 0);
        ck_assert_int_eq(karp_forward(models[k], x, SB, y), 0);
        ck_assert_int_eq(karp_backward(models[k], dy, NULL), 0);
        karp_param p;
        ck_assert_int_eq(karp_param_find(models[k], "dense0.weight", &p), 0);
        memcpy(g[k], p.grad, sizeof g[k]);
    }
    karp_set_threads(0);
    for (int k = 1; k < 4; k++)
        ck_assert_msg(memcmp(g[0], g[k], sizeof g[0]) == 0, "run %d: other bits than the JIT's at 2 threads", k);
    float ref[SOUT * SIN] = {0};
    kp_ref_dense_backward(NULL, ref, NULL, dy, x, NULL, SB, SIN, SOUT);
    double r = kp_test_tolerance_ratio(g[0], ref, SOUT * SIN);
    ck_assert_msg(r <= 1.0, "dW off by %.3g x tolerance", r);
    free(x), free(dy);
    karp_close(jit), karp_close(so);
    kp_program_free(&prog);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

/* conv16 x k on 16 x 8 x 8, then a dense head: every conv's weight
 * gradient the same Winograd kernel */
static void twin_json(char *buf, size_t cap, int k)
{
    int at = snprintf(buf, cap, "{\"karp\": 1, \"name\": \"tw%d\", \"input\": {\"shape\": [16, 8, 8]},"
                                " \"layers\": [", k);
    for (int i = 0; i < k; i++)
        at += snprintf(buf + at, cap - (size_t)at,
                       "{\"type\": \"conv2d\", \"filters\": 16, \"kernel\": 3, \"padding\": \"same\","
                       " \"bias\": false, \"activation\": \"relu\"},");
    snprintf(buf + at, cap - (size_t)at,
             "{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 10}],"
             " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.01},"
             " \"batch\": 8, \"seed\": 5}");
}

START_TEST(twin_ranges)
{
    enum { TB = 8, TIN = 16 * 8 * 8 };
    char *dir = kp_test_tmpdir();
    char json[2048], name[16];
    KpProgram prog[2];
    karp_model *jit[2];
    for (int i = 0; i < 2; i++) {
        twin_json(json, sizeof json, 2 + i);
        snprintf(name, sizeof name, "tw%d", 2 + i);
        kp_test_build_model(dir, name, json, KP_TEST_OPT(2), &prog[i], &jit[i], NULL);
    }
    ck_assert_int_gt((int)jit[0]->desc->scratch_shared_bytes, 0);
    ck_assert_int_eq((int)jit[1]->desc->scratch_shared_bytes, (int)jit[0]->desc->scratch_shared_bytes);

    karp_model *m = jit[1];
    uint64_t seed = 8;
    float x[TB * TIN], y[TB * 10], dy[TB * 10];
    for (int i = 0; i < TB * TIN; i++)
        x[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    for (int i = 0; i < TB * 10; i++)
        dy[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    int np = karp_param_count(m);
    float *g[3];
    for (int run = 0; run < 3; run++) {
        karp_set_threads(run == 2 ? 1 : 0);
        ck_assert_int_eq(karp_zero_gradients(m), 0);
        ck_assert_int_eq(karp_forward(m, x, TB, y), 0);
        ck_assert_int_eq(karp_backward(m, dy, NULL), 0);
        size_t total = 0;
        for (int k = 0; k < np; k++) {
            karp_param p;
            ck_assert_int_eq(karp_param_get(m, k, &p), 0);
            total += (size_t)p.size;
        }
        g[run] = malloc(total * sizeof(float));
        size_t at = 0;
        for (int k = 0; k < np; k++) {
            karp_param p;
            karp_param_get(m, k, &p);
            memcpy(g[run] + at, p.grad, (size_t)p.size * sizeof(float));
            at += (size_t)p.size;
        }
        if (run > 0)
            ck_assert_msg(memcmp(g[0], g[run], total * sizeof(float)) == 0,
                          "backward %d: other gradient bits than the first", run + 1);
    }
    karp_set_threads(0);
    for (int run = 0; run < 3; run++)
        free(g[run]);
    for (int i = 0; i < 2; i++) {
        karp_close(jit[i]);
        kp_program_free(&prog[i]);
    }
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(batch_one_dx)
{
    enum { AIN = 1003, AH = 300, AOUT = 7 };
    char *dir = kp_test_tmpdir();
    KpProgram prog[2];
    karp_model *m[2];
    for (int i = 0; i < 2; i++) {
        char json[512], name[8];
        snprintf(name, sizeof name, "ax%d", i + 1);
        snprintf(json, sizeof json,
                 "{\"karp\": 1, \"name\": \"%s\", \"input\": {\"shape\": [%d]}, \"layers\": ["
                 "{\"type\": \"dense\", \"units\": %d}, {\"type\": \"dense\", \"units\": %d}],"
                 " \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.01},"
                 " \"batch\": %d, \"seed\": 4}", name, AIN, AH, AOUT, i + 1);
        kp_test_build_model(dir, name, json, KP_TEST_OPT(2), &prog[i], &m[i], NULL);
    }
    uint64_t seed = 17;
    float x[AIN], dy[AOUT], y[AOUT], dx[2][AIN];
    for (int i = 0; i < AIN; i++)
        x[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    for (int i = 0; i < AOUT; i++)
        dy[i] = kp_test_uniform(&seed, -1.0f, 1.0f);
    karp_param w[2][2];
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(karp_init_params(m[i], 5), 0);
        ck_assert_int_eq(karp_zero_gradients(m[i]), 0);
        ck_assert_int_eq(karp_forward(m[i], x, 1, y), 0);
        ck_assert_int_eq(karp_backward(m[i], dy, dx[i]), 0);
        ck_assert_int_eq(karp_param_find(m[i], "dense0.weight", &w[i][0]), 0);
        ck_assert_int_eq(karp_param_find(m[i], "dense1.weight", &w[i][1]), 0);
    }
    /* dense0's weight (300 x 1003) is worth two threads, so its dx sums the
     * two halves of W's rows apart (emit_grad_dense.c): against the
     * reference below, and the same bits on one thread as on two */
    float dx1[AIN];
    karp_set_threads(1);
    ck_assert_int_eq(karp_zero_gradients(m[0]), 0);
    ck_assert_int_eq(karp_forward(m[0], x, 1, y), 0);
    ck_assert_int_eq(karp_backward(m[0], dy, dx1), 0);
    karp_set_threads(0);
    ck_assert_msg(memcmp(dx[0], dx1, sizeof dx1) == 0, "batch-1 dx: other bits on one thread");
    ck_assert_msg(memcmp(dx[0], dx[1], sizeof dx[0]) != 0,
                  "batch-1 dx: the GEMM's bits, so the rows were not summed in halves");
    double rg = kp_test_tolerance_ratio(dx[0], dx[1], AIN);
    ck_assert_msg(rg <= 1.0, "batch-1 dx off the batch-2 model's by %.3g x tolerance", rg);
    /* dW of the first layer is dh x^T, dh from dense_axpy: the GEMM's bits.
     * The head's is dy h^T, and h comes from the batch-1 forward, a dot
     * product in another order than the GEMM's: against the reference. */
    ck_assert_msg(memcmp(w[0][0].grad, w[1][0].grad, (size_t)w[0][0].size * sizeof(float)) == 0,
                  "batch-1 dW of layer 0: other bits than the GEMM's");
    karp_param b0;
    ck_assert_int_eq(karp_param_find(m[0], "dense0.bias", &b0), 0);
    float hid[AH], *rw = calloc((size_t)(AH * AOUT), sizeof *rw);
    kp_ref_dense_forward(hid, x, w[0][0].data, b0.data, 1, AIN, AH);
    kp_ref_dense_backward(NULL, rw, NULL, dy, hid, NULL, 1, AH, AOUT);
    double rdw = kp_test_tolerance_ratio(w[0][1].grad, rw, AH * AOUT);
    ck_assert_msg(rdw <= 1.0, "head dW off by %.3g x tolerance", rdw);
    free(rw);
    /* a second backward adds to the gradients (the accumulating path) */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(karp_forward(m[i], x, 1, y), 0);
        ck_assert_int_eq(karp_backward(m[i], dy, NULL), 0);
    }
    ck_assert_msg(memcmp(w[0][0].grad, w[1][0].grad, (size_t)w[0][0].size * sizeof(float)) == 0,
                  "batch-1 dW of layer 0 after two backwards: other bits than the GEMM's");
    karp_param w0 = w[0][0], w1 = w[0][1];
    float dh[AH], ref[AIN];
    memset(dh, 0, sizeof dh);
    memset(ref, 0, sizeof ref);
    kp_ref_dense_backward(dh, NULL, NULL, dy, NULL, w1.data, 1, AH, AOUT);
    kp_ref_dense_backward(ref, NULL, NULL, dh, NULL, w0.data, 1, AIN, AH);
    double r = kp_test_tolerance_ratio(dx[0], ref, AIN);
    ck_assert_msg(r <= 1.0, "dx off by %.3g x tolerance", r);
    for (int i = 0; i < 2; i++) {
        karp_close(m[i]);
        kp_program_free(&prog[i]);
    }
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gemm_models");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, jit_and_so);
    tcase_add_test(tc, scratch_enomem);
    tcase_add_test(tc, concurrent_infer);
    tcase_add_test(tc, split_k);
    tcase_add_test(tc, twin_ranges);
    tcase_add_test(tc, batch_one_dx);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK);
}
