/*
 * model.c — a karp_model built from a descriptor: the checks that make a
 * bad model.so fail with a message instead of a crash, the memory a model
 * owns (parameters, workspace, and for training gradients, optimizer
 * state, training workspace and a copy of the last forward's input),
 * inference, and parameter access.  The training entry points are in
 * train.c.
 */
#include <math.h>
#include <stdbool.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "data.h"
#include "fpmode.h"
#include "model.h"

/* Nothing in a model is anywhere near this many floats; it keeps every
 * size computation below far from int64 and size_t overflow. */
#define MAX_FLOATS ((int64_t)1 << 40)

/* The product of shape[0..rank), or -1 if a dimension is < 1 or the
 * product exceeds MAX_FLOATS. */
static int64_t shape_numel(const int64_t *shape, int rank)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 1 || shape[i] > MAX_FLOATS / n)
            return -1;
        n *= shape[i];
    }
    return n;
}

static int check_params(const KarpModelDesc *d, const char *what, karp_error *err)
{
    if (d->nparams > 0 && !d->params)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: %u parameters but no table",
                           what, d->nparams);
    for (uint32_t i = 0; i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        if (!p->name)
            return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: parameter %u has no name",
                               what, i);
        if (p->rank < 0 || p->rank > KARP_MAX_RANK)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: parameter '%s' has rank %d (0 to %d allowed)",
                               what, p->name, (int)p->rank, KARP_MAX_RANK);
        int64_t n = shape_numel(p->shape, p->rank);
        if (n < 0 || n != p->size)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: parameter '%s' has size %lld, which does not "
                               "match its shape",
                               what, p->name, (long long)p->size);
        if (p->offset < 0 || p->offset % 16 != 0 || p->offset > d->param_floats - p->size)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: parameter '%s' at offset %lld (size %lld) is "
                               "not a 64-byte aligned range of the %lld parameter floats",
                               what, p->name, (long long)p->offset, (long long)p->size,
                               (long long)d->param_floats);
        if (p->init < KARP_INIT_ZEROS || p->init > KARP_INIT_XAVIER)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: parameter '%s' has unknown init %d", what,
                               p->name, (int)p->init);
        int needs_fan = p->init == KARP_INIT_UNIFORM_FAN_IN || p->init == KARP_INIT_HE ||
                        p->init == KARP_INIT_XAVIER;
        if ((needs_fan && p->fan_in < 1) || p->fan_in < 0 || p->fan_out < 0)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: parameter '%s' has fan_in %lld, fan_out %lld",
                               what, p->name, (long long)p->fan_in, (long long)p->fan_out);
        for (uint32_t j = 0; j < i; j++) {
            const KarpParamDesc *q = &d->params[j];
            if (strcmp(p->name, q->name) == 0)
                return kp_rt_error(err, KARP_EFORMAT,
                                   "%s: invalid descriptor: two parameters named '%s'", what,
                                   p->name);
            if (p->offset < q->offset + q->size && q->offset < p->offset + p->size)
                return kp_rt_error(err, KARP_EFORMAT,
                                   "%s: invalid descriptor: parameters '%s' and '%s' overlap", what,
                                   q->name, p->name);
        }
    }
    return 0;
}

