/*
 * cost_rules.c — the cost rules named in ops.def's cost column (cost.h):
 * a node's floating-point operations and compulsory bytes at n samples.
 *
 * gemm and convolution count 2 flops per multiply-add of the full kernel
 * window (a padded border counts as if it were data).  The other ops
 * count the arithmetic of their formula per element, an exp, log, sqrt or
 * division counting one — they are judged by their bytes anyway:
 *
 *   rule         flops                               ops
 *   cost_move    0                                   views, concat, slice, packing
 *   cost_elemK   K per element of the first input    maps, their gradients, losses,
 *                                                    batchnorm, bias gradients
 * Bytes count every output, the extra outputs of a merged node (aux) too.
 *   cost_add     (inputs - 1) per element            add
 *
 * Bytes: every input once (4 bytes an element; a parameter whole, a batched
 * value at n samples), the output once, twice when it accumulates into the
 * gradient slab.  Inputs read only for their shape are left out.
 */
#include "cost.h"
#include "epilogue.h"

#define O(op, kind, nin, shape, interp, emit, grad, cost) static KpCost cost(const KpNode *nd, int64_t n);
#include "ops.def"
#undef O

typedef KpCost (*CostFn)(const KpNode *nd, int64_t n);

static const CostFn cost_rules[KP_OP_COUNT] = {
#define O(op, kind, nin, shape, interp, emit, grad, cost) cost,
#include "ops.def"
#undef O
};

static double numel(const KpValue *v, int64_t n)
{
    return (double)kp_value_numel(v, n);
}

/* Inputs in[0..nin) but in[skip] (-1: none), and the outputs. */
static double io_bytes_but(const KpNode *nd, int64_t n, int skip)
{
    double b = 0;
    for (int i = 0; i < nd->nin; i++)
        if (i != skip)
            b += 4 * numel(nd->in[i], n);
    for (int o = 0; o < kp_node_nout(nd); o++) {
        const KpValue *v = kp_node_output(nd, o);
        b += 4 * numel(v, n) * (v->storage == KP_STORE_GRAD ? 2 : 1);
    }
    return b;
}

static KpCost io_cost(const KpNode *nd, int64_t n, double flops)
{
    return (KpCost){.flops = flops, .bytes = io_bytes_but(nd, n, -1)};
}

/* 2 * elements of a * channels of b * the kernel window: the multiply-adds
 * of a convolution counted from its larger side (a) and the channels it
 * sums over (b's axis 1). */
static double window_flops(const KpNode *nd, const KpValue *a, const KpValue *b, int64_t n)
{
    return 2 * numel(a, n) * (double)b->dims[1] * (double)nd->attr.kernel[0] *
           (double)nd->attr.kernel[1];
}

/* dense, dense_packed: x [N,in] -> y [N,units] */
static KpCost cost_dense(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 2 * numel(nd->out, n) * (double)nd->in[0]->dims[1]);
}

/* dense_grad_x: dy [N,out] -> dx [N,in]; dense_grad_w: dy [N,out] -> dw [out,in] */
static KpCost cost_dense_grad(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 2 * numel(nd->in[0], n) * (double)nd->out->dims[1]);
}

/* x [N,C,H,W] -> y [N,F,OH,OW]: per output element C*kh*kw */
static KpCost cost_conv2d(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, window_flops(nd, nd->out, nd->in[0], n));
}

/* x [N,C,H,W] -> y [N,F,OH,OW]: per input element F*kh*kw */
static KpCost cost_conv2d_transpose(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, window_flops(nd, nd->in[0], nd->out, n));
}

/* dy [N,F,OH,OW], weight, x (shape) -> dx [N,C,H,W]: per dy element C*kh*kw */
static KpCost cost_conv2d_grad_x(const KpNode *nd, int64_t n)
{
    return (KpCost){window_flops(nd, nd->in[0], nd->out, n), io_bytes_but(nd, n, 2)};
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dw: per dy element C*kh*kw */
static KpCost cost_conv2d_grad_w(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, window_flops(nd, nd->in[0], nd->in[1], n));
}

