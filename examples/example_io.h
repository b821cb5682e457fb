/*
 * example_io.h — the inputs and the printout shared by host_jit and
 * host_aot, so that their outputs can be compared line for line.
 */
#ifndef EXAMPLE_IO_H
#define EXAMPLE_IO_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <karp.h>

/* Run n deterministic samples through m and print the outputs with full
 * float precision.  Returns the exit status. */
static int run_and_print(karp_model *m, int n)
{
    karp_info info;
    if (karp_model_info(m, &info) != 0) {
        fprintf(stderr, "%s\n", karp_last_error());
        return 1;
    }
    printf("model %s: %lld inputs -> %lld outputs, max batch %lld, %d parameters\n", info.name,
           (long long)info.input_size, (long long)info.output_size, (long long)info.max_batch,
           info.nparams);
    float *x = malloc(sizeof(float) * (size_t)(n * info.input_size));
    float *y = malloc(sizeof(float) * (size_t)(n * info.output_size));
    int status = 1;
    if (!x || !y) {
        fprintf(stderr, "out of memory\n");
    } else {
        for (long long i = 0; i < n * info.input_size; i++)
            x[i] = 0.5f + 0.5f * sinf((float)i);
        if (karp_infer(m, x, n, y) != 0) {
            fprintf(stderr, "%s\n", karp_last_error());
        } else {
            for (int i = 0; i < n; i++) {
                printf("y[%d] =", i);
                for (long long j = 0; j < info.output_size; j++)
                    printf(" %.9g", y[i * info.output_size + j]);
                printf("\n");
            }
            status = 0;
        }
    }
    free(x);
    free(y);
    return status;
}

#endif
