/*
 * adapt.h — the thread count of karp_train_step, chosen by measuring it.
 *
 * On a shared VM the two cores a model gets are sometimes far apart: on
 * different core complexes of the host's processor, with no L3 cache in
 * common.  A cache line then takes about 340 ns to go from one core to
 * the other and back instead of 60, and a small step, whose kernels hand
 * their outputs, the gradients and the updated parameters from core to
 * core, runs slower on two threads than on one: keras_cnn at batch 1,
 * 420 us against 221 (157 us on two near cores; docs/abi.md, "Adaptive
 * thread count").  The placement changes every few seconds.  So each
 * train_step call runs on either all the threads or one, and now and then
 * on the other choice, to see which is faster now:
 *
 *   warm-up      the first KP_ADAPT_WARM calls at a batch size: all threads
 *   probe        every `interval` calls, KP_ADAPT_PROBE calls on the
 *                other choice; its figure is the middle one (the first
 *                pays for the caches the switch leaves behind, and the
 *                fastest of a noisy choice is not what it usually takes)
 *   switch       when the probe beat the choice in use (an exponential
 *                average of its calls) by KP_ADAPT_MARGIN; the interval
 *                goes back to KP_ADAPT_BASE calls
 *   back off     when it did not, the interval doubles, up to
 *                KP_ADAPT_MAX calls, so a choice that keeps losing costs
 *                little
 *   alarm        when KP_ADAPT_SLOW_RUN calls in a row of the choice in
 *                use take KP_ADAPT_ALARM times its best since it was
 *                chosen, a probe at once, against the fastest of those
 *                calls; a slow call counts at KP_ADAPT_ALARM times the
 *                best in the average, so that lone slow calls (an
 *                interrupt, the host's other guests) neither sound the
 *                alarm nor make the choice in use look slower than it is
 *
 * Which thread count ran a call changes nothing in its results (every
 * kernel sums in an order of its own, parallel.c), so the choice is only
 * about time.  KARP_ADAPTIVE_THREADS=0 in the environment turns it off.
 * The policy is kept apart from the clock so that tests can drive it.
 */
#ifndef KP_RT_ADAPT_H
#define KP_RT_ADAPT_H

#include <stdint.h>

enum {
    KP_ADAPT_WARM = 8,
    KP_ADAPT_PROBE = 3,
    KP_ADAPT_BASE = 16,
    KP_ADAPT_MAX = 1024,
    KP_ADAPT_SLOW_RUN = 3,
};
#define KP_ADAPT_MARGIN 0.10
#define KP_ADAPT_ALARM 1.5

typedef struct KpAdapt {
    int64_t n;              /* the batch size the figures are for (0: none yet) */
    int64_t calls;          /* calls at that size */
    int64_t next_probe;     /* the call that starts the next probe */
    int64_t interval;       /* calls from a decision to the next probe */
    double est[2];          /* seconds a call: [0] all threads, [1] one (0: unknown) */
    double best;            /* the lowest est[one] since that choice was made */
    double probe_t[KP_ADAPT_PROBE]; /* the calls of the probe under way */
    double slow_min;        /* the fastest call of the slow run under way */
    int slow_run;           /* calls in a row past the alarm's level */
    int one;                /* the choice in use: 1 = one thread */
    int probe_left;         /* calls of the probe still to run */
    int ran_one;            /* the last call ran on one thread */
    int64_t calls_one;      /* calls run on one thread, at every size */
    int64_t calls_all;      /* calls run in all */
} KpAdapt;

/* Threads for the next call at batch size n with nt threads allowed: nt
 * or 1 (always nt when nt <= 1).  A new n starts over. */
int kp_adapt_threads(KpAdapt *a, int64_t n, int nt);
/* The call kp_adapt_threads chose threads for took `seconds`. */
void kp_adapt_record(KpAdapt *a, int threads, double seconds);

/* Whether the environment allows adapting (KARP_ADAPTIVE_THREADS not "0"). */
int kp_rt_adapt_enabled(void);

#endif