/* dy [N,F,OH,OW], weight, x (shape) -> dx [N,C,H,W]: per dx element F*kh*kw */
static KpCost cost_conv2d_transpose_grad_x(const KpNode *nd, int64_t n)
{
    return (KpCost){window_flops(nd, nd->out, nd->in[0], n), io_bytes_but(nd, n, 2)};
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dw: per x element F*kh*kw */
static KpCost cost_conv2d_transpose_grad_w(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, window_flops(nd, nd->in[1], nd->in[0], n));
}

/* one compare or add per window element of every output */
static KpCost cost_pool(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, numel(nd->out, n) * (double)(nd->attr.kernel[0] * nd->attr.kernel[1]));
}

/* dy, x -> dx: one per window element of every dy element */
static KpCost cost_maxpool2d_grad(const KpNode *nd, int64_t n)
{
    /* and one add per element of dx for a folded bias gradient */
    double sum = kp_node_folded_bias(nd) ? numel(nd->out, n) : 0;
    double window = (double)(nd->attr.kernel[0] * nd->attr.kernel[1]);
    return io_cost(nd, n, numel(nd->in[0], n) * window + sum);
}

/* dy, x (shape) -> dx */
static KpCost cost_avgpool2d_grad(const KpNode *nd, int64_t n)
{
    KpCost c = cost_maxpool2d_grad(nd, n);
    c.bytes = io_bytes_but(nd, n, 1);
    return c;
}

static KpCost cost_move(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 0);
}

static KpCost cost_elem1(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, numel(nd->in[0], n));
}

static KpCost cost_elem3(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 3 * numel(nd->in[0], n));
}

static KpCost cost_elem4(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 4 * numel(nd->in[0], n));
}

static KpCost cost_elem5(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 5 * numel(nd->in[0], n));
}

static KpCost cost_elem8(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 8 * numel(nd->in[0], n));
}

static KpCost cost_elem12(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, 12 * numel(nd->in[0], n));
}

static KpCost cost_add(const KpNode *nd, int64_t n)
{
    return io_cost(nd, n, (double)(nd->nin - 1) * numel(nd->out, n));
}

/* x (shape) -> the mask: integer hashing, no float arithmetic; writes only */
static KpCost cost_dropout_mask(const KpNode *nd, int64_t n)
{
    return (KpCost){0, io_bytes_but(nd, n, 0)};
}

/* The updates: over the trainable floats (the output [trainable_floats]);
 * floats read and written per parameter float: theta, g (read, then
 * zeroed) and the state. */
static KpCost update_cost(const KpNode *nd, double flops, double floats)
{
    double count = numel(nd->out, 1);
    return (KpCost){flops * count, 4 * floats * count};
}

/* theta -= lr (g + wd theta) */
static KpCost cost_sgd_update(const KpNode *nd, int64_t n)
{
    return update_cost(nd, nd->attr.optim.weight_decay != 0 ? 4 : 2, 4);
}

/* v = beta v + (1-beta) g; theta -= lr v */
static KpCost cost_momentum_update(const KpNode *nd, int64_t n)
{
    return update_cost(nd, 6, 6);
}

/* m, v moving averages (7), theta -= s m / (sqrt(v) / c + eps) (5) */
static KpCost cost_adam_update(const KpNode *nd, int64_t n)
{
    return update_cost(nd, 12, 8);
}

KpCost kp_node_cost(const KpNode *nd, int64_t n)
{
    KpCost c = cost_rules[nd->op](nd, n);
    double extra = nd->nepi + (nd->out->storage == KP_STORE_GRAD ? 1 : 0);
    c.flops += extra * numel(nd->out, n);
    if (nd->loss.on) {
        /* the arithmetic of the two loss nodes it computes (their bytes are
         * the node's target and aux outputs, counted above) */
        KpNode part = {.op = nd->loss.op, .nin = 2, .in = {nd->out, nd->in[nd->loss.target]},
                       .out = nd->aux[0]};
        c.flops += cost_rules[part.op](&part, n).flops;
        part.op = nd->loss.grad_op;
        part.out = nd->aux[1];
        c.flops += cost_rules[part.op](&part, n).flops;
    }
    return c;
}
