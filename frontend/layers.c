/*
 * layers.c — the layer types of model.json and their attributes.
 *
 * One table row per layer type lists every key it accepts, each with its
 * kind (how the value is read and where it is stored) and whether it is
 * required, defaulted or optional.  The same rows give the defaults, the
 * "missing 'units'" errors and the "unknown key ..., did you mean ..."
 * suggestions, and kp_layer_type_name().
 */
#include "parse_util.h"

#include <math.h>
#include <string.h>

typedef enum AttrKind {
    A_UNITS,            /* positive integer -> attr.units */
    A_FILTERS,          /* positive integer -> attr.filters */
    A_KERNEL,           /* positive integer or [h,w] -> attr.kernel (also the pool size) */
    A_STRIDE,           /* positive integer or [h,w] -> attr.stride */
    A_DILATION,         /* positive integer or [h,w] -> attr.dilation */
    A_PADDING,          /* non-negative integer, [h,w], "same" or "valid" */
    A_POOL_PADDING,     /* non-negative integer or [h,w] */
    A_OUTPUT_PADDING,   /* non-negative integer or [h,w] */
    A_ACTIVATION,       /* relu, sigmoid, ... -> activation */
    A_BIAS,             /* true or false -> attr.has_bias */
    A_INIT,             /* he, xavier, zeros -> init */
    A_ALPHA,            /* finite number -> attr.alpha */
    A_MOMENTUM,         /* [0, 1] -> attr.momentum */
    A_EPS,              /* > 0 -> attr.eps */
    A_RATE,             /* [0, 1) -> attr.rate */
    A_VALUE,            /* finite number -> attr.value */
    A_AXIS,             /* 0..2 -> attr.axis */
    A_SHAPE             /* 1 to 3 positive integers, one may be -1 -> attr.reshape_* */
} AttrKind;

typedef enum Need { OPT, REQ, DEF } Need;

typedef struct KeyRow {
    const char *key;
    AttrKind kind;
    Need need;
    double def;         /* the default when need is DEF */
} KeyRow;

enum { MAX_KEYS = 8 };

typedef struct LayerRow {
    const char *type;
    bool graph_only;
    KeyRow keys[MAX_KEYS];
} LayerRow;

#define CONV_TAIL \
    {"activation", A_ACTIVATION, DEF, KP_ACT_NONE}, {"bias", A_BIAS, DEF, 1}, {"init", A_INIT, OPT, 0}
/* A pool's stride defaults to its size: 0 here, resolved after parsing. */
#define POOL_KEYS \
    {{"size", A_KERNEL, REQ, 0}, {"stride", A_STRIDE, DEF, 0}, {"padding", A_POOL_PADDING, DEF, 0}}

static const LayerRow layer_table[KP_LAYER_COUNT] = {
    [KP_LAYER_DENSE] = {"dense", false, {{"units", A_UNITS, REQ, 0}, CONV_TAIL}},
    [KP_LAYER_CONV2D] = {"conv2d", false,
                         {{"filters", A_FILTERS, REQ, 0}, {"kernel", A_KERNEL, REQ, 0},
                          {"stride", A_STRIDE, DEF, 1}, {"padding", A_PADDING, DEF, 0},
                          {"dilation", A_DILATION, DEF, 1}, CONV_TAIL}},
    [KP_LAYER_CONV2D_TRANSPOSE] = {"conv2d_transpose", false,
                                   {{"filters", A_FILTERS, REQ, 0}, {"kernel", A_KERNEL, REQ, 0},
                                    {"stride", A_STRIDE, DEF, 1}, {"padding", A_PADDING, DEF, 0},
                                    {"output_padding", A_OUTPUT_PADDING, DEF, 0}, CONV_TAIL}},
    [KP_LAYER_MAXPOOL2D] = {"maxpool2d", false, POOL_KEYS},
    [KP_LAYER_AVGPOOL2D] = {"avgpool2d", false, POOL_KEYS},
    [KP_LAYER_BATCHNORM] = {"batchnorm", false,
                            {{"momentum", A_MOMENTUM, DEF, 0.1}, {"eps", A_EPS, DEF, 1e-5}}},
    [KP_LAYER_DROPOUT] = {"dropout", false, {{"rate", A_RATE, REQ, 0}}},
    [KP_LAYER_RESHAPE] = {"reshape", false, {{"shape", A_SHAPE, REQ, 0}}},
    [KP_LAYER_MASKING] = {"masking", false, {{"value", A_VALUE, DEF, 0}}},
    [KP_LAYER_FLATTEN] = {"flatten", false, {{0}}},
    [KP_LAYER_RELU] = {"relu", false, {{0}}},
    [KP_LAYER_SIGMOID] = {"sigmoid", false, {{0}}},
    [KP_LAYER_TANH] = {"tanh", false, {{0}}},
    [KP_LAYER_SOFTMAX] = {"softmax", false, {{0}}},
    [KP_LAYER_LEAKY_RELU] = {"leaky_relu", false, {{"alpha", A_ALPHA, DEF, 0.01}}},
    [KP_LAYER_ADD] = {"add", true, {{0}}},
    [KP_LAYER_CONCAT] = {"concat", true, {{"axis", A_AXIS, DEF, 0}}},
};

