/*
 * test_fold_layout.c — the fold pass (batchnorm folded into conv/dense,
 * constant nodes hoisted to the prepare entry) and the layout pass (dense
 * weights packed into panels once):
 *   - golden IR after fold and after layout (tests/ir/golden/fold_*.ir;
 *     KARP_UPDATE_GOLDEN=1 rewrites them);
 *   - the interpreter on the folded/packed graph against the plain graph;
 *   - JIT builds with every combination of --no-fold/--no-layout against
 *     the build with both off, on the examples and random dense/conv +
 *     batchnorm models, batchnorm statistics set away from 0/1;
 *   - "packed once": a weight written behind the model's back changes
 *     nothing until karp_params_changed; karp_load and a train step
 *     refresh the prepared copy;
 *   - train graphs untouched: a train step gives the same bits.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "include/karp.h"
#include "include/karpc.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

#define TOL 1e-5

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float uniform(float lo, float hi)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 40) * (1.0 / 16777216.0));
}

static char *src_path(const char *rel)
{
    char *p = malloc(512);
    snprintf(p, 512, "%s/%s", KARP_SOURCE_DIR, rel);
    return p;
}

/* max |a-b| / max(max |b|, 1e-3): the error relative to the output's scale */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double e = 0, s = 1e-3;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return e / s;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* a value for parameter `name`: batchnorm statistics and affine away from
 * their initial 0/1, everything else uniform in [-0.5, 0.5] */
static float param_value(const char *name, int64_t i)
{
    (void)i;
    if (ends_with(name, "running_var"))
        return uniform(0.3f, 2.0f);
    if (ends_with(name, "running_mean"))
        return uniform(-0.6f, 0.6f);
    if (strstr(name, "bn") && ends_with(name, ".weight"))
        return uniform(0.5f, 1.5f);
    return uniform(-0.5f, 0.5f);
}

/* --- golden IR ------------------------------------------------------------ */

static void check_dump(const char *model, const char *after)
{
    char *json = NULL, *expect = malloc(512);
    char rel[128];
    snprintf(rel, sizeof rel, "tests/ir/golden/%s.json", model);
    json = src_path(rel);
    snprintf(expect, 512, "%s/tests/ir/golden/%s.%s.ir", KARP_SOURCE_DIR, model, after);
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.dump_after = after;
    po.dump_to = f;
    KpDiag d;
    kp_diag_init(&d);
    KpGraph *g = NULL;
    int rc = kp_build_graph(json, &po, 0, &g, &d);
    fclose(f);
    ck_assert_msg(rc == 0, "%s", d.msg);
    kp_graph_free(g);
    const char *update = getenv("KARP_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0)
        ck_assert_int_eq(kp_test_write_file(expect, got), 0);
    char *want = kp_test_read_file(expect, NULL);
    ck_assert_msg(want != NULL, "missing %s (run with KARP_UPDATE_GOLDEN=1)", expect);
    ck_assert_msg(strcmp(got, want) == 0, "%s differs from the IR printed:\n%s", expect, got);
    free(want), free(got), free(json), free(expect);
}

START_TEST(golden_fold_layout)
{
    static const char *models[] = {"fold_dense", "fold_conv", "pad_conv"};
    check_dump(models[_i], "fold");
    check_dump(models[_i], "layout");
}
END_TEST

/* --- the interpreter: folded/packed graph against the plain one ----------- */

static KpGraph *build(const char *json, bool fold, bool layout)
{
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.fold = fold, po.layout = layout;
    KpDiag d;
    kp_diag_init(&d);
    KpGraph *g = NULL;
    ck_assert_msg(kp_build_graph(json, &po, 0, &g, &d) == 0, "%s", d.msg);
    return g;
}

static int count_op(const KpGraph *g, KpOp op)
{
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        k += g->nodes[i]->op == op;
    return k;
}

static void interp_compare(const char *json, int want_folds, int want_packs)
{
    KpGraph *plain = build(json, false, false), *opt = build(json, true, true);
    ck_assert_int_eq(count_op(opt, KP_OP_bn_fold_weight), want_folds);
    ck_assert_int_eq(count_op(opt, KP_OP_batchnorm), count_op(plain, KP_OP_batchnorm) - want_folds);
    ck_assert_int_eq(count_op(opt, KP_OP_dense_packed), want_packs);
    ck_assert_int_eq(plain->param_floats, opt->param_floats);
    ck_assert_int_eq(plain->prep_floats, 0);
    ck_assert(opt->prep_floats > 0);
    float *params = calloc((size_t)plain->param_floats, sizeof(float));
    for (int i = 0; i < plain->nvalues; i++) {
        const KpValue *v = plain->values[i];
        if (v->role == KP_ROLE_PARAM)
            for (int64_t k = 0; k < kp_value_numel(v, 1); k++)
                params[v->offset + k] = param_value(v->name, k);
    }
    int64_t n = 3, in = kp_value_sample_size(plain->input), out = kp_value_sample_size(plain->output);
    float *x = malloc((size_t)(n * in) * 4), *y0 = malloc((size_t)(n * out) * 4);
    float *y1 = malloc((size_t)(n * out) * 4);
    for (int64_t i = 0; i < n * in; i++)
        x[i] = uniform(-1, 1);
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_msg(kp_interp_run(plain, params, x, n, y0, &d) == 0, "%s", d.msg);
    ck_assert_msg(kp_interp_run(opt, params, x, n, y1, &d) == 0, "%s", d.msg);
    double e = rel_err(y1, y0, n * out);
    ck_assert_msg(e <= TOL, "%s: interpreter folded/packed vs plain: %g", json, e);
    free(params), free(x), free(y0), free(y1);
    kp_graph_free(plain), kp_graph_free(opt);
}

START_TEST(interp_golden_models)
{
    char *a = src_path("tests/ir/golden/fold_dense.json"), *b = src_path("tests/ir/golden/fold_conv.json");
    interp_compare(a, 2, 2);
    interp_compare(b, 2, 1);
    free(a), free(b);
    /* a conv weight with rows of 2304 floats (9 KiB): its rows padded, once */
    char *c = src_path("tests/ir/golden/pad_conv.json");
    KpGraph *g = build(c, true, true), *plain = build(c, true, false);
    ck_assert_int_eq(count_op(g, KP_OP_pad_rows), 1);
    ck_assert_int_eq(count_op(plain, KP_OP_pad_rows), 0);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == KP_OP_conv2d)
            ck_assert_int_eq(g->nodes[i]->attr.wstride, strcmp(g->nodes[i]->name, "wide") == 0 ? 2320 : 0);
    kp_graph_free(g), kp_graph_free(plain);
    interp_compare(c, 1, 1);
    free(c);
}
END_TEST

