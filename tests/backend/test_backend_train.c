/*
 * test_backend_train.c — the generated training entry points against the
 * reference interpreter (kp_interp_train), on random small MLPs written as
 * model files: depth 1-3, odd widths, every activation, every loss (also
 * softmax followed by cross_entropy), every optimizer.  The entries are
 * called through the descriptor's pointers on slabs of the test's own.
 *
 * Tolerances (the worst ratio to them is printed):
 *   forward output, gradients, dx, loss: per tensor,
 *       |got - ref| <= 1e-5 (|ref| + mean |ref| of the tensor)
 *     the model of test_backend_models.c (sums in another order, exp/tanh
 *     within 2 ulp), backward sums over the batch the way forward sums
 *     over k.
 *   one optimizer step, from the same state: the step is the reference's
 *     arithmetic, so the parameters may differ only through the gradient:
 *       sgd       lr * gerr
 *       momentum  lr (1 - beta) gerr
 *       adam      (lr / (1 - b1^t)) min(2, 4 gerr / |g|)  (the step is
 *                 about lr g / |g|: a relative change of g moves it by as
 *                 much, and a g within its rounding of 0 may flip sign)
 *     plus 2 ulp of the parameter (one rounding each of theta - u), with
 *     gerr the gradient tolerance above.
 *   given identical gradients, apply is the reference's update bit for bit.
 * JIT and model.so, and 1 and 2 threads, are compared with memcmp.
 * KP_TRAIN_MODELS=N runs N random models instead of 12 (a longer sweep).
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "include/karpc.h"
#include "modelbuild.h"
#include "numcheck.h"
#include "runtime/model.h"
#include "testutil.h"

static char tmpdir[256];
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static int pick(int n)
{
    return kp_test_pick(&rng_state, n);
}

static float uniform(float lo, float hi)
{
    return kp_test_uniform(&rng_state, lo, hi);
}

static const char *losses[] = {"cross_entropy", "mse", "bce", "bce_logits"};
static const char *optims[] = {"sgd", "momentum", "adam"};
static const char *acts[] = {"none", "relu", "sigmoid", "tanh", "leaky_relu", "softmax"};

/* Model idx: loss idx % 4, optimizer idx / 4 % 3, so 12 models cover every
 * pair.  bce needs probabilities: the last activation is sigmoid.  Model 0
 * is softmax + cross_entropy. */
static void random_model(int idx, char *json, size_t cap)
{
    static const int widths[] = {1, 3, 5, 17, 33};
    const char *loss = losses[idx % 4], *opt = optims[idx / 4 % 3];
    int in = widths[1 + pick(4)], image = pick(3) == 0;
    size_t n = (size_t)snprintf(json, cap, "{\"karp\": 1, \"name\": \"tn%d\", \"seed\": %d, \"batch\": 16, ",
                                idx, 7 + idx);
    if (image)
        n += (size_t)snprintf(json + n, cap - n, "\"input\": {\"shape\": [%d, 3]}, \"layers\": "
                              "[{\"type\": \"flatten\"}, ", in);
    else
        n += (size_t)snprintf(json + n, cap - n, "\"input\": {\"shape\": [%d]}, \"layers\": [", in);
    int depth = 1 + pick(3);
    for (int l = 0; l < depth; l++) {
        int last = l == depth - 1;
        int width = widths[pick(5)];
        const char *act = acts[pick(6)];
        if (last && strcmp(loss, "cross_entropy") == 0)
            width = 2 + pick(12), act = idx == 0 ? "softmax" : acts[pick(2)];
        if (last && strcmp(loss, "bce") == 0)
            act = "sigmoid";
        n += (size_t)snprintf(json + n, cap - n, "%s{\"type\": \"dense\", \"units\": %d, \"activation\": "
                              "\"%s\"%s}", l ? ", " : "", width, act,
                              pick(4) == 0 ? ", \"bias\": false" : "");
        if (!last && pick(5) == 0)
            n += (size_t)snprintf(json + n, cap - n, ", {\"type\": \"leaky_relu\", \"alpha\": 0.2}");
    }
    const char *hyper = strcmp(opt, "sgd") == 0        ? "\"lr\": 0.1, \"weight_decay\": 0.01"
                        : strcmp(opt, "momentum") == 0 ? "\"lr\": 0.1, \"beta\": 0.8"
                                                       : "\"lr\": 0.01";
    snprintf(json + n, cap - n, "], \"loss\": \"%s\", \"optimizer\": {\"type\": \"%s\", %s}}\n", loss,
             opt, hyper);
}