/* In KpAct order. */
static const char *const act_names[] = {"none", "relu", "sigmoid", "tanh", "softmax", "leaky_relu"};
static const char *const init_names[] = {"he", "xavier", "zeros"};
static const KpInit init_values[] = {KP_INIT_HE, KP_INIT_XAVIER, KP_INIT_ZEROS};

const char *kp_layer_type_name(KpLayerType t)
{
    return (unsigned)t < KP_LAYER_COUNT ? layer_table[t].type : "?";
}

static int64_t *pair_field(KpAttrs *at, AttrKind kind)
{
    switch (kind) {
    case A_KERNEL: return at->kernel;
    case A_STRIDE: return at->stride;
    case A_DILATION: return at->dilation;
    case A_PADDING:
    case A_POOL_PADDING: return at->padding;
    case A_OUTPUT_PADDING: return at->output_padding;
    default: return NULL;
    }
}

static void set_default(KpLayerSpec *l, const KeyRow *k)
{
    KpAttrs *at = &l->attr;
    int64_t *pair = pair_field(at, k->kind);
    if (pair) {
        pair[0] = pair[1] = (int64_t)k->def;
        return;
    }
    switch (k->kind) {
    case A_ACTIVATION: l->activation = (KpAct)k->def; break;
    case A_BIAS: at->has_bias = k->def != 0; break;
    case A_ALPHA: at->alpha = (float)k->def; break;
    case A_MOMENTUM: at->momentum = (float)k->def; break;
    case A_EPS: at->eps = (float)k->def; break;
    case A_VALUE: at->value = (float)k->def; break;
    case A_AXIS: at->axis = (int)k->def; break;
    default: break;
    }
}

/* An integer or [h,w] of integers in [lo, max] into out[2]. */
static bool read_pair(const cJSON *v, int64_t lo, int64_t out[2])
{
    if (cJSON_IsNumber(v)) {
        if (!kp_fe_int_in(v, lo, KP_FE_MAX_DIM, &out[0]))
            return false;
        out[1] = out[0];
        return true;
    }
    return cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
           kp_fe_int_in(cJSON_GetArrayItem(v, 0), lo, KP_FE_MAX_DIM, &out[0]) &&
           kp_fe_int_in(cJSON_GetArrayItem(v, 1), lo, KP_FE_MAX_DIM, &out[1]);
}

/* Whether v holds an integer above the limit (for "at most" rather than
 * "must be a ..."). */
static bool too_large(const cJSON *v)
{
    if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next)
            if (too_large(c))
                return true;
        return false;
    }
    return cJSON_IsNumber(v) && v->valuedouble > KP_FE_MAX_DIM;
}

static int parse_pair(KpFe *p, const char *at, const KeyRow *k, const cJSON *v, int64_t out[2])
{
    bool positive = k->kind == A_KERNEL || k->kind == A_STRIDE || k->kind == A_DILATION;
    if (read_pair(v, positive ? 1 : 0, out))
        return 0;
    if (too_large(v))
        return kp_fe_fail(p, at, k->key, "must be at most %d, got %s", KP_FE_MAX_DIM,
                          kp_fe_show(p, v));
    if (k->kind == A_PADDING)
        return kp_fe_fail(p, at, k->key,
                          "must be a non-negative integer, [h,w], \"same\" or \"valid\", got %s",
                          kp_fe_show(p, v));
    return kp_fe_fail(p, at, k->key, "must be a %s integer or [h,w], got %s",
                      positive ? "positive" : "non-negative", kp_fe_show(p, v));
}

