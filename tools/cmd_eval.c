/*
 * karpc eval model.json|model.so --data ... — run a model over the test
 * split of a dataset: a few predictions, accuracy, and inference
 * throughput.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/data.h"
#include "cli.h"
#include "karp.h"
#include "karpc.h"

static const char *const fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

typedef struct EvalArgs {
    const char *model;
    const char *data;
    const char *load;
    long batch, threads, show;
} EvalArgs;

static int parse_args(int argc, char **argv, EvalArgs *a)
{
    memset(a, 0, sizeof *a);
    a->show = 5;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "--data") == 0 && v) {
            a->data = v;
            i++;
        } else if (strcmp(s, "--load") == 0 && v) {
            a->load = v;
            i++;
        } else if (strcmp(s, "--batch") == 0) {
            if (kp_cli_int("--batch", v, 1, 65536, &a->batch))
                return 1;
            i++;
        } else if (strcmp(s, "--threads") == 0) {
            if (kp_cli_int("--threads", v, 1, 1024, &a->threads))
                return 1;
            i++;
        } else if (strcmp(s, "--show") == 0) {
            if (kp_cli_int("--show", v, 0, 1000, &a->show))
                return 1;
            i++;
        } else if (s[0] == '-') {
            return kp_cli_fail("eval: unknown option or missing value '%s'", s);
        } else if (!a->model) {
            a->model = s;
        } else {
            return kp_cli_fail("eval: one model at a time: '%s' and '%s'", a->model, s);
        }
    }
    if (!a->model)
        return kp_cli_fail("eval: no model given (model.json or model.so)");
    if (!a->data)
        return kp_cli_fail("eval: --data is required (e.g. --data fashion-mnist)");
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static karp_model *open_model(const EvalArgs *a, karp_error *err)
{
    if (ends_with(a->model, ".json")) {
        karp_compile_options o;
        karp_compile_options_init(&o);
        o.max_batch = (int)a->batch;
        return karp_compile(a->model, &o, err);
    }
    return karp_open(a->model, err);
}

static int argmax(const float *v, int64_t n)
{
    int best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = (int)i;
    return best;
}

static int run(karp_model *m, const karp_info *info, const KpDataset *ds, const EvalArgs *a)
{
    int64_t batch = a->batch && a->batch < info->max_batch ? a->batch : info->max_batch;
    float *y = malloc((size_t)(ds->count * info->output_size) * sizeof(float));
    if (!y)
        return kp_cli_fail("out of memory");
    double t0 = kp_cli_now();
    for (int64_t i = 0; i < ds->count; i += batch) {
        int64_t n = ds->count - i < batch ? ds->count - i : batch;
        if (karp_infer(m, ds->x + i * ds->sample_size, n, y + i * info->output_size) != 0) {
            free(y);
            return kp_cli_fail("%s", karp_last_error());
        }
    }
    double secs = kp_cli_now() - t0;

    int64_t correct = 0;
    int named = info->output_size == 10 && strstr(a->data, "fashion") != NULL;
    for (int64_t i = 0; i < ds->count; i++) {
        int p = argmax(y + i * info->output_size, info->output_size);
        correct += p == ds->labels[i];
        if (i < a->show) {
            if (named)
                printf("image %lld: predicted %-11s (class %d), label %-11s (class %d)\n",
                       (long long)i, fashion_classes[p], p, fashion_classes[ds->labels[i]],
                       ds->labels[i]);
            else
                printf("image %lld: predicted class %d, label %d\n", (long long)i, p,
                       ds->labels[i]);
        }
    }
    printf("%s: %lld test images, accuracy %.2f%%%s\n", info->name, (long long)ds->count,
           100.0 * (double)correct / (double)ds->count,
           a->load ? "" : " (untrained weights from the model's seed)");
    printf("inference: %.0f images/s at batch %lld (%.3f s)\n", (double)ds->count / secs,
           (long long)batch, secs);
    free(y);
    return 0;
}

int kp_cmd_eval(int argc, char **argv)
{
    EvalArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (a.threads && karp_set_threads((int)a.threads) != 0)
        return kp_cli_fail("%s", karp_last_error());

    karp_error err = {0};
    char images[4096], labels[4096];
    if (kp_data_idx_paths(a.data, "t10k", images, labels, sizeof images, &err) != 0)
        return kp_cli_fail("%s", err.message);
    karp_model *m = open_model(&a, &err);
    if (!m)
        return kp_cli_fail("%s", err.message);
    karp_info info;
    KpDataset ds = {0};
    rc = karp_model_info(m, &info);
    if (rc == 0 && a.load && karp_load(m, a.load) != 0)
        rc = kp_cli_fail("%s", karp_last_error());
    if (rc == 0 && kp_data_load_idx(images, labels, &ds, &err) != 0)
        rc = kp_cli_fail("%s", err.message);
    if (rc == 0 && ds.sample_size != info.input_size)
        rc = kp_cli_fail("%s takes %lld floats per sample, %s has %lld", a.model,
                         (long long)info.input_size, images, (long long)ds.sample_size);
    if (rc == 0)
        rc = run(m, &info, &ds, &a);
    kp_data_free(&ds);
    karp_close(m);
    return rc ? 1 : 0;
}
