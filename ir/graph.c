/*
 * graph.c — building a graph: values, parameters, nodes, the use lists,
 * and the op table look-ups.
 *
 * Everything but the KpGraph struct itself lives in g->arena.  Arrays
 * that grow (g->nodes, g->values, a value's users) are regrown in the
 * arena and the old copy abandoned; the arena frees them all at once.
 */
#include "ir.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[KP_OP_COUNT] = {
#define O(op, ...) #op,
#include "ops.def"
#undef O
};

static const KpFuseKind op_kinds[KP_OP_COUNT] = {
#define O(op, kind, ...) kind,
#include "ops.def"
#undef O
};

static const int op_nins[KP_OP_COUNT] = {
#define O(op, kind, nin, ...) nin,
#include "ops.def"
#undef O
};

const char *kp_op_name(KpOp op)
{
    assert(op >= 0 && op < KP_OP_COUNT);
    return op_names[op];
}

bool kp_op_is_view(KpOp op)
{
    return op == KP_OP_flatten || op == KP_OP_reshape || op == KP_OP_dropout;
}

KpFuseKind kp_op_kind(KpOp op)
{
    assert(op >= 0 && op < KP_OP_COUNT);
    return op_kinds[op];
}

int kp_op_nin(KpOp op)
{
    assert(op >= 0 && op < KP_OP_COUNT);
    return op_nins[op];
}

KpGraph *kp_graph_new(void)
{
    KpGraph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    kp_arena_init(&g->arena);
    g->max_batch = 64;
    g->loss = "none";
    g->optimizer = "none";
    return g;
}

void kp_graph_free(KpGraph *g)
{
    if (!g)
        return;
    kp_arena_free(&g->arena);
    free(g);
}

KpValue *kp_value_new(KpGraph *g, KpRole role, KpDtype dt, int rank, const int64_t *dims)
{
    assert(rank >= 0 && rank <= KP_MAX_RANK);
    if (g->nvalues == g->cap_values) {
        int cap = g->cap_values ? 2 * g->cap_values : 32;
        KpValue **vs = kp_arena_grow(&g->arena, g->values, (size_t)g->nvalues, (size_t)cap,
                                     sizeof *vs);
        if (!vs)
            return NULL;
        g->values = vs;
        g->cap_values = cap;
    }
    KpValue *v = kp_arena_alloc(&g->arena, sizeof *v);
    if (!v)
        return NULL;
    v->id = g->nvalues;
    v->dtype = dt;
    v->role = role;
    v->rank = rank;
    for (int i = 0; i < rank; i++)
        v->dims[i] = dims[i];
    v->storage = KP_STORE_NONE;
    g->values[g->nvalues++] = v;
    return v;
}

KpValue *kp_param_new(KpGraph *g, const char *name, int rank, const int64_t *dims, KpInit init,
                      int64_t fan_in, int64_t fan_out)
{
    KpValue *v = kp_value_new(g, KP_ROLE_PARAM, KP_F32, rank, dims);
    if (!v)
        return NULL;
    v->name = kp_arena_strdup(&g->arena, name);
    if (!v->name)
        return NULL;
    v->init = init;
    v->fan_in = fan_in;
    v->fan_out = fan_out;
    return v;
}

bool kp_value_trainable(const KpValue *v)
{
    return v->role == KP_ROLE_PARAM && !v->frozen;
}

KpPhase kp_node_run_phase(const KpGraph *g, const KpNode *n)
{
    if (n->phase != KP_PHASE_INPUT_GRAD || n->group <= 0)
        return n->phase;
    int k = n->id;
    while (k > 0 && g->nodes[k - 1]->group == n->group)
        k--;
    return g->nodes[k]->phase == KP_PHASE_BACKWARD ? KP_PHASE_BACKWARD : n->phase;
}

int kp_group_end(const KpGraph *g, const KpNode *n)
{
    int end = n->id + 1;
    while (n->group > 0 && end < g->nnodes && g->nodes[end]->group == n->group)
        end++;
    return end;
}

KpNode *kp_node_new(KpGraph *g, KpOp op, const char *name, const char *where, int nin,
                    KpValue *const *in)
{
    assert(op >= 0 && op < KP_OP_COUNT);
    assert(nin >= 0 && nin <= KP_MAX_IN);
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 16;
        KpNode **ns = kp_arena_grow(&g->arena, g->nodes, (size_t)g->nnodes, (size_t)cap,
                                    sizeof *ns);
        if (!ns)
            return NULL;
        g->nodes = ns;
        g->cap_nodes = cap;
    }
    KpNode *n = kp_arena_alloc(&g->arena, sizeof *n);
    if (!n)
        return NULL;
    n->op = op;
    n->name = kp_arena_strdup(&g->arena, name);
    n->where = kp_arena_strdup(&g->arena, where);
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = in[i];
    n->out = kp_value_new(g, KP_ROLE_ACT, KP_F32, 0, NULL);
    if (!n->out)
        return NULL;
    n->out->producer = n;
    n->id = g->nnodes;
    n->key = g->next_key++;
    g->nodes[g->nnodes++] = n;
    return n;
}

/* A node that reads the same value twice (add(x, x)) is listed once. */
static bool uses_already(const KpNode *n, int i)
{
    for (int j = 0; j < i; j++)
        if (n->in[j] == n->in[i])
            return true;
    return false;
}

void kp_fill_uses(KpGraph *g)
{
    for (int i = 0; i < g->nvalues; i++)
        g->values[i]->nusers = 0;
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        for (int i = 0; i < n->nin; i++)
            if (!uses_already(n, i))
                n->in[i]->nusers++;
    }
    for (int i = 0; i < g->nvalues; i++) {
        KpValue *v = g->values[i];
        v->users = v->nusers ? kp_arena_alloc(&g->arena, (size_t)v->nusers * sizeof *v->users)
                             : NULL;
        assert(!v->nusers || v->users || g->arena.failed);
        v->nusers = 0;
    }
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        for (int i = 0; i < n->nin; i++)
            if (!uses_already(n, i) && n->in[i]->users)
                n->in[i]->users[n->in[i]->nusers++] = n;
    }
}

int64_t kp_value_sample_size(const KpValue *v)
{
    int64_t size = 1;
    int first = v->rank > 0 && v->dims[0] == KP_DIM_N ? 1 : 0;
    for (int i = first; i < v->rank; i++)
        size *= v->dims[i];
    return size;
}

int64_t kp_value_numel(const KpValue *v, int64_t n)
{
    int64_t size = kp_value_sample_size(v);
    if (v->rank > 0 && v->dims[0] == KP_DIM_N)
        size *= n;
    return size;
}

/* Append to buf, keeping it terminated when it is full. */
static void put(char *buf, size_t size, size_t *len, const char *s)
{
    while (*s && *len + 1 < size)
        buf[(*len)++] = *s++;
    buf[*len] = '\0';
}

char *kp_shape_str(const KpValue *v, char *buf, size_t size)
{
    assert(size > 0);
    size_t len = 0;
    buf[0] = '\0';
    put(buf, size, &len, "[");
    for (int i = 0; i < v->rank; i++) {
        char dim[32];
        if (v->dims[i] == KP_DIM_N)
            snprintf(dim, sizeof dim, "%sN", i ? "," : "");
        else
            snprintf(dim, sizeof dim, "%s%" PRId64, i ? "," : "", v->dims[i]);
        put(buf, size, &len, dim);
    }
    put(buf, size, &len, "]");
    return buf;
}