static void *slab(int64_t bytes)
{
    size_t sz = (size_t)((bytes + 63) / 64 * 64 + 64);
    void *p = aligned_alloc(64, sz);
    ck_assert_ptr_nonnull(p);
    memset(p, 0, sz);
    return p;
}

/* The training state of one implementation. */
typedef struct State {
    float *params, *grads, *opt;
    void *tws;
} State;

static void state_new(State *s, const KarpModelDesc *d)
{
    s->params = slab(d->param_floats * 4);
    s->grads = slab(d->param_floats * 4);
    s->opt = slab((int64_t)d->opt_slots * d->param_floats * 4);
    s->tws = slab(d->train_workspace_bytes);
}

static void state_copy(State *to, const State *from, const KarpModelDesc *d)
{
    memcpy(to->params, from->params, (size_t)d->param_floats * 4);
    memcpy(to->grads, from->grads, (size_t)d->param_floats * 4);
    memcpy(to->opt, from->opt, (size_t)d->opt_slots * d->param_floats * 4);
}

static void state_free(State *s)
{
    free(s->params), free(s->grads), free(s->opt), free(s->tws);
}

/* Whether the two states differ in any bit; where names the first float
 * that does ("params[i]", "grads[i]" or "opt[i]"). */
static bool state_diff(const State *a, const State *b, const KarpModelDesc *d, char *where,
                       size_t cap)
{
    static const char *const name[3] = {"params", "grads", "opt"};
    const float *slabs[3][2] = {{a->params, b->params}, {a->grads, b->grads}, {a->opt, b->opt}};
    int64_t pf = d->param_floats, len[3] = {pf, pf, d->opt_slots * pf};
    for (int s = 0; s < 3; s++)
        for (int64_t i = 0; i < len[s]; i++)
            if (memcmp(&slabs[s][0][i], &slabs[s][1][i], 4) != 0) {
                snprintf(where, cap, "%s[%lld]", name[s], (long long)i);
                return true;
            }
    return false;
}

static int state_same(const State *a, const State *b, const KarpModelDesc *d)
{
    char where[48];
    return !state_diff(a, b, d, where, sizeof where);
}

/* kp_test_tolerance_ratio per parameter tensor of a gradient slab. */
static double grad_ratio(const KarpModelDesc *d, const float *got, const float *ref)
{
    double worst = 0;
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        double r = kp_test_tolerance_ratio(got + pd->offset, ref + pd->offset, pd->size);
        worst = r > worst ? r : worst;
    }
    return worst;
}

typedef struct Model {
    char json[4096];
    KpProgram prog;
    karp_model *mj, *ms;          /* JIT; model.so (NULL if not built) */
    const KarpModelDesc *d;
    int64_t in_size, out_size;
    KpOptimHyper h;
    const char *cpu;              /* NULL: the host */
    int vw;                       /* 0: the target's vector width */
    KpFoldUpdates fold;           /* KpTargetOpts.fold_updates */
    bool no_group;                /* --no-group: every node its own kernel */
} Model;

static void model_open(Model *m, int with_so)
{
    m->ms = NULL;
    KpTargetOpts t = {.opt_level = KP_TEST_OPT(3), .cpu = m->cpu, .vector_width = m->vw,
                      .fold_updates = m->fold};
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.group = !m->no_group;
    kp_test_build_model_po(tmpdir, "m", m->json, &po, &t, &m->prog, &m->mj, with_so ? &m->ms : NULL);
    ck_assert_ptr_nonnull(m->prog.train);
    m->d = m->mj->desc;
    m->in_size = kp_value_sample_size(m->prog.train->input);
    m->out_size = kp_value_sample_size(m->prog.train->output);
    m->h = m->prog.train->optim;
    /* this test calls the entry points itself, as the runtime does after
     * reserving the kernels' scratch (runtime/scratch.c) */
    ck_assert_int_eq(kp_rt_scratch_reserve(m->mj->desc, &m->mj->train_scratch, "test"), 0);
    if (m->ms)
        ck_assert_int_eq(kp_rt_scratch_reserve(m->ms->desc, &m->ms->train_scratch, "test"), 0);
    /* the entry points the model's loss and optimizer call for */
    const char *loss = m->prog.train->loss, *opt = m->prog.train->optimizer;
    int has_loss = strcmp(loss, "none") != 0, has_opt = strcmp(opt, "none") != 0;
    ck_assert_ptr_nonnull(m->d->forward);
    ck_assert_ptr_nonnull(m->d->backward);
    ck_assert_int_eq(m->d->apply != NULL, has_opt);
    ck_assert_int_eq(m->d->train_step != NULL, has_loss && has_opt);
    ck_assert_int_eq(m->d->target_kind, !has_loss ? KARP_TARGET_NONE
                                        : strcmp(loss, "cross_entropy") == 0 ? KARP_TARGET_LABELS
                                                                             : KARP_TARGET_DENSE);
    ck_assert_int_eq(m->d->trainable_floats, m->prog.train->trainable_floats);
    ck_assert_int_eq(m->d->train_workspace_bytes, m->prog.train->workspace_bytes);
    ck_assert_int_eq(m->d->opt_slots, m->prog.train->opt_slots);
}

