/*
 * test_grad_layers.c — gradient checks of every layer beyond dense, in
 * training mode, against central finite differences: conv2d (strides,
 * paddings incl. TensorFlow's uneven "same", dilations, odd sizes),
 * conv2d_transpose, the pools, batchnorm through its batch statistics,
 * dropout under a fixed seed, masking, and concat and residual add in the
 * graph form with fan-out; batch 1 and 5.
 *
 * As in test_autodiff.c: the real frontend lowers a tiny model in
 * training mode and kp_pipeline_train builds it; kp_interp_train gives
 * the analytic gradients in float.  The reference is a forward evaluator
 * in double written here independently of runtime/ref/ (the transposed
 * conv, for one, is written as a gather where the kernel scatters),
 * differentiated by central differences (h = 1e-6).  Per tensor the
 * error is max|analytic - numeric| / max(max|numeric|, 1e-3) and must
 * stay under 1e-3; the largest per case is printed.
 *
 * Without a loss the scalar is sum(dy * output) for a fixed random dy.
 * Dropout's mask comes from kp_ref_dropout_mask (its definition) with the
 * node's seed, so it is the same constant in both.  A masked sample's
 * input gradient is 0 by definition (the mask is a constant, as in
 * Keras) while its finite difference is not (the mask flips), so those
 * inputs are checked to be exactly 0 instead.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "ir/ir.h"
#include "ir/epilogue.h"
#include "passes/passes.h"
#include "runtime/ref/ref.h"
#include "numcheck.h"
#include "testutil.h"

#define BIT(p) (1u << (p))
#define TRAIN_MASK (BIT(KP_PHASE_FORWARD) | BIT(KP_PHASE_LOSS) | BIT(KP_PHASE_BACKWARD))
#define SEED 0x5EEDF00Dull

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

static void build_ok(const char *json)
{
    KpModelSpec *s;
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = false;   /* the double reference below runs nodes without epilogues;
                         test_fusion checks fused against unfused */
    if (kp_frontend_parse_text("m.json", json, strlen(json), &A, &s, &d))
        ck_abort_msg("parse: %s", d.msg);
    g->training = true;
    if (kp_frontend_lower(s, g, &d) || kp_pipeline_train(g, &o, &d))
        ck_abort_msg("build: %s", d.msg);
}

static uint64_t rng = 1;

static double urand(double lo, double hi)
{
    return kp_test_urand(&rng, lo, hi);
}

/* --- the double-precision reference forward ------------------------------ */

typedef struct Ref {
    const double *params, *x, *dy;
    const int32_t *labels;
    int64_t n;
    double **v;
} Ref;

static const double *in_of(Ref *r, const KpValue *v)
{
    if (v == g->input)
        return r->x;
    if (v->role == KP_ROLE_PARAM)
        return r->params + v->offset;
    ck_assert_ptr_nonnull(r->v[v->id]);
    return r->v[v->id];
}

/* 4-d index into [n][c][h][w] of value v */
#define AT4(v, i, c, y, x) ((((i) * (v)->dims[1] + (c)) * (v)->dims[2] + (y)) * (v)->dims[3] + (x))

static void conv(Ref *r, const KpNode *nd, double *y)
{
    const KpValue *xv = nd->in[0], *o = nd->out;
    const KpAttrs *a = &nd->attr;
    const double *x = in_of(r, xv), *w = in_of(r, nd->in[1]);
    const double *b = nd->nin == 3 ? in_of(r, nd->in[2]) : NULL;
    int64_t C = xv->dims[1], kh = a->kernel[0], kw = a->kernel[1];
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t f = 0; f < o->dims[1]; f++)
            for (int64_t oy = 0; oy < o->dims[2]; oy++)
                for (int64_t ox = 0; ox < o->dims[3]; ox++) {
                    double acc = b ? b[f] : 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                int64_t iy = oy * a->stride[0] - a->padding[0] + ky * a->dilation[0];
                                int64_t ix = ox * a->stride[1] - a->padding[1] + kx * a->dilation[1];
                                if (iy >= 0 && iy < xv->dims[2] && ix >= 0 && ix < xv->dims[3])
                                    acc += x[AT4(xv, i, c, iy, ix)] * w[((f * C + c) * kh + ky) * kw + kx];
                            }
                    y[AT4(o, i, f, oy, ox)] = acc;
                }
}

