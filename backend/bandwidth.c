/*
 * bandwidth.c — STREAM-like copy and triad, timed (bandwidth.h).
 *
 * Each thread touches its own part first (so the pages are mapped before
 * timing) and then works on the same part, the schedule of the generated
 * parallel loops.  Bytes are counted as STREAM counts them: what the loop
 * reads and writes, without the cache's read-for-ownership of the written
 * lines.
 */
#include "bandwidth.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "../runtime/clock.h"

enum { ELEMS = 16 << 20, RUNS = 5 };  /* 64 MiB of floats per array */

/* The best rate of RUNS runs of one loop, in bytes per second. */
static double best_rate(float *a, const float *b, const float *c, int nthreads, int triad)
{
    double best = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = kp_seconds();
        if (triad) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
            for (int64_t i = 0; i < ELEMS; i++)
                a[i] = b[i] + 3.0f * c[i];
        } else {
#pragma omp parallel for schedule(static) num_threads(nthreads)
            for (int64_t i = 0; i < ELEMS; i++)
                a[i] = b[i];
        }
        double dt = kp_seconds() - t0;
        double bytes = (double)ELEMS * sizeof(float) * (triad ? 3 : 2);
        if (dt > 0 && bytes / dt > best)
            best = bytes / dt;
    }
    return best;
}

KpBandwidth kp_measure_bandwidth(int nthreads)
{
    KpBandwidth bw = {.threads = nthreads > 0 ? nthreads : omp_get_max_threads()};
    size_t bytes = (size_t)ELEMS * sizeof(float);
    float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *c = aligned_alloc(64, bytes);
    if (a && b && c) {
#pragma omp parallel for schedule(static) num_threads(bw.threads)
        for (int64_t i = 0; i < ELEMS; i++) {
            a[i] = 0.0f;
            b[i] = 1.0f;
            c[i] = 2.0f;
        }
        bw.copy_gbs = best_rate(a, b, c, bw.threads, 0) * 1e-9;
        bw.triad_gbs = best_rate(a, b, c, bw.threads, 1) * 1e-9;
    }
    free(a);
    free(b);
    free(c);
    return bw;
}