static void model_close(Model *m)
{
    if (m->ms)
        karp_close(m->ms);
    karp_close(m->mj);
    kp_program_free(&m->prog);
}

static void init_params(const KarpModelDesc *d, float *params)
{
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        float a = 1.5f / sqrtf((float)(pd->fan_in > 0 ? pd->fan_in : 1));
        for (int64_t i = 0; i < pd->size; i++)
            params[pd->offset + i] = uniform(-a, a);
    }
}

/* A batch: x, and the target the loss wants. */
static void random_batch(const Model *m, int64_t n, float *x, void *target)
{
    for (int64_t i = 0; i < n * m->in_size; i++)
        x[i] = uniform(-2.0f, 2.0f);
    const char *loss = m->prog.train->loss;
    for (int64_t i = 0; i < n * m->out_size; i++) {
        if (strcmp(loss, "cross_entropy") == 0) {
            if (i < n)
                ((int32_t *)target)[i] = (int32_t)pick((int)m->out_size);
        } else {
            ((float *)target)[i] = strcmp(loss, "mse") == 0 ? uniform(-1, 1) : uniform(0, 1);
        }
    }
}

static int run_interp(const Model *m, KpInterpTrain *t)
{
    KpDiag dg;
    kp_diag_init(&dg);
    int rc = kp_interp_train(m->prog.train, t, &dg);
    ck_assert_msg(rc == 0, "%s", dg.msg);
    return rc;
}


#define PHASE(p) (1u << KP_PHASE_##p)

/* forward + backward (random dy) against the interpreter at n = 1, 7, max:
 * the output, every parameter gradient, dx; dx = NULL leaves the
 * gradients as they were; a second backward accumulates; 1 thread and
 * model.so give the same bits. */
static void check_backward(const Model *m, const float *params, double *worst)
{
    const KarpModelDesc *d = m->d;
    const int64_t batches[] = {1, 7, d->max_batch};
    for (int b = 0; b < 3; b++) {
        int64_t n = batches[b] < d->max_batch ? batches[b] : d->max_batch, nin = n * m->in_size, nout = n * m->out_size;
        float *x = malloc((size_t)nin * 4), *dy = malloc((size_t)nout * 4);
        float *y = malloc((size_t)nout * 4), *yr = malloc((size_t)nout * 4);
        float *dx = malloc((size_t)nin * 4), *dxr = malloc((size_t)nin * 4), *dx2 = malloc((size_t)nin * 4);
        for (int64_t i = 0; i < nin; i++)
            x[i] = uniform(-2, 2);
        for (int64_t i = 0; i < nout; i++)
            dy[i] = uniform(-1, 1);
        State g, r, g2;
        state_new(&g, d), state_new(&r, d), state_new(&g2, d);
        memcpy(g.params, params, (size_t)d->param_floats * 4);
        state_copy(&r, &g, d), state_copy(&g2, &g, d);

        d->forward(g.params, g.tws, x, y, n, 0);
        d->backward(g.params, g.grads, g.tws, x, dy, dx, n);
        KpInterpTrain t = {.phases = PHASE(FORWARD) | PHASE(BACKWARD) | PHASE(INPUT_GRAD),
                           .params = r.params, .grads = r.grads, .opt = r.opt, .x = x, .dy = dy,
                           .dx = dxr, .y = yr, .n = n, .step = 1};
        run_interp(m, &t);
        double rs[3] = {kp_test_tolerance_ratio(y, yr, nout), grad_ratio(d, g.grads, r.grads),
                        kp_test_tolerance_ratio(dx, dxr, nin)};
        for (int k = 0; k < 3; k++) {
            ck_assert_msg(rs[k] <= 1.0, "n=%lld: %s off by %.3g x tolerance\n%s", (long long)n,
                          k == 0 ? "y" : k == 1 ? "grads" : "dx", rs[k], m->json);
            worst[k] = rs[k] > worst[k] ? rs[k] : worst[k];
        }

        /* one thread, and without dx: the same gradients to the bit */
        karp_set_threads(1);
        d->forward(g2.params, g2.tws, x, NULL, n, 0);
        d->backward(g2.params, g2.grads, g2.tws, x, dy, dx2, n);
        karp_set_threads(0);
        ck_assert_msg(state_same(&g, &g2, d) && memcmp(dx, dx2, (size_t)nin * 4) == 0,
                      "backward depends on the thread count\n%s", m->json);
        memset(g2.grads, 0, (size_t)d->param_floats * 4);
        d->backward(g2.params, g2.grads, g2.tws, x, dy, NULL, n);
        ck_assert_msg(state_same(&g, &g2, d), "backward without dx differs\n%s", m->json);
        if (m->ms) {
            State s;
            state_new(&s, d);
            memcpy(s.params, params, (size_t)d->param_floats * 4);
            m->ms->desc->forward(s.params, s.tws, x, NULL, n, 0);
            m->ms->desc->backward(s.params, s.grads, s.tws, x, dy, dx2, n);
            ck_assert_msg(state_same(&g, &s, d) && memcmp(dx, dx2, (size_t)nin * 4) == 0,
                          "JIT and .so backward differ\n%s", m->json);
            state_free(&s);
        }
        /* accumulation: a second backward adds the same gradients again */
        d->backward(g2.params, g2.grads, g2.tws, x, dy, NULL, n);
        for (int64_t i = 0; i < d->param_floats; i++)
            r.grads[i] = 2 * g.grads[i];
        double acc = grad_ratio(d, g2.grads, r.grads);
        ck_assert_msg(acc <= 1.0, "a second backward does not add: %.3g x tolerance\n%s", acc, m->json);
        state_free(&g), state_free(&r), state_free(&g2);
        free(x), free(dy), free(y), free(yr), free(dx), free(dxr), free(dx2);
    }
}

