/*
 * test_ir.c — the graph IR: construction, the op table, every shape rule
 * (results and exact error messages), and the printers.
 */
#include <check.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir/cost.h"
#include "ir/ir.h"
#include "testutil.h"

static KpGraph *g;
static KpDiag d;

static void setup(void)
{
    g = kp_graph_new();
    ck_assert_ptr_nonnull(g);
    g->file = "m.json";
    g->name = "t";
    kp_diag_init(&d);
}

static void teardown(void)
{
    kp_graph_free(g);
}

/* An activation [N, dims...] (given per sample, rank 1..3). */
static KpValue *act(int rank, ...)
{
    int64_t dims[KP_MAX_RANK] = {KP_DIM_N};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        dims[i + 1] = va_arg(ap, int64_t);
    va_end(ap);
    return kp_value_new(g, KP_ROLE_INPUT, KP_F32, rank + 1, dims);
}

static KpValue *par(const char *name, int rank, ...)
{
    int64_t dims[KP_MAX_RANK];
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        dims[i] = va_arg(ap, int64_t);
    va_end(ap);
    return kp_param_new(g, name, rank, dims, KP_INIT_ZEROS, 0, 0);
}

static KpNode *node(KpOp op, const char *name, int nin, ...)
{
    KpValue *in[KP_MAX_IN];
    va_list ap;
    va_start(ap, nin);
    for (int i = 0; i < nin; i++)
        in[i] = va_arg(ap, KpValue *);
    va_end(ap);
    KpNode *n = kp_node_new(g, op, name, "layers[1]", nin, in);
    ck_assert_ptr_nonnull(n);
    return n;
}

static const char *shape(const KpValue *v)
{
    static char buf[128];
    return kp_shape_str(v, buf, sizeof buf);
}

/* Infer n's shape and expect success with the given shape. */
static void expect_shape(KpNode *n, const char *want)
{
    int rc = kp_node_infer_shape(g, n, &d);
    ck_assert_msg(rc == 0, "unexpected error: %s", d.msg);
    ck_assert_str_eq(shape(n->out), want);
}

static void expect_error(KpNode *n, const char *want)
{
    kp_diag_init(&d); /* a diagnostic keeps only its first message */
    ck_assert_int_eq(kp_node_infer_shape(g, n, &d), -1);
    ck_assert_str_eq(d.msg, want);
}

#define I(x) ((int64_t)(x))

START_TEST(op_table)
{
    ck_assert_str_eq(kp_op_name(KP_OP_dense), "dense");
    ck_assert_str_eq(kp_op_name(KP_OP_conv2d_transpose), "conv2d_transpose");
    ck_assert_str_eq(kp_op_name(KP_OP_concat), "concat");
    ck_assert_int_eq(kp_op_kind(KP_OP_dense), KP_FUSE_GEMM);
    ck_assert_int_eq(kp_op_kind(KP_OP_relu), KP_FUSE_ELEMWISE);
    ck_assert_int_eq(kp_op_kind(KP_OP_softmax), KP_FUSE_REDUCE);
    ck_assert_int_eq(kp_op_nin(KP_OP_dense), -1);
    ck_assert_int_eq(kp_op_nin(KP_OP_batchnorm), 5);
    ck_assert_int_eq(kp_op_nin(KP_OP_maxpool2d), 1);
    for (int op = 0; op < KP_OP_COUNT; op++)
        ck_assert_ptr_nonnull(kp_op_name((KpOp)op));
}
END_TEST

