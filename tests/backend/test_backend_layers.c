/*
 * test_backend_layers.c — the generated code of every layer of issue 4
 * (conv2d, conv2d_transpose, pooling, batchnorm, dropout, masking, concat,
 * add with fan-out) against the reference interpreter, on small models
 * written as model files over a grid of geometries: strides, paddings
 * (explicit, "valid", uneven "same"), dilations, kernels larger and
 * smaller than the stride (strides 2 and 3, whose transposed direction is
 * split into phases, some without taps), output_padding, odd sizes, rows
 * wider than a tile, 1x1 images, channels 1, 3 and 17, batches 1 and 5.
 *
 * Per model:
 *   infer at n = 1, 3, 5 against kp_interp_run;
 *   forward (with a seed) + backward (random dy) against kp_interp_train's
 *     FORWARD|BACKWARD|INPUT_GRAD with the same seed: the output, every
 *     parameter gradient, dx and the parameters (running statistics move);
 *   one train_step (sgd) against FORWARD|LOSS|BACKWARD then UPDATE;
 *   1 thread and model.so give the same bits as the JIT at 2 threads.
 *
 * Tolerances, per tensor (the worst ratio to them is printed):
 *   y, gradients, dx, loss, running statistics:
 *       |got - ref| <= 1e-5 (|ref| + mean |ref| of the tensor)
 *     (sums in another order: vector lanes, fma; batchnorm's sums in double)
 *   a trained parameter after one sgd step: lr times the gradient's
 *     tolerance, plus 2 ulp of the parameter.
 * A layer feeding batchnorm has no bias here: batchnorm removes it, so its
 * gradient is zero up to rounding on both sides, noise against noise.
 * A dropout mask equals the reference's bit for bit: a model whose output
 * is x times the mask must give exactly the interpreter's output.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "include/karpc.h"
#include "runtime/model.h"
#include "testutil.h"

static char tmpdir[256];
/* The target models are compiled for: NULL, the host (AVX-512 here);
 * "x86-64-v3", AVX2 and FMA (8 floats a vector). */
static const char *target_cpu;
/* The targets the sweeps run on: the host, and AVX2 unless under
 * AddressSanitizer (whose build runs the interpreter several times
 * slower; the AVX2 code is the same generator at another width). */
static const char *const sweep_cpus[] = {NULL, "x86-64-v3"};
enum { NSWEEP_CPUS = KP_TEST_ASAN ? 1 : 2 };
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double worst[6];   /* y, grads, dx, params, loss, step */

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((next_u64() >> 40) * (1.0 / 16777216.0));
}

static void *slab(int64_t bytes)
{
    size_t sz = (size_t)((bytes + 63) / 64 * 64 + 64);
    void *p = aligned_alloc(64, sz);
    ck_assert_ptr_nonnull(p);
    memset(p, 0, sz);
    return p;
}

static double ratio(const float *got, const float *ref, int64_t count)
{
    double mean = 0, w = 0;
    for (int64_t i = 0; i < count; i++)
        mean += fabs((double)ref[i]);
    mean = mean / (double)(count > 0 ? count : 1) + 1e-30;
    for (int64_t i = 0; i < count; i++) {
        double r = fabs((double)got[i] - ref[i]) / (1e-5 * (fabs((double)ref[i]) + mean));
        if (!(r <= w))
            w = isnan(r) ? INFINITY : r;
    }
    return w;
}

static void note(int k, double r, const char *what, const char *json)
{
    ck_assert_msg(r <= 1.0, "%s off by %.3g x tolerance\n%s", what, r, json);
    if (r > worst[k])
        worst[k] = r;
}

typedef struct Model {
    const char *json;
    KpProgram prog;
    karp_model *mj, *ms;
    const KarpModelDesc *d;
    int64_t in_size, out_size;
} Model;

