/*
 * test_layers_train.c — what the training forms of batchnorm and dropout
 * do besides their gradients: batchnorm's running statistics after a
 * training forward (PyTorch's convention, on numbers computed by hand),
 * which the inference graph then uses; dropout's mask (kept fraction,
 * values, seeding, bit-level definition), its identity in inference, and
 * the lowering of each mode.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/ref/ref.h"
#include "testutil.h"

#define BIT(p) (1u << (p))

static KpArena A;
static KpGraph *g, *gi;     /* the train graph and the inference graph of one spec */
static KpDiag d;

static void setup(void)
{
    kp_arena_init(&A);
    g = kp_graph_new();
    gi = kp_graph_new();
    kp_diag_init(&d);
}

static void teardown(void)
{
    kp_graph_free(g);
    kp_graph_free(gi);
    kp_arena_free(&A);
}

/* Both graphs of json: g for training, gi for inference. */
static void build_both(const char *json)
{
    KpModelSpec *s;
    KpPassOpts o;
    kp_pass_opts_init(&o);
    ck_assert_msg(kp_frontend_parse_text("m.json", json, strlen(json), &A, &s, &d) == 0, "%s", d.msg);
    g->training = true;
    ck_assert_msg(kp_frontend_lower(s, g, &d) == 0 && kp_pipeline_train(g, &o, &d) == 0, "%s", d.msg);
    ck_assert_msg(kp_frontend_lower(s, gi, &d) == 0 && kp_pipeline_infer(gi, &o, &d) == 0, "%s", d.msg);
    ck_assert_int_eq(g->param_floats, gi->param_floats);
}

static const KpValue *param(const KpGraph *gr, const char *name)
{
    for (int i = 0; i < gr->nvalues; i++)
        if (gr->values[i]->name && strcmp(gr->values[i]->name, name) == 0)
            return gr->values[i];
    ck_abort_msg("no parameter %s", name);
    return NULL;
}

/* forward nodes of op op */
static int count_op(const KpGraph *gr, KpOp op)
{
    int k = 0;
    for (int i = 0; i < gr->nnodes; i++)
        k += gr->nodes[i]->op == op && gr->nodes[i]->phase == KP_PHASE_FORWARD;
    return k;
}

/* Lay the initial parameters out as karp does: by each one's initializer
 * (only ones and zeros occur here). */
static void init_params(const KpGraph *gr, float *p)
{
    memset(p, 0, (size_t)gr->param_floats * sizeof *p);
    for (int i = 0; i < gr->nvalues; i++) {
        const KpValue *v = gr->values[i];
        for (int64_t k = 0; v->role == KP_ROLE_PARAM && v->init == KP_INIT_ONES &&
                            k < kp_value_numel(v, 1); k++)
            p[v->offset + k] = 1;
    }
}

#define BN_JSON "{\"karp\": 1, \"batch\": 4, \"input\": {\"shape\": [2]}, \"layers\": [" \
                "{\"type\": \"batchnorm\", \"name\": \"bn\"}]}"

/* Two features over 4 samples: (1,2,3,4) mean 2.5, biased var 1.25,
 * unbiased 5/3; (0,0,2,2) mean 1, biased var 1, unbiased 4/3.  PyTorch,
 * momentum 0.1, from running (0, 1):
 *   after one step  rm = 0.1 mean, rv = 0.9 + 0.1 unbiased
 *   after two       rm = 0.19 mean, rv = 0.81 + 0.19 unbiased */
START_TEST(running_stats_pytorch)
{
    build_both(BN_JSON);
    /* lowered to batchnorm_stats and batchnorm_train, merged by fusion */
    ck_assert_int_eq(count_op(g, KP_OP_batchnorm_fwd), 1);
    ck_assert_int_eq(count_op(g, KP_OP_batchnorm_stats) + count_op(g, KP_OP_batchnorm_train), 0);
    ck_assert_int_eq(count_op(g, KP_OP_batchnorm), 0);
    ck_assert_int_eq(count_op(gi, KP_OP_batchnorm), 1);
    float p[256], grads[256] = {0}, y[8], dy[8] = {1, -1, 2, 0, 0, 1, -2, 3};
    ck_assert_int_lt(g->param_floats, 256);
    init_params(g, p);
    const float x[8] = {1, 0, 2, 0, 3, 2, 4, 2};
    const float *rm = p + param(g, "bn.running_mean")->offset;
    const float *rv = p + param(g, "bn.running_var")->offset;
    KpInterpTrain t = {.phases = BIT(KP_PHASE_FORWARD), .params = p, .grads = grads, .x = x,
                       .y = y, .n = 4, .seed = 1};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    ck_assert_float_eq_tol(rm[0], 0.25f, 1e-6f);
    ck_assert_float_eq_tol(rm[1], 0.1f, 1e-6f);
    ck_assert_float_eq_tol(rv[0], 0.9f + 0.1f * 5 / 3, 1e-6f);
    ck_assert_float_eq_tol(rv[1], 0.9f + 0.1f * 4 / 3, 1e-6f);
    /* the output is normalized with the batch statistics (biased variance) */
    ck_assert_float_eq_tol(y[0], (1 - 2.5f) / sqrtf(1.25f + 1e-5f), 1e-5f);
    ck_assert_float_eq_tol(y[3], (0 - 1.0f) / sqrtf(1 + 1e-5f), 1e-5f);
    /* a backward recomputes the forward but does not count the batch again */
    t.phases = BIT(KP_PHASE_BACKWARD);
    t.dy = dy;
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    ck_assert_float_eq_tol(rm[0], 0.25f, 1e-6f);
    t.phases = BIT(KP_PHASE_FORWARD);
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    ck_assert_float_eq_tol(rm[0], 0.19f * 2.5f, 1e-6f);
    ck_assert_float_eq_tol(rv[1], 0.81f + 0.19f * 4 / 3, 1e-6f);
    /* inference reads the running statistics, from the same slab */
    float yi[8];
    ck_assert_int_eq(kp_interp_run(gi, p, x, 4, yi, &d), 0);
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 2; c++)
            ck_assert_float_eq_tol(yi[2 * i + c], (x[2 * i + c] - rm[c]) / sqrtf(rv[c] + 1e-5f),
                                   1e-5f);
}
END_TEST

