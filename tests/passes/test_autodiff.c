/*
 * test_autodiff.c — the train graph: gradient checks of every
 * differentiable op and every loss against central finite differences,
 * gradient accumulation, the optimizer steps against their closed forms,
 * the train memory plan, and autodiff's messages.
 *
 * Gradient checks: a tiny model is parsed and lowered by the real
 * frontend in training mode and built by kp_pipeline_train; the float
 * interpreter (kp_interp_train, FORWARD|LOSS|BACKWARD|INPUT_GRAD) gives
 * the analytic gradients.  The reference is a forward evaluator in double
 * written here (eval_loss), differentiated by central differences with
 * h = 1e-6 at the same parameters and input.  Per tensor the error is
 * max|analytic - numeric| / max(max|numeric|, 1e-3); it must stay under
 * 1e-3, and the largest is printed.
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
#include "numcheck.h"
#include "testutil.h"

#define BIT(p) (1u << (p))
#define TRAIN_MASK (BIT(KP_PHASE_FORWARD) | BIT(KP_PHASE_LOSS) | BIT(KP_PHASE_BACKWARD))

static KpArena A;
static KpGraph *g;
static KpDiag d;

static void setup(void)
{
    kp_arena_init(&A);
    g = kp_graph_new();
    ck_assert_ptr_nonnull(g);
    kp_diag_init(&d);
}

static void teardown(void)
{
    kp_graph_free(g);
    kp_arena_free(&A);
}

/* Parse, lower in training mode and run the train pipeline; 0 or -1. */
static int build(const char *json)
{
    KpModelSpec *s;
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = false;   /* the double reference below runs nodes without epilogues;
                         test_fusion checks fused against unfused */
    if (kp_frontend_parse_text("m.json", json, strlen(json), &A, &s, &d))
        return -1;
    g->training = true;
    if (kp_frontend_lower(s, g, &d))
        return -1;
    return kp_pipeline_train(g, &o, &d);
}

static void build_ok(const char *json)
{
    if (build(json))
        ck_abort_msg("build failed: %s", d.msg);
}

static uint64_t rng = 1;

static double urand(double lo, double hi)
{
    return kp_test_urand(&rng, lo, hi);
}

/* --- the double-precision reference forward ------------------------------ */

typedef struct Ref {
    const double *params;  /* the slab, as doubles */
    const double *x;
    const void *target;    /* int32 labels or floats */
    const double *dy;      /* loss "none": the scalar is sum(dy * output) */
    int64_t n;
    double **v;            /* per value id */
} Ref;

static const double *ref_in(Ref *r, const KpValue *v)
{
    if (v == g->input)
        return r->x;
    if (v->role == KP_ROLE_PARAM)
        return r->params + v->offset;
    ck_assert_ptr_nonnull(r->v[v->id]);
    return r->v[v->id];
}

static void ref_node(Ref *r, const KpNode *nd)
{
    int64_t count = kp_value_numel(nd->out, r->n);
    double *y = calloc((size_t)count + 1, sizeof *y);
    const double *x = ref_in(r, nd->in[0]);
    r->v[nd->out->id] = y;
    switch (nd->op) {
    case KP_OP_dense: {
        int64_t in = nd->in[0]->dims[1], out = nd->out->dims[1];
        const double *w = ref_in(r, nd->in[1]), *b = nd->nin == 3 ? ref_in(r, nd->in[2]) : NULL;
        for (int64_t i = 0; i < r->n; i++)
            for (int64_t o = 0; o < out; o++) {
                double acc = b ? b[o] : 0.0;
                for (int64_t k = 0; k < in; k++)
                    acc += x[i * in + k] * w[o * in + k];
                y[i * out + o] = acc;
            }
        break;
    }
    case KP_OP_relu:
        for (int64_t i = 0; i < count; i++)
            y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case KP_OP_leaky_relu:
        for (int64_t i = 0; i < count; i++)
            y[i] = x[i] > 0 ? x[i] : nd->attr.alpha * x[i];
        break;
    case KP_OP_sigmoid:
        for (int64_t i = 0; i < count; i++)
            y[i] = 1 / (1 + exp(-x[i]));
        break;
    case KP_OP_tanh:
        for (int64_t i = 0; i < count; i++)
            y[i] = tanh(x[i]);
        break;
    case KP_OP_softmax: {
        int64_t cols = nd->out->dims[nd->out->rank - 1];
        for (int64_t row = 0; row < count / cols; row++) {
            double sum = 0;
            for (int64_t j = 0; j < cols; j++)
                sum += exp(x[row * cols + j]);
            for (int64_t j = 0; j < cols; j++)
                y[row * cols + j] = exp(x[row * cols + j]) / sum;
        }
        break;
    }
    case KP_OP_flatten:
    case KP_OP_reshape:
        memcpy(y, x, (size_t)count * sizeof *y);
        break;
    case KP_OP_add:
        for (int k = 0; k < nd->nin; k++) {
            const double *xk = ref_in(r, nd->in[k]);
            for (int64_t i = 0; i < count; i++)
                y[i] += xk[i];
        }
        break;
    default:
        ck_abort_msg("no double reference for %s", kp_op_name(nd->op));
    }
}