/* --- JIT builds ------------------------------------------------------------ */

static karp_model *compile(const char *json, unsigned off)
{
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.disable_passes = off;
    o.opt_level = KP_TEST_OPT(3);
    karp_error err;
    karp_model *m = karp_compile(json, &o, &err);
    ck_assert_msg(m != NULL, "%s: %s", json, err.message);
    return m;
}

/* the same parameter values in every build (same seed, same stream) */
static void set_params(karp_model *m, uint64_t seed)
{
    rng = seed;
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        ck_assert_int_eq(karp_param_get(m, i, &p), 0);
        for (int64_t k = 0; k < p.size; k++)
            p.data[k] = param_value(p.name, k);
    }
    ck_assert_int_eq(karp_params_changed(m), 0);
}

static void copy_params(karp_model *dst, karp_model *src)
{
    for (int i = 0; i < karp_param_count(src); i++) {
        karp_param a, b;
        ck_assert_int_eq(karp_param_get(src, i, &a), 0);
        ck_assert_int_eq(karp_param_get(dst, i, &b), 0);
        memcpy(b.data, a.data, (size_t)a.size * 4);
    }
    karp_params_changed(dst);
}

typedef struct Io {
    int64_t n, in, out;
    float *x, *y;
} Io;

static Io io_new(karp_model *m, int64_t n)
{
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    Io io = {.n = n, .in = info.input_size, .out = info.output_size};
    io.x = malloc((size_t)(n * io.in) * 4), io.y = malloc((size_t)(n * io.out) * 4);
    for (int64_t i = 0; i < n * io.in; i++)
        io.x[i] = uniform(-1, 1);
    return io;
}

static float *infer(karp_model *m, const Io *io)
{
    float *y = malloc((size_t)(io->n * io->out) * 4);
    ck_assert_int_eq(karp_infer(m, io->x, io->n, y), 0);
    return y;
}

