/*
 * The fusion pass: golden IR after it, fused and unfused builds computing
 * the same numbers (every example model through the JIT; random dense
 * graphs through the interpreter and the JIT), and the kernel counts it
 * saves.  "Equal" is the suite's tolerance, |a - b| <= 1e-5 (|b| + mean
 * |b|) per tensor: an epilogue runs the same float operations in the same
 * order, so in practice that is bit for bit; a merged batchnorm sums its
 * bias gradient in double where bias_grad sums floats, which differs by
 * float rounding relative to the summed terms, not to the (small) sum.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "frontend/spec.h"
#include "include/karpc.h"
#include "ir/epilogue.h"
#include "ir/ir.h"
#include "numcheck.h"
#include "passes/passes.h"
#include "testutil.h"

#define N 3

static uint64_t rng = 0x2545F4914F6CDD1Dull;

/* a (fused) against b (unfused) within the suite's tolerance */
static void expect_close(const float *a, const float *b, int64_t count, const char *what)
{
    double ratio = kp_test_tolerance_ratio(a, b, count);
    ck_assert_msg(ratio <= 1.0, "%s: fused differs from unfused by %.3g x the tolerance "
                  "|a-b| <= 1e-5 (|b| + mean|b|)", what, ratio);
}

static void fill(float *p, int64_t count, float lo, float hi)
{
    for (int64_t i = 0; i < count; i++)
        p[i] = kp_test_uniform(&rng, lo, hi);
}

static char *src_path(const char *rel)
{
    char *p = malloc(strlen(KARP_SOURCE_DIR) + strlen(rel) + 2);
    sprintf(p, "%s/%s", KARP_SOURCE_DIR, rel);
    return p;
}

/* --- golden IR after the pass ---------------------------------------------- */