/* The worst ratio of |got - ref| to the step tolerance (file comment):
 * before the step both had the same state; gref is the reference's
 * gradient, ref the reference's state after the step. */
static double step_ratio(const Model *m, const float *got, const State *ref, const float *gref,
                         int64_t step)
{
    const KarpModelDesc *d = m->d;
    const char *opt = d->optimizer;
    KpOptimHyper h = m->h;
    double s = h.lr / (1.0 - pow(h.beta1, (double)step));
    double c = sqrt(1.0 - pow(h.beta2, (double)step));
    double worst = 0;
    for (uint32_t p = 0; p < d->nparams; p++) {
        const KarpParamDesc *pd = &d->params[p];
        double mean = 0;
        for (int64_t i = 0; i < pd->size; i++)
            mean += fabs((double)gref[pd->offset + i]);
        mean /= (double)pd->size;
        for (int64_t k = pd->offset; k < pd->offset + pd->size; k++) {
            double g = gref[k], gerr = 1e-5 * (fabs(g) + mean), allowed;
            if (strcmp(opt, "sgd") == 0) {
                allowed = h.lr * gerr;
            } else if (strcmp(opt, "momentum") == 0) {
                allowed = h.lr * (1.0 - h.beta) * gerr;
            } else {
                double mk = ref->opt[k], vk = ref->opt[d->param_floats + k];
                double den = sqrt(vk) / c + h.eps;
                allowed = (1.0 - h.beta1) * gerr / den;
                if (vk > 0)
                    allowed += fabs(mk) * (1.0 - h.beta2) * fabs(g) * gerr / (sqrt(vk) * c * den * den);
                allowed *= 4 * s;
            }
            allowed += 2.4e-7 * fabs((double)ref->params[k]) + 1e-30;
            double r = fabs((double)got[k] - ref->params[k]) / allowed;
            if (!(r <= worst))
                worst = isnan(r) ? INFINITY : r;
        }
    }
    return worst;
}

/* Four optimizer steps.  With compose unset, train_step, whose loss and
 * parameters are checked against the interpreter's FORWARD|LOSS|BACKWARD
 * then UPDATE, from the same state each step; model.so and one thread
 * must match the JIT bit for bit.  With compose set, forward + backward
 * (random dy) + apply against FORWARD|BACKWARD then UPDATE. */
