/*
 * interp_train.c — kp_interp_train: a train graph's entry points, run by
 * the reference interpreter exactly as the generated code runs them.
 *
 *   phases mask                 what runs, in node order
 *   FORWARD                     forward nodes; y <- output
 *   FORWARD|LOSS|BACKWARD|UPDATE  + loss (*loss, d_output), gradients, optimizer
 *   BACKWARD|INPUT_GRAD         d_output <- dy, gradients (INPUT_GRAD only with dx)
 *   UPDATE                      optimizer over [0, trainable_floats), grads zeroed
 *
 * The generated code keeps the forward activations in its training
 * workspace between karp_forward and karp_backward.  The interpreter keeps
 * nothing between calls, so a mask that needs activations (LOSS, BACKWARD,
 * INPUT_GRAD) without FORWARD recomputes them first from the same x and
 * params — the ABI requires backward to follow forward with both
 * unchanged, so the values are the same.  Two things make that exact:
 * the caller passes the forward's seed again (the same dropout masks),
 * and only a call that asks for FORWARD updates batchnorm's running
 * statistics (the recomputation leaves them, as the generated backward
 * never touches them).
 */
#include "interp_rules.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define BIT(p) (1u << (p))

static int oom(const KpGraph *g, KpDiag *d)
{
    return kp_error(d, "%s: out of memory in the interpreter", g->file ? g->file : "<model>");
}

/* Copy count floats of value v's buffer to dst (skipped when either is missing). */
static void copy_out(const KpInterp *it, const KpValue *v, float *dst)
{
    if (v && dst && it->act[v->id])
        memcpy(dst, it->act[v->id], (size_t)kp_value_numel(v, it->n) * sizeof(float));
}

/* Give d_output the caller's dy, as karp_backward does without the loss. */
static int seed_dy(const KpInterp *it, const float *dy)
{
    const KpValue *v = it->g->d_output;
    size_t count = (size_t)kp_value_numel(v, it->n);
    assert(dy && "backward without the loss needs dy");
    if (!it->act[v->id])
        it->act[v->id] = malloc(count * sizeof(float));
    if (!it->act[v->id])
        return -1;
    memcpy(it->act[v->id], dy, count * sizeof(float));
    return 0;
}

int kp_interp_train(const KpGraph *g, const KpInterpTrain *t, KpDiag *d)
{
    assert(g->training && g->d_output && t->n >= 1 && t->n <= g->max_batch);
    const unsigned needs_acts = BIT(KP_PHASE_LOSS) | BIT(KP_PHASE_BACKWARD) |
                                BIT(KP_PHASE_INPUT_GRAD);
    const unsigned backward = BIT(KP_PHASE_BACKWARD) | BIT(KP_PHASE_INPUT_GRAD);
    unsigned run = t->phases;
    if (run & needs_acts)
        run |= BIT(KP_PHASE_FORWARD);
    if (!t->dx)
        run &= ~BIT(KP_PHASE_INPUT_GRAD);
    float **act = kp_interp_acts_new(g);
    if (!act)
        return oom(g, d);
    KpInterp it = {.g = g, .params = t->params, .x = t->x, .n = t->n, .act = act,
                   .target = t->target, .train_params = t->params, .grads = t->grads,
                   .opt = t->opt, .step = t->step, .seed = t->seed,
                   .update_stats = (t->phases & BIT(KP_PHASE_FORWARD)) != 0};
    bool loss_runs = (run & BIT(KP_PHASE_LOSS)) && g->loss_value;
    it.run_loss = loss_runs;    /* a loss fused into a FORWARD node (KpNode.loss) */
    if ((run & backward) && !loss_runs && seed_dy(&it, t->dy)) {
        kp_interp_acts_free(g, act);
        return oom(g, d);
    }
    bool updated = false;
    for (int k = 0; k < g->nnodes; k++) {
        const KpNode *nd = g->nodes[k];
        if (!(run & BIT(nd->phase)))
            continue;
        if (kp_interp_exec(&it, nd, d)) {
            kp_interp_acts_free(g, act);
            return -1;
        }
        updated |= nd->phase == KP_PHASE_UPDATE;
    }
    if (t->phases & BIT(KP_PHASE_FORWARD))
        copy_out(&it, g->output, t->y);
    if (loss_runs && t->loss)
        *t->loss = act[g->loss_value->id][0];
    if (run & BIT(KP_PHASE_INPUT_GRAD))
        copy_out(&it, g->d_input, t->dx);
    if (updated)
        memset(t->grads, 0, (size_t)g->param_floats * sizeof(float));
    kp_interp_acts_free(g, act);
    return 0;
}
