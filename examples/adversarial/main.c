/*
 * adversarial — FGSM adversarial training of a classifier, on the public
 * API alone (karp.h, karpc.h, karp_data.h).
 *
 *   adversarial [--model examples/fashion_cnn.json] [--data fashion-mnist]
 *               [--epochs N] [--eps 0.1] [--eval-eps 0.1] [--limit N]
 *               [--threads N] [--seed N]
 *
 * The model file is compiled twice, into two independent models that
 * start from the same weights:
 *
 *   normal       one karp_train_step per clean batch;
 *   adversarial  per batch, x_adv = clip(x + eps * sign(grad_x loss), 0, 1)
 *                against the model's current weights (fgsm.c), then one
 *                karp_train_step on the clean and the adversarial batch
 *                together — 2n samples, so this model is compiled for twice
 *                the batch.  Its loss is the mean of the clean and the
 *                adversarial loss: Goodfellow et al.'s objective with
 *                alpha = 1/2, and as many optimizer steps as the normal run.
 *
 * Pixels stay raw ([0,1]) on the host, so eps is in pixel units; the model
 * file's train.normalize is applied just before the model sees them.
 * Afterwards both models are evaluated on the test split, on clean images
 * and under a white-box FGSM attack (each model attacked through its own
 * gradient), and the four accuracies are printed as a table.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <karp_data.h>
#include <karpc.h>

#include "fgsm.h"

typedef struct Options {
    const char *model;
    const char *data;
    int64_t epochs;        /* 0: the model's train.epochs, else 1 */
    float eps;
    float eval_eps;
    int64_t limit;         /* 0: every sample */
    int threads;           /* 0: the runtime's default */
    int has_seed;
    uint64_t seed;
} Options;

/* The model file beside this folder when the build says where that is. */
#ifdef KARP_EXAMPLE_DIR
#define DEFAULT_MODEL KARP_EXAMPLE_DIR "/../fashion_cnn.json"
#else
#define DEFAULT_MODEL "examples/fashion_cnn.json"
#endif

static void usage(FILE *to)
{
    fprintf(to, "usage: adversarial [--model FILE.json] [--data SPEC] [--epochs N] [--eps E]\n"
                "                   [--eval-eps E] [--limit N] [--threads N] [--seed N]\n");
}

static int parse_int(const char *opt, const char *s, long long lo, long long hi, long long *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        fprintf(stderr, "adversarial: %s expects an integer between %lld and %lld, got '%s'\n",
                opt, lo, hi, s);
        return -1;
    }
    *v = x;
    return 0;
}

static int parse_eps(const char *opt, const char *s, float *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= 0 && x <= 1)) {
        fprintf(stderr, "adversarial: %s expects a number between 0 and 1, got '%s'\n", opt, s);
        return -1;
    }
    *v = (float)x;
    return 0;
}