/* The loss of the graph in double (or sum(dy * y) without a loss). */
static double ref_loss(Ref *r, const double *p)
{
    int64_t count = kp_value_numel(g->output, r->n);
    double total = 0;
    if (strcmp(g->loss, "cross_entropy") == 0) {
        const int32_t *labels = r->target;
        int64_t c = g->output->dims[1];
        for (int64_t i = 0; i < r->n; i++) {
            double sum = 0;
            for (int64_t j = 0; j < c; j++)
                sum += exp(p[i * c + j]);
            total += log(sum) - p[i * c + labels[i]];
        }
        return total / (double)r->n;
    }
    const float *t = r->target;
    for (int64_t i = 0; i < count; i++) {
        if (strcmp(g->loss, "mse") == 0)
            total += (p[i] - t[i]) * (p[i] - t[i]);
        else if (strcmp(g->loss, "bce") == 0)
            total -= t[i] * fmax(log(p[i]), -100) + (1 - t[i]) * fmax(log(1 - p[i]), -100);
        else if (strcmp(g->loss, "bce_logits") == 0)
            total -= t[i] * log(1 / (1 + exp(-p[i]))) + (1 - t[i]) * log(1 - 1 / (1 + exp(-p[i])));
        else
            total += r->dy[i] * p[i];
    }
    return strcmp(g->loss, "none") == 0 ? total : total / (double)count;
}

static double eval_loss(void *ctx)
{
    Ref *r = ctx;
    r->v = calloc((size_t)g->nvalues, sizeof *r->v);
    for (int k = 0; k < g->nnodes; k++)
        if (g->nodes[k]->phase == KP_PHASE_FORWARD)
            ref_node(r, g->nodes[k]);
    double loss = ref_loss(r, ref_in(r, g->output));
    for (int i = 0; i < g->nvalues; i++)
        free(r->v[i]);
    free(r->v);
    return loss;
}

/* --- gradient checks ----------------------------------------------------- */

static double worst_error = 0;

/* Build the model, draw parameters, input and target, and compare every
 * parameter gradient and the input gradient with central differences. */