static void check_steps(const Model *m, const float *params, int compose, double *worst)
{
    const KarpModelDesc *d = m->d;
    State g, r, one, so;
    state_new(&g, d), state_new(&r, d), state_new(&one, d), state_new(&so, d);
    memcpy(g.params, params, (size_t)d->param_floats * 4);
    state_copy(&one, &g, d), state_copy(&so, &g, d);
    const int64_t batches[] = {d->max_batch, 5, 1, d->max_batch};
    for (int64_t step = 1; step <= 4; step++) {
        int64_t n = batches[step - 1] < d->max_batch ? batches[step - 1] : d->max_batch, nin = n * m->in_size, nout = n * m->out_size;
        float *x = malloc((size_t)nin * 4), *yr = malloc((size_t)nout * 4), *dy = malloc((size_t)nout * 4);
        void *target = malloc((size_t)nout * 4);
        random_batch(m, n, x, target);
        for (int64_t i = 0; i < nout; i++)
            dy[i] = uniform(-1, 1);
        state_copy(&r, &g, d);
        float lr = NAN, lg = NAN;
        KpInterpTrain t = {.params = r.params, .grads = r.grads, .opt = r.opt, .x = x,
                           .target = target, .dy = dy, .y = yr, .loss = &lr, .n = n, .step = step};
        t.phases = PHASE(FORWARD) | (compose ? 0 : PHASE(LOSS)) | PHASE(BACKWARD);
        run_interp(m, &t);
        float *gref = malloc((size_t)d->param_floats * 4);
        memcpy(gref, r.grads, (size_t)d->param_floats * 4);
        t.phases = PHASE(UPDATE);
        run_interp(m, &t);

        if (compose) {
            d->forward(g.params, g.tws, x, NULL, n, 0);
            d->backward(g.params, g.grads, g.tws, x, dy, NULL, n);
            d->apply(g.params, g.grads, g.opt, step);
        } else {
            lg = d->train_step(g.params, g.grads, g.opt, g.tws, x, target, n, step, 0);
            double mean = 0;
            for (int64_t i = 0; i < nout; i++)
                mean += fabs((double)yr[i]);
            double lr_ratio = fabs((double)lg - lr) / (1e-5 * (fabs((double)lr) + mean / (double)nout));
            ck_assert_msg(lr_ratio <= 1.0, "step %lld: loss %.9g, reference %.9g\n%s", (long long)step,
                          lg, lr, m->json);
            worst[0] = lr_ratio > worst[0] ? lr_ratio : worst[0];
            karp_set_threads(1);
            float l1 = d->train_step(one.params, one.grads, one.opt, one.tws, x, target, n, step, 0);
            karp_set_threads(0);
            ck_assert_msg(memcmp(&l1, &lg, 4) == 0 && state_same(&g, &one, d),
                          "train_step depends on the thread count\n%s", m->json);
            if (m->ms) {
                float ls = m->ms->desc->train_step(so.params, so.grads, so.opt, so.tws, x, target, n, step, 0);
                ck_assert_msg(memcmp(&ls, &lg, 4) == 0 && state_same(&g, &so, d),
                              "JIT and .so train_step differ\n%s", m->json);
            }
        }
        /* a plain loop: a ck_assert per float writes to Check's message file */
        for (int64_t i = 0; i < d->param_floats; i++)
            if (g.grads[i] != 0.0f)
                ck_abort_msg("gradients not zeroed after the step\n%s", m->json);
        double sr = step_ratio(m, g.params, &r, gref, step);
        ck_assert_msg(sr <= 1.0, "step %lld: parameters off by %.3g x tolerance\n%s", (long long)step,
                      sr, m->json);
        worst[1] = sr > worst[1] ? sr : worst[1];
        free(x), free(yr), free(dy), free(target), free(gref);
    }
    state_free(&g), state_free(&r), state_free(&one), state_free(&so);
}

