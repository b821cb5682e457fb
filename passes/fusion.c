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
 *
 * Before that, the nodes a batchnorm is lowered to in a train graph are
 * merged, each group into one node with several outputs (KpNode.aux), so
 * that one kernel goes over a channel's data while it is in cache:
 *
 *   stats = batchnorm_stats x, rm, rv            y, aux stats =
 *   y = batchnorm_train x, stats, w, b     =>      batchnorm_fwd x, rm, rv, w, b
 *
 *   dx = batchnorm_grad_x dy, x, stats, w        dx, aux dw, db =
 *   dw = batchnorm_grad_w dy, x, stats     =>      batchnorm_bwd dy, x, stats, w
 *   db = bias_grad dy
 *
 * The backward merge needs all three in one phase (a batchnorm right after
 * the input computes dx only for karp_backward's input gradient, in
 * another phase than its weight gradients: those stay apart).  The merged
 * node takes the epilogues that follow it like any other.
 *
 * Then a bias gradient that sums the output of a pooling gradient (a conv
 * with a bias, then a relu, then a pool: the relu's gradient is already
 * that node's epilogue) becomes the pooling gradient's aux output
 * (ir/epilogue.h's kp_op_takes_bias_grad):
 *
 *   %30 = maxpool2d_grad %28, %9 -> relu_grad(%8)     %30, %33 = maxpool2d_grad
 *   %33 = bias_grad %30                         =>        %28, %9 -> relu_grad(%8)
 *
 * The kernel sums each (n, c) plane of dx right after finishing it, while
 * it is in cache, and adds the sums of a channel in sample order after its
 * parallel region; bias_grad read all of dx again, from memory (the other
 * core's half of it across the cores).  Both in one phase, dx not the
 * node's loss or gradient slot, and only where bias_grad would run in a
 * parallel region of its own (not in its layer's group at a small batch).
 *
 * Last, the loss goes into the head.  cross_entropy and its gradient are
 * row-wise: each row of logits gives one term of the mean and one row of
 * d_output.  When the logits are the output of a dense (after its
 * epilogues) that nothing else reads, the two loss nodes become that
 * dense's fused loss (ir.h's KpFusedLoss):
 *
 *   %14 = dense %11, %12, %13                  %14, %16, %17 = dense %11, %12,
 *   %16 = cross_entropy %14, %15  [loss]  =>        %13, %15 => cross_entropy(%15)
 *   %17 = cross_entropy_grad %14, %15 [loss]
 *
 * Its GEMM then makes every work item span whole rows, and the item
 * computes its rows' terms and d_output right after storing them; the mean
 * of the terms follows the parallel region (backend/emit_dense.c).  The
 * node stays FORWARD: karp_forward, which has no target, runs it without
 * the loss.  At most LOSS_MAX_COLS classes.
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

/* --- batchnorm merges -------------------------------------------------------- */

/* n out of the node list (its outputs stay: the merge gave them a new producer). */
static void drop_node(KpGraph *g, const KpNode *n)
{
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i] != n) {
            g->nodes[k] = g->nodes[i];
            g->nodes[k]->id = k;
            k++;
        }
    g->nnodes = k;
}

static void adopt(KpNode *host, KpValue *v)
{
    host->aux[host->naux++] = v;
    v->producer = host;
}

/* batchnorm_stats + batchnorm_train -> batchnorm_fwd; true if merged. */
static bool merge_bn_forward(KpGraph *g, KpNode *t)
{
    if (t->op != KP_OP_batchnorm_train || t->nepi > 0)
        return false;
    KpValue *stats = t->in[1];
    KpNode *s = stats->producer;
    if (!s || s->op != KP_OP_batchnorm_stats || s->phase != t->phase || s->in[0] != t->in[0])
        return false;
    for (int i = 0; i < stats->nusers; i++)
        if (stats->users[i] != t && stats->users[i]->id < t->id)
            return false;   /* would read the statistics before they are made */
    KpValue *in[5] = {t->in[0], s->in[1], s->in[2], t->in[2], t->in[3]};
    t->op = KP_OP_batchnorm_fwd;
    t->nin = 5;
    for (int i = 0; i < 5; i++)
        t->in[i] = in[i];
    t->attr = s->attr;
    adopt(t, stats);
    drop_node(g, s);
    return true;
}

/* The node of g other than skip with op, phase and first input as given,
 * more inputs equal to in[1..nin) (nin counts dy), and a gradient output. */
static KpNode *sibling(const KpGraph *g, KpOp op, KpPhase phase, KpValue *const *in, int nin)
{
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        if (n->op != op || n->phase != phase || n->nepi > 0 || n->out->role != KP_ROLE_GRAD)
            continue;
        bool same = true;
        for (int i = 0; i < nin; i++)
            same &= n->in[i] == in[i];
        if (same)
            return n;
    }
    return NULL;
}

/* batchnorm_grad_x + batchnorm_grad_w + bias_grad -> batchnorm_bwd. */
static bool merge_bn_backward(KpGraph *g, KpNode *gx)
{
    if (gx->op != KP_OP_batchnorm_grad_x || gx->nepi > 0)
        return false;
    KpNode *gw = sibling(g, KP_OP_batchnorm_grad_w, gx->phase, gx->in, 3);
    KpNode *gb = sibling(g, KP_OP_bias_grad, gx->phase, gx->in, 1);
    if (!gw || !gb)
        return false;
    gx->op = KP_OP_batchnorm_bwd;
    adopt(gx, gw->out);
    adopt(gx, gb->out);
    drop_node(g, gw);
    drop_node(g, gb);
    return true;
}

