/*
 * autodiff.c — reverse-mode automatic differentiation, graph to graph.
 *
 * The forward nodes stay as they are.  After them the pass appends, in
 * this order: the loss and its gradient, the gradient nodes, and the
 * optimizer update; every appended node gets the phase it runs in (see
 * KpPhase in ir.h).  For the model of DESIGN.md:
 *
 *   x ─flatten─ %1 ─dense─ %4 ─relu─ %5 ─dense─ %8 (output)       FORWARD
 *                                                │  labels (target)
 *                             loss ─ cross_entropy(%8, t)          LOSS
 *                                    cross_entropy_grad(%8, t) = dy8 (d_output)
 *        dW2 = dense_grad_w(dy8, %5)   db2 = bias_grad(dy8)        BACKWARD
 *        dy5 = dense_grad_x(dy8, W2)
 *        dy4 = relu_grad(dy5, %4)
 *        dW1 = dense_grad_w(dy4, %1)   db1 = bias_grad(dy4)        BACKWARD
 *        dy1 = dense_grad_x(dy4, W1)                               INPUT_GRAD
 *        dx  = reshape(dy1) to [N,1,28,28]  (d_input)              INPUT_GRAD
 *        adam_update                                               UPDATE
 *
 * The walk: the gradient of the output is d_output — the loss gradient,
 * or, without a loss, a value karp_backward copies its dy into.  Then the
 * forward nodes are visited in reverse topological order.  When a node is
 * reached, every user of its output has been visited already, so the
 * contributions to its output's gradient are all known: one is used as it
 * is, several are summed with add nodes (a value that fans out).  The
 * node's gradient rule (ops.def's grad column, passes/grad_rules.c) then
 * appends the nodes for its inputs' gradients, each recorded as one more
 * contribution to that input.  A node nothing flows back into (a dead
 * branch) is skipped, so unsupported ops there do no harm.
 *
 * At the end the contributions to each trained parameter are summed into
 * its gradient value (role GRAD, grad_of set; stored in the gradient slab,
 * accumulated), and those to the model input into d_input.  Gradient
 * nodes that neither a parameter gradient nor d_input needs are removed.
 * A gradient node that some parameter gradient needs is BACKWARD; one
 * that only d_input needs is INPUT_GRAD, which karp_backward skips without
 * dx.
 */
#include <assert.h>
#include <string.h>

#include "grad_rules.h"

typedef struct Contrib {
    KpValue *v;
    struct Contrib *next;
} Contrib;

typedef struct AD {
    KpGraph *g;
    KpDiag *d;
    KpArena scratch;        /* freed when the pass ends */
    int nvalues0;           /* values before the pass: gradients flow to these */
    int nnodes0;            /* the forward nodes */
    Contrib **head, **tail; /* per value id < nvalues0: contributions, in order */
} AD;

static const struct {
    const char *name;
    KpOp loss, grad;
} losses[] = {
    {"cross_entropy", KP_OP_cross_entropy, KP_OP_cross_entropy_grad},
    {"mse", KP_OP_mse, KP_OP_mse_grad},
    {"bce", KP_OP_bce, KP_OP_bce_grad},
    {"bce_logits", KP_OP_bce_logits, KP_OP_bce_logits_grad},
};

static const struct {
    const char *name;
    KpOp op;
    int slots;              /* optimizer state floats per parameter float */
} optimizers[] = {
    {"sgd", KP_OP_sgd_update, 0},
    {"momentum", KP_OP_momentum_update, 1},
    {"adam", KP_OP_adam_update, 2},
};

enum { NLOSSES = sizeof losses / sizeof losses[0], NOPTS = sizeof optimizers / sizeof optimizers[0] };

static int oom(AD *ad)
{
    return kp_error(ad->d, "%s: out of memory", ad->g->file ? ad->g->file : "<model>");
}

static int contribute(AD *ad, KpValue *v, KpValue *grad)
{
    assert(v->id < ad->nvalues0);
    Contrib *c = kp_arena_alloc(&ad->scratch, sizeof *c);
    if (!c)
        return oom(ad);
    c->v = grad;
    if (ad->tail[v->id])
        ad->tail[v->id]->next = c;
    else
        ad->head[v->id] = c;
    ad->tail[v->id] = c;
    return 0;
}

/* The gradient of v: its one contribution, or their sum, added left to
 * right by add nodes of up to KP_MAX_IN inputs.  NULL if nothing flows
 * back into v; NULL with a diagnostic on failure (*failed set). */
