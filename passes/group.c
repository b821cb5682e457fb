/*
 * group.c — horizontal fusion: independent nodes of one phase become one
 * kernel.
 *
 * Vertical fusion (fusion.c) folds a consumer into its producer.  What it
 * leaves are nodes that do not feed each other but run one after the
 * other, each its own parallel region: in a backward pass the input
 * gradient, the weight gradient and the bias gradient of one layer all
 * read the same dy, and the loss and its gradient both read the logits.
 * Every region costs a fork and a join of the threads (a few
 * microseconds on two cores, which at batch 1 is most of a layer), and a
 * small kernel alone leaves the other core idle.  This pass puts such
 * nodes into one group; the backend runs a group as one parallel region
 * in which every thread takes its share of each member's work items
 * (backend/codegen_group.c).
 *
 * Levels.  Within a phase, a node's level is one more than the level of
 * the deepest node of the same phase it reads (through views, which cost
 * nothing); values from earlier phases, parameters and the input are
 * level 0:
 *
 *     dy --+--> dense_grad_x (1) --> relu_grad ...      level 1: the three
 *          +--> dense_grad_w (1)                        nodes read only dy,
 *          +--> bias_grad    (1)                        so none waits for
 *                                                       another: one group
 *
 * Nodes of one level never read each other, so all the kernels of a level
 * can run at once.  The pass orders each phase's nodes by level (views
 * first within a level, then the original order: still a topological
 * order, since an input's level is lower) and gives the kernels of every
 * level that has two or more of them one group number.
 *
 * Not grouped: views (no kernel), the optimizer update and PREPARE nodes
 * (alone in their entries), a batch-1 dense_grad_x that splits its
 * weight's rows (kp_dense_grad_x_halves, passes.h), a kernel that is
 * large at the largest batch (kp_group_too_large: a fork saved is nothing
 * to it), and nodes of other phases, with one exception below.  The
 * memory plan gives a group one position in the schedule (its members run
 * at the same time) and writes no member over an input in place, because
 * another member may still read it.
 *
 * The input gradient.  INPUT_GRAD nodes (what only karp_backward's dx
 * needs) run after the BACKWARD ones, and only when dx is asked for;
 * train_step never runs them.  The first one usually reads the same dy
 * as the first layer's weight and bias gradients:
 *
 *     %28 --+--> conv2d_grad_w (BACKWARD)     one group, run among the
 *           +--> bias_grad     (BACKWARD)     BACKWARD nodes; the entry
 *           +--> conv2d_grad_x (INPUT_GRAD)   calls it with its INPUT_GRAD
 *                                             member only when dx != NULL
 *
 * So an INPUT_GRAD kernel that reads no INPUT_GRAD value (only BACKWARD
 * ones and earlier) is levelled with the BACKWARD nodes and joins their
 * group at its level, after them; kp_node_run_phase says where it runs.
 * The other INPUT_GRAD nodes, which read such a value, stay after every
 * BACKWARD node as before.  The backend emits the group twice, with and
 * without its INPUT_GRAD members (backend/codegen.c), so train_step and a
 * karp_backward without dx do exactly the work they did apart.
 */
#include "passes.h"

#include <stdlib.h>

#include "../ir/cost.h"
#include "../ir/epilogue.h"

/* Phases in the order the entries run them, PREPARE first. */
static int phase_rank(KpPhase ph)
{
    return ph == KP_PHASE_PREPARE ? 0 : (int)ph + 1;
}

/* An INPUT_GRAD kernel that reads no INPUT_GRAD value: it may run among
 * the BACKWARD nodes (the essay above). */
static bool joins_backward(const KpNode *n)
{
    if (n->phase != KP_PHASE_INPUT_GRAD || kp_op_is_view(n->op))
        return false;
    for (int i = 0; i < n->nin; i++)
        if (n->in[i]->producer && n->in[i]->producer->phase == KP_PHASE_INPUT_GRAD)
            return false;
    return true;
}

/* Where n is levelled and sorted: its phase's rank, BACKWARD's for an
 * INPUT_GRAD node that joins the BACKWARD nodes. */
static int node_rank(const KpNode *n)
{
    return phase_rank(joins_backward(n) ? KP_PHASE_BACKWARD : n->phase);
}

/* Whether n at the largest batch is worth a parallel region of its own:
 * its time on one core, estimated from its cost (ir/cost.h) at 100
 * GFLOP/s and 20 GB/s, is GROUP_MAX_US or more.  A region's fork and
 * join cost a few microseconds, under 5% of such a kernel; in a group its
 * items go out in the group's few shares instead of its own finer cut,
 * and a thread's shares of two members cover different samples.
 * resnet_cifar's step at batch 64 on two threads took 0.94x the time
 * with its convolutions' gradient pairs (1.8-3.7 ms estimated) out of
 * their groups (docs/passes-group.md, "Large kernels"). */