START_TEST(graph_build)
{
    KpValue *x = act(3, I(1), I(28), I(28));
    ck_assert_int_eq(x->id, 0);
    ck_assert_str_eq(shape(x), "[N,1,28,28]");
    ck_assert_int_eq(kp_value_sample_size(x), 784);
    ck_assert_int_eq(kp_value_numel(x, 3), 3 * 784);
    KpValue *w = par("dense1.weight", 2, I(10), I(784));
    ck_assert_str_eq(w->name, "dense1.weight");
    ck_assert_int_eq(kp_value_sample_size(w), 7840);
    ck_assert_int_eq(kp_value_numel(w, 5), 7840);
    KpNode *f = node(KP_OP_flatten, "flatten0", 1, x);
    KpNode *a = node(KP_OP_add, "add", 2, f->out, f->out);
    ck_assert_int_eq(f->id, 0);
    ck_assert_int_eq(a->id, 1);
    ck_assert_ptr_eq(f->out->producer, f);
    ck_assert_int_eq(f->out->role, KP_ROLE_ACT);
    ck_assert_int_eq(f->out->rank, 0);
    ck_assert_str_eq(shape(f->out), "[]");
    kp_fill_uses(g);
    ck_assert_int_eq(x->nusers, 1);
    ck_assert_ptr_eq(x->users[0], f);
    ck_assert_int_eq(f->out->nusers, 1); /* add reads it twice, listed once */
    ck_assert_int_eq(a->out->nusers, 0);
    ck_assert_int_eq(w->nusers, 0);
    /* many values and nodes: the arrays grow */
    for (int i = 0; i < 100; i++)
        node(KP_OP_relu, "r", 1, x);
    ck_assert_int_eq(g->nnodes, 102);
    ck_assert_ptr_eq(g->nodes[101]->in[0], x);
}
END_TEST

START_TEST(shape_dense)
{
    KpValue *x = act(1, I(784));
    KpNode *n = node(KP_OP_dense, "dense1", 3, x, par("w", 2, I(128), I(784)), par("b", 1, I(128)));
    n->attr.units = 128;
    expect_shape(n, "[N,128]");
    KpNode *nb = node(KP_OP_dense, "dense2", 2, x, par("w2", 2, I(10), I(784)));
    nb->attr.units = 10;
    expect_shape(nb, "[N,10]");

    KpNode *bad = node(KP_OP_dense, "dense1", 2, act(3, I(1), I(28), I(28)), par("w3", 2, I(128), I(0)));
    bad->attr.units = 128;
    expect_error(bad, "m.json: layers[1] (dense1): input must be rank 1 per sample (use flatten), "
                      "got [N,1,28,28]");
    KpNode *bw = node(KP_OP_dense, "dense1", 2, x, par("w4", 2, I(128), I(100)));
    bw->attr.units = 128;
    expect_error(bw, "m.json: layers[1] (dense1): weight must be [128,784], got [128,100]");
}
END_TEST

static KpNode *conv(KpValue *x, int64_t f, int64_t k, int64_t s, KpPadMode mode, int64_t pad,
                    int64_t dil)
{
    KpValue *w = par("conv1.weight", 4, f, x->dims[1], k, k);
    KpNode *n = node(KP_OP_conv2d, "conv1", 3, x, w, par("conv1.bias", 1, f));
    n->attr.filters = f;
    n->attr.kernel[0] = n->attr.kernel[1] = k;
    n->attr.stride[0] = n->attr.stride[1] = s;
    n->attr.dilation[0] = n->attr.dilation[1] = dil;
    n->attr.pad_mode = mode;
    n->attr.padding[0] = n->attr.padding[1] = pad;
    return n;
}

