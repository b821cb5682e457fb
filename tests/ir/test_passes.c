/*
 * test_passes.c — lowering, the verifier, the memory plan, the reference
 * interpreter, the pipeline's --dump-after, and golden IR dumps.
 *
 * Golden tests: tests/ir/golden/<name>.json is compiled with
 * kp_pipeline_infer and its kp_print_ir text compared byte for byte with
 * <name>.ir.  KARP_UPDATE_GOLDEN=1 rewrites the .ir files instead.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

static KpArena A;       /* the specs */
static KpGraph *g;
static KpDiag d;
static KpPassOpts opts;

static void setup(void)
{
    kp_arena_init(&A);
    g = kp_graph_new();
    ck_assert_ptr_nonnull(g);
    kp_diag_init(&d);
    kp_pass_opts_init(&opts);
}

static void teardown(void)
{
    kp_graph_free(g);
    kp_arena_free(&A);
}

/* --- specs built by hand ------------------------------------------------ */

enum { MAX_LAYERS = 32 };

static KpModelSpec *spec(int rank, int64_t d0, int64_t d1, int64_t d2)
{
    KpModelSpec *s = kp_arena_alloc(&A, sizeof *s);
    s->file = "m.json";
    s->name = "m";
    s->input_rank = rank;
    s->input_shape[0] = d0;
    s->input_shape[1] = d1;
    s->input_shape[2] = d2;
    s->layers = kp_arena_alloc(&A, MAX_LAYERS * sizeof *s->layers);
    s->batch = 4;
    s->seed = 1;
    return s;
}

/* Append a layer with the parser's defaults; chain form unless inputs. */
static KpLayerSpec *layer(KpModelSpec *s, KpLayerType t, const char *name)
{
    ck_assert_int_lt(s->nlayers, MAX_LAYERS);
    KpLayerSpec *l = &s->layers[s->nlayers];
    l->type = t;
    l->name = name;
    l->where = kp_arena_printf(&A, "%s[%d]", s->graph_form ? "nodes" : "layers", s->nlayers);
    l->attr.has_bias = true;
    l->attr.stride[0] = l->attr.stride[1] = 1;
    l->attr.dilation[0] = l->attr.dilation[1] = 1;
    l->attr.alpha = 0.01f;
    l->act_alpha = 0.01f;
    s->nlayers++;
    return l;
}

static void inputs(KpLayerSpec *l, int n, const char *a, const char *b)
{
    l->ninputs = n;
    l->inputs = kp_arena_alloc(&A, 2 * sizeof *l->inputs);
    l->inputs[0] = a;
    l->inputs[1] = b;
}

static KpLayerSpec *dense(KpModelSpec *s, const char *name, int64_t units, KpAct act)
{
    KpLayerSpec *l = layer(s, KP_LAYER_DENSE, name);
    l->attr.units = units;
    l->activation = act;
    return l;
}

static KpLayerSpec *conv(KpModelSpec *s, KpLayerType t, const char *name, int64_t f, int64_t k,
                         int64_t stride, int64_t pad)
{
    KpLayerSpec *l = layer(s, t, name);
    l->attr.filters = f;
    l->attr.kernel[0] = l->attr.kernel[1] = k;
    l->attr.stride[0] = l->attr.stride[1] = stride;
    l->attr.padding[0] = l->attr.padding[1] = pad;
    return l;
}

static KpValue *param_named(const char *name)
{
    for (int i = 0; i < g->nvalues; i++)
        if (g->values[i]->name && strcmp(g->values[i]->name, name) == 0)
            return g->values[i];
    ck_abort_msg("no parameter %s", name);
    return NULL;
}

static const char *shape(const KpValue *v)
{
    static char buf[128];
    return kp_shape_str(v, buf, sizeof buf);
}

static void lower_ok(const KpModelSpec *s)
{
    int rc = kp_frontend_lower(s, g, &d);
    ck_assert_msg(rc == 0, "lowering failed: %s", d.msg);
}

/* --- lowering ------------------------------------------------------------ */