/* The ABI 2 fields: which entry points go together, and sizes. */
static int check_training(const KarpModelDesc *d, const char *what, karp_error *err)
{
    if (d->train_epochs < 0 || d->norm_nmean < 0 || d->norm_nmean > 16 || d->norm_nstd < 0 ||
        d->norm_nstd > 16 || (d->norm_nmean && !d->norm_mean) || (d->norm_nstd && !d->norm_std))
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: bad train defaults", what);
    karp_error aerr;
    if (kp_augment_check(d->augment, d->naugment, -1, "augment", &aerr) != 0)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: %s", what, aerr.message);
    /* The sizes and kinds first: the runtime allocates and clears by them
     * even for a model that cannot be trained (found by fuzzing: a
     * negative opt_slots with a reason not to train made
     * karp_init_params clear a negative length). */
    if (d->target_kind < KARP_TARGET_NONE || d->target_kind > KARP_TARGET_DENSE)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: unknown target kind %d",
                           what, (int)d->target_kind);
    if (d->opt_slots < 0 || d->opt_slots > 2)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: %d optimizer slots (0 to 2 allowed)", what,
                           (int)d->opt_slots);
    if (d->trainable_floats < 0 || d->trainable_floats > d->param_floats)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: trainable_floats %lld outside the %lld "
                           "parameter floats",
                           what, (long long)d->trainable_floats, (long long)d->param_floats);
    if (d->train_workspace_bytes < 0 || d->train_workspace_bytes > 4 * MAX_FLOATS)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: train_workspace_bytes %lld", what,
                           (long long)d->train_workspace_bytes);
    if (d->no_train_reason) {
        if (d->forward || d->backward || d->apply || d->train_step)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: training functions and a reason not "
                               "to train",
                               what);
        return 0;
    }
    if (!d->forward || !d->backward)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: no %s function", what,
                           d->forward ? "backward" : "forward");
    if (!d->apply && d->opt_slots != 0)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: optimizer state but no apply function", what);
    if (d->train_step && !d->apply)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: a train_step function but no apply function",
                           what);
    if (d->train_step && d->target_kind == KARP_TARGET_NONE)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: a train_step function but no target kind",
                           what);
    for (uint32_t i = 0; d->params && i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        if (p->offset < d->trainable_floats && p->offset + p->size > d->trainable_floats)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: parameter '%s' straddles the end of the "
                               "trainable floats (%lld)",
                               what, p->name ? p->name : "?", (long long)d->trainable_floats);
    }
    return 0;
}

/* Everything the runtime relies on, so that a damaged or foreign
 * descriptor is refused rather than trusted. */
static int check_desc(const KarpModelDesc *d, const char *what, karp_error *err)
{
    if (!d->name)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: no model name", what);
    if (d->input_rank < 0 || d->input_rank > KARP_MAX_RANK || d->output_rank < 0 ||
        d->output_rank > KARP_MAX_RANK)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: input rank %d, output rank %d (0 to %d allowed)",
                           what, (int)d->input_rank, (int)d->output_rank, KARP_MAX_RANK);
    if (shape_numel(d->input_shape, d->input_rank) < 0 ||
        shape_numel(d->output_shape, d->output_rank) < 0)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: bad input or output shape",
                           what);
    if (d->max_batch < 1 || d->max_batch > MAX_FLOATS)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: max_batch is %lld", what,
                           (long long)d->max_batch);
    if (d->max_batch > MAX_FLOATS / shape_numel(d->input_shape, d->input_rank))
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: max_batch %lld times the input is too large",
                           what, (long long)d->max_batch);
    if (d->param_floats < 0 || d->param_floats > MAX_FLOATS || d->workspace_bytes < 0 ||
        d->workspace_bytes > 4 * MAX_FLOATS)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: param_floats %lld, workspace_bytes %lld", what,
                           (long long)d->param_floats, (long long)d->workspace_bytes);
    if (d->nparams > 1000000)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: %u parameters", what,
                           d->nparams);
    if (!d->infer)
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: no infer function", what);
    if (d->prep_floats < 0 || d->prep_floats > MAX_FLOATS || (d->prep_floats > 0) != (d->prepare != NULL))
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: prep_floats %lld with%s a prepare function", what,
                           (long long)d->prep_floats, d->prepare ? "" : "out");
    if (d->scratch_bytes < 0 || d->scratch_bytes > 4 * MAX_FLOATS || d->scratch_shared_bytes < 0 ||
        d->scratch_shared_bytes > 4 * MAX_FLOATS ||
        ((d->scratch_bytes > 0 || d->scratch_shared_bytes > 0) && !d->bind_scratch))
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: invalid descriptor: scratch_bytes %lld, scratch_shared_bytes %lld "
                           "with%s a bind_scratch function",
                           what, (long long)d->scratch_bytes, (long long)d->scratch_shared_bytes,
                           d->bind_scratch ? "" : "out");
    if (d->nvalues < 0 || d->nvalues > 10000000 || (d->nvalues > 0 && !d->values))
        return kp_rt_error(err, KARP_EFORMAT, "%s: invalid descriptor: %lld values without a table",
                           what, (long long)d->nvalues);
    for (int64_t k = 0; k < d->nvalues; k++) {
        const KarpValueDesc *v = &d->values[k];
        /* a per-sample count too large for the largest batch is out of its slab too */
        int64_t floats = v->sample_floats > MAX_FLOATS / d->max_batch ? MAX_FLOATS + 1
                         : v->sample_floats > 0                        ? v->sample_floats * d->max_batch
                                                                       : v->fixed_floats;
        int64_t limit = v->where == KARP_VAL_TWS ? d->train_workspace_bytes / 4 : d->param_floats;
        int64_t start = v->where == KARP_VAL_TWS ? v->offset / 4 : v->offset;
        if (!v->layer || !v->op || v->where < KARP_VAL_TWS || v->where > KARP_VAL_PARAMS ||
            v->phase < 0 || v->phase > 4 || v->offset < 0 ||
            (v->where == KARP_VAL_TWS && v->offset % 4 != 0) || v->sample_floats < 0 ||
            v->fixed_floats < 0 || (v->sample_floats > 0) == (v->fixed_floats > 0) ||
            floats > limit || start > limit - floats)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: invalid descriptor: value %lld lies outside its slab", what,
                               (long long)k);
    }
    int rc = check_params(d, what, err);
    return rc ? rc : check_training(d, what, err);
}

