/*
 * bench_kernels.c — every kernel of an entry timed in place (bench.h).
 *
 * The entry has just run whole, so the slabs hold what training or
 * inference leaves there.  Its kernels are then called one by one in the
 * entry's order, with the entry's arguments (kernels.h): each kernel sees
 * exactly the inputs it sees inside the entry, workspace ranges shared by
 * several values included.  For each:
 *
 *   1. every buffer that a second call would find changed by the first
 *      (save_buffers: written and read, or an input under an output) is
 *      saved;
 *   2. its reference kernel gets copies of its inputs (and of the slabs);
 *   3. the generated kernel is called repeatedly, each call timed alone,
 *      the saved buffers put back before each call and outside its time,
 *      by the entry's threads (put_back) —
 *      so an in-place map, a gradient accumulated (+=), batchnorm's running
 *      statistics and the optimizer's update start from the same values
 *      every time (no drift to huge values, denormals or NaN that would
 *      change the time) and the state after the last call is the state
 *      the entry leaves after this kernel, for the next one;
 *   4. the reference kernel (ir/interp_node.h) is called repeatedly on its
 *      copies, each call timed alone.  It is plain C on one thread; its
 *      gradient copy accumulates and its parameter copy takes repeated
 *      updates, which plain C runs at the same speed.
 *
 * Times are of a warm cache: step 3 has just touched every operand.  Views
 * left on their input's storage (flatten, reshape: no code) are called but
 * not reported, as the kernel count of --stats leaves them out.
 */
#include <stdlib.h>
#include <string.h>

#include "../ir/epilogue.h"
#include "../ir/interp_node.h"
#include "../runtime/model.h"
#include "bench.h"
#include "cli.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The best and the median of t[0, count), count > 0 (sorted in place). */
static BenchTimes times_of(double *t, int count)
{
    BenchTimes r = {.calls = count};
    qsort(t, (size_t)count, sizeof *t, cmp_double);
    r.best = t[0];
    r.median = count % 2 ? t[count / 2] : 0.5 * (t[count / 2 - 1] + t[count / 2]);
    return r;
}

BenchTimes kp_bench_time(double (*fn)(void *arg), void *arg, long repeats, double budget_s,
                         int min_calls, int max_calls)
{
    BenchTimes r = {0};
    int cap = repeats > 0 ? (int)repeats : max_calls;
    double *t = malloc((size_t)cap * sizeof *t), total = 0;
    if (!t)
        return r;
    while (r.calls < cap) {
        double dt = fn(arg);
        if (dt < 0)
            break;
        t[r.calls++] = dt;
        total += dt;
        if (repeats <= 0 && r.calls >= min_calls && total >= budget_s)
            break;
    }
    if (r.calls > 0)
        r = times_of(t, r.calls);
    free(t);
    return r;
}

/* A generated kernel (its trampoline), its argument words and the
 * buffers it may write, saved. */
typedef struct Saved {
    void *at, *copy;
    size_t bytes;
} Saved;

typedef struct GenCall {
    void *fn;
    uint64_t *w;
    int nsaved;
    Saved *saved;
} GenCall;

enum { PUT_BACK_BYTES = 256 };    /* krt_parallel_for's item: four cache lines */

static void put_back_part(void *arg, int64_t begin, int64_t end)
{
    const Saved *s = arg;
    size_t from = (size_t)begin * PUT_BACK_BYTES, to = (size_t)end * PUT_BACK_BYTES;
    if (to > s->bytes)
        to = s->bytes;
    memcpy((char *)s->at + from, (const char *)s->copy + from, to - from);
}

/* Each saved buffer copied back by the entry's threads, each a contiguous
 * share, the cut every parallel kernel and the update make
 * (runtime/parallel.c): inside the entry the lines of a gradient were last
 * written by the update that zeroed it, thread by thread, and an in-place
 * input by the kernel before.  Copied by the calling thread alone, they all
 * sat in its core's caches and the other thread fetched its share from
 * there: fashion_cnn's dense4 weight gradient took 1.2x the time on two
 * cores that share no cache (docs/bench.md). */
