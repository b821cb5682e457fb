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
 */
#include <omp.h>

#include "model.h"

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
    if (nt <= 1 || omp_in_parallel()) {
        body(ctx, begin, end);
        return;
    }
    int64_t q = count / nt, r = count % nt;
#pragma omp parallel num_threads(nt)
    {
        /* OpenMP may grant fewer threads than asked: each one takes every
         * got-th chunk, so every chunk still runs exactly once. */
        int got = omp_get_num_threads();
        for (int c = omp_get_thread_num(); c < nt; c += got) {
            kp_rt_scratch_use(&pool, c);
            body(ctx, chunk_start(begin, q, r, c), chunk_start(begin, q, r, c + 1));
        }
    }
    kp_rt_scratch_use(&pool, 0);
}

void krt_parallel_run(void (*body)(void *ctx, int64_t t, int64_t nt), void *ctx)
{
    int nt = omp_get_max_threads();
    KpScratchPool pool = kp_rt_scratch_bound();
    if (pool.base && pool.nslots < nt)
        nt = (int)pool.nslots;
    if (nt <= 1 || omp_in_parallel()) {
        body(ctx, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        /* as above: fewer threads than asked take every got-th share, each
         * with its share's scratch slot */
        int got = omp_get_num_threads();
        for (int t = omp_get_thread_num(); t < nt; t += got) {
            kp_rt_scratch_use(&pool, t);
            body(ctx, t, nt);
        }
    }
    kp_rt_scratch_use(&pool, 0);
}