/* This machine's physical memory in bytes; 0 when it cannot tell. */
static double phys_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
}

/* The slab sizes desc asks for. */
static KpSlabs slab_sizes(const KarpModelDesc *d)
{
    return (KpSlabs){
        .param_floats = d->param_floats,
        .opt_slots = d->opt_slots,
        .prep_floats = d->prep_floats,
        .input_floats = d->max_batch * kp_rt_input_size(d),
        .workspace_bytes = d->workspace_bytes,
        .train_workspace_bytes = d->train_workspace_bytes,
    };
}

/* In double: kp_rt_slabs_alloc's sizes come unchecked. */
static double slab_bytes(const KpSlabs *s)
{
    return ((double)s->param_floats * (2.0 + (double)s->opt_slots) + (double)s->prep_floats +
            (double)s->input_floats) * sizeof(float) +
           (double)s->workspace_bytes + (double)s->train_workspace_bytes;
}

/* The bytes a new model allocates: its slabs (parameters, gradients,
 * optimizer state, prepared slab, both workspaces, the copy of the last
 * input) and the scratch of every thread for inference and for training. */
static double model_bytes(const KarpModelDesc *d)
{
    KpSlabs s = slab_sizes(d);
    return slab_bytes(&s) +
           2.0 * ((double)kp_rt_scratch_stride(d) * omp_get_max_threads() +
                  (double)d->scratch_shared_bytes);
}

/* Policy for a model too large for memory: refuse it before allocating
 * when it needs more than the machine's physical memory (with overcommit
 * an allocation that large may "succeed" and the process be killed when
 * it is touched); smaller allocations that fail give KARP_ENOMEM. */
static int check_memory(const KarpModelDesc *d, const char *what, karp_error *err)
{
    double phys = phys_bytes(), need = model_bytes(d);
    if (phys == 0 || need <= phys)
        return 0;
    return kp_rt_error(err, KARP_ENOMEM,
                       "%s: needs %.1f GiB of memory (%lld parameter floats, %lld workspace "
                       "bytes, batch %lld), more than this machine's %.1f GiB",
                       what, need / (1 << 30), (long long)d->param_floats,
                       (long long)(d->workspace_bytes + d->train_workspace_bytes),
                       (long long)d->max_batch, phys / (1 << 30));
}

enum { HUGE_PAGE = 2 << 20 };

/* 64-byte aligned, at least 64 bytes, zeroed.  From 2 MiB on, whole
 * 2 MiB pages asked to be huge ones. */
