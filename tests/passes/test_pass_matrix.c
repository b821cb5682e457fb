/*
 * test_pass_matrix.c — every optimizing pass on and off, alone and in
 * combination, gives the same numbers.
 *
 * Models: every example (the .json files in examples/ and one folder
 * below), the golden models of tests/passes/golden/, and random graphs
 * written by this test
 * (dense chains with activations, batchnorm and dropout; residual adds and
 * concat; conv + pool + batchnorm + dropout).  Each model is JIT-compiled
 * (karp_compile, max_batch 4, -O0 to keep the suite fast: the comparison
 * is between pass configurations at one optimization level) with all of
 * KARPC_NO_FUSE, _LAYOUT, _MEMPLAN, _FOLD, _GROUP set (the reference) and
 * then under every other combination of the five switches: the 31 others
 * for the examples and the golden models, and for the random graphs (and
 * in sanitizer builds, which run about ten times slower) the eleven that
 * switch each pass on alone or off alone, plus all on.  Each is compared
 * with the reference, from the same initial parameters (copied from the
 * reference) and the same inputs:
 *
 *   karp_infer's output y;
 *   karp_forward + karp_backward with a random dy: every trainable
 *     parameter's gradient and dx (models that can be trained at all);
 *   the losses of 5 karp_train_step calls on 5 batches (models with a
 *     loss and an optimizer).
 *
 * Tolerance, per tensor b (the reference) and a: for every element
 *   |a - b| <= 1e-5 (|b| + mean |b|)      (kp_test_tolerance_ratio <= 1)
 * The worst ratio over all comparisons is printed per model.
 */
#include <check.h>
#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "include/karpc.h"
#include "numcheck.h"
#include "testutil.h"

enum { BATCH = 4, STEPS = 5 };

#define ALL_OFF (KARPC_NO_FUSE | KARPC_NO_LAYOUT | KARPC_NO_MEMPLAN | KARPC_NO_FOLD | KARPC_NO_GROUP)
enum { NPASS = 5, NCOMBO = 1 << NPASS };

/* Whether to compare under the disable_passes flags: every combination
 * (but the reference) when all, else all on and one pass off or on alone. */
static bool compared(unsigned flags, bool all)
{
    int off = __builtin_popcount(flags);
    return flags != ALL_OFF && (all || off <= 1 || off == NPASS - 1);
}

static char *tmpdir;

/* --- random graphs --------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static int pick(int n)
{
    return kp_test_pick(&rng, n);
}

static const char *const acts[] = {"none", "relu", "sigmoid", "tanh", "leaky_relu"};
static const char *const optims[] = {"{\"type\": \"sgd\", \"lr\": 0.05}",
                                     "{\"type\": \"momentum\", \"lr\": 0.05}",
                                     "{\"type\": \"adam\", \"lr\": 0.01}"};

typedef struct Buf {
    char s[8192];
    size_t n;
} Buf;

static void put(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    ck_assert(k >= 0 && (size_t)k < sizeof b->s - b->n);
    b->n += (size_t)k;
}

/* dense layers with random widths and activations, batchnorm and dropout
 * between some of them */
static void random_dense_chain(Buf *b, int idx)
{
    put(b, "{\"karp\": 1, \"name\": \"chain%d\", \"seed\": %d, \"input\": {\"shape\": [%d]}, "
           "\"layers\": [",
        idx, 3 + idx, 3 + pick(12));
    int depth = 2 + pick(3);
    for (int l = 0; l < depth; l++) {
        put(b, "{\"type\": \"dense\", \"units\": %d, \"activation\": \"%s\"}, ", 2 + pick(20),
            acts[pick(5)]);
        if (pick(3) == 0)
            put(b, "{\"type\": \"batchnorm\"}, ");
        if (pick(3) == 0)
            put(b, "{\"type\": \"dropout\", \"rate\": 0.25}, ");
    }
    int loss = pick(3);
    put(b, "{\"type\": \"dense\", \"units\": %d}], \"loss\": \"%s\", \"optimizer\": %s}",
        2 + pick(6), loss == 0 ? "cross_entropy" : loss == 1 ? "mse" : "bce_logits",
        optims[pick(3)]);
}

