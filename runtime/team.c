/*
 * team.c — the worker threads behind krt_parallel_for and krt_parallel_run.
 *
 * A batch-1 inference is a few microseconds of work, and starting and
 * joining an OpenMP region costs about 0.8 us of it on a 2-core VM
 * (libgomp, its threads spinning).  The team is a set of threads waiting
 * on one generation counter instead:
 *
 *   caller                               worker k (1 .. nworkers)
 *   ------                               ------------------------
 *   job = {share, arg, nt}; gen++  ───>  spin (then sleep) until gen moves
 *   share(arg, 0)                        inside[k] = 1; if the job is not
 *   closed = gen                           closed and k < nt: share(arg, k)
 *   wait until every inside[k] == 0 <──  inside[k] = 0
 *
 * about 0.15 us for the round trip.  The caller does not wait for a
 * worker that has not come: the shares take each other's work
 * (parallel.c), so share 0 returns when every item is taken, and a worker
 * the host has not scheduled yet finds the job closed when it comes, and
 * skips it.  A worker that has come is waited for.  The caller closes the
 * job and then reads each worker's inside mark, a worker raises its mark
 * and then reads the closed mark (all sequentially consistent), so one of
 * them sees the other: no worker reads a job's arguments after its caller
 * has returned.  Workers spin for a while after a job and then sleep on a
 * condition variable; the caller wakes sleepers only when there are any
 * (a Dekker pair on gen and sleepers, both sequentially consistent).  With
 * OMP_WAIT_POLICY=passive they sleep at once, as libgomp's threads do.
 *
 * Cache lines.  When the two cores share no cache (a VM's cores on two
 * core complexes), every line one core wrote and the other reads is a
 * wait of 150-300 ns, and a worker used to take a chain of them before
 * its first item: the gen line, the caller's region, its job, its share,
 * the kernel's arguments, then inside on the caller's line: a region of
 * two 2.6 us items took 4.1-4.5 us (bench/fork_join).  Now the job is one
 * line (job below), which also names the caller's lines the share reads
 * first (KpTeamJob); the worker asks for all of them at once, and its
 * inside mark is a line of its own: 3.7-3.9 us (docs/abi.md).
 *
 * KARP_THREAD_POOL=openmp (read at the first region, and again in a
 * forked child) turns the team off: every region runs on OpenMP's threads,
 * for a host whose own OpenMP work would otherwise leave libgomp's threads
 * spinning beside the team's (docs/abi.md).
 *
 * One job at a time: a caller that finds the team busy (another host
 * thread's call is running a region) gets -1 and runs its region on
 * OpenMP, as before the team existed.  A model.so carries its own copy
 * of the runtime and so its own team: the destructor joins the threads
 * when the library is unloaded, since no thread may keep running code
 * that dlclose unmaps.  A forked child starts without threads.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#include "team.h"

enum {
    TEAM_MAX = 64,          /* workers at most: threads 1..64 of a region */
    SPIN = 1 << 14,         /* pauses before a worker sleeps: a few tenths of a ms */
    YIELD_EVERY = 1 << 12,  /* the caller's pauses between sched_yield()s */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static struct {
    pthread_mutex_t busy;       /* held by the caller whose job runs */
    pthread_mutex_t lock;       /* sleeping and waking */
    pthread_cond_t wake;
    int nworkers;               /* workers 1..nworkers exist; under busy */
    pthread_t tid[TEAM_MAX];
    uint64_t born[TEAM_MAX];    /* gen when worker k+1 was made: its first job is after */
    bool atfork;                /* the fork handler registered */
    bool env_read;              /* OMP_WAIT_POLICY and KARP_THREAD_POOL read */
    bool openmp;                /* KARP_THREAD_POOL=openmp: no team, OpenMP's threads */
    int spin;                   /* pauses before a worker sleeps */
} team = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

/* The job, one cache line: written by its caller before gen moves (the
 * fields a late worker may read while the next caller writes them are
 * atomic; share is read only inside the Dekker pair). */