static int parse_shape(KpFe *p, const char *at, const cJSON *v, KpAttrs *a)
{
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
    int unknown = 0;
    int64_t elems = 1;
    bool ok = n >= 1 && n <= KP_MAX_RANK - 1;
    for (int i = 0; ok && i < n; i++) {
        int64_t dim;
        ok = kp_fe_int_in(cJSON_GetArrayItem(v, i), -1, KP_FE_MAX_DIM, &dim) && dim != 0;
        if (ok && dim == -1)
            ok = ++unknown == 1;
        else if (ok)
            elems = kp_fe_mul_sat(elems, dim);
        a->reshape_dims[i] = dim;
    }
    if (!ok && too_large(v))
        return kp_fe_fail(p, at, "shape", "has a dimension above %d, got %s", KP_FE_MAX_DIM,
                          kp_fe_show(p, v));
    if (!ok)
        return kp_fe_fail(p, at, "shape",
                          "must be a list of 1 to 3 positive integers (one may be -1), got %s",
                          kp_fe_show(p, v));
    if (elems > KP_FE_MAX_SAMPLE)
        return kp_fe_fail(p, at, "shape", "has more than 2^31 elements, got %s", kp_fe_show(p, v));
    a->reshape_rank = n;
    return 0;
}

static int parse_float(KpFe *p, const char *at, const KeyRow *k, const cJSON *v, float *out)
{
    double x;
    bool ok = kp_fe_number(v, &x) && fabs(x) <= 3.0e38;
    const char *want = "must be a finite number";
    switch (k->kind) {
    case A_MOMENTUM:
        ok = ok && x >= 0 && x <= 1;
        want = "must be a number between 0 and 1";
        break;
    case A_EPS:
        ok = ok && x > 0;
        want = "must be a positive number";
        break;
    case A_RATE:
        ok = ok && x >= 0 && x < 1;
        want = "must be a number in [0, 1)";
        break;
    default:
        break;
    }
    if (!ok)
        return kp_fe_fail(p, at, k->key, "%s, got %s", want, kp_fe_show(p, v));
    *out = (float)x;
    return 0;
}

static int parse_attr(KpFe *p, const char *at, const KeyRow *k, const cJSON *v, KpLayerSpec *l)
{
    KpAttrs *a = &l->attr;
    int idx;
    int64_t n;
    int64_t *pair = pair_field(a, k->kind);
    switch (k->kind) {
    case A_UNITS: return kp_fe_pos_int(p, at, k->key, v, KP_FE_MAX_DIM, &a->units);
    case A_FILTERS: return kp_fe_pos_int(p, at, k->key, v, KP_FE_MAX_DIM, &a->filters);
    case A_PADDING:
        if (cJSON_IsString(v) && (!strcmp(v->valuestring, "same") || !strcmp(v->valuestring, "valid"))) {
            a->pad_mode = v->valuestring[0] == 's' ? KP_PAD_SAME : KP_PAD_VALID;
            return 0;
        }
        return parse_pair(p, at, k, v, pair);
    case A_KERNEL:
    case A_STRIDE:
    case A_DILATION:
    case A_POOL_PADDING:
    case A_OUTPUT_PADDING: return parse_pair(p, at, k, v, pair);
    case A_ACTIVATION:
        if (kp_fe_enum(p, at, k->key, "activation", v, act_names, 6, &idx) < 0)
            return -1;
        l->activation = (KpAct)idx;
        return 0;
    case A_BIAS:
        if (!cJSON_IsBool(v))
            return kp_fe_fail(p, at, k->key, "must be true or false, got %s", kp_fe_show(p, v));
        a->has_bias = cJSON_IsTrue(v);
        return 0;
    case A_INIT:
        if (kp_fe_enum(p, at, k->key, "init", v, init_names, 3, &idx) < 0)
            return -1;
        l->has_init = true;
        l->init = init_values[idx];
        return 0;
    case A_ALPHA: return parse_float(p, at, k, v, &a->alpha);
    case A_MOMENTUM: return parse_float(p, at, k, v, &a->momentum);
    case A_EPS: return parse_float(p, at, k, v, &a->eps);
    case A_RATE: return parse_float(p, at, k, v, &a->rate);
    case A_VALUE: return parse_float(p, at, k, v, &a->value);
    case A_AXIS:
        if (!kp_fe_int_in(v, 0, KP_MAX_RANK - 2, &n))
            return kp_fe_fail(p, at, k->key,
                              "must be 0, 1 or 2 (an axis of one sample, 0 = channels), got %s",
                              kp_fe_show(p, v));
        a->axis = (int)n;
        return 0;
    case A_SHAPE: return parse_shape(p, at, v, a);
    }
    return 0;
}

