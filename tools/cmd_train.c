/*
 * karpc train model.json|model.so --data SPEC — train a model: shuffled
 * mini-batches of the train split through karp_forward / karp_backward /
 * karp_apply_gradients, a test pass after each epoch, checkpoints, a CSV
 * log and an SVG plot.
 *
 *   open model, datasets, loader   (--load: weights, optimizer state, and
 *   |                                where the saved run stopped)
 *   for each epoch e from the checkpoint's to --epochs:
 *       loader at (seed, e), skipping the batches already done
 *       for each batch: one step; progress on stderr; stop on a signal
 *           (--save-every N: --save after every N steps, too)
 *       test pass; the epoch line on stdout; --log, --plot, --save
 *
 * The step is karp_forward, the loss gradient on the host (the reference
 * kernels), karp_backward and karp_apply_gradients rather than
 * karp_train_step, because karp_train_step returns only the loss: this
 * way the step's own outputs give the train accuracy at no extra cost (an
 * extra karp_infer per batch would cost a third of a step).  A model
 * without accuracy (no labels) uses karp_train_step.
 *
 * The train split's batches come from the runtime's loader (karp_data.h):
 * shuffled by (seed, epoch), each sample augmented as train.augment or
 * --augment says (seeded by seed, epoch and the sample's index, so a
 * resumed run sees the same pixels), then normalized; the next batch is
 * prepared in the loader's thread while the current one trains.  The test
 * split is normalized once and never augmented.
 *
 * A signal (SIGINT, SIGTERM) sets a flag; the loop stops after the step
 * running, saves that state with --save (metadata "epoch" = epochs
 * completed, "batches" = batches completed in the next one) and the
 * command exits with 128 + the signal.  A step is never cut in half.
 */
#include <assert.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "karp_data.h"
#include "metrics.h"
#include "model_open.h"
#include "plot_svg.h"
#include "progress.h"
#include "options.h"
#include "train_log.h"

typedef struct TrainArgs {
    const char *model, *data;
    const char *save, *load, *log, *plot;
    const char *augment, *normalize;    /* overrides, or NULL */
    long epochs;            /* 0: the model's train.epochs, else 1 */
    long batch;             /* 0: the model's batch */
    long threads;           /* 0: the default */
    long seed;
    int has_seed;
    long save_every;        /* --save every this many steps too (0: per epoch) */
    int check_numerics;     /* --check-numerics */
} TrainArgs;

static int parse_args(int argc, char **argv, TrainArgs *a)
{
    memset(a, 0, sizeof *a);
    /* --check-numerics is a flag without a value: taken out here */
    int kept = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--check-numerics") == 0)
            a->check_numerics = 1;
        else
            argv[kept++] = argv[i];
    }
    argc = kept;
    const KpOption opts[] = {
        {"--epochs", NULL, &a->epochs, 1, 1000000, NULL},
        {"--batch", NULL, &a->batch, 1, 65536, NULL},
        {"--threads", NULL, &a->threads, 1, 1024, NULL},
        {"--seed", NULL, &a->seed, 0, 2147483647, &a->has_seed},
        {"--save", &a->save, NULL, 0, 0, NULL},
        {"--save-every", NULL, &a->save_every, 1, 1000000000, NULL},
        {"--load", &a->load, NULL, 0, 0, NULL},
        {"--log", &a->log, NULL, 0, 0, NULL},
        {"--plot", &a->plot, NULL, 0, 0, NULL},
        {"--augment", &a->augment, NULL, 0, 0, NULL},
        {"--normalize", &a->normalize, NULL, 0, 0, NULL},
    };
    if (kp_cli_options("train", argc, argv, opts, sizeof opts / sizeof opts[0], &a->model,
                       &a->data) != 0)
        return 1;
    if (a->save_every && !a->save)
        return kp_cli_fail("--save-every needs --save FILE");
    return 0;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* SA_RESETHAND: a second Ctrl-C kills at once. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct Trainer {
    const TrainArgs *a;
    karp_model *m;
    karp_info info;
    KpTask task;
    KpTrainDefaults defaults;
    KpDataset train, test;
    int has_test;           /* the --data has a test split */
    KpLoader *loader;       /* the train split's batches */
    int64_t batch;          /* samples per step */
    int64_t steps;          /* steps per epoch */
    long epochs;            /* the total */
    long start_epoch;       /* epochs already done (a checkpoint's) */
    int64_t start_batch;    /* batches already done in the next epoch */
    uint64_t seed;
    int use_forward;        /* the step through karp_forward/backward (for accuracy) */
    float *y, *dy, *scratch;
    KpHistory hist;
    KpProgress prog;
} Trainer;

/* Running sums over the steps of one epoch. */
typedef struct EpochSums {
    double loss;            /* sum of batch loss * n */
    int64_t right, seen;
} EpochSums;

