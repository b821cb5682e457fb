/*
 * test_reliability.c — karp_set_check_numerics (the first NaN or Inf, its
 * step and layer), threads (two models compiled and trained at once equal
 * the sequential run bit for bit; karp_infer from several threads on one
 * model equals the single-threaded outputs), and limits (deep JSON, batch
 * 0, n = 0, dimensions that would overflow, a model larger than memory, a
 * truncated file): each an exact message.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/karpc.h"
#include "runtime/model.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    dir = kp_test_tmpdir();
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
}

/* Write json to dir/name and return the path (the caller frees). */
static char *put(const char *name, const char *json)
{
    char *path = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_file(path, json), 0);
    return path;
}

static karp_model *compile_json(const char *name, const char *json)
{
    char *path = put(name, json);
    karp_error err;
    karp_model *m = karp_compile(path, NULL, &err);
    ck_assert_msg(m != NULL, "%s: %s", name, err.message);
    free(path);
    return m;
}

/* The error karp_compile gives for json, with dir/ taken off the front. */
static void expect_compile_error(const char *json, const char *message)
{
    char *path = put("bad.json", json);
    karp_error err;
    karp_model *m = karp_compile(path, NULL, &err);
    ck_assert_ptr_null(m);
    size_t dl = strlen(dir);
    const char *got = strncmp(err.message, dir, dl) == 0 ? err.message + dl + 1 : err.message;
    ck_assert_msg(strcmp(got, message) == 0, "\n  expected: %s\n  got:      %s", message, got);
    free(path);
}

static const char mlp_json[] =
    "{\"karp\": 1, \"name\": \"mlp\", \"input\": {\"shape\": [4]},\n"
    " \"layers\": [{\"type\": \"dense\", \"name\": \"dense1\", \"units\": 8, \"activation\": \"relu\"},\n"
    "            {\"type\": \"dense\", \"name\": \"dense2\", \"units\": 3}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"%s\", \"lr\": %s},\n"
    " \"batch\": 16, \"seed\": %d}\n";

static karp_model *mlp(const char *opt, const char *lr, int seed)
{
    char json[1024], name[64];
    snprintf(json, sizeof json, mlp_json, opt, lr, seed);
    snprintf(name, sizeof name, "mlp_%s_%d.json", opt, seed);
    return compile_json(name, json);
}

#define DIVERGE_MESSAGE \
    "karp_train_step: step 2: NaN in layer 'dense1' (parameter dense1.weight, element 0)"
static void batch(int step, float *x, int32_t *labels)
{
    for (int i = 0; i < 16; i++) {
        labels[i] = (i + step) % 3;
        for (int k = 0; k < 4; k++)
            x[i * 4 + k] = sinf((float)(step * 64 + i * 4 + k)) + (k == labels[i] ? 1.0f : 0.0f);
    }
}

