/*
 * infer_latency.c — karp_infer at batch 1 with the optimizing passes and
 * without them.  Each model is JIT-compiled twice through karp_compile:
 * with the default passes, and with disable_passes = every KARPC_NO_*
 * flag (no fold, no fusion, no layout, no memory reuse).  Both get the
 * same parameters; after a warm-up, karp_infer(n = 1) is timed call by
 * call and the median reported, with the ratio.  Not part of the test
 * suite:
 *
 *   infer_latency [calls] [model.json ...]
 *       (default 2000 calls; fashion_mlp, fashion_cnn, resnet_cifar)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "karp.h"
#include "karpc.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + 1e-3 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static karp_model *build(const char *path, unsigned off)
{
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.disable_passes = off;
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    if (!m)
        fprintf(stderr, "infer_latency: %s\n", err.message);
    return m;
}

/* median microseconds of one karp_infer(n = 1), NaN-free: -1 on failure */
static double median_us(karp_model *m, const float *x, float *y, int calls)
{
    for (int i = 0; i < calls / 10 + 10; i++)   /* warm-up: caches, thread team, prepare */
        if (karp_infer(m, x, 1, y) != 0)
            return -1;
    double *t = malloc((size_t)calls * sizeof *t);
    for (int i = 0; i < calls; i++) {
        double t0 = now_us();
        karp_infer(m, x, 1, y);
        t[i] = now_us() - t0;
    }
    qsort(t, (size_t)calls, sizeof *t, cmp_double);
    double med = t[calls / 2];
    free(t);
    return med;
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 2000;
    if (calls < 1) {
        fprintf(stderr, "usage: infer_latency [calls] [model.json ...]\n");
        return 1;
    }
    static const char *defaults[] = {KARP_SOURCE_DIR "/examples/fashion_mlp.json",
                                     KARP_SOURCE_DIR "/examples/fashion_cnn.json",
                                     KARP_SOURCE_DIR "/examples/resnet_cifar.json"};
    const char **models = argc > 2 ? (const char **)argv + 2 : defaults;
    int nmodels = argc > 2 ? argc - 2 : 3;
    const unsigned all_off = KARPC_NO_FUSE | KARPC_NO_LAYOUT | KARPC_NO_MEMPLAN | KARPC_NO_FOLD;
    printf("karp_infer at batch 1, median of %d calls (microseconds)\n", calls);
    printf("%-16s %12s %12s %8s\n", "model", "passes on", "passes off", "off/on");
    int rc = 0;
    for (int i = 0; i < nmodels; i++) {
        karp_model *on = build(models[i], 0), *off = build(models[i], all_off);
        if (!on || !off) {
            karp_close(on), karp_close(off);
            rc = 1;
            continue;
        }
        karp_init_params(on, 1), karp_init_params(off, 1);
        karp_info info;
        karp_model_info(on, &info);
        float *x = calloc((size_t)info.input_size, sizeof *x);
        float *y = calloc((size_t)info.output_size, sizeof *y);
        for (int64_t k = 0; k < info.input_size; k++)
            x[k] = (float)((k * 7919) % 1000) / 1000.0f - 0.5f;
        double a = median_us(on, x, y, calls), b = median_us(off, x, y, calls);
        printf("%-16s %12.1f %12.1f %8.2f\n", info.name, a, b, a > 0 ? b / a : 0.0);
        free(x), free(y);
        karp_close(on), karp_close(off);
    }
    return rc;
}
