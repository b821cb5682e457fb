/*
 * test_backend_models.c — generated code against the reference
 * interpreter, on random dense networks written as model files (so the
 * real frontend and passes run), through the JIT and through model.so.
 *
 * Tolerance.  Each output element must satisfy
 *     |got - ref| <= 1e-5 * (|ref| + mean |ref| over the output)
 * The generated dense sums in another order (vector lanes, then a tree)
 * than the reference, so the difference is a rounding error of the dot
 * product: at most ~in * 2^-24 * sum |w_k x_k|, and sum |w_k x_k| is of
 * the order of the typical output magnitude, not of one element (a sum
 * that cancels to ~0 still carries the rounding of its terms).  The mean
 * magnitude of the output stands in for that scale; the |ref| term keeps
 * the bound relative for large elements and for softmax probabilities,
 * whose errors are relative.  exp/tanh are within ~2 ulp of libm.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "include/karpc.h"
#include "modelbuild.h"
#include "numcheck.h"
#include "runtime/model.h"
#include "testutil.h"

static char tmpdir[256];

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static int pick(int n)
{
    return kp_test_pick(&rng_state, n);
}

static float uniform(float lo, float hi)
{
    return kp_test_uniform(&rng_state, lo, hi);
}

/* A random chain of dense layers (depth 1-4, widths 1/3/17/129), every
 * activation fused or standalone, and now and then a view (flatten,
 * reshape, dropout) — as the last layer too, so that the output is a view
 * that must be copied into y. */
static void random_model(int idx, char *json, size_t cap)
{
    static const int widths[] = {1, 3, 17, 129};
    static const char *acts[] = {"none", "relu", "sigmoid", "tanh", "softmax", "leaky_relu"};
    size_t n = 0;
    int in = widths[pick(4)];
    int image = pick(3) == 0;
    n += (size_t)snprintf(json + n, cap - n, "{\"karp\": 1, \"name\": \"net%d\", \"seed\": %d, ",
                          idx, 100 + idx);
    if (image)
        n += (size_t)snprintf(json + n, cap - n, "\"input\": {\"shape\": [%d, 2]}, \"layers\": "
                              "[{\"type\": \"flatten\"}", in);
    else
        n += (size_t)snprintf(json + n, cap - n, "\"input\": {\"shape\": [%d]}, \"layers\": [", in);
    int first = !image;
    int depth = 1 + pick(4), width = image ? in * 2 : in;
    for (int l = 0; l < depth; l++) {
        width = widths[pick(4)];
        const char *act = acts[pick(6)];
        n += (size_t)snprintf(json + n, cap - n, "%s{\"type\": \"dense\", \"units\": %d%s%s%s%s}",
                              first ? "" : ", ", width, strcmp(act, "none") ? ", \"activation\": \"" : "",
                              strcmp(act, "none") ? act : "", strcmp(act, "none") ? "\"" : "",
                              pick(4) == 0 ? ", \"bias\": false" : "");
        first = 0;
        int extra = pick(8);
        if (extra == 0)
            n += (size_t)snprintf(json + n, cap - n, ", {\"type\": \"leaky_relu\", \"alpha\": 0.2}");
        else if (extra == 1)
            n += (size_t)snprintf(json + n, cap - n, ", {\"type\": \"%s\"}", acts[1 + pick(4)]);
        else if (extra == 2)
            n += (size_t)snprintf(json + n, cap - n, ", {\"type\": \"dropout\", \"rate\": 0.5}");
    }
    if (pick(3) == 0)
        n += (size_t)snprintf(json + n, cap - n, ", {\"type\": \"reshape\", \"shape\": [1, %d]}", width);
    snprintf(json + n, cap - n, "]}\n");
}

/* One model file: codegen once; the object linked into a .so and the
 * module JIT-compiled; both against the interpreter at n = 1, 7, 64, and
 * against each other bit for bit, also with one thread. */