START_TEST(lower_mlp)
{
    KpModelSpec *s = spec(3, 1, 28, 28);
    layer(s, KP_LAYER_FLATTEN, "flatten0");
    dense(s, "dense1", 128, KP_ACT_RELU);
    KpLayerSpec *h = dense(s, "head", 10, KP_ACT_LEAKY_RELU);
    h->act_alpha = 0.2f;
    h->has_init = true;
    h->init = KP_INIT_HE;
    KpLayerSpec *nb = dense(s, "nobias", 3, KP_ACT_NONE);
    nb->attr.has_bias = false;
    lower_ok(s);
    ck_assert_int_eq(g->nnodes, 6);
    ck_assert_str_eq(shape(g->input), "[N,1,28,28]");
    ck_assert_str_eq(shape(g->output), "[N,3]");
    ck_assert_int_eq(g->nodes[2]->op, KP_OP_relu);
    ck_assert_str_eq(g->nodes[2]->name, "dense1");
    ck_assert_int_eq(g->nodes[4]->op, KP_OP_leaky_relu);
    ck_assert_float_eq(g->nodes[4]->attr.alpha, 0.2f);
    ck_assert_int_eq(g->nodes[5]->nin, 2);
    KpValue *w = param_named("dense1.weight"), *b = param_named("dense1.bias");
    ck_assert_str_eq(shape(w), "[128,784]");
    ck_assert_str_eq(shape(b), "[128]");
    ck_assert_int_eq(w->init, KP_INIT_UNIFORM_FAN_IN);
    ck_assert_int_eq(b->init, KP_INIT_UNIFORM_FAN_IN);
    ck_assert_int_eq(w->fan_in, 784);
    ck_assert_int_eq(b->fan_in, 784);
    ck_assert_int_eq(w->fan_out, 128);
    ck_assert_int_eq(param_named("head.weight")->init, KP_INIT_HE);
    ck_assert_int_eq(param_named("head.bias")->init, KP_INIT_ZEROS);
    ck_assert_str_eq(g->loss, "none");
    ck_assert_int_eq(g->max_batch, 4);
}
END_TEST

START_TEST(lower_conv_params)
{
    KpModelSpec *s = spec(3, 3, 8, 8);
    conv(s, KP_LAYER_CONV2D, "c1", 6, 3, 1, 1);
    conv(s, KP_LAYER_CONV2D_TRANSPOSE, "up", 4, 2, 2, 0);
    layer(s, KP_LAYER_BATCHNORM, "bn");
    lower_ok(s);
    KpValue *w = param_named("c1.weight");
    ck_assert_str_eq(shape(w), "[6,3,3,3]");
    ck_assert_int_eq(w->fan_in, 27);
    ck_assert_int_eq(w->fan_out, 54);
    KpValue *u = param_named("up.weight");
    ck_assert_str_eq(shape(u), "[6,4,2,2]");
    ck_assert_int_eq(u->fan_in, 16); /* weight.size(1) * kh * kw, as PyTorch */
    ck_assert_int_eq(u->fan_out, 24);
    ck_assert_str_eq(shape(param_named("up.bias")), "[4]");
    ck_assert_int_eq(param_named("bn.weight")->init, KP_INIT_ONES);
    ck_assert_int_eq(param_named("bn.bias")->init, KP_INIT_ZEROS);
    ck_assert_int_eq(param_named("bn.running_mean")->init, KP_INIT_ZEROS);
    ck_assert_int_eq(param_named("bn.running_var")->init, KP_INIT_ONES);
    ck_assert_str_eq(shape(param_named("bn.running_var")), "[4]");
    ck_assert_str_eq(shape(g->output), "[N,4,16,16]");
}
END_TEST

START_TEST(lower_shape_error_names_layer)
{
    KpModelSpec *s = spec(3, 1, 4, 4);
    conv(s, KP_LAYER_CONV2D, "conv1", 4, 3, 1, 1);
    dense(s, "dense1", 10, KP_ACT_NONE);
    ck_assert_int_eq(kp_frontend_lower(s, g, &d), -1);
    ck_assert_str_eq(d.msg, "m.json: layers[1] (dense1): input must be rank 1 per sample (use "
                            "flatten), got [N,4,4,4]");
}
END_TEST

