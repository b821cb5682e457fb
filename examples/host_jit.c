/*
 * host_jit — compile a model file inside this process and run it.
 *
 *   host_jit examples/fashion_mlp.json [n]
 *
 * Prints the model's shapes, then the outputs for n deterministic inputs
 * (same inputs as host_aot, so the two can be compared line for line).
 * Build: cc host_jit.c $(pkg-config --cflags --libs karpc)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <karpc.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s model.json [n]\n", argv[0]);
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 3;

    karp_error err;
    karp_model *m = karp_compile(argv[1], NULL, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    karp_info info;
    karp_model_info(m, &info);
    printf("model %s: %lld inputs -> %lld outputs, max batch %lld, %d parameters\n", info.name,
           (long long)info.input_size, (long long)info.output_size, (long long)info.max_batch,
           info.nparams);

    float *x = malloc(sizeof(float) * (size_t)(n * info.input_size));
    float *y = malloc(sizeof(float) * (size_t)(n * info.output_size));
    if (!x || !y) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (long long i = 0; i < n * info.input_size; i++)
        x[i] = 0.5f + 0.5f * sinf((float)i);
    if (karp_infer(m, x, n, y) != 0) {
        fprintf(stderr, "%s\n", karp_last_error());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        printf("y[%d] =", i);
        for (long long j = 0; j < info.output_size; j++)
            printf(" %.9g", y[i * info.output_size + j]);
        printf("\n");
    }
    free(x);
    free(y);
    karp_close(m);
    return 0;
}