/* Checks that involve several attributes, after all of them are read. */
static int check_layer(KpFe *p, const char *at, KpLayerSpec *l)
{
    KpAttrs *a = &l->attr;
    bool pool = l->type == KP_LAYER_MAXPOOL2D || l->type == KP_LAYER_AVGPOOL2D;
    for (int i = 0; i < 2; i++) {
        if (pool && a->stride[i] == 0)
            a->stride[i] = a->kernel[i];
        if (pool && a->padding[i] > a->kernel[i] / 2)
            return kp_fe_fail(p, at, "padding",
                              "must be at most half the pool size (%lld), got %lld",
                              (long long)(a->kernel[i] / 2), (long long)a->padding[i]);
        if (l->type == KP_LAYER_CONV2D_TRANSPOSE && a->output_padding[i] >= a->stride[i])
            return kp_fe_fail(p, at, "output_padding",
                              "must be smaller than the stride (%lld), got %lld",
                              (long long)a->stride[i], (long long)a->output_padding[i]);
    }
    return 0;
}

/* Graph form: "input": "x" or "inputs": ["x", "y"] into l->inputs. */
static int parse_inputs(KpFe *p, const char *at, const cJSON *obj, KpLayerSpec *l)
{
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(obj, "input");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(obj, "inputs");
    if (one && many)
        return kp_fe_fail(p, at, NULL, "give either 'input' or 'inputs', not both");
    if (!one && !many)
        return kp_fe_fail(p, at, NULL, "missing 'input' (or 'inputs')");
    int n = one ? 1 : cJSON_GetArraySize(many);
    if (one && !cJSON_IsString(one))
        return kp_fe_fail(p, at, "input", "must be a layer name, got %s", kp_fe_show(p, one));
    bool ok = one || (cJSON_IsArray(many) && n >= 1 && n <= KP_MAX_IN);
    for (const cJSON *c = many ? many->child : NULL; ok && c; c = c->next)
        ok = cJSON_IsString(c);
    if (!ok)
        return kp_fe_fail(p, at, "inputs", "must be a list of 1 to %d layer names, got %s",
                          KP_MAX_IN, kp_fe_show(p, many));
    bool multi = l->type == KP_LAYER_ADD || l->type == KP_LAYER_CONCAT;
    if (multi && n < 2)
        return kp_fe_fail(p, at, NULL, "'%s' needs at least 2 inputs, got %d",
                          kp_layer_type_name(l->type), n);
    if (!multi && n != 1)
        return kp_fe_fail(p, at, NULL, "'%s' takes one input, got %d",
                          kp_layer_type_name(l->type), n);
    l->ninputs = n;
    l->inputs = kp_arena_alloc(p->a, (size_t)n * sizeof *l->inputs);
    if (!l->inputs)
        return kp_fe_fail(p, at, NULL, "out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *c = one ? one : cJSON_GetArrayItem(many, i);
        l->inputs[i] = kp_arena_strdup(p->a, c->valuestring);
    }
    return 0;
}

