/*
 * lower.c — a model spec becomes the inference graph.
 *
 * Each layer becomes one node with the layer's attributes, its parameters
 * created with PyTorch's names, shapes and initializers; a fused
 * "activation" becomes a second node right after it (same name and place,
 * so errors still point at the layer).  Shapes are inferred node by node
 * as the graph grows, because a layer's parameters depend on its input
 * (dense needs `in` for its weight [units,in]); a shape error therefore
 * comes out against the layer that caused it.
 *
 * Chain form: each layer reads the previous layer's output.  Graph form:
 * nodes may come in any order in the file; a node is lowered once all its
 * inputs are, which is a topological sort (and finds cycles).
 *
 * Initializers: weights and biases default to PyTorch's U(+-1/sqrt(fan_in))
 * with the weight's fan_in; a layer's "init" (he, xavier, zeros) sets the
 * weight's initializer and zeroes the bias, as Keras does.  Batchnorm's
 * running statistics are frozen parameters: the optimizer leaves them.
 *
 * Training mode (g->training set by the caller; autodiff then builds the
 * train graph on it) lowers two layers differently, with the same
 * parameters in the same order, so both graphs share one slab layout:
 *
 *   batchnorm  stats = batchnorm_stats(x, running_mean, running_var)
 *                      (batch mean and 1/std; updates the running ones)
 *              y = batchnorm_train(x, stats, weight, bias)
 *   dropout    y = mul(x, dropout_mask(x))   (rate 0: y = x, no node)
 *
 * In inference batchnorm is one node on the running statistics and
 * dropout an identity (a view).
 */
#include "spec.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "../passes/passes.h"

typedef struct Lower {
    const KpModelSpec *s;
    KpGraph *g;
    KpDiag *d;
} Lower;

/* Create a layer's parameters for input x into out; returns how many, or
 * -1 when out of memory.  Shapes that x does not allow (a wrong rank) are
 * given zero sizes: the shape rule then reports the input. */
typedef int (*ParamFn)(Lower *L, const KpLayerSpec *l, const KpValue *x, KpValue **out);

static KpValue *param(Lower *L, const KpLayerSpec *l, const char *suffix, int rank,
                      const int64_t *dims, KpInit init, int64_t fan_in, int64_t fan_out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", l->name, suffix);
    return kp_param_new(L->g, name, rank, dims, init, fan_in, fan_out);
}

/* weight and (if has_bias) bias with the initializers described above */
static int weight_bias(Lower *L, const KpLayerSpec *l, int rank, const int64_t *wdims,
                       int64_t bias_len, int64_t fan_in, int64_t fan_out, KpValue **out)
{
    KpInit winit = l->has_init ? l->init : KP_INIT_UNIFORM_FAN_IN;
    KpInit binit = l->has_init ? KP_INIT_ZEROS : KP_INIT_UNIFORM_FAN_IN;
    out[0] = param(L, l, "weight", rank, wdims, winit, fan_in, fan_out);
    if (!out[0])
        return -1;
    if (!l->attr.has_bias)
        return 1;
    out[1] = param(L, l, "bias", 1, (int64_t[]){bias_len}, binit, fan_in, fan_out);
    return out[1] ? 2 : -1;
}

/* weight [units,in], bias [units] */
static int params_dense(Lower *L, const KpLayerSpec *l, const KpValue *x, KpValue **out)
{
    int64_t in = x->rank == 2 ? x->dims[1] : 0, units = l->attr.units;
    return weight_bias(L, l, 2, (int64_t[]){units, in}, units, in, units, out);
}

/* weight [F,C,kh,kw], bias [F] */
static int params_conv2d(Lower *L, const KpLayerSpec *l, const KpValue *x, KpValue **out)
{
    int64_t c = x->rank == 4 ? x->dims[1] : 0, f = l->attr.filters;
    int64_t kh = l->attr.kernel[0], kw = l->attr.kernel[1];
    return weight_bias(L, l, 4, (int64_t[]){f, c, kh, kw}, f, c * kh * kw, f * kh * kw, out);
}