static struct {
    _Alignas(64) _Atomic uint64_t gen;
    _Atomic uint64_t closed;    /* the last job whose caller no longer waits for newcomers */
    void (*share)(void *arg, int t);
    _Atomic uintptr_t arg, ctx, lines;
    _Atomic uint32_t arg_bytes;
    _Atomic int nt;
    _Atomic bool stop;
} job;

/* Worker k's mark, in a job (or checking whether it is closed): a line
 * of its own, which only the caller's wait reads. */
static struct {
    _Alignas(64) _Atomic int inside;
} mark[TEAM_MAX + 1];

static struct {
    _Alignas(64) _Atomic int sleepers;
} sleep_count;

/* Set on the team's threads, and on a caller while it runs share 0: a
 * region started from inside a share runs serially (parallel.c). */
static _Thread_local bool in_team;

int kp_rt_in_team(void)
{
    return in_team;
}

/* Ask for the line at p (to write it: exclusively), not waiting for it. */
static inline void fetch_line(uintptr_t p, bool write)
{
#if defined(__x86_64__) || defined(__i386__)
    /* prefetchw: a no-op on the x86 cores that predate it */
    if (write)
        __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
    else
        __builtin_prefetch((const void *)p, 0, 3);
#else
    __builtin_prefetch((const void *)p, write, 3);
#endif
}

static void fetch_lines(uintptr_t from, uintptr_t to)
{
    for (uintptr_t l = from & ~(uintptr_t)63; l < to; l += 64)
        fetch_line(l, false);
}

enum { FETCH_SHARE_LINES = 8 };     /* past this many threads, only a worker's own */

/* Everything worker k reads first of the job it has just seen, asked for
 * at once.  A prefetch never faults, so a late worker whose job has ended
 * (the caller's stack gone) only fetches lines it does not use. */
static void fetch_job(int k)
{
    uintptr_t arg = atomic_load_explicit(&job.arg, memory_order_relaxed);
    uintptr_t ctx = atomic_load_explicit(&job.ctx, memory_order_relaxed);
    uintptr_t lines = atomic_load_explicit(&job.lines, memory_order_relaxed);
    int nt = atomic_load_explicit(&job.nt, memory_order_relaxed);
    if (lines && k < nt) {
        fetch_line(lines + 64 * (uintptr_t)k, true);
        for (int t = 0; t < nt && nt <= FETCH_SHARE_LINES; t++)
            if (t != k)
                fetch_line(lines + 64 * (uintptr_t)t, false);
    }
    fetch_lines(arg, arg + atomic_load_explicit(&job.arg_bytes, memory_order_relaxed));
    if (ctx)
        fetch_lines(ctx, ctx + 128);
}

static void *worker(void *p)
{
    int k = (int)(intptr_t)p;
    in_team = true;
    uint64_t seen = team.born[k - 1];
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&job.gen, memory_order_acquire)) == seen) {
            if (++spins < team.spin) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&team.lock);
            atomic_fetch_add(&sleep_count.sleepers, 1);
            while (atomic_load(&job.gen) == seen)
                pthread_cond_wait(&team.wake, &team.lock);
            atomic_fetch_sub(&sleep_count.sleepers, 1);
            pthread_mutex_unlock(&team.lock);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&job.stop, memory_order_acquire))
            return NULL;
        fetch_job(k);
        atomic_store(&mark[k].inside, 1);
        if (atomic_load(&job.closed) < g && k < atomic_load_explicit(&job.nt, memory_order_relaxed))
            job.share((void *)atomic_load_explicit(&job.arg, memory_order_relaxed), k);
        atomic_store_explicit(&mark[k].inside, 0, memory_order_release);
    }
}

static void wake_sleepers(void)
{
    if (atomic_load(&sleep_count.sleepers) > 0) {
        pthread_mutex_lock(&team.lock);
        pthread_cond_broadcast(&team.wake);
        pthread_mutex_unlock(&team.lock);
    }
}