static void put_back(const GenCall *c)
{
    for (int i = 0; i < c->nsaved; i++)
        krt_parallel_for(put_back_part, &c->saved[i], 0,
                         (int64_t)((c->saved[i].bytes + PUT_BACK_BYTES - 1) / PUT_BACK_BYTES));
}

static double timed_gen(void *arg)
{
    GenCall *c = arg;
    put_back(c);
    double t0 = kp_cli_now();
    kp_kernel_call(c->fn, c->w);
    return kp_cli_now() - t0;
}

typedef struct RefCall {
    KpInterpNode *s;
    const BenchKernel *bk;
    KpDiag d;
} RefCall;

static double timed_ref(void *arg)
{
    RefCall *c = arg;
    double t0 = kp_cli_now();
    for (int i = 0; i < c->bk->k->nnodes; i++)
        if (kp_interp_node_run(c->s, c->bk->node[i], &c->d) < 0)
            return -1;
    return kp_cli_now() - t0;
}

void kp_bench_append(char *buf, size_t cap, const char *sep, const char *s)
{
    size_t len = strlen(buf);
    if (len < cap)
        snprintf(buf + len, cap - len, "%s%s", len ? sep : "", s);
}

/* ops, shape and cost of the kernel's nodes at n */
static void describe(BenchKernel *bk, int64_t n)
{
    bk->ops[0] = bk->shape[0] = '\0';
    bk->cost = (KpCost){0, 0};
    for (int i = 0; i < bk->k->nnodes; i++) {
        const KpNode *nd = bk->node[i];
        kp_bench_append(bk->ops, sizeof bk->ops, ",", kp_op_name(nd->op));
        for (int e = 0; e < nd->nepi; e++)
            kp_bench_append(bk->ops, sizeof bk->ops, "+", kp_op_name(nd->epi[e].op));
        if (nd->loss.on)
            kp_bench_append(bk->ops, sizeof bk->ops, "+", kp_op_name(nd->loss.op));
        if (kp_node_folded_bias(nd))
            kp_bench_append(bk->ops, sizeof bk->ops, "+", kp_op_name(KP_OP_bias_grad));
        KpCost c = kp_node_cost(nd, n);
        if (nd->nin == 0 && bk->k->update_floats > 0) {
            /* a share of the update (a folded one, or the rest of one) */
            double share = (double)bk->k->update_floats / (double)kp_value_numel(nd->out, 1);
            c.flops *= share, c.bytes *= share;
        }
        bk->cost.flops += c.flops;
        bk->cost.bytes += c.bytes;
    }
    const KpValue *v = bk->node[0]->out;
    for (int r = 0; r < v->rank; r++) {
        char dim[24];
        snprintf(dim, sizeof dim, "%lld", (long long)(v->dims[r] == KP_DIM_N ? n : v->dims[r]));
        kp_bench_append(bk->shape, sizeof bk->shape, "x", dim);
    }
    if (v->rank == 0)
        snprintf(bk->shape, sizeof bk->shape, "scalar");
}

/* Whether the kernel has no code: views left on their input's storage
 * (emit_identity; --stats does not count them either). */
static bool no_code(const BenchKernel *bk)
{
    for (int i = 0; i < bk->k->nnodes; i++) {
        const KpNode *nd = bk->node[i];
        if (!kp_op_is_view(nd->op) || nd->out->storage != nd->in[0]->storage ||
            nd->out->offset != nd->in[0]->offset)
            return false;
    }
    return true;
}

/* Whether value v is computed by one of the kernel's nodes before node i. */
static bool made_inside(const BenchKernel *bk, int i, const KpValue *v)
{
    for (int j = 0; j < i; j++)
        for (int o = 0; o < kp_node_nout(bk->node[j]); o++)
            if (kp_node_output(bk->node[j], o) == v)
                return true;
    return false;
}

/* The reference's copies: the slabs as they are now, and every input of
 * the kernel's nodes that is not a parameter, from the entry's pointer. */
