/*
 * div_by_c.c — the exhaustive half of the argument that the generated
 * Adam step's sqrt(v) / c (backend/emit_optim.c, file comment) is the
 * float division's result:
 *
 *   y = RN(1/c),  q0 = RN(a y),  q = RN(q0 + RN(a - c q0) y)   (fmas)
 *
 * With a and c scaled into [1, 2), q0 is within an ulp of a / c (so
 * Markstein's theorem makes q correct) except, perhaps, where a < c and
 * a |1/c - y| >= 2^-25, or where a / c lies just above 1/2.  This program
 * tries every such pair: for each of the 2^23 - 1 significands of c in
 * (1, 2), every a of [1, c] from 2^-25 / |1/c - y| on (a little below,
 * to be safe), and every a of [1, c] for the 64 largest c.  It counts the
 * pairs where q is not a / c, and, as a check that the comparison can
 * fail, those where q0 alone is not.  About 8 * 10^12 pairs, some ten
 * minutes on two cores with AVX-512.  Not part of the test suite:
 *
 *   cmake --build build --target div_by_c && OMP_NUM_THREADS=2 build/bench/div_by_c
 *   build/bench/div_by_c FIRST END     (only the significands [FIRST, END))
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int main(int argc, char **argv)
{
    uint32_t first = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 1;
    uint32_t end = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 1u << 23;
    if (first < 1 || end > 1u << 23 || first >= end) {
        fprintf(stderr, "div_by_c: significands FIRST END with 1 <= FIRST < END <= 2^23\n");
        return 2;
    }
    long long pairs = 0, wrong = 0, wrong_q0 = 0;
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : pairs, wrong, wrong_q0)
    for (uint32_t cm = first; cm < end; cm++) {
        float c = from_bits(127u << 23 | cm), y = 1.0f / c;
        double miss = fabs(1.0 - (double)c * y) / c; /* |1/c - y|; c y is exact in double */
        double from = 0x1p-25 / miss * (1 - 0x1p-20);
        int near_half = cm >= (1u << 23) - 64;
        if (from >= c && !near_half)
            continue;
        uint32_t lo = near_half || from <= 1 ? 0 : (uint32_t)((from - 1) * 0x1p23);
        long long w = 0, w0 = 0;
#pragma omp simd reduction(+ : w, w0)
        for (uint32_t am = lo; am <= cm; am++) {
            float a = from_bits(127u << 23 | am);
            float q0 = a * y, q = fmaf(fmaf(-q0, c, a), y, q0), exact = a / c;
            w += q != exact;
            w0 += q0 != exact;
        }
        pairs += cm + 1 - lo, wrong += w, wrong_q0 += w0;
        if (w)
            printf("c = %a: %lld of its pairs wrong\n", c, w);
    }
    printf("significands of c [%u, %u): %lld pairs, %lld wrong (%lld for q0 alone)\n", first, end, pairs,
           wrong, wrong_q0);
    return wrong != 0;
}
