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
 *   share(arg, 0)                        inside++; if the job is not closed
 *   closed = gen                           and k < nt: share(arg, k)
 *   wait until inside == 0  <──────────  inside--
 *
 * about 0.15 us for the round trip.  The caller does not wait for a
 * worker that has not come: the shares take each other's work
 * (parallel.c), so share 0 returns when every item is taken, and a worker
 * the host has not scheduled yet finds the job closed when it comes, and
 * skips it.  A worker that has come is waited for.  The caller closes the
 * job and then reads inside, a worker raises inside and then reads the
 * closed mark (all sequentially consistent), so one of them sees the
 * other: no worker reads a job's arguments after its caller has returned.
 * Workers spin for a while after a job and then sleep on a condition
 * variable; the caller wakes sleepers only when there are any (a Dekker
 * pair on gen and sleepers, both sequentially consistent).  With
 * OMP_WAIT_POLICY=passive they sleep at once, as libgomp's threads do.
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
    /* the job: written by its caller before gen moves */
    void (*share)(void *arg, int t);
    void *arg;
    int nt;
    _Atomic uint64_t gen;
    _Atomic uint64_t closed;    /* the last job whose caller no longer waits for newcomers */
    _Atomic int inside;         /* workers in a job (or checking whether it is closed) */
    _Atomic int sleepers;
    _Atomic bool stop;
} team = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

/* Set on the team's threads, and on a caller while it runs share 0: a
 * region started from inside a share runs serially (parallel.c). */
static _Thread_local bool in_team;

int kp_rt_in_team(void)
{
    return in_team;
}

static void *worker(void *p)
{
    int k = (int)(intptr_t)p;
    in_team = true;
    uint64_t seen = team.born[k - 1];
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&team.gen, memory_order_acquire)) == seen) {
            if (++spins < team.spin) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&team.lock);
            atomic_fetch_add(&team.sleepers, 1);
            while (atomic_load(&team.gen) == seen)
                pthread_cond_wait(&team.wake, &team.lock);
            atomic_fetch_sub(&team.sleepers, 1);
            pthread_mutex_unlock(&team.lock);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&team.stop, memory_order_acquire))
            return NULL;
        atomic_fetch_add(&team.inside, 1);
        if (atomic_load(&team.closed) < g && k < team.nt)
            team.share(team.arg, k);
        atomic_fetch_sub_explicit(&team.inside, 1, memory_order_release);
    }
}

static void wake_sleepers(void)
{
    if (atomic_load(&team.sleepers) > 0) {
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
    atomic_store(&team.inside, 0);
    atomic_store(&team.sleepers, 0);
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
        team.born[k - 1] = atomic_load(&team.gen);
        if (pthread_create(&team.tid[k - 1], NULL, worker, (void *)(intptr_t)k) != 0)
            break;
        team.nworkers = k;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return team.nworkers >= n;
}

int kp_rt_team_run(int nt, void (*share)(void *arg, int t), void *arg)
{
    if (nt < 2 || nt > TEAM_MAX + 1 || in_team)
        return -1;
    if (pthread_mutex_trylock(&team.busy) != 0)
        return -1;
    if (!have_workers(nt - 1)) {
        pthread_mutex_unlock(&team.busy);
        return -1;
    }
    team.share = share;
    team.arg = arg;
    team.nt = nt;
    /* publishes the job (and pairs with sleepers) */
    uint64_t g = atomic_fetch_add(&team.gen, 1) + 1;
    wake_sleepers();
    in_team = true;
    share(arg, 0);
    in_team = false;
    atomic_store(&team.closed, g);
    for (int spins = 1; atomic_load(&team.inside) > 0; spins++) {
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
        atomic_store(&team.stop, true);
        atomic_fetch_add(&team.gen, 1);
        pthread_mutex_lock(&team.lock);
        pthread_cond_broadcast(&team.wake);
        pthread_mutex_unlock(&team.lock);
        for (int k = 0; k < team.nworkers; k++)
            pthread_join(team.tid[k], NULL);
        team.nworkers = 0;
        atomic_store(&team.stop, false);
    }
    pthread_mutex_unlock(&team.busy);
}
