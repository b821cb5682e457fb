/*
 * bandwidth.h — the machine's memory bandwidth, measured, not assumed:
 * karpc bench judges memory-bound kernels against it as it judges the
 * others against kp_measure_peak.
 */
#ifndef KP_BANDWIDTH_H
#define KP_BANDWIDTH_H

typedef struct KpBandwidth {
    int threads;        /* threads the figures were measured on */
    double triad_gbs;   /* a[i] = b[i] + s c[i]: 12 bytes per element (STREAM's count) */
    double copy_gbs;    /* a[i] = b[i]: 8 bytes per element */
} KpBandwidth;

/* STREAM-like copy and triad over three arrays of 64 MiB (well past the
 * last-level caches of current CPUs), on nthreads threads (0: OpenMP's
 * default), statically split as the generated loops are; the best of five
 * runs of each.  Takes about half a second.  Zero figures when the arrays
 * cannot be allocated. */
KpBandwidth kp_measure_bandwidth(int nthreads);

#endif
