/*
 * print.c — the graph as text (--emit=ir) and as Graphviz (--emit=dot).
 *
 * The text format, one item per line, values named %<id> (their ids,
 * which the verifier's messages use too):
 *
 *   model mlp batch=64 seed=1 loss=cross_entropy optimizer=adam
 *   input %0 : f32[N,1,28,28] @x
 *   param %2 dense1.weight : f32[128,784] init=uniform_fan_in(784) @p+0
 *   param %3 dense1.bias : f32[128] init=uniform_fan_in(784) @p+100352
 *   %1 = flatten %0 : f32[N,784] @x   # flatten0 (layers[0])
 *   %4 = dense %1, %2, %3 {units=128} : f32[N,128] @ws+0   # dense1 (layers[1])
 *   %5 = relu %4 : f32[N,128] @y   # dense1 (layers[1])
 *   output %5
 *   memory params=100480 floats, workspace=32768 bytes
 *
 * The input and the parameters come first, then the nodes in their
 * (topological) order.  "@..." is the storage, shown once the memory plan
 * has set it: @x the caller's input, @y the caller's output, @p+<floats>
 * the parameter slab, @ws+<bytes> the workspace.  Only the attributes an
 * op reads are printed, floats with %g.  Same graph, same bytes.
 *
 * A train graph (after autodiff) prints more, and an inference graph
 * prints exactly as before:
 *
 *   target %25 : i32[N] @target           the caller's target
 *   dy %25 : f32[N,10] @ws+0              without a loss: karp_backward's dy
 *   %27 = cross_entropy_grad %8, %25 : f32[N,10] @ws+... [loss]   # cross_entropy (loss)
 *   %28 = dense_grad_w %27, %5 : f32[10,128] @grad+100480 [backward]   # head (layers[2])
 *   %33 = reshape %32 {shape=[1,28,28]} : f32[N,1,28,28] @dx [input_grad]   # flatten0 (layers[0])
 *   %34 = adam_update {lr=0.001, ...} : f32[101776] @p+0 [update]   # optimizer (optimizer)
 *   output %8 / loss %26 / d_output %27 / d_input %33
 *   memory params=... floats, trainable=... floats, opt_slots=2, workspace=... bytes
 *
 * Forward nodes carry no phase tag; @grad+<floats> is the gradient slab
 * (accumulated), @target and @dx the caller's buffers.  A node of a group
 * (horizontal fusion, passes/group.c) ends in " [group K]".  A node with
 * more than one output (fusion.c's merges) lists them all, on both sides:
 *
 *   %7, %8 = batchnorm_fwd %5, %3, %4, %1, %2 {...} : f32[N,8] @ws+0, f32[2,8] @ws+512
 */
#include "ir.h"

#include <inttypes.h>

static const char *const init_names[] = {
    [KP_INIT_ZEROS] = "zeros",
    [KP_INIT_ONES] = "ones",
    [KP_INIT_UNIFORM_FAN_IN] = "uniform_fan_in",
    [KP_INIT_HE] = "he",
    [KP_INIT_XAVIER] = "xavier",
};

static void pr_pair(FILE *f, const char *key, const int64_t v[2])
{
    fprintf(f, "%s=[%" PRId64 ",%" PRId64 "]", key, v[0], v[1]);
}

/* pad=[1,1]; pad=same[0,0] for TensorFlow's uneven "same" padding, where
 * the bottom/right gets one more than the top/left shown. */
static void pr_padding(FILE *f, const KpAttrs *a)
{
    fprintf(f, "pad=%s[%" PRId64 ",%" PRId64 "]", a->pad_mode == KP_PAD_SAME ? "same" : "",
            a->padding[0], a->padding[1]);
}

static void attrs_dense(FILE *f, const KpAttrs *a)
{
    fprintf(f, "units=%" PRId64, a->units);
}

static void attrs_conv(FILE *f, const KpAttrs *a)
{
    fprintf(f, "filters=%" PRId64 ", ", a->filters);
    pr_pair(f, "kernel", a->kernel);
    fputs(", ", f);
    pr_pair(f, "stride", a->stride);
    fputs(", ", f);
    pr_padding(f, a);
    fputs(", ", f);
    pr_pair(f, "dilation", a->dilation);
    if (a->wstride > 0)
        fprintf(f, ", wstride=%" PRId64, a->wstride);
}