static KpInterpNode *ref_setup(const BenchKernel *bk, const KpGraph *g, const KpEntryBufs *b,
                               const GenCall *gc, float *slabs[3])
{
    memcpy(slabs[0], b->params, (size_t)b->param_floats * 4);
    if (b->grads)
        memcpy(slabs[1], b->grads, (size_t)b->param_floats * 4);
    if (b->opt_floats)
        memcpy(slabs[2], b->opt, (size_t)b->opt_floats * 4);
    KpInterpNode *s = kp_interp_node_new(g, b->n, slabs[0], slabs[1], slabs[2], b->step, b->seed);
    if (!s)
        return NULL;
    for (int i = 0; i < bk->k->nnodes; i++)
        for (int j = 0; j < bk->node[i]->nin; j++) {
            const KpValue *v = bk->node[i]->in[j];
            if (v->role == KP_ROLE_PARAM || made_inside(bk, i, v))
                continue;
            int a = 0;
            while (a < bk->k->nargs && !(bk->k->arg[a].kind == KP_KARG_VALUE &&
                                         bk->k->arg[a].value == v->id))
                a++;
            if (a == bk->k->nargs ||
                kp_interp_node_set(s, v, (const void *)(uintptr_t)gc->w[a]) < 0) {
                kp_interp_node_free(s);
                return NULL;
            }
        }
    return s;
}

/* Whether argument a is a buffer the kernel writes: an output of one of
 * its nodes (a gradient it adds into, the parameters an update changes),
 * a frozen parameter among its inputs (batchnorm's running statistics,
 * updated in place by the forward), or the gradient or optimizer slab. */
static bool written(const BenchKernel *bk, const KpKernelArg *a)
{
    if (a->kind == KP_KARG_GRADS || a->kind == KP_KARG_OPT)
        return true;
    if (a->kind != KP_KARG_VALUE)
        return false;
    for (int i = 0; i < bk->k->nnodes; i++) {
        const KpNode *nd = bk->node[i];
        for (int o = 0; o < kp_node_nout(nd); o++)
            if (kp_node_output(nd, o)->id == a->value)
                return true;
        for (int j = 0; j < nd->nin; j++)
            if (nd->in[j]->id == a->value && nd->in[j]->frozen)
                return true;
    }
    return false;
}

static bool overlap(uintptr_t a, size_t an, uintptr_t b, size_t bn)
{
    return an && bn && a < b + bn && b < a + an;
}

/* Save what a second call would find changed by the first: a buffer the
 * kernel writes and also reads (a gradient it adds into, the parameters
 * and state of an update, an output on its input's storage), and an input
 * that a written buffer overlaps.  Inputs only read, and outputs written
 * whole and not read, are left as the last call leaves them: copying them
 * back from the calling thread would move every line of them into its
 * core's cache before each call, and on cores that share no cache the
 * other thread would fetch its share from there, which no call inside the
 * entry does (docs/bench.md, "Kernels in place"). */
static int save_buffers(const BenchKernel *bk, const KpEntryBufs *b, GenCall *gc)
{
    const KpKernel *k = bk->k;
    size_t *bytes = calloc((size_t)k->nargs + 1, sizeof *bytes);
    bool *w = calloc((size_t)k->nargs + 1, sizeof *w);
    int rc = bytes && w ? 0 : -1;
    for (int a = 0; rc == 0 && a < k->nargs; a++) {
        bytes[a] = (size_t)kp_kernel_arg_bytes(&k->arg[a], b);
        w[a] = written(bk, &k->arg[a]);
    }
    gc->nsaved = 0;
    for (int a = 0; rc == 0 && a < k->nargs; a++) {
        const KpKernelArg *ka = &k->arg[a];
        bool keep = w[a] && (ka->kind != KP_KARG_VALUE || ka->storage == KP_STORE_GRAD ||
                             ka->storage == KP_STORE_PARAM || ka->storage == KP_STORE_PREP);
        for (int o = 0; o < k->nargs && !keep; o++)
            keep = o != a && w[o] != w[a] && overlap(gc->w[a], bytes[a], gc->w[o], bytes[o]);
        if (!keep || bytes[a] == 0)     /* (an input and an output on one buffer: kept) */
            continue;
        void *copy = malloc(bytes[a]);
        if (!copy) {
            rc = -1;
            break;
        }
        gc->saved[gc->nsaved].at = (void *)(uintptr_t)gc->w[a];
        gc->saved[gc->nsaved].copy = copy;
        gc->saved[gc->nsaved].bytes = bytes[a];
        memcpy(copy, gc->saved[gc->nsaved].at, bytes[a]);
        gc->nsaved++;
    }
    free(bytes);
    free(w);
    return rc;
}

