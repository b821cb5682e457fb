/*
 * verify.c — the structural checks QBE calls ssacheck: run between passes
 * so that a pass that breaks the graph is caught right after it.
 *
 * Checked: nodes numbered by position and in topological order (every
 * input is the model input, a parameter, or produced by an earlier node);
 * input counts agree with the op table; every value that is read or
 * produced has a shape; producer and users links agree with the nodes;
 * parameter names are unique; the graph has an input and an output; in a
 * train graph, no node reads a value of a later phase (KpPhase order) and
 * every gradient names its parameter; only the loss is a scalar; a fused
 * loss (ir.h's KpFusedLoss) is well formed; the
 * members of a group (group.c) are adjacent, of one phase (or BACKWARD
 * first, then INPUT_GRAD nodes that read no INPUT_GRAD value), and do not
 * read each other's outputs.  A
 * failure is a karpc bug, so the message starts "internal error:".
 */
#include "passes.h"
#include "../ir/epilogue.h"

#include <string.h>

static const char *node_label(const KpNode *n)
{
    return n->name ? n->name : "?";
}

static bool lists_user(const KpValue *v, const KpNode *n)
{
    for (int i = 0; i < v->nusers; i++)
        if (v->users[i] == n)
            return true;
    return false;
}

static bool reads(const KpNode *n, const KpValue *v)
{
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] == v)
            return true;
    return false;
}

/* The order phases run in: PREPARE (the prepare entry) before everything. */
static int phase_rank(KpPhase p)
{
    return p == KP_PHASE_PREPARE ? -1 : (int)p;
}

static bool value_in_graph(const KpGraph *g, const KpValue *v)
{
    return v && v->id >= 0 && v->id < g->nvalues && g->values[v->id] == v;
}

/* Fused epilogues (ir.h's KpEpilogue): a producer that applies them, ops
 * that can be one, arguments that are inputs shaped like the output. */
static int check_epilogues(const KpNode *n, int k, KpDiag *d)
{
    if (n->nepi < 0 || n->nepi > KP_MAX_EPI)
        return kp_error(d, "internal error: node %d (%s): %d epilogues, at most %d", k,
                        node_label(n), n->nepi, KP_MAX_EPI);
    if (n->nepi > 0 && !kp_op_takes_epilogue(n->op))
        return kp_error(d, "internal error: node %d (%s): %s does not apply epilogues", k,
                        node_label(n), kp_op_name(n->op));
    for (int j = 0; j < n->nepi; j++) {
        const KpEpilogue *ep = &n->epi[j];
        if ((unsigned)ep->op >= KP_OP_COUNT || !kp_op_is_epilogue(ep->op))
            return kp_error(d, "internal error: node %d (%s): epilogue %d is not an elementwise "
                            "op that can be fused (op %d)", k, node_label(n), j, (int)ep->op);
        int want = kp_op_nin(ep->op);
        if (ep->nargs < 0 || ep->nargs > KP_MAX_IN - 1 || (want >= 0 && ep->nargs != want - 1) ||
            (want < 0 && ep->nargs < 1))
            return kp_error(d, "internal error: node %d (%s): epilogue %d (%s) has %d operands "
                            "besides the running value", k, node_label(n), j,
                            kp_op_name(ep->op), ep->nargs);
        for (int a = 0; a < ep->nargs; a++) {
            int i = ep->arg[a];
            if (i < 0 || i >= n->nin)
                return kp_error(d, "internal error: node %d (%s): epilogue %d (%s) reads input "
                                "%d, the node has %d", k, node_label(n), j,
                                kp_op_name(ep->op), i, n->nin);
            if (n->in[i] && n->out && (kp_value_numel(n->in[i], 1) != kp_value_numel(n->out, 1) ||
                                       n->in[i]->dims[0] != n->out->dims[0]))
                return kp_error(d, "internal error: node %d (%s): epilogue %d (%s) reads %%%d, "
                                "whose element count differs from the output %%%d", k,
                                node_label(n), j, kp_op_name(ep->op), n->in[i]->id, n->out->id);
        }
    }
    return 0;
}

/* A fused loss (ir.h's KpFusedLoss): a producer that computes one, in
 * FORWARD and no group, the target an input, the loss and its gradient
 * its two aux outputs, in that order. */