static void attrs_pad_rows(FILE *f, const KpAttrs *a)
{
    fprintf(f, "wstride=%" PRId64, a->wstride);
}

static void attrs_conv_transpose(FILE *f, const KpAttrs *a)
{
    attrs_conv(f, a);
    fputs(", ", f);
    pr_pair(f, "output_padding", a->output_padding);
}

static void attrs_pool(FILE *f, const KpAttrs *a)
{
    pr_pair(f, "size", a->kernel);
    fputs(", ", f);
    pr_pair(f, "stride", a->stride);
    fputs(", ", f);
    pr_padding(f, a);
}

static void attrs_batchnorm(FILE *f, const KpAttrs *a)
{
    fprintf(f, "eps=%g, momentum=%g", (double)a->eps, (double)a->momentum);
}

static void attrs_bn_fold(FILE *f, const KpAttrs *a)
{
    fprintf(f, "eps=%g", (double)a->eps);
}

static void attrs_packed(FILE *f, const KpAttrs *a)
{
    fprintf(f, "units=%" PRId64 ", panel=%" PRId64 "%s", a->units, a->panel,
            a->has_bias ? ", bias" : "");
}

static void attrs_dropout(FILE *f, const KpAttrs *a)
{
    fprintf(f, "rate=%g", (double)a->rate);
}

static void attrs_masking(FILE *f, const KpAttrs *a)
{
    fprintf(f, "value=%g", (double)a->value);
}

static void attrs_reshape(FILE *f, const KpAttrs *a)
{
    fputs("shape=[", f);
    for (int i = 0; i < a->reshape_rank; i++)
        fprintf(f, "%s%" PRId64, i ? "," : "", a->reshape_dims[i]);
    fputs("]", f);
}

static void attrs_leaky_relu(FILE *f, const KpAttrs *a)
{
    fprintf(f, "alpha=%g", (double)a->alpha);
}

static void attrs_concat(FILE *f, const KpAttrs *a)
{
    fprintf(f, "axis=%d", a->axis);
}

static void attrs_slice(FILE *f, const KpAttrs *a)
{
    fprintf(f, "axis=%d, offset=%" PRId64 ", size=%" PRId64, a->axis, a->slice_offset,
            a->slice_size);
}

static void attrs_sgd(FILE *f, const KpAttrs *a)
{
    fprintf(f, "lr=%g, weight_decay=%g", (double)a->optim.lr, (double)a->optim.weight_decay);
}

static void attrs_momentum(FILE *f, const KpAttrs *a)
{
    fprintf(f, "lr=%g, beta=%g", (double)a->optim.lr, (double)a->optim.beta);
}

static void attrs_adam(FILE *f, const KpAttrs *a)
{
    fprintf(f, "lr=%g, beta1=%g, beta2=%g, eps=%g", (double)a->optim.lr, (double)a->optim.beta1,
            (double)a->optim.beta2, (double)a->optim.eps);
}

/* The attributes each op reads; ops without any are left out. */
static void (*const attr_printers[KP_OP_COUNT])(FILE *, const KpAttrs *) = {
    [KP_OP_dense] = attrs_dense,
    [KP_OP_conv2d] = attrs_conv,
    [KP_OP_conv2d_transpose] = attrs_conv_transpose,
    [KP_OP_maxpool2d] = attrs_pool,
    [KP_OP_avgpool2d] = attrs_pool,
    [KP_OP_batchnorm] = attrs_batchnorm,
    [KP_OP_bn_fold_weight] = attrs_bn_fold,
    [KP_OP_bn_fold_bias] = attrs_bn_fold,
    [KP_OP_pack_panels] = attrs_packed,
    [KP_OP_dense_packed] = attrs_packed,
    [KP_OP_pad_rows] = attrs_pad_rows,
    [KP_OP_dropout] = attrs_dropout,
    [KP_OP_masking] = attrs_masking,
    [KP_OP_reshape] = attrs_reshape,
    [KP_OP_leaky_relu] = attrs_leaky_relu,
    [KP_OP_concat] = attrs_concat,
    [KP_OP_leaky_relu_grad] = attrs_leaky_relu,
    [KP_OP_conv2d_grad_x] = attrs_conv,
    [KP_OP_conv2d_grad_w] = attrs_conv,
    [KP_OP_conv2d_transpose_grad_x] = attrs_conv_transpose,
    [KP_OP_conv2d_transpose_grad_w] = attrs_conv_transpose,
    [KP_OP_maxpool2d_grad] = attrs_pool,
    [KP_OP_avgpool2d_grad] = attrs_pool,
    [KP_OP_batchnorm_stats] = attrs_batchnorm,
    [KP_OP_batchnorm_fwd] = attrs_batchnorm,
    [KP_OP_dropout_mask] = attrs_dropout,
    [KP_OP_masking_grad] = attrs_masking,
    [KP_OP_slice] = attrs_slice,
    [KP_OP_sgd_update] = attrs_sgd,
    [KP_OP_momentum_update] = attrs_momentum,
    [KP_OP_adam_update] = attrs_adam,
};

