/*
 * batcher.c — shuffled mini-batches.  The order of an epoch is a
 * Fisher-Yates shuffle of 0..count-1 drawn from a generator seeded with
 * (seed, epoch) alone: no state carries from one epoch to the next, so a
 * resumed run reproduces the batches of an uninterrupted one.
 */
#include "data.h"

#include <stdlib.h>
#include <string.h>

#include "model.h"

int kp_batcher_init(KpBatcher *b, const KpDataset *ds, int64_t batch, uint64_t seed)
{
    if (!b)
        return kp_rt_error(NULL, KARP_EINVAL, "kp_batcher_init: batcher is NULL");
    memset(b, 0, sizeof *b);
    if (!ds)
        return kp_rt_error(NULL, KARP_EINVAL, "kp_batcher_init: dataset is NULL");
    if (batch < 1)
        return kp_rt_error(NULL, KARP_EINVAL, "kp_batcher_init: batch must be >= 1, got %lld",
                           (long long)batch);
    b->ds = ds;
    b->batch = batch;
    b->seed = seed;
    b->order = malloc(((size_t)ds->count + 1) * sizeof(int64_t));
    b->x = malloc(((size_t)(batch * ds->sample_size) + 1) * sizeof(float));
    if (ds->labels)
        b->labels = malloc((size_t)batch * sizeof(int32_t));
    if (ds->targets)
        b->targets = malloc((size_t)batch * sizeof(float));
    if (!b->order || !b->x || (ds->labels && !b->labels) || (ds->targets && !b->targets)) {
        kp_batcher_free(b);
        return kp_rt_error(NULL, KARP_ENOMEM, "kp_batcher_init: out of memory for batches of %lld",
                           (long long)batch);
    }
    kp_batcher_epoch(b, 0);
    return 0;
}

void kp_data_shuffle(int64_t *order, int64_t n, uint64_t seed, int64_t epoch)
{
    KpRng r;
    /* One odd multiplier keeps (seed, epoch) pairs apart; kp_rng_seed mixes. */
    kp_rng_seed(&r, seed ^ ((uint64_t)epoch * 0x9e3779b97f4a7c15u + 0x632be59bd9b4e019u));
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kp_rng_below(&r, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

void kp_batcher_epoch(KpBatcher *b, int64_t epoch)
{
    kp_data_shuffle(b->order, b->ds->count, b->seed, epoch);
    b->pos = 0;
}

int64_t kp_batcher_next(KpBatcher *b, const float **x, const int32_t **labels,
                        const float **targets)
{
    const KpDataset *ds = b->ds;
    int64_t n = ds->count - b->pos;
    if (n > b->batch)
        n = b->batch;
    size_t row = (size_t)ds->sample_size * sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        int64_t s = b->order[b->pos + i];
        memcpy(b->x + i * ds->sample_size, ds->x + s * ds->sample_size, row);
        if (b->labels)
            b->labels[i] = ds->labels[s];
        if (b->targets)
            b->targets[i] = ds->targets[s];
    }
    b->pos += n;
    if (x)
        *x = b->x;
    if (labels)
        *labels = b->labels;
    if (targets)
        *targets = b->targets;
    return n;
}

int kp_batcher_skip(KpBatcher *b, int64_t k)
{
    if (k < 0)
        return kp_rt_error(NULL, KARP_EINVAL, "kp_batcher_skip: k must be >= 0, got %lld",
                           (long long)k);
    int64_t left = (b->ds->count - b->pos + b->batch - 1) / b->batch;
    b->pos = k >= left ? b->ds->count : b->pos + k * b->batch;
    return 0;
}

void kp_batcher_free(KpBatcher *b)
{
    if (!b)
        return;
    free(b->order);
    free(b->x);
    free(b->labels);
    free(b->targets);
    memset(b, 0, sizeof *b);
}