/* a residual add and a concat in the graph form */
static void random_residual(Buf *b, int idx)
{
    int in = 4 + pick(12);
    put(b, "{\"karp\": 1, \"name\": \"residual%d\", \"seed\": %d, \"input\": {\"shape\": [%d]}, "
           "\"nodes\": [",
        idx, 11 + idx, in);
    put(b, "{\"name\": \"fc1\", \"type\": \"dense\", \"input\": \"input\", \"units\": %d, "
           "\"activation\": \"%s\"}, ",
        3 + pick(16), acts[1 + pick(4)]);
    put(b, "{\"name\": \"fc2\", \"type\": \"dense\", \"input\": \"fc1\", \"units\": %d}, ", in);
    put(b, "{\"name\": \"res\", \"type\": \"add\", \"inputs\": [\"fc2\", \"input\"]}, ");
    put(b, "{\"name\": \"act\", \"type\": \"%s\", \"input\": \"res\"}, ", acts[1 + pick(4)]);
    put(b, "{\"name\": \"branch\", \"type\": \"dense\", \"input\": \"input\", \"units\": %d, "
           "\"activation\": \"%s\"}, ",
        2 + pick(8), acts[pick(5)]);
    put(b, "{\"name\": \"cat\", \"type\": \"concat\", \"inputs\": [\"act\", \"branch\"]}, ");
    put(b, "{\"name\": \"bn\", \"type\": \"batchnorm\", \"input\": \"cat\"}, ");
    put(b, "{\"name\": \"out\", \"type\": \"dense\", \"input\": \"bn\", \"units\": %d}], ",
        2 + pick(5));
    put(b, "\"output\": \"out\", \"loss\": \"mse\", \"optimizer\": %s}", optims[pick(3)]);
}

/* conv + batchnorm + pool, a second conv with a residual add, dropout */
static void random_conv(Buf *b, int idx)
{
    int c = 1 + pick(3), f = 2 + pick(4), k = 1 + 2 * pick(2);
    put(b, "{\"karp\": 1, \"name\": \"conv%d\", \"seed\": %d, \"input\": {\"shape\": [%d, 8, 8]}, "
           "\"nodes\": [",
        idx, 17 + idx, c);
    put(b, "{\"name\": \"c1\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": %d, "
           "\"kernel\": %d, \"padding\": \"same\", \"activation\": \"%s\"}, ",
        f, k, acts[pick(5)]);
    put(b, "{\"name\": \"bn1\", \"type\": \"batchnorm\", \"input\": \"c1\"}, ");
    put(b, "{\"name\": \"c2\", \"type\": \"conv2d\", \"input\": \"bn1\", \"filters\": %d, "
           "\"kernel\": 3, \"padding\": 1}, ",
        f);
    put(b, "{\"name\": \"res\", \"type\": \"add\", \"inputs\": [\"c2\", \"bn1\"]}, ");
    put(b, "{\"name\": \"act\", \"type\": \"relu\", \"input\": \"res\"}, ");
    put(b, "{\"name\": \"pool\", \"type\": \"%s\", \"input\": \"act\", \"size\": 2}, ",
        pick(2) ? "maxpool2d" : "avgpool2d");
    put(b, "{\"name\": \"drop\", \"type\": \"dropout\", \"input\": \"pool\", \"rate\": 0.2}, ");
    put(b, "{\"name\": \"flat\", \"type\": \"flatten\", \"input\": \"drop\"}, ");
    put(b, "{\"name\": \"out\", \"type\": \"dense\", \"input\": \"flat\", \"units\": %d}], ",
        2 + pick(6));
    put(b, "\"output\": \"out\", \"loss\": \"cross_entropy\", \"optimizer\": %s}", optims[pick(3)]);
}

static char *write_random(int idx)
{
    Buf b = {.n = 0};
    switch (idx % 3) {
    case 0: random_dense_chain(&b, idx); break;
    case 1: random_residual(&b, idx); break;
    default: random_conv(&b, idx); break;
    }
    char name[64];
    snprintf(name, sizeof name, "random%d.json", idx);
    char *path = kp_test_path(tmpdir, name);
    ck_assert_int_eq(kp_test_write_file(path, b.s), 0);
    return path;
}

/* --- one model under every configuration ---------------------------------- */

/* What a configuration computes; every array malloc'd. */
typedef struct Results {
    float *y, *dx, *grads;       /* grads: the trainable parameters', concatenated */
    int64_t ny, ndx, ngrads;
    float loss[STEPS];
    bool has_grads, has_train;
} Results;

typedef struct Inputs {
    float *x[STEPS];             /* x[0] for infer and the gradients */
    void *target[STEPS];
    float *dy;
    float *params;               /* the reference's initial parameters */
    int64_t nparams_floats;
} Inputs;

static void results_free(Results *r)
{
    free(r->y);
    free(r->dx);
    free(r->grads);
}