static void free_call(GenCall *gc)
{
    for (int i = 0; i < gc->nsaved; i++)
        free(gc->saved[i].copy);
    free(gc->saved);
    free(gc->w);
}

/* Whether kernel k of l is one that graph bg's entry calls. */
static bool of_entry(const KpKernel *k, const KpGraph *g, const BenchGraph *bg)
{
    return k->train == g->training && strcmp(k->entry, bg->entry) == 0;
}

/* k's code (its trampoline) and its argument words on b's buffers, w[0,
 * k->nargs): the call the entry makes.  0, or 1 reported. */
static int bind_kernel(karp_model *m, const KpKernel *k, const KpEntryBufs *b, void **fn, uint64_t *w)
{
    KpDiag d;
    kp_diag_init(&d);
    if (kp_llvm_jit_lookup(m, k->trampoline, fn, &d) < 0)
        return kp_cli_fail("bench: %s", d.msg);
    for (int a = 0; a < k->nargs; a++)
        w[a] = kp_kernel_arg_word(&k->arg[a], b);
    return 0;
}

/* Time one kernel (bk->k set); the state after is one call's. */
static int time_kernel(karp_model *m, const KpGraph *g, const KpEntryBufs *b, const BenchPlan *plan,
                       BenchKernel *bk, float *slabs[3])
{
    const KpKernel *k = bk->k;
    GenCall gc = {.w = calloc((size_t)k->nargs + 1, sizeof *gc.w),
                  .saved = calloc((size_t)k->nargs + 1, sizeof *gc.saved)};
    if (!gc.w || !gc.saved) {
        free_call(&gc);
        return kp_cli_fail("bench: out of memory");
    }
    if (bind_kernel(m, k, b, &gc.fn, gc.w)) {
        free_call(&gc);
        return 1;
    }
    if (no_code(bk)) {
        kp_kernel_call(gc.fn, gc.w);
        free_call(&gc);
        return 0;
    }
    describe(bk, b->n);
    RefCall rc = {.bk = bk};
    kp_diag_init(&rc.d);
    if (save_buffers(bk, b, &gc) < 0 || !(rc.s = ref_setup(bk, g, b, &gc, slabs))) {
        free_call(&gc);
        return kp_cli_fail("bench: out of memory");
    }
    bk->gen = kp_bench_time(timed_gen, &gc, plan->repeats, 0.2, 5, 2000);
    bk->ref = kp_bench_time(timed_ref, &rc, plan->repeats, 0.3, 3, 200);
    free_call(&gc);
    kp_interp_node_free(rc.s);
    if (rc.d.msg[0])
        return kp_cli_fail("bench: reference kernel: %s", rc.d.msg);
    return 0;
}

void kp_bench_graph_free(BenchGraph *bg)
{
    for (int i = 0; i < bg->nk; i++)
        free(bg->k[i].node);
    free(bg->k);
    bg->k = NULL;
    bg->nk = 0;
}

