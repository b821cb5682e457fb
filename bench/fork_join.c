/*
 * fork_join.c — what a parallel region of the runtime costs, next to the
 * placement of the two cores.  A region of two items, each a sum over its
 * own block of floats (KiB per item, default 200: half of fashion_mlp's
 * 784x128 weight, from L2), runs krt_parallel_for on two threads; the same
 * two items run on the calling thread alone for comparison.  Per window:
 * the cache line round trip between the first two cores
 * (backend/core_latency.c) before and after, then the medians.  The
 * overhead is the two-thread time less half the one-thread time: the
 * fork, the join and what the items lose by running on two cores.  Not
 * part of the test suite:
 *
 *   fork_join [windows [KiB per item]]      (default 10 windows, 200 KiB)
 *
 * The host may move a VM's cores between core complexes every few seconds
 * (docs/abi.md, "Adaptive thread count"); windows whose round trips differ
 * straddle a move.  To compare two builds of the runtime, link this file
 * against each one's libkarprt.a and alternate them.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/core_latency.h"
#include "runtime/model.h"

enum { ITEMS = 2, CALLS = 4000 };

typedef struct Work {
    const float *data;      /* ITEMS blocks of n floats */
    int64_t n;
    /* each item's sums, a line each: read by the caller after the region */
    _Alignas(64) float out[ITEMS][16];
} Work;

static void sum_items(void *ctx, int64_t begin, int64_t end)
{
    Work *w = ctx;
    for (int64_t it = begin; it < end; it++) {
        const float *p = w->data + it * w->n;
        float acc[16] = {0};
        for (int64_t i = 0; i < w->n; i += 16)
            for (int l = 0; l < 16; l++)
                acc[l] += p[i + l];
        memcpy(w->out[it], acc, sizeof acc);
    }
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ns of CALLS calls, each the region (or the items on this thread)
 * and a read of every item's sums, as the next kernel would read them. */
static double median_call(Work *w, int parallel, float *sink)
{
    static double t[CALLS];
    for (int c = 0; c < CALLS; c++) {
        double t0 = now_ns();
        if (parallel)
            krt_parallel_for(sum_items, w, 0, ITEMS);
        else
            sum_items(w, 0, ITEMS);
        for (int it = 0; it < ITEMS; it++)
            *sink += w->out[it][c % 16];
        t[c] = now_ns() - t0;
    }
    qsort(t, CALLS, sizeof t[0], cmp_double);
    return t[CALLS / 2];
}

int main(int argc, char **argv)
{
    int windows = argc > 1 ? atoi(argv[1]) : 10;
    int kib = argc > 2 ? atoi(argv[2]) : 200;
    if (windows < 1 || kib < 1 || kib > 1 << 20) {
        fprintf(stderr, "usage: fork_join [windows [KiB per item]]\n");
        return 2;
    }
    omp_set_num_threads(2);
    int64_t n = (int64_t)kib * 1024 / sizeof(float) / 16 * 16;
    float *data = aligned_alloc(64, (size_t)(ITEMS * n) * sizeof(float));
    if (!data) {
        fprintf(stderr, "fork_join: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < ITEMS * n; i++)
        data[i] = (float)(i % 7) * 1e-3f;
    Work w = {.data = data, .n = n};
    float sink = 0;
    printf("items: %d of %d KiB; medians of %d calls a window\n", ITEMS, kib, CALLS);
    printf("%-16s %12s %12s %12s\n", "round trip (ns)", "2 threads", "1 thread", "overhead");
    for (int i = 0; i < windows; i++) {
        usleep(2000);   /* the team's threads go to sleep: the round trip has the cores */
        double rt0 = kp_measure_core_round_trip();
        double two = median_call(&w, 1, &sink);
        double one = median_call(&w, 0, &sink);
        double rt1 = kp_measure_core_round_trip();
        printf("%6.0f / %-7.0f %9.0f ns %9.0f ns %9.0f ns\n", rt0, rt1, two, one, two - one / 2);
    }
    free(data);
    return sink == 12345.f;     /* keeps the sums */
}