START_TEST(lower_graph_any_order)
{
    KpModelSpec *s = spec(1, 16, 0, 0);
    s->graph_form = true;
    inputs(layer(s, KP_LAYER_ADD, "sum"), 2, "a", "b");
    inputs(dense(s, "a", 8, KP_ACT_NONE), 1, "input", NULL);
    inputs(dense(s, "b", 8, KP_ACT_NONE), 1, "a", NULL);
    s->output = "sum";
    lower_ok(s);
    ck_assert_int_eq(g->nnodes, 3);
    ck_assert_str_eq(g->nodes[0]->name, "a");
    ck_assert_str_eq(g->nodes[1]->name, "b");
    ck_assert_str_eq(g->nodes[2]->name, "sum");
    ck_assert_ptr_eq(g->output, g->nodes[2]->out);
    ck_assert_int_eq(g->nodes[0]->out->nusers, 2);
}
END_TEST

START_TEST(lower_graph_errors)
{
    KpModelSpec *s = spec(1, 16, 0, 0);
    s->graph_form = true;
    inputs(dense(s, "a", 8, KP_ACT_NONE), 1, "input", NULL);
    inputs(dense(s, "b", 8, KP_ACT_NONE), 1, "c", NULL);
    inputs(dense(s, "c", 8, KP_ACT_NONE), 1, "b", NULL);
    s->output = "c";
    ck_assert_int_eq(kp_frontend_lower(s, g, &d), -1);
    ck_assert_str_eq(d.msg, "m.json: nodes[2] (c): its inputs form a cycle");

    KpGraph *g2 = kp_graph_new();
    s->layers[1].inputs[0] = "zz";
    kp_diag_init(&d);
    ck_assert_int_eq(kp_frontend_lower(s, g2, &d), -1);
    ck_assert_str_eq(d.msg, "m.json: nodes[1] (b): unknown input 'zz'");
    kp_graph_free(g2);
}
END_TEST

/* --- verifier ------------------------------------------------------------ */

static void lower_small_mlp(void)
{
    KpModelSpec *s = spec(1, 4, 0, 0);
    dense(s, "d1", 3, KP_ACT_RELU);
    dense(s, "d2", 2, KP_ACT_NONE);
    lower_ok(s);
    ck_assert_int_eq(kp_pass_verify(g, &opts, &d), 0);
}

static void expect_internal(const char *want)
{
    kp_diag_init(&d);
    ck_assert_int_eq(kp_pass_verify(g, &opts, &d), -1);
    ck_assert_str_eq(d.msg, want);
}

START_TEST(verify_order)
{
    lower_small_mlp();
    KpNode *t = g->nodes[0];
    g->nodes[0] = g->nodes[1];
    g->nodes[1] = t;
    g->nodes[0]->id = 0;
    g->nodes[1]->id = 1;
    expect_internal("internal error: node 0 (d1): input %3 is produced by a later node (not in "
                    "topological order)");
}
END_TEST

START_TEST(verify_breakage)
{
    lower_small_mlp();
    KpNode *relu = g->nodes[1];
    relu->nin = 2;
    relu->in[1] = relu->in[0];
    expect_internal("internal error: node 1 (d1): relu has 2 inputs, the op table says 1");
    relu->nin = 1;
    KpValue *h = relu->in[0];
    h->nusers = 0;
    expect_internal("internal error: node 1 (d1): missing from the users of %3");
    kp_fill_uses(g);
    relu->out->rank = 0;
    expect_internal("internal error: node 1 (d1): output %4 has no shape");
    relu->out->rank = 2;
    param_named("d2.bias")->name = "d2.weight";
    expect_internal("internal error: parameter name d2.weight is used twice (%5 and %6)");
}
END_TEST

/* --- memory plan --------------------------------------------------------- */