int kp_bench_kernels(karp_model *m, const KpKernelList *l, const KpGraph *g, KpEntryBufs *b,
                     const BenchPlan *plan, BenchGraph *bg)
{
    bg->nk = 0;
    bg->k = calloc((size_t)l->n + 1, sizeof *bg->k);
    float *slabs[3] = {malloc((size_t)b->param_floats * 4 + 64),
                       calloc((size_t)b->param_floats + 16, 4),
                       malloc((size_t)b->opt_floats * 4 + 64)};
    int rc = bg->k && slabs[0] && slabs[1] && slabs[2] ? 0 : kp_cli_fail("bench: out of memory");
    for (int i = 0; i < l->n && rc == 0; i++) {
        const KpKernel *k = &l->k[i];
        if (!of_entry(k, g, bg))
            continue;
        BenchKernel *bk = &bg->k[bg->nk];
        memset(bk, 0, sizeof *bk);
        bk->k = k;
        if (!(bk->node = malloc((size_t)k->nnodes * sizeof *bk->node))) {
            rc = kp_cli_fail("bench: out of memory");
            break;
        }
        for (int j = 0; j < k->nnodes; j++)
            bk->node[j] = g->nodes[k->node[j]];
        rc = time_kernel(m, g, b, plan, bk, slabs);
        if (rc == 0 && bk->gen.calls > 0)
            bg->nk++;
        else
            free(bk->node);
    }
    for (int i = 0; i < 3; i++)
        free(slabs[i]);
    return rc;
}

/* One kernel of the entry in a whole replay: its code, its argument
 * words, its row in bg->k (-1: not reported) and a time per replay. */
typedef struct StepCall {
    void *fn;
    uint64_t *w;
    int row;
    double *t;
} StepCall;

enum { STEP_MIN = 5, STEP_MAX = 200 };
#define STEP_BUDGET_S 0.5

int kp_bench_in_step(karp_model *m, const KpKernelList *l, const KpGraph *g, const KpEntryBufs *b,
                     const BenchPlan *plan, BenchGraph *bg)
{
    int cap = plan->repeats > 0 ? (int)plan->repeats : STEP_MAX, nc = 0, rc = 0;
    StepCall *c = calloc((size_t)l->n + 1, sizeof *c);
    double *total = malloc((size_t)cap * sizeof *total);
    if (!c || !total)
        rc = kp_cli_fail("bench: out of memory");
    for (int i = 0; i < l->n && rc == 0; i++) {
        const KpKernel *k = &l->k[i];
        if (!of_entry(k, g, bg))
            continue;
        StepCall *s = &c[nc++];
        s->row = -1;
        for (int r = 0; r < bg->nk; r++)
            if (bg->k[r].k == k)
                s->row = r;
        s->w = malloc((size_t)(k->nargs + 1) * sizeof *s->w);
        s->t = malloc((size_t)cap * sizeof *s->t);
        if (!s->w || !s->t) {
            rc = kp_cli_fail("bench: out of memory");
            break;
        }
        rc = bind_kernel(m, k, b, &s->fn, s->w);
    }
    /* the gradients of what the update does not train (running statistics) */
    float *untrained = g->training && b->grads ? b->grads + g->trainable_floats : NULL;
    size_t untrained_bytes = (size_t)(b->param_floats - g->trainable_floats) * sizeof(float);
    int rounds = 0;
    double spent = 0;
    while (rc == 0 && rounds < cap) {
        total[rounds] = 0;
        for (int i = 0; i < nc; i++) {
            double t0 = kp_cli_now();
            kp_kernel_call(c[i].fn, c[i].w);
            c[i].t[rounds] = kp_cli_now() - t0;
            total[rounds] += c[i].t[rounds];
        }
        if (untrained && untrained_bytes > 0)
            memset(untrained, 0, untrained_bytes);
        spent += total[rounds++];
        if (plan->repeats <= 0 && rounds >= STEP_MIN && spent >= STEP_BUDGET_S)
            break;
    }
    if (rc == 0 && rounds > 0) {
        for (int i = 0; i < nc; i++)
            if (c[i].row >= 0)
                bg->k[c[i].row].step = times_of(c[i].t, rounds);
        bg->step_total = times_of(total, rounds);
    }
    for (int i = 0; i < nc; i++) {
        free(c[i].w);
        free(c[i].t);
    }
    free(c);
    free(total);
    return rc;
}