static void model_open(Model *m, const char *json)
{
    char path[512], obj[512], so[512];
    snprintf(path, sizeof path, "%s/m.json", tmpdir);
    snprintf(obj, sizeof obj, "%s/m.o", tmpdir);
    snprintf(so, sizeof so, "%s/m.so", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(json, f);
    fclose(f);
    m->json = json;
    KpDiag dg;
    kp_diag_init(&dg);
    ck_assert_msg(kp_build_program(path, NULL, 0, &m->prog, &dg) == 0, "%s\n%s", dg.msg, json);
    ck_assert_msg(m->prog.train != NULL, "%s\n%s", m->prog.no_train_reason, json);
    /* two partitions whatever the machine: model.so and the JIT both link
     * the objects of partition.c */
    KpTargetOpts t = {.opt_level = KP_TEST_OPT(3), .cpu = target_cpu, .jobs = 2};
    KpCodegen *cg = NULL;
    ck_assert_msg(kp_llvm_codegen(&m->prog, &t, &cg, &dg) == 0, "%s\n%s", dg.msg, json);
    int nobj = 0;
    ck_assert_msg(kp_llvm_write_objects(cg, obj, &nobj, &dg) == 0, "%s", dg.msg);
    kp_llvm_free(cg);
    char objs[KP_LLVM_MAX_PARTS][600];
    const char *objv[KP_LLVM_MAX_PARTS];
    ck_assert_int_le(nobj, KP_LLVM_MAX_PARTS);
    for (int i = 0; i < nobj; i++) {
        snprintf(objs[i], sizeof objs[i], "%s.%d.o", obj, i);
        objv[i] = objs[i];
    }
    ck_assert_msg(kp_link_shared(objv, nobj, so, NULL, &dg) == 0, "%s", dg.msg);
    for (int i = 0; i < nobj; i++)
        unlink(objs[i]);
    karp_error err;
    m->ms = karp_open(so, &err);
    ck_assert_msg(m->ms != NULL, "%s", err.message);
    ck_assert_msg(kp_llvm_codegen(&m->prog, &t, &cg, &dg) == 0, "%s\n%s", dg.msg, json);
    ck_assert_msg(kp_llvm_jit(cg, &m->mj, &dg) == 0, "%s", dg.msg);
    kp_llvm_free(cg);
    m->d = m->mj->desc;
    m->in_size = kp_value_sample_size(m->prog.train->input);
    m->out_size = kp_value_sample_size(m->prog.train->output);
    /* this test calls the entry points itself, as the runtime does after
     * reserving the kernels' scratch (runtime/scratch.c) */
    ck_assert_int_eq(kp_rt_scratch_reserve(m->mj->desc, &m->mj->train_scratch, "test"), 0);
    if (m->ms)
        ck_assert_int_eq(kp_rt_scratch_reserve(m->ms->desc, &m->ms->train_scratch, "test"), 0);
}

static void model_close(Model *m)
{
    karp_close(m->ms);
    karp_close(m->mj);
    kp_program_free(&m->prog);
}

/* Trained parameters uniform in +-1.5/sqrt(fan_in); running statistics
 * (after trainable_floats) a mean near 0 and a variance in [0.5, 1.5]. */
static void init_params(const KarpModelDesc *d, float *params)
{
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        int frozen = pd->offset >= d->trainable_floats;
        int var = frozen && strstr(pd->name, "var") != NULL;
        float a = 1.5f / sqrtf((float)(pd->fan_in > 0 ? pd->fan_in : 1));
        for (int64_t i = 0; i < pd->size; i++)
            params[pd->offset + i] = var ? uniform(0.5f, 1.5f) : frozen ? uniform(-0.3f, 0.3f)
                                                                        : uniform(-a, a);
    }
}

static double params_ratio(const KarpModelDesc *d, const float *got, const float *ref, int frozen_only)
{
    double w = 0;
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        if (frozen_only && pd->offset < d->trainable_floats)
            continue;
        double r = ratio(got + pd->offset, ref + pd->offset, pd->size);
        w = r > w ? r : w;
    }
    return w;
}

/* x: uniform; a masking model's value (0) fills every third sample */
static void random_x(const Model *m, float *x, int64_t n)
{
    int masking = strstr(m->json, "masking") != NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < m->in_size; k++)
            x[i * m->in_size + k] = masking && i % 3 == 1 ? 0.0f : uniform(-2, 2);
}

static void check_infer(const Model *m, const float *params)
{
    const KarpModelDesc *d = m->d;
    for (int64_t n = 1; n <= d->max_batch; n += 2) {
        float *x = malloc((size_t)(n * m->in_size) * 4), *y = malloc((size_t)(n * m->out_size) * 4);
        float *yr = malloc((size_t)(n * m->out_size) * 4), *y1 = malloc((size_t)(n * m->out_size) * 4);
        void *ws = slab(d->workspace_bytes);
        /* ABI 4: the folded and packed weights, prepared once from the parameters */
        float *prep = d->prep_floats ? slab(d->prep_floats * 4) : NULL, *prep_so = NULL;
        if (prep)
            d->prepare(params, prep);
        if (prep && (prep_so = slab(m->ms->desc->prep_floats * 4)))
            m->ms->desc->prepare(params, prep_so);
        random_x(m, x, n);
        d->infer(params, prep, ws, x, y, n);
        KpDiag dg;
        kp_diag_init(&dg);
        ck_assert_msg(kp_interp_run(m->prog.infer, params, x, n, yr, &dg) == 0, "%s", dg.msg);
        note(0, ratio(y, yr, n * m->out_size), "infer y", m->json);
        karp_set_threads(1);
        d->infer(params, prep, ws, x, y1, n);
        karp_set_threads(0);
        ck_assert_msg(memcmp(y, y1, (size_t)(n * m->out_size) * 4) == 0, "infer: threads\n%s", m->json);
        m->ms->desc->infer(params, prep_so, ws, x, y1, n);
        ck_assert_msg(memcmp(y, y1, (size_t)(n * m->out_size) * 4) == 0, "infer: .so\n%s", m->json);
        free(x), free(y), free(yr), free(y1), free(ws), free(prep), free(prep_so);
    }
}

#define PHASE(p) (1u << KP_PHASE_##p)

typedef struct Run {
    float *params, *grads, *opt, *y, *dx;
    void *tws;
} Run;

