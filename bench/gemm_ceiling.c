/*
 * gemm_ceiling.c — how fast the GEMM's loop structure can go on this core,
 * apart from the code karpc generates (docs/kernels-gemm.md, "What the
 * loop structure allows").
 *
 * The micro-tile of sgemm 1024^3 (8 rows x 2 vectors of 16, backend/
 * gemm_plan.c's choice there) is written here with AVX-512 intrinsics,
 * one thread, and timed four ways, in turns within every round, against
 * the FMA loop of karpc bench (kp_measure_peak) measured in the same run:
 *
 *   hot tile     one 8 x 32 tile of C over k = 1024, again and again: A's
 *                8 rows (4 KiB apart, as a 1024-wide matrix's are) and B's
 *                128 KiB micro-panel stay in L1 and L2
 *   loop nest    C = A B, 1024^3, in the generated kernel's order: column
 *                blocks of nc, row tiles, column tiles; A read in place,
 *                B already in panels (the packing is not timed)
 *   12 packed    the loop nest with 12-row tiles on A packed into
 *                [k][12] panels beforehand (24 accumulators; B's traffic
 *                from L2 a third less; the packing is not timed)
 *   14 packed    the same with 14 rows (28 accumulators)
 *
 * Printed: the median GFLOP/s over the rounds with the 10th and 90th
 * percentiles, and percent of the peak.  The loop nest is the ceiling of
 * the generated kernel's structure: what separates it from the hot tile is
 * what A and B cost coming from L3 and L2.  Not part of the test suite;
 * AVX-512 only:
 *
 *   build/bench/gemm_ceiling [rounds [nc]]    (default 21 rounds, about 2 s;
 *                                              nc, the column block of the
 *                                              loop nests, default 128)
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/peak.h"
#include "runtime/clock.h"

#if !defined(__AVX512F__)
int main(void)
{
    puts("gemm_ceiling: built without AVX-512 (it needs -march=native on an AVX-512 CPU)");
    return 0;
}
#else

enum { DIM = 1024, MAXROUNDS = 99 };

static long nc = 128;          /* the column block: gemm_plan's choice for sgemm 1024^3 */

/* C[0..MR) x [0..32) = A B over k = DIM.  A's row i, step k at
 * A[i * astride + k * kstride]; B's two panels of 16 columns are
 * [DIM][16] each, DIM * 16 floats apart (gemm_plan's panel layout). */
#define TILE(MR)                                                                                  \
    __attribute__((noinline)) static void tile##MR(const float *A, long astride, long kstride,   \
                                                   const float *B, float *C)                       \
    {                                                                                             \
        __m512 c0[MR], c1[MR];                                                                    \
        for (int i = 0; i < MR; i++)                                                              \
            c0[i] = c1[i] = _mm512_setzero_ps();                                                  \
        for (long k = 0; k < DIM; k++) {                                                          \
            __m512 b0 = _mm512_loadu_ps(B + k * 16), b1 = _mm512_loadu_ps(B + DIM * 16 + k * 16); \
            for (int i = 0; i < MR; i++) {                                                        \
                __m512 a = _mm512_set1_ps(A[i * astride + k * kstride]);                          \
                c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);                                            \
                c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);                                            \
            }                                                                                     \
        }                                                                                         \
        for (int i = 0; i < MR; i++) {                                                            \
            _mm512_storeu_ps(C + i * DIM, c0[i]);                                                 \
            _mm512_storeu_ps(C + i * DIM + 16, c1[i]);                                            \
        }                                                                                         \
    }
TILE(8)
TILE(12)
TILE(14)

typedef void (*TileFn)(const float *, long, long, const float *, float *);

static float *A, *Apk, *B, *C;

/* A's rows packed mr at a time into [DIM][mr] panels (rows past DIM zero). */
static void pack_a(int mr)
{
    for (long t = 0; t * mr < DIM; t++)
        for (long k = 0; k < DIM; k++)
            for (int i = 0; i < mr; i++) {
                long r = t * mr + i;
                Apk[(t * DIM + k) * mr + i] = r < DIM ? A[r * DIM + k] : 0.0f;
            }
}

