/*
 * data.h — datasets for evaluation and training.
 *
 * A KpDataset holds count samples as float32 (pixels scaled to [0,1]) and,
 * where the format has them, int32 labels.  It owns its arrays; release it
 * with kp_data_free().  Errors name the file and the byte offset.
 */
#ifndef KP_RT_DATA_H
#define KP_RT_DATA_H

#include <stdint.h>

#include "../include/karp.h"

typedef struct KpDataset {
    int64_t count;          /* samples */
    int rank;               /* of one sample */
    int64_t shape[3];       /* one sample, CHW (1,28,28 for IDX images) */
    int64_t sample_size;    /* floats per sample */
    float *x;               /* count * sample_size */
    int32_t *labels;        /* count, or NULL */
    int nclasses;           /* 1 + the largest label */
} KpDataset;

/* Read an IDX image file (idx3, unsigned bytes, gzip'ed or raw) and its
 * IDX label file (idx1).  The counts must agree. */
int kp_data_load_idx(const char *images, const char *labels, KpDataset *ds, karp_error *err);

/* Resolve a --data argument to the two files of its test split ("t10k") or
 * train split ("train"): "fashion-mnist" (the Debian package's directory),
 * "mnist:DIR" or "fashion-mnist:DIR". */
int kp_data_idx_paths(const char *spec, const char *split, char *images, char *labels, size_t cap,
                      karp_error *err);

void kp_data_free(KpDataset *ds);

#endif