static void run_new(Run *r, const Model *m, const float *params, int64_t n)
{
    const KarpModelDesc *d = m->d;
    r->params = slab(d->param_floats * 4), r->grads = slab(d->param_floats * 4);
    r->opt = slab((int64_t)d->opt_slots * d->param_floats * 4 + 4);
    r->tws = slab(d->train_workspace_bytes);
    r->y = slab(n * m->out_size * 4), r->dx = slab(n * m->in_size * 4);
    memcpy(r->params, params, (size_t)d->param_floats * 4);
}

static void run_free(Run *r)
{
    free(r->params), free(r->grads), free(r->opt), free(r->tws), free(r->y), free(r->dx);
}

static void same_run(const Model *m, const Run *a, const Run *b, int64_t n, const char *what)
{
    size_t pf = (size_t)m->d->param_floats * 4;
    ck_assert_msg(memcmp(a->params, b->params, pf) == 0 && memcmp(a->grads, b->grads, pf) == 0 &&
                  memcmp(a->y, b->y, (size_t)(n * m->out_size) * 4) == 0 &&
                  memcmp(a->dx, b->dx, (size_t)(n * m->in_size) * 4) == 0,
                  "%s differ\n%s", what, m->json);
}

static void check_backward(const Model *m, const float *params, int64_t n, uint64_t seed)
{
    const KarpModelDesc *d = m->d;
    float *x = malloc((size_t)(n * m->in_size) * 4), *dy = malloc((size_t)(n * m->out_size) * 4);
    random_x(m, x, n);
    for (int64_t i = 0; i < n * m->out_size; i++)
        dy[i] = uniform(-1, 1);
    Run g, r, one, so;
    run_new(&g, m, params, n), run_new(&r, m, params, n), run_new(&one, m, params, n);
    run_new(&so, m, params, n);
    d->forward(g.params, g.tws, x, g.y, n, seed);
    d->backward(g.params, g.grads, g.tws, x, dy, g.dx, n);
    KpInterpTrain t = {.phases = PHASE(FORWARD) | PHASE(BACKWARD) | PHASE(INPUT_GRAD),
                       .params = r.params, .grads = r.grads, .opt = r.opt, .x = x, .dy = dy,
                       .dx = r.dx, .y = r.y, .n = n, .step = 1, .seed = seed};
    KpDiag dg;
    kp_diag_init(&dg);
    ck_assert_msg(kp_interp_train(m->prog.train, &t, &dg) == 0, "%s", dg.msg);
    note(0, ratio(g.y, r.y, n * m->out_size), "forward y", m->json);
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        char what[160];
        snprintf(what, sizeof what, "n=%lld: gradient of %s", (long long)n, pd->name);
        note(1, ratio(g.grads + pd->offset, r.grads + pd->offset, pd->size), what, m->json);
    }
    note(2, ratio(g.dx, r.dx, n * m->in_size), "dx", m->json);
    note(3, params_ratio(d, g.params, r.params, 1), "running statistics", m->json);

    karp_set_threads(1);
    d->forward(one.params, one.tws, x, one.y, n, seed);
    d->backward(one.params, one.grads, one.tws, x, dy, one.dx, n);
    karp_set_threads(0);
    same_run(m, &g, &one, n, "1 and 2 threads");
    m->ms->desc->forward(so.params, so.tws, x, so.y, n, seed);
    m->ms->desc->backward(so.params, so.grads, so.tws, x, dy, so.dx, n);
    same_run(m, &g, &so, n, "JIT and .so");
    run_free(&g), run_free(&r), run_free(&one), run_free(&so);
    free(x), free(dy);
}

/* One sgd train_step against the interpreter from the same state. */
static void check_step(const Model *m, const float *params, int64_t n, uint64_t seed)
{
    const KarpModelDesc *d = m->d;
    KpOptimHyper h = m->prog.train->optim;
    float *x = malloc((size_t)(n * m->in_size) * 4);
    int32_t *labels = malloc((size_t)n * 4);
    random_x(m, x, n);
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int32_t)(next_u64() % (uint64_t)m->out_size);
    Run g, r, one;
    run_new(&g, m, params, n), run_new(&r, m, params, n), run_new(&one, m, params, n);
    float lg = d->train_step(g.params, g.grads, g.opt, g.tws, x, labels, n, 1, seed);
    float lr = NAN;
    KpInterpTrain t = {.phases = PHASE(FORWARD) | PHASE(LOSS) | PHASE(BACKWARD),
                       .params = r.params, .grads = r.grads, .opt = r.opt, .x = x,
                       .target = labels, .loss = &lr, .n = n, .step = 1, .seed = seed};
    KpDiag dg;
    kp_diag_init(&dg);
    ck_assert_msg(kp_interp_train(m->prog.train, &t, &dg) == 0, "%s", dg.msg);
    float *gref = malloc((size_t)d->param_floats * 4);
    memcpy(gref, r.grads, (size_t)d->param_floats * 4);
    t.phases = PHASE(UPDATE);
    ck_assert_msg(kp_interp_train(m->prog.train, &t, &dg) == 0, "%s", dg.msg);
    note(4, fabs((double)lg - lr) / (1e-5 * (fabs((double)lr) + 1e-3)), "loss", m->json);
    double w = 0;
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        if (pd->offset >= d->trainable_floats)
            continue;
        double mean = 0;
        for (int64_t i = 0; i < pd->size; i++)
            mean += fabs((double)gref[pd->offset + i]);
        mean /= (double)pd->size;
        for (int64_t k = pd->offset; k < pd->offset + pd->size; k++) {
            double allowed = h.lr * 1e-5 * (fabs((double)gref[k]) + mean) +
                             2.4e-7 * fabs((double)r.params[k]) + 1e-30;
            double q = fabs((double)g.params[k] - r.params[k]) / allowed;
            w = q > w || isnan(q) ? (isnan(q) ? INFINITY : q) : w;
        }
    }
    note(5, w, "parameters after one step", m->json);
    note(3, params_ratio(d, g.params, r.params, 1), "running statistics after a step", m->json);
    karp_set_threads(1);
    float l1 = d->train_step(one.params, one.grads, one.opt, one.tws, x, labels, n, 1, seed);
    karp_set_threads(0);
    ck_assert_msg(memcmp(&l1, &lg, 4) == 0 &&
                  memcmp(one.params, g.params, (size_t)d->param_floats * 4) == 0,
                  "train_step depends on the thread count\n%s", m->json);
    run_free(&g), run_free(&r), run_free(&one);
    free(x), free(labels), free(gref);
}