static void *alloc_slab(int64_t bytes)
{
    size_t n = bytes < 64 ? 64 : ((size_t)bytes + 63) & ~(size_t)63;
    size_t align = 64;
    if (n >= HUGE_PAGE) {
        align = HUGE_PAGE;
        n = (n + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    }
    void *p = aligned_alloc(align, n);
    if (!p)
        return NULL;
    if (align == HUGE_PAGE)
        (void)madvise(p, n, MADV_HUGEPAGE);
    memset(p, 0, n);
    return p;
}

static bool same_sizes(const KpSlabs *a, const KpSlabs *b)
{
    return a->param_floats == b->param_floats && a->opt_slots == b->opt_slots &&
           a->prep_floats == b->prep_floats && a->input_floats == b->input_floats &&
           a->workspace_bytes == b->workspace_bytes &&
           a->train_workspace_bytes == b->train_workspace_bytes;
}

void kp_rt_slabs_free(KpSlabs *s)
{
    if (!s)
        return;
    free(s->params), free(s->grads), free(s->opt), free(s->prep), free(s->last_x);
    free(s->ws), free(s->tws);
    s->params = s->grads = s->opt = s->prep = s->last_x = NULL;
    s->ws = s->tws = NULL;
}

static int alloc_slabs(KpSlabs *s)
{
    int64_t pbytes = s->param_floats * (int64_t)sizeof(float);
    s->params = alloc_slab(pbytes);
    s->ws = alloc_slab(s->workspace_bytes);
    s->grads = alloc_slab(pbytes);
    s->opt = alloc_slab(s->opt_slots * pbytes);
    s->tws = alloc_slab(s->train_workspace_bytes);
    s->last_x = alloc_slab(s->input_floats * (int64_t)sizeof(float));
    bool prep_ok = s->prep_floats == 0 ||
                   (s->prep = alloc_slab(s->prep_floats * (int64_t)sizeof(float)));
    if (!prep_ok || !s->params || !s->ws || !s->grads || !s->opt || !s->tws || !s->last_x) {
        kp_rt_slabs_free(s);
        return -1;
    }
    return 0;
}

int kp_rt_slabs_alloc(KpSlabs *s)
{
    double phys = phys_bytes();
    if (s->param_floats < 0 || s->opt_slots < 0 || s->prep_floats < 0 || s->input_floats < 0 ||
        s->workspace_bytes < 0 || s->train_workspace_bytes < 0 ||
        (phys > 0 && slab_bytes(s) > phys / 2))
        return -1;
    return alloc_slabs(s);
}

/* One idle inference workspace on the model's free list, with the
 * scratch pool of the call that takes it. */
typedef struct KpWsNode {
    struct KpWsNode *next;
    void *mem;
    KpScratchMem scratch;
    KpAdapt adapt;              /* the thread count of the calls that take it */
} KpWsNode;

static int push_ws(karp_model *m, void *mem)
{
    KpWsNode *node = calloc(1, sizeof *node);
    if (!node)
        return -1;
    node->mem = mem;
    node->next = m->ws_free;
    m->ws_free = node;
    return 0;
}

/* Free the blocks the model owns (m NULL accepted), not m, not release. */
static void free_blocks(karp_model *m)
{
    if (!m)
        return;
    free(m->params);
    /* every workspace is idle now (karp_close must not race karp_infer) */
    int own_ws = 0;
    while (m->ws_free) {
        KpWsNode *node = m->ws_free;
        m->ws_free = node->next;
        own_ws |= node->mem == m->ws;
        free(node->mem);
        kp_rt_scratch_free(&node->scratch);
        free(node);
    }
    if (!own_ws)
        free(m->ws);
    free(m->prep);
    free(m->grads);
    free(m->opt);
    free(m->tws);
    free(m->last_x);
    kp_rt_scratch_free(&m->train_scratch);
    kp_rt_meta_free(&m->meta);
}

int64_t kp_rt_input_size(const KarpModelDesc *d)
{
    return shape_numel(d->input_shape, d->input_rank);
}

static karp_model *model_new(const KarpModelDesc *desc, const char *what, KpSlabs *slabs,
                             void *owner, void (*release)(void *owner), karp_error *err)
{
    karp_model *m = NULL;
    char whatbuf[300];
    if (!desc) {
        kp_rt_error(err, KARP_EINVAL, "%s: the model descriptor is NULL", what ? what : "model");
        goto fail;
    }
    /* Only abi_version is known to be where we look until it matches. */
    if (desc->abi_version != KARP_ABI_VERSION) {
        kp_rt_error(err, KARP_EABI,
                    "%s: built for karpc ABI version %u, this runtime is version %u — rebuild it "
                    "with this karpc",
                    what ? what : "model", desc->abi_version, KARP_ABI_VERSION);
        goto fail;
    }
    if (!what) {
        snprintf(whatbuf, sizeof whatbuf, "model '%s'", desc->name ? desc->name : "?");
        what = whatbuf;
    }
    char missing[512];
    if (kp_rt_cpu_check(desc->cpu_features, missing, sizeof missing) != 0) {
        kp_rt_error(err, KARP_ECPU, "%s: needs CPU features this machine lacks: %s", what, missing);
        goto fail;
    }
    if (check_desc(desc, what, err) != 0 || check_memory(desc, what, err) != 0)
        goto fail;
    m = calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    m->desc = desc;
    pthread_mutex_init(&m->infer_lock, NULL);
    KpSlabs own = slab_sizes(desc);
    if (slabs && slabs->params && same_sizes(slabs, &own)) {
        own = *slabs;           /* made while the code compiled */
        *slabs = (KpSlabs){0};
    } else {
        kp_rt_slabs_free(slabs);
        if (alloc_slabs(&own) != 0)
            goto nomem;
    }
    m->params = own.params;
    m->ws = own.ws;
    m->grads = own.grads;
    m->opt = own.opt;
    m->tws = own.tws;
    m->last_x = own.last_x;
    m->prep = own.prep;
    if (push_ws(m, m->ws) != 0)
        goto nomem;
    m->ws_count = 1;
    m->owner = owner;
    m->release = release;
    karp_init_params(m, desc->seed);
    if (err) {
        err->code = 0;
        err->message[0] = '\0';
    }
    return m;

nomem:
    kp_rt_error(err, KARP_ENOMEM, "%s: out of memory allocating %lld parameter floats and %lld "
                "workspace bytes", what, (long long)desc->param_floats,
                (long long)(desc->workspace_bytes + desc->train_workspace_bytes));
    free_blocks(m);
    if (m)
        pthread_mutex_destroy(&m->infer_lock);
    free(m);
fail:
    kp_rt_slabs_free(slabs);
    if (release)
        release(owner);
    return NULL;
}

karp_model *kp_rt_model_new_named(const KarpModelDesc *desc, const char *what, void *owner,
                                  void (*release)(void *owner), karp_error *err)
{
    return model_new(desc, what, NULL, owner, release, err);
}

karp_model *kp_rt_model_new(const KarpModelDesc *desc, void *owner, void (*release)(void *owner),
                            karp_error *err)
{
    return model_new(desc, NULL, NULL, owner, release, err);
}

karp_model *kp_rt_model_new_slabs(const KarpModelDesc *desc, KpSlabs *slabs, void *owner,
                                  void (*release)(void *owner), karp_error *err)
{
    return model_new(desc, NULL, slabs, owner, release, err);
}

void karp_close(karp_model *m)
{
    if (!m)
        return;
    free_blocks(m);
    pthread_mutex_destroy(&m->infer_lock);
    /* Last: release may unmap the code and the descriptor. */
    void (*release)(void *) = m->release;
    void *owner = m->owner;
    free(m);
    if (release)
        release(owner);
}

void kp_rt_adapted_call(KpAdapt *a, int64_t n, void (*fn)(void *arg), void *arg)
{
    unsigned mode = kp_rt_fp_enter();
    if (!kp_rt_adapt_enabled()) {
        fn(arg);
        kp_rt_fp_adopt(mode);
        return;
    }
    int nt = omp_get_max_threads();
    int use = kp_adapt_threads(a, n, nt);
    if (use != nt)
        omp_set_num_threads(use);
    double t0 = kp_seconds();
    fn(arg);
    double t = kp_seconds() - t0;
    if (use != nt)
        omp_set_num_threads(nt);
    kp_rt_fp_adopt(mode);
    kp_adapt_record(a, use, t);
}

void kp_rt_infer_thread_counts(karp_model *m, int64_t *one, int64_t *all)
{
    *one = *all = 0;
    pthread_mutex_lock(&m->infer_lock);
    for (const KpWsNode *node = m->ws_free; node; node = node->next)
        *one += node->adapt.calls_one, *all += node->adapt.calls_all;
    pthread_mutex_unlock(&m->infer_lock);
}

typedef struct InferCall {
    karp_model *m;
    void *ws;
    const float *x;
    float *y;
    int64_t n;
} InferCall;

static void infer_call(void *arg)
{
    const InferCall *c = arg;
    c->m->desc->infer(c->m->params, c->m->prep, c->ws, c->x, c->y, c->n);
}

/* Each workspace keeps its own adaptive thread count (adapt.h): calls on
 * several threads at once take different workspaces, so none shares one. */
int karp_infer(karp_model *m, const float *x, int64_t n, float *y)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_infer: model is NULL");
    if (!x)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_infer: x is NULL");
    if (!y)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_infer: y is NULL");
    if (n < 1 || n > m->desc->max_batch)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_infer: n must be between 1 and %lld, got %lld",
                           (long long)m->desc->max_batch, (long long)n);
    kp_rt_apply_threads();
    /* Take an idle workspace (with its scratch pool) or make one; prepare
     * under the lock if the parameters changed (once, the other callers
     * waiting for it); run; give the workspace back. */
    pthread_mutex_lock(&m->infer_lock);
    KpWsNode *node = m->ws_free;
    if (node)
        m->ws_free = node->next;
    pthread_mutex_unlock(&m->infer_lock);
    if (!node) {
        node = calloc(1, sizeof *node);
        void *mem = node ? alloc_slab(m->desc->workspace_bytes) : NULL;
        if (!mem) {
            free(node);
            return kp_rt_error(NULL, KARP_ENOMEM,
                               "karp_infer: out of memory allocating a workspace of %lld bytes "
                               "for a concurrent call",
                               (long long)m->desc->workspace_bytes);
        }
        node->mem = mem;
        pthread_mutex_lock(&m->infer_lock);
        m->ws_count++;
        pthread_mutex_unlock(&m->infer_lock);
    }
    int rc = kp_rt_scratch_reserve(m->desc, &node->scratch, "karp_infer");
    if (rc == 0 && m->prep && m->prep_stale) {
        pthread_mutex_lock(&m->infer_lock);
        if (m->prep_stale) {
            unsigned mode = kp_rt_fp_enter();
            m->desc->prepare(m->params, m->prep);
            kp_rt_fp_adopt(mode);
            m->prep_stale = 0;
        }
        pthread_mutex_unlock(&m->infer_lock);
    }
    if (rc == 0) {
        InferCall c = {.m = m, .ws = node->mem, .x = x, .y = y, .n = n};
        kp_rt_adapted_call(&node->adapt, n, infer_call, &c);
    }
    pthread_mutex_lock(&m->infer_lock);
    node->next = m->ws_free;
    m->ws_free = node;
    pthread_mutex_unlock(&m->infer_lock);
    return rc;
}