/* The input row feeding output row o through tap k, or -1: o = i*s - p + k*dl. */
static int64_t source(int64_t o, int64_t k, int64_t s, int64_t p, int64_t dl, int64_t len)
{
    int64_t t = o + p - k * dl;
    if (t < 0 || t % s != 0 || t / s >= len)
        return -1;
    return t / s;
}

/* the transposed conv as a gather over the output */
static void conv_transpose(Ref *r, const KpNode *nd, double *y)
{
    const KpValue *xv = nd->in[0], *o = nd->out;
    const KpAttrs *a = &nd->attr;
    const double *x = in_of(r, xv), *w = in_of(r, nd->in[1]);
    const double *b = nd->nin == 3 ? in_of(r, nd->in[2]) : NULL;
    int64_t F = o->dims[1], kh = a->kernel[0], kw = a->kernel[1];
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t f = 0; f < F; f++)
            for (int64_t oy = 0; oy < o->dims[2]; oy++)
                for (int64_t ox = 0; ox < o->dims[3]; ox++) {
                    double acc = b ? b[f] : 0;
                    for (int64_t c = 0; c < xv->dims[1]; c++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                int64_t iy = source(oy, ky, a->stride[0], a->padding[0], a->dilation[0], xv->dims[2]);
                                int64_t ix = source(ox, kx, a->stride[1], a->padding[1], a->dilation[1], xv->dims[3]);
                                if (iy >= 0 && ix >= 0)
                                    acc += x[AT4(xv, i, c, iy, ix)] * w[((c * F + f) * kh + ky) * kw + kx];
                            }
                    y[AT4(o, i, f, oy, ox)] = acc;
                }
}

static void pool(Ref *r, const KpNode *nd, double *y, bool max)
{
    const KpValue *xv = nd->in[0], *o = nd->out;
    const KpAttrs *a = &nd->attr;
    const double *x = in_of(r, xv);
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t c = 0; c < o->dims[1]; c++)
            for (int64_t oy = 0; oy < o->dims[2]; oy++)
                for (int64_t ox = 0; ox < o->dims[3]; ox++) {
                    double acc = max ? -INFINITY : 0;
                    for (int64_t ky = 0; ky < a->kernel[0]; ky++)
                        for (int64_t kx = 0; kx < a->kernel[1]; kx++) {
                            int64_t iy = oy * a->stride[0] - a->padding[0] + ky;
                            int64_t ix = ox * a->stride[1] - a->padding[1] + kx;
                            if (iy < 0 || iy >= xv->dims[2] || ix < 0 || ix >= xv->dims[3])
                                continue;
                            double v = x[AT4(xv, i, c, iy, ix)];
                            acc = max ? fmax(acc, v) : acc + v;
                        }
                    y[AT4(o, i, c, oy, ox)] = max ? acc : acc / (double)(a->kernel[0] * a->kernel[1]);
                }
}

static int64_t hw_of(const KpValue *v)
{
    int64_t hw = 1;
    for (int i = 2; i < v->rank; i++)
        hw *= v->dims[i];
    return hw;
}

/* stats [2,C]: the batch mean and 1/sqrt(biased variance + eps) */
static void bn_stats(Ref *r, const KpNode *nd, double *y)
{
    const KpValue *xv = nd->in[0];
    const double *x = in_of(r, xv);
    int64_t C = xv->dims[1], hw = hw_of(xv), m = r->n * hw;
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < r->n; i++)
            for (int64_t p = 0; p < hw; p++)
                sum += x[(i * C + c) * hw + p];
        double mean = sum / (double)m;
        for (int64_t i = 0; i < r->n; i++)
            for (int64_t p = 0; p < hw; p++)
                sq += pow(x[(i * C + c) * hw + p] - mean, 2);
        y[c] = mean;
        y[C + c] = 1 / sqrt(sq / (double)m + nd->attr.eps);
    }
}