/* Rank-3 samples: statistics per channel over batch and pixels.  Channel
 * 0 of 2 samples of 1x2: 1,3 and 5,7: mean 4, biased var 5, unbiased 20/3. */
START_TEST(running_stats_rank3)
{
    build_both("{\"karp\": 1, \"batch\": 2, \"input\": {\"shape\": [1, 1, 2]}, \"layers\": ["
               "{\"type\": \"batchnorm\", \"name\": \"bn\", \"momentum\": 0.5}]}");
    float p[64], y[4];
    init_params(g, p);
    const float x[4] = {1, 3, 5, 7};
    KpInterpTrain t = {.phases = BIT(KP_PHASE_FORWARD), .params = p, .x = x, .y = y, .n = 2};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    ck_assert_float_eq_tol(p[param(g, "bn.running_mean")->offset], 2.0f, 1e-6f);
    ck_assert_float_eq_tol(p[param(g, "bn.running_var")->offset], 0.5f + 0.5f * 20 / 3, 1e-5f);
    ck_assert_float_eq_tol(y[3], 3 / sqrtf(5 + 1e-5f), 1e-5f);
}
END_TEST

/* splitmix64 as ref.h spells it, written again here */
static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

START_TEST(dropout_mask_statistics)
{
    enum { COUNT = 200000 };
    float *a = malloc(COUNT * sizeof *a), *b = malloc(COUNT * sizeof *b);
    const float rate = 0.3f, keep = 1 / (1 - rate);
    kp_ref_dropout_mask(a, COUNT, 42, rate);
    int kept = 0;
    for (int i = 0; i < COUNT; i++) {
        ck_assert(a[i] == 0 || a[i] == keep);
        kept += a[i] != 0;
        /* the definition, bit for bit */
        uint64_t u = mix(42 ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull));
        ck_assert(a[i] == ((double)(u >> 40) / 16777216.0 >= rate ? keep : 0));
    }
    ck_assert_msg(fabs(kept / (double)COUNT - 0.7) < 0.005, "kept %d of %d", kept, COUNT);
    kp_ref_dropout_mask(b, COUNT, 42, rate);
    ck_assert_int_eq(memcmp(a, b, COUNT * sizeof *a), 0);
    kp_ref_dropout_mask(b, COUNT, 43, rate);
    int same = 0;
    for (int i = 0; i < COUNT; i++)
        same += a[i] == b[i];
    ck_assert_msg(same < COUNT * 0.7, "seeds 42 and 43 agree on %d of %d", same, COUNT);
    kp_ref_dropout_mask(b, COUNT, 7, 0);
    for (int i = 0; i < COUNT; i++)
        ck_assert_float_eq(b[i], 1);
    ck_assert(kp_ref_dropout_node_seed(5, 1) != kp_ref_dropout_node_seed(5, 2));
    free(a);
    free(b);
}
END_TEST

#define DROP_JSON "{\"karp\": 1, \"batch\": 4, \"input\": {\"shape\": [50]}, \"layers\": [" \
                  "{\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"dropout\", \"rate\": 0}]}"

/* In training y = x * mask (the call's seed); in inference y = x. */
START_TEST(dropout_train_and_infer)
{
    build_both(DROP_JSON);
    ck_assert_int_eq(count_op(g, KP_OP_dropout_mask), 1);   /* rate 0: no node */
    ck_assert_int_eq(count_op(g, KP_OP_mul), 1);
    ck_assert_int_eq(count_op(gi, KP_OP_dropout), 2);
    float x[200], y1[200], y2[200], y3[200], p[1] = {0};
    for (int i = 0; i < 200; i++)
        x[i] = (float)(i + 1);
    KpInterpTrain t = {.phases = BIT(KP_PHASE_FORWARD), .params = p, .x = x, .y = y1, .n = 4,
                       .seed = 99};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    t.y = y2;
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    t.y = y3;
    t.seed = 100;
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    int zeros = 0;
    for (int i = 0; i < 200; i++) {
        ck_assert(y1[i] == 0 || y1[i] == 2 * x[i]);
        zeros += y1[i] == 0;
    }
    ck_assert(zeros > 60 && zeros < 140);
    ck_assert_int_eq(memcmp(y1, y2, sizeof y1), 0);
    ck_assert_int_ne(memcmp(y1, y3, sizeof y1), 0);
    ck_assert_int_eq(kp_interp_run(gi, p, x, 4, y3, &d), 0);
    ck_assert_int_eq(memcmp(x, y3, sizeof x), 0);
}
END_TEST

static Suite *layers_train_suite(void)
{
    Suite *s = suite_create("layers_train");
    TCase *tc = tcase_create("train");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, running_stats_pytorch);
    tcase_add_test(tc, running_stats_rank3);
    tcase_add_test(tc, dropout_mask_statistics);
    tcase_add_test(tc, dropout_train_and_infer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(layers_train_suite(), CK_FORK_GETENV);
}