static const char *const phase_tags[] = {
    [KP_PHASE_FORWARD] = "",
    [KP_PHASE_LOSS] = " [loss]",
    [KP_PHASE_BACKWARD] = " [backward]",
    [KP_PHASE_INPUT_GRAD] = " [input_grad]",
    [KP_PHASE_UPDATE] = " [update]",
    [KP_PHASE_PREPARE] = " [prepare]",
};

static void pr_type(FILE *f, const KpValue *v)
{
    char shape[128];
    fprintf(f, "%s%s", v->dtype == KP_I32 ? "i32" : "f32", kp_shape_str(v, shape, sizeof shape));
}

static void pr_storage(FILE *f, const KpValue *v)
{
    switch (v->storage) {
    case KP_STORE_NONE:
        break;
    case KP_STORE_INPUT:
        fputs(" @x", f);
        break;
    case KP_STORE_OUTPUT:
        fputs(" @y", f);
        break;
    case KP_STORE_PARAM:
        fprintf(f, " @p+%" PRId64, v->offset);
        break;
    case KP_STORE_WORKSPACE:
        fprintf(f, " @ws+%" PRId64, v->offset);
        break;
    case KP_STORE_TARGET:
        fputs(" @target", f);
        break;
    case KP_STORE_GRAD:
        fprintf(f, " @grad+%" PRId64, v->offset);
        break;
    case KP_STORE_DX:
        fputs(" @dx", f);
        break;
    case KP_STORE_PREP:
        fprintf(f, " @prep+%" PRId64, v->offset);
        break;
    }
}

/* Fused epilogues: " -> relu -> add(%7)". */
static void pr_epilogues(FILE *f, const KpNode *n)
{
    for (int k = 0; k < n->nepi; k++) {
        const KpEpilogue *ep = &n->epi[k];
        fprintf(f, " -> %s", kp_op_name(ep->op));
        if (ep->op == KP_OP_leaky_relu || ep->op == KP_OP_leaky_relu_grad)
            fprintf(f, "{alpha=%g}", ep->alpha);
        for (int a = 0; a < ep->nargs; a++)
            fprintf(f, "%s%%%d", a ? "," : "(", n->in[ep->arg[a]]->id);
        if (ep->nargs)
            fputc(')', f);
    }
}

static void pr_init(FILE *f, const KpValue *v)
{
    fprintf(f, " init=%s", init_names[v->init]);
    if (v->init == KP_INIT_UNIFORM_FAN_IN || v->init == KP_INIT_HE)
        fprintf(f, "(%" PRId64 ")", v->fan_in);
    else if (v->init == KP_INIT_XAVIER)
        fprintf(f, "(%" PRId64 ",%" PRId64 ")", v->fan_in, v->fan_out);
}

static void pr_node(FILE *f, const KpNode *n)
{
    for (int o = 0; o < kp_node_nout(n); o++)
        fprintf(f, "%s%%%d", o ? ", " : "", kp_node_output(n, o)->id);
    fprintf(f, " = %s", kp_op_name(n->op));
    for (int i = 0; i < n->nin; i++)
        fprintf(f, "%s %%%d", i ? "," : "", n->in[i]->id);
    if (attr_printers[n->op]) {
        fputs(" {", f);
        attr_printers[n->op](f, &n->attr);
        fputs("}", f);
    }
    pr_epilogues(f, n);
    if (n->loss.on)     /* a fused loss: " => cross_entropy(%15)" */
        fprintf(f, " => %s(%%%d)", kp_op_name(n->loss.op), n->in[n->loss.target]->id);
    for (int o = 0; o < kp_node_nout(n); o++) {
        fputs(o ? ", " : " : ", f);
        pr_type(f, kp_node_output(n, o));
        pr_storage(f, kp_node_output(n, o));
    }
    fputs(phase_tags[n->phase], f);
    if (n->group > 0)
        fprintf(f, " [group %d]", n->group);
    fprintf(f, "   # %s (%s)\n", n->name ? n->name : "?", n->where ? n->where : "?");
}