static void bn_train(Ref *r, const KpNode *nd, double *y)
{
    const KpValue *xv = nd->in[0];
    const double *x = in_of(r, xv), *st = in_of(r, nd->in[1]);
    const double *gamma = in_of(r, nd->in[2]), *beta = in_of(r, nd->in[3]);
    int64_t C = xv->dims[1], hw = hw_of(xv);
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t at = (i * C + c) * hw + p;
                y[at] = (x[at] - st[c]) * st[C + c] * gamma[c] + beta[c];
            }
}

static void concat(Ref *r, const KpNode *nd, double *y)
{
    int axis = nd->attr.axis;
    int64_t outer = r->n, inner = 1;
    for (int i = 1; i <= axis; i++)
        outer *= nd->out->dims[i];
    for (int i = axis + 2; i < nd->out->rank; i++)
        inner *= nd->out->dims[i];
    int64_t at = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int k = 0; k < nd->nin; k++) {
            int64_t len = nd->in[k]->dims[axis + 1] * inner;
            memcpy(y + at, in_of(r, nd->in[k]) + o * len, (size_t)len * sizeof *y);
            at += len;
        }
}

static void dense(Ref *r, const KpNode *nd, double *y)
{
    const double *x = in_of(r, nd->in[0]), *w = in_of(r, nd->in[1]);
    const double *b = nd->nin == 3 ? in_of(r, nd->in[2]) : NULL;
    int64_t in = nd->in[0]->dims[1], out = nd->out->dims[1];
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0;
            for (int64_t k = 0; k < in; k++)
                acc += x[i * in + k] * w[o * in + k];
            y[i * out + o] = acc;
        }
}

static void ref_node(Ref *r, const KpNode *nd)
{
    int64_t count = kp_value_numel(nd->out, r->n);
    double *y = calloc((size_t)count + 1, sizeof *y);
    const double *x = in_of(r, nd->in[0]);
    r->v[nd->out->id] = y;
    switch (nd->op) {
    case KP_OP_conv2d: conv(r, nd, y); break;
    case KP_OP_conv2d_transpose: conv_transpose(r, nd, y); break;
    case KP_OP_maxpool2d: pool(r, nd, y, true); break;
    case KP_OP_avgpool2d: pool(r, nd, y, false); break;
    case KP_OP_batchnorm_stats: bn_stats(r, nd, y); break;
    case KP_OP_batchnorm_train: bn_train(r, nd, y); break;
    case KP_OP_concat: concat(r, nd, y); break;
    case KP_OP_dense: dense(r, nd, y); break;
    case KP_OP_dropout_mask: {
        float *mask = malloc((size_t)count * sizeof *mask);
        kp_ref_dropout_mask(mask, count, kp_ref_dropout_node_seed(SEED, nd->key), nd->attr.rate);
        for (int64_t i = 0; i < count; i++)
            y[i] = mask[i];
        free(mask);
        break;
    }
    case KP_OP_mul: {
        const double *b = in_of(r, nd->in[1]);
        for (int64_t i = 0; i < count; i++)
            y[i] = x[i] * b[i];
        break;
    }
    case KP_OP_add:
        for (int k = 0; k < nd->nin; k++)
            for (int64_t i = 0; i < count; i++)
                y[i] += in_of(r, nd->in[k])[i];
        break;
    case KP_OP_masking: {
        int64_t f = nd->out->dims[1];
        for (int64_t i = 0; i < r->n; i++) {
            bool all = true;
            for (int64_t k = 0; k < f; k++)
                all = all && x[i * f + k] == (double)nd->attr.value;
            for (int64_t k = 0; k < f; k++)
                y[i * f + k] = all ? 0 : x[i * f + k];
        }
        break;
    }
    case KP_OP_relu:
        for (int64_t i = 0; i < count; i++)
            y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case KP_OP_tanh:
        for (int64_t i = 0; i < count; i++)
            y[i] = tanh(x[i]);
        break;
    case KP_OP_flatten:
    case KP_OP_reshape:
        memcpy(y, x, (size_t)count * sizeof *y);
        break;
    default:
        ck_abort_msg("no double reference for %s", kp_op_name(nd->op));
    }
}