/* apply from given gradients is the reference's update to the bit. */
static void check_apply_exact(const Model *m, const float *params)
{
    const KarpModelDesc *d = m->d;
    State g, r;
    state_new(&g, d), state_new(&r, d);
    memcpy(g.params, params, (size_t)d->param_floats * 4);
    for (int64_t step = 1; step <= 3; step++) {
        for (int64_t i = 0; i < d->trainable_floats; i++)
            g.grads[i] = uniform(-1, 1) * (pick(8) == 0 ? 1e-6f : 1.0f);
        state_copy(&r, &g, d);
        d->apply(g.params, g.grads, g.opt, step);
        KpInterpTrain t = {.phases = PHASE(UPDATE), .params = r.params, .grads = r.grads,
                           .opt = r.opt, .n = 1, .step = step};
        run_interp(m, &t);
        ck_assert_msg(state_same(&g, &r, d), "apply differs from the reference update\n%s", m->json);
    }
    state_free(&g), state_free(&r);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_bet_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Every check above on model m from freshly initialized parameters, the
 * worst ratios into wb, ws and wc; returns those parameters (free them). */
static float *check_model(Model *m, double wb[3], double ws[2], double wc[2])
{
    float *params = slab(m->d->param_floats * 4);
    init_params(m->d, params);
    check_backward(m, params, wb);
    if (m->d->train_step)
        check_steps(m, params, 0, ws);
    if (m->d->apply) {
        check_steps(m, params, 1, wc);
        check_apply_exact(m, params);
    }
    return params;
}

static void report(const char *what, const double wb[3], const double ws[2], const double wc[2])
{
    fprintf(stderr, "%s: worst of the tolerance: y %.3g, grads %.3g, dx %.3g; train_step loss "
            "%.3g, step %.3g; forward+backward+apply step %.3g\n", what, wb[0], wb[1], wb[2], ws[0],
            ws[1], wc[1]);
}

START_TEST(test_random_mlps)
{
    double wb[3] = {0}, ws[2] = {0}, wc[2] = {0};
    int count = getenv("KP_TRAIN_MODELS") ? atoi(getenv("KP_TRAIN_MODELS")) : 12;
    for (int i = 0; i < count; i++) {
        Model m = {0};
        random_model(i, m.json, sizeof m.json);
        model_open(&m, i % 3 == 0);
        free(check_model(&m, wb, ws, wc));
        model_close(&m);
    }
    report("train", wb, ws, wc);
}
END_TEST

/* Two models both tests below run, each at its own largest batch (the
 * format's one %d): a Fashion-MNIST MLP and wide odd layers (rows of 301
 * and 129 floats). */
static const char *const FM_MLP =
    "{\"karp\": 1, \"name\": \"fm\", \"input\": {\"shape\": [1, 28, 28]}, \"layers\": "
    "[{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 128, \"activation\": \"relu\"}, "
    "{\"type\": \"dense\", \"units\": 10}], \"loss\": \"cross_entropy\", "
    "\"optimizer\": {\"type\": \"adam\", \"lr\": 0.001}, \"batch\": %d}\n";
static const char *const WIDE_MLP =
    "{\"karp\": 1, \"name\": \"wide\", \"input\": {\"shape\": [301]}, \"layers\": "
    "[{\"type\": \"dense\", \"units\": 129, \"activation\": \"tanh\"}, "
    "{\"type\": \"dense\", \"units\": 67, \"activation\": \"sigmoid\"}], \"loss\": \"bce\", "
    "\"optimizer\": {\"type\": \"momentum\", \"lr\": 0.05}, \"batch\": %d}\n";

/* m->json: models[i - 2] for i >= 2, else FM_MLP or WIDE_MLP at batch b */
static void model_json(Model *m, const char *const *models, int i, int b)
{
    if (i < 2)
        snprintf(m->json, sizeof m->json, i == 0 ? FM_MLP : WIDE_MLP, b);
    else
        snprintf(m->json, sizeof m->json, "%s\n", models[i - 2]);
}

/* Shapes that take the parallel paths (over 64k multiply-adds at the
 * largest batch), full and partial row blocks and column tiles: FM_MLP
 * at batch 64; WIDE_MLP at 37; a loss-less model (forward and
 * backward only) and an optimizer without a loss (no train_step).  And a
 * small CNN compiled for 16-float vectors, whose convolutions' input
 * gradients (13 and 9 wide, 16 and 32 channels; 12 filters in the second
 * layer, as Winograd takes 16 and more at batch 8) take the kernel with
 * lanes along dx's channels inside the layers' groups, its weights
 * transposed by the group's prologue (emit_conv_grad_x_outer.c), and
 * whose 5x5 layer's weight gradient takes the outer products in the same
 * group (emit_conv_grad_w_outer.c). */
START_TEST(test_larger_and_partial)
{
    static const char *models[] = {
        "{\"karp\": 1, \"name\": \"noloss\", \"input\": {\"shape\": [40]}, \"layers\": "
        "[{\"type\": \"dense\", \"units\": 500, \"activation\": \"leaky_relu\"}, "
        "{\"type\": \"dense\", \"units\": 9, \"activation\": \"softmax\"}], \"batch\": 20}",
        "{\"karp\": 1, \"name\": \"optonly\", \"input\": {\"shape\": [19]}, \"layers\": "
        "[{\"type\": \"dense\", \"units\": 7, \"activation\": \"relu\"}], "
        "\"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1, \"weight_decay\": 0.1}, \"batch\": 16}",
        "{\"karp\": 1, \"name\": \"cnn\", \"input\": {\"shape\": [16, 13, 13]}, \"layers\": "
        "[{\"type\": \"conv2d\", \"filters\": 32, \"kernel\": 5, \"activation\": \"relu\"}, "
        "{\"type\": \"conv2d\", \"filters\": 12, \"kernel\": 3, \"padding\": 1, \"activation\": \"relu\"}, "
        "{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 5}], \"loss\": \"cross_entropy\", "
        "\"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}, \"batch\": 8}",
    };
    double wb[3] = {0}, ws[2] = {0}, wc[2] = {0};
    for (int i = 0; i < 5; i++) {
        Model m = {0};
        if (i == 4) {
            if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
                continue;
            m.cpu = "x86-64-v3", m.vw = 16;
        }
        model_json(&m, models, i, i == 0 ? 64 : 37);
        model_open(&m, i == 0);
        free(check_model(&m, wb, ws, wc));
        model_close(&m);
    }
    report("larger", wb, ws, wc);
}
END_TEST

/* Three train_steps at batch n of m, compiled with its fold setting, and
 * of the same model without the fold, from the same parameters: the
 * losses and the whole state (parameters, the gradients that must be
 * zero again, the optimizer's moments) the same bits. */
static void check_same_as_unfolded(Model *m, const float *params, int64_t n)
{
    Model u = {.fold = KP_FOLD_NEVER};
    memcpy(u.json, m->json, sizeof u.json);
    model_open(m, 0);
    model_open(&u, 0);
    State a, b;
    state_new(&a, m->d), state_new(&b, u.d);
    memcpy(a.params, params, (size_t)m->d->param_floats * 4);
    state_copy(&b, &a, m->d);
    for (int64_t step = 1; step <= 3; step++) {
        float *x = malloc((size_t)(m->in_size * n) * 4);
        void *target = malloc((size_t)(m->out_size * n) * 4);
        random_batch(m, n, x, target);
        /* each model's own scratch, bound to this thread before its call:
         * the two models' shared areas need not be the same size */
        ck_assert_int_eq(kp_rt_scratch_reserve(m->d, &m->mj->train_scratch, "test"), 0);
        float la = m->d->train_step(a.params, a.grads, a.opt, a.tws, x, target, n, step, 0);
        ck_assert_int_eq(kp_rt_scratch_reserve(u.d, &u.mj->train_scratch, "test"), 0);
        float lb = u.d->train_step(b.params, b.grads, b.opt, b.tws, x, target, n, step, 0);
        char where[48] = "none";
        bool differ = state_diff(&a, &b, m->d, where, sizeof where);
        ck_assert_msg(memcmp(&la, &lb, 4) == 0 && !differ,
                      "batch %lld, step %lld: the folded train_step differs from the unfolded one "
                      "(loss %.9g against %.9g; first difference: %s)\n%s",
                      (long long)n, (long long)step, la, lb, where, m->json);
        free(x), free(target);
    }
    state_free(&a), state_free(&b);
    model_close(m);
    model_close(&u);
}

/* Models compiled for batch 1, where train_step folds the optimizer step
 * into the dense layers' weight gradients (backend/fold_update.c; forced
 * with KP_FOLD_ALWAYS: these layers fit in L2, where the default leaves
 * them): the same checks as above, so a folded step that computed another
 * gradient, left a gradient nonzero, or changed a weight before a later
 * gradient read it would be caught against the interpreter; and bit for
 * bit the step of the same model without the fold (KP_FOLD_NEVER).
 * Widths that are not a multiple of the vector (the scalar tails), rows
 * shorter than a chunk (several rows per work item), every optimizer, a
 * CNN's dense head, and a folded layer whose input gradient is summed in
 * halves. */
START_TEST(test_batch1_folded)
{
    static const char *models[] = {
        "{\"karp\": 1, \"name\": \"sgd1\", \"input\": {\"shape\": [2000]}, \"layers\": "
        "[{\"type\": \"dense\", \"units\": 4, \"activation\": \"tanh\"}, "
        "{\"type\": \"dense\", \"units\": 40, \"activation\": \"relu\"}, "
        "{\"type\": \"dense\", \"units\": 7}], \"loss\": \"mse\", "
        "\"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1, \"weight_decay\": 0.1}, \"batch\": 1}",
        "{\"karp\": 1, \"name\": \"cnn1\", \"input\": {\"shape\": [3, 12, 12]}, \"layers\": "
        "[{\"type\": \"conv2d\", \"filters\": 8, \"kernel\": 3, \"activation\": \"relu\"}, "
        "{\"type\": \"maxpool2d\", \"size\": 2}, {\"type\": \"flatten\"}, "
        "{\"type\": \"dense\", \"units\": 33, \"activation\": \"relu\"}, "
        "{\"type\": \"dense\", \"units\": 5}], \"loss\": \"cross_entropy\", "
        "\"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}, \"batch\": 1}",
        /* a folded second layer whose dx (no epilogue: the first layer has
         * no activation) is read in two halves of W's rows (196 KB of W, 48
         * rows; emit_grad_dense.c) */
        "{\"karp\": 1, \"name\": \"dx1\", \"input\": {\"shape\": [64]}, \"layers\": "
        "[{\"type\": \"dense\", \"units\": 1024}, "
        "{\"type\": \"dense\", \"units\": 48, \"activation\": \"relu\"}, "
        "{\"type\": \"dense\", \"units\": 5}], \"loss\": \"cross_entropy\", "
        "\"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}, \"batch\": 1}",
    };
    double wb[3] = {0}, ws[2] = {0}, wc[2] = {0};
    for (int i = 0; i < 6; i++) {
        /* the last: FM_MLP without groups (a folded node not in a group) */
        Model m = {.fold = KP_FOLD_ALWAYS, .no_group = i == 5};
        model_json(&m, models, i % 5, 1);
        model_open(&m, i % 2 == 0);
        ck_assert_int_eq((int)m.d->max_batch, 1);
        float *params = check_model(&m, wb, ws, wc);
        model_close(&m);
        check_same_as_unfolded(&m, params, 1);
        free(params);
    }
    report("batch 1", wb, ws, wc);
}
END_TEST

/* The generated adam's sqrt(v) / c, without a division (backend/emit_optim.c
 * says why it is the float a / c): y = RN(1/c), q0 = RN(a y),
 * q = RN(q0 + RN(a - c q0) y), q0 where that is NaN. */
static float div_c(float a, float c, float y)
{
    float q0 = a * y, q = fmaf(fmaf(-q0, c, a), y, q0);
    return isnan(q) ? q0 : q;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 0 where div_c(a, c) is a / c to the bit (NaN for NaN), else 1 after
 * saying so (the first few). */
static int64_t div_c_differs(float a, float c, int64_t *told)
{
    volatile float q = a / c, p = div_c(a, c, 1.0f / c);
    if ((isnan(q) && isnan(p)) || memcmp((const void *)&q, (const void *)&p, 4) == 0)
        return 0;
    if ((*told)++ < 3)
        fprintf(stderr, "%a / %a: %a, by multiply-adds %a\n", a, c, q, p);
    return 1;
}

/* a = sqrt(v) is 0, infinite, NaN or a normal float >= 2^-75; c =
 * RN(sqrt(1 - b2^t)) is in [2^-12, 1].  Over that domain the quotient's
 * bits depend on the significands alone, so every a of one binade against
 * chosen c (1, the largest significand, the ones whose RN(1/c) is furthest
 * from 1/c, Adam's first steps) covers those c; then random pairs over the
 * whole domain, special values included. */
START_TEST(test_division_by_c)
{
    int64_t differ = 0, told = 0;
    float cs[] = {1.0f, 0x1.fffffep-1f, 0x1.fffffap-1f, 0x1.fffff6p-4f, 0x1p-12f,
                  (float)sqrt(1 - pow(0.999f, 1)), (float)sqrt(1 - pow(0.999f, 2)),
                  (float)sqrt(1 - pow(0.999f, 1000))};
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++)
        for (uint32_t m = 0; m < 1u << 23; m++)
            differ += div_c_differs(from_bits(127u << 23 | m), cs[k], &told);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < 4000000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float a = sqrtf(from_bits((uint32_t)s & 0x7FFFFFFFu));
        float c;
        if (i % 2) {
            float b2 = from_bits((uint32_t)(s >> 32) % 0x3F800000u); /* [0, 1) */
            c = (float)sqrt(1 - pow(b2, (double)(1 + (s >> 40) % 100000)));
        } else {
            c = from_bits(0x39800000u + (uint32_t)(s >> 32) % (0x3F800001u - 0x39800000u)); /* [2^-12, 1] */
        }
        differ += div_c_differs(a, c, &told);
    }
    differ += div_c_differs(INFINITY, 0.5f, &told) + div_c_differs(0.0f, 0.5f, &told) +
              div_c_differs(NAN, 0.5f, &told);
    /* c = 0: a b2 just below 1 that rounds to the float 1 */
    differ += div_c_differs(1.0f, 0.0f, &told) + div_c_differs(0.0f, 0.0f, &told) +
              div_c_differs(INFINITY, 0.0f, &told);
    ck_assert_int_eq(differ, 0);
}
END_TEST

static Suite *train_suite(void)
{
    Suite *s = suite_create("backend_train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_random_mlps);
    tcase_add_test(tc, test_larger_and_partial);
    tcase_add_test(tc, test_batch1_folded);
    tcase_add_test(tc, test_division_by_c);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(train_suite(), CK_FORK_GETENV);
}