START_TEST(memplan_layout)
{
    KpModelSpec *s = spec(3, 1, 4, 4);
    conv(s, KP_LAYER_CONV2D, "c1", 2, 3, 1, 1);
    layer(s, KP_LAYER_FLATTEN, "flat");
    dense(s, "d1", 3, KP_ACT_NONE);
    layer(s, KP_LAYER_DROPOUT, "drop")->attr.rate = 0.5f;
    lower_ok(s);
    opts.layout = false;     /* the plan of the plain graph; packed weights: test_fold_layout */
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), 0);
    ck_assert_int_eq(param_named("c1.weight")->offset, 0);   /* 18 floats */
    ck_assert_int_eq(param_named("c1.bias")->offset, 32);    /* 16-float aligned */
    ck_assert_int_eq(param_named("d1.weight")->offset, 48);  /* 96 floats */
    ck_assert_int_eq(param_named("d1.bias")->offset, 144);
    ck_assert_int_eq(param_named("d1.bias")->storage, KP_STORE_PARAM);
    ck_assert_int_eq(g->param_floats, 160);
    ck_assert_int_eq(g->input->storage, KP_STORE_INPUT);
    KpValue *c = g->nodes[0]->out, *f = g->nodes[1]->out, *dn = g->nodes[2]->out;
    ck_assert_int_eq(c->storage, KP_STORE_WORKSPACE);
    ck_assert_int_eq(c->offset, 0);                 /* 4 * 32 floats = 512 bytes */
    ck_assert_int_eq(f->storage, KP_STORE_WORKSPACE); /* flatten is a view */
    ck_assert_int_eq(f->offset, 0);
    ck_assert_int_eq(dn->storage, KP_STORE_WORKSPACE);
    ck_assert_int_eq(dn->offset, 512);              /* 4 * 3 floats = 48 bytes */
    ck_assert_int_eq(g->output->storage, KP_STORE_OUTPUT); /* a view, the backend copies */
    ck_assert_int_eq(g->workspace_bytes, 576);
    for (int i = 0; i < g->nvalues; i++) {
        if (g->values[i]->storage == KP_STORE_WORKSPACE)
            ck_assert_int_eq(g->values[i]->offset % 64, 0);
        if (g->values[i]->storage == KP_STORE_PARAM)
            ck_assert_int_eq(g->values[i]->offset % 16, 0);
    }
}
END_TEST

START_TEST(memplan_view_of_input)
{
    KpModelSpec *s = spec(2, 2, 3, 0);
    layer(s, KP_LAYER_FLATTEN, "flat");
    layer(s, KP_LAYER_RELU, "r");
    lower_ok(s);
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), 0);
    ck_assert_int_eq(g->nodes[0]->out->storage, KP_STORE_INPUT);
    ck_assert_int_eq(g->output->storage, KP_STORE_OUTPUT);
    ck_assert_int_eq(g->workspace_bytes, 0);
    ck_assert_int_eq(g->param_floats, 0);
}
END_TEST

/* --- interpreter --------------------------------------------------------- */

static void set_param(const char *name, const float *vals, int count, float *slab)
{
    KpValue *v = param_named(name);
    ck_assert_int_eq(kp_value_numel(v, 1), count);
    memcpy(slab + v->offset, vals, (size_t)count * sizeof *vals);
}

START_TEST(interp_dense_net)
{
    KpModelSpec *s = spec(1, 2, 0, 0);
    dense(s, "d1", 2, KP_ACT_RELU);
    layer(s, KP_LAYER_DROPOUT, "drop");
    dense(s, "d2", 1, KP_ACT_NONE);
    lower_ok(s);
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), 0);
    float *slab = calloc((size_t)g->param_floats, sizeof *slab);
    set_param("d1.weight", (float[]){1, 2, 3, -4}, 4, slab);
    set_param("d1.bias", (float[]){0.5f, -1}, 2, slab);
    set_param("d2.weight", (float[]){1, -0.5f}, 2, slab);
    set_param("d2.bias", (float[]){0.25f}, 1, slab);
    /* h = relu(W1 x + b1): [3.5, 0] and [0.5, 9]; y = W2 h + b2 */
    float x[4] = {1, 1, 2, -1}, y[2];
    ck_assert_int_eq(kp_interp_run(g, slab, x, 2, y, &d), 0);
    ck_assert_float_eq_tol(y[0], 3.75f, 1e-6f);
    ck_assert_float_eq_tol(y[1], -3.75f, 1e-6f);
    free(slab);
}
END_TEST