static const char *config_name(unsigned flags, char *buf, size_t size)
{
    if (flags == 0)
        return "all passes on";
    snprintf(buf, size, "%s%s%s%s%s", flags & KARPC_NO_FUSE ? " --no-fuse" : "",
             flags & KARPC_NO_LAYOUT ? " --no-layout" : "",
             flags & KARPC_NO_MEMPLAN ? " --no-memplan" : "",
             flags & KARPC_NO_FOLD ? " --no-fold" : "",
             flags & KARPC_NO_GROUP ? " --no-group" : "");
    return buf + 1;
}

static karp_model *compile(const char *path, unsigned flags)
{
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.max_batch = BATCH;
    o.opt_level = 0;
    o.disable_passes = flags;
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    char buf[80];
    ck_assert_msg(m != NULL, "%s (%s): %s", path, config_name(flags, buf, sizeof buf),
                  err.message);
    return m;
}

/* the parameters, in model order, into one array (or from it) */
static int64_t copy_params(karp_model *m, float *flat, bool out)
{
    int64_t k = 0;
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        ck_assert_int_eq(karp_param_get(m, i, &p), 0);
        if (flat && out)
            memcpy(flat + k, p.data, (size_t)p.size * sizeof(float));
        else if (flat)
            memcpy(p.data, flat + k, (size_t)p.size * sizeof(float));
        k += p.size;
    }
    if (flat && !out)
        ck_assert_int_eq(karp_params_changed(m), 0);
    return k;
}

static void make_inputs(karp_model *m, Inputs *in)
{
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    uint64_t s = 0x51ED2701u;
    for (int t = 0; t < STEPS; t++) {
        in->x[t] = malloc((size_t)(BATCH * info.input_size) * sizeof(float));
        for (int64_t i = 0; i < BATCH * info.input_size; i++)
            in->x[t][i] = kp_test_uniform(&s, -1, 1);
        if (info.target_labels) {
            int32_t *labels = malloc(BATCH * sizeof *labels);
            for (int i = 0; i < BATCH; i++)
                labels[i] = kp_test_pick(&s, (int)info.output_size);
            in->target[t] = labels;
        } else {
            float *tf = malloc((size_t)(BATCH * info.output_size) * sizeof(float));
            for (int64_t i = 0; i < BATCH * info.output_size; i++)
                tf[i] = kp_test_uniform(&s, 0.05f, 0.95f);
            in->target[t] = tf;
        }
    }
    in->dy = malloc((size_t)(BATCH * info.output_size) * sizeof(float));
    for (int64_t i = 0; i < BATCH * info.output_size; i++)
        in->dy[i] = kp_test_uniform(&s, -1, 1);
    in->nparams_floats = copy_params(m, NULL, true);
    in->params = malloc((size_t)in->nparams_floats * sizeof(float));
    copy_params(m, in->params, true);
}

static void inputs_free(Inputs *in)
{
    for (int t = 0; t < STEPS; t++) {
        free(in->x[t]);
        free(in->target[t]);
    }
    free(in->dy);
    free(in->params);
}

static void run(karp_model *m, const Inputs *in, Results *r)
{
    memset(r, 0, sizeof *r);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    copy_params(m, in->params, false);
    r->ny = BATCH * info.output_size;
    r->y = malloc((size_t)r->ny * sizeof(float));
    ck_assert_int_eq(karp_infer(m, in->x[0], BATCH, r->y), 0);

    r->has_grads = info.no_train_reason == NULL;
    if (r->has_grads) {
        r->ndx = BATCH * info.input_size;
        r->dx = malloc((size_t)r->ndx * sizeof(float));
        ck_assert_int_eq(karp_zero_gradients(m), 0);
        ck_assert_msg(karp_forward(m, in->x[0], BATCH, NULL) == 0, "%s", karp_last_error());
        ck_assert_msg(karp_backward(m, in->dy, r->dx) == 0, "%s", karp_last_error());
        for (int i = 0; i < karp_param_count(m); i++) {
            karp_param p;
            ck_assert_int_eq(karp_param_get(m, i, &p), 0);
            if (!p.trainable)
                continue;
            r->grads = realloc(r->grads, (size_t)(r->ngrads + p.size) * sizeof(float));
            memcpy(r->grads + r->ngrads, p.grad, (size_t)p.size * sizeof(float));
            r->ngrads += p.size;
        }
        ck_assert_int_eq(karp_zero_gradients(m), 0);
    }
    r->has_train = info.has_train;
    for (int t = 0; r->has_train && t < STEPS; t++)
        ck_assert_msg(karp_train_step(m, in->x[t], in->target[t], BATCH, &r->loss[t]) == 0, "%s",
                      karp_last_error());
}