typedef struct Batch {
    const float *x;
    const int32_t *labels;  /* or NULL */
    const float *targets;   /* or NULL */
    int64_t n;
} Batch;

/* One optimizer step on batch b, added to the epoch's sums. */
static int step(Trainer *t, const Batch *b, EpochSums *sums)
{
    const KpTask *k = &t->task;
    const void *target = kp_cli_target(k, b->labels, b->targets, b->n, t->scratch);
    float loss;
    if (!t->use_forward) {
        if (karp_train_step(t->m, b->x, target, b->n, &loss) != 0)
            return kp_cli_fail("%s", karp_last_error());
        sums->loss += (double)loss * (double)b->n;
        sums->seen += b->n;
        return 0;
    }
    if (karp_forward(t->m, b->x, b->n, t->y) != 0)
        return kp_cli_fail("%s", karp_last_error());
    sums->loss += kp_cli_loss(k, t->y, target, b->n) * (double)b->n;
    sums->right += kp_cli_correct(k, t->y, b->labels, b->n);
    sums->seen += b->n;
    kp_cli_loss_grad(k, t->dy, t->y, target, b->n);
    if (karp_backward(t->m, t->dy, NULL) != 0 || karp_apply_gradients(t->m) != 0)
        return kp_cli_fail("%s", karp_last_error());
    return 0;
}

static int set_meta_int(karp_model *m, const char *key, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return karp_set_metadata(m, key, buf);
}

/* --save with the position of the run: done epochs and batches. */
static int save(Trainer *t, long epochs_done, int64_t batches)
{
    if (!t->a->save)
        return 0;
    if (set_meta_int(t->m, "epoch", epochs_done) != 0 || set_meta_int(t->m, "batches", batches) != 0 ||
        set_meta_int(t->m, "batch_size", t->batch) != 0 ||
        set_meta_int(t->m, "seed", (long long)t->seed) != 0 || karp_save(t->m, t->a->save) != 0)
        return kp_cli_fail("%s", karp_last_error());
    return 0;
}

/* --log and --plot from the history. */
static int write_history(const Trainer *t)
{
    if (t->a->log && kp_cli_log_write(t->a->log, &t->hist) != 0)
        return 1;
    if (t->a->plot && kp_cli_plot_write(t->a->plot, t->info.name, &t->hist) != 0)
        return 1;
    return 0;
}

/* Without --check-numerics a NaN is found here, at the end of the epoch:
 * the mean loss, then the parameters; the run stops instead of going on. */
static int diverged(Trainer *t, int epoch, double loss)
{
    const char *hint = "the run diverged; try a lower learning rate or --check-numerics";
    if (!isfinite(loss))
        return kp_cli_fail("epoch %d: the loss is %s — %s", epoch,
                           isnan(loss) ? "NaN" : "infinite", hint);
    karp_param p;
    for (int i = 0, np = karp_param_count(t->m); i < np && karp_param_get(t->m, i, &p) == 0; i++)
        for (int64_t k = 0; k < p.size; k++)
            if (!isfinite(p.data[k]))
                return kp_cli_fail("epoch %d: parameter %s has %s at element %lld — %s", epoch,
                                   p.name, isnan(p.data[k]) ? "NaN" : "Inf", (long long)k, hint);
    return 0;
}

static int epoch_end(Trainer *t, long e, const EpochSums *s, double t0, double train_secs)
{
    KpTestResult r = {.loss = NAN, .acc = -1};
    if (t->has_test && kp_cli_test(t->m, &t->task, &t->test, t->batch, NULL, &r) != 0)
        return 1;
    KpEpochStats st = {
        .epoch = (int)e + 1,
        .train_loss = s->seen ? s->loss / (double)s->seen : 0,
        .train_acc = t->use_forward && s->seen ? 100.0 * (double)s->right / (double)s->seen : -1,
        .test_loss = r.loss,
        .test_acc = r.acc,
        .samples_per_s = train_secs > 0 ? (double)s->seen / train_secs : 0,
        .seconds = kp_cli_now() - t0,
    };
    char test[96] = "no test split";
    if (t->has_test)
        kp_cli_format_test(test, sizeof test, &r);
    kp_cli_progress_clear(&t->prog);
    printf("epoch %d/%ld: train loss %.4f", st.epoch, t->epochs, st.train_loss);
    if (st.train_acc >= 0)
        printf(" acc %.2f%%", st.train_acc);
    printf(" | %s | %.0f samples/s, %.1f s\n", test, st.samples_per_s, st.seconds);
    fflush(stdout);
    if (kp_cli_history_add(&t->hist, &st) != 0 || write_history(t) != 0)
        return 1;
    if (diverged(t, st.epoch, st.train_loss) != 0)
        return 1;
    return save(t, e + 1, 0);
}

