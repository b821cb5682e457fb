/*
 * core_latency.h — how far apart two cores are, measured: the time a
 * cache line takes to go from one to the other and back.  On a VM the
 * host may place the guest's cores on one core complex (a shared L3:
 * about 60 ns on a Zen 4) or on two (about 340 ns), and change that every
 * few seconds; karpc bench prints it, because a small step's two-thread
 * time follows it (docs/abi.md, "Adaptive thread count").
 */
#ifndef KP_CORE_LATENCY_H
#define KP_CORE_LATENCY_H

/* The median of 5 runs of 20000 round trips (or 20 ms, whichever ends
 * first) of one cache line between two threads pinned to the first two
 * processors the calling thread may run on, in nanoseconds per round
 * trip; NAN with fewer than two processors or when a thread cannot be
 * started or pinned.  Takes 5-100 ms. */
double kp_measure_core_round_trip(void);

#endif