static int check_loss(const KpGraph *g, const KpNode *n, int k, KpDiag *d)
{
    const KpFusedLoss *l = &n->loss;
    if (!l->on)
        return 0;
    if (!kp_op_takes_loss(n->op) || n->phase != KP_PHASE_FORWARD || n->group != 0)
        return kp_error(d, "internal error: node %d (%s): a %s in phase %d or a group cannot "
                        "compute a fused loss", k, node_label(n), kp_op_name(n->op), (int)n->phase);
    if (l->op != KP_OP_cross_entropy || l->grad_op != KP_OP_cross_entropy_grad ||
        l->target < 0 || l->target >= n->nin || n->in[l->target] != g->target)
        return kp_error(d, "internal error: node %d (%s): fused loss %s/%s with target slot %d",
                        k, node_label(n), kp_op_name(l->op), kp_op_name(l->grad_op), l->target);
    if (n->naux != 2 || n->aux[0] != g->loss_value || n->aux[1] != g->d_output ||
        kp_value_numel(n->aux[1], 1) != kp_value_numel(n->out, 1))
        return kp_error(d, "internal error: node %d (%s): a fused loss writes the loss and "
                        "d_output as its aux outputs", k, node_label(n));
    return 0;
}

/* A folded bias gradient (fusion.c): the one aux output of a pooling
 * gradient, a gradient slot of its channels, in no group (its sums over
 * the samples follow the node's parallel region). */
static int check_folded_bias(const KpNode *n, int k, KpDiag *d)
{
    if (!kp_op_takes_bias_grad(n->op) || n->naux == 0)
        return 0;
    const KpValue *b = kp_node_folded_bias(n);
    if (!b || b->role != KP_ROLE_GRAD || b->rank != 1 || n->out->rank != 4 ||
        b->dims[0] != n->out->dims[1] || n->group != 0)
        return kp_error(d, "internal error: node %d (%s): a %s folds one bias gradient of its "
                        "channels, in no group", k, node_label(n), kp_op_name(n->op));
    return 0;
}

static int check_node(const KpGraph *g, const KpNode *n, int k, KpDiag *d)
{
    const char *op = kp_op_name(n->op);
    if (n->id != k)
        return kp_error(d, "internal error: node %d (%s) has id %d", k, node_label(n), n->id);
    int want = kp_op_nin(n->op);
    /* inputs past the op's own are its epilogues' operands (epilogue.h) */
    int own = n->nepi > 0 || n->loss.on ? kp_node_op_nin(n) : n->nin;
    if ((want >= 0 && own != want) || (want < 0 && own < 1) || n->nin > KP_MAX_IN ||
        (n->nepi == 0 && want >= 0 && n->nin != want))
        return kp_error(d, "internal error: node %d (%s): %s has %d inputs, the op table says %d",
                        k, node_label(n), op, n->nin, want);
    if (check_epilogues(n, k, d) || check_loss(g, n, k, d) || check_folded_bias(n, k, d))
        return -1;
    for (int i = 0; i < n->nin; i++) {
        const KpValue *v = n->in[i];
        if (!value_in_graph(g, v))
            return kp_error(d, "internal error: node %d (%s): input %d is not a value of the graph",
                            k, node_label(n), i);
        if (v->producer && (v->producer->id >= k || g->nodes[v->producer->id] != v->producer))
            return kp_error(d, "internal error: node %d (%s): input %%%d is produced by a later "
                            "node (not in topological order)", k, node_label(n), v->id);
        if (!v->producer && v->role != KP_ROLE_INPUT && v->role != KP_ROLE_PARAM &&
            v->role != KP_ROLE_CONST)
            return kp_error(d, "internal error: node %d (%s): input %%%d has no producer", k,
                            node_label(n), v->id);
        if (v->rank < 1)
            return kp_error(d, "internal error: node %d (%s): input %%%d has no shape", k,
                            node_label(n), v->id);
        if (!lists_user(v, n))
            return kp_error(d, "internal error: node %d (%s): missing from the users of %%%d",
                            k, node_label(n), v->id);
        if (v->producer && phase_rank(v->producer->phase) > phase_rank(n->phase))
            return kp_error(d, "internal error: node %d (%s): reads %%%d of a later phase", k,
                            node_label(n), v->id);
    }
    if (n->naux < 0 || n->naux > KP_MAX_AUX)
        return kp_error(d, "internal error: node %d (%s): %d aux outputs", k, node_label(n),
                        n->naux);
    for (int o = 0; o < kp_node_nout(n); o++) {
        const KpValue *v = kp_node_output(n, o);
        if (!value_in_graph(g, v) || v->producer != n)
            return kp_error(d, "internal error: node %d (%s): its output %d does not name it as "
                            "producer", k, node_label(n), o);
        if (v->rank < 1 && v != g->loss_value)
            return kp_error(d, "internal error: node %d (%s): output %%%d has no shape", k,
                            node_label(n), v->id);
    }
    return 0;
}

