/*
 * shape_train.c — shape rules of the ops autodiff appends for dense
 * layers and the loss: dense's gradients, the losses and their gradients,
 * and the optimizer updates (the other layers' gradients are in
 * shape_grad.c).
 *
 * These nodes are built by karpc, not written by the user, so most
 * mismatches here are karpc bugs; they are still reported as diagnostics
 * against the layer the node came from, because one of them is the
 * user's: a loss that does not fit the model's output
 *     m.json: loss (cross_entropy): the model output must be [N,C] (rank 1 per sample), got [N,1,28,28]
 */
#include "shape_rules.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool same_shape(const KpValue *a, const KpValue *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

static bool is_batch_matrix(const KpValue *v)
{
    return v->rank == 2 && v->dims[0] == KP_DIM_N && v->dtype == KP_F32;
}

/* dy [N,out], weight [out,in] -> dx [N,in] */
int shape_dense_grad_x(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *w = n->in[1];
    if (!is_batch_matrix(dy))
        return kp_shape_error(g, n, d, dy, "dense_grad_x: dy must be [N,out]");
    if (w->rank != 2 || w->dims[0] != dy->dims[1])
        return kp_shape_error(g, n, d, w, "dense_grad_x: weight must be [%" PRId64 ",in]",
                              dy->dims[1]);
    kp_shape_set(n->out, 2, (int64_t[]){KP_DIM_N, w->dims[1]});
    return 0;
}

/* dy [N,out], x [N,in] -> dweight [out,in] */
int shape_dense_grad_w(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    if (!is_batch_matrix(dy))
        return kp_shape_error(g, n, d, dy, "dense_grad_w: dy must be [N,out]");
    if (!is_batch_matrix(x))
        return kp_shape_error(g, n, d, x, "dense_grad_w: x must be [N,in]");
    kp_shape_set(n->out, 2, (int64_t[]){dy->dims[1], x->dims[1]});
    return 0;
}

/* Check a loss's prediction and target: cross_entropy wants logits [N,C]
 * f32 and labels [N] i32; the others a f32 target of the prediction's
 * shape.  grad tells the loss gradient ops apart. */
static int check_loss(KpGraph *g, KpNode *n, bool grad, KpDiag *d)
{
    const KpValue *p = n->in[0], *t = n->in[1];
    bool ce = n->op == KP_OP_cross_entropy || n->op == KP_OP_cross_entropy_grad;
    const char *op = kp_op_name(n->op);
    char loss[64];
    snprintf(loss, sizeof loss, "%.*s", (int)(strlen(op) - (grad ? 5 : 0)), op);
    if (p->dtype != KP_F32 || p->rank < 2 || p->dims[0] != KP_DIM_N)
        return kp_shape_error(g, n, d, p, "%s needs a float model output [N,...]", loss);
    if (ce) {
        if (p->rank != 2)
            return kp_shape_error(g, n, d, p,
                                  "the model output must be [N,C] (rank 1 per sample) for "
                                  "cross_entropy");
        if (t->dtype != KP_I32 || t->rank != 1 || t->dims[0] != KP_DIM_N)
            return kp_shape_error(g, n, d, t, "cross_entropy labels must be i32[N]");
    } else if (t->dtype != KP_F32 || !same_shape(p, t)) {
        char want[128];
        kp_shape_str(p, want, sizeof want);
        return kp_shape_error(g, n, d, t, "%s target must be f32%s like the model output", loss,
                              want);
    }
    return 0;
}

/* prediction [N,...], target -> [] (the mean loss, a scalar) */
int shape_loss(KpGraph *g, KpNode *n, KpDiag *d)
{
    if (check_loss(g, n, false, d))
        return -1;
    kp_shape_set(n->out, 0, NULL);
    return 0;
}

/* prediction, target -> d prediction, the prediction's shape */
int shape_loss_grad(KpGraph *g, KpNode *n, KpDiag *d)
{
    if (check_loss(g, n, true, d))
        return -1;
    kp_shape_set(n->out, n->in[0]->rank, n->in[0]->dims);
    return 0;
}

/* (no inputs) -> [T]: the trainable part of the parameter slab.  T is
 * g->trainable_floats once the memory plan has set it (with the alignment
 * padding between parameters, which the update walks over too: zero
 * gradients, zero parameters); before that, the sum of the trainable
 * parameters' sizes.  kp_pass_memplan re-runs this rule, so the update's
 * printed shape is the planned extent. */
int shape_update(KpGraph *g, KpNode *n, KpDiag *d)
{
    assert(n->nin == 0);
    int64_t floats = g->trainable_floats;
    if (floats == 0) {
        for (int i = 0; i < g->nvalues; i++)
            if (kp_value_trainable(g->values[i]))
                floats += kp_value_numel(g->values[i], 1);
    }
    kp_shape_set(n->out, 1, (int64_t[]){floats});
    return 0;
}