static void check_model(const char *json, int opt_level, double *worst)
{
    KpProgram prog;
    karp_model *mj = NULL, *ms = NULL;
    kp_test_build_model(tmpdir, "model", json, opt_level, &prog, &mj, &ms);
    const KpGraph *g = prog.infer;
    KpDiag d;
    kp_diag_init(&d);

    karp_info info;
    ck_assert_int_eq(karp_model_info(mj, &info), 0);
    /* random weights, the same in both models: U(-a, a) with a = 1.5 /
     * sqrt(fan_in), a bit wider than PyTorch's default so that sigmoid
     * and tanh saturate now and then, but scaled with fan_in as every
     * initializer does (unscaled, a wide softmax's logits grow with
     * sqrt(in) and so does their rounding, which the tolerance does not
     * model) */
    for (uint32_t p = 0; p < mj->desc->nparams; p++) {
        const KarpParamDesc *pd = &mj->desc->params[p];
        float a = 1.5f / sqrtf((float)(pd->fan_in > 0 ? pd->fan_in : 1));
        for (int64_t i = 0; i < pd->size; i++)
            mj->params[pd->offset + i] = uniform(-a, a);
    }
    memcpy(ms->params, mj->params, (size_t)info.param_floats * sizeof(float));

    static const int64_t batches[] = {1, 7, 64};
    for (int b = 0; b < 3; b++) {
        int64_t n = batches[b];
        int64_t nin = n * info.input_size, nout = n * info.output_size;
        float *x = malloc((size_t)nin * sizeof *x);
        float *yr = malloc((size_t)nout * sizeof *yr), *yj = malloc((size_t)nout * sizeof *yj);
        float *ys = malloc((size_t)nout * sizeof *ys), *y1 = malloc((size_t)nout * sizeof *y1);
        for (int64_t i = 0; i < nin; i++)
            x[i] = uniform(-2.0f, 2.0f);
        ck_assert_msg(kp_interp_run(g, mj->params, x, n, yr, &d) == 0, "%s", d.msg);
        ck_assert_int_eq(karp_infer(mj, x, n, yj), 0);
        ck_assert_int_eq(karp_infer(ms, x, n, ys), 0);
        karp_set_threads(1);
        ck_assert_int_eq(karp_infer(mj, x, n, y1), 0);
        karp_set_threads(0);
        double r = kp_test_tolerance_ratio(yj, yr, nout);
        ck_assert_msg(r <= 1.0, "n=%lld: off by %.3g x tolerance\n%s", (long long)n, r, json);
        if (r > *worst)
            *worst = r;
        ck_assert_msg(memcmp(yj, ys, (size_t)nout * sizeof *yj) == 0,
                      "JIT and .so differ at n=%lld\n%s", (long long)n, json);
        ck_assert_msg(memcmp(yj, y1, (size_t)nout * sizeof *yj) == 0,
                      "results depend on the thread count at n=%lld\n%s", (long long)n, json);
        free(x), free(yr), free(yj), free(ys), free(y1);
    }
    karp_close(ms);
    karp_close(mj);
    kp_program_free(&prog);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_bem_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_random_networks)
{
    char json[4096];
    double worst = 0;
    for (int i = 0; i < 16; i++) {
        random_model(i, json, sizeof json);
        check_model(json, KP_TEST_OPT(3), &worst);
    }
    fprintf(stderr, "random networks: worst error %.3g of the tolerance\n", worst);
}
END_TEST

/* Shapes that stress the tails: in = 1, in below and just above a vector,
 * out not a multiple of the 4-column tile, a wide softmax row. */
START_TEST(test_edge_shapes)
{
    static const char *models[] = {
        "{\"karp\": 1, \"name\": \"e1\", \"input\": {\"shape\": [1]}, \"layers\": "
        "[{\"type\": \"dense\", \"units\": 1}]}",
        "{\"karp\": 1, \"name\": \"e2\", \"input\": {\"shape\": [17]}, \"layers\": "
        "[{\"type\": \"dense\", \"units\": 5, \"activation\": \"relu\"}, "
        "{\"type\": \"dense\", \"units\": 6, \"activation\": \"softmax\"}]}",
        "{\"karp\": 1, \"name\": \"e3\", \"input\": {\"shape\": [3, 7, 5]}, \"layers\": "
        "[{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 300, \"activation\": \"tanh\"}, "
        "{\"type\": \"dense\", \"units\": 1000, \"activation\": \"softmax\"}]}",
        "{\"karp\": 1, \"name\": \"e4\", \"input\": {\"shape\": [33]}, \"layers\": "
        "[{\"type\": \"sigmoid\"}, {\"type\": \"reshape\", \"shape\": [3, 11]}]}",
    };
    double worst = 0;
    for (int i = 0; i < 4; i++)
        check_model(models[i], i == 1 ? 0 : KP_TEST_OPT(3), &worst);
}
END_TEST

START_TEST(test_karp_compile)
{
    char path[512];
    snprintf(path, sizeof path, "%s/mlp.json", tmpdir);
    ck_assert_int_eq(kp_test_write_file(path, "{\"karp\": 1, \"name\": \"mlp\", \"input\": "
                                        "{\"shape\": [1, 4, 4]}, \"layers\": [{\"type\": "
                                        "\"flatten\"}, {\"type\": \"dense\", \"units\": 8, "
                                        "\"activation\": \"relu\"}, {\"type\": \"dense\", "
                                        "\"units\": 3}], \"batch\": 64}"),
                     0);
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.max_batch = 5;
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_str_eq(info.name, "mlp");
    ck_assert_int_eq(info.max_batch, 5);
    ck_assert_int_eq(info.input_size, 16);
    ck_assert_int_eq(info.output_size, 3);
    ck_assert_int_eq(info.nparams, 4);
    char missing[256];
    ck_assert_int_eq(kp_rt_cpu_check(info.cpu_features, missing, sizeof missing), 0);
    float x[5 * 16], y[5 * 3];
    for (int i = 0; i < 5 * 16; i++)
        x[i] = (float)i / 40.0f - 1.0f;
    ck_assert_int_eq(karp_infer(m, x, 5, y), 0);
    ck_assert_int_lt(karp_infer(m, x, 6, y), 0);
    karp_close(m);
}
END_TEST

static Suite *models_suite(void)
{
    Suite *s = suite_create("backend_models");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_random_networks);
    tcase_add_test(tc, test_edge_shapes);
    tcase_add_test(tc, test_karp_compile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(models_suite(), CK_FORK_GETENV);
}
