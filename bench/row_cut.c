/*
 * row_cut.c — why a batch-1 dense layer's input gradient reads its weight
 * by halves of the rows (backend/emit_grad_dense.c, docs/kernels-gemm.md
 * "Batch 1 on cores far apart").  Two OpenMP threads do what fashion_cnn's
 * batch-1 step does to its 128 x 9216 weight W, step after step:
 *
 *   forward    y = W x              each thread its half of W's rows
 *   grad_x     dx = dy W            cut by columns (mode 0): each thread
 *                                   reads half of every row; or by rows
 *                                   (mode 1): each thread its own rows,
 *                                   into a partial, the partials added
 *   update     Adam on W, m, v      each thread its half of the rows
 *
 * with AVX-512 intrinsics, and prints each phase's time per step (thread 0's clock, after a
 * quarter of the steps as warm-up).  On cores that share no cache, mode 0
 * moves a quarter of W between them every step.
 *
 * The optional DIV says how the update's denominator sqrt(v) / c + eps
 * divides by Adam's bias correction c (backend/emit_optim.c): 0, not at
 * all (sqrt(v) + eps, the cost of memory, the square root and the one
 * division left); 1, in double, (float)((double)sqrt(v) * (1 / (double)c)),
 * the generated step's way until 2026-12-06; 2, as the generated step does
 * now, y = RN(1/c), q0 = RN(a y), q0 + RN(a - c q0) y by fused
 * multiply-adds (q0 where that is NaN).  Not part of the test suite:
 *
 *   OMP_PROC_BIND=true build/bench/row_cut 0 2000
 *   OMP_PROC_BIND=true build/bench/row_cut 1 2000
 *   OMP_PROC_BIND=true build/bench/row_cut 1 2000 1      (then 2, then 0)
 */
#include <errno.h>
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/clock.h"

enum { ROWS = 128, COLS = 9216, HALF = ROWS / 2 };

/* A non-negative integer argument no larger than max, or -1 with a message. */
static long arg(const char *what, const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > max) {
        fprintf(stderr, "row_cut: %s: expected an integer from 0 to %ld, found '%s'\n", what, max, s);
        return -1;
    }
    return v;
}