static char *dump_after_fusion(const char *json_path, bool train)
{
    KpArena a;
    kp_arena_init(&a);
    KpModelSpec *s;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_msg(kp_frontend_parse_file(json_path, &a, &s, &d) == 0, "%s", d.msg);
    KpGraph *g = kp_graph_new();
    g->training = train;
    ck_assert_msg(kp_frontend_lower(s, g, &d) == 0, "%s", d.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.dump_after = "fusion";
    o.dump_to = f;
    int rc = train ? kp_pipeline_train(g, &o, &d) : kp_pipeline_infer(g, &o, &d);
    fclose(f);
    ck_assert_msg(rc == 0, "%s", d.msg);
    kp_graph_free(g);
    kp_arena_free(&a);
    return buf;
}

static const char *const golden[] = {"fashion_mlp", "residual", "cnn"};

START_TEST(golden_after_fusion)
{
    for (int train = 0; train < 2; train++) {
        char rel[128], json[64];
        snprintf(json, sizeof json, "tests/ir/golden/%s.json", golden[_i]);
        snprintf(rel, sizeof rel, "tests/ir/golden/%s_fusion%s.ir", golden[_i],
                 train ? "_train" : "");
        char *jp = src_path(json), *ip = src_path(rel);
        char *got = dump_after_fusion(jp, train);
        if (getenv("KARP_UPDATE_GOLDEN")) {
            ck_assert_int_eq(kp_test_write_file(ip, got), 0);
        } else {
            char *want = kp_test_read_file(ip, NULL);
            ck_assert_msg(want != NULL, "missing %s (run with KARP_UPDATE_GOLDEN=1)", ip);
            ck_assert_msg(strcmp(want, got) == 0, "%s differs from the IR printed:\n%s", ip, got);
            free(want);
        }
        /* the dump is after fusion: epilogues are there */
        ck_assert_ptr_nonnull(strstr(got, " -> "));
        free(got);
        free(jp);
        free(ip);
    }
}
END_TEST

/* --- fused against unfused through the JIT ---------------------------------- */

typedef struct Pair {
    karp_model *m[2];           /* [0] fused (default), [1] --no-fuse */
    karp_info info;
} Pair;

static void compile_pair(const char *path, int max_batch, Pair *p)
{
    for (int k = 0; k < 2; k++) {
        karp_compile_options o;
        karp_compile_options_init(&o);
        o.max_batch = max_batch;
        o.opt_level = KP_TEST_OPT(1);
        o.disable_passes = k ? KARPC_NO_FUSE : 0;
        karp_error err;
        p->m[k] = karp_compile(path, &o, &err);
        ck_assert_msg(p->m[k] != NULL, "%s: %s", path, err.message);
    }
    ck_assert_int_eq(karp_model_info(p->m[0], &p->info), 0);
}

static void close_pair(Pair *p)
{
    karp_close(p->m[0]);
    karp_close(p->m[1]);
}

/* Outputs, parameter gradients after forward+backward, and the losses of
 * 5 train steps of a fused and an unfused build. */
static void check_pair(Pair *p, const char *what)
{
    const karp_info *in = &p->info;
    int64_t nx = N * in->input_size, ny = N * in->output_size;
    float *x = malloc((size_t)nx * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
    float *y[2] = {malloc((size_t)ny * sizeof(float)), malloc((size_t)ny * sizeof(float))};
    float *dx[2] = {malloc((size_t)nx * sizeof(float)), malloc((size_t)nx * sizeof(float))};
    float *target = malloc((size_t)ny * sizeof(float));
    int32_t labels[N];
    fill(x, nx, -1, 1);
    fill(dy, ny, -1, 1);
    fill(target, ny, 0, 1);
    for (int i = 0; i < N; i++)
        labels[i] = (int32_t)(kp_test_pick(&rng, (int)in->output_size));
    char msg[256];

    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(karp_infer(p->m[k], x, N, y[k]), 0);
    snprintf(msg, sizeof msg, "%s: infer", what);
    expect_close(y[0], y[1], ny, msg);

    if (!in->has_train)
        goto done;
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(karp_zero_gradients(p->m[k]), 0);
        ck_assert_int_eq(karp_forward(p->m[k], x, N, y[k]), 0);
        ck_assert_int_eq(karp_backward(p->m[k], dy, dx[k]), 0);
    }
    snprintf(msg, sizeof msg, "%s: forward", what);
    expect_close(y[0], y[1], ny, msg);
    snprintf(msg, sizeof msg, "%s: input gradient", what);
    expect_close(dx[0], dx[1], nx, msg);
    int np = karp_param_count(p->m[0]);
    ck_assert_int_eq(np, karp_param_count(p->m[1]));
    for (int i = 0; i < np; i++) {
        karp_param a, b;
        ck_assert_int_eq(karp_param_get(p->m[0], i, &a), 0);
        ck_assert_int_eq(karp_param_get(p->m[1], i, &b), 0);
        ck_assert_str_eq(a.name, b.name);
        if (!a.trainable)
            continue;
        snprintf(msg, sizeof msg, "%s: gradient of %s", what, a.name);
        expect_close(a.grad, b.grad, a.size, msg);
    }
    if (!in->has_optimizer)
        goto done;
    const void *t = in->target_labels ? (const void *)labels : (const void *)target;
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(karp_zero_gradients(p->m[k]), 0);
    for (int step = 0; step < 5; step++) {
        float loss[2];
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_train_step(p->m[k], x, t, N, &loss[k]), 0);
        snprintf(msg, sizeof msg, "%s: loss of step %d", what, step + 1);
        expect_close(&loss[0], &loss[1], 1, msg);
    }
done:
    free(x), free(dy), free(target);
    for (int k = 0; k < 2; k++)
        free(y[k]), free(dx[k]);
}

static const char *const examples[] = {
    "examples/fashion_mlp.json",      "examples/fashion_cnn.json",
    "examples/keras_cnn.json",        "examples/masked_mlp.json",
    "examples/resnet_cifar.json",     "examples/dcgan/discriminator.json",
    "examples/dcgan/generator.json",  "examples/gan/discriminator.json",
    "examples/gan/generator.json",
};

START_TEST(examples_fused_equal_unfused)
{
    char *path = src_path(examples[_i]);
    Pair p;
    compile_pair(path, 4, &p);
    check_pair(&p, examples[_i]);
    close_pair(&p);
    free(path);
}
END_TEST