static double compare(const char *model, const char *config, const char *what, const float *got,
                      const float *ref, int64_t count)
{
    double ratio = kp_test_tolerance_ratio(got, ref, count);
    ck_assert_msg(ratio <= 1.0, "%s, %s: %s differs from all passes off (%.3g x the tolerance "
                  "|a-b| <= 1e-5 (|b| + mean|b|))", model, config, what, ratio);
    return ratio;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* path as printed: below the source tree, or the file name of a random
 * graph; all: every combination of the switches (compared()) */
static void check_model(const char *path, const char *shown, bool all)
{
    karp_model *ref_model = compile(path, ALL_OFF);
    Inputs in;
    memset(&in, 0, sizeof in);
    make_inputs(ref_model, &in);
    Results ref;
    run(ref_model, &in, &ref);
    karp_close(ref_model);

    double worst = 0;
    double t0 = now();
    int nconfig = 0;
    for (unsigned flags = 0; flags < NCOMBO; flags++) {
        if (!compared(flags, all))
            continue;
        nconfig++;
        char buf[80];
        const char *config = config_name(flags, buf, sizeof buf);
        karp_model *m = compile(path, flags);
        Results r;
        run(m, &in, &r);
        karp_close(m);
        double w = compare(path, config, "karp_infer's output", r.y, ref.y, ref.ny);
        if (ref.has_grads) {
            ck_assert_int_eq(r.ngrads, ref.ngrads);
            w = fmax(w, compare(path, config, "the parameter gradients", r.grads, ref.grads,
                                ref.ngrads));
            w = fmax(w, compare(path, config, "dx", r.dx, ref.dx, ref.ndx));
        }
        for (int t = 0; ref.has_train && t < STEPS; t++) {
            char what[40];
            snprintf(what, sizeof what, "the loss of train step %d", t + 1);
            w = fmax(w, compare(path, config, what, &r.loss[t], &ref.loss[t], 1));
        }
        worst = fmax(worst, w);
        results_free(&r);
    }
    printf("pass matrix: %s: %d configurations against all off: output%s%s; worst %.3g of the "
           "tolerance (%.1f s)\n",
           shown, nconfig, ref.has_grads ? ", gradients and dx" : "",
           ref.has_train ? ", 5 training losses" : "", worst, now() - t0);
    fflush(stdout);
    results_free(&ref);
    inputs_free(&in);
}

/* --- the model lists -------------------------------------------------------- */

static glob_t files;

static void setup(void)
{
    tmpdir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(tmpdir);
}

static void teardown(void)
{
    kp_test_rmdir(tmpdir);
    free(tmpdir);
}

static void list_files(void)
{
    static const char *const patterns[] = {"/examples/*.json", "/examples/*/*.json",
                                           "/tests/passes/golden/*.json"};
    for (int i = 0; i < 3; i++) {
        char pat[512];
        snprintf(pat, sizeof pat, "%s%s", KARP_SOURCE_DIR, patterns[i]);
        int rc = glob(pat, i ? GLOB_APPEND : 0, NULL, &files);
        if (rc != 0 && rc != GLOB_NOMATCH) {
            fprintf(stderr, "glob %s failed\n", pat);
            exit(EXIT_FAILURE);
        }
    }
}

/* sanitizer builds compare the eleven single-pass configurations only */
enum { EVERY_COMBINATION = !KP_TEST_ASAN };

START_TEST(model_files)
{
    check_model(files.gl_pathv[_i], files.gl_pathv[_i] + strlen(KARP_SOURCE_DIR) + 1,
                EVERY_COMBINATION);
}
END_TEST

enum { NRANDOM = 6 };

START_TEST(random_graphs)
{
    rng = 0x9E3779B97F4A7C15ull + (uint64_t)_i * 0x1000193u;
    char *path = write_random(_i);
    check_model(path, strrchr(path, '/') + 1, false);
    free(path);
}
END_TEST

START_TEST(the_examples_are_there)
{
    /* the matrix must not pass by finding nothing */
    int examples = 0;
    for (size_t i = 0; i < files.gl_pathc; i++)
        examples += strstr(files.gl_pathv[i], "/examples/") != NULL;
    ck_assert_int_ge(examples, 9);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pass_matrix");
    TCase *t = tcase_create("models");
    tcase_set_timeout(t, 600);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, the_examples_are_there);
    tcase_add_loop_test(t, model_files, 0, (int)files.gl_pathc);
    tcase_add_loop_test(t, random_graphs, 0, NRANDOM);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    list_files();
    int rc = kp_test_main(suite(), CK_FORK_GETENV);
    globfree(&files);
    return rc;
}