void kp_rt_params_changed(const karp_model *m)
{
    /* models are never defined const: the handle is only lent as const */
    ((karp_model *)m)->prep_stale = 1;
}

int karp_params_changed(karp_model *m)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_params_changed: model is NULL");
    kp_rt_params_changed(m);
    return 0;
}

int karp_model_info(const karp_model *m, karp_info *info)
{
    if (!m || !info)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_model_info: %s is NULL", m ? "info" : "model");
    const KarpModelDesc *d = m->desc;
    memset(info, 0, sizeof *info);
    info->name = d->name;
    info->input_rank = d->input_rank;
    info->output_rank = d->output_rank;
    for (int i = 0; i < KARP_MAX_RANK; i++) {
        info->input_shape[i] = i < d->input_rank ? d->input_shape[i] : 0;
        info->output_shape[i] = i < d->output_rank ? d->output_shape[i] : 0;
    }
    info->input_size = shape_numel(d->input_shape, d->input_rank);
    info->output_size = shape_numel(d->output_shape, d->output_rank);
    info->max_batch = d->max_batch;
    info->nparams = (int)d->nparams;
    info->param_floats = d->param_floats;
    info->workspace_bytes = d->workspace_bytes;
    info->loss = d->loss ? d->loss : "none";
    info->optimizer = d->optimizer ? d->optimizer : "none";
    info->cpu_features = d->cpu_features ? d->cpu_features : "";
    info->has_train = d->train_step != NULL;
    info->has_optimizer = d->apply != NULL;
    info->no_train_reason = d->no_train_reason;
    info->seed = d->seed;
    info->train_epochs = d->train_epochs;
    info->normalize_nmean = d->norm_nmean;
    info->normalize_nstd = d->norm_nstd;
    info->normalize_mean = d->norm_mean;
    info->normalize_std = d->norm_std;
    info->naugment = (int)d->naugment;
    info->augment = d->augment;
    info->target_labels = d->target_kind == KARP_TARGET_LABELS;
    info->step = m->step;
    return 0;
}