/* --- random graphs ----------------------------------------------------------- */

static const char *const acts[] = {"relu", "sigmoid", "tanh", "leaky_relu", "none"};

/* A nodes-form model: a chain of dense layers with random activations, a
 * residual add of two branches now and then, an explicit activation node
 * after some adds, mse loss and sgd. */
static char *random_model(int seed)
{
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(seed + 1);
    int width = 4 + kp_test_pick(&r, 13), depth = 2 + kp_test_pick(&r, 4);
    size_t cap = 8192, len = 0;
    char *j = malloc(cap);
    len += (size_t)snprintf(j + len, cap - len,
                            "{\"karp\": 1, \"name\": \"rand%d\", \"input\": {\"shape\": [%d]},\n"
                            " \"nodes\": [\n",
                            seed, width);
    char prev[16] = "input";
    for (int k = 0; k < depth; k++) {
        const char *act = acts[kp_test_pick(&r, 5)];
        len += (size_t)snprintf(j + len, cap - len,
                                "  {\"name\": \"d%d\", \"type\": \"dense\", \"input\": \"%s\", "
                                "\"units\": %d, \"activation\": \"%s\"},\n",
                                k, prev, width, act);
        if (kp_test_pick(&r, 2)) {
            len += (size_t)snprintf(j + len, cap - len,
                                    "  {\"name\": \"b%d\", \"type\": \"dense\", \"input\": \"%s\", "
                                    "\"units\": %d},\n"
                                    "  {\"name\": \"r%d\", \"type\": \"add\", \"inputs\": "
                                    "[\"d%d\", \"b%d\"]},\n"
                                    "  {\"name\": \"a%d\", \"type\": \"%s\", \"input\": \"r%d\"},\n",
                                    k, prev, width, k, k, k, k,
                                    kp_test_pick(&r, 2) ? "relu" : "tanh", k);
            snprintf(prev, sizeof prev, "a%d", k);
        } else {
            snprintf(prev, sizeof prev, "d%d", k);
        }
    }
    len += (size_t)snprintf(j + len, cap - len,
                            "  {\"name\": \"out\", \"type\": \"dense\", \"input\": \"%s\", "
                            "\"units\": 3}\n ],\n \"output\": \"out\", \"loss\": \"mse\",\n"
                            " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.05}, \"batch\": 4, "
                            "\"seed\": %d}\n",
                            prev, seed);
    ck_assert(len < cap);
    return j;
}

static KpGraph *build_infer(const char *path, bool fuse, int *fused_nodes)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = fuse;
    KpDiag d;
    kp_diag_init(&d);
    KpGraph *g = NULL;
    ck_assert_msg(kp_build_graph(path, &o, 4, &g, &d) == 0, "%s", d.msg);
    *fused_nodes = 0;
    for (int i = 0; i < g->nnodes; i++)
        *fused_nodes += g->nodes[i]->nepi > 0;
    return g;
}

START_TEST(random_graphs_fused_equal_unfused)
{
    char *dir = kp_test_tmpdir();
    char *json = random_model(_i);
    char name[32];
    snprintf(name, sizeof name, "rand%d.json", _i);
    char *path = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_file(path, json), 0);

    /* the interpreter */
    int hosts[2];
    KpGraph *g[2] = {build_infer(path, true, &hosts[0]), build_infer(path, false, &hosts[1])};
    ck_assert_int_gt(hosts[0], 0);   /* every model has a dense with an activation or an add */
    ck_assert_int_eq(hosts[1], 0);
    ck_assert_int_lt(g[0]->nnodes, g[1]->nnodes);
    int64_t nx = N * kp_value_sample_size(g[0]->input), ny = N * kp_value_sample_size(g[0]->output);
    float *params = malloc((size_t)g[0]->param_floats * sizeof(float));
    float *x = malloc((size_t)nx * sizeof(float)), y[2][N * 3];
    ck_assert_int_eq(g[0]->param_floats, g[1]->param_floats);
    fill(params, g[0]->param_floats, -0.5f, 0.5f);
    fill(x, nx, -1, 1);
    KpDiag d;
    kp_diag_init(&d);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(kp_interp_run(g[k], params, x, N, y[k], &d) == 0, "%s", d.msg);
    char msg[64];
    snprintf(msg, sizeof msg, "rand%d interp", _i);
    expect_close(y[0], y[1], ny, msg);

    /* the JIT */
    Pair p;
    compile_pair(path, 4, &p);
    snprintf(msg, sizeof msg, "rand%d jit", _i);
    check_pair(&p, msg);
    close_pair(&p);

    for (int k = 0; k < 2; k++)
        kp_graph_free(g[k]);
    free(params), free(x), free(json), free(path);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