static int parse_type(KpFe *p, const char *at, const cJSON *tv, KpLayerSpec *l)
{
    const char *names[KP_LAYER_COUNT];
    for (int t = 0; t < KP_LAYER_COUNT; t++)
        names[t] = layer_table[t].type;
    if (!tv)
        return kp_fe_fail(p, at, NULL, "missing 'type'");
    if (!cJSON_IsString(tv))
        return kp_fe_fail(p, at, "type", "must be a layer type such as \"dense\", got %s",
                          kp_fe_show(p, tv));
    for (int t = 0; t < KP_LAYER_COUNT; t++) {
        if (strcmp(tv->valuestring, names[t]) == 0) {
            l->type = (KpLayerType)t;
            return 0;
        }
    }
    const char *near = kp_fe_suggest(tv->valuestring, names, KP_LAYER_COUNT);
    if (near)
        return kp_fe_fail(p, at, NULL, "unknown layer type '%s', did you mean '%s'?",
                          kp_fe_clip(p, tv->valuestring), near);
    return kp_fe_fail(p, at, NULL, "unknown layer type '%s', expected one of %s",
                      kp_fe_clip(p, tv->valuestring), kp_fe_join(p, names, KP_LAYER_COUNT));
}

int kp_fe_parse_layer(KpFe *p, const cJSON *obj, const char *where, bool graph_form,
                      KpLayerSpec *l)
{
    l->where = where;
    l->line = kp_json_line(p->doc, obj);
    if (!cJSON_IsObject(obj))
        return kp_fe_fail(p, where, NULL, "must be an object {\"type\": ...}, got %s",
                          kp_fe_show(p, obj));
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(obj, "type");
    const cJSON *nv = cJSON_GetObjectItemCaseSensitive(obj, "name");
    bool good_name = cJSON_IsString(nv) && kp_fe_is_ident(nv->valuestring) &&
                     strcmp(nv->valuestring, "input") != 0;
    const char *at = good_name ? kp_arena_printf(p->a, "%s (%s)", where, nv->valuestring) : where;
    if (parse_type(p, at, tv, l) < 0)
        return -1;
    const LayerRow *row = &layer_table[l->type];
    if (!good_name)
        at = kp_arena_printf(p->a, "%s (%s)", where, row->type);
    if (cJSON_IsString(nv) && strcmp(nv->valuestring, "input") == 0)
        return kp_fe_fail(p, at, "name", "\"input\" is reserved for the model input");
    if (nv && !good_name)
        return kp_fe_fail(p, at, "name", "must be an identifier ([A-Za-z_][A-Za-z0-9_]*, at most "
                          "%d characters), got %s", KP_FE_MAX_NAME, kp_fe_show(p, nv));
    if (good_name)
        l->name = kp_arena_strdup(p->a, nv->valuestring);
    if (graph_form && !l->name)
        return kp_fe_fail(p, at, NULL, "missing 'name' (every node of the graph form needs one)");
    if (row->graph_only && !graph_form)
        return kp_fe_fail(p, at, NULL, "'%s' needs several inputs: use the graph form "
                          "('nodes' + 'output') instead of 'layers'", row->type);
    const char *keys[MAX_KEYS + 4] = {"type", "name"};
    int nkeys = 2;
    if (graph_form) {
        keys[nkeys++] = "input";
        keys[nkeys++] = "inputs";
    } else {
        const char *stray = cJSON_HasObjectItem(obj, "input") ? "input"
                            : cJSON_HasObjectItem(obj, "inputs") ? "inputs" : NULL;
        if (stray)
            return kp_fe_fail(p, at, stray, "is only allowed in the graph form ('nodes'); in "
                              "'layers' each layer takes the previous one's output");
    }
    for (int k = 0; k < MAX_KEYS && row->keys[k].key; k++)
        keys[nkeys++] = row->keys[k].key;
    if (kp_fe_check_keys(p, at, obj, keys, nkeys) < 0)
        return -1;
    l->attr.has_bias = true;
    l->act_alpha = 0.01f;
    for (int k = 0; k < MAX_KEYS && row->keys[k].key; k++) {
        const KeyRow *kr = &row->keys[k];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, kr->key);
        if (!v && kr->need == REQ)
            return kp_fe_fail(p, at, NULL, "missing '%s'", kr->key);
        if (!v && kr->need == DEF)
            set_default(l, kr);
        if (v && parse_attr(p, at, kr, v, l) < 0)
            return -1;
    }
    if (check_layer(p, at, l) < 0)
        return -1;
    return graph_form ? parse_inputs(p, at, obj, l) : 0;
}
