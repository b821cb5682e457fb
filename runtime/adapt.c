/*
 * adapt.c — train_step on all its threads or on one, whichever measures
 * faster now (adapt.h says why and how).
 */
#include "adapt.h"

#include <stdlib.h>
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
    if (a->probe_left == 0 && a->calls >= a->next_probe && a->est[a->one] > 0) {
        a->probe_left = KP_ADAPT_PROBE;
        a->probe_min = 0;
    }
    a->ran_one = a->probe_left > 0 ? !a->one : a->one;
    return a->ran_one ? 1 : nt;
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
        if (a->probe_min == 0 || seconds < a->probe_min)
            a->probe_min = seconds;
        if (--a->probe_left == 0) {
            a->est[!a->one] = a->probe_min;
            decide(a);
        }
        return;
    }
    double *e = &a->est[a->one];
    *e = *e > 0 ? 0.75 * *e + 0.25 * seconds : seconds;
    if (a->calls <= KP_ADAPT_WARM)
        return;
    if (a->best == 0 || *e < a->best)
        a->best = *e;
    else if (*e > KP_ADAPT_ALARM * a->best && a->next_probe > a->calls + 1) {
        /* slower than it was: the placement may have changed; look now,
         * and let the next best be measured from here */
        a->next_probe = a->calls + 1;
        a->interval = KP_ADAPT_BASE;
        a->best = *e;
    }
}

int kp_rt_adapt_enabled(void)
{
    static _Atomic int enabled = -1;    /* read once (two first readers store the same) */
    int on = enabled;
    if (on < 0) {
        const char *s = getenv("KARP_ADAPTIVE_THREADS");
        enabled = on = !(s && strcmp(s, "0") == 0);
    }
    return on;
}
