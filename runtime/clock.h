/*
 * clock.h — seconds on the monotonic clock, for timing calls (the
 * adaptive thread count, runtime/train.c) and measurements (karpc bench's
 * peak, bandwidth and core round trip, backend/).
 */
#ifndef KP_RT_CLOCK_H
#define KP_RT_CLOCK_H

#include <time.h>

static inline double kp_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
