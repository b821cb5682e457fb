/*
 * parse.c — model.json, version 1: the top level.
 *
 * The text is checked and indexed (json_doc.c), then every top-level key
 * is read in a fixed order so that the first error is the same whatever
 * the key order in the file: unknown keys, karp, name, input, the layers
 * (layers.c) or nodes (graph.c), loss and optimizer (training.c), batch,
 * seed, train.
 */
#include "parse_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MAX_LAYERS: code generation of the inference and training code takes
 * about 70 ms per layer on the reference machine (dense 8 + relu layers,
 * idle: 100 layers 7.0 s, 300 layers 21.6 s), and the front end grows
 * faster than linearly beyond a few thousand layers, so a larger model is
 * refused with a clear error rather than compiled for many minutes. */
enum { MAX_FILE_BYTES = 64 << 20, MAX_BATCH = 65536, MAX_LAYERS = KP_MAX_LAYERS };
#define MAX_SEED ((int64_t)1 << 53)     /* every integer up to here is exact in a double */

static const char *const top_keys[] = {"karp", "name", "input", "layers", "nodes", "output",
                                       "loss", "optimizer", "batch", "seed", "train"};

/* The file's base name without its extension, made a C identifier. */
static const char *default_name(KpArena *a, const char *file)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n > KP_FE_MAX_NAME - 1)
        n = KP_FE_MAX_NAME - 1;
    if (n == 0)
        return "model";
    bool digit = base[0] >= '0' && base[0] <= '9';
    char *s = kp_arena_alloc(a, n + 2);
    if (!s)
        return "model";
    size_t o = 0;
    if (digit)
        s[o++] = '_';
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        s[o++] = ok ? c : '_';
    }
    return s;
}

static int parse_version(KpFe *p, const cJSON *root)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "karp");
    int64_t version;
    if (!v)
        return kp_fe_fail(p, "", NULL, "missing 'karp' (the format version, 1)");
    if (!kp_fe_int_in(v, INT64_MIN / 2, INT64_MAX / 2, &version))
        return kp_fe_fail(p, "karp", NULL, "must be the format version 1, got %s",
                          kp_fe_show(p, v));
    if (version != 1)
        return kp_fe_fail(p, "karp", NULL, "unsupported format version %s, this karpc reads "
                          "version 1", kp_fe_show(p, v));
    return 0;
}

static int parse_name(KpFe *p, const cJSON *root)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!v) {
        p->s->name = default_name(p->a, p->file);
        return 0;
    }
    if (!cJSON_IsString(v) || !kp_fe_is_ident(v->valuestring))
        return kp_fe_fail(p, "name", NULL, "must be a C identifier ([A-Za-z_][A-Za-z0-9_]*, at "
                          "most %d characters), got %s", KP_FE_MAX_NAME, kp_fe_show(p, v));
    p->s->name = kp_arena_strdup(p->a, v->valuestring);
    return 0;
}

static int parse_input(KpFe *p, const cJSON *root)
{
    static const char *const keys[] = {"shape"};
    KpModelSpec *s = p->s;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (!in)
        return kp_fe_fail(p, "", NULL, "missing 'input'");
    if (!cJSON_IsObject(in))
        return kp_fe_fail(p, "input", NULL, "must be an object {\"shape\": [...]}, got %s",
                          kp_fe_show(p, in));
    if (kp_fe_check_keys(p, "input", in, keys, 1) < 0)
        return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, "shape");
    if (!v)
        return kp_fe_fail(p, "input", NULL, "missing 'shape'");
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
    bool ok = n >= 1 && n <= KP_MAX_RANK - 1;
    bool big = false;
    int64_t elems = 1;
    for (int i = 0; ok && i < n; i++) {
        const cJSON *d = cJSON_GetArrayItem(v, i);
        ok = kp_fe_int_in(d, 1, INT64_MAX / 2, &s->input_shape[i]);
        big = big || (ok && s->input_shape[i] > KP_FE_MAX_DIM);
        elems = kp_fe_mul_sat(elems, ok ? s->input_shape[i] : 1);
    }
    if (!ok)
        return kp_fe_fail(p, "input.shape", NULL,
                          "must be a list of 1 to 3 positive integers, got %s", kp_fe_show(p, v));
    if (big)
        return kp_fe_fail(p, "input.shape", NULL, "has a dimension above %d, got %s",
                          KP_FE_MAX_DIM, kp_fe_show(p, v));
    if (elems > KP_FE_MAX_SAMPLE)
        return kp_fe_fail(p, "input.shape", NULL, "one sample has more than 2^31 elements, got %s",
                          kp_fe_show(p, v));
    s->input_rank = n;
    return 0;
}

