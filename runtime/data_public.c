/*
 * data_public.c — karp_dataset (karp_data.h): a KpDataset behind the
 * public API.
 */
#include <stdlib.h>
#include <string.h>

#include "../include/karp_data.h"
#include "data.h"
#include "model.h"

struct karp_dataset {
    KpDataset ds;
};

const KpDataset *kp_dataset_of(const karp_dataset *d)
{
    return &d->ds;
}

karp_dataset *karp_data_open(const char *spec, const char *split, karp_error *err)
{
    karp_dataset *d = calloc(1, sizeof *d);
    if (!d) {
        kp_rt_error(err, KARP_ENOMEM, "karp_data_open: out of memory");
        return NULL;
    }
    if (kp_data_open(spec, split, &d->ds, err) != 0) {
        kp_data_free(&d->ds);
        free(d);
        return NULL;
    }
    return d;
}

void karp_data_close(karp_dataset *d)
{
    if (!d)
        return;
    kp_data_free(&d->ds);
    free(d);
}

int64_t karp_data_count(const karp_dataset *d)
{
    return d ? d->ds.count : kp_rt_error(NULL, KARP_EINVAL, "karp_data_count: dataset is NULL");
}

int karp_data_shape(const karp_dataset *d, int64_t shape[3])
{
    if (!d || !shape)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_data_shape: NULL argument");
    for (int i = 0; i < 3; i++)
        shape[i] = i < d->ds.rank ? d->ds.shape[i] : 0;
    return d->ds.rank;
}

int64_t karp_data_sample_size(const karp_dataset *d)
{
    return d ? d->ds.sample_size
             : kp_rt_error(NULL, KARP_EINVAL, "karp_data_sample_size: dataset is NULL");
}

const float *karp_data_x(const karp_dataset *d)
{
    return d ? d->ds.x : NULL;
}

const int32_t *karp_data_labels(const karp_dataset *d)
{
    return d ? d->ds.labels : NULL;
}

int karp_data_classes(const karp_dataset *d)
{
    return d ? d->ds.nclasses : kp_rt_error(NULL, KARP_EINVAL, "karp_data_classes: dataset is NULL");
}

int karp_data_normalize(karp_dataset *d, const float *mean, int nmean, const float *std, int nstd)
{
    if (!d)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_data_normalize: dataset is NULL");
    return kp_data_normalize(&d->ds, mean, nmean, std, nstd);
}