START_TEST(numerics_input_nan)
{
    karp_model *m = mlp("sgd", "0.1", 1);
    float x[64];
    int32_t labels[16];
    batch(0, x, labels);
    x[3 * 4 + 2] = NAN;
    float loss;
    ck_assert_int_eq(karp_train_step(m, x, labels, 16, &loss), 0); /* not checked: goes on */
    ck_assert_int_eq(karp_init_params(m, 1), 0);
    ck_assert_int_eq(karp_set_check_numerics(m, 1), 0);
    ck_assert_int_eq(karp_train_step(m, x, labels, 16, &loss), KARP_ENUMERIC);
    ck_assert_str_eq(karp_last_error(),
                     "karp_train_step: step 1: the input batch contains NaN at element 2 of "
                     "sample 3");
    karp_info info;
    karp_model_info(m, &info);
    ck_assert_int_eq(info.step, 0); /* refused before the step */
    x[3 * 4 + 2] = -INFINITY;
    ck_assert_int_eq(karp_forward(m, x, 16, NULL), KARP_ENUMERIC);
    ck_assert_str_eq(karp_last_error(),
                     "karp_forward: step 1: the input batch contains -Inf at element 2 of sample 3");
    ck_assert_str_eq(karp_strerror(KARP_ENUMERIC), "KARP_ENUMERIC");
    ck_assert_int_eq(karp_set_check_numerics(NULL, 1), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_set_check_numerics: model is NULL");
    karp_close(m);
}
END_TEST

START_TEST(numerics_layer_and_step)
{
    karp_model *m = mlp("sgd", "0.1", 1);
    ck_assert_int_eq(karp_set_check_numerics(m, 1), 0);
    float x[64], y[48];
    int32_t labels[16];
    for (int s = 0; s < 5; s++) {
        batch(s, x, labels);
        ck_assert_int_eq(karp_train_step(m, x, labels, 16, NULL), 0);
    }
    karp_param p;
    ck_assert_int_eq(karp_param_find(m, "dense2.bias", &p), 0);
    p.data[1] = INFINITY;
    ck_assert_int_eq(karp_forward(m, x, 16, y), KARP_ENUMERIC);
    ck_assert_str_eq(karp_last_error(),
                     "karp_forward: step 6: +Inf in layer 'dense2' (parameter dense2.bias, element 1)");
    karp_close(m);

    /* A learning rate that makes the run diverge: found at the step it happens. */
    m = mlp("sgd", "1e30", 1);
    ck_assert_int_eq(karp_set_check_numerics(m, 1), 0);
    int rc = 0, s;
    for (s = 0; s < 20 && rc == 0; s++) {
        batch(s, x, labels);
        rc = karp_train_step(m, x, labels, 16, NULL);
    }
    ck_assert_int_eq(rc, KARP_ENUMERIC);
    ck_assert_str_eq(karp_last_error(), DIVERGE_MESSAGE);
    karp_close(m);
}
END_TEST

/* Compiled with check_numerics, the check scans every value the call
 * computed: an overflow inside the first dense is found there, at its
 * output, before it reaches any parameter. */
START_TEST(numerics_activation)
{
    char json[1024];
    snprintf(json, sizeof json, mlp_json, "sgd", "0.1", 1);
    char *path = put("mlp_checked.json", json);
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.check_numerics = 1;
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    free(path);
    ck_assert_int_eq(karp_set_check_numerics(m, 1), 0);
    float x[64];
    int32_t labels[16];
    batch(0, x, labels);
    ck_assert_int_eq(karp_train_step(m, x, labels, 16, NULL), 0);
    for (int k = 0; k < 4; k++)
        x[5 * 4 + k] = 3e38f;   /* finite, but the weighted sum overflows */
    ck_assert_int_eq(karp_train_step(m, x, labels, 16, NULL), KARP_ENUMERIC);
    const char *msg = karp_last_error();
    ck_assert_msg(strncmp(msg, "karp_train_step: step 2: ", 25) == 0 && strstr(msg, "in layer 'dense1' (dense output, element ") &&
                      strstr(msg, " of sample 5)"),
                  "got: %s", msg);
    /* The head computes the loss and d_output only in train_step (the loss
     * fused into it): karp_forward does not scan what that step left there. */
    ck_assert_int_eq(karp_init_params(m, 1), 0);
    batch(1, x, labels);
    ck_assert_msg(karp_forward(m, x, 16, NULL) == 0, "%s", karp_last_error());
    karp_close(m);
}
END_TEST

/* ---- threads ---- */

typedef struct TrainJob {
    const char *opt;
    int seed;
    float losses[30];
    float params[8 * 4 + 8 + 3 * 8 + 3];
    karp_model *m;          /* NULL: compile in the thread */
} TrainJob;

static void *train_job(void *arg)
{
    TrainJob *j = arg;
    karp_model *m = mlp(j->opt, "0.05", j->seed);
    float x[64];
    int32_t labels[16];
    for (int s = 0; s < 30; s++) {
        batch(s, x, labels);
        ck_assert_int_eq(karp_train_step(m, x, labels, 16, &j->losses[s]), 0);
    }
    int off = 0;
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        ck_assert_int_eq(karp_param_get(m, i, &p), 0);
        memcpy(j->params + off, p.data, (size_t)p.size * sizeof(float));
        off += (int)p.size;
    }
    ck_assert_int_eq(off, (int)(sizeof j->params / sizeof(float)));
    karp_close(m);
    return NULL;
}

START_TEST(threads_compile_and_train)
{
    TrainJob seq[2] = {{.opt = "adam", .seed = 5}, {.opt = "momentum", .seed = 6}};
    TrainJob par[2] = {{.opt = "adam", .seed = 5}, {.opt = "momentum", .seed = 6}};
    train_job(&seq[0]);
    train_job(&seq[1]);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, train_job, &par[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert(memcmp(seq[i].losses, par[i].losses, sizeof seq[i].losses) == 0);
        ck_assert(memcmp(seq[i].params, par[i].params, sizeof seq[i].params) == 0);
    }
    ck_assert(seq[0].losses[29] < seq[0].losses[0]); /* it learned */
}
END_TEST

enum { NTHREADS = 6, REPEAT = 200, NB = 8 };

typedef struct InferJob {
    karp_model *m;
    const float *x;
    const float *want;
    int nsame;
} InferJob;

static const char cnn_json[] =
    "{\"karp\": 1, \"name\": \"cnn\", \"input\": {\"shape\": [2, 8, 8]},\n"
    " \"layers\": [{\"type\": \"conv2d\", \"filters\": 4, \"kernel\": 3, \"padding\": 1},\n"
    "            {\"type\": \"batchnorm\"}, {\"type\": \"relu\"},\n"
    "            {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 5}],\n"
    " \"batch\": 8, \"seed\": 9}\n";

