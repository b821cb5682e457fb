/*
 * memplan.c — where every value lives at run time.
 *
 *   parameter slab (floats)                         workspace (bytes)
 *   +-------------+--+-----+-- ... --+------------+  +--------+----+--------+--
 *   |dense1.weight|  |bias |         |running_mean|  | %4, %9 |    | %6     |...
 *   +-------------+--+-----+-- ... --+------------+  +--------+----+--------+--
 *   trained parameters    trainable_floats | running statistics
 *   each start 16-float aligned                      each start 64-byte aligned,
 *                                                    max_batch * sample * 4 bytes
 *
 * Parameters are laid out in value order, the trained ones first and the
 * frozen ones (running statistics) after them, so the optimizer walks one
 * range [0, trainable_floats).  Both graphs of a model are lowered from
 * one spec, so they get the same layout.
 *
 * Views (flatten, reshape, dropout in inference) are the same floats as
 * their input, so they share its storage and offset.  The model input is
 * the caller's x.  The graph output is the caller's y; if the output is a
 * view, the view's value is still @y and its input keeps its own storage —
 * the backend copies.
 *
 * Train graphs (after autodiff) add: each parameter gradient in the
 * gradient slab at its parameter's offset (@grad+K; the kernels writing it
 * accumulate), the target in the caller's target buffer, the input
 * gradient in the caller's dx (a view there is copied, as for @y), the
 * optimizer update over the parameter slab (@p+0).  The output stays in
 * the workspace, where the loss and the backward read it; the loss scalar
 * and a loss-less model's d_output (karp_backward's dy) are workspace
 * values like the others.  Dropout is no view in a train graph: it is
 * lowered to mul(x, dropout_mask(x)), and the mask, batchnorm's batch
 * statistics [2,C] (which do not scale with the batch) and concat's
 * gradients (slice, a copy) are workspace values like the others.
 * batchnorm_stats also writes the running statistics, in place in the
 * parameter slab; that is a side effect, not its output.  PREPARE nodes
 * (values computed once from the parameters) are not placed here: their
 * outputs live in the prepared slab (KP_STORE_PREP) and count as
 * parameters for the workspace.
 *
 * Workspace reuse (o->memplan; --no-memplan gives every value its own
 * range).  A view and its input are one buffer: the root of a workspace
 * value is the value that owns the bytes (a view's root is its input's).
 * The schedule is the order every entry point runs nodes in: the FORWARD,
 * LOSS, BACKWARD, INPUT_GRAD and UPDATE nodes, each phase in node order
 * (PREPARE nodes skipped; an INPUT_GRAD node listed between two BACKWARD
 * ones runs after all of them in karp_backward, unless it is a member of
 * a group led by a BACKWARD node: kp_node_run_phase).  Each root is live over
 * [def, last] in the schedule: def is its producer's position, last the
 * largest position of a node reading it or any view of it.  Every entry
 * runs a subsequence of the schedule, and the workspace persists between
 * calls, so this liveness holds for each entry once these values are
 * widened for what the entries do outside the nodes:
 *
 *   the loss scalar   train_step reads it after the UPDATE: last = end
 *   the output        karp_forward copies it after the last FORWARD node:
 *                     last >= that node's position
 *   d_output          karp_backward copies dy into it before the BACKWARD
 *                     nodes, while the workspace holds what the FORWARD
 *                     nodes (of the matching karp_forward) left; no FORWARD
 *                     value the backward reads may share its bytes, so
 *                     def = the position after the FORWARD nodes, even
 *                     when the loss gradient writes it later
 *   forward values    karp_backward may be called again after one
 *   read backward     karp_forward (the second call accumulates the same
 *                     gradients again), so a value a FORWARD node makes and
 *                     a BACKWARD or INPUT_GRAD node reads lives until the
 *                     last BACKWARD or INPUT_GRAD node — but d_output,
 *                     which a head with a fused loss makes in the FORWARD
 *                     phase (fusion.c): karp_backward writes it anew
 *
 * Buffers (a root, and the map outputs written in place over it) are
 * placed offline, largest first, each in the smallest gap left by the
 * placed buffers whose live ranges meet its own, else above them.
 *
 * In place: a node whose op is a map (kp_emit_map: relu, leaky_relu,
 * sigmoid, tanh, add, mul, relu_grad, leaky_relu_grad, sigmoid_grad,
 * tanh_grad, mse_grad, bce_grad, bce_logits_grad) reads element i of each
 * input only to write element i of its output, so it may write over an
 * input whose root dies at this node (no view of it is read later) and
 * spans the same bytes; the output joins the input's buffer.
 * Not d_output (karp_backward writes it outside the schedule), nor
 * anything else: gemm, conv, pool, softmax read other elements than the
 * one they write.  The backend drops noalias for overlapping pointers.
 *
 * Groups (passes/group.c): the members of a group run at the same time,
 * so they share one position in the schedule, their first member's: what
 * any member reads lives until then, and every member's output is live
 * from then, so no member's output takes bytes another member reads.  No
 * member writes in place: another member may read the same input.
 */