/* cross_entropy, or sum(dy * output) without a loss */
static double eval_loss(void *ctx)
{
    Ref *r = ctx;
    r->v = calloc((size_t)g->nvalues, sizeof *r->v);
    for (int k = 0; k < g->nnodes; k++)
        if (g->nodes[k]->phase == KP_PHASE_FORWARD)
            ref_node(r, g->nodes[k]);
    const double *p = in_of(r, g->output);
    double total = 0;
    if (strcmp(g->loss, "cross_entropy") == 0) {
        int64_t c = g->output->dims[1];
        for (int64_t i = 0; i < r->n; i++) {
            double sum = 0;
            for (int64_t j = 0; j < c; j++)
                sum += exp(p[i * c + j]);
            total += log(sum) - p[i * c + r->labels[i]];
        }
        total /= (double)r->n;
    } else {
        ck_assert_str_eq(g->loss, "none");
        for (int64_t i = 0, count = kp_value_numel(g->output, r->n); i < count; i++)
            total += r->dy[i] * p[i];
    }
    for (int i = 0; i < g->nvalues; i++)
        free(r->v[i]);
    free(r->v);
    return total;
}

/* --- gradient checks ----------------------------------------------------- */

static double worst_error = 0;

typedef struct Case {
    const char *what, *json;
} Case;

static void gradcheck(const Case *c, int64_t n)
{
    build_ok(c->json);
    /* A model with masking gets its odd samples all 0.5 (masking's value). */
    bool with_masking = strstr(c->json, "\"masking\"") != NULL;
    rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)n * 7919u;
    int64_t np = g->param_floats, nx = kp_value_numel(g->input, n);
    int64_t ny = kp_value_numel(g->output, n), sample = nx / n;
    float *params = calloc((size_t)np, 4), *grads = calloc((size_t)np, 4);
    float *x = malloc((size_t)nx * 4), *dx = malloc((size_t)nx * 4), *dy = malloc((size_t)ny * 4);
    double *dparams = calloc((size_t)np, 8), *dxs = malloc((size_t)nx * 8);
    double *dys = malloc((size_t)ny * 8);
    bool *use_x = malloc((size_t)nx);
    int32_t labels[8];
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        for (int64_t k = 0; v->role == KP_ROLE_PARAM && k < kp_value_numel(v, 1); k++)
            dparams[v->offset + k] = params[v->offset + k] = (float)urand(-1, 1);
    }
    for (int64_t i = 0; i < nx; i++) {
        bool masked = with_masking && (i / sample) % 2 == 1;
        dxs[i] = x[i] = masked ? 0.5f : (float)urand(-1, 1);
        use_x[i] = !masked;
    }
    for (int64_t i = 0; i < ny; i++)
        dys[i] = dy[i] = (float)urand(-1, 1);
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int32_t)(i % g->output->dims[1]);

    KpInterpTrain t = {.phases = TRAIN_MASK | BIT(KP_PHASE_INPUT_GRAD), .params = params,
                       .grads = grads, .x = x, .target = labels, .dy = dy, .dx = dx, .n = n,
                       .step = 1, .seed = SEED};
    if (kp_interp_train(g, &t, &d))
        ck_abort_msg("interp: %s", d.msg);
    Ref r = {.params = dparams, .x = dxs, .dy = dys, .labels = labels, .n = n};
    double worst = 0;
    int ngrads = 0;
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *gv = g->values[i];
        if (gv->role != KP_ROLE_GRAD)
            continue;
        int64_t off = gv->grad_of->offset;
        worst = fmax(worst, kp_test_check_grad(c->what, n, gv->grad_of->name, eval_loss, &r,
                                               dparams + off, grads + off,
                                               kp_value_numel(gv, 1), NULL));
        ngrads++;
    }
    ck_assert_ptr_nonnull(g->d_input);
    worst = fmax(worst, kp_test_check_grad(c->what, n, "d_input", eval_loss, &r, dxs, dx, nx,
                                           use_x));
    for (int64_t i = 0; i < nx; i++)
        if (!use_x[i])
            ck_assert_msg(dx[i] == 0, "%s: a masked sample's input gradient is %g", c->what,
                          (double)dx[i]);
    worst_error = fmax(worst_error, worst);
    printf("gradcheck %-28s n=%ld  %d param grads  max relative error %.2e\n", c->what, (long)n,
           ngrads, worst);
    free(params), free(grads), free(x), free(dx), free(dy), free(dparams), free(dxs), free(dys);
    free(use_x);
}

