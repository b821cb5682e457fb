/*
 * host_jit — compile a model file inside this process and run it.
 *
 *   host_jit examples/fashion_mlp.json [n]
 *
 * Prints the model's shapes and parameters, then the outputs for n
 * deterministic inputs — the same inputs as host_aot, so the two can be
 * compared line for line.
 * Build: cc host_jit.c $(pkg-config --cflags --libs karpc) -lm
 */
#include <stdio.h>
#include <stdlib.h>

#include <karpc.h>

#include "example_io.h"

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
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        karp_param_get(m, i, &p);
        printf("param %s: %lld floats\n", p.name, (long long)p.size);
    }
    int status = run_and_print(m, n);
    karp_close(m);
    return status;
}