static void check_model(const char *json)
{
    Model m;
    model_open(&m, json);
    float *params = slab(m.d->param_floats * 4);
    init_params(m.d, params);
    check_infer(&m, params);
    const int64_t batches[] = {1, m.d->max_batch};
    for (int b = 0; b < 2; b++) {
        check_backward(&m, params, batches[b], 0x1234 + (uint64_t)b);
        if (m.d->train_step)
            check_step(&m, params, batches[b], 0x777 + (uint64_t)b);
    }
    free(params);
    model_close(&m);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_bel_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A sequential model: input [c,h,w], the given layers, then flatten,
 * dense 4 and cross_entropy with sgd. */
static const char *seq(char *buf, size_t cap, int c, int h, int w, const char *layers)
{
    snprintf(buf, cap, "{\"karp\": 1, \"name\": \"t\", \"input\": {\"shape\": [%d, %d, %d]}, "
             "\"layers\": [%s, {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 4}], "
             "\"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
             "\"batch\": 5, \"seed\": 3}\n", c, h, w, layers);
    return buf;
}

START_TEST(test_conv2d_grid)
{
    static const char *geo[] = {
        "\"kernel\": 3",
        "\"kernel\": 3, \"padding\": \"same\"",
        "\"kernel\": 3, \"stride\": 2, \"padding\": \"same\"",          /* uneven */
        "\"kernel\": [2, 3], \"stride\": [2, 1], \"padding\": [1, 0], \"dilation\": [1, 2]",
        "\"kernel\": 4, \"stride\": 3, \"padding\": 2, \"bias\": false",
        "\"kernel\": 1",
        "\"kernel\": 3, \"dilation\": 2, \"padding\": \"same\"",
        /* strided: dx is the phase-split transposed kernel */
        "\"kernel\": 5, \"stride\": 2, \"padding\": \"same\"",          /* uneven */
        "\"kernel\": 3, \"stride\": 3, \"dilation\": 2, \"padding\": 2",
        "\"kernel\": [3, 5], \"stride\": 2, \"dilation\": 2, \"padding\": [1, 3]",
        "\"kernel\": 1, \"stride\": 2",                                  /* dx: empty phases */
        "\"kernel\": [2, 3], \"stride\": [3, 2], \"padding\": \"same\", \"bias\": false",
    };
    static const int chans[] = {1, 3, 17};
    char layers[512], json[2048];
    for (size_t g = 0; g < sizeof geo / sizeof *geo; g++)
        for (int c = 0; c < 3; c++) {
            int h = 5 + (int)g % 3, w = 7 + 2 * c + (int)g % 2 * 12;
            snprintf(layers, sizeof layers, "{\"type\": \"conv2d\", \"filters\": %d, %s, "
                     "\"activation\": \"relu\"}", c == 2 ? 17 : 4, geo[g]);
            check_model(seq(json, sizeof json, chans[c], h, w, layers));
        }
    /* a 1x1 image; a kernel larger than the image with padding */
    check_model(seq(json, sizeof json, 3, 1, 1, "{\"type\": \"conv2d\", \"filters\": 5, \"kernel\": 1}"));
    check_model(seq(json, sizeof json, 2, 3, 3,
                    "{\"type\": \"conv2d\", \"filters\": 3, \"kernel\": 5, \"padding\": 2}"));
    /* wide rows: several vector tiles and a partial one (dx: in each phase) */
    check_model(seq(json, sizeof json, 2, 4, 75,
                    "{\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"padding\": 1}"));
    check_model(seq(json, sizeof json, 3, 5, 151,
                    "{\"type\": \"conv2d\", \"filters\": 6, \"kernel\": 5, \"stride\": 2, "
                    "\"padding\": \"same\"}"));
}
END_TEST

START_TEST(test_conv2d_transpose_grid)
{
    static const char *geo[] = {
        "\"kernel\": 3",
        "\"kernel\": 3, \"stride\": 2",
        "\"kernel\": 3, \"stride\": 2, \"padding\": 1, \"output_padding\": 1",
        "\"kernel\": [2, 4], \"stride\": [1, 3], \"padding\": [0, 1]",
        "\"kernel\": 3, \"padding\": \"same\"",
        "\"kernel\": 2, \"stride\": 2, \"padding\": \"same\", \"bias\": false",
        "\"kernel\": 5, \"stride\": 2, \"padding\": \"same\"",          /* DCGAN's */
        "\"kernel\": 3, \"stride\": 3, \"padding\": 1, \"output_padding\": 2",
        "\"kernel\": [4, 5], \"stride\": [3, 2], \"padding\": [2, 1], \"output_padding\": [1, 0]",
        "\"kernel\": 1, \"stride\": 2, \"output_padding\": 1",         /* phases of bias only */
        "\"kernel\": 2, \"stride\": 3, \"padding\": [0, 1], \"bias\": false",
    };
    static const int chans[] = {1, 3, 17};
    char layers[512], json[2048];
    for (size_t g = 0; g < sizeof geo / sizeof *geo; g++)
        for (int c = 0; c < 3; c++) {
            /* every other geometry with an activation: an epilogue of the
             * transposed convolution (the strided ones' phases too) */
            snprintf(layers, sizeof layers, "{\"type\": \"conv2d_transpose\", \"filters\": %d, %s%s}",
                     c == 1 ? 17 : 3, geo[g], g % 2 ? ", \"activation\": \"tanh\"" : "");
            check_model(seq(json, sizeof json, chans[c], 3 + c, 5 + (int)g % 2, layers));
        }
    /* wide rows: several tiles and a partial one in each phase */
    check_model(seq(json, sizeof json, 3, 4, 71,
                    "{\"type\": \"conv2d_transpose\", \"filters\": 5, \"kernel\": 5, \"stride\": 2, "
                    "\"padding\": \"same\"}"));
    check_model(seq(json, sizeof json, 2, 3, 45,
                    "{\"type\": \"conv2d_transpose\", \"filters\": 4, \"kernel\": [3, 4], "
                    "\"stride\": [2, 3], \"padding\": 1, \"output_padding\": [1, 2]}"));
    /* DCGAN's 7x7 images: each phase (and the stride-1 layer's one image)
     * read as one row, a scatter then the epilogue over the planes, or
     * the epilogue at the store; the second layer's input gradient (a
     * stride-1 "same" gather) the same way */
    check_model(seq(json, sizeof json, 16, 7, 7,
                    "{\"type\": \"conv2d_transpose\", \"filters\": 8, \"kernel\": 5, \"stride\": 2, "
                    "\"padding\": \"same\", \"activation\": \"relu\"}"));
    check_model(seq(json, sizeof json, 16, 7, 7,
                    "{\"type\": \"conv2d_transpose\", \"filters\": 12, \"kernel\": 5, \"padding\": \"same\", "
                    "\"activation\": \"tanh\"}, {\"type\": \"conv2d_transpose\", \"filters\": 8, \"kernel\": 3, "
                    "\"padding\": \"same\", \"activation\": \"sigmoid\"}"));
    /* two in a row: the second's input gradient (conv2d_transpose_grad_x)
     * takes the first's activation gradient as its epilogue */
    check_model(seq(json, sizeof json, 3, 5, 7,
                    "{\"type\": \"conv2d_transpose\", \"filters\": 4, \"kernel\": 3, \"stride\": [2, 1], "
                    "\"activation\": \"leaky_relu\"}, {\"type\": \"conv2d_transpose\", \"filters\": 3, "
                    "\"kernel\": 5, \"stride\": 2, \"padding\": \"same\", \"activation\": \"tanh\"}"));
    check_model(seq(json, sizeof json, 2, 4, 19,
                    "{\"type\": \"conv2d_transpose\", \"filters\": 17, \"kernel\": 2, \"activation\": \"relu\"}, "
                    "{\"type\": \"conv2d_transpose\", \"filters\": 2, \"kernel\": [3, 4], \"stride\": [3, 2], "
                    "\"padding\": 1, \"activation\": \"sigmoid\"}"));
}
END_TEST

START_TEST(test_pool_grid)
{
    static const char *geo[] = {
        "\"size\": 2",
        "\"size\": 3, \"stride\": 2, \"padding\": 1",
        "\"size\": [2, 3], \"stride\": [1, 2]",
        "\"size\": 3, \"stride\": 1, \"padding\": 1",
    };
    char layers[512], json[2048];
    for (size_t g = 0; g < sizeof geo / sizeof *geo; g++)
        for (int avg = 0; avg < 2; avg++)
            for (int c = 1; c <= 3; c += 2) {
                /* a conv first, so the pool's input gradient is used and ties are rare */
                snprintf(layers, sizeof layers, "{\"type\": \"conv2d\", \"filters\": %d, \"kernel\": 1}, "
                         "{\"type\": \"%s\", %s}", c, avg ? "avgpool2d" : "maxpool2d", geo[g]);
                check_model(seq(json, sizeof json, c, 6 + (int)g % 2, 7, layers));
            }
}
END_TEST

START_TEST(test_batchnorm_dropout_masking)
{
    char json[2048];
    check_model(seq(json, sizeof json, 3, 5, 6,
                    "{\"type\": \"conv2d\", \"filters\": 17, \"kernel\": 3, \"padding\": 1, \"bias\": false}, "
                    "{\"type\": \"batchnorm\", \"momentum\": 0.2}, {\"type\": \"relu\"}"));
    check_model(seq(json, sizeof json, 2, 4, 19,
                    "{\"type\": \"batchnorm\"}, {\"type\": \"dropout\", \"rate\": 0.3}"));
    check_model("{\"karp\": 1, \"name\": \"bn1\", \"input\": {\"shape\": [23]}, \"layers\": "
                "[{\"type\": \"dense\", \"units\": 19, \"bias\": false}, {\"type\": \"batchnorm\", \"eps\": 0.001}, "
                "{\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"dense\", \"units\": 3}], "
                "\"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
                "\"batch\": 5}\n");
    check_model("{\"karp\": 1, \"name\": \"mk\", \"input\": {\"shape\": [10]}, \"layers\": "
                "[{\"type\": \"masking\"}, {\"type\": \"dense\", \"units\": 7, \"activation\": \"relu\"}, "
                "{\"type\": \"masking\", \"value\": 0}, {\"type\": \"dense\", \"units\": 3}], "
                "\"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
                "\"batch\": 5}\n");
}
END_TEST

/* A model of one pooling layer on input [c,h,w] (mse, sgd: no parameters)
 * against the interpreter, bit for bit: infer, and forward + backward's dx,
 * at n = 1 and the max batch, on 1 and 2 threads.  The inputs take four
 * values, -0 and +0 among them, so windows hold ties and the first maximum
 * (the reference's) must win. */
static void check_pool_exact(const char *layer, int c, int h, int w)
{
    char json[1024], path[512];
    snprintf(json, sizeof json, "{\"karp\": 1, \"name\": \"p\", \"input\": {\"shape\": [%d, %d, %d]}, "
             "\"layers\": [%s], \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
             "\"batch\": 6}\n", c, h, w, layer);
    snprintf(path, sizeof path, "%s/p.json", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(json, f);
    fclose(f);
    KpProgram prog;
    KpDiag dg;
    kp_diag_init(&dg);
    ck_assert_msg(kp_build_program(path, NULL, 0, &prog, &dg) == 0, "%s\n%s", dg.msg, json);
    ck_assert_msg(prog.train != NULL, "%s\n%s", prog.no_train_reason, json);
    KpTargetOpts t = {.opt_level = KP_TEST_OPT(3), .cpu = target_cpu};
    KpCodegen *cg = NULL;
    karp_model *m = NULL;
    ck_assert_msg(kp_llvm_codegen(&prog, &t, &cg, &dg) == 0 && kp_llvm_jit(cg, &m, &dg) == 0, "%s", dg.msg);
    kp_llvm_free(cg);
    const KarpModelDesc *d = m->desc;
    int64_t in = (int64_t)c * h * w, out = kp_value_sample_size(prog.infer->output);
    static const float vals[4] = {-1.0f, -0.0f, 0.0f, 1.0f};
    for (int64_t n = 1; n <= d->max_batch; n += d->max_batch - 1) {
        float *x = malloc((size_t)(n * in) * 4), *dx = malloc((size_t)(n * in) * 4);
        float *dxr = malloc((size_t)(n * in) * 4), *y = malloc((size_t)(n * out) * 4);
        float *yr = malloc((size_t)(n * out) * 4), *dy = malloc((size_t)(n * out) * 4);
        void *ws = slab(d->workspace_bytes), *tws = slab(d->train_workspace_bytes);
        float *params = slab(d->param_floats * 4 + 4);
        for (int64_t i = 0; i < n * in; i++)
            x[i] = vals[next_u64() % 4];
        for (int64_t i = 0; i < n * out; i++)
            dy[i] = uniform(-1, 1);
        ck_assert_msg(kp_interp_run(prog.infer, params, x, n, yr, &dg) == 0, "%s", dg.msg);
        KpInterpTrain r = {.phases = PHASE(FORWARD) | PHASE(BACKWARD) | PHASE(INPUT_GRAD),
                           .params = params, .grads = params, .opt = params, .x = x, .dy = dy,
                           .dx = dxr, .y = y, .n = n, .step = 1};
        ck_assert_msg(kp_interp_train(prog.train, &r, &dg) == 0, "%s", dg.msg);
        for (int threads = 1; threads <= 2; threads++) {
            karp_set_threads(threads);
            d->infer(params, NULL, ws, x, y, n);
            ck_assert_msg(memcmp(y, yr, (size_t)(n * out) * 4) == 0, "pool y, n=%lld, %d threads\n%s",
                          (long long)n, threads, json);
            d->forward(params, tws, x, y, n, 1);
            d->backward(params, params, tws, x, dy, dx, n);
            ck_assert_msg(memcmp(dx, dxr, (size_t)(n * in) * 4) == 0, "pool dx, n=%lld, %d threads\n%s",
                          (long long)n, threads, json);
        }
        karp_set_threads(0);
        free(x), free(dx), free(dxr), free(y), free(yr), free(dy), free(ws), free(tws), free(params);
    }
    karp_close(m);
    kp_program_free(&prog);
}

/* The pooling paths (backend/emit_pool_vec.c, emit_pool.c) on both vector
 * widths: non-overlapping windows (the gradient written once per element)
 * with leftover rows and columns, gaps between windows, top and bottom
 * padding, wide windows; rows of several chunks, some in the interior loop;
 * overlapping windows and left padding (the gradient scattered); each
 * exact against the reference, then behind a conv + relu (the pooling
 * gradient takes relu_grad as its epilogue) against the interpreter, one
 * model big enough to split over threads. */
START_TEST(test_pool_paths)
{
    static const char *geo[] = {
        "\"size\": 2",
        "\"size\": 2, \"stride\": 3",
        "\"size\": [2, 3], \"stride\": [2, 4]",
        "\"size\": 3",
        "\"size\": 2, \"padding\": [1, 0]",
        "\"size\": [1, 4]",
        "\"size\": 3, \"stride\": 2, \"padding\": 1",
        "\"size\": 2, \"padding\": 1",
        "\"size\": [3, 2], \"stride\": 1",
    };
    char layers[512], json[2048];
    for (int t = 0; t < NSWEEP_CPUS; t++) {
        target_cpu = sweep_cpus[t];
        for (size_t g = 0; g < sizeof geo / sizeof *geo; g++)
            for (int avg = 0; avg < 2; avg++) {
                const char *type = avg ? "avgpool2d" : "maxpool2d";
                snprintf(layers, sizeof layers, "{\"type\": \"%s\", %s}", type, geo[g]);
                check_pool_exact(layers, 2, 9, 11);
                check_pool_exact(layers, 3, 6, 70 + (int)g % 2);
                snprintf(layers, sizeof layers, "{\"type\": \"conv2d\", \"filters\": 3, \"kernel\": 1, "
                         "\"activation\": \"relu\"}, {\"type\": \"%s\", %s}", type, geo[g]);
                check_model(seq(json, sizeof json, 2, 7, 37 + (int)g % 2, layers));
            }
        check_model(seq(json, sizeof json, 3, 40, 71,
                        "{\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 1, \"activation\": \"relu\"}, "
                        "{\"type\": \"maxpool2d\", \"size\": 2}"));
    }
    target_cpu = NULL;
}
END_TEST

/* Batchnorm's sweeps on both vector widths: planes of 1 (rank-1), 9 (less
 * than a vector), 35 (vectors and a masked rest) and 256 floats, 1, 3 and
 * 17 channels, a relu before it (its gradient an epilogue of
 * batchnorm_bwd) and after it; one model big enough for several work
 * items of channels.  With the max batch of 5, planes of 16 floats and
 * more take the chunks of the samples (emit_batchnorm.c): 4 chunks at n =
 * 5; at n = 1 one, cut into runs of 5 channels for the 32x32 planes. */
START_TEST(test_batchnorm_sweeps)
{
    /* batchnorm straight on the input, so the model's dx is batchnorm's:
     * a weight before it would see a gradient orthogonal to itself
     * (batchnorm undoes the weight's scale), a sum that cancels to
     * rounding noise and no fair test of the kernel.  Planes of 32x32
     * only with 17 channels: dgamma of a channel is a sum of n*h*w terms
     * of both signs that cancels to about sqrt of their count, so with
     * 3 channels of 5120 terms the float rounding of dy alone (computed
     * by the dense gradient before it) reaches the 1e-5 tolerance. */
    static const int hw[][2] = {{3, 3}, {5, 7}, {16, 16}};
    static const int chans[] = {1, 3, 17};
    char json[2048];
    const char *bn = "{\"type\": \"batchnorm\"}, {\"type\": \"relu\"}";
    for (int t = 0; t < NSWEEP_CPUS; t++) {
        target_cpu = sweep_cpus[t];
        for (int g = 0; g < 3; g++)
            for (int c = 0; c < 3; c++)
                check_model(seq(json, sizeof json, chans[c], hw[g][0], hw[g][1], bn));
        check_model(seq(json, sizeof json, 17, 32, 32, bn));
        check_model("{\"karp\": 1, \"name\": \"bn1\", \"input\": {\"shape\": [23]}, \"layers\": "
                    "[{\"type\": \"batchnorm\"}, "
                    "{\"type\": \"dense\", \"units\": 3}], \"loss\": \"cross_entropy\", "
                    "\"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"batch\": 5}\n");
    }
    target_cpu = NULL;
}
END_TEST

/* y = x * mask: the generated mask is the reference's to the bit, over
 * several seeds, at 1 and 2 threads, for a tensor spanning many chunks. */
START_TEST(test_dropout_mask_bits)
{
    Model m;
    model_open(&m, "{\"karp\": 1, \"name\": \"dm\", \"input\": {\"shape\": [3, 37, 41]}, \"layers\": "
                   "[{\"type\": \"dropout\", \"rate\": 0.37}], \"batch\": 5}\n");
    const KarpModelDesc *d = m.d;
    int64_t n = 5, count = n * m.in_size;
    float *x = malloc((size_t)count * 4), *y = malloc((size_t)count * 4), *yr = malloc((size_t)count * 4);
    for (int64_t i = 0; i < count; i++)
        x[i] = uniform(0.5f, 2);
    void *tws = slab(d->train_workspace_bytes);
    float *params = slab(d->param_floats * 4 + 4), *grads = slab(d->param_floats * 4 + 4);
    int64_t zeros = 0;
    for (uint64_t seed = 0; seed < 4; seed++) {
        for (int threads = 1; threads <= 2; threads++) {
            karp_set_threads(threads);
            d->forward(params, tws, x, y, n, seed * 0x100000001ull);
            KpInterpTrain t = {.phases = PHASE(FORWARD), .params = params, .grads = grads,
                               .opt = grads, .x = x, .y = yr, .n = n, .step = 1,
                               .seed = seed * 0x100000001ull};
            KpDiag dg;
            kp_diag_init(&dg);
            ck_assert_msg(kp_interp_train(m.prog.train, &t, &dg) == 0, "%s", dg.msg);
            ck_assert_msg(memcmp(y, yr, (size_t)count * 4) == 0, "dropout masks differ, seed %llu",
                          (unsigned long long)seed);
        }
        for (int64_t i = 0; i < count; i++)
            zeros += y[i] == 0.0f;
    }
    karp_set_threads(0);
    double frac = (double)zeros / (double)(4 * count);
    ck_assert_msg(fabs(frac - 0.37) < 0.01, "dropped %.4f, rate 0.37", frac);
    free(x), free(y), free(yr), free(tws), free(params), free(grads);
    model_close(&m);
}
END_TEST

/* Graph form: fan-out into a residual add and a concat, a slice in the
 * gradient; pooling and batchnorm on the way. */
START_TEST(test_graph_form)
{
    check_model("{\"karp\": 1, \"name\": \"gf\", \"input\": {\"shape\": [3, 6, 7]}, \"nodes\": [\n"
                " {\"name\": \"c1\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": 4, \"kernel\": 3, \"padding\": \"same\", \"bias\": false},\n"
                " {\"name\": \"b1\", \"type\": \"batchnorm\", \"input\": \"c1\"},\n"
                " {\"name\": \"r1\", \"type\": \"relu\", \"input\": \"b1\"},\n"
                " {\"name\": \"c2\", \"type\": \"conv2d\", \"input\": \"r1\", \"filters\": 4, \"kernel\": 3, \"padding\": 1},\n"
                " {\"name\": \"a\", \"type\": \"add\", \"inputs\": [\"c2\", \"r1\"]},\n"
                " {\"name\": \"c3\", \"type\": \"conv2d\", \"input\": \"r1\", \"filters\": 2, \"kernel\": 1},\n"
                " {\"name\": \"cat\", \"type\": \"concat\", \"inputs\": [\"a\", \"c3\", \"input\"]},\n"
                " {\"name\": \"p\", \"type\": \"avgpool2d\", \"input\": \"cat\", \"size\": 2, \"padding\": 1},\n"
                " {\"name\": \"f\", \"type\": \"flatten\", \"input\": \"p\"},\n"
                " {\"name\": \"d\", \"type\": \"dense\", \"input\": \"f\", \"units\": 5}],\n"
                " \"output\": \"d\", \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
                "\"batch\": 5}\n");
}
END_TEST

static void report(void)
{
    fprintf(stderr, "layers: worst of the tolerance: y %.3g, grads %.3g, dx %.3g, running stats %.3g, "
            "loss %.3g, sgd step %.3g\n", worst[0], worst[1], worst[2], worst[3], worst[4], worst[5]);
}

/* A Check test case, run by CTest as test_backend_layers_<name> (tests/CMakeLists.txt). */
static TCase *layers_case(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 900);
    tcase_add_checked_fixture(tc, setup, teardown);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *layers_suite(void)
{
    Suite *s = suite_create("backend_layers");
    TCase *conv = layers_case(s, "conv");
    tcase_add_test(conv, test_conv2d_grid);
    tcase_add_test(conv, test_conv2d_transpose_grid);
    TCase *pool_bn = layers_case(s, "pool_bn");
    tcase_add_test(pool_bn, test_pool_grid);
    tcase_add_test(pool_bn, test_batchnorm_dropout_masking);
    tcase_add_test(pool_bn, test_dropout_mask_bits);
    tcase_add_test(pool_bn, test_pool_paths);
    tcase_add_test(pool_bn, test_batchnorm_sweeps);
    TCase *graph = layers_case(s, "graph");
    tcase_add_test(graph, test_graph_form);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(layers_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    report();
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