START_TEST(shape_conv2d)
{
    expect_shape(conv(act(3, I(1), I(28), I(28)), 8, 5, 1, KP_PAD_EXPLICIT, 0, 1), "[N,8,24,24]");
    expect_shape(conv(act(3, I(3), I(32), I(32)), 16, 3, 2, KP_PAD_EXPLICIT, 1, 1), "[N,16,16,16]");
    expect_shape(conv(act(3, I(3), I(32), I(32)), 16, 3, 1, KP_PAD_EXPLICIT, 0, 2), "[N,16,28,28]");
    expect_shape(conv(act(3, I(3), I(10), I(10)), 4, 3, 1, KP_PAD_VALID, 7, 1), "[N,4,8,8]");

    /* "same", stride 1, odd kernel: symmetric, resolved to explicit */
    KpNode *n = conv(act(3, I(3), I(28), I(28)), 4, 5, 1, KP_PAD_SAME, 0, 1);
    expect_shape(n, "[N,4,28,28]");
    ck_assert_int_eq(n->attr.pad_mode, KP_PAD_EXPLICIT);
    ck_assert_int_eq(n->attr.padding[0], 2);
    expect_shape(n, "[N,4,28,28]"); /* idempotent */

    /* "same", stride 2 as TensorFlow: out = ceil(7/2) = 4, total pad 2 */
    n = conv(act(3, I(3), I(7), I(7)), 4, 3, 2, KP_PAD_SAME, 0, 1);
    expect_shape(n, "[N,4,4,4]");
    ck_assert_int_eq(n->attr.pad_mode, KP_PAD_EXPLICIT);
    ck_assert_int_eq(n->attr.padding[1], 1);

    /* "same", stride 2 on 8: out 4, total pad 1: top/left 0, bottom/right 1 */
    n = conv(act(3, I(3), I(8), I(8)), 4, 3, 2, KP_PAD_SAME, 0, 1);
    expect_shape(n, "[N,4,4,4]");
    ck_assert_int_eq(n->attr.pad_mode, KP_PAD_SAME);
    ck_assert_int_eq(n->attr.padding[0], 0);
    expect_shape(n, "[N,4,4,4]");

    expect_error(conv(act(3, I(1), I(3), I(3)), 4, 5, 1, KP_PAD_EXPLICIT, 0, 1),
                 "m.json: layers[1] (conv1): conv2d kernel 5x5 is larger than the padded input 3x3");
    expect_error(conv(act(3, I(1), I(5), I(5)), 4, 3, 1, KP_PAD_EXPLICIT, 0, 3),
                 "m.json: layers[1] (conv1): conv2d kernel 3x3 (dilated 7x7) is larger than the "
                 "padded input 5x5");
    KpValue *flat = act(1, I(784));
    KpNode *r = node(KP_OP_conv2d, "conv1", 2, flat, par("cw", 4, I(4), I(0), I(3), I(3)));
    r->attr.filters = 4;
    r->attr.kernel[0] = r->attr.kernel[1] = 3;
    r->attr.stride[0] = r->attr.stride[1] = 1;
    r->attr.dilation[0] = r->attr.dilation[1] = 1;
    expect_error(r, "m.json: layers[1] (conv1): input must be rank 3 per sample [C,H,W], got [N,784]");
}
END_TEST

static KpNode *convt(KpValue *x, int64_t f, int64_t k, int64_t s, KpPadMode mode, int64_t pad,
                     int64_t outpad)
{
    KpValue *w = par("up.weight", 4, x->dims[1], f, k, k);
    KpNode *n = node(KP_OP_conv2d_transpose, "up", 2, x, w);
    n->attr.filters = f;
    n->attr.kernel[0] = n->attr.kernel[1] = k;
    n->attr.stride[0] = n->attr.stride[1] = s;
    n->attr.dilation[0] = n->attr.dilation[1] = 1;
    n->attr.pad_mode = mode;
    n->attr.padding[0] = n->attr.padding[1] = pad;
    n->attr.output_padding[0] = n->attr.output_padding[1] = outpad;
    return n;
}

