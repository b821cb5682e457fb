/*
 * data.h — datasets for evaluation and training, and the batcher that
 * serves them in shuffled mini-batches.
 *
 * A KpDataset holds count samples as float32 (pixels scaled to [0,1]) and,
 * where the format has them, int32 labels and/or float targets.  It owns
 * its arrays; release it with kp_data_free().  Errors name the file and
 * the byte offset (binary formats) or line:col (CSV).
 */
#ifndef KP_RT_DATA_H
#define KP_RT_DATA_H

#include <stdint.h>

#include "../include/karp.h"

struct KpRng; /* model.h */

typedef struct KpDataset {
    int64_t count;          /* samples */
    int rank;               /* of one sample */
    int64_t shape[3];       /* one sample, CHW (1,28,28 for IDX images) */
    int64_t sample_size;    /* floats per sample */
    float *x;               /* count * sample_size */
    int32_t *labels;        /* count, or NULL */
    int nclasses;           /* 1 + the largest label (10 for CIFAR-10); 0 without labels */
    float *targets;         /* count floats (CSV: the first column), or NULL */
} KpDataset;

/* Read an IDX image file (idx3, unsigned bytes, gzip'ed or raw) and its
 * IDX label file (idx1).  The counts must agree. */
int kp_data_load_idx(const char *images, const char *labels, KpDataset *ds, karp_error *err);

/* Resolve a --data argument to the two files of its test split ("t10k") or
 * train split ("train"): "fashion-mnist" (the Debian package's directory),
 * "mnist:DIR" or "fashion-mnist:DIR". */
int kp_data_idx_paths(const char *spec, const char *split, char *images, char *labels, size_t cap,
                      karp_error *err);

/* CIFAR-10, binary version: DIR/data_batch_1.bin .. data_batch_5.bin
 * (split "train") or DIR/test_batch.bin ("test"); DIR may also be the
 * directory holding "cifar-10-batches-bin/".  Records of 1 label byte
 * (0..9) and 3072 pixel bytes, CHW [3,32,32], scaled to [0,1]. */
int kp_data_load_cifar10(const char *dir, const char *split, KpDataset *ds, karp_error *err);

/* A CSV file of numbers: the first column is the target, the others the
 * features (rank-1 samples).  A first line whose first field is not a
 * number is a header and skipped; blank lines are skipped; "\r\n" is
 * accepted.  Targets go to ds->targets, and also to ds->labels (with
 * nclasses) when every one is a non-negative integer below 2^24.
 * Errors: "FILE:LINE: expected N numbers, found M",
 * "FILE:LINE:COL: not a number: 'abc'" (COL 1-based, in bytes). */
int kp_data_load_csv(const char *path, KpDataset *ds, karp_error *err);

/* A --data argument's split ("train" or "test"):
 *   fashion-mnist | fashion-mnist:DIR | mnist:DIR   IDX, train / t10k files
 *   cifar10:DIR                                     CIFAR-10 binary
 *   csv:TRAIN.csv[:TEST.csv]                        CSV
 * "test" of a csv: spec without a test file is KARP_EINVAL (ask
 * kp_data_has_test first). */
int kp_data_open(const char *spec, const char *split, KpDataset *ds, karp_error *err);

/* 1 if spec names a test split (every form but csv:TRAIN.csv), else 0. */
int kp_data_has_test(const char *spec);

/* x = (x - mean[c]) / std[c] per channel c, the channel being the first
 * dimension of a sample (the feature itself for rank-1 samples).  nmean
 * and nstd are 1 (every channel) or the number of channels; std > 0.
 * 0, or KARP_EINVAL with karp_last_error() set and ds unchanged. */
int kp_data_normalize(KpDataset *ds, const float *mean, int nmean, const float *std, int nstd);

/* kp_data_normalize in two halves, for one sample at a time (the loader
 * normalizes after augmenting): the checks (0 or KARP_EINVAL, message in
 * karp_last_error()), then x = (x - mean[c]) / std[c] on one sample of ds. */
int kp_data_normalize_check(const KpDataset *ds, const float *mean, int nmean, const float *std,
                            int nstd);
void kp_data_normalize_sample(const KpDataset *ds, float *x, const float *mean, int nmean,
                              const float *std, int nstd);

void kp_data_free(KpDataset *ds);

/* order = a permutation of 0..n-1, Fisher-Yates from a generator seeded
 * with (seed, epoch) alone: the order of the batcher and the loader. */
void kp_data_shuffle(int64_t *order, int64_t n, uint64_t seed, int64_t epoch);

/*
 * KpBatcher: mini-batches of a dataset in an order fixed by (seed, epoch)
 * alone, so a run resumed at (epoch, batch) sees the same batches.  Every
 * sample once per epoch; the last batch may be partial.  The batcher owns
 * its buffers; the dataset must outlive it.
 *
 *   kp_batcher_init(&b, &ds, 64, seed);      // positioned at epoch 0
 *   for (epoch...) { kp_batcher_epoch(&b, epoch);
 *       while ((n = kp_batcher_next(&b, &x, &labels, &targets)) > 0) ... }
 *   kp_batcher_free(&b);
 */