int karp_param_count(const karp_model *m)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_param_count: model is NULL");
    return (int)m->desc->nparams;
}

static void fill_param(const karp_model *m, int i, karp_param *p)
{
    const KarpParamDesc *d = &m->desc->params[i];
    p->name = d->name;
    p->rank = d->rank;
    for (int k = 0; k < KARP_MAX_RANK; k++)
        p->shape[k] = k < d->rank ? d->shape[k] : 0;
    p->size = d->size;
    p->data = m->params + d->offset;
    p->grad = m->grads + d->offset;
    kp_rt_params_changed(m);    /* the caller may write through data */
    p->trainable = d->offset < m->desc->trainable_floats;
}

int karp_param_get(const karp_model *m, int index, karp_param *p)
{
    if (!m || !p)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_param_get: %s is NULL", m ? "p" : "model");
    if (index < 0 || (uint32_t)index >= m->desc->nparams)
        return kp_rt_error(NULL, KARP_EINVAL,
                           "karp_param_get: index %d out of range (the model has %u parameters)",
                           index, m->desc->nparams);
    fill_param(m, index, p);
    return 0;
}

int karp_param_find(const karp_model *m, const char *name, karp_param *p)
{
    if (!m || !name || !p)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_param_find: %s is NULL",
                           !m ? "model" : !name ? "name" : "p");
    for (uint32_t i = 0; i < m->desc->nparams; i++) {
        if (strcmp(m->desc->params[i].name, name) == 0) {
            fill_param(m, (int)i, p);
            return 0;
        }
    }
    return kp_rt_error(NULL, KARP_EINVAL, "karp_param_find: no parameter named '%s'", name);
}