/* weight [C,F,kh,kw], bias [F]; PyTorch's fan_in is weight.size(1)*kh*kw */
static int params_conv2d_transpose(Lower *L, const KpLayerSpec *l, const KpValue *x,
                                   KpValue **out)
{
    int64_t c = x->rank == 4 ? x->dims[1] : 0, f = l->attr.filters;
    int64_t kh = l->attr.kernel[0], kw = l->attr.kernel[1];
    return weight_bias(L, l, 4, (int64_t[]){c, f, kh, kw}, f, f * kh * kw, c * kh * kw, out);
}

/* weight, bias, running_mean, running_var, each [C] */
static int params_batchnorm(Lower *L, const KpLayerSpec *l, const KpValue *x, KpValue **out)
{
    static const struct {
        const char *suffix;
        KpInit init;
    } bn[4] = {{"weight", KP_INIT_ONES},
               {"bias", KP_INIT_ZEROS},
               {"running_mean", KP_INIT_ZEROS},
               {"running_var", KP_INIT_ONES}};
    int64_t c = x->rank == 2 || x->rank == 4 ? x->dims[1] : 0;
    for (int i = 0; i < 4; i++) {
        out[i] = param(L, l, bn[i].suffix, 1, (int64_t[]){c}, bn[i].init, 0, 0);
        if (!out[i])
            return -1;
        out[i]->frozen = i >= 2;
    }
    return 4;
}

/* A layer's training form: nodes reading args[0..nargs-1] (its inputs,
 * then its parameters), its attributes from l; *out is its output.  0, or
 * -1 with a diagnostic. */
typedef int (*TrainFn)(Lower *L, const KpLayerSpec *l, KpValue *const *args, KpValue **out);

static int oom(Lower *L)
{
    return kp_error(L->d, "%s: out of memory", L->s->file ? L->s->file : "<model>");
}

/* A node op(in...) of layer l, shape inferred; its output or NULL. */
static KpValue *layer_node(Lower *L, const KpLayerSpec *l, KpOp op, int nin, KpValue *const *in)
{
    KpNode *n = kp_node_new(L->g, op, l->name, l->where, nin, in);
    if (!n) {
        oom(L);
        return NULL;
    }
    n->attr = l->attr;
    return kp_node_infer_shape(L->g, n, L->d) ? NULL : n->out;
}

/* args: x, weight, bias, running_mean, running_var */
static int train_batchnorm(Lower *L, const KpLayerSpec *l, KpValue *const *args, KpValue **out)
{
    KpValue *stats = layer_node(L, l, KP_OP_batchnorm_stats, 3,
                                (KpValue *[]){args[0], args[3], args[4]});
    if (!stats)
        return -1;
    *out = layer_node(L, l, KP_OP_batchnorm_train, 4,
                      (KpValue *[]){args[0], stats, args[1], args[2]});
    return *out ? 0 : -1;
}

/* args: x */
static int train_dropout(Lower *L, const KpLayerSpec *l, KpValue *const *args, KpValue **out)
{
    if (l->attr.rate == 0) {
        *out = args[0];
        return 0;
    }
    KpValue *mask = layer_node(L, l, KP_OP_dropout_mask, 1, args);
    if (!mask)
        return -1;
    *out = layer_node(L, l, KP_OP_mul, 2, (KpValue *[]){args[0], mask});
    return *out ? 0 : -1;
}

/* Each layer type: its op, its parameters, whether it may take more than
 * one input (graph form), and its training form where that differs. */