static void *infer_job(void *arg)
{
    InferJob *j = arg;
    float y[NB * 5];
    for (int r = 0; r < REPEAT; r++) {
        if (karp_infer(j->m, j->x, NB, y) != 0)
            return NULL;
        j->nsame += memcmp(y, j->want, sizeof y) == 0;
    }
    return NULL;
}

START_TEST(threads_infer_one_model)
{
    karp_model *m = compile_json("cnn.json", cnn_json);
    static float x[NTHREADS][NB * 128], want[NTHREADS][NB * 5];
    for (int t = 0; t < NTHREADS; t++)
        for (int i = 0; i < NB * 128; i++)
            x[t][i] = sinf((float)(t * 1000 + i));
    for (int t = 0; t < NTHREADS; t++)
        ck_assert_int_eq(karp_infer(m, x[t], NB, want[t]), 0);
    for (int round = 0; round < 3; round++) {
        karp_params_changed(m); /* the first callers race to prepare */
        InferJob jobs[NTHREADS];
        pthread_t th[NTHREADS];
        for (int t = 0; t < NTHREADS; t++) {
            jobs[t] = (InferJob){.m = m, .x = x[t], .want = want[t]};
            ck_assert_int_eq(pthread_create(&th[t], NULL, infer_job, &jobs[t]), 0);
        }
        for (int t = 0; t < NTHREADS; t++)
            pthread_join(th[t], NULL);
        for (int t = 0; t < NTHREADS; t++)
            ck_assert_int_eq(jobs[t].nsame, REPEAT);
    }
    karp_close(m);
}
END_TEST

/* karp_infer picks its thread count as train_step does (runtime/adapt.h),
 * per workspace: after the warm-up calls some run on one thread (the
 * probes), and every call gives the same floats. */
START_TEST(threads_infer_adapts)
{
    enum { CALLS = 40 };
    karp_model *m = compile_json("cnn.json", cnn_json);
    static float x[NB * 128], y0[NB * 5], y[NB * 5];
    for (int i = 0; i < NB * 128; i++)
        x[i] = sinf((float)i);
    ck_assert_int_eq(karp_set_threads(2), 0);
    ck_assert_int_eq(karp_infer(m, x, NB, y0), 0);
    int same = 0;
    for (int c = 1; c < CALLS; c++) {
        ck_assert_int_eq(karp_infer(m, x, NB, y), 0);
        same += memcmp(y, y0, sizeof y) == 0;
    }
    int64_t one, all;
    kp_rt_infer_thread_counts(m, &one, &all);
    ck_assert_int_eq(same, CALLS - 1);
    ck_assert_int_eq(all, CALLS);
    ck_assert_msg(one >= KP_ADAPT_PROBE, "%lld of %d calls on one thread", (long long)one, CALLS);
    ck_assert_int_eq(karp_set_threads(0), 0);
    karp_close(m);
}
END_TEST

/* ---- limits ---- */

START_TEST(limits_model_file)
{
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    expect_compile_error(deep, "bad.json:1:101: JSON syntax error: nesting deeper than 100 levels");
    free(deep);
    expect_compile_error("{\"karp\": 1, \"name\": \"m\", \"input\": {\"shape\": [4]}, \"layers\": "
                         "[{\"type\": \"dense\", \"units\": 2}], \"batch\": 0}",
                         "bad.json: batch: must be an integer between 1 and 65536, got 0");
    expect_compile_error("{\"karp\": 1, \"name\": \"m\", \"input\": {\"shape\": "
                         "[4294967296, 4294967296, 4294967296]}, \"layers\": "
                         "[{\"type\": \"dense\", \"units\": 2}]}",
                         "bad.json: input.shape: has a dimension above 16777216, got "
                         "[4294967296,4294967296,4294967296]");
    expect_compile_error("{\"karp\": 1, \"name\": \"m\", \"input\": {\"shape\": [4]}, \"layers\": "
                         "[{\"type\": \"dense\", \"units\": 2147483648}]}",
                         "bad.json: layers[0] (dense): 'units' must be at most 16777216, got "
                         "2147483648");
    expect_compile_error("{\"karp\": 1, \"name\": \"m\", \"input\": {\"shape\": [4]}, \"layers\": "
                         "[{\"type\": \"reshape\", \"shape\": [4294967296, 4294967296]}]}",
                         "bad.json: layers[0] (reshape): 'shape' has a dimension above 16777216, "
                         "got [4294967296,4294967296]");
    expect_compile_error("{\"karp\": 1, \"name\": \"m\", \"input\": {\"shape\": [4]}, \"layers\": "
                         "[{\"type\": \"dense\", \"un",
                         "bad.json:1:80: JSON syntax error: unterminated string");
}
END_TEST