static int merge_batchnorms(KpGraph *g)
{
    int merged = 0;
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        if (merge_bn_forward(g, n) || merge_bn_backward(g, n)) {
            merged++;
            kp_fill_uses(g);
            k = -1;     /* node ids changed: from the start */
        }
    }
    return merged;
}

/* --- bias gradients into the pooling gradients ------------------------------ */

/* Whether b would run in a parallel region of its own: too large for a
 * group (group.c's kp_group_too_large), or no other reader of its dy in
 * its phase is small enough for one.  Otherwise (small batches) it rides
 * in its layer's group with the weight gradient at no cost, and folding
 * it would only add the plane sums and their serial tail to the pooling
 * gradient: keras_cnn at batch 1, 2 threads, `karpc bench` in step,
 * 139.2 -> 141.5 us with the fold made there (docs/passes-fusion.md). */
static bool alone(const KpGraph *g, const KpNode *b)
{
    if (kp_group_too_large(g, b))
        return true;
    const KpValue *v = b->in[0];
    for (int i = 0; i < v->nusers; i++) {
        const KpNode *u = v->users[i];
        if (u != b && u->phase == b->phase && !kp_group_too_large(g, u))
            return false;
    }
    return true;
}

/* bias_grad of the output of a pooling gradient -> that node's aux output
 * (ir/epilogue.h's kp_op_takes_bias_grad), where the bias_grad would run
 * alone; true if folded. */
static bool fold_bias_grad(KpGraph *g, KpNode *b)
{
    if (b->op != KP_OP_bias_grad || b->nepi > 0 || b->nin != 1 || b->out->role != KP_ROLE_GRAD)
        return false;
    KpValue *v = b->in[0];
    KpNode *p = v->producer;
    if (!p || !kp_op_takes_bias_grad(p->op) || p->out != v || p->naux > 0 || p->loss.on ||
        p->phase != b->phase || v->rank != 4 || v->dtype != KP_F32 || b->out->rank != 1 ||
        b->out->dims[0] != v->dims[1] || !alone(g, b))
        return false;
    adopt(p, b->out);
    drop_node(g, b);
    kp_fill_uses(g);
    return true;
}

static int fold_bias_grads(KpGraph *g)
{
    int folded = 0;
    for (int k = 0; k < g->nnodes; k++)
        if (fold_bias_grad(g, g->nodes[k])) {
            folded++;
            k = -1;     /* node ids changed: from the start */
        }
    return folded;
}

/* --- the loss into the head ------------------------------------------------- */

/* Most columns (classes) a fused loss takes: a work item of the head's
 * GEMM then spans whole rows, which for a wide head at a small batch would
 * leave threads idle. */
enum { LOSS_MAX_COLS = 256 };

/* The LOSS node with op that reads v and t (and nothing else). */
static KpNode *loss_node(const KpGraph *g, KpOp op, const KpValue *v, const KpValue *t)
{
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        if (n->op == op && n->phase == KP_PHASE_LOSS && n->nin == 2 && n->in[0] == v &&
            n->in[1] == t && n->nepi == 0 && n->naux == 0)
            return n;
    }
    return NULL;
}

/* cross_entropy + cross_entropy_grad of the logits of a dense -> the
 * dense's fused loss (ir.h's KpFusedLoss): aux outputs the loss and
 * d_output, the target one more input.  True if merged. */
static bool merge_loss(KpGraph *g)
{
    KpValue *v = g->output, *t = g->target;
    KpNode *p = v ? v->producer : NULL;
    if (!p || !t || !g->loss_value || !g->d_output || !kp_op_takes_loss(p->op))
        return false;
    KpNode *loss = loss_node(g, KP_OP_cross_entropy, v, t);
    KpNode *grad = loss_node(g, KP_OP_cross_entropy_grad, v, t);
    if (!loss || !grad || loss->out != g->loss_value || grad->out != g->d_output)
        return false;
    if (p->phase != KP_PHASE_FORWARD || p->naux > 0 || p->loss.on || p->nin >= KP_MAX_IN ||
        p->out->role == KP_ROLE_GRAD || v->nusers != 2 || v->rank != 2 ||
        v->dims[1] > LOSS_MAX_COLS)
        return false;
    p->loss = (KpFusedLoss){.on = true, .op = loss->op, .grad_op = grad->op, .target = p->nin};
    p->in[p->nin++] = t;
    adopt(p, loss->out);
    adopt(p, grad->out);
    drop_node(g, loss);
    drop_node(g, grad);
    kp_fill_uses(g);
    return true;
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
    int merged = merge_batchnorms(g);
    while (fuse_one(g))
        fused++;
    int biases = fold_bias_grads(g);
    bool loss = merge_loss(g);
    int hosts = 0;
    for (int i = 0; i < g->nnodes; i++)
        hosts += g->nodes[i]->nepi > 0;
    kp_pass_report(o, "merged %d batchnorm node groups; fused %d epilogues into %d nodes; "
                   "folded %d bias gradients into pooling gradients%s: %d nodes -> %d", merged,
                   fused, hosts, biases, loss ? "; the loss into the head" : "", before,
                   g->nnodes);
    return 0;
}