static const struct {
    bool present;
    KpOp op;
    ParamFn params;
    bool many_inputs;
    TrainFn train;
} layer_table[KP_LAYER_COUNT] = {
    [KP_LAYER_DENSE] = {true, KP_OP_dense, params_dense, false},
    [KP_LAYER_CONV2D] = {true, KP_OP_conv2d, params_conv2d, false},
    [KP_LAYER_CONV2D_TRANSPOSE] = {true, KP_OP_conv2d_transpose, params_conv2d_transpose, false},
    [KP_LAYER_MAXPOOL2D] = {true, KP_OP_maxpool2d, NULL, false},
    [KP_LAYER_AVGPOOL2D] = {true, KP_OP_avgpool2d, NULL, false},
    [KP_LAYER_BATCHNORM] = {true, KP_OP_batchnorm, params_batchnorm, false, train_batchnorm},
    [KP_LAYER_DROPOUT] = {true, KP_OP_dropout, NULL, false, train_dropout},
    [KP_LAYER_RESHAPE] = {true, KP_OP_reshape, NULL, false},
    [KP_LAYER_MASKING] = {true, KP_OP_masking, NULL, false},
    [KP_LAYER_FLATTEN] = {true, KP_OP_flatten, NULL, false},
    [KP_LAYER_RELU] = {true, KP_OP_relu, NULL, false},
    [KP_LAYER_SIGMOID] = {true, KP_OP_sigmoid, NULL, false},
    [KP_LAYER_TANH] = {true, KP_OP_tanh, NULL, false},
    [KP_LAYER_SOFTMAX] = {true, KP_OP_softmax, NULL, false},
    [KP_LAYER_LEAKY_RELU] = {true, KP_OP_leaky_relu, NULL, false},
    [KP_LAYER_ADD] = {true, KP_OP_add, NULL, true},
    [KP_LAYER_CONCAT] = {true, KP_OP_concat, NULL, true},
};

static const KpOp act_ops[] = {
    [KP_ACT_RELU] = KP_OP_relu,
    [KP_ACT_SIGMOID] = KP_OP_sigmoid,
    [KP_ACT_TANH] = KP_OP_tanh,
    [KP_ACT_SOFTMAX] = KP_OP_softmax,
    [KP_ACT_LEAKY_RELU] = KP_OP_leaky_relu,
};

/* Add l as a node reading in[0..nin-1] (and its fused activation);
 * *out is the value the next layer reads. */
static int lower_layer(Lower *L, const KpLayerSpec *l, int nin, KpValue *const *in,
                       KpValue **out)
{
    assert(l->type >= 0 && l->type < KP_LAYER_COUNT && layer_table[l->type].present);
    KpGraph *g = L->g;
    if (!layer_table[l->type].many_inputs && nin != 1)
        return kp_error(L->d, "%s: %s (%s): %s takes one input, got %d", L->s->file, l->where,
                        l->name, kp_layer_type_name(l->type), nin);
    if (nin < 1 || nin > KP_MAX_IN)
        return kp_error(L->d, "%s: %s (%s): %s takes 1 to %d inputs, got %d", L->s->file,
                        l->where, l->name, kp_layer_type_name(l->type), KP_MAX_IN, nin);
    KpValue *args[KP_MAX_IN];
    int nargs = nin;
    memcpy(args, in, (size_t)nin * sizeof *args);
    if (layer_table[l->type].params) {
        int np = layer_table[l->type].params(L, l, in[0], args + nin);
        if (np < 0)
            return oom(L);
        nargs += np;
    }
    if (g->training && layer_table[l->type].train) {
        assert(l->activation == KP_ACT_NONE);
        return layer_table[l->type].train(L, l, args, out);
    }
    KpNode *n = kp_node_new(g, layer_table[l->type].op, l->name, l->where, nargs, args);
    if (!n)
        return oom(L);
    n->attr = l->attr;
    /* The format has no dilation for conv2d_transpose: 0 there means 1. */
    for (int i = 0; i < 2; i++)
        if (n->attr.dilation[i] == 0)
            n->attr.dilation[i] = 1;
    if (kp_node_infer_shape(g, n, L->d))
        return -1;
    if (l->activation != KP_ACT_NONE) {
        KpNode *a = kp_node_new(g, act_ops[l->activation], l->name, l->where, 1, &n->out);
        if (!a)
            return oom(L);
        a->attr.alpha = l->act_alpha;
        if (kp_node_infer_shape(g, a, L->d))
            return -1;
        n = a;
    }
    *out = n->out;
    return 0;
}