#include "passes.h"

#include <assert.h>

enum { PARAM_ALIGN_FLOATS = 16, ACT_ALIGN_BYTES = 64 };

/* Ops emitted through kp_emit_map: element i of the output from element
 * i of each input only, so the output may overwrite a dying input. */
static const bool in_place_ok[KP_OP_COUNT] = {
    [KP_OP_relu] = true,         [KP_OP_leaky_relu] = true,   [KP_OP_sigmoid] = true,
    [KP_OP_tanh] = true,         [KP_OP_add] = true,          [KP_OP_mul] = true,
    [KP_OP_relu_grad] = true,    [KP_OP_leaky_relu_grad] = true,
    [KP_OP_sigmoid_grad] = true, [KP_OP_tanh_grad] = true,    [KP_OP_mse_grad] = true,
    [KP_OP_bce_grad] = true,     [KP_OP_bce_logits_grad] = true,
};

static int64_t align_up(int64_t x, int64_t a)
{
    return (x + a - 1) / a * a;
}

/* Lay out the parameters that are (not) trained from floats on. */
static int64_t place_params(KpGraph *g, bool trained, int64_t floats)
{
    for (int i = 0; i < g->nvalues; i++) {
        KpValue *v = g->values[i];
        if (v->role != KP_ROLE_PARAM || kp_value_trainable(v) != trained)
            continue;
        floats = align_up(floats, PARAM_ALIGN_FLOATS);
        v->storage = KP_STORE_PARAM;
        v->offset = floats;
        floats += kp_value_numel(v, 1);
    }
    return align_up(floats, PARAM_ALIGN_FLOATS);
}

/* Bytes v takes in the workspace at max_batch, rounded to the alignment. */
static int64_t ws_bytes(const KpGraph *g, const KpValue *v)
{
    return align_up(kp_value_numel(v, g->max_batch) * (int64_t)sizeof(float), ACT_ALIGN_BYTES);
}

/* Where a node's output goes when it is not a workspace value of its
 * own; false for a workspace value (or a view of one). */
static bool place_fixed(KpGraph *g, KpNode *n, KpDiag *d, int *rc)
{
    KpValue *v = n->out;
    *rc = 0;
    if (n->phase == KP_PHASE_UPDATE) {
        v->storage = KP_STORE_PARAM;
        *rc = kp_node_infer_shape(g, n, d);   /* now [trainable_floats] */
    } else if (v->role == KP_ROLE_GRAD) {
        assert(v->grad_of && v->grad_of->storage == KP_STORE_PARAM);
        v->storage = KP_STORE_GRAD;
        v->offset = v->grad_of->offset;
    } else if (v == g->d_input) {
        v->storage = KP_STORE_DX;
    } else if (v == g->output && !g->training) {
        v->storage = KP_STORE_OUTPUT;
    } else if (kp_op_is_view(n->op) && n->in[0]->storage != KP_STORE_WORKSPACE) {
        assert(n->in[0]->storage != KP_STORE_NONE);
        v->storage = n->in[0]->storage;
        v->offset = n->in[0]->offset;
    } else {
        return false;
    }
    return true;
}

/* An aux output (fusion.c's merges): a parameter gradient in the
 * gradient slab, else a workspace value (false). */
static bool place_aux_grad(KpValue *v)
{
    if (v->role != KP_ROLE_GRAD)
        return false;
    assert(v->grad_of && v->grad_of->storage == KP_STORE_PARAM);
    v->storage = KP_STORE_GRAD;
    v->offset = v->grad_of->offset;
    return true;
}

