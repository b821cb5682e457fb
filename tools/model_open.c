/*
 * Opening a model for the commands that run one (train, eval): the model
 * file or the shared library, and the defaults the model file holds for
 * training.
 */
#include "model_open.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "karpc.h"

static int is_model_file(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

karp_model *kp_cli_open_model(const char *path, long max_batch, int check_numerics,
                              karp_error *err)
{
    if (is_model_file(path)) {
        karp_compile_options o;
        karp_compile_options_init(&o);
        o.max_batch = (int)max_batch;
        o.check_numerics = check_numerics;
        return karp_compile(path, &o, err);
    }
    return karp_open(path, err);
}

void kp_cli_train_defaults(const karp_info *info, KpTrainDefaults *d)
{
    memset(d, 0, sizeof *d);
    d->seed = info->seed;
    d->epochs = (long)info->train_epochs;
    d->nmean = info->normalize_nmean;
    d->nstd = info->normalize_nstd;
    if (d->nmean)
        memcpy(d->mean, info->normalize_mean, (size_t)d->nmean * sizeof(float));
    if (d->nstd)
        memcpy(d->std, info->normalize_std, (size_t)d->nstd * sizeof(float));
    d->norm_from = "train.normalize";
    d->naug = info->naugment <= KP_MAX_AUGMENT ? info->naugment : 0;
    if (d->naug)
        memcpy(d->aug, info->augment, (size_t)d->naug * sizeof *d->aug);
    d->aug_from = "train.augment";
}

int kp_cli_open_data(const char *spec, const char *split, const KpTrainDefaults *d,
                     const karp_info *info, const char *model, KpDataset *ds)
{
    karp_error err = {0};
    if (kp_data_open(spec, split, ds, &err) != 0) {
        kp_cli_fail("%s", err.message);
        return -1;
    }
    if (ds->sample_size != info->input_size) {
        kp_cli_fail("%s takes %lld floats per sample, the %s data of %s has %lld", model,
                    (long long)info->input_size, split, spec, (long long)ds->sample_size);
        return -1;
    }
    if (d->nmean && kp_data_normalize(ds, d->mean, d->nmean, d->std, d->nstd) != 0) {
        kp_cli_fail("%s: %s: %s", model, d->norm_from, karp_last_error());
        return -1;
    }
    return 0;
}

int kp_cli_model_start(const char *path, long max_batch, long threads, int check_numerics,
                       karp_model **m, karp_info *info, KpTrainDefaults *d)
{
    karp_error err = {0};
    *m = NULL;
    if (threads && karp_set_threads((int)threads) != 0) {
        kp_cli_fail("%s", karp_last_error());
        return -1;
    }
    *m = kp_cli_open_model(path, max_batch, check_numerics, &err);
    if (!*m) {
        kp_cli_fail("%s", err.message);
        return -1;
    }
    if (karp_model_info(*m, info) != 0) {
        kp_cli_fail("%s", karp_last_error());
        return -1;
    }
    kp_cli_train_defaults(info, d);
    return 0;
}