static KpValue *gradient_of(AD *ad, const KpValue *v, bool *failed)
{
    Contrib *c = ad->head[v->id];
    if (!c)
        return NULL;
    /* Sums are named after the layer whose output (or parameter) they are
     * the gradient of. */
    KpNode input_place = {.name = "input", .where = "input"};
    const KpNode *at = v->producer ? v->producer : v == ad->g->input ? &input_place : c->v->producer;
    KpValue *acc = c->v;
    for (c = c->next; c;) {
        KpValue *in[KP_MAX_IN] = {acc};
        int nin = 1;
        for (; c && nin < KP_MAX_IN; c = c->next)
            in[nin++] = c->v;
        acc = kp_grad_node(ad->g, at, KP_OP_add, nin, in, ad->d);
        if (!acc) {
            *failed = true;
            return NULL;
        }
    }
    return acc;
}

/* The loss and its gradient d_output (LOSS), or without a loss a bare
 * d_output value for karp_backward's dy. */
static int append_loss(AD *ad)
{
    KpGraph *g = ad->g;
    KpValue *out = g->output;
    if (strcmp(g->loss, "none") == 0) {
        g->d_output = kp_value_new(g, KP_ROLE_INPUT, KP_F32, out->rank, out->dims);
        return g->d_output ? 0 : oom(ad);
    }
    int i = 0;
    while (i < NLOSSES && strcmp(losses[i].name, g->loss) != 0)
        i++;
    assert(i < NLOSSES && "the frontend accepts only known losses");
    bool labels = losses[i].loss == KP_OP_cross_entropy;
    g->target = labels ? kp_value_new(g, KP_ROLE_INPUT, KP_I32, 1, (int64_t[]){KP_DIM_N})
                       : kp_value_new(g, KP_ROLE_INPUT, KP_F32, out->rank, out->dims);
    if (!g->target)
        return oom(ad);
    KpNode place = {.name = g->loss, .where = "loss"};
    KpValue *in[2] = {out, g->target};
    g->loss_value = kp_grad_node(g, &place, losses[i].loss, 2, in, ad->d);
    if (!g->loss_value)
        return -1;
    g->loss_value->producer->phase = KP_PHASE_LOSS;
    g->d_output = kp_grad_node(g, &place, losses[i].grad, 2, in, ad->d);
    if (!g->d_output)
        return -1;
    g->d_output->producer->phase = KP_PHASE_LOSS;
    return 0;
}

/* The reverse walk over the forward nodes (see the top of the file). */
static int walk_back(AD *ad)
{
    KpGraph *g = ad->g;
    if (contribute(ad, g->output, g->d_output))
        return -1;
    for (int k = ad->nnodes0 - 1; k >= 0; k--) {
        KpNode *n = g->nodes[k];
        bool failed = false;
        KpValue *dy = gradient_of(ad, n->out, &failed);
        if (failed)
            return -1;
        if (!dy)
            continue;
        KpValue *dx[KP_MAX_IN] = {0};
        if (kp_grad_rule(g, n, dy, dx, ad->d))
            return -1;
        for (int i = 0; i < n->nin; i++)
            if (dx[i] && contribute(ad, n->in[i], dx[i]))
                return -1;
    }
    return 0;
}

/* A gradient value made by this pass for this use alone: it may take a
 * storage of its own (the gradient slab, the caller's dx).  Phases are not
 * set yet: FORWARD here means an appended gradient node, not the loss. */
static bool fresh(const AD *ad, const KpValue *v)
{
    return v->producer && v->producer->id >= ad->nnodes0 && v->producer->phase == KP_PHASE_FORWARD &&
           v->nusers == 0 && v != ad->g->d_output && v->role == KP_ROLE_ACT;
}

/* Parameter gradients (role GRAD) and d_input from the contributions. */
static int collect(AD *ad)
{
    KpGraph *g = ad->g;
    bool failed = false;
    KpValue **grads = kp_arena_alloc(&ad->scratch, (size_t)ad->nvalues0 * sizeof *grads);
    if (!grads)
        return oom(ad);
    for (int i = 0; i < ad->nvalues0; i++)
        if (kp_value_trainable(g->values[i]) && !(grads[i] = gradient_of(ad, g->values[i], &failed)) && failed)
            return -1;
    KpValue *dx = gradient_of(ad, g->input, &failed);
    if (failed)
        return -1;
    kp_fill_uses(g);
    for (int i = 0; i < ad->nvalues0; i++) {
        if (!grads[i])
            continue;
        assert(fresh(ad, grads[i]) && "a gradient rule shares a parameter's gradient");
        grads[i]->role = KP_ROLE_GRAD;
        grads[i]->grad_of = g->values[i];
    }
    if (dx && !fresh(ad, dx)) {
        /* Shared with another use: d_input becomes a view of it, which the
         * memory plan and the backends copy into the caller's dx. */
        KpNode place = {.name = "input", .where = "input"};
        KpNode *r = kp_node_new(g, KP_OP_reshape, place.name, place.where, 1, &dx);
        if (!r)
            return oom(ad);
        r->attr.reshape_rank = dx->rank - 1;
        memcpy(r->attr.reshape_dims, dx->dims + 1, (size_t)(dx->rank - 1) * sizeof *dx->dims);
        if (kp_node_infer_shape(g, r, ad->d))
            return -1;
        dx = r->out;
    }
    g->d_input = dx;
    return 0;
}