START_TEST(shape_conv2d_transpose)
{
    /* PyTorch: (5-1)*2 - 2*1 + 3 + 1 = 10 */
    expect_shape(convt(act(3, I(16), I(5), I(5)), 8, 3, 2, KP_PAD_EXPLICIT, 1, 1), "[N,8,10,10]");
    expect_shape(convt(act(3, I(16), I(7), I(7)), 8, 4, 2, KP_PAD_VALID, 0, 0), "[N,8,16,16]");
    /* TensorFlow's "same": output I*S; of the (I-1)*S + K full rows the top
     * loses floor((K-S)/2), the bottom the rest. K 3, S 2: top 0, bottom 1
     * (uneven: pad_mode stays SAME). */
    KpNode *n = convt(act(3, I(16), I(4), I(4)), 8, 3, 2, KP_PAD_SAME, 0, 0);
    expect_shape(n, "[N,8,8,8]");
    ck_assert_int_eq(n->attr.padding[0], 0);
    ck_assert_int_eq(n->attr.pad_mode, KP_PAD_SAME);
    expect_shape(n, "[N,8,8,8]");
    /* the DCGAN layer: K 5, S 2, 7 -> 14, input row i at output 2i - 1 + k */
    n = convt(act(3, I(16), I(7), I(7)), 8, 5, 2, KP_PAD_SAME, 0, 0);
    expect_shape(n, "[N,8,14,14]");
    ck_assert_int_eq(n->attr.padding[0], 1);
    ck_assert_int_eq(n->attr.pad_mode, KP_PAD_SAME);
    /* K 4, S 2: an even crop, PyTorch's padding 1 */
    n = convt(act(3, I(16), I(4), I(4)), 8, 4, 2, KP_PAD_SAME, 0, 0);
    expect_shape(n, "[N,8,8,8]");
    ck_assert_int_eq(n->attr.padding[0], 1);
    ck_assert_int_eq(n->attr.pad_mode, KP_PAD_EXPLICIT);
    /* K 1, S 2: nothing to crop, one row of output_padding */
    n = convt(act(3, I(16), I(4), I(4)), 8, 1, 2, KP_PAD_SAME, 0, 0);
    expect_shape(n, "[N,8,8,8]");
    ck_assert_int_eq(n->attr.output_padding[0], 1);
    expect_shape(convt(act(3, I(16), I(4), I(4)), 8, 3, 1, KP_PAD_SAME, 0, 0), "[N,8,4,4]");
    expect_shape(convt(act(3, I(16), I(4), I(4)), 8, 2, 1, KP_PAD_SAME, 0, 0), "[N,8,4,4]");
    expect_error(convt(act(3, I(16), I(4), I(4)), 8, 3, 2, KP_PAD_EXPLICIT, 0, 2),
                 "m.json: layers[1] (up): output_padding 2 must be smaller than the stride or "
                 "the dilation");
}
END_TEST

static KpNode *pool(KpOp op, KpValue *x, int64_t k, int64_t s, int64_t pad)
{
    KpNode *n = node(op, "pool1", 1, x);
    n->attr.kernel[0] = n->attr.kernel[1] = k;
    n->attr.stride[0] = n->attr.stride[1] = s;
    n->attr.padding[0] = n->attr.padding[1] = pad;
    return n;
}

START_TEST(shape_pool2d)
{
    expect_shape(pool(KP_OP_maxpool2d, act(3, I(8), I(28), I(28)), 2, 2, 0), "[N,8,14,14]");
    expect_shape(pool(KP_OP_avgpool2d, act(3, I(8), I(7), I(7)), 2, 2, 0), "[N,8,3,3]");
    expect_shape(pool(KP_OP_maxpool2d, act(3, I(8), I(7), I(7)), 3, 2, 1), "[N,8,4,4]");
    expect_error(pool(KP_OP_maxpool2d, act(3, I(8), I(7), I(7)), 3, 2, 2),
                 "m.json: layers[1] (pool1): padding 2 must be at most half the pool size 3");
    expect_error(pool(KP_OP_avgpool2d, act(3, I(8), I(2), I(2)), 3, 3, 0),
                 "m.json: layers[1] (pool1): avgpool2d window 3x3 is larger than the padded input "
                 "2x2");
    expect_error(pool(KP_OP_maxpool2d, act(1, I(8)), 2, 2, 0),
                 "m.json: layers[1] (pool1): input must be rank 3 per sample [C,H,W], got [N,8]");
}
END_TEST

static KpNode *bn(KpValue *x, int64_t c)
{
    return node(KP_OP_batchnorm, "bn1", 5, x, par("bn1.weight", 1, c), par("bn1.bias", 1, c),
                par("bn1.running_mean", 1, c), par("bn1.running_var", 1, c));
}

START_TEST(shape_batchnorm_masking)
{
    expect_shape(bn(act(1, I(64)), 64), "[N,64]");
    expect_shape(bn(act(3, I(16), I(8), I(8)), 16), "[N,16,8,8]");
    expect_error(bn(act(2, I(16), I(8)), 16),
                 "m.json: layers[1] (bn1): input must be rank 1 or rank 3 per sample, got [N,16,8]");
    expect_error(bn(act(1, I(64)), 32),
                 "m.json: layers[1] (bn1): parameter bn1.weight must be [64], got [32]");
    expect_shape(node(KP_OP_masking, "mask", 1, act(1, I(5))), "[N,5]");
    expect_error(node(KP_OP_masking, "mask", 1, act(2, I(5), I(3))),
                 "m.json: layers[1] (mask): input must be rank 1 per sample (use flatten), got "
                 "[N,5,3]");
}
END_TEST