static int parse_layer_list(KpFe *p, const cJSON *list, const char *key, bool graph_form)
{
    KpModelSpec *s = p->s;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    if (n == 0)
        return kp_fe_fail(p, key, NULL, "must be a non-empty list of layer objects, got %s",
                          kp_fe_show(p, list));
    if (!graph_form && n > MAX_LAYERS) /* "nodes": refused after parsing (kp_build_program) */
        return kp_fe_fail(p, key, NULL, "has %d layers; karpc compiles at most %d", n, MAX_LAYERS);
    s->layers = kp_arena_alloc(p->a, (size_t)n * sizeof *s->layers);
    bool *named = kp_arena_alloc(p->a, (size_t)n * sizeof *named);
    if (!s->layers || !named)
        return kp_fe_fail(p, "", NULL, "out of memory");
    int i = 0;
    for (const cJSON *c = list->child; c; c = c->next, i++) {
        KpLayerSpec *l = &s->layers[i];
        const char *where = kp_arena_printf(p->a, "%s[%d]", key, i);
        if (!where || kp_fe_parse_layer(p, c, where, graph_form, l) < 0)
            return -1;
        named[i] = l->name != NULL;
        if (!l->name)
            l->name = kp_arena_printf(p->a, "%s%d", kp_layer_type_name(l->type), i);
        s->nlayers = i + 1;
    }
    return graph_form ? 0 : kp_fe_check_names(p, named);
}

static int parse_body(KpFe *p, const cJSON *root)
{
    KpModelSpec *s = p->s;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    const cJSON *output = cJSON_GetObjectItemCaseSensitive(root, "output");
    if (layers && nodes)
        return kp_fe_fail(p, "", NULL, "give either 'layers' (a chain) or 'nodes' (a graph), "
                          "not both");
    if (!layers && !nodes)
        return kp_fe_fail(p, "", NULL, "missing 'layers' (a chain) or 'nodes' and 'output' "
                          "(a graph)");
    if (layers && output)
        return kp_fe_fail(p, "output", NULL, "is only allowed with 'nodes'; the output of "
                          "'layers' is the last layer");
    s->graph_form = nodes != NULL;
    if (layers)
        return parse_layer_list(p, layers, "layers", false);
    if (parse_layer_list(p, nodes, "nodes", true) < 0)
        return -1;
    return kp_fe_check_graph(p, output);
}

static int parse_training(KpFe *p, const cJSON *root)
{
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(root, "loss");
    const cJSON *optim = cJSON_GetObjectItemCaseSensitive(root, "optimizer");
    if (loss && kp_fe_parse_loss(p, loss) < 0)
        return -1;
    if (optim && kp_fe_parse_optimizer(p, optim) < 0)
        return -1;
    /* An optimizer without a loss is allowed: such a model is trained
     * through karp_backward + karp_apply_gradients with a gradient from
     * elsewhere (a GAN's generator). */
    return 0;
}

static int parse_numbers(KpFe *p, const cJSON *root)
{
    KpModelSpec *s = p->s;
    const cJSON *batch = cJSON_GetObjectItemCaseSensitive(root, "batch");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    int64_t v;
    s->batch = 64;
    if (batch && !kp_fe_int_in(batch, 1, MAX_BATCH, &s->batch))
        return kp_fe_fail(p, "batch", NULL, "must be an integer between 1 and %d, got %s",
                          MAX_BATCH, kp_fe_show(p, batch));
    if (seed && !kp_fe_int_in(seed, 0, MAX_SEED, &v))
        return kp_fe_fail(p, "seed", NULL, "must be an integer between 0 and 2^53, got %s",
                          kp_fe_show(p, seed));
    s->seed = seed ? (uint64_t)v : 0;
    return 0;
}

static int parse_model(KpFe *p, const cJSON *root)
{
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(root, "train");
    if (kp_fe_check_keys(p, "", root, top_keys, sizeof top_keys / sizeof *top_keys) < 0 ||
        parse_version(p, root) < 0 || parse_name(p, root) < 0 || parse_input(p, root) < 0 ||
        parse_body(p, root) < 0 || parse_training(p, root) < 0 || parse_numbers(p, root) < 0)
        return -1;
    return train ? kp_fe_parse_train(p, train) : 0;
}

int kp_frontend_parse_text(const char *file, const char *text, size_t len, KpArena *a,
                           KpModelSpec **out, KpDiag *d)
{
    *out = NULL;
    KpModelSpec *s = kp_arena_alloc(a, sizeof *s);
    const char *f = kp_arena_strdup(a, file);
    if (!s || !f)
        return kp_error(d, "%s: out of memory", file);
    s->file = f;
    KpJsonDoc doc;
    KpFe p = {.file = f, .a = a, .d = d, .doc = &doc, .s = s};
    int rc = kp_json_doc_load(&doc, f, text, len, a, d);
    if (rc == 0)
        rc = parse_model(&p, doc.root);
    kp_json_doc_free(&doc);
    if (rc == 0 && a->failed)
        rc = kp_error(d, "%s: out of memory", f);
    if (rc == 0)
        *out = s;
    return rc;
}

int kp_frontend_parse_file(const char *path, KpArena *a, KpModelSpec **out, KpDiag *d)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kp_error(d, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int err = 0;
    while (buf) {
        if (len == cap) {
            char *bigger = cap < MAX_FILE_BYTES ? realloc(buf, 2 * cap) : NULL;
            if (!bigger) {
                err = cap < MAX_FILE_BYTES ? ENOMEM : EFBIG;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            err = ferror(f) ? (errno ? errno : EIO) : 0;
            break;
        }
    }
    fclose(f);
    int rc;
    if (!buf)
        rc = kp_error(d, "%s: cannot read: %s", path, strerror(ENOMEM));
    else if (err)
        rc = kp_error(d, "%s: cannot read: %s", path, strerror(err));
    else
        rc = kp_frontend_parse_text(path, buf, len, a, out, d);
    free(buf);
    return rc;
}
