/*
 * memplan.c — where every value lives at run time.
 *
 *   parameter slab (floats)         workspace (bytes)
 *   +------------+--+-----+--       +--------+----+--------+--
 *   |dense1.weight|  |bias |...     | %4     |    | %6     |...
 *   +------------+--+-----+--       +--------+----+--------+--
 *   each start 16-float aligned     each start 64-byte aligned,
 *                                   max_batch * sample * 4 bytes
 *
 * Parameters are laid out in value order.  Every activation gets its own
 * workspace range: no reuse yet.  Liveness-based reuse comes later: walk
 * the schedule, free a range after its value's last user, and hand out
 * ranges first-fit; views must then keep their input's range alive.
 *
 * Views (flatten, reshape, dropout in inference) are the same floats as
 * their input, so they share its storage and offset.  The model input is
 * the caller's x.  The graph output is the caller's y; if the output is a
 * view, the view's value is still @y and its input keeps its own storage —
 * the backend copies.
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

int kp_pass_memplan(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    assert(g->max_batch >= 1);
    for (int i = 0; i < g->nvalues; i++) {
        g->values[i]->storage = KP_STORE_NONE;
        g->values[i]->offset = 0;
    }
    int64_t floats = 0;
    for (int i = 0; i < g->nvalues; i++) {
        KpValue *v = g->values[i];
        if (v->role != KP_ROLE_PARAM)
            continue;
        floats = align_up(floats, PARAM_ALIGN_FLOATS);
        v->storage = KP_STORE_PARAM;
        v->offset = floats;
        floats += kp_value_numel(v, 1);
    }
    g->param_floats = align_up(floats, PARAM_ALIGN_FLOATS);

    g->input->storage = KP_STORE_INPUT;
    int64_t bytes = 0;
    for (int k = 0; k < g->nnodes; k++) {
        KpNode *n = g->nodes[k];
        KpValue *v = n->out;
        if (v == g->output) {
            v->storage = KP_STORE_OUTPUT;
        } else if (is_view[n->op]) {
            assert(n->in[0]->storage != KP_STORE_NONE);
            v->storage = n->in[0]->storage;
            v->offset = n->in[0]->offset;
        } else {
            bytes = align_up(bytes, ACT_ALIGN_BYTES);
            v->storage = KP_STORE_WORKSPACE;
            v->offset = bytes;
            bytes += kp_value_numel(v, g->max_batch) * (int64_t)sizeof(float);
        }
    }
    g->workspace_bytes = align_up(bytes, ACT_ALIGN_BYTES);
    return 0;
}
