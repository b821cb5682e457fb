/*
 * peak.c — a loop of independent FMAs, timed (peak.h).
 *
 * Twelve accumulators per thread: an FMA has a latency of 4 cycles on
 * current Intel and AMD cores and two of them issue per cycle, so eight
 * independent chains keep both pipes busy; twelve leave a margin.  Each
 * chain computes a = 0.9999999 a + c (not a * 1, which a compiler may
 * drop), which converges to c / 1e-7 = 1: it neither overflows nor reaches
 * denormals.
 */
#include "peak.h"

#include <immintrin.h>
#include <omp.h>

#include "../runtime/clock.h"

enum { CHAINS = 12 };

/* CHAIN_OP(a0..a11) with the accumulators as named locals, which the
 * compiler keeps in registers (an array of them it kept in memory). */
#define EACH_CHAIN(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx512f"))) static float chains512(long iters)
{
    __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
#define INIT(k) __m512 a##k = _mm512_set1_ps((float)(k));
#define STEP(k) a##k = _mm512_fmadd_ps(a##k, m, c);
#define SUM(k) s = _mm512_add_ps(s, a##k);
    EACH_CHAIN(INIT)
    for (long i = 0; i < iters; i++) {
        EACH_CHAIN(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    EACH_CHAIN(SUM)
    return _mm512_reduce_add_ps(s);
#undef INIT
#undef STEP
#undef SUM
}

__attribute__((target("avx2,fma"))) static float chains256(long iters)
{
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
#define INIT(k) __m256 a##k = _mm256_set1_ps((float)(k));
#define STEP(k) a##k = _mm256_fmadd_ps(a##k, m, c);
#define SUM(k) s = _mm256_add_ps(s, a##k);
    EACH_CHAIN(INIT)
    for (long i = 0; i < iters; i++) {
        EACH_CHAIN(STEP)
    }
    __m256 s = _mm256_setzero_ps();
    EACH_CHAIN(SUM)
    float out[8], t = 0;
    _mm256_storeu_ps(out, s);
    for (int l = 0; l < 8; l++)
        t += out[l];
    return t;
#undef INIT
#undef STEP
#undef SUM
}

/* SSE has no FMA: a multiply and an add, two flops in two instructions */
static float chains128(long iters)
{
    __m128 m = _mm_set1_ps(0.9999999f), c = _mm_set1_ps(1e-7f);
#define INIT(k) __m128 a##k = _mm_set1_ps((float)(k));
#define STEP(k) a##k = _mm_add_ps(_mm_mul_ps(a##k, m), c);
#define SUM(k) s = _mm_add_ps(s, a##k);
    EACH_CHAIN(INIT)
    for (long i = 0; i < iters; i++) {
        EACH_CHAIN(STEP)
    }
    __m128 s = _mm_setzero_ps();
    EACH_CHAIN(SUM)
    float out[4], t = 0;
    _mm_storeu_ps(out, s);
    for (int l = 0; l < 4; l++)
        t += out[l];
    return t;
#undef INIT
#undef STEP
#undef SUM
}

static float run(int lanes, long iters)
{
    if (lanes == 16)
        return chains512(iters);
    if (lanes == 8)
        return chains256(iters);
    return chains128(iters);
}

KpPeak kp_measure_peak(int nthreads, int max_lanes)
{
    KpPeak p = {.lanes = 4, .threads = nthreads > 0 ? nthreads : omp_get_max_threads()};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        p.lanes = 16;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        p.lanes = 8;
    if (max_lanes > 0 && p.lanes > max_lanes)
        p.lanes = max_lanes >= 8 ? 8 : 4;

    /* calibrate to about 20 ms per run on one thread */
    long iters = 1 << 16;
    for (;;) {
        double t = kp_seconds();
        volatile float sink = run(p.lanes, iters);
        (void)sink;
        if (kp_seconds() - t > 0.005 || iters > (1L << 34))
            break;
        iters *= 2;
    }
    iters *= 4;

    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = kp_seconds();
        volatile float sink = 0;
#pragma omp parallel num_threads(p.threads)
        {
            float s = run(p.lanes, iters);
#pragma omp atomic
            sink += s;
        }
        double dt = kp_seconds() - t0;
        double flops = (double)p.threads * (double)iters * CHAINS * p.lanes * 2.0;
        if (flops / dt > best)
            best = flops / dt;
    }
    p.gflops = best * 1e-9;
    return p;
}
