#include "numcheck.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

uint64_t kp_test_xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

double kp_test_urand(uint64_t *state, double lo, double hi)
{
    return lo + (hi - lo) * (double)(kp_test_xorshift(state) >> 11) / 9007199254740992.0;
}

uint64_t kp_test_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int kp_test_pick(uint64_t *state, int n)
{
    return (int)(kp_test_splitmix(state) % (uint64_t)n);
}

float kp_test_uniform(uint64_t *state, float lo, float hi)
{
    return lo + (hi - lo) * (float)((kp_test_splitmix(state) >> 40) * (1.0 / 16777216.0));
}

double kp_test_tolerance_ratio(const float *got, const float *ref, int64_t count)
{
    double mean = 0, worst = 0;
    for (int64_t i = 0; i < count; i++)
        mean += fabs((double)ref[i]);
    mean = mean / (double)(count > 0 ? count : 1) + 1e-30;
    for (int64_t i = 0; i < count; i++) {
        double r = fabs((double)got[i] - ref[i]) / (1e-5 * (fabs((double)ref[i]) + mean));
        if (!(r <= worst))
            worst = isnan(r) ? INFINITY : r;
    }
    return worst;
}

double kp_test_rel_error(const float *a, const double *num, int64_t count, const bool *use)
{
    double diff = 0, scale = 1e-3;
    for (int64_t i = 0; i < count; i++) {
        if (use && !use[i])
            continue;
        diff = fmax(diff, fabs(a[i] - num[i]));
        scale = fmax(scale, fabs(num[i]));
    }
    return diff / scale;
}

void kp_test_central_diff(KpTestLoss loss, void *ctx, double *data, int64_t count,
                          const bool *use, double *out)
{
    const double h = 1e-6;
    for (int64_t i = 0; i < count; i++) {
        out[i] = 0;
        if (use && !use[i])
            continue;
        double keep = data[i];
        data[i] = keep + h;
        double up = loss(ctx);
        data[i] = keep - h;
        double down = loss(ctx);
        data[i] = keep;
        out[i] = (up - down) / (2 * h);
    }
}

double kp_test_check_grad(const char *what, int64_t n, const char *tensor, KpTestLoss loss,
                          void *ctx, double *data, const float *analytic, int64_t count,
                          const bool *use)
{
    double *num = malloc((size_t)(count > 0 ? count : 1) * sizeof *num);
    kp_test_central_diff(loss, ctx, data, count, use, num);
    double e = kp_test_rel_error(analytic, num, count, use);
    free(num);
    ck_assert_msg(e < 1e-3, "%s: n=%ld %s: relative error %g", what, (long)n, tensor, e);
    return e;
}