START_TEST(interp_activations)
{
    KpModelSpec *s = spec(1, 3, 0, 0);
    layer(s, KP_LAYER_LEAKY_RELU, "lr")->attr.alpha = 0.1f;
    layer(s, KP_LAYER_TANH, "t");
    layer(s, KP_LAYER_SIGMOID, "s");
    layer(s, KP_LAYER_SOFTMAX, "sm");
    lower_ok(s);
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), 0);
    float x[3] = {-2, 0.5f, 1}, y[3], e[3], sum = 0;
    for (int i = 0; i < 3; i++) {
        float v = x[i] < 0 ? 0.1f * x[i] : x[i];
        e[i] = expf(1 / (1 + expf(-tanhf(v))));
        sum += e[i];
    }
    ck_assert_int_eq(kp_interp_run(g, NULL, x, 1, y, &d), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq_tol(y[i], e[i] / sum, 1e-6f);
}
END_TEST

/* maxpool 2x2 stride 2 and avgpool 3x3 stride 1 padding 1 on one 4x4
 * channel, by hand: avg divides by 9 at the border too (padding counts). */
START_TEST(interp_pools)
{
    KpModelSpec *s = spec(3, 1, 4, 4);
    KpLayerSpec *p = layer(s, KP_LAYER_MAXPOOL2D, "pool1");
    p->attr.kernel[0] = p->attr.kernel[1] = p->attr.stride[0] = p->attr.stride[1] = 2;
    lower_ok(s);
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), 0);
    float x[16], y[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)((i * 7) % 16);   /* 0 7 14 5 / 12 3 10 1 / 8 15 6 13 / 4 11 2 9 */
    ck_assert_int_eq(kp_interp_run(g, NULL, x, 1, y, &d), 0);
    const float want[4] = {12, 14, 15, 13};
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(y[i], want[i]);
    kp_graph_free(g);
    g = kp_graph_new();
    s = spec(3, 1, 4, 4);
    p = layer(s, KP_LAYER_AVGPOOL2D, "pool1");
    p->attr.kernel[0] = p->attr.kernel[1] = 3;
    p->attr.padding[0] = p->attr.padding[1] = 1;
    lower_ok(s);
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), 0);
    ck_assert_int_eq(kp_interp_run(g, NULL, x, 1, y, &d), 0);
    ck_assert_float_eq_tol(y[0], (0 + 7 + 12 + 3) / 9.0f, 1e-6f);
    ck_assert_float_eq_tol(y[5], (0 + 7 + 14 + 12 + 3 + 10 + 8 + 15 + 6) / 9.0f, 1e-6f);
}
END_TEST

/* --- pipeline -------------------------------------------------------------- */

static char *run_dump(const char *after, bool dot)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    opts.dump_after = after;
    opts.dump_to = f;
    opts.dump_dot = dot;
    int rc = kp_pipeline_infer(g, &opts, &d);
    fclose(f);
    ck_assert_msg(rc == 0, "pipeline failed: %s", d.msg);
    return buf;
}

