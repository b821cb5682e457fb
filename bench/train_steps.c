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
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "karp.h"

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

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: train_steps model.so steps [batch]\n");
        return 1;
    }
    int64_t steps = count_arg("steps", argv[2]);
    if (steps < 0)
        return 1;
    karp_error err;
    karp_model *m = karp_open(argv[1], &err);
    if (!m) {
        fprintf(stderr, "train_steps: %s\n", err.message);
        return 1;
    }
    karp_info info;
    karp_model_info(m, &info);
    int64_t n = argc == 4 ? count_arg("batch", argv[3]) : info.max_batch;
    int rc = 1;
    float *x = NULL;
    void *target = NULL;
    if (n < 0)
        goto done;
    if (!info.has_train) {
        fprintf(stderr, "train_steps: %s: the model cannot be trained (%s)\n", argv[1],
                info.no_train_reason ? info.no_train_reason : "no loss or optimizer");
        goto done;
    }
    if (n > info.max_batch) {
        fprintf(stderr, "train_steps: batch %lld is more than the model's max batch %lld\n",
                (long long)n, (long long)info.max_batch);
        goto done;
    }
    x = malloc((size_t)(n * info.input_size) * sizeof *x);
    target = malloc((size_t)(n * (info.target_labels ? 1 : info.output_size)) * 4);
    if (!x || !target) {
        fprintf(stderr, "train_steps: out of memory\n");
        goto done;
    }
    uint64_t r = 1;             /* the same batch on every run: a fixed LCG */
    for (int64_t i = 0; i < n * info.input_size; i++) {
        r = r * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)(r >> 40) / (float)(1 << 24) - 0.5f;
    }
    int64_t classes = info.output_size > 1 ? info.output_size : 2;
    for (int64_t i = 0; i < n * (info.target_labels ? 1 : info.output_size); i++) {
        if (info.target_labels)
            ((int32_t *)target)[i] = (int32_t)(i % classes);
        else
            ((float *)target)[i] = (float)(i % 2);
    }
    float loss = 0;
    for (int64_t s = 0; s < steps; s++)
        if (karp_train_step(m, x, target, n, &loss) < 0) {
            fprintf(stderr, "train_steps: step %lld: %s\n", (long long)s, karp_last_error());
            goto done;
        }
    printf("%lld steps of %lld samples, last loss %g\n", (long long)steps, (long long)n, (double)loss);
    rc = 0;
done:
    free(x), free(target);
    karp_close(m);
    return rc;
}