/* In a forked child only the forking thread exists: forget the workers. */
static void forget_workers(void)
{
    pthread_mutex_init(&team.busy, NULL);
    pthread_mutex_init(&team.lock, NULL);
    pthread_cond_init(&team.wake, NULL);
    team.nworkers = 0;
    team.env_read = false;      /* the child may have set its own */
    for (int k = 0; k <= TEAM_MAX; k++)
        atomic_store(&mark[k].inside, 0);
    atomic_store(&sleep_count.sleepers, 0);
}

/* At least n workers (under busy); false if a thread could not be made. */
static bool have_workers(int n)
{
    if (!team.atfork) {
        if (pthread_atfork(NULL, NULL, forget_workers) != 0)
            return false;
        team.atfork = true;
    }
    if (!team.env_read) {
        const char *policy = getenv("OMP_WAIT_POLICY");
        team.spin = policy && strcasecmp(policy, "passive") == 0 ? 0 : SPIN;
        const char *pool = getenv("KARP_THREAD_POOL");
        team.openmp = pool && strcasecmp(pool, "openmp") == 0;
        team.env_read = true;
    }
    if (team.openmp)
        return false;
    if (team.nworkers >= n)
        return true;
    /* workers take no signals: the host's handlers run on its threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (team.nworkers < n) {
        int k = team.nworkers + 1;
        team.born[k - 1] = atomic_load(&job.gen);
        if (pthread_create(&team.tid[k - 1], NULL, worker, (void *)(intptr_t)k) != 0)
            break;
        team.nworkers = k;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return team.nworkers >= n;
}

int kp_rt_team_run(int nt, const KpTeamJob *j)
{
    if (nt < 2 || nt > TEAM_MAX + 1 || in_team)
        return -1;
    if (pthread_mutex_trylock(&team.busy) != 0)
        return -1;
    if (!have_workers(nt - 1)) {
        pthread_mutex_unlock(&team.busy);
        return -1;
    }
    job.share = j->share;
    atomic_store_explicit(&job.arg, (uintptr_t)j->arg, memory_order_relaxed);
    atomic_store_explicit(&job.ctx, (uintptr_t)j->ctx, memory_order_relaxed);
    atomic_store_explicit(&job.lines, (uintptr_t)j->lines, memory_order_relaxed);
    atomic_store_explicit(&job.arg_bytes, (uint32_t)j->arg_bytes, memory_order_relaxed);
    atomic_store_explicit(&job.nt, nt, memory_order_relaxed);
    /* publishes the job (and pairs with sleepers) */
    uint64_t g = atomic_fetch_add(&job.gen, 1) + 1;
    wake_sleepers();
    in_team = true;
    j->share(j->arg, 0);
    in_team = false;
    atomic_store(&job.closed, g);
    /* every worker, not only those of shares 1..nt-1: a worker past nt
     * also raises its mark before it finds it has no share */
    for (int k = 1, spins = 1; k <= team.nworkers; k++)
        for (; atomic_load(&mark[k].inside) != 0; spins++) {
            if (spins % YIELD_EVERY == 0)
                sched_yield();      /* a worker may be waiting for this core */
            else
                cpu_relax();
        }
    pthread_mutex_unlock(&team.busy);
    return 0;
}

__attribute__((destructor)) static void team_stop(void)
{
    /* a job still running at unload or exit: leave its threads alone */
    if (pthread_mutex_trylock(&team.busy) != 0)
        return;
    if (team.nworkers > 0) {
        atomic_store(&job.stop, true);
        atomic_fetch_add(&job.gen, 1);
        pthread_mutex_lock(&team.lock);
        pthread_cond_broadcast(&team.wake);
        pthread_mutex_unlock(&team.lock);
        for (int k = 0; k < team.nworkers; k++)
            pthread_join(team.tid[k], NULL);
        team.nworkers = 0;
        atomic_store(&job.stop, false);
    }
    pthread_mutex_unlock(&team.busy);
}