static void gradcheck(const char *json, int64_t n, const char *what)
{
    build_ok(json);
    rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)n * 7919u;
    int64_t np = g->param_floats, nx = kp_value_numel(g->input, n);
    int64_t ny = kp_value_numel(g->output, n);
    float *params = calloc((size_t)np, sizeof(float)), *grads = calloc((size_t)np, sizeof(float));
    float *x = malloc((size_t)nx * sizeof(float)), *dx = malloc((size_t)nx * sizeof(float));
    float *dy = malloc((size_t)ny * sizeof(float)), *target = malloc((size_t)ny * sizeof(float));
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    double *dparams = calloc((size_t)np, sizeof(double)), *dxs = malloc((size_t)nx * sizeof(double));
    double *dys = malloc((size_t)ny * sizeof(double));
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        if (v->role == KP_ROLE_PARAM)
            for (int64_t k = 0; k < kp_value_numel(v, 1); k++)
                dparams[v->offset + k] = params[v->offset + k] = (float)urand(-1, 1);
    }
    for (int64_t i = 0; i < nx; i++)
        dxs[i] = x[i] = (float)urand(-1, 1);
    for (int64_t i = 0; i < ny; i++) {
        dys[i] = dy[i] = (float)urand(-1, 1);
        target[i] = (float)(strcmp(g->loss, "mse") == 0 ? urand(-1, 1) : urand(0, 1));
    }
    bool ce = g->target && g->target->dtype == KP_I32;
    for (int64_t i = 0; i < n; i++)
        labels[i] = ce ? (int32_t)(urand(0, 1) * (double)g->output->dims[1]) % (int32_t)g->output->dims[1] : 0;
    const void *tgt = ce ? (const void *)labels : (const void *)target;

    float loss = NAN;
    KpInterpTrain t = {.phases = TRAIN_MASK | BIT(KP_PHASE_INPUT_GRAD), .params = params,
                       .grads = grads, .x = x, .target = tgt, .dy = dy, .dx = dx,
                       .loss = &loss, .n = n, .step = 1};
    if (kp_interp_train(g, &t, &d))
        ck_abort_msg("interp: %s", d.msg);
    Ref r = {.params = dparams, .x = dxs, .target = tgt, .dy = dys, .n = n};
    double ref = eval_loss(&r);
    if (g->loss_value)
        ck_assert_msg(fabs(loss - ref) <= 1e-5 * fmax(1, fabs(ref)), "%s: loss %g, double %g",
                      what, (double)loss, ref);

    double worst = 0;
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *gv = g->values[i];
        if (gv->role != KP_ROLE_GRAD)
            continue;
        int64_t off = gv->grad_of->offset;
        worst = fmax(worst, kp_test_check_grad(what, n, gv->grad_of->name, eval_loss, &r,
                                               dparams + off, grads + off,
                                               kp_value_numel(gv, 1), NULL));
    }
    ck_assert_ptr_nonnull(g->d_input);
    worst = fmax(worst, kp_test_check_grad(what, n, "d_input", eval_loss, &r, dxs, dx, nx, NULL));
    worst_error = fmax(worst_error, worst);
    printf("gradcheck %-22s n=%ld  max relative error %.2e\n", what, (long)n, worst);
    free(params), free(grads), free(x), free(dx), free(dy), free(target), free(labels);
    free(dparams), free(dxs), free(dys);
}

#define HEAD "{\"karp\": 1, \"batch\": 7, \"seed\": 3, "