static KpNode *reshape(KpValue *x, int rank, int64_t a, int64_t b, int64_t c)
{
    KpNode *n = node(KP_OP_reshape, "rs", 1, x);
    n->attr.reshape_rank = rank;
    n->attr.reshape_dims[0] = a;
    n->attr.reshape_dims[1] = b;
    n->attr.reshape_dims[2] = c;
    return n;
}

START_TEST(shape_reshape_flatten)
{
    KpValue *x = act(1, I(784));
    expect_shape(reshape(x, 3, 1, 28, 28), "[N,1,28,28]");
    expect_shape(reshape(x, 3, 4, -1, 7), "[N,4,28,7]");
    expect_shape(reshape(x, 1, -1, 0, 0), "[N,784]");
    expect_error(reshape(x, 3, 7, 7, 7),
                 "m.json: layers[1] (rs): reshape target [7,7,7] has 343 elements per sample, the "
                 "input 784, got [N,784]");
    expect_error(reshape(x, 2, -1, -1, 0),
                 "m.json: layers[1] (rs): reshape target [-1,-1] may contain one -1 only");
    expect_error(reshape(x, 2, 5, -1, 0),
                 "m.json: layers[1] (rs): cannot reshape 784 elements per sample into [5,-1], got "
                 "[N,784]");
    expect_error(reshape(x, 2, 0, 784, 0),
                 "m.json: layers[1] (rs): reshape target [0,784] must have positive dimensions");
    expect_shape(node(KP_OP_flatten, "f", 1, act(3, I(1), I(28), I(28))), "[N,784]");
    expect_shape(node(KP_OP_flatten, "f", 1, act(1, I(10))), "[N,10]");
}
END_TEST

START_TEST(shape_elementwise)
{
    KpValue *x = act(3, I(2), I(3), I(4));
    for (KpOp op = KP_OP_relu; op <= KP_OP_softmax; op++)
        expect_shape(node(op, "e", 1, x), "[N,2,3,4]");
    expect_shape(node(KP_OP_dropout, "drop", 1, x), "[N,2,3,4]");
}
END_TEST

START_TEST(shape_add_concat)
{
    KpValue *a = act(3, I(16), I(8), I(8)), *b = act(3, I(8), I(8), I(8));
    expect_shape(node(KP_OP_add, "add1", 3, a, a, a), "[N,16,8,8]");
    expect_error(node(KP_OP_add, "add1", 2, a, b),
                 "m.json: layers[1] (add1): add inputs must all have the shape of input 0 "
                 "[N,16,8,8], input 1, got [N,8,8,8]");
    expect_error(node(KP_OP_add, "add1", 1, a),
                 "m.json: layers[1] (add1): add needs at least 2 inputs, got 1");
    expect_shape(node(KP_OP_concat, "cat", 2, a, b), "[N,24,8,8]");
    KpNode *c = node(KP_OP_concat, "cat", 2, a, act(3, I(16), I(8), I(3)));
    c->attr.axis = 2;
    expect_shape(c, "[N,16,8,11]");
    expect_error(node(KP_OP_concat, "cat", 2, a, act(3, I(8), I(4), I(4))),
                 "m.json: layers[1] (cat): concat inputs must match input 0 [N,16,8,8] except "
                 "along axis 0, input 1, got [N,8,4,4]");
    c = node(KP_OP_concat, "cat", 2, a, b);
    c->attr.axis = 3;
    expect_error(c, "m.json: layers[1] (cat): concat axis 3 is out of range for rank-3 samples, "
                    "got [N,16,8,8]");
}
END_TEST