static int lower_chain(Lower *L)
{
    const KpModelSpec *s = L->s;
    if (s->nlayers < 1)
        return kp_error(L->d, "%s: layers: the model has no layers", s->file);
    KpValue *x = L->g->input;
    for (int i = 0; i < s->nlayers; i++)
        if (lower_layer(L, &s->layers[i], 1, &x, &x))
            return -1;
    L->g->output = x;
    return 0;
}

static int find_layer(const KpModelSpec *s, const char *name)
{
    for (int i = 0; i < s->nlayers; i++)
        if (strcmp(s->layers[i].name, name) == 0)
            return i;
    return -1;
}

/* The graph form's wiring: src[first[i] + k] is the layer index of layer
 * i's k-th input, or -1 for the model input. */
typedef struct Wiring {
    int *first, *src;
    bool *done;
    KpValue **outs;
} Wiring;

static int wire(Lower *L, Wiring *w)
{
    const KpModelSpec *s = L->s;
    KpArena *a = &L->g->arena;
    int total = 0;
    for (int i = 0; i < s->nlayers; i++)
        total += s->layers[i].ninputs;
    w->first = kp_arena_alloc(a, (size_t)s->nlayers * sizeof *w->first);
    w->src = kp_arena_alloc(a, (size_t)(total + 1) * sizeof *w->src);
    w->done = kp_arena_alloc(a, (size_t)s->nlayers * sizeof *w->done);
    w->outs = kp_arena_alloc(a, (size_t)s->nlayers * sizeof *w->outs);
    if (!w->first || !w->src || !w->done || !w->outs)
        return oom(L);
    for (int i = 0, at = 0; i < s->nlayers; i++) {
        const KpLayerSpec *l = &s->layers[i];
        w->first[i] = at;
        for (int k = 0; k < l->ninputs; k++, at++) {
            w->src[at] = strcmp(l->inputs[k], "input") == 0 ? -1 : find_layer(s, l->inputs[k]);
            if (w->src[at] < 0 && strcmp(l->inputs[k], "input") != 0)
                return kp_error(L->d, "%s: %s (%s): unknown input '%s'", s->file, l->where,
                                l->name, l->inputs[k]);
        }
    }
    return 0;
}

/* Report a cycle among the layers not done, starting from layer i. */
static int report_cycle(Lower *L, const Wiring *w, int i)
{
    const KpModelSpec *s = L->s;
    /* Follow inputs not done s->nlayers times: we are then on the cycle. */
    for (int steps = 0; steps < s->nlayers; steps++) {
        for (int k = 0; k < s->layers[i].ninputs; k++) {
            int j = w->src[w->first[i] + k];
            if (j >= 0 && !w->done[j]) {
                i = j;
                break;
            }
        }
    }
    const KpLayerSpec *l = &s->layers[i];
    return kp_error(L->d, "%s: %s (%s): its inputs form a cycle", s->file, l->where, l->name);
}

/* Lower the nodes in file order where possible, each once its inputs are:
 * sweeps until all are done, so a file in topological order takes one. */
static int lower_graph(Lower *L, Wiring *w)
{
    const KpModelSpec *s = L->s;
    for (int left = s->nlayers; left > 0;) {
        int lowered = 0;
        for (int i = 0; i < s->nlayers; i++) {
            const KpLayerSpec *l = &s->layers[i];
            const int *src = w->src + w->first[i];
            KpValue *in[KP_MAX_IN];
            int nin = l->ninputs <= KP_MAX_IN ? l->ninputs : KP_MAX_IN + 1;
            bool ready = !w->done[i];
            for (int k = 0; ready && k < l->ninputs; k++)
                ready = src[k] < 0 || w->done[src[k]];
            if (!ready)
                continue;
            for (int k = 0; k < l->ninputs && k < KP_MAX_IN; k++)
                in[k] = src[k] < 0 ? L->g->input : w->outs[src[k]];
            if (lower_layer(L, l, nin, in, &w->outs[i]))
                return -1;
            w->done[i] = true;
            lowered++;
        }
        if (lowered == 0) {
            int i = 0;
            while (w->done[i])
                i++;
            return report_cycle(L, w, i);
        }
        left -= lowered;
    }
    return 0;
}