/* --- kernel counts ---------------------------------------------------------------- */

static void counts(const char *rel, int out[4])
{
    char *path = src_path(rel);
    for (int fuse = 0; fuse < 2; fuse++) {
        KpPassOpts o;
        kp_pass_opts_init(&o);
        o.fuse = fuse;
        KpDiag d;
        kp_diag_init(&d);
        KpProgram p = {0};
        ck_assert_msg(kp_build_program(path, &o, 0, &p, &d) == 0, "%s", d.msg);
        ck_assert_ptr_nonnull(p.train);
        out[fuse * 2] = kp_graph_kernel_count(p.infer);
        out[fuse * 2 + 1] = kp_graph_kernel_count(p.train);
        kp_program_free(&p);
    }
    printf("%s: kernels infer %d unfused -> %d fused, train %d unfused -> %d fused\n", rel, out[0],
           out[2], out[1], out[3]);
    free(path);
}

START_TEST(kernel_counts)
{
    static const char *const models[] = {"examples/fashion_mlp.json", "examples/fashion_cnn.json",
                                         "examples/resnet_cifar.json"};
    for (int i = 0; i < 3; i++) {
        int c[4];
        counts(models[i], c);
        ck_assert_int_lt(c[2], c[0]);
        ck_assert_int_lt(c[3], c[1]);
    }
}
END_TEST

/* --- the loss fused into the head ---------------------------------------------- */

static KpProgram program(const char *path, bool fuse)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = fuse;
    KpDiag d;
    kp_diag_init(&d);
    KpProgram p = {0};
    ck_assert_msg(kp_build_program(path, &o, 0, &p, &d) == 0, "%s", d.msg);
    ck_assert_ptr_nonnull(p.train);
    return p;
}

static int count_phase(const KpGraph *g, KpPhase phase)
{
    int c = 0;
    for (int i = 0; i < g->nnodes; i++)
        c += g->nodes[i]->phase == phase;
    return c;
}

/* fashion_cnn: the head dense computes the loss and d_output; no LOSS
 * node is left; --no-fuse keeps the two loss nodes. */
START_TEST(loss_fused_into_head)
{
    char *path = src_path("examples/fashion_cnn.json");
    KpProgram p = program(path, true);
    const KpGraph *g = p.train;
    const KpNode *head = g->output->producer;
    ck_assert_int_eq(head->op, KP_OP_dense);
    ck_assert(head->loss.on);
    ck_assert_int_eq(head->loss.op, KP_OP_cross_entropy);
    ck_assert_ptr_eq(head->in[head->loss.target], g->target);
    ck_assert_int_eq(head->naux, 2);
    ck_assert_ptr_eq(head->aux[0], g->loss_value);
    ck_assert_ptr_eq(head->aux[1], g->d_output);
    ck_assert_int_eq(head->phase, KP_PHASE_FORWARD);
    ck_assert_int_eq(head->group, 0);
    ck_assert_int_eq(count_phase(g, KP_PHASE_LOSS), 0);
    kp_program_free(&p);

    p = program(path, false);
    ck_assert(!p.train->output->producer->loss.on);
    ck_assert_int_eq(count_phase(p.train, KP_PHASE_LOSS), 2);
    kp_program_free(&p);
    free(path);
}
END_TEST

/* Where the loss must stay apart: a softmax layer between the dense and
 * the loss, a loss other than cross_entropy, more classes than a work
 * item of whole rows should take. */
