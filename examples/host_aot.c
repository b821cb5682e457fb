/*
 * host_aot — load a model compiled ahead of time and run it.
 *
 *   karpc examples/fashion_mlp.json -o fashion_mlp.so
 *   host_aot ./fashion_mlp.so [n]
 *
 * Only the runtime is needed here (libkarprt), not the compiler.
 * Build: cc host_aot.c -lkarprt -lm
 */
#include <stdio.h>
#include <stdlib.h>

#include <karp.h>

#include "example_io.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s model.so [n]\n", argv[0]);
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 3;

    karp_error err;
    karp_model *m = karp_open(argv[1], &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int status = run_and_print(m, n);
    karp_close(m);
    return status;
}