/* What a value without a producer is, other than a parameter. */
static const char *source_kind(const KpGraph *g, const KpValue *v)
{
    if (v == g->target)
        return "target";
    if (v == g->d_output)
        return "dy";
    return "input";
}

static void pr_named(FILE *f, const char *what, const KpValue *v)
{
    if (v)
        fprintf(f, "%s %%%d\n", what, v->id);
}

void kp_print_ir(FILE *f, const KpGraph *g)
{
    fprintf(f, "model %s batch=%" PRId64 " seed=%" PRIu64 " loss=%s optimizer=%s\n",
            g->name ? g->name : "?", g->max_batch, g->seed, g->loss ? g->loss : "none",
            g->optimizer ? g->optimizer : "none");
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        if (v->producer)
            continue;
        if (v->role == KP_ROLE_PARAM)
            fprintf(f, "param %%%d %s : ", v->id, v->name ? v->name : "?");
        else
            fprintf(f, "%s %%%d : ", source_kind(g, v), v->id);
        pr_type(f, v);
        if (v->role == KP_ROLE_PARAM)
            pr_init(f, v);
        pr_storage(f, v);
        fputc('\n', f);
    }
    for (int k = 0; k < g->nnodes; k++)
        pr_node(f, g->nodes[k]);
    pr_named(f, "output", g->output);
    pr_named(f, "loss", g->loss_value);
    pr_named(f, "d_output", g->d_output);
    pr_named(f, "d_input", g->d_input);
    if (g->training && (g->param_floats || g->workspace_bytes))
        fprintf(f,
                "memory params=%" PRId64 " floats, trainable=%" PRId64
                " floats, opt_slots=%d, workspace=%" PRId64 " bytes\n",
                g->param_floats, g->trainable_floats, g->opt_slots, g->workspace_bytes);
    else if (g->prep_floats)
        fprintf(f, "memory params=%" PRId64 " floats, prep=%" PRId64 " floats, workspace=%" PRId64
                " bytes\n", g->param_floats, g->prep_floats, g->workspace_bytes);
    else if (g->param_floats || g->workspace_bytes)
        fprintf(f, "memory params=%" PRId64 " floats, workspace=%" PRId64 " bytes\n",
                g->param_floats, g->workspace_bytes);
}

/* A value's source in the dot graph: its producer, or the value itself. */
static void dot_source(FILE *f, const KpValue *v)
{
    if (v->producer)
        fprintf(f, "n%d", v->producer->id);
    else
        fprintf(f, "v%d", v->id);
}

void kp_print_dot(FILE *f, const KpGraph *g)
{
    char shape[128];
    fprintf(f, "digraph \"%s\" {\n", g->name ? g->name : "model");
    fputs("  node [fontname=\"monospace\"];\n  edge [fontname=\"monospace\", fontsize=10];\n", f);
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        if (v->producer)
            continue;
        if (v->role == KP_ROLE_PARAM)
            fprintf(f, "  v%d [shape=box, label=\"%s\\n%s\"];\n", v->id, v->name ? v->name : "?",
                    kp_shape_str(v, shape, sizeof shape));
        else
            fprintf(f, "  v%d [shape=invhouse, label=\"%s\\n%s\"];\n", v->id,
                    source_kind(g, v), kp_shape_str(v, shape, sizeof shape));
    }
    for (int k = 0; k < g->nnodes; k++) {
        const KpNode *n = g->nodes[k];
        fprintf(f, "  n%d [shape=ellipse, label=\"%s\\n%s\"];\n", n->id, kp_op_name(n->op),
                n->name ? n->name : "?");
        for (int i = 0; i < n->nin; i++) {
            fputs("  ", f);
            dot_source(f, n->in[i]);
            fprintf(f, " -> n%d [label=\"%s\"];\n", n->id,
                    kp_shape_str(n->in[i], shape, sizeof shape));
        }
    }
    if (g->output) {
        fputs("  output [shape=house, label=\"output\"];\n  ", f);
        dot_source(f, g->output);
        fprintf(f, " -> output [label=\"%s\"];\n", kp_shape_str(g->output, shape, sizeof shape));
    }
    fputs("}\n", f);
}