static void say_stopped(Trainer *t, long e, int64_t done)
{
    kp_cli_progress_clear(&t->prog);
    fprintf(stderr, "karpc: %s: stopped in epoch %ld/%ld after batch %lld of %lld",
            strsignal(stop_signal), e + 1, t->epochs, (long long)done, (long long)t->steps);
    if (t->a->save)
        fprintf(stderr, "; saved %s (continue with --load %s)\n", t->a->save, t->a->save);
    else
        fputs(" (no --save: nothing written)\n", stderr);
}

/* The epochs; returns the exit status. */
static int train(Trainer *t)
{
    catch_signals();
    for (long e = t->start_epoch; e < t->epochs; e++) {
        int64_t first = e == t->start_epoch ? t->start_batch : 0;
        if (karp_loader_epoch(t->loader, e) != 0 || karp_loader_skip(t->loader, first) != 0)
            return kp_cli_fail("%s", karp_last_error());
        kp_cli_progress_epoch(&t->prog, (int)e + 1, (int)t->epochs, t->steps, first);
        EpochSums sums = {0};
        double t0 = kp_cli_now();
        int64_t done = first;
        Batch b;
        while (done < t->steps && !stop_signal) {
            b.n = kp_loader_next(t->loader, &b.x, &b.labels, &b.targets);
            if (b.n < 0)
                return kp_cli_fail("%s", karp_last_error());
            assert(b.n > 0);
            if (step(t, &b, &sums) != 0)
                return 1;
            done++;
            /* Mid-epoch, as a stop would save it: --load resumes there. */
            if (t->a->save_every && done % t->a->save_every == 0 && done < t->steps &&
                save(t, e, done) != 0)
                return 1;
            kp_cli_progress_step(&t->prog, done, sums.loss / (double)sums.seen,
                                 t->use_forward ? 100.0 * (double)sums.right / (double)sums.seen
                                                : -1,
                                 sums.seen);
        }
        if (done < t->steps) {
            int rc = save(t, e, done);
            say_stopped(t, e, done);
            return rc ? 1 : 128 + stop_signal;
        }
        if (epoch_end(t, e, &sums, t0, kp_cli_now() - t0) != 0)
            return 1;
        if (stop_signal && e + 1 < t->epochs) {
            say_stopped(t, e + 1, 0);
            return 128 + stop_signal;
        }
    }
    return 0;
}

/* A metadata value of the loaded checkpoint as an integer in [0, hi];
 * *v keeps its value when the key is absent. */
static int meta_int(const Trainer *t, const char *key, long long hi, long long *v)
{
    const char *s = karp_get_metadata(t->m, key);
    if (!s)
        return 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || x < 0 || x > hi)
        return kp_cli_fail("%s: metadata '%s' is '%s', expected an integer between 0 and %lld",
                           t->a->load, key, s, hi);
    *v = x;
    return 0;
}

/* --load: the weights and optimizer state, and where the saved run was. */
static int resume(Trainer *t)
{
    if (karp_load(t->m, t->a->load) != 0)
        return kp_cli_fail("%s", karp_last_error());
    long long epoch = 0, batches = 0, bsize = t->batch, seed = (long long)t->seed;
    if (meta_int(t, "epoch", 1000000, &epoch) || meta_int(t, "batches", t->steps, &batches) ||
        meta_int(t, "batch_size", 65536, &bsize) || meta_int(t, "seed", INT64_MAX, &seed))
        return 1;
    if (batches > 0 && bsize != t->batch)
        return kp_cli_fail("%s stopped in the middle of an epoch at batch size %lld: continue it "
                           "with --batch %lld",
                           t->a->load, bsize, bsize);
    if (!t->a->has_seed)
        t->seed = (uint64_t)seed;
    t->start_epoch = (long)epoch;
    t->start_batch = batches;
    if (epoch || batches)
        fprintf(stderr, "resuming from %s: %lld epochs done, then %lld batches\n", t->a->load,
                epoch, batches);
    return 0;
}

/* The train split's loader: augmented, then normalized. */
static int open_loader(Trainer *t)
{
    const KpTrainDefaults *d = &t->defaults;
    karp_error err = {0};
    t->loader = kp_loader_new(&t->train, t->batch, t->seed, d->aug, d->naug, 1, &err);
    if (!t->loader)
        return kp_cli_fail("%s of %s with --data %s: %s", d->aug_from, t->a->model, t->a->data,
                           err.message);
    if (d->nmean && karp_loader_normalize(t->loader, d->mean, d->nmean, d->std, d->nstd) != 0)
        return kp_cli_fail("%s: %s: %s", t->a->model, d->norm_from, karp_last_error());
    return 0;
}

