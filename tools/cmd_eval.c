/*
 * karpc eval model.json|model.so --data ... — run a model over the test
 * split of a dataset: a few predictions, the test loss and accuracy (the
 * same text as `karpc train`'s epoch line ends with), and inference
 * throughput.  The data is normalized as for `karpc train` (the model's
 * train.normalize, or --normalize), never augmented.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/data.h"
#include "cli.h"
#include "karp.h"
#include "metrics.h"
#include "model_open.h"
#include "options.h"

static const char *const fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

typedef struct EvalArgs {
    const char *model;
    const char *data;
    const char *load;
    const char *normalize;  /* override, or NULL */
    long batch, threads, show;
} EvalArgs;

static int parse_args(int argc, char **argv, EvalArgs *a)
{
    memset(a, 0, sizeof *a);
    a->show = 5;
    const KpOption opts[] = {
        {"--load", &a->load, NULL, 0, 0, NULL},
        {"--batch", NULL, &a->batch, 1, 65536, NULL},
        {"--threads", NULL, &a->threads, 1, 1024, NULL},
        {"--show", NULL, &a->show, 0, 1000, NULL},
        {"--normalize", &a->normalize, NULL, 0, 0, NULL},
    };
    return kp_cli_options("eval", argc, argv, opts, sizeof opts / sizeof opts[0], &a->model,
                          &a->data);
}

static int run(karp_model *m, const karp_info *info, const KpDataset *ds, const EvalArgs *a)
{
    int64_t batch = a->batch && a->batch < info->max_batch ? a->batch : info->max_batch;
    KpTask task;
    char msg[512];
    if (kp_cli_task_init(&task, info, ds, msg, sizeof msg) != 0)
        return kp_cli_fail("%s with --data %s: %s", a->model, a->data, msg);
    int32_t *pred = malloc((size_t)ds->count * sizeof *pred);
    if (!pred)
        return kp_cli_fail("out of memory");
    KpTestResult r;
    if (kp_cli_test(m, &task, ds, batch, pred, &r) != 0) {
        free(pred);
        return 1;
    }
    int named = info->output_size == 10 && strstr(a->data, "fashion") != NULL;
    for (int64_t i = 0; ds->labels && i < a->show && i < ds->count; i++) {
        int p = pred[i];
        if (named)
            printf("image %lld: predicted %-11s (class %d), label %-11s (class %d)\n",
                   (long long)i, fashion_classes[p], p, fashion_classes[ds->labels[i]],
                   ds->labels[i]);
        else
            printf("image %lld: predicted class %d, label %d\n", (long long)i, p, ds->labels[i]);
    }
    char test[96];
    kp_cli_format_test(test, sizeof test, &r);
    printf("%s: %lld test samples, %s%s\n", info->name, (long long)ds->count, test,
           a->load ? "" : " (untrained weights from the model's seed)");
    printf("inference: %.0f samples/s at batch %lld (%.3f s)\n", (double)ds->count / r.seconds,
           (long long)batch, r.seconds);
    free(pred);
    return 0;
}

int kp_cmd_eval(int argc, char **argv)
{
    EvalArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    karp_model *m;
    karp_info info;
    KpTrainDefaults d;
    KpDataset ds = {0};
    /* csv:FILE without a test file: evaluate on FILE */
    const char *split = kp_data_has_test(a.data) ? "test" : "train";
    rc = kp_cli_model_start(a.model, a.batch, a.threads, 0, &m, &info, &d) ? 1 : 0;
    if (rc == 0 && a.normalize && kp_cli_parse_normalize(a.normalize, &d) != 0)
        rc = 1;
    if (rc == 0 && a.load && karp_load(m, a.load) != 0)
        rc = kp_cli_fail("%s", karp_last_error());
    if (rc == 0 && kp_cli_open_data(a.data, split, &d, &info, a.model, &ds) != 0)
        rc = 1;
    if (rc == 0)
        rc = run(m, &info, &ds, &a);
    kp_data_free(&ds);
    karp_close(m);
    return rc ? 1 : 0;
}
