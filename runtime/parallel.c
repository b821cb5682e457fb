/*
 * parallel.c — the parallel regions generated code calls: krt_parallel_for
 * and krt_parallel_run.
 *
 * [begin, end) is cut into nthreads contiguous shares, the first
 * (count % nthreads) of them one item longer, and a thread done with its
 * share takes over the rest of a slower one's (below); every item is run
 * once, whole, by one thread, so the results do not depend on the cut.
 * Thread t runs with scratch slot t of the calling thread's pool and its
 * shared area (scratch.c), so at most as many threads as the pool has
 * slots.  krt_parallel_run hands out shares s of ns instead, for a group
 * of nodes whose body cuts every member's range the same way.
 *
 * A region runs on the runtime's team (team.c), which starts and joins
 * faster than OpenMP; on OpenMP when the team cannot take it (another
 * host thread's region holds it); the thread count is OpenMP's setting in
 * both cases.
 */
#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fpmode.h"
#include "model.h"
#include "team.h"

/*
 * The thread count travels through OpenMP's own setting, not a variable
 * of ours: a model.so carries a private copy of this file (its runtime is
 * linked statically and hidden), while libgomp is one per process.  The
 * setting is per calling thread in OpenMP, so karp_set_threads() records
 * the choice here and kp_rt_apply_threads() re-applies it on the thread
 * that calls into generated code (karp_infer does).
 */
static _Atomic int num_threads_setting;

int karp_set_threads(int nthreads)
{
    if (nthreads < 0)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_set_threads: nthreads must be >= 0, got %d",
                           nthreads);
    num_threads_setting = nthreads;
    kp_rt_apply_threads();
    return 0;
}

/* What this thread last applied (-1: nothing yet), and its own OpenMP
 * setting from before that (OMP_NUM_THREADS, the host's
 * omp_set_num_threads, else the processors), which "0 = default" restores.
 * Applying only on a change keeps the call off the path of every karp_infer:
 * omp_get_num_procs() asks the kernel for the affinity mask each time. */
static _Thread_local int applied = -1;
static _Thread_local int thread_default;

void kp_rt_apply_threads(void)
{
    int nt = num_threads_setting;
    if (nt == applied)
        return;
    if (applied < 0)
        thread_default = omp_get_max_threads();
    omp_set_num_threads(nt ? nt : thread_default);
    applied = nt;
}

static int64_t chunk_start(int64_t begin, int64_t q, int64_t r, int64_t c)
{
    return begin + c * q + (c < r ? c : r);
}

/*
 * Balancing.  A shared two-core VM often runs one of its cores at part
 * speed for a while (the host gives its time to another guest).  A static
 * cut then waits for the slow share, and two threads come out slower than
 * one: with a busy loop on the other core, resnet_cifar's batch-1
 * train_step took 7.3 ms instead of 0.9 on one thread.  So a thread that
 * has finished its own share takes work from the others:
 *
 *   share t's items [lo, hi), one atomic word (lo in the low half)
 *   owner:  claims half of what is left from the front (fetch_add on lo),
 *           at least an eighth of its share
 *   thief:  takes the back half of the largest rest (compare-exchange of
 *           hi), makes it its own share and goes on as its owner
 *
 * The owner makes a few uncontended atomic adds and calls the body a few
 * times per share (a call may have a set-up of its own: the Winograd
 * kernels transform their weights per call).  Which thread runs an item
 * changes nothing: every item is a whole unit of the generated code's
 * work, summed in its own order, and a thread runs every item it takes
 * with its own scratch slot.  A group (krt_parallel_run) is cut into
 * RUN_SHARES shares per thread instead, each thread taking the next share
 * nobody has started.  Either way a thread that never comes (the host has
 * not scheduled it) has its work done by the others, and team.c does not
 * wait for it.
 */
enum {
    SHARES_MAX = 65,        /* threads a region balances (the team's most); more: the static cut */
    BLOCKS = 8,             /* an owner's smallest claim: an eighth of its share */
    RUN_SHARES = 2,         /* a group's shares per thread */
};