static const struct {
    const char *what, *json;
} cases[] = {
    {"dense+bias/ce", HEAD "\"input\": {\"shape\": [5]}, \"layers\": ["
                      "{\"type\": \"dense\", \"units\": 3}], \"loss\": \"cross_entropy\"}"},
    {"dense-bias/mse", HEAD "\"input\": {\"shape\": [7]}, \"layers\": ["
                       "{\"type\": \"dense\", \"units\": 1, \"bias\": false}], \"loss\": \"mse\"}"},
    {"relu/ce", HEAD "\"input\": {\"shape\": [5]}, \"layers\": ["
                "{\"type\": \"dense\", \"units\": 7, \"activation\": \"relu\"},"
                "{\"type\": \"dense\", \"units\": 5}], \"loss\": \"cross_entropy\"}"},
    {"leaky_relu/mse", HEAD "\"input\": {\"shape\": [3]}, \"layers\": ["
                       "{\"type\": \"dense\", \"units\": 5}, {\"type\": \"leaky_relu\", \"alpha\": 0.1},"
                       "{\"type\": \"dense\", \"units\": 3}], \"loss\": \"mse\"}"},
    {"sigmoid/bce", HEAD "\"input\": {\"shape\": [5]}, \"layers\": ["
                    "{\"type\": \"dense\", \"units\": 3, \"activation\": \"sigmoid\"}], \"loss\": \"bce\"}"},
    {"tanh/bce_logits", HEAD "\"input\": {\"shape\": [7]}, \"layers\": ["
                        "{\"type\": \"dense\", \"units\": 5, \"activation\": \"tanh\"},"
                        "{\"type\": \"dense\", \"units\": 1}], \"loss\": \"bce_logits\"}"},
    {"softmax/mse", HEAD "\"input\": {\"shape\": [3]}, \"layers\": ["
                    "{\"type\": \"dense\", \"units\": 5, \"activation\": \"softmax\"}], \"loss\": \"mse\"}"},
    {"softmax/bce", HEAD "\"input\": {\"shape\": [5]}, \"layers\": ["
                    "{\"type\": \"dense\", \"units\": 7}, {\"type\": \"softmax\"}], \"loss\": \"bce\"}"},
    {"flatten/ce", HEAD "\"input\": {\"shape\": [1, 3, 5]}, \"layers\": ["
                   "{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 3}], "
                   "\"loss\": \"cross_entropy\"}"},
    {"reshape+softmax3d/mse", HEAD "\"input\": {\"shape\": [15]}, \"layers\": ["
                              "{\"type\": \"reshape\", \"shape\": [3, 5]}, {\"type\": \"softmax\"},"
                              "{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 3}], "
                              "\"loss\": \"mse\"}"},
    {"add fan-out/bce_logits", HEAD "\"input\": {\"shape\": [5]}, \"nodes\": ["
                               "{\"name\": \"a\", \"type\": \"dense\", \"input\": \"input\", \"units\": 5, \"activation\": \"tanh\"},"
                               "{\"name\": \"b\", \"type\": \"dense\", \"input\": \"a\", \"units\": 5},"
                               "{\"name\": \"s\", \"type\": \"add\", \"inputs\": [\"b\", \"a\", \"input\"]},"
                               "{\"name\": \"s2\", \"type\": \"add\", \"inputs\": [\"s\", \"s\"]},"
                               "{\"name\": \"out\", \"type\": \"dense\", \"input\": \"s2\", \"units\": 3}],"
                               "\"output\": \"out\", \"loss\": \"bce_logits\"}"},
    {"no loss (dy)", HEAD "\"input\": {\"shape\": [3]}, \"layers\": ["
                     "{\"type\": \"dense\", \"units\": 5, \"activation\": \"tanh\"},"
                     "{\"type\": \"dense\", \"units\": 3, \"activation\": \"leaky_relu\"}]}"},
};
enum { NCASES = sizeof cases / sizeof cases[0] };
static const int64_t batches[] = {1, 3, 5};

START_TEST(gradcheck_ops)
{
    gradcheck(cases[_i / 3].json, batches[_i % 3], cases[_i / 3].what);
}
END_TEST

/* --- accumulation, zeroing ----------------------------------------------- */

static const char *const mlp_json =
    HEAD "\"input\": {\"shape\": [5]}, \"layers\": [{\"type\": \"dense\", \"units\": 3, "
    "\"activation\": \"relu\"}, {\"type\": \"dense\", \"units\": 3}], \"loss\": \"cross_entropy\", "
    "\"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}}";

static void fill(float *p, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        p[i] = (float)urand(-1, 1);
}

START_TEST(grads_accumulate_then_zeroed)
{
    build_ok(mlp_json);
    int64_t np = g->param_floats;
    float *params = calloc((size_t)np, 4), *grads = calloc((size_t)np, 4);
    float *once = malloc((size_t)np * 4), *opt = calloc((size_t)(2 * np), 4), x[15];
    int32_t labels[3] = {0, 2, 1};
    fill(params, np);
    fill(x, 15);
    KpInterpTrain t = {.phases = TRAIN_MASK, .params = params, .grads = grads, .opt = opt,
                       .x = x, .target = labels, .n = 3, .step = 1};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    memcpy(once, grads, (size_t)np * 4);
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    bool nonzero = false;
    for (int64_t i = 0; i < np; i++) {
        ck_assert_float_eq_tol(grads[i], 2 * once[i], 1e-6);
        nonzero |= once[i] != 0;
    }
    ck_assert(nonzero);
    t.phases = BIT(KP_PHASE_UPDATE);
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    for (int64_t i = 0; i < np; i++)
        ck_assert_float_eq(grads[i], 0);
    /* a full train step leaves them zero too, and returns the loss */
    float loss = -1;
    t.phases = TRAIN_MASK | BIT(KP_PHASE_UPDATE);
    t.loss = &loss;
    t.step = 2;
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    ck_assert(loss > 0);
    for (int64_t i = 0; i < np; i++)
        ck_assert_float_eq(grads[i], 0);
    free(params), free(grads), free(once), free(opt);
}
END_TEST