static int parse_options(int argc, char **argv, Options *o)
{
    *o = (Options){.model = DEFAULT_MODEL, .data = "fashion-mnist",
                   .eps = 0.1f, .eval_eps = 0.1f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "adversarial: %s: unknown option or missing value\n", a);
            usage(stderr);
            return -1;
        }
        const char *v = argv[++i];
        long long x;
        if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--data"))
            o->data = v;
        else if (!strcmp(a, "--epochs")) {
            if (parse_int(a, v, 1, 1000000, &x))
                return -1;
            o->epochs = x;
        } else if (!strcmp(a, "--eps")) {
            if (parse_eps(a, v, &o->eps))
                return -1;
        } else if (!strcmp(a, "--eval-eps")) {
            if (parse_eps(a, v, &o->eval_eps))
                return -1;
        } else if (!strcmp(a, "--limit")) {
            if (parse_int(a, v, 1, 1000000000, &x))
                return -1;
            o->limit = x;
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(a, v, 1, 1024, &x))
                return -1;
            o->threads = (int)x;
        } else if (!strcmp(a, "--seed")) {
            if (parse_int(a, v, 0, 0x7fffffffffffffffLL, &x))
                return -1;
            o->seed = (uint64_t)x;
            o->has_seed = 1;
        } else {
            fprintf(stderr, "adversarial: unknown option '%s'\n", a);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Copy every parameter (and running statistic) of src into dst. */
static int copy_params(karp_model *dst, const karp_model *src)
{
    int count = karp_param_count(src);
    for (int i = 0; i < count; i++) {
        karp_param a, b;
        if (karp_param_get(src, i, &a) != 0 || karp_param_find(dst, a.name, &b) != 0 ||
            a.size != b.size)
            return -1;
        memcpy(b.data, a.data, sizeof(float) * (size_t)a.size);
    }
    return 0;
}

/* What both trainings share: the data, the batch, the scratch buffers. */
typedef struct Run {
    const Options *o;
    karp_dataset *train, *test;
    karp_loader *loader;
    int64_t batch, epochs, input;
    float *xn;             /* [2 batch, input]  normalized clean (+ adversarial) batch */
    float *xadv;           /* [batch, input] */
    float *grad;           /* [batch, input] */
    int32_t *labels2;      /* [2 batch] */
} Run;

static int runtime_error(const char *what)
{
    fprintf(stderr, "adversarial: %s: %s\n", what, karp_last_error());
    return -1;
}

/* One epoch of either training; adversarial = 0 trains f on clean batches
 * only.  Prints the epoch's line. */
static int train_epoch(Run *r, FgsmModel *f, int adversarial, int64_t epoch)
{
    const char *name = adversarial ? "adversarial" : "normal";
    if (karp_loader_epoch(r->loader, epoch) != 0)
        return runtime_error("loader");
    double t0 = now(), sum = 0, sum_clean = 0;
    int64_t seen = 0, n;
    const float *x;
    const int32_t *labels;
    while ((n = karp_loader_next(r->loader, &x, &labels)) > 0) {
        if (r->o->limit && seen + n > r->o->limit)
            n = r->o->limit - seen;
        if (n <= 0)
            break;
        float loss;
        if (!adversarial) {
            fgsm_normalize(f, x, n, r->xn);
            if (karp_train_step(f->m, r->xn, labels, n, &loss) != 0)
                return runtime_error(name);
        } else {
            double clean;
            if (fgsm_attack(f, x, labels, n, r->o->eps, r->grad, r->xadv, &clean, NULL) != 0)
                return runtime_error(name);
            fgsm_normalize(f, x, n, r->xn);
            fgsm_normalize(f, r->xadv, n, r->xn + n * r->input);
            memcpy(r->labels2, labels, sizeof(int32_t) * (size_t)n);
            memcpy(r->labels2 + n, labels, sizeof(int32_t) * (size_t)n);
            if (karp_train_step(f->m, r->xn, r->labels2, 2 * n, &loss) != 0)
                return runtime_error(name);
            sum_clean += clean * (double)n;
        }
        sum += (double)loss * (double)n;
        seen += n;
    }
    if (n < 0)
        return runtime_error("loader");
    double secs = now() - t0;
    if (!adversarial) {
        printf("normal      epoch %lld/%lld: loss %.4f | %lld samples, %.1f s, %.0f samples/s\n",
               (long long)epoch + 1, (long long)r->epochs, sum / (double)seen, (long long)seen,
               secs, (double)seen / secs);
    } else {
        /* the combined loss is (clean + adversarial) / 2, and the clean
         * half equals the attack's forward (same weights, no dropout) */
        double mixed = sum / (double)seen, clean = sum_clean / (double)seen;
        printf("adversarial epoch %lld/%lld: loss %.4f (clean %.4f, adversarial %.4f) | "
               "%lld samples, %.1f s, %.0f samples/s\n",
               (long long)epoch + 1, (long long)r->epochs, mixed, clean, 2 * mixed - clean,
               (long long)seen, secs, (double)seen / secs);
    }
    fflush(stdout);
    return 0;
}

/* Clean accuracy and accuracy under FGSM(eps) of f on the test split. */
static int evaluate(Run *r, FgsmModel *f, double *clean_acc, double *adv_acc, int64_t *count)
{
    const float *x = karp_data_x(r->test);
    const int32_t *labels = karp_data_labels(r->test);
    int64_t total = karp_data_count(r->test);
    if (r->o->limit && total > r->o->limit)
        total = r->o->limit;
    int64_t clean = 0, adv = 0;
    for (int64_t at = 0; at < total; at += r->batch) {
        int64_t n = total - at < r->batch ? total - at : r->batch, c;
        const float *xb = x + at * r->input;
        if (fgsm_count_correct(f, xb, labels + at, n, &c) != 0)
            return runtime_error("evaluate");
        clean += c;
        if (fgsm_attack(f, xb, labels + at, n, r->o->eval_eps, r->grad, r->xadv, NULL, NULL) != 0)
            return runtime_error("attack");
        if (fgsm_count_correct(f, r->xadv, labels + at, n, &c) != 0)
            return runtime_error("evaluate");
        adv += c;
    }
    *clean_acc = 100.0 * (double)clean / (double)total;
    *adv_acc = 100.0 * (double)adv / (double)total;
    *count = total;
    return 0;
}

static int open_data(Run *r)
{
    karp_error err;
    r->train = karp_data_open(r->o->data, "train", &err);
    if (!r->train) {
        fprintf(stderr, "adversarial: %s\n", err.message);
        return -1;
    }
    r->test = karp_data_open(r->o->data, "test", &err);
    if (!r->test) {
        fprintf(stderr, "adversarial: %s\n", err.message);
        return -1;
    }
    if (!karp_data_labels(r->train) || !karp_data_labels(r->test)) {
        fprintf(stderr, "adversarial: --data %s: the dataset has no class labels\n", r->o->data);
        return -1;
    }
    return 0;
}

/* The dataset's samples must be the model's inputs, its labels its classes. */
static int check_fit(const Run *r, const karp_info *in)
{
    if (karp_data_sample_size(r->train) != in->input_size ||
        karp_data_sample_size(r->test) != in->input_size) {
        fprintf(stderr, "adversarial: --data %s: %lld floats per sample, the model %s takes %lld\n",
                r->o->data, (long long)karp_data_sample_size(r->train), in->name,
                (long long)in->input_size);
        return -1;
    }
    int classes = karp_data_classes(r->train);
    if (karp_data_classes(r->test) > classes)
        classes = karp_data_classes(r->test);
    if (classes > in->output_size) {
        fprintf(stderr, "adversarial: --data %s: %d classes, the model %s has %lld outputs\n",
                r->o->data, classes, in->name, (long long)in->output_size);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    Options o;
    if (parse_options(argc, argv, &o) != 0)
        return 1;
    if (o.threads)
        karp_set_threads(o.threads);

    Run r = {.o = &o};
    karp_model *normal = NULL, *robust = NULL;
    FgsmModel fa = {0}, fb = {0};
    int status = 1;
    karp_error err;
    char msg[1024];

    if (open_data(&r) != 0)
        goto out;
    karp_compile_options copts;
    karp_compile_options_init(&copts);
    double t0 = now();
    normal = karp_compile(o.model, &copts, &err);
    if (!normal) {
        fprintf(stderr, "adversarial: %s\n", err.message);
        goto out;
    }
    karp_info info;
    karp_model_info(normal, &info);
    r.batch = info.max_batch;
    r.input = info.input_size;
    copts.max_batch = (int)(2 * r.batch);
    robust = karp_compile(o.model, &copts, &err);
    if (!robust) {
        fprintf(stderr, "adversarial: %s\n", err.message);
        goto out;
    }
    double compile_secs = now() - t0;
    if (check_fit(&r, &info) != 0)
        goto out;
    if (o.has_seed && karp_init_params(normal, o.seed) != 0) {
        runtime_error("init");
        goto out;
    }
    if (copy_params(robust, normal) != 0) {
        fprintf(stderr, "adversarial: the two compilations disagree on the parameters\n");
        goto out;
    }
    if (fgsm_init(&fa, normal, r.batch, msg, sizeof msg) != 0 ||
        fgsm_init(&fb, robust, r.batch, msg, sizeof msg) != 0) {
        fprintf(stderr, "adversarial: %s\n", msg);
        goto out;
    }
    r.epochs = o.epochs ? o.epochs : info.train_epochs > 0 ? info.train_epochs : 1;
    r.xn = malloc(sizeof(float) * (size_t)(2 * r.batch * r.input));
    r.xadv = malloc(sizeof(float) * (size_t)(r.batch * r.input));
    r.grad = malloc(sizeof(float) * (size_t)(r.batch * r.input));
    r.labels2 = malloc(sizeof(int32_t) * (size_t)(2 * r.batch));
    if (!r.xn || !r.xadv || !r.grad || !r.labels2) {
        fprintf(stderr, "adversarial: out of memory\n");
        goto out;
    }
    uint64_t seed = o.has_seed ? o.seed : info.seed;
    r.loader = karp_loader_new(r.train, r.batch, seed, NULL, 0, &err);
    if (!r.loader) {
        fprintf(stderr, "adversarial: %s\n", err.message);
        goto out;
    }

    printf("model %s (%s), compiled twice in %.1f s; data %s: %lld train, %lld test samples\n",
           info.name, o.model, compile_secs, o.data, (long long)karp_data_count(r.train),
           (long long)karp_data_count(r.test));
    printf("batch %lld, %lld epochs, train eps %g, attack eps %g (raw [0,1] pixels)%s\n",
           (long long)r.batch, (long long)r.epochs, (double)o.eps, (double)o.eval_eps,
           fa.nchan ? ", train.normalize applied after the attack" : "");
    for (int64_t e = 0; e < r.epochs; e++)
        if (train_epoch(&r, &fa, 0, e) != 0)
            goto out;
    for (int64_t e = 0; e < r.epochs; e++)
        if (train_epoch(&r, &fb, 1, e) != 0)
            goto out;

    double acc[2][2];
    int64_t count;
    t0 = now();
    if (evaluate(&r, &fa, &acc[0][0], &acc[0][1], &count) != 0 ||
        evaluate(&r, &fb, &acc[1][0], &acc[1][1], &count) != 0)
        goto out;
    printf("evaluated in %.1f s\n\n", now() - t0);
    printf("%lld test samples        clean   FGSM eps %g\n", (long long)count,
           (double)o.eval_eps);
    printf("normal training       %6.2f%%   %6.2f%%\n", acc[0][0], acc[0][1]);
    printf("adversarial training  %6.2f%%   %6.2f%%\n", acc[1][0], acc[1][1]);
    status = 0;
out:
    fgsm_free(&fa);
    fgsm_free(&fb);
    if (r.loader)
        karp_loader_free(r.loader);
    if (r.train)
        karp_data_close(r.train);
    if (r.test)
        karp_data_close(r.test);
    karp_close(normal);
    karp_close(robust);
    free(r.xn);
    free(r.xadv);
    free(r.grad);
    free(r.labels2);
    return status;
}