enum { GROUP_MAX_US = 100 };

bool kp_group_too_large(const KpGraph *g, const KpNode *n)
{
    KpCost c = kp_node_cost(n, g->max_batch > 0 ? g->max_batch : 1);
    return c.flops / 1e5 + c.bytes / 2e4 >= GROUP_MAX_US;
}

/* Not a view, an update, a node with a fused loss or a folded bias
 * gradient (whose mean or sums follow its parallel region, which a group
 * member cannot have), a batch-1
 * dense_grad_x that splits its weight's rows (kp_dense_grad_x_halves) or
 * a kernel large enough to be a region of its own (kp_group_too_large). */
static bool groupable(const KpGraph *g, const KpNode *n)
{
    return !kp_op_is_view(n->op) && n->nin > 0 && !n->loss.on && !kp_node_folded_bias(n) &&
           !kp_dense_grad_x_halves(g, n) &&
           !kp_group_too_large(g, n) &&
           (n->phase == KP_PHASE_FORWARD || n->phase == KP_PHASE_LOSS ||
            n->phase == KP_PHASE_BACKWARD || n->phase == KP_PHASE_INPUT_GRAD);
}

bool kp_dense_grad_x_halves(const KpGraph *g, const KpNode *n)
{
    if (n->op != KP_OP_dense_grad_x || g->max_batch != 1 || n->nepi != 0)
        return false;
    int64_t out = n->in[1]->dims[0], in = n->in[1]->dims[1];
    /* a weight worth two threads, and halves of 16 rows or more */
    return 4 * in * out >= KP_PAR_MIN_BYTES && out >= 32;
}

typedef struct Key {
    KpNode *n;
    int rank, level, view, phase, id;
} Key;

static int cmp_key(const void *pa, const void *pb)
{
    const Key *a = pa, *b = pb;
    if (a->rank != b->rank)
        return a->rank - b->rank;
    if (a->level != b->level)
        return a->level - b->level;
    if (a->view != b->view)
        return b->view - a->view;   /* views first */
    if (a->phase != b->phase)
        return a->phase - b->phase; /* BACKWARD before INPUT_GRAD: the group's first */
    return a->id - b->id;
}

/* The level a reader of v is at least: one past v's producer's level if
 * that is a kernel of the reader's rank, the same through a view. */
static int level_after(const int *level, const int *rank, const KpValue *v, int reader_rank)
{
    const KpNode *p = v->producer;
    if (!p || rank[p->id] != reader_rank)
        return 0;
    return level[p->id] + (kp_op_is_view(p->op) ? 0 : 1);
}

int kp_pass_group(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    int nn = g->nnodes;
    int *level = calloc((size_t)nn + 1, sizeof *level);
    int *rank = calloc((size_t)nn + 1, sizeof *rank);
    Key *keys = calloc((size_t)nn + 1, sizeof *keys);
    if (!level || !rank || !keys) {
        free(level);
        free(rank);
        free(keys);
        return kp_error(d, "out of memory");
    }
    for (int k = 0; k < nn; k++) {
        KpNode *n = g->nodes[k];
        n->group = 0;
        rank[k] = node_rank(n);
        for (int i = 0; i < n->nin; i++) {
            int l = level_after(level, rank, n->in[i], rank[k]);
            if (l > level[k])
                level[k] = l;
        }
        keys[k] = (Key){n, rank[k], level[k], kp_op_is_view(n->op), (int)n->phase, k};
    }
    qsort(keys, (size_t)nn, sizeof *keys, cmp_key);
    for (int k = 0; k < nn; k++) {
        g->nodes[k] = keys[k].n;
        g->nodes[k]->id = k;
    }

    /* one group per (phase, level) with two kernels or more */
    int groups = 0, members = 0;
    for (int k = 0; k < nn;) {
        int end = k;
        while (end < nn && keys[end].rank == keys[k].rank && keys[end].level == keys[k].level)
            end++;
        int count = 0;
        for (int j = k; j < end; j++)
            count += groupable(g, keys[j].n);
        if (count >= 2) {
            groups++;
            members += count;
            for (int j = k; j < end; j++)
                if (groupable(g, keys[j].n))
                    keys[j].n->group = groups;
        }
        k = end;
    }
    free(level);
    free(rank);
    free(keys);
    kp_pass_report(o, "%d groups of %d kernels: %d kernels -> %d", groups, members,
                   kp_graph_kernel_count(g) + members - groups, kp_graph_kernel_count(g));
    return 0;
}