typedef struct Share {
    _Alignas(64) _Atomic uint64_t range;    /* lo | hi << 32, items from begin */
} Share;

static uint64_t pack(uint64_t lo, uint64_t hi)
{
    return lo | hi << 32;
}

static int64_t lo_of(uint64_t w)
{
    return (int64_t)(uint32_t)w;
}

static int64_t hi_of(uint64_t w)
{
    return (int64_t)(w >> 32);
}

/* The first member of a region's job (run_region fills it): the job's
 * share function, called with the job itself, in the calling thread's
 * floating-point mode (fpmode.h). */
typedef struct ModeShare {
    void (*share)(void *job, int t);
    unsigned mode;
} ModeShare;

/* A share in the caller's floating-point mode, the thread's own put back
 * after it: the team's and OpenMP's threads also run the host's code. */
static void share_in_mode(void *job, int t)
{
    const ModeShare *s = job;
    unsigned had = kp_rt_fp_adopt(s->mode);
    s->share(job, t);
    kp_rt_fp_adopt(had);
}

/* A region's job, its lines together: what a team worker reads first. */
typedef struct ForJob {
    ModeShare in_mode;
    void (*body)(void *ctx, int64_t begin, int64_t end);
    void *ctx;
    int64_t begin, q, r;
    int64_t block;          /* items an owner claims at a time */
    Share *shares;          /* NULL: the static cut, chunks taken in turn */
    int nt;
    _Alignas(64) _Atomic int next;  /* the static cut's next chunk */
    KpScratchPool pool;
} ForJob;

/* Share t's items from the front: half of what is left each time (a
 * thief then finds the other half), down to blocks of j->block. */
static void run_own(const ForJob *j, int t)
{
    for (;;) {
        uint64_t w = atomic_load_explicit(&j->shares[t].range, memory_order_relaxed);
        int64_t rest = hi_of(w) - lo_of(w);
        int64_t claim = (rest + 1) / 2 > j->block ? (rest + 1) / 2 : j->block;
        uint64_t old = atomic_fetch_add_explicit(&j->shares[t].range, (uint64_t)claim,
                                                 memory_order_acq_rel);
        int64_t lo = lo_of(old), hi = hi_of(old);
        if (lo >= hi)
            return;
        int64_t end = lo + claim < hi ? lo + claim : hi;
        j->body(j->ctx, j->begin + lo, j->begin + end);
        /* the claim took the rest: nothing comes back to a share (a
         * thief only lowers hi), so no further atomic on its line, which
         * the other cores may be reading by now */
        if (end == hi)
            return;
    }
}

/* The back half of the largest rest of another share, made share t's own
 * (which is empty); false when no share has anything left. */
static bool steal(const ForJob *j, int t)
{
    for (;;) {
        int victim = -1;
        int64_t most = 0;
        uint64_t seen = 0;
        for (int v = 0; v < j->nt; v++) {
            uint64_t w = atomic_load_explicit(&j->shares[v].range, memory_order_acquire);
            int64_t rest = hi_of(w) - lo_of(w);
            if (v != t && rest > most) {
                victim = v;
                most = rest;
                seen = w;
            }
        }
        if (victim < 0)
            return false;
        int64_t hi = hi_of(seen), take = (most + 1) / 2;
        if (atomic_compare_exchange_strong_explicit(&j->shares[victim].range, &seen,
                                                    pack((uint64_t)lo_of(seen), (uint64_t)(hi - take)),
                                                    memory_order_acq_rel, memory_order_acquire)) {
            atomic_store_explicit(&j->shares[t].range, pack((uint64_t)(hi - take), (uint64_t)hi),
                                  memory_order_release);
            return true;
        }
    }
}

/* Thread t's part of a region: whatever work it can take, until none is
 * left to take (a thread that never comes has its share taken by the
 * others: team.c does not wait for it). */
