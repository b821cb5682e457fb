/*
 * interp_node.c — one node at a time through the reference rules
 * (interp_node.h), on buffers the caller fills.
 */
#include "interp_node.h"

#include <stdlib.h>
#include <string.h>

#include "interp_rules.h"

struct KpInterpNode {
    KpInterp it;
    float *x;               /* the model input's copy */
    void *target;           /* the target's copy */
};

KpInterpNode *kp_interp_node_new(const KpGraph *g, int64_t n, float *params, float *grads,
                                 float *opt, int64_t step, uint64_t seed)
{
    KpInterpNode *s = calloc(1, sizeof *s);
    float **act = kp_interp_acts_new(g);
    if (!s || !act) {
        free(s);
        free(act);
        return NULL;
    }
    s->it = (KpInterp){.g = g, .params = params, .n = n, .act = act, .train_params = params,
                       .grads = grads, .opt = opt, .step = step, .seed = seed,
                       .update_stats = true, .run_loss = true};
    return s;
}

void kp_interp_node_free(KpInterpNode *s)
{
    if (!s)
        return;
    kp_interp_acts_free(s->it.g, s->it.act);
    free(s->x);
    free(s->target);
    free(s);
}

int kp_interp_node_set(KpInterpNode *s, const KpValue *v, const void *src)
{
    size_t bytes = (size_t)kp_value_numel(v, s->it.n) * 4;
    void *copy = malloc(bytes ? bytes : 1);
    if (!copy)
        return -1;
    memcpy(copy, src, bytes);
    if (v == s->it.g->input) {
        free(s->x);
        s->it.x = s->x = copy;
    } else if (v == s->it.g->target) {
        free(s->target);
        s->it.target = s->target = copy;
    } else {
        free(s->it.act[v->id]);
        s->it.act[v->id] = copy;
    }
    return 0;
}

int kp_interp_node_run(KpInterpNode *s, const KpNode *nd, KpDiag *d)
{
    return kp_interp_exec(&s->it, nd, d);
}