/* One run of way w; returns GFLOP/s. */
static double run(int w)
{
    static const int rows[4] = {8, 8, 12, 14};
    static const TileFn fn[4] = {tile8, tile8, tile12, tile14};
    int mr = rows[w];
    long full = DIM / mr * mr;  /* whole tiles only: the rest is not counted */
    double t0 = kp_seconds(), flops;
    if (w == 0) {
        long reps = DIM / 8 * (DIM / 32);  /* the loop nest's tiles */
        for (long r = 0; r < reps; r++)
            fn[0](A, DIM, 1, B, C);
        flops = 2.0 * reps * 8 * 32 * DIM;
    } else {
        for (long jc = 0; jc < DIM; jc += nc)
            for (long ir = 0; ir + mr <= DIM; ir += mr)
                for (long jr = jc; jr < jc + nc; jr += 32) {
                    const float *a = w == 1 ? A + ir * DIM : Apk + ir * DIM;
                    fn[w](a, w == 1 ? DIM : 1, w == 1 ? 1 : mr, B + jr * DIM, C + ir * DIM + jr);
                }
        flops = 2.0 * full * DIM * DIM;
    }
    return flops / (kp_seconds() - t0) * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 21;
    if (rounds < 3 || rounds > MAXROUNDS) {
        fprintf(stderr, "gemm_ceiling: rounds: expected 3 to %d, found \"%s\"\n", MAXROUNDS,
                argv[1]);
        return 2;
    }
    if (argc > 2) {
        nc = atol(argv[2]);
        if (nc < 32 || nc > DIM || nc % 32 || DIM % nc) {
            fprintf(stderr,
                    "gemm_ceiling: nc: expected a multiple of 32 that divides %d (32, 64, ..., "
                    "%d), found \"%s\"\n",
                    DIM, DIM, argv[2]);
            return 2;
        }
    }
    A = aligned_alloc(4096, sizeof(float) * DIM * DIM);
    Apk = aligned_alloc(4096, sizeof(float) * (DIM + 16) * DIM);
    B = aligned_alloc(4096, sizeof(float) * DIM * DIM);
    C = aligned_alloc(4096, sizeof(float) * (DIM + 16) * DIM);
    if (!A || !Apk || !B || !C) {
        fputs("gemm_ceiling: out of memory\n", stderr);
        return 1;
    }
    for (long i = 0; i < DIM * DIM; i++) {
        A[i] = 0.001f * (float)(i % 7);
        B[i] = 0.001f * (float)(i % 5);
    }
    static const char *name[4] = {"hot tile 8x32", "loop nest 8x32, A in place", "12 packed",
                                  "14 packed"};
    static const int packed[4] = {0, 0, 12, 14};
    double g[4][MAXROUNDS], peak[MAXROUNDS];
    for (int r = 0; r < rounds; r++) {
        peak[r] = kp_measure_peak(1, 16).gflops;
        for (int w = 0; w < 4; w++) {
            if (packed[w])
                pack_a(packed[w]);
            g[w][r] = run(w);
        }
    }
    qsort(peak, (size_t)rounds, sizeof *peak, cmp);
    double pk = peak[rounds / 2];
    printf("one thread, %d rounds, column blocks of %ld; FMA loop (kp_measure_peak): "
           "median %.1f GFLOP/s (%.1f-%.1f)\n\n",
           rounds, nc, pk, peak[rounds / 10], peak[rounds - 1 - rounds / 10]);
    printf("%-28s %9s %8s %17s\n", "way", "GFLOP/s", "% peak", "10-90%");
    for (int w = 0; w < 4; w++) {
        qsort(g[w], (size_t)rounds, sizeof(double), cmp);
        double med = g[w][rounds / 2];
        printf("%-28s %9.1f %7.1f%% %8.1f-%.1f\n", name[w], med, 100.0 * med / pk,
               g[w][rounds / 10], g[w][rounds - 1 - rounds / 10]);
    }
    return C[3] > 1e30f;    /* keep the results live */
}
#endif