START_TEST(pipeline_dump_after)
{
    lower_small_mlp();
    opts.layout = false;     /* dense stays dense: the packed form is test_fold_layout's */
    char *ir = run_dump("shapes", false);
    ck_assert_ptr_nonnull(strstr(ir, "%3 = dense %0, %1, %2 {units=3} : f32[N,3]   # d1"));
    ck_assert_ptr_null(strstr(ir, "@"));
    free(ir);
    ir = run_dump("memplan", false);
    ck_assert_ptr_nonnull(strstr(ir, " : f32[N,3] @ws+0   # d1 (layers[0])\n"));
    /* d1's relu is fused into d1 (an epilogue): one activation in the workspace */
    ck_assert_ptr_nonnull(strstr(ir, "%3 = dense %0, %1, %2 {units=3} -> relu : f32[N,3] @ws+0   # d1"));
    ck_assert_ptr_nonnull(strstr(ir, "memory params=64 floats, workspace=64 bytes\n"));
    free(ir);
    ir = run_dump("verify", true);
    ck_assert_ptr_nonnull(strstr(ir, "digraph \"m\" {"));
    free(ir);
    opts.dump_after = "fusoin";
    ck_assert_int_eq(kp_pipeline_infer(g, &opts, &d), -1);
    ck_assert_str_eq(d.msg, "--dump-after: unknown pass 'fusoin' (passes: shapes, verify, autodiff, "
                            "simplify, fold, fusion, layout, group, memplan)");
}
END_TEST

/* --- golden IR dumps ----------------------------------------------------- */

static const char *const golden[] = {"mlp", "cnn", "residual"};
/* Train graphs: <name>.json through kp_pipeline_train, into <name>_train.ir. */
static const char *const golden_train[] = {"mlp", "fashion_mlp", "noloss", "cnn", "residual"};

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static void check_golden(const char *name, bool train)
{
    char json[512], expect_path[512];
    snprintf(json, sizeof json, "%s/tests/ir/golden/%s.json", KARP_SOURCE_DIR, name);
    snprintf(expect_path, sizeof expect_path, "%s/tests/ir/golden/%s%s.ir", KARP_SOURCE_DIR,
             name, train ? "_train" : "");
    KpModelSpec *s = NULL;
    ck_assert_msg(kp_frontend_parse_file(json, &A, &s, &d) == 0, "parse: %s", d.msg);
    g->training = train;
    lower_ok(s);
    if (train)
        ck_assert_msg(kp_pipeline_train(g, &opts, &d) == 0, "pipeline: %s", d.msg);
    else
        ck_assert_msg(kp_pipeline_infer(g, &opts, &d) == 0, "pipeline: %s", d.msg);
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);
    kp_print_ir(f, g);
    fclose(f);
    const char *update = getenv("KARP_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0) {
        FILE *out = fopen(expect_path, "wb");
        ck_assert_ptr_nonnull(out);
        fputs(got, out);
        fclose(out);
    }
    char *want = read_all(expect_path);
    ck_assert_msg(want != NULL, "missing %s (run with KARP_UPDATE_GOLDEN=1)", expect_path);
    ck_assert_msg(strcmp(got, want) == 0, "%s differs from the IR printed:\n%s", expect_path, got);
    free(want);
    free(got);
}

START_TEST(golden_ir)
{
    check_golden(golden[_i], false);
}
END_TEST

START_TEST(golden_train_ir)
{
    check_golden(golden_train[_i], true);
}
END_TEST

static Suite *passes_suite(void)
{
    Suite *s = suite_create("passes");
    TCase *tc = tcase_create("lower");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lower_mlp);
    tcase_add_test(tc, lower_conv_params);
    tcase_add_test(tc, lower_shape_error_names_layer);
    tcase_add_test(tc, lower_graph_any_order);
    tcase_add_test(tc, lower_graph_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("verify");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, verify_order);
    tcase_add_test(tc, verify_breakage);
    suite_add_tcase(s, tc);
    tc = tcase_create("memplan");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, memplan_layout);
    tcase_add_test(tc, memplan_view_of_input);
    suite_add_tcase(s, tc);
    tc = tcase_create("interp");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, interp_dense_net);
    tcase_add_test(tc, interp_activations);
    tcase_add_test(tc, interp_pools);
    suite_add_tcase(s, tc);
    tc = tcase_create("pipeline");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, pipeline_dump_after);
    tcase_add_loop_test(tc, golden_ir, 0, (int)(sizeof golden / sizeof golden[0]));
    tcase_add_loop_test(tc, golden_train_ir, 0, (int)(sizeof golden_train / sizeof golden_train[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(passes_suite(), CK_FORK_GETENV);
}