typedef struct KpBatcher {
    const KpDataset *ds;
    int64_t batch;
    uint64_t seed;
    int64_t *order;         /* ds->count sample indices, this epoch's order */
    int64_t pos;            /* next position in order */
    float *x;               /* batch * sample_size */
    int32_t *labels;        /* batch, or NULL if the dataset has none */
    float *targets;         /* batch, or NULL if the dataset has none */
} KpBatcher;

/* batch >= 1.  0, or KARP_EINVAL / KARP_ENOMEM with karp_last_error() set
 * (b is then empty and kp_batcher_free is harmless). */
int kp_batcher_init(KpBatcher *b, const KpDataset *ds, int64_t batch, uint64_t seed);

/* Shuffle for epoch (Fisher-Yates, kp_rng seeded from seed and epoch) and
 * go back to its first batch. */
void kp_batcher_epoch(KpBatcher *b, int64_t epoch);

/* Copy the next batch into the batcher's buffers and point *x, *labels,
 * *targets at them (each may be NULL; *labels / *targets become NULL when
 * the dataset has none).  Returns the number of samples, 0 at the end of
 * the epoch. */
int64_t kp_batcher_next(KpBatcher *b, const float **x, const int32_t **labels,
                        const float **targets);

/* Skip k batches of the current epoch (to resume mid-epoch); past the end
 * is the end.  0, or KARP_EINVAL for k < 0. */
int kp_batcher_skip(KpBatcher *b, int64_t k);

void kp_batcher_free(KpBatcher *b);

/*
 * Augmentation (augment.c; the transforms are defined there).  Pixels in
 * [0,1], CHW; each sample's randomness comes from kp_augment_rng(seed,
 * epoch, index in the dataset) alone.
 */
#define KP_MAX_AUGMENT 64

/* "hflip", "random_crop", "rotate", "noise", or NULL for an unknown kind. */
const char *kp_augment_name(int kind);

/* aug[0..naug): naug in [0, KP_MAX_AUGMENT], kinds known, values finite
 * (random_crop: an integer padding >= 0; rotate: degrees in [0, 180];
 * noise: std >= 0; hflip: unused).  rank >= 0: the samples' rank, 3 for
 * every kind but noise, which takes any.  Messages start with what
 * ("augment[2]: rotate: bad value 200 (degrees: 0 to 180)").  0 or
 * KARP_EINVAL. */
int kp_augment_check(const karp_augment *aug, int64_t naug, int rank, const char *what,
                     karp_error *err);

/* The generator of sample index in epoch. */
void kp_augment_rng(struct KpRng *r, uint64_t seed, int64_t epoch, int64_t index);

/* Apply the checked list to one sample x of size floats in place, drawing
 * from r; tmp holds size floats.  Rank-3 shape is [C,H,W]. */
void kp_augment_sample(float *x, float *tmp, int rank, const int64_t shape[3], int64_t size,
                       const karp_augment *aug, int naug, struct KpRng *r);

/* The transforms with their random choices given (x is [c,h,w]; tmp
 * c*h*w floats): a flip; the crop at offset (dy, dx) in [0, 2 pad]^2 of the
 * image zero-padded by pad; a rotation by radians, counter-clockwise. */
void kp_aug_hflip(float *x, int64_t c, int64_t h, int64_t w);
void kp_aug_crop(float *x, float *tmp, int64_t c, int64_t h, int64_t w, int64_t pad, int64_t dy,
                 int64_t dx);
void kp_aug_rotate(float *x, float *tmp, int64_t c, int64_t h, int64_t w, double radians);

/*
 * The loader (data_loader.c) is karp_data.h's karp_loader: the batcher's
 * order, each sample gathered, augmented, then normalized, the next batch
 * prepared by a background thread.  Internally also: float targets, and a
 * synchronous mode (no thread: each batch prepared inside next) that gives
 * the same batches.
 */
typedef struct karp_loader KpLoader;
struct karp_dataset;

/* The dataset inside a public karp_dataset (data_public.c). */
const KpDataset *kp_dataset_of(const struct karp_dataset *d);

/* As karp_loader_new; threaded 0: no background thread. */
KpLoader *kp_loader_new(const KpDataset *ds, int64_t batch, uint64_t seed,
                        const karp_augment *aug, int naug, int threaded, karp_error *err);
/* As karp_loader_next, with the float targets too (each pointer may be NULL). */
int64_t kp_loader_next(KpLoader *l, const float **x, const int32_t **labels,
                       const float **targets);
/* karp_loader_normalize, karp_loader_epoch, karp_loader_skip and
 * karp_loader_free serve both. */

#endif