/* forward then backward(dy = the loss gradient) equals one FORWARD|LOSS|BACKWARD */
START_TEST(forward_backward_split)
{
    build_ok(mlp_json);
    int64_t np = g->param_floats;
    float *params = calloc((size_t)np, 4), *g1 = calloc((size_t)np, 4), *g2 = calloc((size_t)np, 4);
    float x[15], y[9], dy[9], dx1[15], dx2[15];
    int32_t labels[3] = {2, 0, 1};
    fill(params, np);
    fill(x, 15);
    KpInterpTrain t = {.phases = TRAIN_MASK | BIT(KP_PHASE_INPUT_GRAD), .params = params,
                       .grads = g1, .x = x, .target = labels, .dx = dx1, .y = y, .n = 3};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    t = (KpInterpTrain){.phases = BIT(KP_PHASE_FORWARD), .params = params, .x = x, .y = y, .n = 3};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    kp_ref_cross_entropy_backward(dy, y, labels, 3, 3);
    t = (KpInterpTrain){.phases = BIT(KP_PHASE_BACKWARD) | BIT(KP_PHASE_INPUT_GRAD),
                        .params = params, .grads = g2, .x = x, .dy = dy, .dx = dx2, .n = 3};
    ck_assert_int_eq(kp_interp_train(g, &t, &d), 0);
    for (int64_t i = 0; i < np; i++)
        ck_assert_float_eq(g1[i], g2[i]);
    for (int i = 0; i < 15; i++)
        ck_assert_float_eq(dx1[i], dx2[i]);
    free(params), free(g1), free(g2);
}
END_TEST

/* --- optimizers against their closed forms -------------------------------- */

/* Hand-computed: theta 1, lr 0.1, g 0.5 then -0.25. */
START_TEST(optim_ref_by_hand)
{
    float th = 1, gr = 0.5f, v = 0, m = 0, v2 = 0;
    kp_ref_sgd_update(&th, &gr, 1, 0.1f, 0.01f);          /* 1 - 0.1 (0.5 + 0.01) */
    ck_assert_float_eq_tol(th, 0.949f, 1e-7);
    th = 1;
    kp_ref_momentum_update(&th, &gr, &v, 1, 0.1f, 0.9f);  /* v 0.05, theta 0.995 */
    ck_assert_float_eq_tol(v, 0.05f, 1e-7);
    ck_assert_float_eq_tol(th, 0.995f, 1e-7);
    kp_ref_momentum_update(&th, &gr, &v, 1, 0.1f, 0.9f);  /* v 0.095, theta 0.9855 */
    ck_assert_float_eq_tol(v, 0.095f, 1e-7);
    ck_assert_float_eq_tol(th, 0.9855f, 1e-7);
    th = 1;
    kp_ref_adam_update(&th, &gr, &m, &v2, 1, 1, 0.1f, 0.9f, 0.999f, 1e-8f);
    ck_assert_float_eq_tol(th, 0.9f, 1e-6);               /* m_hat 0.5, v_hat 0.25 */
    gr = -0.25f;                                          /* m 0.02, v 0.00031225 */
    kp_ref_adam_update(&th, &gr, &m, &v2, 1, 2, 0.1f, 0.9f, 0.999f, 1e-8f);
    ck_assert_float_eq_tol(m, 0.02f, 1e-7);
    ck_assert_float_eq_tol(v2, 0.00031225f, 1e-8);
    /* m_hat 0.02/0.19, v_hat 0.00031225/0.001999: theta 0.9 - 0.1 * 0.266337 */
    ck_assert_float_eq_tol(th, 0.9f - 0.1f * 0.266337f, 2e-6);
}
END_TEST

/* The closed forms with a constant gradient, t steps from theta0:
 *   sgd:      a^t theta0 - lr g (1 - a^t) / (1 - a),  a = 1 - lr wd
 *   momentum: theta0 - lr g sum_{k=1..t} (1 - beta^k)
 *   adam:     theta0 - t lr g / (|g| + eps)   (m_hat = g, v_hat = g^2) */