static const char *const unfused_heads[] = {
    /* an explicit softmax: cross_entropy(softmax(z)) */
    "{\"karp\": 1, \"name\": \"sm\", \"input\": {\"shape\": [6]}, \"layers\": [\n"
    " {\"type\": \"dense\", \"units\": 4, \"activation\": \"softmax\"}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"batch\": 4}\n",
    /* mse */
    "{\"karp\": 1, \"name\": \"reg\", \"input\": {\"shape\": [6]}, \"layers\": [\n"
    " {\"type\": \"dense\", \"units\": 4}],\n"
    " \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"batch\": 4}\n",
    /* 300 classes */
    "{\"karp\": 1, \"name\": \"wide\", \"input\": {\"shape\": [6]}, \"layers\": [\n"
    " {\"type\": \"dense\", \"units\": 300}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"batch\": 4}\n",
};

START_TEST(loss_not_fused)
{
    char *dir = kp_test_tmpdir();
    char *path = kp_test_path(dir, "head.json");
    ck_assert_int_eq(kp_test_write_file(path, unfused_heads[_i]), 0);
    KpProgram p = program(path, true);
    for (int i = 0; i < p.train->nnodes; i++)
        ck_assert(!p.train->nodes[i]->loss.on);
    ck_assert_int_eq(count_phase(p.train, KP_PHASE_LOSS), 2);
    kp_program_free(&p);
    kp_test_rmdir(dir);
    free(path), free(dir);
}
END_TEST

/* The fused loss computes what the two loss nodes computed, bit for bit:
 * the same train-step losses, and after karp_forward (which runs the head
 * without its loss) the same output. */
static const char *const loss_models[] = {"examples/fashion_mlp.json", "examples/fashion_cnn.json"};

START_TEST(fused_loss_bit_for_bit)
{
    char *path = src_path(loss_models[_i]);
    Pair p;
    compile_pair(path, 4, &p);
    int64_t nx = N * p.info.input_size, ny = N * p.info.output_size;
    float *x = malloc((size_t)nx * sizeof(float)), *y[2] = {malloc((size_t)ny * 4), malloc((size_t)ny * 4)};
    int32_t labels[N];
    fill(x, nx, -1, 1);
    for (int i = 0; i < N; i++)
        labels[i] = (int32_t)kp_test_pick(&rng, (int)p.info.output_size);
    for (int step = 0; step < 3; step++) {
        float loss[2];
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_train_step(p.m[k], x, labels, N, &loss[k]), 0);
        ck_assert_msg(memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0,
                      "%s: loss of step %d: fused %.9g, unfused %.9g", loss_models[_i], step + 1,
                      (double)loss[0], (double)loss[1]);
    }
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(karp_forward(p.m[k], x, N, y[k]), 0);
    ck_assert(memcmp(y[0], y[1], (size_t)ny * 4) == 0);
    close_pair(&p);
    free(x), free(y[0]), free(y[1]), free(path);
}
END_TEST

/* Heads whose GEMM is worth both threads (64 x 100 x 640 and 64 x 10 x
 * 1000 multiply-adds): their work items are row chunks, each computing its
 * rows' loss terms (with 10 classes, 16 rows side by side in the lanes,
 * emit_loss.c; a batch of 61 leaves a partial vector of rows); the losses
 * and the trained parameters equal the unfused build's bit for bit. */
static const struct {
    const char *json;
    int in, classes, n;
} wide_heads[] = {
    {"{\"karp\": 1, \"name\": \"wide\", \"input\": {\"shape\": [640]}, \"layers\": [\n"
     " {\"type\": \"dense\", \"units\": 100}],\n"
     " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"batch\": 64}\n",
     640, 100, 64},
    {"{\"karp\": 1, \"name\": \"wide10\", \"input\": {\"shape\": [1000]}, \"layers\": [\n"
     " {\"type\": \"dense\", \"units\": 10}],\n"
     " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"batch\": 64}\n",
     1000, 10, 61},
};

