/*
 * fusion.c — elementwise consumers become epilogues of their producer.
 *
 * A consumer C (relu, leaky_relu, sigmoid, tanh, add, mul and the four
 * activation gradients) that reads a value v made by a producer P whose
 * emitter applies epilogues (kp_op_takes_epilogue: the elementwise maps,
 * dense, dense_grad_x, conv2d, batchnorm and batchnorm_train) is folded
 * into P:
 *
 *     %4 = dense %0, %1, %2            %5 = dense %0, %1, %2, %3 -> relu -> add(%3)
 *     %5 = relu %4               =>
 *     %6 = add %5, %3
 *
 * P then computes C's result at its store, and v is never written.  That
 * is allowed when
 *   - v's only user is C, and C reads it once;
 *   - v is none of the graph's named values (output, d_output, d_input,
 *     the loss) nor the input or a parameter;
 *   - P and C run in the same phase, and neither writes a gradient slot
 *     (an accumulating store: keep it simple);
 *   - for the *_grad ops v is operand 0 (dy: the op is applied to the
 *     running value); add and mul are commutative, but add of three or
 *     more is fused only through its first operand so the sum keeps its
 *     order ((a + b) + c) bit for bit;
 *   - C's other operands are computed before P (they become P's inputs)
 *     and have v's element count;
 *   - P keeps at most KP_MAX_IN inputs and KP_MAX_EPI epilogues.
 * C's other operands are appended to P's inputs (reusing a slot already
 * appended for the same value, or one of the op's own operands when its
 * input count is fixed; see ir/epilogue.h), its output becomes P's
 * output, and C and v leave the graph.  The pass repeats until nothing
 * fuses, so a chain dense -> relu -> add -> relu becomes one node.
 */
#include "passes.h"
#include "../ir/epilogue.h"

#include <assert.h>

static bool is_grad_op(KpOp op)
{
    return op == KP_OP_relu_grad || op == KP_OP_leaky_relu_grad || op == KP_OP_sigmoid_grad ||
           op == KP_OP_tanh_grad;
}

static bool named(const KpGraph *g, const KpValue *v)
{
    return v == g->output || v == g->d_output || v == g->d_input || v == g->loss_value ||
           v == g->input || v == g->target || v->role == KP_ROLE_PARAM ||
           v->role == KP_ROLE_INPUT || v->role == KP_ROLE_GRAD;
}

static int reads(const KpNode *n, const KpValue *v)
{
    int c = 0;
    for (int i = 0; i < n->nin; i++)
        c += n->in[i] == v;
    return c;
}

/* The slot of P holding w for an epilogue: an appended one, or an own
 * operand when P's input count is fixed; -1 if none. */
static int slot_of(const KpNode *p, const KpValue *w)
{
    int own = kp_node_op_nin(p);
    int from = kp_op_nin(p->op) >= 0 ? 0 : own;
    for (int i = from; i < p->nin; i++)
        if (p->in[i] == w)
            return i;
    return -1;
}

/* Whether C can be fused into the producer of its operand j. */
static bool can_fuse(const KpGraph *g, const KpNode *c, int j)
{
    const KpValue *v = c->in[j];
    const KpNode *p = v->producer;
    if (!p || c->nepi > 0 || c->out->role == KP_ROLE_GRAD || p->out->role == KP_ROLE_GRAD)
        return false;
    if (!kp_op_takes_epilogue(p->op) || p->phase != c->phase || p->nepi >= KP_MAX_EPI)
        return false;
    if (v->nusers != 1 || reads(c, v) != 1 || named(g, v) || v->dtype != KP_F32)
        return false;
    if (is_grad_op(c->op) && j != 0)
        return false;
    if (c->op == KP_OP_add && j != 0 && c->nin > 2)
        return false;
    int extra = 0;
    for (int i = 0; i < c->nin; i++) {
        const KpValue *w = c->in[i];
        if (i == j)
            continue;
        if (w->dtype != KP_F32 || w->dims[0] != v->dims[0] ||
            kp_value_sample_size(w) != kp_value_sample_size(v))
            return false;
        if (w->producer && w->producer->id >= p->id)
            return false;
        if (slot_of(p, w) < 0) {
            bool seen = false;
            for (int k = 0; k < i; k++)
                seen |= k != j && c->in[k] == w;
            extra += !seen;
        }
    }
    return p->nin + extra <= KP_MAX_IN;
}

/* Fold c into the producer of its operand j; c is removed from the graph. */
static void fuse(KpGraph *g, KpNode *c, int j)
{
    KpValue *v = c->in[j];
    KpNode *p = v->producer;
    KpEpilogue ep = {.op = c->op, .alpha = c->attr.alpha};
    for (int i = 0; i < c->nin; i++) {
        if (i == j)
            continue;
        int s = slot_of(p, c->in[i]);
        if (s < 0) {
            s = p->nin++;
            p->in[s] = c->in[i];
        }
        ep.arg[ep.nargs++] = s;
    }
    p->epi[p->nepi++] = ep;
    p->out = c->out;
    c->out->producer = p;

    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i] != c) {
            g->nodes[k] = g->nodes[i];
            g->nodes[k]->id = k;
            k++;
        }
    g->nnodes = k;
    k = 0;
    for (int i = 0; i < g->nvalues; i++)
        if (g->values[i] != v) {
            g->values[k] = g->values[i];
            g->values[k]->id = k;
            k++;
        }
    g->nvalues = k;
    kp_fill_uses(g);
}

/* One fusion anywhere in the graph; false when none is left. */
static bool fuse_one(KpGraph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        KpNode *c = g->nodes[i];
        if (!kp_op_is_epilogue(c->op))
            continue;
        for (int j = 0; j < c->nin; j++)
            if (can_fuse(g, c, j)) {
                fuse(g, c, j);
                return true;
            }
    }
    return false;
}

int kp_pass_fusion(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    (void)d;
    int before = g->nnodes, fused = 0;
    kp_fill_uses(g);
    while (fuse_one(g))
        fused++;
    int hosts = 0;
    for (int i = 0; i < g->nnodes; i++)
        hosts += g->nodes[i]->nepi > 0;
    kp_pass_report(o, "fused %d epilogues into %d nodes: %d nodes -> %d", fused, hosts, before,
                   g->nnodes);
    return 0;
}