/* 10,000 layers: refused in the front end (no code generated), bounded. */
START_TEST(limits_many_layers)
{
    const char *layer = "{\"type\": \"dense\", \"units\": 8, \"activation\": \"relu\"},";
    size_t ll = strlen(layer), cap = 10000 * ll + 256, n = 0;
    char *json = malloc(cap);
    n += (size_t)snprintf(json, cap, "{\"karp\": 1, \"name\": \"deep\", \"input\": {\"shape\": [8]}, \"layers\": [");
    for (int i = 0; i < 10000; i++, n += ll)
        memcpy(json + n, layer, ll);
    json[n - 1] = ']';
    snprintf(json + n, cap - n, "}");
    expect_compile_error(json, "bad.json: layers: has 10000 layers; karpc compiles at most 1000");
    free(json);
    /* the graph form: parsed (the parser takes big graphs), refused before lowering */
    cap = 10000 * 96 + 256;
    json = malloc(cap);
    n = (size_t)snprintf(json, cap, "{\"karp\": 1, \"input\": {\"shape\": [4]}, \"nodes\": [");
    for (int i = 0; i < 10000; i++) {
        char in[16] = "input";
        if (i)
            snprintf(in, sizeof in, "n%d", i - 1);
        n += (size_t)snprintf(json + n, cap - n,
                              "%s{\"name\": \"n%d\", \"type\": \"relu\", \"input\": \"%s\"}",
                              i ? ", " : "", i, in);
    }
    snprintf(json + n, cap - n, "], \"output\": \"n9999\"}");
    expect_compile_error(json, "bad.json: nodes: has 10000 nodes; karpc compiles at most 1000");
    free(json);
}
END_TEST

/* A model file over 64 MiB: refused while reading, in bounded memory. */
START_TEST(limits_huge_file)
{
    char *path = kp_test_path(dir, "bad.json");
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    static char spaces[1 << 20];
    memset(spaces, ' ', sizeof spaces);
    fputs("{\"karp\": 1,", f);
    for (int i = 0; i < 65; i++)
        ck_assert_uint_eq(fwrite(spaces, 1, sizeof spaces, f), sizeof spaces);
    fputs("}", f);
    ck_assert_int_eq(fclose(f), 0);
    karp_error err;
    ck_assert_ptr_null(karp_compile(path, NULL, &err));
    size_t dl = strlen(dir);
    ck_assert_str_eq(err.message + dl + 1, "bad.json: cannot read: File too large");
    free(path);
}
END_TEST

START_TEST(limits_too_large_for_memory)
{
    /* 2^36 weights: 256 GiB of parameters, refused before any allocation. */
    char *path = put("huge.json", "{\"karp\": 1, \"name\": \"huge\", \"input\": {\"shape\": [65536]}, "
                                  "\"layers\": [{\"type\": \"dense\", \"units\": 1048576}]}");
    karp_error err;
    karp_model *m = karp_compile(path, NULL, &err);
    ck_assert_ptr_null(m);
    ck_assert_msg(err.code == KARP_ENOMEM, "%d %s", err.code, err.message);
    ck_assert_msg(strstr(err.message, "model 'huge': needs 768.8 GiB of memory (68720525312 "
                                      "parameter floats") == err.message,
                  "%s", err.message);
    ck_assert_msg(strstr(err.message, "more than this machine's"), "%s", err.message);
    free(path);
}
END_TEST

START_TEST(limits_batch_zero)
{
    karp_model *m = mlp("sgd", "0.1", 1);
    float x[64], y[48];
    int32_t labels[16];
    batch(0, x, labels);
    ck_assert_int_eq(karp_infer(m, x, 0, y), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_infer: n must be between 1 and 16, got 0");
    ck_assert_int_eq(karp_train_step(m, x, labels, 0, NULL), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_train_step: n must be between 1 and 16, got 0");
    ck_assert_int_eq(karp_forward(m, x, 0, y), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_forward: n must be between 1 and 16, got 0");
    karp_close(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("reliability");
    TCase *tc = tcase_create("reliability");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, numerics_input_nan);
    tcase_add_test(tc, numerics_layer_and_step);
    tcase_add_test(tc, numerics_activation);
    tcase_add_test(tc, threads_compile_and_train);
    tcase_add_test(tc, threads_infer_one_model);
    tcase_add_test(tc, threads_infer_adapts);
    tcase_add_test(tc, limits_model_file);
    tcase_add_test(tc, limits_too_large_for_memory);
    tcase_add_test(tc, limits_many_layers);
    tcase_add_test(tc, limits_huge_file);
    tcase_add_test(tc, limits_batch_zero);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
