/*
 * peak.h — the machine's floating-point peak, measured, not assumed.
 *
 * karpc bench and the benchmarks in bench/ print every kernel's GFLOP/s
 * as a fraction of what this machine's cores can do with the same vector
 * width the generated code uses.  The figure comes from a short loop of
 * independent FMAs (enough chains to cover the FMA latency on every
 * current x86 core), run on nthreads threads at once.
 */
#ifndef KP_PEAK_H
#define KP_PEAK_H

typedef struct KpPeak {
    int lanes;          /* floats per FMA: 16 (AVX-512), 8 (AVX2+FMA) or 4 (SSE) */
    int threads;        /* threads the figure was measured on */
    double gflops;      /* single precision, all threads together */
} KpPeak;

/* Measure the FP32 peak on nthreads threads (0: OpenMP's default) with
 * the widest FMA the host has, or at most max_lanes floats (16, 8 or 4;
 * 0 for no cap: the bench passes the generated code's width).  Takes
 * about 60 ms: the best of a few 20 ms runs. */
KpPeak kp_measure_peak(int nthreads, int max_lanes);

#endif
