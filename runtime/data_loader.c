/*
 * data_loader.c — karp_loader: shuffled, augmented, normalized
 * mini-batches, the next one prepared in a background thread.
 *
 * Two batch buffers.  The caller holds one (the batch karp_loader_next
 * returned last); the producer thread fills the other with the batch at
 * position `pos` of the epoch's order.  One job at a time, handed over
 * under a mutex with a condition variable:
 *
 *      caller                              producer
 *      request(pos): job = PENDING  ---->  wakes, prepares buf[other]
 *      ... trains on buf[cur] ...          (gather, augment, normalize)
 *      next(): waits for READY     <----   job = READY
 *              cur = other; request(pos + n)
 *
 * Everything that changes what the producer reads (epoch, skip,
 * normalize) first waits for the job in flight, then posts a new one.
 * What a batch holds depends only on (seed, epoch, position): the order is
 * kp_data_shuffle(seed, epoch) and each sample's augmentation draws from
 * kp_augment_rng(seed, epoch, sample index), so the synchronous mode (no
 * thread, threaded = 0) gives the same batches.
 */
#include "data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../include/karp_data.h"
#include "model.h"

enum { JOB_NONE, JOB_PENDING, JOB_READY };

typedef struct Buf {
    float *x;
    int32_t *labels;
    float *targets;
    int64_t n;
} Buf;

struct karp_loader {
    const KpDataset *ds;
    int64_t batch;
    uint64_t seed;
    int naug;
    karp_augment aug[KP_MAX_AUGMENT];
    int nmean, nstd;              /* 0: no normalization */
    float mean[16], std[16];
    int64_t *order;               /* this epoch's */
    int64_t epoch;
    int64_t pos;                  /* the next batch's first position in order */
    Buf buf[2];
    int cur;                      /* the caller's buffer; the producer fills 1 - cur */
    float *tmp;                   /* the producer's scratch, one sample */
    /* the job, under mu */
    int threaded, started, quit;
    int job;                      /* JOB_* */
    int64_t job_pos;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Fill buf[1 - cur] with the batch at pos (the producer's work). */
static void prepare(KpLoader *l, int64_t pos)
{
    const KpDataset *ds = l->ds;
    Buf *b = &l->buf[1 - l->cur];
    int64_t n = ds->count - pos, size = ds->sample_size;
    if (n > l->batch)
        n = l->batch;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = l->order[pos + i];
        float *x = b->x + i * size;
        memcpy(x, ds->x + s * size, (size_t)size * sizeof(float));
        if (l->naug) {
            KpRng r;
            kp_augment_rng(&r, l->seed, l->epoch, s);
            kp_augment_sample(x, l->tmp, ds->rank, ds->shape, size, l->aug, l->naug, &r);
        }
        if (l->nmean)
            kp_data_normalize_sample(ds, x, l->mean, l->nmean, l->std, l->nstd);
        if (b->labels)
            b->labels[i] = ds->labels[s];
        if (b->targets)
            b->targets[i] = ds->targets[s];
    }
    b->n = n;
}

static void *producer(void *arg)
{
    KpLoader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && l->job != JOB_PENDING)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit)
            break;
        int64_t pos = l->job_pos;
        pthread_mutex_unlock(&l->mu);
        prepare(l, pos);
        pthread_mutex_lock(&l->mu);
        l->job = JOB_READY;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Wait until no job is in flight (the producer is idle). */