START_TEST(fused_loss_parallel_rows)
{
    enum { B = 64 };
    int in = wide_heads[_i].in, classes = wide_heads[_i].classes, n = wide_heads[_i].n;
    char *dir = kp_test_tmpdir();
    char *path = kp_test_path(dir, "wide.json");
    ck_assert_int_eq(kp_test_write_file(path, wide_heads[_i].json), 0);
    Pair p;
    compile_pair(path, B, &p);
    float *x = malloc((size_t)(B * in) * sizeof(float));
    int32_t labels[B];
    fill(x, B * in, -1, 1);
    for (int i = 0; i < B; i++)
        labels[i] = (int32_t)kp_test_pick(&rng, classes);
    for (int step = 0; step < 3; step++) {
        float loss[2];
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_train_step(p.m[k], x, labels, n, &loss[k]), 0);
        ck_assert_msg(memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0,
                      "%d classes: loss of step %d: fused %.9g, unfused %.9g", classes, step + 1,
                      (double)loss[0], (double)loss[1]);
    }
    for (int i = 0; i < karp_param_count(p.m[0]); i++) {
        karp_param a, b;
        ck_assert_int_eq(karp_param_get(p.m[0], i, &a), 0);
        ck_assert_int_eq(karp_param_get(p.m[1], i, &b), 0);
        ck_assert_msg(memcmp(a.data, b.data, (size_t)a.size * sizeof(float)) == 0,
                      "%d classes: %s after 3 steps", classes, a.name);
    }
    close_pair(&p);
    free(x);
    kp_test_rmdir(dir);
    free(path), free(dir);
}
END_TEST

/* --- bias gradients folded into the pooling gradients ------------------------- */

/* conv2d (bias, relu) -> pool -> dense: the conv's bias gradient sums the
 * pool gradient's output.  13 x 13 planes (169 floats: vectors of four
 * accumulators, whole ones left over and a masked tail); the vector path
 * (2 x 2 windows) and the one-element path (overlapping 3 x 3, padding).
 * 48 channels: at a largest batch of 64 the bias gradient reads 2.1 MB,
 * too much for a group, so it is folded; at 1 it is not. */
static const char *const folded_pools[] = {
    "{\"type\": \"maxpool2d\", \"size\": 2}",
    "{\"type\": \"maxpool2d\", \"size\": 3, \"stride\": 2}",
    "{\"type\": \"avgpool2d\", \"size\": 2}",
    "{\"type\": \"avgpool2d\", \"size\": 3, \"stride\": 1, \"padding\": 1}",
};

static int count_op(const KpGraph *g, KpOp op, int *folded)
{
    int c = 0;
    for (int i = 0; i < g->nnodes; i++) {
        c += g->nodes[i]->op == op;
        *folded += kp_node_folded_bias(g->nodes[i]) != NULL;
    }
    return c;
}

/* The fold takes place (one bias_grad fewer, one pooling gradient with the
 * conv's bias gradient as its aux output), and the fused build's gradients
 * and trained parameters equal the unfused build's bit for bit at 1 and 2
 * threads and batches of 64 and 5: each plane is summed in the same fixed
 * order, and a channel's plane sums are added in sample order. */
static char *folded_model(const char *dir, const char *pool, int batch)
{
    char json[1024], name[32];
    snprintf(json, sizeof json,
             "{\"karp\": 1, \"name\": \"folded\", \"input\": {\"shape\": [3, 13, 13]}, "
             "\"layers\": [\n"
             " {\"type\": \"conv2d\", \"name\": \"c\", \"filters\": 48, \"kernel\": 3, "
             "\"padding\": \"same\", \"activation\": \"relu\"},\n %s,\n"
             " {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 4}],\n"
             " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
             "\"batch\": %d}\n",
             pool, batch);
    snprintf(name, sizeof name, "folded%d.json", batch);
    char *path = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_file(path, json), 0);
    return path;
}

/* bias_grad nodes and folded ones in the train graph, fused and unfused */
static void count_folds(const char *path, int biases[2], int folded[2])
{
    for (int fuse = 0; fuse < 2; fuse++) {
        KpProgram p = program(path, fuse);
        folded[fuse] = 0;
        biases[fuse] = count_op(p.train, KP_OP_bias_grad, &folded[fuse]);
        kp_program_free(&p);
    }
}