/* --no-memplan: every workspace value its own range, in node order. */
static int plan_unshared(KpGraph *g, KpDiag *d)
{
    int64_t bytes = 0;
    if (g->d_output && !g->d_output->producer) {
        g->d_output->storage = KP_STORE_WORKSPACE;
        g->d_output->offset = 0;
        bytes = ws_bytes(g, g->d_output);
    }
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        KpValue *v = n->out;
        int rc;
        if (n->phase == KP_PHASE_PREPARE)
            continue;
        if (place_fixed(g, n, d, &rc)) {
            if (rc)
                return -1;
        } else if (kp_op_is_view(n->op)) {
            v->storage = KP_STORE_WORKSPACE;
            v->offset = n->in[0]->offset;
        } else {
            v->storage = KP_STORE_WORKSPACE;
            v->offset = bytes;
            bytes += ws_bytes(g, v);
        }
        for (int a = 0; a < n->naux; a++)
            if (!place_aux_grad(n->aux[a])) {
                n->aux[a]->storage = KP_STORE_WORKSPACE;
                n->aux[a]->offset = bytes;
                bytes += ws_bytes(g, n->aux[a]);
            }
    }
    g->workspace_bytes = bytes;
    return 0;
}

/* --- the planned workspace ------------------------------------------------ */

/* A buffer: one workspace range, held by a root and the map outputs
 * written in place over it, one after the other. */
typedef struct Buffer {
    int def, last;          /* the union of its roots' live ranges */
    int64_t size, off;
} Buffer;

typedef struct Plan {
    KpGraph *g;
    int *root;              /* value id -> the value owning its bytes; -1: not workspace */
    int *def, *last;        /* by root id */
    int *buf;               /* root id -> its buffer */
    Buffer *bufs;
    int nbufs;
    int *order;             /* buffers, largest first */
    int64_t *lo, *hi;       /* scratch: the ranges a buffer must avoid */
    int64_t peak;
    int shared, in_place;
} Plan;

static void mark_workspace(Plan *p, KpValue *v, int root)
{
    v->storage = KP_STORE_WORKSPACE;
    p->root[v->id] = root;
}

/* Node k reads v: extend its root's live range. */
static void use(Plan *p, const KpValue *v, int k)
{
    int r = p->root[v->id];
    if (r >= 0 && p->last[r] < k)
        p->last[r] = k;
}

static int new_buffer(Plan *p, const KpValue *v)
{
    int b = p->nbufs++;
    p->bufs[b] = (Buffer){p->def[v->id], p->last[v->id], ws_bytes(p->g, v), 0};
    p->buf[v->id] = b;
    return b;
}

/* The output of n (at schedule position k) over one of its inputs that
 * dies there: true if done. */
static bool join_in_place(Plan *p, KpNode *n, int k)
{
    KpGraph *g = p->g;
    if (!in_place_ok[n->op] || n->out == g->d_output)
        return false;
    for (int i = 0; i < n->nin; i++) {
        int r = p->root[n->in[i]->id];
        if (r < 0 || p->last[r] != k || p->buf[r] < 0 ||
            ws_bytes(g, g->values[r]) != ws_bytes(g, n->out) ||
            kp_value_numel(g->values[r], g->max_batch) != kp_value_numel(n->out, g->max_batch))
            continue;
        Buffer *b = &p->bufs[p->buf[r]];
        if (b->last != k)
            continue;       /* another root of the buffer lives on */
        b->last = p->last[n->out->id];
        p->buf[n->out->id] = p->buf[r];
        p->in_place++;
        return true;
    }
    return false;
}

/* Is buffer x placed before y: larger first, then earlier. */
static bool before(const Buffer *bufs, int x, int y)
{
    if (bufs[x].size != bufs[y].size)
        return bufs[x].size > bufs[y].size;
    return bufs[x].def != bufs[y].def ? bufs[x].def < bufs[y].def : x < y;
}

/* The ranges, largest buffer first: each in the smallest gap left by the
 * placed buffers it is live with, else after the highest of them. */
static void place_buffers(Plan *p, int64_t *lo, int64_t *hi)
{
    for (int i = 0; i < p->nbufs; i++) {
        int at = i;
        while (at > 0 && before(p->bufs, i, p->order[at - 1])) {
            p->order[at] = p->order[at - 1];
            at--;
        }
        p->order[at] = i;
    }
    for (int i = 0; i < p->nbufs; i++) {
        Buffer *b = &p->bufs[p->order[i]];
        int n = 0;
        for (int j = 0; j < i; j++) {
            const Buffer *o = &p->bufs[p->order[j]];
            if (o->def <= b->last && b->def <= o->last) {
                /* insertion by offset */
                int at = n++;
                while (at > 0 && lo[at - 1] > o->off) {
                    lo[at] = lo[at - 1], hi[at] = hi[at - 1];
                    at--;
                }
                lo[at] = o->off, hi[at] = o->off + o->size;
            }
        }
        int64_t best = -1, best_gap = 0, at = 0;
        for (int j = 0; j <= n; j++) {
            int64_t end = j < n ? lo[j] : INT64_MAX, gap = end - at;
            if (gap >= b->size && (best < 0 || gap < best_gap))
                best = at, best_gap = gap;
            if (j < n && hi[j] > at)
                at = hi[j];
        }
        b->off = best;
        p->shared += b->size > 0 && best < p->peak;
        if (best + b->size > p->peak)
            p->peak = best + b->size;
    }
}