static int open_data(Trainer *t)
{
    const TrainArgs *a = t->a;
    t->has_test = kp_data_has_test(a->data);
    KpTrainDefaults raw = t->defaults;
    raw.nmean = raw.nstd = 0;
    if (kp_cli_open_data(a->data, "train", &raw, &t->info, a->model, &t->train) != 0 ||
        (t->has_test &&
         kp_cli_open_data(a->data, "test", &t->defaults, &t->info, a->model, &t->test) != 0))
        return 1;
    char msg[512];
    if (kp_cli_task_init(&t->task, &t->info, &t->train, msg, sizeof msg) != 0)
        return kp_cli_fail("%s with --data %s: %s", t->a->model, t->a->data, msg);
    return 0;
}

static int setup(Trainer *t)
{
    const TrainArgs *a = t->a;
    if (kp_cli_model_start(a->model, a->batch, a->threads, a->check_numerics, &t->m, &t->info,
                           &t->defaults) != 0)
        return 1;
    KpTrainDefaults *d = &t->defaults;
    if ((a->augment && kp_cli_parse_augment(a->augment, d) != 0) ||
        (a->normalize && kp_cli_parse_normalize(a->normalize, d) != 0))
        return 1;
    if (t->info.no_train_reason)
        return kp_cli_fail("%s: cannot be trained: %s", a->model, t->info.no_train_reason);
    if (a->check_numerics && karp_set_check_numerics(t->m, 1) != 0)
        return kp_cli_fail("%s", karp_last_error());
    if (!t->info.has_train)
        return kp_cli_fail("%s: the model has no train_step: give it a \"loss\" and an "
                           "\"optimizer\"",
                           a->model);
    t->batch = a->batch ? a->batch : t->info.max_batch;
    if (t->batch > t->info.max_batch)
        return kp_cli_fail("--batch %lld is larger than the %lld %s was compiled for "
                           "(karpc model.json --batch %lld -o model.so)",
                           (long long)t->batch, (long long)t->info.max_batch, a->model,
                           (long long)t->batch);
    t->epochs = a->epochs ? a->epochs : d->epochs ? d->epochs : 1;
    t->seed = a->has_seed ? (uint64_t)a->seed : d->seed;
    if (open_data(t) != 0)
        return 1;
    t->steps = (t->train.count + t->batch - 1) / t->batch;
    if (a->load && resume(t) != 0)
        return 1;
    if (!a->load && a->has_seed && karp_init_params(t->m, t->seed) != 0)
        return kp_cli_fail("%s", karp_last_error());
    if (open_loader(t) != 0)
        return 1;
    t->use_forward = t->task.acc != KP_ACC_NONE && t->task.loss != KP_HOST_NONE;
    size_t out = (size_t)(t->batch * t->info.output_size) * sizeof(float);
    t->y = malloc(out);
    t->dy = malloc(out);
    t->scratch = malloc(out);
    if (!t->y || !t->dy || !t->scratch)
        return kp_cli_fail("out of memory");
    if (a->log && t->start_epoch > 0 && kp_cli_log_read(a->log, (int)t->start_epoch, &t->hist) != 0)
        return 1;
    /* Written now, so that a path that cannot be written fails before training. */
    return write_history(t);
}

static void release(Trainer *t)
{
    karp_loader_free(t->loader);
    kp_data_free(&t->train);
    kp_data_free(&t->test);
    karp_close(t->m);
    free(t->y);
    free(t->dy);
    free(t->scratch);
    kp_cli_history_free(&t->hist);
}

int kp_cmd_train(int argc, char **argv)
{
    TrainArgs a;
    if (parse_args(argc, argv, &a) != 0)
        return 1;
    Trainer t;
    memset(&t, 0, sizeof t);
    t.a = &a;
    kp_cli_progress_init(&t.prog, isatty(STDERR_FILENO));
    int rc = setup(&t);
    if (rc == 0 && t.start_epoch >= t.epochs) {
        printf("%s: %ld epochs done already (--epochs %ld counts them all)\n", a.load,
               t.start_epoch, t.epochs);
    } else if (rc == 0) {
        fprintf(stderr,
                "training %s: %lld samples, %lld batches of %lld, epochs %ld to %ld, seed %llu; ",
                t.info.name, (long long)t.train.count, (long long)t.steps, (long long)t.batch,
                t.start_epoch + 1, t.epochs, (unsigned long long)t.seed);
        if (t.has_test)
            fprintf(stderr, "%lld test samples\n", (long long)t.test.count);
        else
            fputs("no test split\n", stderr);
        if (t.defaults.naug) {
            char aug[1024];
            kp_cli_format_augment(aug, sizeof aug, t.defaults.aug, t.defaults.naug);
            fprintf(stderr, "augment: %s (%s)\n", aug, t.defaults.aug_from);
        }
        rc = train(&t);
    }
    release(&t);
    return rc;
}