static void jit_compare(const char *json)
{
    static const unsigned offs[] = {0, KARPC_NO_FOLD, KARPC_NO_LAYOUT};
    enum { NOFF = sizeof offs / sizeof offs[0] };
    karp_model *ref = compile(json, KARPC_NO_FOLD | KARPC_NO_LAYOUT), *m[NOFF];
    set_params(ref, 11);
    for (int k = 0; k < NOFF; k++) {
        m[k] = compile(json, offs[k]);
        set_params(m[k], 11);
    }
    for (int64_t n = 1; n <= 5; n += 4) {
        Io io = io_new(ref, n);
        float *want = infer(ref, &io);
        for (int k = 0; k < NOFF; k++) {
            float *got = infer(m[k], &io);
            double e = rel_err(got, want, n * io.out);
            ck_assert_msg(e <= TOL, "%s: passes off %#x vs fold+layout off, n=%lld: %g", json,
                          offs[k], (long long)n, e);
            free(got);
        }
        free(want), free(io.x), free(io.y);
    }
    for (int k = 0; k < NOFF; k++)
        karp_close(m[k]);
    karp_close(ref);
}

START_TEST(jit_examples)
{
    static const char *models[] = {"examples/resnet_cifar.json", "examples/fashion_mlp.json",
                                   "examples/fashion_cnn.json", "examples/keras_cnn.json",
                                   "tests/ir/golden/fold_dense.json",
                                   "tests/ir/golden/fold_conv.json",
                                   "tests/ir/golden/pad_conv.json",
                                   "tests/ir/golden/pad_conv_direct.json"};
    char *json = src_path(models[_i]);
    jit_compare(json);
    free(json);
}
END_TEST

/* a random chain of conv/dense layers with batchnorms after some of them */
static char *random_model(const char *dir, int seed)
{
    rng = 0x1234567ull * (uint64_t)(seed + 1);
    char body[4096];
    int c = 1 + (int)uniform(0, 3), h = 5 + (int)uniform(0, 5);
    int len = snprintf(body, sizeof body,
                       "{\"karp\": 1, \"name\": \"r%d\", \"input\": {\"shape\": [%d, %d, %d]}, "
                       "\"layers\": [",
                       seed, c, h, h);
    int nconv = (int)uniform(0, 3);
    for (int i = 0; i < nconv; i++) {
        int f = 1 + (int)uniform(0, 20), k = 1 + 2 * (int)uniform(0, 2);
        len += snprintf(body + len, sizeof body - (size_t)len,
                        "{\"type\": \"conv2d\", \"filters\": %d, \"kernel\": %d, \"padding\": "
                        "\"same\", \"bias\": %s}, ",
                        f, k, uniform(0, 1) < 0.5f ? "true" : "false");
        if (uniform(0, 1) < 0.8f)
            len += snprintf(body + len, sizeof body - (size_t)len, "{\"type\": \"batchnorm\"}, ");
        if (uniform(0, 1) < 0.5f)
            len += snprintf(body + len, sizeof body - (size_t)len, "{\"type\": \"relu\"}, ");
    }
    len += snprintf(body + len, sizeof body - (size_t)len, "{\"type\": \"flatten\"}");
    int ndense = 1 + (int)uniform(0, 3);
    for (int i = 0; i < ndense; i++) {
        int u = 1 + (int)uniform(0, 40);
        len += snprintf(body + len, sizeof body - (size_t)len,
                        ", {\"type\": \"dense\", \"units\": %d, \"bias\": %s}", u,
                        uniform(0, 1) < 0.5f ? "true" : "false");
        if (uniform(0, 1) < 0.7f)
            len += snprintf(body + len, sizeof body - (size_t)len,
                            ", {\"type\": \"batchnorm\", \"eps\": %g}", uniform(1e-5f, 1e-2f));
        if (i + 1 < ndense && uniform(0, 1) < 0.5f)
            len += snprintf(body + len, sizeof body - (size_t)len, ", {\"type\": \"tanh\"}");
    }
    snprintf(body + len, sizeof body - (size_t)len, "], \"batch\": 8, \"seed\": %d}\n", seed);
    char name[32];
    snprintf(name, sizeof name, "r%d.json", seed);
    char *path = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_file(path, body), 0);
    return path;
}