/* Where a phase runs in the schedule every entry point follows. */
static int phase_rank(KpPhase ph)
{
    switch (ph) {
    case KP_PHASE_FORWARD: return 0;
    case KP_PHASE_LOSS: return 1;
    case KP_PHASE_BACKWARD: return 2;
    case KP_PHASE_INPUT_GRAD: return 3;
    case KP_PHASE_UPDATE: return 4;
    case KP_PHASE_PREPARE: break;
    }
    return -1;
}

static int plan_shared(KpGraph *g, Plan *p, KpNode **sched, int *pos, KpDiag *d)
{
    /* the schedule: FORWARD, LOSS, BACKWARD, INPUT_GRAD, UPDATE nodes, each
     * phase in node order (the entries run phases in that order, so an
     * INPUT_GRAD node runs after every BACKWARD node, unless its group
     * runs among them: kp_node_run_phase); PREPARE nodes out.  The members
     * of a group run at once: one position, their first's. */
    int ns = 0;
    for (int r = 0; r <= 4; r++)
        for (int k = 0; k < g->nnodes; k++)
            if (phase_rank(kp_node_run_phase(g, g->nodes[k])) == r) {
                KpNode *n = g->nodes[k];
                bool joins = ns > 0 && n->group > 0 && sched[ns - 1]->group == n->group;
                pos[ns] = joins ? pos[ns - 1] : ns;
                sched[ns++] = n;
            }
    /* a loss-less model's d_output has no producer: karp_backward's dy */
    KpValue *dout = g->d_output;
    if (dout && !dout->producer)
        mark_workspace(p, dout, dout->id);
    /* storage of the values that are not workspace, roots of those that are */
    int nfwd = 0, last_bwd = -1;
    for (int k = 0; k < ns; k++) {
        KpNode *n = sched[k];
        int rc;
        nfwd += n->phase == KP_PHASE_FORWARD;
        if (n->phase == KP_PHASE_BACKWARD || n->phase == KP_PHASE_INPUT_GRAD)
            last_bwd = k;
        if (place_fixed(g, n, d, &rc)) {
            if (rc)
                return -1;
        } else if (kp_op_is_view(n->op)) {
            mark_workspace(p, n->out, p->root[n->in[0]->id]);
        } else {
            mark_workspace(p, n->out, n->out->id);
            p->def[n->out->id] = p->last[n->out->id] = pos[k];
        }
        for (int a = 0; a < n->naux; a++)
            if (!place_aux_grad(n->aux[a])) {
                mark_workspace(p, n->aux[a], n->aux[a]->id);
                p->def[n->aux[a]->id] = p->last[n->aux[a]->id] = pos[k];
            }
    }
    /* live ranges: [def, last] over the schedule, views extend their root */
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < sched[k]->nin; i++)
            use(p, sched[k]->in[i], pos[k]);
    int dout_def = -1;
    if (dout && p->root[dout->id] == dout->id) {
        /* dy is copied in after the FORWARD nodes (the essay above) */
        dout_def = nfwd;
        if (!dout->producer || p->def[dout->id] > dout_def)
            p->def[dout->id] = dout_def;
        use(p, dout, dout_def);
    }
    /* karp_backward may run again after one karp_forward (a second call
     * accumulates): what the backward reads from the forward outlives it */
    for (int k = 0; k < ns; k++) {
        KpNode *n = sched[k];
        if (n->phase != KP_PHASE_BACKWARD && n->phase != KP_PHASE_INPUT_GRAD)
            continue;
        for (int i = 0; i < n->nin; i++) {
            int r = p->root[n->in[i]->id];
            KpNode *def = r >= 0 ? g->values[r]->producer : NULL;
            if (def && def->phase == KP_PHASE_FORWARD && !(dout && r == p->root[dout->id]))
                use(p, n->in[i], last_bwd);
        }
    }
    if (g->training && p->root[g->output->id] >= 0)
        use(p, g->output, nfwd - 1);        /* karp_forward copies it to y */
    if (g->loss_value && p->root[g->loss_value->id] >= 0)
        use(p, g->loss_value, ns);          /* train_step returns it */

    /* buffers, in schedule order: a map output joins the buffer of an
     * input dying at its node, other roots get one of their own */
    for (int i = 0; i < g->nvalues; i++)
        p->buf[i] = -1;
    if (dout && dout_def >= 0)
        new_buffer(p, dout);
    for (int k = 0; k < ns; k++) {
        KpNode *n = sched[k];
        for (int a = 0; a < n->naux; a++)
            if (p->root[n->aux[a]->id] == n->aux[a]->id)
                new_buffer(p, n->aux[a]);
        if ((n->out == dout && dout_def >= 0) || p->root[n->out->id] != n->out->id)
            continue;
        /* a group's other members may still read the input: no in place */
        if (n->group > 0 || !join_in_place(p, n, pos[k]))
            new_buffer(p, n->out);
    }
    place_buffers(p, p->lo, p->hi);
    for (int i = 0; i < g->nvalues; i++)
        if (p->root[i] == i)
            g->values[i]->offset = p->bufs[p->buf[i]].off;
    /* views take their root's offset */
    for (int i = 0; i < g->nvalues; i++)
        if (p->root[i] >= 0 && p->root[i] != i)
            g->values[i]->offset = g->values[p->root[i]]->offset;
    g->workspace_bytes = align_up(p->peak, ACT_ALIGN_BYTES);
    return 0;
}