static char *print_to_string(void (*pr)(FILE *, const KpGraph *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pr(f, g);
    fclose(f);
    return buf;
}

/* The cost column: 2 flops per multiply-add, bytes of every operand once. */
START_TEST(cost_rules)
{
    KpValue *x = act(1, I(784));
    KpNode *dn = node(KP_OP_dense, "dense1", 3, x, par("w", 2, I(128), I(784)), par("b", 1, I(128)));
    dn->attr.units = 128;
    expect_shape(dn, "[N,128]");
    KpCost c = kp_node_cost(dn, 64);
    ck_assert(c.flops == 2.0 * 64 * 784 * 128);
    ck_assert(c.bytes == 4.0 * (64 * 784 + 128 * 784 + 128 + 64 * 128));
    dn->nepi = 1;   /* a fused relu: one more flop per output element */
    ck_assert(kp_node_cost(dn, 64).flops == 2.0 * 64 * 784 * 128 + 64 * 128);

    KpNode *cv = conv(act(3, I(3), I(32), I(32)), 16, 3, 1, KP_PAD_EXPLICIT, 1, 1);
    expect_shape(cv, "[N,16,32,32]");
    ck_assert(kp_node_cost(cv, 2).flops == 2.0 * 2 * 16 * 32 * 32 * 3 * 3 * 3);

    KpNode *r = node(KP_OP_relu, "relu", 1, x);
    expect_shape(r, "[N,784]");
    c = kp_node_cost(r, 10);
    ck_assert(c.flops == 7840 && c.bytes == 2 * 4 * 7840.0);
}
END_TEST

START_TEST(printers)
{
    g->max_batch = 8;
    g->seed = 3;
    KpValue *x = g->input = act(1, I(4));
    KpValue *w = kp_param_new(g, "d.weight", 2, (int64_t[]){2, 4}, KP_INIT_UNIFORM_FAN_IN, 4, 2);
    KpNode *n = node(KP_OP_dense, "d", 2, x, w);
    n->attr.units = 2;
    ck_assert_int_eq(kp_node_infer_shape(g, n, &d), 0);
    KpNode *l = node(KP_OP_leaky_relu, "d", 1, n->out);
    l->attr.alpha = 0.2f;
    ck_assert_int_eq(kp_node_infer_shape(g, l, &d), 0);
    g->output = l->out;
    char *ir = print_to_string(kp_print_ir);
    ck_assert_str_eq(ir, "model t batch=8 seed=3 loss=none optimizer=none\n"
                         "input %0 : f32[N,4]\n"
                         "param %1 d.weight : f32[2,4] init=uniform_fan_in(4)\n"
                         "%2 = dense %0, %1 {units=2} : f32[N,2]   # d (layers[1])\n"
                         "%3 = leaky_relu %2 {alpha=0.2} : f32[N,2]   # d (layers[1])\n"
                         "output %3\n");
    free(ir);
    char *dot = print_to_string(kp_print_dot);
    ck_assert_ptr_nonnull(strstr(dot, "digraph \"t\" {\n"));
    ck_assert_ptr_nonnull(strstr(dot, "  v1 [shape=box, label=\"d.weight\\n[2,4]\"];\n"));
    ck_assert_ptr_nonnull(strstr(dot, "  v0 -> n0 [label=\"[N,4]\"];\n"));
    ck_assert_ptr_nonnull(strstr(dot, "  n0 -> n1 [label=\"[N,2]\"];\n"));
    ck_assert_ptr_nonnull(strstr(dot, "  n1 -> output [label=\"[N,2]\"];\n}\n"));
    free(dot);
}
END_TEST

static Suite *ir_suite(void)
{
    Suite *s = suite_create("ir");
    TCase *tc = tcase_create("graph");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, op_table);
    tcase_add_test(tc, graph_build);
    tcase_add_test(tc, cost_rules);
    tcase_add_test(tc, printers);
    suite_add_tcase(s, tc);
    tc = tcase_create("shape_rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, shape_dense);
    tcase_add_test(tc, shape_conv2d);
    tcase_add_test(tc, shape_conv2d_transpose);
    tcase_add_test(tc, shape_pool2d);
    tcase_add_test(tc, shape_batchnorm_masking);
    tcase_add_test(tc, shape_reshape_flatten);
    tcase_add_test(tc, shape_elementwise);
    tcase_add_test(tc, shape_add_concat);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(ir_suite(), CK_FORK_GETENV);
}