static void wait_job(KpLoader *l)
{
    if (!l->threaded)
        return;
    pthread_mutex_lock(&l->mu);
    while (l->job == JOB_PENDING)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

/* Post the batch at l->pos, if the epoch has one.  Call with no job in
 * flight. */
static void request(KpLoader *l)
{
    if (l->pos >= l->ds->count) {
        l->job = JOB_NONE;
        return;
    }
    if (!l->threaded) {
        l->job = JOB_PENDING; /* prepared in next */
        l->job_pos = l->pos;
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->job_pos = l->pos;
    l->job = JOB_PENDING;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static int alloc_buf(Buf *b, const KpDataset *ds, int64_t batch)
{
    b->x = malloc(((size_t)(batch * ds->sample_size) + 1) * sizeof(float));
    if (ds->labels)
        b->labels = malloc((size_t)batch * sizeof(int32_t));
    if (ds->targets)
        b->targets = malloc((size_t)batch * sizeof(float));
    return b->x && (!ds->labels || b->labels) && (!ds->targets || b->targets) ? 0 : -1;
}

static void free_buf(Buf *b)
{
    free(b->x);
    free(b->labels);
    free(b->targets);
}

KpLoader *kp_loader_new(const KpDataset *ds, int64_t batch, uint64_t seed,
                        const karp_augment *aug, int naug, int threaded, karp_error *err)
{
    if (!ds) {
        kp_rt_error(err, KARP_EINVAL, "karp_loader_new: dataset is NULL");
        return NULL;
    }
    if (batch < 1) {
        kp_rt_error(err, KARP_EINVAL, "karp_loader_new: batch must be >= 1, got %lld",
                    (long long)batch);
        return NULL;
    }
    if (kp_augment_check(aug, naug, ds->rank, "augment", err) != 0)
        return NULL;
    KpLoader *l = calloc(1, sizeof *l);
    if (!l) {
        kp_rt_error(err, KARP_ENOMEM, "karp_loader_new: out of memory");
        return NULL;
    }
    l->ds = ds;
    l->batch = batch;
    l->seed = seed;
    l->naug = naug;
    if (naug)
        memcpy(l->aug, aug, (size_t)naug * sizeof *aug);
    l->order = malloc(((size_t)ds->count + 1) * sizeof(int64_t));
    l->tmp = malloc(((size_t)ds->sample_size + 1) * sizeof(float));
    if (!l->order || !l->tmp || alloc_buf(&l->buf[0], ds, batch) != 0 ||
        alloc_buf(&l->buf[1], ds, batch) != 0) {
        karp_loader_free(l);
        kp_rt_error(err, KARP_ENOMEM, "karp_loader_new: out of memory for batches of %lld",
                    (long long)batch);
        return NULL;
    }
    if (threaded) {
        int rc = pthread_mutex_init(&l->mu, NULL);
        if (rc == 0 && pthread_cond_init(&l->cv, NULL) != 0) {
            pthread_mutex_destroy(&l->mu);
            rc = -1;
        }
        if (rc == 0 && pthread_create(&l->thread, NULL, producer, l) != 0) {
            pthread_cond_destroy(&l->cv);
            pthread_mutex_destroy(&l->mu);
            rc = -1;
        }
        if (rc != 0) {
            karp_loader_free(l);
            kp_rt_error(err, KARP_ENOMEM, "karp_loader_new: cannot start the loader thread");
            return NULL;
        }
        l->threaded = l->started = 1;
    }
    karp_loader_epoch(l, 0);
    return l;
}

karp_loader *karp_loader_new(const karp_dataset *d, int64_t batch, uint64_t seed,
                             const karp_augment *aug, int naug, karp_error *err)
{
    return kp_loader_new(d ? kp_dataset_of(d) : NULL, batch, seed, aug, naug, 1, err);
}

int karp_loader_normalize(karp_loader *l, const float *mean, int nmean, const float *std,
                          int nstd)
{
    if (!l)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_loader_normalize: loader is NULL");
    if (nmean == 0 && nstd == 0) {
        wait_job(l);
        l->nmean = l->nstd = 0;
        request(l);
        return 0;
    }
    int rc = kp_data_normalize_check(l->ds, mean, nmean, std, nstd);
    if (rc)
        return rc;
    if (nmean > 16 || nstd > 16)
        return kp_rt_error(NULL, KARP_EINVAL, "normalize: at most 16 means and stds, got %d and %d",
                           nmean, nstd);
    wait_job(l);
    l->nmean = nmean;
    l->nstd = nstd;
    memcpy(l->mean, mean, (size_t)nmean * sizeof(float));
    memcpy(l->std, std, (size_t)nstd * sizeof(float));
    request(l); /* the batch in flight was prepared without: again */
    return 0;
}

int karp_loader_epoch(karp_loader *l, int64_t epoch)
{
    if (!l)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_loader_epoch: loader is NULL");
    if (epoch < 0)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_loader_epoch: epoch must be >= 0, got %lld",
                           (long long)epoch);
    wait_job(l);
    kp_data_shuffle(l->order, l->ds->count, l->seed, epoch);
    l->epoch = epoch;
    l->pos = 0;
    request(l);
    return 0;
}

int64_t kp_loader_next(KpLoader *l, const float **x, const int32_t **labels,
                       const float **targets)
{
    if (!l)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_loader_next: loader is NULL");
    if (l->pos >= l->ds->count)
        return 0;
    if (l->threaded) {
        wait_job(l);
    } else {
        prepare(l, l->pos);
        l->job = JOB_READY;
    }
    l->cur = 1 - l->cur;
    const Buf *b = &l->buf[l->cur];
    l->pos += b->n;
    request(l); /* into the buffer the caller just gave back */
    if (x)
        *x = b->x;
    if (labels)
        *labels = b->labels;
    if (targets)
        *targets = b->targets;
    return b->n;
}

int64_t karp_loader_next(karp_loader *l, const float **x, const int32_t **labels)
{
    return kp_loader_next(l, x, labels, NULL);
}

int karp_loader_skip(karp_loader *l, int64_t k)
{
    if (!l)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_loader_skip: loader is NULL");
    if (k < 0)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_loader_skip: k must be >= 0, got %lld",
                           (long long)k);
    wait_job(l);
    int64_t count = l->ds->count, left = (count - l->pos + l->batch - 1) / l->batch;
    l->pos = k >= left ? count : l->pos + k * l->batch;
    request(l);
    return 0;
}

void karp_loader_free(karp_loader *l)
{
    if (!l)
        return;
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    free_buf(&l->buf[0]);
    free_buf(&l->buf[1]);
    free(l->order);
    free(l->tmp);
    free(l);
}