/* The outputs of PREPARE nodes (folded and packed weights), computed once
 * from the parameters: each its own range of the prepared slab, never
 * reused. */
static void place_prep(KpGraph *g)
{
    int64_t floats = 0;
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        if (n->phase != KP_PHASE_PREPARE)
            continue;
        floats = align_up(floats, PARAM_ALIGN_FLOATS);
        n->out->storage = KP_STORE_PREP;
        n->out->offset = floats;
        floats += kp_value_numel(n->out, 1);
    }
    g->prep_floats = align_up(floats, PARAM_ALIGN_FLOATS);
}

int kp_pass_memplan(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    assert(g->max_batch >= 1);
    for (int i = 0; i < g->nvalues; i++) {
        g->values[i]->storage = KP_STORE_NONE;
        g->values[i]->offset = 0;
    }
    g->trainable_floats = place_params(g, true, 0);
    g->param_floats = place_params(g, false, g->trainable_floats);
    place_prep(g);
    g->input->storage = KP_STORE_INPUT;
    if (g->target)
        g->target->storage = KP_STORE_TARGET;

    int64_t unplanned = kp_graph_transient_bytes(g);
    g->ws_reuse = o->memplan;
    if (!o->memplan) {
        if (plan_unshared(g, d))
            return -1;
        kp_pass_report(o, "workspace %lld bytes (unplanned %lld), 0 values share ranges, 0 in place",
                       (long long)g->workspace_bytes, (long long)unplanned);
        return 0;
    }
    KpArena scratch;
    kp_arena_init(&scratch);
    size_t nv = (size_t)g->nvalues;
    Plan p = {.g = g};
    p.root = kp_arena_alloc(&scratch, nv * sizeof *p.root + 1);
    p.def = kp_arena_alloc(&scratch, nv * sizeof *p.def + 1);
    p.last = kp_arena_alloc(&scratch, nv * sizeof *p.last + 1);
    p.buf = kp_arena_alloc(&scratch, nv * sizeof *p.buf + 1);
    p.bufs = kp_arena_alloc(&scratch, nv * sizeof *p.bufs + 1);
    p.order = kp_arena_alloc(&scratch, nv * sizeof *p.order + 1);
    p.lo = kp_arena_alloc(&scratch, nv * sizeof *p.lo + 1);
    p.hi = kp_arena_alloc(&scratch, nv * sizeof *p.hi + 1);
    if (scratch.failed) {
        kp_arena_free(&scratch);
        return kp_error(d, "out of memory");
    }
    for (int i = 0; i < g->nvalues; i++)
        p.root[i] = -1;
    KpNode **sched = kp_arena_alloc(&scratch, (size_t)g->nnodes * sizeof *sched + 1);
    int *pos = kp_arena_alloc(&scratch, (size_t)g->nnodes * sizeof *pos + 1);
    int rc = sched && pos ? plan_shared(g, &p, sched, pos, d) : kp_error(d, "out of memory");
    kp_arena_free(&scratch);
    if (rc)
        return -1;
    kp_pass_report(o, "workspace %lld bytes (unplanned %lld), %d values share ranges, %d in place",
                   (long long)g->workspace_bytes, (long long)unplanned, p.shared, p.in_place);
    return 0;
}
