/*
 * karp_data.h — datasets and mini-batches for host programs (libkarprt).
 *
 * A karp_dataset is one split of a dataset in memory, samples as float32
 * (pixels scaled to [0,1]) and, where the format has them, int32 labels.
 * A karp_loader hands out its shuffled, augmented mini-batches; the next
 * batch is prepared in a background thread while the caller trains on the
 * current one.
 *
 * Ownership: the dataset owns its arrays, the loader its batch buffers;
 * pointers returned stay valid until the next call on the same object (for
 * a loader: the next karp_loader_next) or its release.  Errors as in
 * karp.h: 0 / NULL / a negative KARP_E* code, the message in *err where
 * given and in karp_last_error().
 */
#ifndef KARP_DATA_H
#define KARP_DATA_H

#include "karp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct karp_dataset karp_dataset;
typedef struct karp_loader karp_loader;

/* spec: "fashion-mnist" (Debian's dataset-fashion-mnist), "fashion-mnist:DIR",
 * "mnist:DIR" (IDX files, gzip'ed or raw), "cifar10:DIR" (the binary
 * version), "csv:TRAIN.csv[:TEST.csv]" (first column the target);
 * split: "train" or "test". */
karp_dataset *karp_data_open(const char *spec, const char *split, karp_error *err);
void karp_data_close(karp_dataset *d);

int64_t karp_data_count(const karp_dataset *d);
/* One sample's shape (CHW for images) into shape[3]; returns its rank. */
int karp_data_shape(const karp_dataset *d, int64_t shape[3]);
int64_t karp_data_sample_size(const karp_dataset *d);
const float *karp_data_x(const karp_dataset *d);          /* count * sample_size */
const int32_t *karp_data_labels(const karp_dataset *d);   /* count, or NULL */
int karp_data_classes(const karp_dataset *d);             /* 1 + the largest label */

/* x = (x - mean[c]) / std[c] per channel c (one value: every channel). */
int karp_data_normalize(karp_dataset *d, const float *mean, int nmean, const float *std,
                        int nstd);

/* Mini-batches of batch samples (the last one of an epoch may be smaller),
 * in an order that depends only on (seed, epoch), each sample augmented
 * (aug: naug transforms applied in order, seeded per sample and epoch;
 * NULL/0 for none; at most 64; all but KARP_AUG_NOISE need [C,H,W]
 * samples; the transforms are defined in docs/training.md).  A sample's
 * pixels depend only on (seed, epoch, its index in the dataset).  The
 * loader starts one thread, which prepares the next batch while the caller
 * works on the current one, and karp_loader_free joins it; call a loader's
 * functions from one thread at a time.  The dataset must outlive the
 * loader and stay unchanged while it lives. */
karp_loader *karp_loader_new(const karp_dataset *d, int64_t batch, uint64_t seed,
                             const karp_augment *aug, int naug, karp_error *err);
/* Normalize every batch after augmenting it: x = (x - mean[c]) / std[c]
 * per channel c, as karp_data_normalize does to a whole dataset (which,
 * done first, would have augmentation see normalized pixels: the zeros
 * random_crop and rotate bring in would no longer be black).  nmean and
 * nstd: 1 (every channel) or the number of channels, at most 16; 0 and 0
 * turns it off.  Applies to every batch karp_loader_next returns after the
 * call. */
int karp_loader_normalize(karp_loader *l, const float *mean, int nmean, const float *std,
                          int nstd);
/* Start epoch (0-based): reshuffle and restart. */
int karp_loader_epoch(karp_loader *l, int64_t epoch);
/* The next batch: returns its n, 0 at the end of the epoch, or < 0.  *x gets
 * n samples, *labels (may be NULL) n labels (NULL if the dataset has none). */
int64_t karp_loader_next(karp_loader *l, const float **x, const int32_t **labels);
/* Skip k batches of the current epoch (to resume). */
int karp_loader_skip(karp_loader *l, int64_t k);
void karp_loader_free(karp_loader *l);

#ifdef __cplusplus
}
#endif

#endif