#define MODEL(shape) "{\"karp\": 1, \"batch\": 5, \"seed\": 3, \"input\": {\"shape\": " shape "}, "
#define CHAIN(shape, layers) MODEL(shape) "\"layers\": [" layers "]}"
#define CONV(f, rest) "{\"type\": \"conv2d\", \"filters\": " #f ", " rest "}"
#define CONVT(f, rest) "{\"type\": \"conv2d_transpose\", \"filters\": " #f ", " rest "}"

static const Case cases[] = {
    /* conv2d: stride 1, 2, 3; padding 0, 1, same (odd, even, uneven); dilation 1, 2 */
    {"conv k3 s1 p0 c1", CHAIN("[1, 5, 5]", CONV(2, "\"kernel\": 3"))},
    {"conv k3 s2 p1 c3 6x7", CHAIN("[3, 6, 7]", CONV(2, "\"kernel\": 3, \"stride\": 2, \"padding\": 1"))},
    {"conv k2 s3 p1 c3 7x8", CHAIN("[3, 7, 8]", CONV(2, "\"kernel\": 2, \"stride\": 3, \"padding\": 1"))},
    {"conv k3 same c17 3x3", CHAIN("[17, 3, 3]", CONV(2, "\"kernel\": 3, \"padding\": \"same\""))},
    {"conv k4 same(uneven) 5x6", CHAIN("[3, 5, 6]", CONV(3, "\"kernel\": 4, \"padding\": \"same\""))},
    {"conv k3 s2 same(uneven) 6x6", CHAIN("[2, 6, 6]", CONV(2, "\"kernel\": 3, \"stride\": 2, \"padding\": \"same\""))},
    {"conv k[2,3] s[2,1] same", CHAIN("[2, 5, 4]", CONV(2, "\"kernel\": [2, 3], \"stride\": [2, 1], \"padding\": \"same\""))},
    {"conv k3 d2 p2", CHAIN("[3, 6, 6]", CONV(2, "\"kernel\": 3, \"dilation\": 2, \"padding\": 2"))},
    {"conv k2 d2 s2 valid 7x7", CHAIN("[2, 7, 7]", CONV(3, "\"kernel\": 2, \"dilation\": 2, \"stride\": 2, \"padding\": \"valid\""))},
    {"conv 1x1 image k1 c3->17", CHAIN("[3, 1, 1]", CONV(17, "\"kernel\": 1"))},
    {"conv 1x1 image k3 p1 nobias", CHAIN("[3, 1, 1]", CONV(2, "\"kernel\": 3, \"padding\": 1, \"bias\": false"))},
    {"conv+relu+conv", CHAIN("[1, 6, 6]", CONV(3, "\"kernel\": 3, \"activation\": \"relu\"") ","
                                        CONV(2, "\"kernel\": 2, \"stride\": 2"))},
    /* conv2d_transpose: stride, padding, output_padding */
    {"convT k2 s2", CHAIN("[3, 3, 3]", CONVT(2, "\"kernel\": 2, \"stride\": 2"))},
    {"convT k3 s2 p1 op1", CHAIN("[2, 4, 3]", CONVT(3, "\"kernel\": 3, \"stride\": 2, \"padding\": 1, \"output_padding\": 1"))},
    {"convT k4 s3 op2 nobias", CHAIN("[2, 2, 3]", CONVT(2, "\"kernel\": 4, \"stride\": 3, \"output_padding\": 2, \"bias\": false"))},
    {"convT k3 same c1", CHAIN("[1, 4, 4]", CONVT(2, "\"kernel\": 3, \"padding\": \"same\""))},
    {"convT k2 s2 same 1x1", CHAIN("[3, 1, 1]", CONVT(2, "\"kernel\": 2, \"stride\": 2, \"padding\": \"same\""))},
    /* pooling, after a conv so the gradient reaches parameters */
    {"maxpool 2 s2", CHAIN("[2, 4, 5]", CONV(2, "\"kernel\": 1") ", {\"type\": \"maxpool2d\", \"size\": 2}")},
    {"maxpool 3 s2 p1", CHAIN("[2, 5, 5]", CONV(2, "\"kernel\": 1") ", {\"type\": \"maxpool2d\", \"size\": 3, \"stride\": 2, \"padding\": 1}")},
    {"maxpool 1x1 image", CHAIN("[3, 1, 1]", CONV(2, "\"kernel\": 1") ", {\"type\": \"maxpool2d\", \"size\": 1}")},
    {"avgpool 2 s2", CHAIN("[2, 4, 5]", CONV(2, "\"kernel\": 1") ", {\"type\": \"avgpool2d\", \"size\": 2}")},
    {"avgpool 3 s2 p1", CHAIN("[2, 5, 5]", CONV(2, "\"kernel\": 1") ", {\"type\": \"avgpool2d\", \"size\": 3, \"stride\": 2, \"padding\": 1}")},
    {"avgpool 2 s1 overlap", CHAIN("[1, 3, 4]", CONV(2, "\"kernel\": 1") ", {\"type\": \"avgpool2d\", \"size\": 2, \"stride\": 1}")},
    /* batchnorm in training: through the batch statistics */
    {"batchnorm rank-1", CHAIN("[4]", "{\"type\": \"dense\", \"units\": 3}, {\"type\": \"batchnorm\"}, {\"type\": \"tanh\"}")},
    {"batchnorm rank-3", CHAIN("[2, 3, 3]", CONV(3, "\"kernel\": 2") ", {\"type\": \"batchnorm\", \"eps\": 0.001}")},
    {"batchnorm rank-3 ce", MODEL("[1, 4, 4]") "\"layers\": [" CONV(2, "\"kernel\": 3") ", {\"type\": \"batchnorm\"},"
                            "{\"type\": \"relu\"}, {\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 3}],"
                            "\"loss\": \"cross_entropy\"}"},
    /* dropout: the mask is constant for the seed */
    {"dropout 0.5 dense", CHAIN("[6]", "{\"type\": \"dense\", \"units\": 8}, {\"type\": \"dropout\", \"rate\": 0.5},"
                                       "{\"type\": \"dense\", \"units\": 3}")},
    {"dropout 0.3 conv", CHAIN("[2, 3, 3]", CONV(3, "\"kernel\": 2") ", {\"type\": \"dropout\", \"rate\": 0.3}")},
    /* masking: odd samples masked */
    {"masking", CHAIN("[6]", "{\"type\": \"masking\", \"value\": 0.5}, {\"type\": \"dense\", \"units\": 4}")},
    /* graph form: residual add and concat with fan-out */
    {"residual add + concat fan-out",
     MODEL("[2, 4, 4]") "\"nodes\": ["
     "{\"name\": \"c\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": 2, \"kernel\": 3, \"padding\": \"same\"},"
     "{\"name\": \"s\", \"type\": \"add\", \"inputs\": [\"c\", \"input\"]},"
     "{\"name\": \"r\", \"type\": \"relu\", \"input\": \"s\"},"
     "{\"name\": \"cat\", \"type\": \"concat\", \"inputs\": [\"r\", \"r\", \"input\"]},"
     "{\"name\": \"p\", \"type\": \"maxpool2d\", \"input\": \"cat\", \"size\": 2},"
     "{\"name\": \"f\", \"type\": \"flatten\", \"input\": \"p\"},"
     "{\"name\": \"out\", \"type\": \"dense\", \"input\": \"f\", \"units\": 3}],"
     "\"output\": \"out\", \"loss\": \"cross_entropy\"}"},
    {"concat along H",
     MODEL("[1, 4, 3]") "\"nodes\": ["
     "{\"name\": \"a\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": 2, \"kernel\": [3, 1]},"
     "{\"name\": \"b\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": 2, \"kernel\": 1},"
     "{\"name\": \"cat\", \"type\": \"concat\", \"inputs\": [\"a\", \"b\", \"a\"], \"axis\": 1}],"
     "\"output\": \"cat\"}"},
    {"concat rank-1 fan-out",
     MODEL("[3]") "\"nodes\": ["
     "{\"name\": \"a\", \"type\": \"dense\", \"input\": \"input\", \"units\": 2, \"activation\": \"tanh\"},"
     "{\"name\": \"cat\", \"type\": \"concat\", \"inputs\": [\"a\", \"input\", \"a\"]},"
     "{\"name\": \"s\", \"type\": \"add\", \"inputs\": [\"cat\", \"cat\"]},"
     "{\"name\": \"out\", \"type\": \"dense\", \"input\": \"s\", \"units\": 2}],"
     "\"output\": \"out\"}"},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

START_TEST(gradcheck_layers)
{
    gradcheck(&cases[_i / 2], _i % 2 ? 5 : 1);
}
END_TEST

/* TensorFlow's "same": O = ceil(I/S), total padding T = (O-1)S + E - I,
 * top/left T/2, the odd one at the bottom/right. */
START_TEST(same_padding_convention)
{
    build_ok(cases[4].json);   /* k4 on 5x6: T = 3, top 1, bottom 2 */
    const KpNode *c = g->nodes[0];
    ck_assert_int_eq(c->op, KP_OP_conv2d);
    ck_assert_int_eq(c->attr.pad_mode, KP_PAD_SAME);
    ck_assert_int_eq(c->attr.padding[0], 1);
    ck_assert_int_eq(c->attr.padding[1], 1);
    ck_assert_int_eq(c->out->dims[2], 5);
    ck_assert_int_eq(c->out->dims[3], 6);
    kp_graph_free(g);
    g = kp_graph_new();
    build_ok(cases[5].json);   /* k3 s2 on 6x6: O = 3, T = 1, top 0, bottom 1 */
    c = g->nodes[0];
    ck_assert_int_eq(c->attr.pad_mode, KP_PAD_SAME);
    ck_assert_int_eq(c->attr.padding[0], 0);
    ck_assert_int_eq(c->out->dims[2], 3);
    kp_graph_free(g);
    g = kp_graph_new();
    build_ok(cases[3].json);   /* k3 s1: T = 2, symmetric, explicit 1 */
    ck_assert_int_eq(g->nodes[0]->attr.pad_mode, KP_PAD_EXPLICIT);
    ck_assert_int_eq(g->nodes[0]->attr.padding[0], 1);
}
END_TEST

static Suite *grad_layers_suite(void)
{
    Suite *s = suite_create("grad_layers");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, gradcheck_layers, 0, NCASES * 2);
    tcase_add_test(tc, same_padding_convention);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc = kp_test_main(grad_layers_suite(), CK_NOFORK);
    printf("gradcheck: largest relative error over all layers %.2e\n", worst_error);
    return rc;
}
