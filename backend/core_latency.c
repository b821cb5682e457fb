/*
 * core_latency.c — a cache line passed between two pinned threads
 * (core_latency.h).
 */
#define _GNU_SOURCE
#include "core_latency.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../runtime/clock.h"

enum { TRIPS = 20000, RUNS = 5 };
#define RUN_SECONDS 0.02        /* a run's most: a busy machine may deschedule a thread */
#define STOP (-3L)

typedef struct Pong {
    _Alignas(64) _Atomic long turn;     /* odd: the answering thread's move; STOP: quit */
    int cpu;
} Pong;

static int pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *answer(void *arg)
{
    Pong *p = arg;
    if (pin(p->cpu) != 0) {
        atomic_store(&p->turn, -1);
        return NULL;
    }
    atomic_store(&p->turn, 0);
    for (;;) {
        long t = atomic_load_explicit(&p->turn, memory_order_acquire);
        if (t == STOP)
            return NULL;
        if (t & 1)
            atomic_store_explicit(&p->turn, t + 1, memory_order_release);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run: up to TRIPS round trips or RUN_SECONDS, ns per trip. */
static double one_run(Pong *p, long *next)
{
    double t0 = kp_seconds(), dt = 0;
    long trips = 0;
    while (trips < TRIPS) {
        long t = 2 * (*next)++ + 1;
        atomic_store_explicit(&p->turn, t, memory_order_release);
        while (atomic_load_explicit(&p->turn, memory_order_acquire) != t + 1)
            ;
        trips++;
        if (trips % 256 == 0 && (dt = kp_seconds() - t0) > RUN_SECONDS)
            break;
    }
    dt = kp_seconds() - t0;
    return dt * 1e9 / (double)trips;
}

double kp_measure_core_round_trip(void)
{
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof mine, &mine) != 0 || CPU_COUNT(&mine) < 2)
        return NAN;
    int cpu[2], found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &mine))
            cpu[found++] = c;
    Pong *p = aligned_alloc(64, sizeof *p);
    if (!p)
        return NAN;
    atomic_init(&p->turn, -2);
    p->cpu = cpu[1];
    pthread_t t;
    if (pthread_create(&t, NULL, answer, p) != 0) {
        free(p);
        return NAN;
    }
    long started;
    while ((started = atomic_load(&p->turn)) == -2)
        ;
    double ns = NAN;
    if (started == 0 && pin(cpu[0]) == 0) {
        double run[RUNS];
        long next = 0;
        for (int r = 0; r < RUNS; r++)
            run[r] = one_run(p, &next);
        qsort(run, RUNS, sizeof *run, cmp_double);
        ns = run[RUNS / 2];
    }
    atomic_store(&p->turn, STOP);
    pthread_join(t, NULL);
    sched_setaffinity(0, sizeof mine, &mine);
    free(p);
    return ns;
}