static double closed_form(const char *opt, double th0, double gr, int t)
{
    const double lr = 0.05, wd = 0.1, beta = 0.8, eps = 1e-8;
    if (strcmp(opt, "sgd") == 0) {
        double a = 1 - lr * wd;
        return pow(a, t) * th0 - lr * gr * (1 - pow(a, t)) / (1 - a);
    }
    if (strcmp(opt, "momentum") == 0) {
        double sum = 0;
        for (int k = 1; k <= t; k++)
            sum += 1 - pow(beta, k);
        return th0 - lr * gr * sum;
    }
    return th0 - t * lr * gr / (fabs(gr) + eps);
}

static const char *const optim_json[] = {
    HEAD "\"input\": {\"shape\": [3]}, \"layers\": [{\"type\": \"dense\", \"units\": 2}], "
    "\"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.05, \"weight_decay\": 0.1}}",
    HEAD "\"input\": {\"shape\": [3]}, \"layers\": [{\"type\": \"dense\", \"units\": 2}], "
    "\"loss\": \"mse\", \"optimizer\": {\"type\": \"momentum\", \"lr\": 0.05, \"beta\": 0.8}}",
    HEAD "\"input\": {\"shape\": [3]}, \"layers\": [{\"type\": \"dense\", \"units\": 2}], "
    "\"optimizer\": {\"type\": \"adam\", \"lr\": 0.05}}",
};

/* Five UPDATE phases through the interpreter, the gradient set before each. */
START_TEST(optim_through_interp)
{
    build_ok(optim_json[_i]);
    const char *opt = g->optimizer;
    ck_assert_int_eq(g->opt_slots, _i);
    int64_t np = g->param_floats, nt = g->trainable_floats;
    ck_assert_int_eq(nt, 32);                  /* weight 6 floats, bias at 16 */
    float *params = calloc((size_t)np, 4), *grads = calloc((size_t)np, 4);
    float *state = calloc((size_t)(2 * np + 1), 4);
    double th0[32], gr[32];
    for (int i = 0; i < 32; i++) {
        th0[i] = params[i] = (float)urand(-1, 1);
        gr[i] = (float)urand(-1, 1);
    }
    for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < 32; i++)
            grads[i] = (float)gr[i];
        KpInterpTrain tr = {.phases = BIT(KP_PHASE_UPDATE), .params = params, .grads = grads,
                            .opt = state, .n = 1, .step = t};
        ck_assert_int_eq(kp_interp_train(g, &tr, &d), 0);
        for (int i = 0; i < 32; i++) {
            double want = closed_form(opt, th0[i], gr[i], t);
            ck_assert_msg(fabs(params[i] - want) <= 1e-5 * fmax(1, fabs(want)),
                          "%s step %d [%d]: %.8g, closed form %.8g", opt, t, i,
                          (double)params[i], want);
            ck_assert_float_eq(grads[i], 0);
        }
    }
    if (strcmp(opt, "momentum") == 0)          /* v = (1 - beta^5) g */
        ck_assert_float_eq_tol(state[3], (1 - pow(0.8, 5)) * gr[3], 1e-6);
    if (strcmp(opt, "adam") == 0) {            /* m at [0,np), v at [np,2np) */
        ck_assert_float_eq_tol(state[3], (1 - pow(0.9, 5)) * gr[3], 1e-6);
        ck_assert_float_eq_tol(state[np + 3], (1 - pow(0.999, 5)) * gr[3] * gr[3], 1e-7);
    }
    free(params), free(grads), free(state);
}
END_TEST

/* --- the train graph's plan and messages --------------------------------- */

START_TEST(train_memplan)
{
    build_ok(mlp_json);
    ck_assert_int_eq(g->target->storage, KP_STORE_TARGET);
    ck_assert_int_eq(g->target->dtype, KP_I32);
    ck_assert_int_eq(g->d_input->storage, KP_STORE_DX);
    ck_assert_int_eq(g->output->storage, KP_STORE_WORKSPACE);
    ck_assert_int_eq(g->loss_value->storage, KP_STORE_WORKSPACE);
    ck_assert_int_eq(g->loss_value->rank, 0);
    ck_assert_int_eq(g->opt_slots, 2);
    int ngrads = 0;
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        if (v->role != KP_ROLE_GRAD)
            continue;
        ngrads++;
        ck_assert_int_eq(v->storage, KP_STORE_GRAD);
        ck_assert_int_eq(v->offset, v->grad_of->offset);
        ck_assert_int_eq(v->producer->phase, KP_PHASE_BACKWARD);
    }
    ck_assert_int_eq(ngrads, 4);
    const KpNode *upd = g->nodes[g->nnodes - 1];
    ck_assert_int_eq(upd->op, KP_OP_adam_update);
    ck_assert_int_eq(upd->out->dims[0], g->trainable_floats);
    ck_assert_int_eq(upd->out->storage, KP_STORE_PARAM);
    ck_assert_int_eq(g->d_input->producer->phase, KP_PHASE_INPUT_GRAD);
}
END_TEST

