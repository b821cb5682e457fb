/*
 * data_open.c — a --data argument to a dataset (kp_data_open), and
 * per-channel normalization.
 */
#include "data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define EXPECTED "expected fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR or " \
                 "csv:TRAIN.csv[:TEST.csv]"

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int kp_data_has_test(const char *spec)
{
    if (!spec)
        return 0;
    if (starts(spec, "csv:"))
        return strchr(spec + 4, ':') != NULL;
    return 1;
}

/* The csv: spec's file for split, copied into path. */
static int csv_path(const char *spec, const char *split, char *path, size_t cap, karp_error *err)
{
    const char *train = spec + 4, *colon = strchr(train, ':');
    size_t n = colon ? (size_t)(colon - train) : strlen(train);
    const char *file = train;
    if (strcmp(split, "test") == 0) {
        if (!colon)
            return kp_rt_error(err, KARP_EINVAL,
                               "--data %s: no test file (write csv:TRAIN.csv:TEST.csv)", spec);
        file = colon + 1;
        n = strlen(file);
    }
    if (n == 0)
        return kp_rt_error(err, KARP_EINVAL, "--data %s: empty file name", spec);
    if (n >= cap)
        return kp_rt_error(err, KARP_EINVAL, "--data %s: file name too long", spec);
    memcpy(path, file, n);
    path[n] = '\0';
    return 0;
}

int kp_data_open(const char *spec, const char *split, KpDataset *ds, karp_error *err)
{
    if (!spec || !split || !ds)
        return kp_rt_error(err, KARP_EINVAL, "kp_data_open: NULL argument");
    memset(ds, 0, sizeof *ds);
    int test = strcmp(split, "test") == 0;
    if (!test && strcmp(split, "train") != 0)
        return kp_rt_error(err, KARP_EINVAL,
                           "kp_data_open: split must be \"train\" or \"test\", got '%s'", split);
    if (strcmp(spec, "fashion-mnist") == 0 || starts(spec, "fashion-mnist:") ||
        starts(spec, "mnist:")) {
        char images[4096], labels[4096];
        int rc = kp_data_idx_paths(spec, test ? "t10k" : "train", images, labels, sizeof images,
                                   err);
        return rc ? rc : kp_data_load_idx(images, labels, ds, err);
    }
    if (starts(spec, "cifar10:")) {
        if (spec[8] == '\0')
            return kp_rt_error(err, KARP_EINVAL, "--data %s: no directory after 'cifar10:'", spec);
        return kp_data_load_cifar10(spec + 8, split, ds, err);
    }
    if (starts(spec, "csv:")) {
        char path[4096];
        int rc = csv_path(spec, split, path, sizeof path, err);
        return rc ? rc : kp_data_load_csv(path, ds, err);
    }
    return kp_rt_error(err, KARP_EINVAL, "--data %s: " EXPECTED, spec);
}

/* The channels of a sample: its first dimension (for a rank-1 sample, each
 * feature is a channel). */
static int64_t channels_of(const KpDataset *ds)
{
    return ds->rank > 0 && ds->shape[0] > 0 ? ds->shape[0] : 1;
}

int kp_data_normalize_check(const KpDataset *ds, const float *mean, int nmean, const float *std,
                            int nstd)
{
    if (!ds || !mean || !std)
        return kp_rt_error(NULL, KARP_EINVAL, "normalize: NULL argument");
    int64_t channels = channels_of(ds);
    if ((nmean != 1 && nmean != channels) || (nstd != 1 && nstd != channels))
        return kp_rt_error(NULL, KARP_EINVAL,
                           "normalize: %d means and %d stds for %lld channels (give 1 or %lld)",
                           nmean, nstd, (long long)channels, (long long)channels);
    for (int i = 0; i < nstd; i++)
        if (!(std[i] > 0) || !isfinite(std[i]))
            return kp_rt_error(NULL, KARP_EINVAL, "normalize: std[%d] is %g, must be > 0", i,
                               (double)std[i]);
    for (int i = 0; i < nmean; i++)
        if (!isfinite(mean[i]))
            return kp_rt_error(NULL, KARP_EINVAL, "normalize: mean[%d] is %g, must be finite", i,
                               (double)mean[i]);
    return 0;
}

void kp_data_normalize_sample(const KpDataset *ds, float *x, const float *mean, int nmean,
                              const float *std, int nstd)
{
    int64_t channels = channels_of(ds);
    int64_t plane = ds->sample_size / channels;
    for (int64_t c = 0; c < channels; c++) {
        float mu = mean[nmean == 1 ? 0 : c], sd = std[nstd == 1 ? 0 : c];
        float *p = x + c * plane;
        for (int64_t i = 0; i < plane; i++)
            p[i] = (p[i] - mu) / sd; /* as torchvision's Normalize */
    }
}

int kp_data_normalize(KpDataset *ds, const float *mean, int nmean, const float *std, int nstd)
{
    int rc = kp_data_normalize_check(ds, mean, nmean, std, nstd);
    if (rc)
        return rc;
    for (int64_t s = 0; s < ds->count; s++)
        kp_data_normalize_sample(ds, ds->x + s * ds->sample_size, mean, nmean, std, nstd);
    return 0;
}
