/*
 * numcheck.h — numbers for the tests: deterministic generators, the
 * tolerance comparisons of generated code against a reference, and
 * central-difference gradient checks.
 *
 * Only plain C and Check here: every tests/support C file is linked into every
 * test program, the runtime's too, which link no compiler library.
 */
#ifndef KP_NUMCHECK_H
#define KP_NUMCHECK_H

#include <stdbool.h>
#include <stdint.h>

/* xorshift64: advances *state (not 0) and returns the new state. */
uint64_t kp_test_xorshift(uint64_t *state);
/* U(lo, hi) in double from the top 53 bits of kp_test_xorshift. */
double kp_test_urand(uint64_t *state, double lo, double hi);

/* splitmix64: advances *state and returns the next output. */
uint64_t kp_test_splitmix(uint64_t *state);
/* 0 .. n-1 from kp_test_splitmix. */
int kp_test_pick(uint64_t *state, int n);
/* U(lo, hi) in float from the top 24 bits of kp_test_splitmix. */
float kp_test_uniform(uint64_t *state, float lo, float hi);

/* The worst |got - ref| / (1e-5 (|ref| + mean |ref|)) over count floats;
 * <= 1 passes, NaN counts as infinitely far. */
double kp_test_tolerance_ratio(const float *got, const float *ref, int64_t count);

/* max|a - num| / max(max|num|, 1e-3) over the elements where use[i]
 * (all if use is NULL). */
double kp_test_rel_error(const float *a, const double *num, int64_t count, const bool *use);

/* A scalar function of some state that the caller perturbs. */
typedef double (*KpTestLoss)(void *ctx);

/* Central differences (h = 1e-6) of loss(ctx) in each element of data
 * where use[i] (all if NULL), into out; 0 elsewhere.  data is restored. */
void kp_test_central_diff(KpTestLoss loss, void *ctx, double *data, int64_t count,
                          const bool *use, double *out);

/* The gradient check of one tensor: analytic (float) against the central
 * differences of loss in data; asserts a relative error (as
 * kp_test_rel_error) below 1e-3, naming what, the batch n and the tensor,
 * and returns the error. */
double kp_test_check_grad(const char *what, int64_t n, const char *tensor, KpTestLoss loss,
                          void *ctx, double *data, const float *analytic, int64_t count,
                          const bool *use);

#endif