/* The optimizer step over all trained parameters (UPDATE). */
static int append_update(AD *ad)
{
    KpGraph *g = ad->g;
    g->opt_slots = 0;
    if (strcmp(g->optimizer, "none") == 0)
        return 0;
    int i = 0;
    while (i < NOPTS && strcmp(optimizers[i].name, g->optimizer) != 0)
        i++;
    assert(i < NOPTS && "the frontend accepts only known optimizers");
    KpNode *n = kp_node_new(g, optimizers[i].op, "optimizer", "optimizer", 0, NULL);
    if (!n)
        return oom(ad);
    n->attr.optim = g->optim;
    n->phase = KP_PHASE_UPDATE;
    g->opt_slots = optimizers[i].slots;
    return kp_node_infer_shape(g, n, ad->d);
}

/* Remove the appended nodes nothing needs, then number nodes and values
 * afresh. */
static int sweep(AD *ad)
{
    KpGraph *g = ad->g;
    bool *needed = kp_arena_alloc(&ad->scratch, (size_t)g->nvalues * sizeof *needed);
    bool *dead = kp_arena_alloc(&ad->scratch, (size_t)g->nvalues * sizeof *dead);
    if (!needed || !dead)
        return oom(ad);
    for (int i = 0; i < g->nvalues; i++)
        needed[i] = g->values[i]->role == KP_ROLE_GRAD;
    needed[g->d_output->id] = true;
    if (g->loss_value)
        needed[g->loss_value->id] = true;
    if (g->d_input)
        needed[g->d_input->id] = true;
    int kept = ad->nnodes0;
    for (int k = g->nnodes - 1; k >= ad->nnodes0; k--) {
        KpNode *n = g->nodes[k];
        if (!needed[n->out->id] && n->phase != KP_PHASE_UPDATE) {
            dead[n->out->id] = true;
            continue;
        }
        for (int i = 0; i < n->nin; i++)
            needed[n->in[i]->id] = true;
    }
    for (int k = ad->nnodes0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        if (dead[n->out->id])
            continue;
        n->id = kept;
        g->nodes[kept++] = n;
    }
    g->nnodes = kept;
    int nv = 0;
    for (int i = 0; i < g->nvalues; i++) {
        if (dead[i])
            continue;
        g->values[i]->id = nv;
        g->values[nv++] = g->values[i];
    }
    g->nvalues = nv;
    return 0;
}

/* BACKWARD for what a parameter gradient needs, INPUT_GRAD for the rest. */
static int set_phases(AD *ad)
{
    KpGraph *g = ad->g;
    bool *for_params = kp_arena_alloc(&ad->scratch, (size_t)g->nvalues * sizeof *for_params);
    if (!for_params)
        return oom(ad);
    for (int i = 0; i < g->nvalues; i++)
        for_params[i] = g->values[i]->role == KP_ROLE_GRAD;
    for (int k = g->nnodes - 1; k >= ad->nnodes0; k--) {
        KpNode *n = g->nodes[k];
        if (n->phase == KP_PHASE_LOSS || n->phase == KP_PHASE_UPDATE)
            continue;
        n->phase = for_params[n->out->id] ? KP_PHASE_BACKWARD : KP_PHASE_INPUT_GRAD;
        if (n->phase == KP_PHASE_BACKWARD)
            for (int i = 0; i < n->nin; i++)
                for_params[n->in[i]->id] = true;
    }
    return 0;
}

int kp_pass_autodiff(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    assert(g->training && g->output && g->input && !g->d_output);
    AD ad = {.g = g, .d = d, .nvalues0 = g->nvalues, .nnodes0 = g->nnodes};
    kp_arena_init(&ad.scratch);
    ad.head = kp_arena_alloc(&ad.scratch, (size_t)g->nvalues * sizeof *ad.head);
    ad.tail = kp_arena_alloc(&ad.scratch, (size_t)g->nvalues * sizeof *ad.tail);
    int rc = !ad.head || !ad.tail ? oom(&ad) : 0;
    if (rc == 0)
        rc = append_loss(&ad);
    if (rc == 0)
        rc = walk_back(&ad);
    if (rc == 0)
        rc = collect(&ad);
    if (rc == 0)
        rc = append_update(&ad);
    if (rc == 0)
        rc = sweep(&ad);
    if (rc == 0)
        rc = set_phases(&ad);
    if (rc == 0 && g->arena.failed)
        rc = oom(&ad);
    kp_arena_free(&ad.scratch);
    kp_fill_uses(g);
    return rc;
}
