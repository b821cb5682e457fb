/*
 * adapt.c — train_step on all its threads or on one, whichever measures
 * faster now (adapt.h says why and how).
 */
#include "adapt.h"
#include "env_switch.h"

#include <string.h>

static void start_over(KpAdapt *a, int64_t n)
{
    int64_t one = a->calls_one, all = a->calls_all;
    memset(a, 0, sizeof *a);
    a->n = n;
    a->interval = KP_ADAPT_BASE;
    a->next_probe = KP_ADAPT_WARM + 1;
    a->calls_one = one;
    a->calls_all = all;
}

int kp_adapt_threads(KpAdapt *a, int64_t n, int nt)
{
    if (nt <= 1) {
        a->ran_one = 0;
        return nt;
    }
    if (n != a->n)
        start_over(a, n);
    a->calls++;
    if (a->probe_left == 0 && a->calls >= a->next_probe && a->est[a->one] > 0)
        a->probe_left = KP_ADAPT_PROBE;
    a->ran_one = a->probe_left > 0 ? !a->one : a->one;
    return a->ran_one ? 1 : nt;
}

/* The middle of a probe's three calls: neither the first, which pays
 * for the caches the switch left behind, nor a lucky one (two threads on
 * cores that share no L3 run one call in four fast: a probe that took its
 * fastest call kept choosing them) */
static double middle(const double t[KP_ADAPT_PROBE])
{
    _Static_assert(KP_ADAPT_PROBE == 3, "middle() takes three calls");
    double lo = t[0] < t[1] ? t[0] : t[1], hi = t[0] < t[1] ? t[1] : t[0];
    return t[2] < lo ? lo : t[2] > hi ? hi : t[2];
}

/* The probe's figure est[!one] is in: switch, or back off. */
static void decide(KpAdapt *a)
{
    if (a->est[!a->one] < (1 - KP_ADAPT_MARGIN) * a->est[a->one]) {
        a->one = !a->one;
        a->best = a->est[a->one];
        a->interval = KP_ADAPT_BASE;
    } else if (a->interval < KP_ADAPT_MAX) {
        a->interval *= 2;
    }
    a->next_probe = a->calls + a->interval;
    a->slow_run = 0;
}

void kp_adapt_record(KpAdapt *a, int threads, double seconds)
{
    if (threads <= 1 && !a->ran_one)
        return;                 /* one thread allowed: nothing to choose */
    a->calls_all++;
    a->calls_one += a->ran_one;
    if (a->calls <= 1)
        return;                 /* a first call at a size pays for cold caches */
    if (a->probe_left > 0) {
        a->probe_t[KP_ADAPT_PROBE - a->probe_left] = seconds;
        if (--a->probe_left == 0) {
            a->est[!a->one] = middle(a->probe_t);
            decide(a);
        }
        return;
    }
    /* a call past the alarm counts at the alarm's level in the average
     * (a lone slow call, an interrupt or the host's other guests, moves
     * it by at most an eighth), and starts or extends a slow run */
    double *e = &a->est[a->one], cap = KP_ADAPT_ALARM * a->best;
    if (a->best > 0 && seconds > cap) {
        a->slow_min = a->slow_run == 0 || seconds < a->slow_min ? seconds : a->slow_min;
        a->slow_run++;
        seconds = cap;
    } else {
        a->slow_run = 0;
    }
    *e = *e > 0 ? 0.75 * *e + 0.25 * seconds : seconds;
    if (a->calls <= KP_ADAPT_WARM)
        return;
    if (a->best == 0 || *e < a->best) {
        a->best = *e;
    } else if (a->slow_run >= KP_ADAPT_SLOW_RUN && a->next_probe > a->calls + 1) {
        /* slower than it was, call after call: the placement may have
         * changed; the run's fastest call is the choice's figure now (the
         * probe is held against it), and the next best is measured from
         * there; look at once */
        a->next_probe = a->calls + 1;
        a->interval = KP_ADAPT_BASE;
        *e = a->best = a->slow_min;
        a->slow_run = 0;
    }
}

int kp_rt_adapt_enabled(void)
{
    static _Atomic int enabled = -1;
    return kp_rt_env_switch("KARP_ADAPTIVE_THREADS", &enabled);
}