static int lower_graph_form(Lower *L)
{
    const KpModelSpec *s = L->s;
    if (s->nlayers < 1)
        return kp_error(L->d, "%s: nodes: the model has no nodes", s->file);
    Wiring w;
    if (wire(L, &w) || lower_graph(L, &w))
        return -1;
    int o = s->output ? find_layer(s, s->output) : -1;
    if (o < 0)
        return kp_error(L->d, "%s: output: '%s' names no node", s->file,
                        s->output ? s->output : "");
    L->g->output = w.outs[o];
    return 0;
}

/* train.augment as the descriptor carries it: a KARP_AUG_* kind and its
 * one value (padding, degrees or std; 0 for hflip). */
static int lower_augment(const KpTrainSpec *t, KpGraph *g)
{
    static const struct { const char *type; int kind; } kinds[] = {
        {"hflip", KARP_AUG_HFLIP},
        {"random_crop", KARP_AUG_RANDOM_CROP},
        {"rotate", KARP_AUG_ROTATE},
        {"noise", KARP_AUG_NOISE},
    };
    if (t->naugment > (int)(sizeof g->augment / sizeof g->augment[0]))
        return -1;
    g->naugment = t->naugment;
    for (int i = 0; i < t->naugment; i++) {
        const KpAugmentSpec *a = &t->augment[i];
        karp_augment *out = &g->augment[i];
        out->kind = 0;
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
            if (strcmp(a->type, kinds[k].type) == 0)
                out->kind = kinds[k].kind;
        assert(out->kind != 0); /* the parser knows the same names */
        out->value = out->kind == KARP_AUG_RANDOM_CROP ? (float)a->padding
                     : out->kind == KARP_AUG_ROTATE    ? a->degrees
                     : out->kind == KARP_AUG_NOISE     ? a->std
                                                       : 0.0f;
    }
    return 0;
}

int kp_frontend_lower(const KpModelSpec *s, KpGraph *g, KpDiag *d)
{
    Lower L = {.s = s, .g = g, .d = d};
    g->name = kp_arena_strdup(&g->arena, s->name);
    g->file = kp_arena_strdup(&g->arena, s->file);
    g->max_batch = s->batch;
    g->seed = s->seed;
    g->loss = kp_loss_name(s->loss);
    g->optimizer = kp_optim_name(s->optimizer);
    g->optim = (KpOptimHyper){.lr = s->lr, .weight_decay = s->weight_decay, .beta = s->beta,
                              .beta1 = s->beta1, .beta2 = s->beta2, .eps = s->eps};
    g->train_epochs = s->train.epochs;
    g->norm_nmean = s->train.nmean;
    g->norm_nstd = s->train.nstd;
    memcpy(g->norm_mean, s->train.mean, sizeof g->norm_mean);
    memcpy(g->norm_std, s->train.std, sizeof g->norm_std);
    if (lower_augment(&s->train, g) != 0)
        return kp_error(d, "%s: train.augment: more than %d transforms", s->file,
                        (int)(sizeof g->augment / sizeof g->augment[0]));
    assert(s->input_rank >= 1 && s->input_rank < KP_MAX_RANK);
    int64_t dims[KP_MAX_RANK] = {KP_DIM_N};
    for (int i = 0; i < s->input_rank; i++)
        dims[i + 1] = s->input_shape[i];
    g->input = kp_value_new(g, KP_ROLE_INPUT, KP_F32, s->input_rank + 1, dims);
    if (!g->input || (s->name && !g->name) || (s->file && !g->file))
        return oom(&L);
    if (s->graph_form ? lower_graph_form(&L) : lower_chain(&L))
        return -1;
    if (g->arena.failed)
        return oom(&L);
    kp_fill_uses(g);
    KpPassOpts o;
    kp_pass_opts_init(&o);
    return kp_pass_verify(g, &o, d);
}