static float *floats(size_t count, float value)
{
    float *p = aligned_alloc(64, count * sizeof *p);
    if (p)
        for (size_t i = 0; i < count; i++)
            p[i] = value;
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: row_cut MODE STEPS [DIV]   (MODE 0: grad_x by columns, 1: by rows; "
                        "DIV 0: no division by c, 1: in double, 2: by fused multiply-adds)\n");
        return 2;
    }
    long mode = arg("MODE", argv[1], 1), steps = arg("STEPS", argv[2], 1000000);
    long div = argc == 4 ? arg("DIV", argv[3], 2) : 0;
    if (mode < 0 || steps < 0 || div < 0)
        return 2;
    if (steps < 4) {
        fprintf(stderr, "row_cut: STEPS: expected at least 4, found %ld\n", steps);
        return 2;
    }
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "row_cut: this CPU has no AVX-512, which the program is written in\n");
        return 1;
    }
    size_t wn = (size_t)ROWS * COLS;
    float *W = floats(wn, 0.01f), *M = floats(wn, 0.0f), *V = floats(wn, 0.0f);
    float *x = floats(COLS, 0.5f), *dx = floats(COLS, 0.0f), *part = floats(2 * (size_t)COLS, 0.0f);
    float y[ROWS], dy[ROWS];
    if (!W || !M || !V || !x || !dx || !part) {
        fprintf(stderr, "row_cut: out of memory\n");
        return 1;
    }
    for (int j = 0; j < ROWS; j++)
        dy[j] = 0.1f;
    double tf = 0, tg = 0, tu = 0;
    const __m512 b1 = _mm512_set1_ps(0.9f), ob1 = _mm512_set1_ps(0.1f), b2 = _mm512_set1_ps(0.999f),
                 ob2 = _mm512_set1_ps(0.001f), lr = _mm512_set1_ps(0.001f), eps = _mm512_set1_ps(1e-8f);
    const float cf = 0.0316069f;            /* c = RN(sqrt(1 - 0.999)), Adam's first step */
    const __m512 c = _mm512_set1_ps(cf), y1 = _mm512_set1_ps(1.0f / cf);
    const __m512d rc = _mm512_set1_pd(1.0 / (double)cf);
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num();
        int r0 = t * HALF, r1 = r0 + HALF;
        for (long s = 0; s < steps; s++) {
            double t0 = kp_seconds();
            for (int j = r0; j < r1; j++) {
                __m512 a = _mm512_setzero_ps();
                for (int i = 0; i < COLS; i += 16)
                    a = _mm512_fmadd_ps(_mm512_load_ps(W + (size_t)j * COLS + i), _mm512_load_ps(x + i), a);
                y[j] = _mm512_reduce_add_ps(a);
            }
#pragma omp barrier
            double t1 = kp_seconds();
            if (mode == 0) {
                for (int i = t * COLS / 2; i < (t + 1) * COLS / 2; i += 16) {
                    __m512 a = _mm512_setzero_ps();
                    for (int j = 0; j < ROWS; j++)
                        a = _mm512_fmadd_ps(_mm512_set1_ps(dy[j]), _mm512_load_ps(W + (size_t)j * COLS + i), a);
                    _mm512_store_ps(dx + i, a);
                }
            } else {
                float *p = part + (size_t)t * COLS;
                for (int i = 0; i < COLS; i += 16) {
                    __m512 a = _mm512_setzero_ps();
                    for (int j = r0; j < r1; j++)
                        a = _mm512_fmadd_ps(_mm512_set1_ps(dy[j]), _mm512_load_ps(W + (size_t)j * COLS + i), a);
                    _mm512_store_ps(p + i, a);
                }
#pragma omp barrier
                for (int i = t * COLS / 2; i < (t + 1) * COLS / 2; i += 16)
                    _mm512_store_ps(dx + i, _mm512_add_ps(_mm512_load_ps(part + i),
                                                          _mm512_load_ps(part + COLS + i)));
            }
#pragma omp barrier
            double t2 = kp_seconds();
            for (int j = r0; j < r1; j++) {
                __m512 d = _mm512_set1_ps(dy[j]);
                for (int i = 0; i < COLS; i += 16) {
                    size_t k = (size_t)j * COLS + i;
                    __m512 g = _mm512_mul_ps(d, _mm512_load_ps(x + i));
                    __m512 m = _mm512_fmadd_ps(b1, _mm512_load_ps(M + k), _mm512_mul_ps(ob1, g));
                    __m512 v = _mm512_fmadd_ps(b2, _mm512_load_ps(V + k), _mm512_mul_ps(_mm512_mul_ps(ob2, g), g));
                    _mm512_store_ps(M + k, m);
                    _mm512_store_ps(V + k, v);
                    __m512 a = _mm512_sqrt_ps(v);
                    if (div == 1) {
                        __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(a)), rc));
                        __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)), rc));
                        a = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
                    } else if (div == 2) {
                        __m512 q0 = _mm512_mul_ps(a, y1);
                        __m512 q = _mm512_fmadd_ps(_mm512_fnmadd_ps(q0, c, a), y1, q0);
                        a = _mm512_mask_mov_ps(q, _mm512_cmp_ps_mask(q, q, _CMP_UNORD_Q), q0);
                    }
                    __m512 u = _mm512_div_ps(_mm512_mul_ps(lr, m), _mm512_add_ps(a, eps));
                    _mm512_store_ps(W + k, _mm512_sub_ps(_mm512_load_ps(W + k), u));
                }
            }
#pragma omp barrier
            double t3 = kp_seconds();
            if (t == 0 && s >= steps / 4)
                tf += t1 - t0, tg += t2 - t1, tu += t3 - t2;
        }
    }
    double n = (double)(steps - steps / 4);
    printf("grad_x by %s, %s: forward %.1f us, grad_x %.1f us, update %.1f us, step %.1f us "
           "(y[0] %g, dx[0] %g)\n", mode ? "rows" : "columns",
           div == 0 ? "no division by c" : div == 1 ? "division by c in double" : "division by c by fmas",
           1e6 * tf / n, 1e6 * tg / n,
           1e6 * tu / n, 1e6 * (tf + tg + tu) / n, (double)y[0], (double)dx[0]);
    free(W), free(M), free(V), free(x), free(dx), free(part);
    return 0;
}
