/*
 * parallel.c — the one parallel loop generated code calls, on OpenMP.
 *
 * [begin, end) is cut into nthreads contiguous chunks, the first
 * (count % nthreads) of them one item longer; the cut depends only on
 * count and nthreads, so a run is reproducible for a given thread count.
 * Chunk c runs with scratch slot c of the calling thread's pool and its
 * shared area (scratch.c), so at most as many chunks as the pool has slots.
 * krt_parallel_run hands each thread its index and the count instead, for
 * a group of nodes whose body cuts every member's range the same way.
 *
 * A region runs on the runtime's team (team.c), which starts and joins
 * faster than OpenMP; on OpenMP when the team cannot take it (another
 * host thread's region holds it).  Which threads run the chunks changes
 * nothing: chunk c is the same range with the same scratch slot either
 * way.  The thread count is OpenMP's setting in both cases.
 */
#include <omp.h>
#include <stdbool.h>

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

typedef struct ForJob {
    void (*body)(void *ctx, int64_t begin, int64_t end);
    void *ctx;
    int64_t begin, q, r;
    KpScratchPool pool;
} ForJob;

static void for_chunk(void *arg, int c)
{
    const ForJob *j = arg;
    kp_rt_scratch_use(&j->pool, c);
    j->body(j->ctx, chunk_start(j->begin, j->q, j->r, c), chunk_start(j->begin, j->q, j->r, c + 1));
}

typedef struct RunJob {
    void (*body)(void *ctx, int64_t t, int64_t nt);
    void *ctx;
    int nt;
    KpScratchPool pool;
} RunJob;

static void run_share(void *arg, int t)
{
    const RunJob *j = arg;
    kp_rt_scratch_use(&j->pool, t);
    j->body(j->ctx, t, j->nt);
}

/* share(arg, t) for t < nt: on the team, else in an OpenMP region; then
 * the calling thread back on slot 0 of its pool. */
static void run_region(int nt, void (*share)(void *arg, int t), void *arg, const KpScratchPool *pool)
{
    if (kp_rt_team_run(nt, share, arg) != 0) {
#pragma omp parallel num_threads(nt)
        {
            /* OpenMP may grant fewer threads than asked: each one takes
             * every got-th share, so every share still runs exactly once */
            int got = omp_get_num_threads();
            for (int t = omp_get_thread_num(); t < nt; t += got)
                share(arg, t);
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
    ForJob j = {body, ctx, begin, count / nt, count % nt, pool};
    run_region(nt, for_chunk, &j, &pool);
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
    RunJob j = {body, ctx, nt, pool};
    run_region(nt, run_share, &j, &pool);
}