void kp_rt_reset_training(karp_model *m)
{
    size_t pbytes = (size_t)m->desc->param_floats * sizeof(float);
    memset(m->grads, 0, pbytes);
    memset(m->opt, 0, (size_t)m->desc->opt_slots * pbytes);
    m->step = 0;
    m->last_n = 0;
    m->seed_step = 0;
    m->seed_calls = 0;
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The model file's seed (kept by a checkpoint's model, unlike the seed
 * karp_init_params was given), the step and the call's number within it,
 * each mixed in turn. */
uint64_t kp_rt_call_seed(karp_model *m, int64_t step)
{
    if (step != m->seed_step) {
        m->seed_step = step;
        m->seed_calls = 0;
    }
    uint64_t z = mix64(m->desc->seed ^ 0xD1B54A32D192ED03ull);
    z = mix64(z ^ (uint64_t)step);
    return mix64(z ^ (uint64_t)m->seed_calls++);
}

/* Also resets the training state: new parameters start a new run. */
int karp_init_params(karp_model *m, uint64_t seed)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_init_params: model is NULL");
    kp_rt_reset_training(m);
    kp_rt_params_changed(m);
    KpRng rng;
    kp_rng_seed(&rng, seed);
    for (uint32_t i = 0; i < m->desc->nparams; i++) {
        const KarpParamDesc *d = &m->desc->params[i];
        float *w = m->params + d->offset;
        double bound = 0.0, stddev = 0.0;
        switch (d->init) {
        case KARP_INIT_ZEROS:
            for (int64_t k = 0; k < d->size; k++)
                w[k] = 0.0f;
            break;
        case KARP_INIT_ONES:
            for (int64_t k = 0; k < d->size; k++)
                w[k] = 1.0f;
            break;
        case KARP_INIT_UNIFORM_FAN_IN:
        case KARP_INIT_XAVIER:
            bound = d->init == KARP_INIT_XAVIER ? sqrt(6.0 / (double)(d->fan_in + d->fan_out))
                                                : 1.0 / sqrt((double)d->fan_in);
            for (int64_t k = 0; k < d->size; k++)
                w[k] = (float)((2.0 * kp_rng_uniform(&rng) - 1.0) * bound);
            break;
        case KARP_INIT_HE:
            stddev = sqrt(2.0 / (double)d->fan_in);
            for (int64_t k = 0; k < d->size; k++)
                w[k] = (float)(kp_rng_normal(&rng) * stddev);
            break;
        }
    }
    return 0;
}