static void for_chunk(void *arg, int t)
{
    ForJob *j = arg;
    kp_rt_scratch_use(&j->pool, t);
    if (!j->shares) {
        for (int c; (c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nt;)
            j->body(j->ctx, chunk_start(j->begin, j->q, j->r, c),
                    chunk_start(j->begin, j->q, j->r, c + 1));
        return;
    }
    do
        run_own(j, t);
    while (steal(j, t));
}

typedef struct RunJob {
    ModeShare in_mode;
    void (*body)(void *ctx, int64_t t, int64_t nt);
    void *ctx;
    int nshares;            /* shares of the work, taken in turn */
    _Alignas(64) _Atomic int next;  /* the next share nobody has taken */
    KpScratchPool pool;
} RunJob;

static void run_share(void *arg, int t)
{
    RunJob *j = arg;
    kp_rt_scratch_use(&j->pool, t);
    for (int s; (s = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nshares;)
        j->body(j->ctx, s, j->nshares);
}

/* share(job, t) for t < nt, job the region's record (bytes long) whose
 * first member is *in_mode: on the team, else in an OpenMP region; then
 * the calling thread back on slot 0 of its pool.  ctx and lines: as in
 * KpTeamJob. */
static void run_region(int nt, ModeShare *in_mode, void (*share)(void *job, int t), size_t bytes,
                       const void *ctx, void *lines, const KpScratchPool *pool)
{
    *in_mode = (ModeShare){.share = share, .mode = kp_rt_fp_mode()};
    KpTeamJob job = {.share = share_in_mode, .arg = in_mode, .arg_bytes = bytes, .ctx = ctx,
                     .lines = lines};
    if (kp_rt_team_run(nt, &job) != 0) {
#pragma omp parallel num_threads(nt)
        {
            /* OpenMP may grant fewer threads than asked: each one takes
             * every got-th share, so every share still runs exactly once */
            int got = omp_get_num_threads();
            for (int t = omp_get_thread_num(); t < nt; t += got)
                share_in_mode(in_mode, t);
        }
    }
    kp_rt_scratch_use(pool, 0);
}

static bool nested(void)
{
    return omp_in_parallel() || kp_rt_in_team();
}

void krt_parallel_for(void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx, int64_t begin,
                      int64_t end)
{
    if (end <= begin)
        return;
    int64_t count = end - begin;
    int nt = omp_get_max_threads();
    if ((int64_t)nt > count)
        nt = (int)count;
    KpScratchPool pool = kp_rt_scratch_bound();
    if (pool.stride && pool.nslots < nt)
        nt = (int)pool.nslots;
    if (nt <= 1 || nested()) {
        body(ctx, begin, end);
        return;
    }
    ForJob j = {.body = body, .ctx = ctx, .begin = begin, .q = count / nt, .r = count % nt,
                .nt = nt, .pool = pool};
    atomic_init(&j.next, 0);
    Share shares[SHARES_MAX];
    if (count <= INT32_MAX && nt <= SHARES_MAX) {
        j.block = j.q / BLOCKS > 1 ? j.q / BLOCKS : 1;
        for (int c = 0; c < nt; c++)
            atomic_init(&shares[c].range, pack((uint64_t)chunk_start(0, j.q, j.r, c),
                                               (uint64_t)chunk_start(0, j.q, j.r, c + 1)));
        j.shares = shares;
    }
    run_region(nt, &j.in_mode, for_chunk, sizeof j, ctx, j.shares, &pool);
}

void krt_parallel_run(void (*body)(void *ctx, int64_t t, int64_t nt), void *ctx)
{
    int nt = omp_get_max_threads();
    KpScratchPool pool = kp_rt_scratch_bound();
    if (pool.base && pool.nslots < nt)
        nt = (int)pool.nslots;
    if (nt <= 1 || nested()) {
        body(ctx, 0, 1);
        return;
    }
    RunJob j = {.body = body, .ctx = ctx, .nshares = nt * RUN_SHARES, .pool = pool};
    atomic_init(&j.next, 0);
    run_region(nt, &j.in_mode, run_share, sizeof j, ctx, NULL, &pool);
}
