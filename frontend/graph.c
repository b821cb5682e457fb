/*
 * graph.c — names and wiring of the layers: unique names, and in the
 * graph form, inputs that resolve and form no cycle.
 *
 * Names are looked up in a small open-addressing table; the cycle check
 * is an iterative depth-first search along the inputs (no recursion, so a
 * long chain of nodes cannot exhaust the stack).  When it meets a node
 * still on its stack, the stack from that node up is the cycle.
 */
#include "parse_util.h"

#include <string.h>

typedef struct Names {
    size_t cap;
    const char **key;
    int *idx;
} Names;

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int names_init(KpFe *p, Names *t, int n)
{
    t->cap = 16;
    while (t->cap < 2 * (size_t)n)
        t->cap *= 2;
    t->key = kp_arena_alloc(p->a, t->cap * sizeof *t->key);
    t->idx = kp_arena_alloc(p->a, t->cap * sizeof *t->idx);
    return t->key && t->idx ? 0 : kp_fe_fail(p, "", NULL, "out of memory");
}

static int names_find(const Names *t, const char *name)
{
    size_t h = hash_str(name) & (t->cap - 1);
    for (; t->key[h]; h = (h + 1) & (t->cap - 1))
        if (strcmp(t->key[h], name) == 0)
            return t->idx[h];
    return -1;
}

static void names_add(Names *t, const char *name, int i)
{
    size_t h = hash_str(name) & (t->cap - 1);
    while (t->key[h])
        h = (h + 1) & (t->cap - 1);
    t->key[h] = name;
    t->idx[h] = i;
}

static int build_names(KpFe *p, Names *t, const bool *named)
{
    const KpModelSpec *s = p->s;
    if (names_init(p, t, s->nlayers) < 0)
        return -1;
    for (int i = 0; i < s->nlayers; i++) {
        const KpLayerSpec *l = &s->layers[i];
        int j = names_find(t, l->name);
        if (j >= 0 && named[i]) {
            const char *how = named[j] ? "used by" : "the default name of";
            return kp_fe_fail(p, kp_arena_printf(p->a, "%s (%s)", l->where, l->name), "name",
                              "is already %s %s", how, s->layers[j].where);
        }
        if (j >= 0)
            return kp_fe_fail(p, kp_arena_printf(p->a, "%s (%s)", l->where,
                                                 kp_layer_type_name(l->type)),
                              NULL, "its default name '%s' is already used by %s; give it a 'name'",
                              l->name, s->layers[j].where);
        names_add(t, l->name, i);
    }
    return 0;
}

int kp_fe_check_names(KpFe *p, const bool *named)
{
    Names t;
    return build_names(p, &t, named);
}

/* The index of node name, -1 for the model input, or an error. */
static int resolve(KpFe *p, const Names *t, const char *at, const char *key, const char *name,
                   int *out)
{
    *out = strcmp(name, "input") == 0 ? -1 : names_find(t, name);
    if (*out >= 0 || strcmp(name, "input") == 0)
        return 0;
    const KpModelSpec *s = p->s;
    const char **cands = kp_arena_alloc(p->a, (size_t)(s->nlayers + 1) * sizeof *cands);
    if (!cands)
        return kp_fe_fail(p, at, NULL, "out of memory");
    cands[0] = "input";
    for (int i = 0; i < s->nlayers; i++)
        cands[i + 1] = s->layers[i].name;
    const char *near = kp_fe_suggest(name, cands, s->nlayers + 1);
    if (near)
        return kp_fe_fail(p, at, key, "names an unknown node '%s', did you mean '%s'?",
                          kp_fe_clip(p, name), near);
    return kp_fe_fail(p, at, key, "names an unknown node '%s' (a node's name or \"input\")",
                      kp_fe_clip(p, name));
}

/* "a -> b -> c -> a" in the order data flows, from the DFS stack
 * stack[from..top] where each entry takes its input from the next. */
static const char *cycle_text(KpFe *p, const int *stack, int from, int top)
{
    const KpModelSpec *s = p->s;
    const char *text = s->layers[stack[from]].name;
    for (int k = top; k >= from; k--) {
        text = kp_arena_printf(p->a, "%s -> %s", text, s->layers[stack[k]].name);
        if (!text)
            return "?";
        if (strlen(text) > 200)
            return kp_arena_printf(p->a, "%s -> ...", text);
    }
    return text;
}

static int find_cycle(KpFe *p, int **in)
{
    const KpModelSpec *s = p->s;
    int n = s->nlayers;
    char *color = kp_arena_alloc(p->a, (size_t)n);
    int *stack = kp_arena_alloc(p->a, (size_t)n * sizeof *stack);
    int *next = kp_arena_alloc(p->a, (size_t)n * sizeof *next);
    if (!color || !stack || !next)
        return kp_fe_fail(p, "", NULL, "out of memory");
    for (int root = 0; root < n; root++) {
        if (color[root])
            continue;
        int top = 0;
        stack[0] = root;
        next[0] = 0;
        color[root] = 1;
        while (top >= 0) {
            int u = stack[top];
            if (next[top] == s->layers[u].ninputs) {
                color[u] = 2;
                top--;
                continue;
            }
            int v = in[u][next[top]++];
            if (v < 0 || color[v] == 2)
                continue;
            if (color[v] == 1) {
                int from = top;
                while (stack[from] != v)
                    from--;
                const KpLayerSpec *l = &s->layers[v];
                return kp_fe_fail(p, kp_arena_printf(p->a, "%s (%s)", l->where, l->name), NULL,
                                  "the inputs form a cycle: %s", cycle_text(p, stack, from, top));
            }
            color[v] = 1;
            stack[++top] = v;
            next[top] = 0;
        }
    }
    return 0;
}

int kp_fe_check_graph(KpFe *p, const cJSON *output)
{
    KpModelSpec *s = p->s;
    bool *named = kp_arena_alloc(p->a, (size_t)s->nlayers);
    int **in = kp_arena_alloc(p->a, (size_t)s->nlayers * sizeof *in);
    if (!named || !in)
        return kp_fe_fail(p, "", NULL, "out of memory");
    memset(named, 1, (size_t)s->nlayers);
    Names t;
    if (build_names(p, &t, named) < 0)
        return -1;
    for (int i = 0; i < s->nlayers; i++) {
        const KpLayerSpec *l = &s->layers[i];
        const char *at = kp_arena_printf(p->a, "%s (%s)", l->where, l->name);
        in[i] = kp_arena_alloc(p->a, (size_t)l->ninputs * sizeof *in[i]);
        if (!in[i] || !at)
            return kp_fe_fail(p, "", NULL, "out of memory");
        for (int k = 0; k < l->ninputs; k++) {
            const char *key = l->ninputs == 1 ? "input" : "inputs";
            if (resolve(p, &t, at, key, l->inputs[k], &in[i][k]) < 0)
                return -1;
        }
    }
    if (find_cycle(p, in) < 0)
        return -1;
    if (!output)
        return kp_fe_fail(p, "", NULL, "missing 'output' (the name of the graph's output node)");
    if (!cJSON_IsString(output))
        return kp_fe_fail(p, "output", NULL, "must be a node name, got %s", kp_fe_show(p, output));
    if (strcmp(output->valuestring, "input") == 0)
        return kp_fe_fail(p, "output", NULL, "must name a node, not the model input");
    int o;
    if (resolve(p, &t, "output", NULL, output->valuestring, &o) < 0)
        return -1;
    s->output = s->layers[o].name;
    return 0;
}
