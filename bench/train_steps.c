/*
 * train_steps.c — a fixed number of karp_train_step calls on one seeded
 * batch of a model.so, for a sampling profiler: each kernel is its own
 * symbol in the library, so `perf record -e cpu-clock` gives every
 * kernel's share of the CPU time, which holds still on a shared machine
 * where wall-clock medians do not (docs/kernels-conv.md).  Not part of the
 * test suite:
 *
 *   karpc examples/fashion_cnn.json -o /tmp/m.so
 *   OMP_NUM_THREADS=2 perf record -e cpu-clock build/bench/train_steps /tmp/m.so 30 64
 *   perf report --stdio
 *
 *   train_steps model.so steps [batch]      (batch: default the model's max batch)
 *
 * With --ab, two builds of one model (before and after a change) in one
 * process, rounds of 10 steps of each in turn (b first in every other
 * round: whichever runs second gained 1-1.5% with a against itself),
 * every step timed: a swing of the machine's speed (a third within
 * minutes here) lands on both alike, so the median ratio holds still
 * where two runs' medians do not.
 *
 *   train_steps --ab a.so b.so rounds [batch]
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "karp.h"

enum { AB_STEPS = 10 };

/* A positive integer argument, or -1 with a message. */
static int64_t count_arg(const char *what, const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 1) {
        fprintf(stderr, "train_steps: %s: expected a positive integer, found '%s'\n", what, s);
        return -1;
    }
    return v;
}

/* One model opened with its seeded batch of n samples (n 0: the max batch). */
typedef struct Run {
    karp_model *m;
    float *x;
    void *target;
    int64_t n;
} Run;

static void run_close(Run *r)
{
    free(r->x), free(r->target);
    karp_close(r->m);
}

static int run_open(Run *run, const char *path, int64_t n)
{
    memset(run, 0, sizeof *run);
    karp_error err;
    run->m = karp_open(path, &err);
    if (!run->m) {
        fprintf(stderr, "train_steps: %s\n", err.message);
        return -1;
    }
    karp_info info;
    karp_model_info(run->m, &info);
    run->n = n ? n : info.max_batch;
    if (!info.has_train) {
        fprintf(stderr, "train_steps: %s: the model cannot be trained (%s)\n", path,
                info.no_train_reason ? info.no_train_reason : "no loss or optimizer");
        return -1;
    }
    if (run->n > info.max_batch) {
        fprintf(stderr, "train_steps: %s: batch %lld is more than the model's max batch %lld\n", path,
                (long long)run->n, (long long)info.max_batch);
        return -1;
    }
    int64_t tcount = run->n * (info.target_labels ? 1 : info.output_size);
    run->x = malloc((size_t)(run->n * info.input_size) * sizeof *run->x);
    run->target = malloc((size_t)tcount * 4);
    if (!run->x || !run->target) {
        fprintf(stderr, "train_steps: out of memory\n");
        return -1;
    }
    uint64_t r = 1;             /* the same batch on every run: a fixed LCG */
    for (int64_t i = 0; i < run->n * info.input_size; i++) {
        r = r * 6364136223846793005u + 1442695040888963407u;
        run->x[i] = (float)(r >> 40) / (float)(1 << 24) - 0.5f;
    }
    int64_t classes = info.output_size > 1 ? info.output_size : 2;
    for (int64_t i = 0; i < tcount; i++) {
        if (info.target_labels)
            ((int32_t *)run->target)[i] = (int32_t)(i % classes);
        else
            ((float *)run->target)[i] = (float)(i % 2);
    }
    return 0;
}

static int run_step(Run *run, int64_t s, float *loss)
{
    if (karp_train_step(run->m, run->x, run->target, run->n, loss) < 0) {
        fprintf(stderr, "train_steps: step %lld: %s\n", (long long)s, karp_last_error());
        return -1;
    }
    return 0;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int64_t k)
{
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/* rounds of AB_STEPS steps of a then of b (after one warm-up round) */
static int ab(const char *pa, const char *pb, int64_t rounds, int64_t n)
{
    Run run[2];
    int rc = 1;
    int64_t k = rounds * AB_STEPS;
    double *t[2] = {malloc((size_t)k * sizeof(double)), malloc((size_t)k * sizeof(double))};
    double *ratio = malloc((size_t)rounds * sizeof(double));
    int opened = 0;
    if (!t[0] || !t[1] || !ratio) {
        fprintf(stderr, "train_steps: out of memory\n");
        goto done;
    }
    for (; opened < 2; opened++)
        if (run_open(&run[opened], opened ? pb : pa, n) < 0) {
            opened++;
            goto done;
        }
    float loss[2] = {0, 0};
    for (int64_t r = -1; r < rounds; r++) {
        double sum[2] = {0, 0};
        for (int j = 0; j < 2; j++) {
            int i = r % 2 ? 1 - j : j;      /* b first in every other round */
            for (int64_t s = 0; s < AB_STEPS; s++) {
                double t0 = now_us();
                if (run_step(&run[i], s, &loss[i]) < 0)
                    goto done;
                double dt = now_us() - t0;
                sum[i] += dt;
                if (r >= 0)
                    t[i][r * AB_STEPS + s] = dt;
            }
        }
        if (r >= 0)
            ratio[r] = sum[1] / sum[0];
    }
    double ma = median(t[0], k), mb = median(t[1], k), mr = median(ratio, rounds);
    printf("a %s: median %.1f us a step, last loss %g\n", pa, ma, (double)loss[0]);
    printf("b %s: median %.1f us a step, last loss %g\n", pb, mb, (double)loss[1]);
    printf("b / a: %.3f (medians), %.3f (median of %lld rounds' ratios, %.3f to %.3f)\n", mb / ma, mr,
           (long long)rounds, ratio[0], ratio[rounds - 1]);
    rc = 0;
done:
    for (int i = 0; i < opened; i++)
        run_close(&run[i]);
    free(t[0]), free(t[1]), free(ratio);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--ab") == 0) {
        if (argc < 5 || argc > 6) {
            fprintf(stderr, "usage: train_steps --ab a.so b.so rounds [batch]\n");
            return 1;
        }
        int64_t rounds = count_arg("rounds", argv[4]);
        int64_t n = argc == 6 ? count_arg("batch", argv[5]) : 0;
        return rounds < 0 || n < 0 ? 1 : ab(argv[2], argv[3], rounds, n);
    }
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: train_steps model.so steps [batch]\n"
                        "       train_steps --ab a.so b.so rounds [batch]\n");
        return 1;
    }
    int64_t steps = count_arg("steps", argv[2]);
    int64_t n = argc == 4 ? count_arg("batch", argv[3]) : 0;
    if (steps < 0 || n < 0)
        return 1;
    Run run;
    int rc = run_open(&run, argv[1], n);
    float loss = 0;
    for (int64_t s = 0; s < steps && rc == 0; s++)
        rc = run_step(&run, s, &loss);
    if (rc == 0)
        printf("%lld steps of %lld samples, last loss %g\n", (long long)steps, (long long)run.n,
               (double)loss);
    run_close(&run);
    return rc == 0 ? 0 : 1;
}