START_TEST(bias_folded_into_pool_grad)
{
    enum { B = 64 };
    char *dir = kp_test_tmpdir();
    char *small = folded_model(dir, folded_pools[_i], 1);
    int biases[2], folded[2];
    count_folds(small, biases, folded);
    ck_assert_int_eq(folded[1], 0);     /* batch 1: bias_grad stays in its layer's group */
    ck_assert_int_eq(biases[1], biases[0]);
    char *path = folded_model(dir, folded_pools[_i], B);
    count_folds(path, biases, folded);
    ck_assert_int_eq(folded[0], 0);
    ck_assert_int_eq(folded[1], 1);
    ck_assert_int_eq(biases[1], biases[0] - 1);

    Pair p;
    compile_pair(path, B, &p);
    int64_t nx = B * p.info.input_size, ny = B * p.info.output_size;
    float *x = malloc((size_t)nx * sizeof(float)), *dy = malloc((size_t)ny * sizeof(float));
    float *y = malloc((size_t)ny * sizeof(float));
    int32_t labels[B];
    fill(x, nx, -1, 1);
    fill(dy, ny, -1, 1);
    for (int i = 0; i < B; i++)
        labels[i] = (int32_t)kp_test_pick(&rng, 4);
    static const int cases[][2] = {{B, 2}, {B, 1}, {5, 2}, {5, 1}};
    for (int c = 0; c < 4; c++) {
        int n = cases[c][0];
        karp_set_threads(cases[c][1]);
        for (int step = 0; step < 2; step++) {
            for (int k = 0; k < 2; k++) {
                ck_assert_int_eq(karp_zero_gradients(p.m[k]), 0);
                if (step == 0) {
                    /* two backward passes: the second adds into the first's gradients */
                    for (int r = 0; r < 2; r++) {
                        ck_assert_int_eq(karp_forward(p.m[k], x, n, y), 0);
                        ck_assert_int_eq(karp_backward(p.m[k], dy, NULL), 0);
                    }
                } else {
                    ck_assert_int_eq(karp_train_step(p.m[k], x, labels, n, NULL), 0);
                }
            }
            for (int i = 0; i < karp_param_count(p.m[0]); i++) {
                karp_param a, b;
                ck_assert_int_eq(karp_param_get(p.m[0], i, &a), 0);
                ck_assert_int_eq(karp_param_get(p.m[1], i, &b), 0);
                const float *fa = step == 0 ? a.grad : a.data, *fb = step == 0 ? b.grad : b.data;
                ck_assert_msg(memcmp(fa, fb, (size_t)a.size * sizeof(float)) == 0,
                              "%s, batch %d, %d threads: %s of %s", folded_pools[_i], n,
                              cases[c][1], step == 0 ? "the gradient" : "a train step's update",
                              a.name);
            }
        }
    }
    karp_set_threads(0);
    close_pair(&p);
    free(x), free(dy), free(y);
    kp_test_rmdir(dir);
    free(small), free(path), free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fusion");
    TCase *tc = tcase_create("fusion");
    tcase_set_timeout(tc, 900);
    tcase_add_loop_test(tc, golden_after_fusion, 0, (int)(sizeof golden / sizeof golden[0]));
    tcase_add_test(tc, kernel_counts);
    tcase_add_test(tc, loss_fused_into_head);
    tcase_add_loop_test(tc, loss_not_fused, 0,
                        (int)(sizeof unfused_heads / sizeof unfused_heads[0]));
    tcase_add_loop_test(tc, fused_loss_bit_for_bit, 0,
                        (int)(sizeof loss_models / sizeof loss_models[0]));
    tcase_add_loop_test(tc, fused_loss_parallel_rows, 0, sizeof wide_heads / sizeof wide_heads[0]);
    tcase_add_loop_test(tc, bias_folded_into_pool_grad, 0,
                        (int)(sizeof folded_pools / sizeof folded_pools[0]));
    tcase_add_loop_test(tc, random_graphs_fused_equal_unfused, 0, 8);
    tcase_add_loop_test(tc, examples_fused_equal_unfused, 0,
                        (int)(sizeof examples / sizeof examples[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
