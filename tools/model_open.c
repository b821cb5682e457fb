/*
 * Opening a model for the commands that run one (train, eval): the model
 * file or the shared library, and the defaults the model file holds for
 * training.
 */
#include "model_open.h"

#include <stdio.h>
#include <string.h>

#include "../frontend/spec.h"
#include "../runtime/model.h"
#include "cli.h"
#include "karpc.h"

static int is_model_file(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

karp_model *kp_cli_open_model(const char *path, long max_batch, karp_error *err)
{
    if (is_model_file(path)) {
        karp_compile_options o;
        karp_compile_options_init(&o);
        o.max_batch = (int)max_batch;
        return karp_compile(path, &o, err);
    }
    return karp_open(path, err);
}

/* The seed is read from the descriptor, the one place both kinds of model
 * carry it (karp_info does not expose it). */
int kp_cli_train_defaults(const char *path, const karp_model *m, KpTrainDefaults *d,
                          karp_error *err)
{
    memset(d, 0, sizeof *d);
    d->seed = m->desc->seed;
    if (!is_model_file(path))
        return 0;
    KpArena a;
    KpDiag diag;
    KpModelSpec *spec = NULL;
    kp_arena_init(&a);
    kp_diag_init(&diag);
    int rc = kp_frontend_parse_file(path, &a, &spec, &diag);
    if (rc == 0) {
        d->epochs = (long)spec->train.epochs;
        d->nmean = spec->train.nmean;
        d->nstd = spec->train.nstd;
        memcpy(d->mean, spec->train.mean, sizeof d->mean);
        memcpy(d->std, spec->train.std, sizeof d->std);
    } else {
        err->code = KARP_EMODEL;
        snprintf(err->message, sizeof err->message, "%s", diag.msg);
    }
    kp_arena_free(&a);
    return rc;
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
        kp_cli_fail("%s: train.normalize: %s", model, karp_last_error());
        return -1;
    }
    return 0;
}

int kp_cli_model_start(const char *path, long max_batch, long threads, karp_model **m,
                       karp_info *info, KpTrainDefaults *d)
{
    karp_error err = {0};
    *m = NULL;
    if (threads && karp_set_threads((int)threads) != 0) {
        kp_cli_fail("%s", karp_last_error());
        return -1;
    }
    *m = kp_cli_open_model(path, max_batch, &err);
    if (!*m) {
        kp_cli_fail("%s", err.message);
        return -1;
    }
    if (karp_model_info(*m, info) != 0) {
        kp_cli_fail("%s", karp_last_error());
        return -1;
    }
    if (kp_cli_train_defaults(path, *m, d, &err) != 0) {
        kp_cli_fail("%s", err.message);
        return -1;
    }
    return 0;
}