static bool is_output_of(const KpNode *n, const KpValue *v)
{
    for (int o = 0; o < kp_node_nout(n); o++)
        if (kp_node_output(n, o) == v)
            return true;
    return false;
}

static int check_value(const KpGraph *g, const KpValue *v, KpDiag *d)
{
    for (int i = 0; i < v->nusers; i++)
        if (!reads(v->users[i], v))
            return kp_error(d, "internal error: %%%d lists node %d (%s) as a user, which does not "
                            "read it", v->id, v->users[i]->id, node_label(v->users[i]));
    if (v->producer && (v->producer->id < 0 || v->producer->id >= g->nnodes ||
                        g->nodes[v->producer->id] != v->producer || !is_output_of(v->producer, v)))
        return kp_error(d, "internal error: %%%d names a producer that is not its node", v->id);
    if (v->role == KP_ROLE_GRAD && (!v->grad_of || !value_in_graph(g, v->grad_of) ||
                                    v->grad_of->role != KP_ROLE_PARAM || !v->producer))
        return kp_error(d, "internal error: gradient %%%d names no parameter", v->id);
    if (v->role != KP_ROLE_PARAM)
        return 0;
    if (!v->name)
        return kp_error(d, "internal error: parameter %%%d has no name", v->id);
    for (int j = 0; j < v->id; j++) {
        const KpValue *u = g->values[j];
        if (u->role == KP_ROLE_PARAM && u->name && strcmp(u->name, v->name) == 0)
            return kp_error(d, "internal error: parameter name %s is used twice (%%%d and %%%d)",
                            v->name, u->id, v->id);
    }
    return 0;
}

/* Whether m may run in a group whose first member is n: the same phase,
 * or an INPUT_GRAD node that reads no INPUT_GRAD value in a group led by
 * a BACKWARD node (it runs there, before the other INPUT_GRAD nodes). */
static bool same_run(const KpNode *n, const KpNode *m)
{
    if (m->phase == n->phase)
        return true;
    if (n->phase != KP_PHASE_BACKWARD || m->phase != KP_PHASE_INPUT_GRAD)
        return false;
    for (int i = 0; i < m->nin; i++)
        if (m->in[i]->producer && m->in[i]->producer->phase == KP_PHASE_INPUT_GRAD)
            return false;
    return true;
}

/* The group of n, if any, starting at node k: adjacent members of one
 * phase (same_run), none reading another's output (they run at the same
 * time). */
static int check_group(const KpGraph *g, int k, KpDiag *d)
{
    const KpNode *n = g->nodes[k];
    if (n->group <= 0 || (k > 0 && g->nodes[k - 1]->group == n->group))
        return 0;
    int end = k;
    while (end < g->nnodes && g->nodes[end]->group == n->group)
        end++;
    for (int j = end; j < g->nnodes; j++)
        if (g->nodes[j]->group == n->group)
            return kp_error(d, "internal error: node %d (%s) of group %d is not next to the "
                            "group's other members", j, node_label(g->nodes[j]), n->group);
    for (int j = k; j < end; j++) {
        const KpNode *m = g->nodes[j];
        if (!same_run(n, m) || kp_op_is_view(m->op))
            return kp_error(d, "internal error: node %d (%s) cannot run in group %d", j,
                            node_label(m), n->group);
        for (int i = 0; i < m->nin; i++) {
            const KpNode *p = m->in[i]->producer;
            while (p && kp_op_is_view(p->op) && p->in[0]->producer)
                p = p->in[0]->producer;
            if (p && p->group == n->group)
                return kp_error(d, "internal error: node %d (%s) reads %%%d of its own group %d",
                                j, node_label(m), m->in[i]->id, n->group);
        }
    }
    return 0;
}

int kp_pass_verify(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (!value_in_graph(g, g->input) || g->input->role != KP_ROLE_INPUT)
        return kp_error(d, "internal error: the graph has no input value");
    if (!value_in_graph(g, g->output) || g->output->rank < 1)
        return kp_error(d, "internal error: the graph has no shaped output value");
    for (int k = 0; k < g->nnodes; k++)
        if (check_node(g, g->nodes[k], k, d) || check_group(g, k, d))
            return -1;
    for (int i = 0; i < g->nvalues; i++) {
        if (g->values[i]->id != i)
            return kp_error(d, "internal error: value %d has id %d", i, g->values[i]->id);
        if (check_value(g, g->values[i], d))
            return -1;
    }
    return 0;
}
