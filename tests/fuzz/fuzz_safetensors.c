/*
 * fuzz_safetensors.c — karp_load of a file of the fuzz bytes into two
 * hand-written models (tests/runtime/tiny_model.h): the inference-only
 * tiny model and the adam-trained one (parameters, running statistics,
 * optimizer state and metadata).  A failed load must return a negative
 * code with a message; the model stays usable either way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "tests/runtime/tiny_model.h"

static void load_into(KarpModelDesc d, const char *path)
{
    karp_model *m = tiny_open(&d);
    if (!m)
        abort();
    int rc = karp_load(m, path);
    const char *msg = karp_last_error();
    if (rc > 0 || (rc < 0 && (!msg || !msg[0] || strchr(msg, '\n')))) {
        fprintf(stderr, "fuzz_safetensors: rc %d with message '%s'\n", rc, msg ? msg : "(null)");
        abort();
    }
    /* loaded or not, the model must still run */
    float x[3] = {1, 2, 3}, y[2];
    if (karp_infer(m, x, 1, y) != 0)
        abort();
    karp_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write_file("model.safetensors", data, size);
    load_into(tiny_desc(), path);
    load_into(tiny_train_desc(2), path);
    return 0;
}
