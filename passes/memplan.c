/*
 * memplan.c — where every value lives at run time.
 *
 *   parameter slab (floats)                         workspace (bytes)
 *   +-------------+--+-----+-- ... --+------------+  +--------+----+--------+--
 *   |dense1.weight|  |bias |         |running_mean|  | %4     |    | %6     |...
 *   +-------------+--+-----+-- ... --+------------+  +--------+----+--------+--
 *   trained parameters    trainable_floats | running statistics
 *   each start 16-float aligned                      each start 64-byte aligned,
 *                                                    max_batch * sample * 4 bytes
 *
 * Parameters are laid out in value order, the trained ones first and the
 * frozen ones (running statistics) after them, so the optimizer walks one
 * range [0, trainable_floats).  Both graphs of a model are lowered from
 * one spec, so they get the same layout.  Every activation gets its own
 * workspace range: no reuse yet.  Liveness-based reuse comes later: walk
 * the schedule, free a range after its value's last user, and hand out
 * ranges first-fit; views must then keep their input's range alive.
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
 * parameter slab; that is a side effect, not its output.
 */
#include "passes.h"

#include <assert.h>

enum { PARAM_ALIGN_FLOATS = 16, ACT_ALIGN_BYTES = 64 };

/* Ops whose output is their input reinterpreted (in inference). */
static const bool is_view[KP_OP_COUNT] = {
    [KP_OP_flatten] = true,
    [KP_OP_reshape] = true,
    [KP_OP_dropout] = true,
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

static int64_t place_in_workspace(KpGraph *g, KpValue *v, int64_t bytes)
{
    bytes = align_up(bytes, ACT_ALIGN_BYTES);
    v->storage = KP_STORE_WORKSPACE;
    v->offset = bytes;
    return bytes + kp_value_numel(v, g->max_batch) * (int64_t)sizeof(float);
}

/* The outputs of PREPARE nodes (folded and packed weights), computed once
 * per parameter change and kept between calls: each its own range of the
 * prepared slab, 16-float aligned, in node order. */
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
    int64_t bytes = 0;
    if (g->d_output && !g->d_output->producer)
        bytes = place_in_workspace(g, g->d_output, bytes);
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        KpValue *v = n->out;
        if (n->phase == KP_PHASE_PREPARE)
            continue;
        if (n->phase == KP_PHASE_UPDATE) {
            v->storage = KP_STORE_PARAM;
            if (kp_node_infer_shape(g, n, d))   /* now [trainable_floats] */
                return -1;
        } else if (v->role == KP_ROLE_GRAD) {
            assert(v->grad_of && v->grad_of->storage == KP_STORE_PARAM);
            v->storage = KP_STORE_GRAD;
            v->offset = v->grad_of->offset;
        } else if (v == g->d_input) {
            v->storage = KP_STORE_DX;
        } else if (v == g->output && !g->training) {
            v->storage = KP_STORE_OUTPUT;
        } else if (is_view[n->op]) {
            assert(n->in[0]->storage != KP_STORE_NONE);
            v->storage = n->in[0]->storage;
            v->offset = n->in[0]->offset;
        } else {
            bytes = place_in_workspace(g, v, bytes);
        }
    }
    g->workspace_bytes = align_up(bytes, ACT_ALIGN_BYTES);
    return 0;
}