/* Batchnorm's running statistics come after every trained parameter. */
START_TEST(frozen_params_last)
{
    const char *json = HEAD "\"input\": {\"shape\": [3]}, \"layers\": [{\"type\": \"dense\", "
                            "\"units\": 20}, {\"type\": \"batchnorm\"}, {\"type\": \"dense\", \"units\": 2}]}";
    KpModelSpec *spec;
    KpPassOpts o;
    kp_pass_opts_init(&o);
    ck_assert_int_eq(kp_frontend_parse_text("m.json", json, strlen(json), &A, &spec, &d), 0);
    ck_assert_int_eq(kp_frontend_lower(spec, g, &d), 0);
    ck_assert_int_eq(kp_pipeline_infer(g, &o, &d), 0);
    /* dense1 60+20, batchnorm 20+20, dense2 40+2 trained; 20+20 frozen */
    ck_assert_int_eq(g->trainable_floats, 64 + 32 + 32 + 32 + 48 + 16);
    ck_assert_int_eq(g->param_floats, g->trainable_floats + 64);
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        if (v->role != KP_ROLE_PARAM)
            continue;
        bool stat = strstr(v->name, ".running_") != NULL;
        ck_assert_int_eq(v->frozen, stat);
        ck_assert(stat ? v->offset >= g->trainable_floats
                       : v->offset + kp_value_numel(v, 1) <= g->trainable_floats);
    }
}
END_TEST

START_TEST(message_loss_shape)
{
    ck_assert_int_eq(build(HEAD "\"input\": {\"shape\": [1, 2, 2]}, \"layers\": [{\"type\": "
                              "\"relu\"}], \"loss\": \"cross_entropy\"}"), -1);
    ck_assert_str_eq(d.msg, "m.json: loss (cross_entropy): the model output must be [N,C] (rank 1 "
                            "per sample) for cross_entropy, got [N,1,2,2]");
}
END_TEST

/* A dead forward branch may hold ops without a gradient rule. */
START_TEST(dead_branch_ignored)
{
    build_ok(HEAD "\"input\": {\"shape\": [1, 4, 4]}, \"nodes\": ["
                  "{\"name\": \"pool\", \"type\": \"maxpool2d\", \"input\": \"input\", \"size\": 2},"
                  "{\"name\": \"f\", \"type\": \"flatten\", \"input\": \"input\"},"
                  "{\"name\": \"out\", \"type\": \"dense\", \"input\": \"f\", \"units\": 3}],"
                  "\"output\": \"out\", \"loss\": \"cross_entropy\"}");
    for (int k = 0; k < g->nnodes; k++)
        ck_assert(g->nodes[k]->phase == KP_PHASE_FORWARD || g->nodes[k]->op != KP_OP_maxpool2d);
}
END_TEST

static Suite *autodiff_suite(void)
{
    Suite *s = suite_create("autodiff");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, gradcheck_ops, 0, NCASES * 3);
    suite_add_tcase(s, tc);
    tc = tcase_create("train");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, grads_accumulate_then_zeroed);
    tcase_add_test(tc, forward_backward_split);
    tcase_add_test(tc, optim_ref_by_hand);
    tcase_add_loop_test(tc, optim_through_interp, 0, 3);
    tcase_add_test(tc, train_memplan);
    tcase_add_test(tc, frozen_params_last);
    tcase_add_test(tc, message_loss_shape);
    tcase_add_test(tc, dead_branch_ignored);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc = kp_test_main(autodiff_suite(), CK_NOFORK);
    printf("gradcheck: largest relative error over all ops %.2e\n", worst_error);
    return rc;
}