START_TEST(jit_random_models)
{
    char *dir = kp_test_tmpdir();
    for (int s = 0; s < 6; s++) {
        char *json = random_model(dir, 6 * _i + s);
        KpGraph *g = build(json, true, true);   /* the interpreter too */
        kp_graph_free(g);
        jit_compare(json);
        free(json);
    }
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

/* --- packed once ----------------------------------------------------------- */

START_TEST(prepared_once)
{
    char *json = src_path("tests/ir/golden/fold_dense.json");
    karp_model *m = compile(json, 0), *ref = compile(json, KARPC_NO_FOLD | KARPC_NO_LAYOUT);
    set_params(m, 5);
    set_params(ref, 5);
    karp_param w, rw, var;
    ck_assert_int_eq(karp_param_find(m, "d1.weight", &w), 0);
    ck_assert_int_eq(karp_param_find(m, "bn1.running_var", &var), 0);
    ck_assert_int_eq(karp_param_find(ref, "d1.weight", &rw), 0);
    Io io = io_new(m, 3);
    float *y0 = infer(m, &io), *r0 = infer(ref, &io);
    ck_assert(rel_err(y0, r0, 3 * io.out) <= TOL);

    /* written behind the model's back: the prepared copy is not rebuilt per call */
    for (int64_t k = 0; k < w.size; k++)
        w.data[k] += 0.25f, rw.data[k] += 0.25f;
    var.data[0] *= 3.0f;
    float *y1 = infer(m, &io);
    ck_assert_int_eq(memcmp(y0, y1, (size_t)(3 * io.out) * 4), 0);
    ck_assert_int_eq(karp_params_changed(m), 0);
    karp_param rvar;
    ck_assert_int_eq(karp_param_find(ref, "bn1.running_var", &rvar), 0);
    rvar.data[0] *= 3.0f;
    float *y2 = infer(m, &io), *r2 = infer(ref, &io);
    ck_assert(rel_err(y2, y0, 3 * io.out) > 1e-3);
    ck_assert_msg(rel_err(y2, r2, 3 * io.out) <= TOL, "after karp_params_changed: %g",
                  rel_err(y2, r2, 3 * io.out));

    /* karp_load: parameters from another model's checkpoint */
    char *dir = kp_test_tmpdir(), *ck = kp_test_path(dir, "other.safetensors");
    karp_model *other = compile(json, KARPC_NO_FOLD | KARPC_NO_LAYOUT);
    set_params(other, 99);
    ck_assert_int_eq(karp_save(other, ck), 0);
    ck_assert_int_eq(karp_load(m, ck), 0);
    float *y3 = infer(m, &io), *o3 = infer(other, &io);
    ck_assert_msg(rel_err(y3, o3, 3 * io.out) <= TOL, "after karp_load: %g", rel_err(y3, o3, 3 * io.out));

    /* a train step changes the parameters: the next infer sees them */
    float *target = calloc((size_t)(3 * io.out), 4), loss;
    ck_assert_int_eq(karp_train_step(m, io.x, target, 3, &loss), 0);
    float *y4 = infer(m, &io);
    copy_params(ref, m);
    float *r4 = infer(ref, &io);
    ck_assert(rel_err(y4, y3, 3 * io.out) > 1e-6);
    ck_assert_msg(rel_err(y4, r4, 3 * io.out) <= TOL, "after a train step: %g", rel_err(y4, r4, 3 * io.out));

    free(y0), free(r0), free(y1), free(y2), free(r2), free(y3), free(o3), free(y4), free(r4);
    free(target), free(io.x), free(io.y);
    karp_close(m), karp_close(ref), karp_close(other);
    kp_test_rmdir(dir);
    free(dir), free(ck), free(json);
}
END_TEST

/* --- train graphs untouched ------------------------------------------------- */

START_TEST(train_unchanged)
{
    char *json = src_path("tests/ir/golden/fold_conv.json");
    karp_model *a = compile(json, 0), *b = compile(json, KARPC_NO_FOLD | KARPC_NO_LAYOUT);
    set_params(a, 8);
    set_params(b, 8);
    Io io = io_new(a, 4);
    int32_t labels[4] = {0, 3, 1, 2};
    float la, lb;
    for (int step = 0; step < 2; step++) {
        ck_assert_int_eq(karp_train_step(a, io.x, labels, 4, &la), 0);
        ck_assert_int_eq(karp_train_step(b, io.x, labels, 4, &lb), 0);
        ck_assert_int_eq(memcmp(&la, &lb, 4), 0);
    }
    for (int i = 0; i < karp_param_count(a); i++) {
        karp_param pa, pb;
        karp_param_get(a, i, &pa), karp_param_get(b, i, &pb);
        ck_assert_msg(memcmp(pa.data, pb.data, (size_t)pa.size * 4) == 0, "%s differs", pa.name);
    }
    free(io.x), free(io.y), free(json);
    karp_close(a), karp_close(b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fold_layout");
    TCase *t = tcase_create("fold_layout");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, golden_fold_layout, 0, 3);
    tcase_add_test(t, interp_golden_models);
    tcase_add_loop_test(t, jit_examples, 0, 8);
    tcase_add_loop_test(t, jit_random_models, 0, 2);
    tcase_add_test(t, prepared_once);
    tcase_add_test(t, train_unchanged);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
