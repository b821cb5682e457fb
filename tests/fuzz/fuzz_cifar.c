/*
 * fuzz_cifar.c — kp_data_load_cifar10(DIR, "test") where DIR/test_batch.bin
 * holds the fuzz bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write_file("test_batch.bin", data, size);
    KpDataset ds;
    karp_error err;
    int rc = kp_data_load_cifar10(fz_dir(), "test", &ds, &err);
    if (rc == 0) {
        if (ds.count < 1 || ds.sample_size != 3072 || ds.count * 3073 != (int64_t)size)
            abort();
        volatile float sum = 0;
        for (int64_t i = 0; i < ds.count * ds.sample_size; i++)
            sum += ds.x[i];
        for (int64_t i = 0; i < ds.count; i++)
            if (ds.labels[i] < 0 || ds.labels[i] > 9)
                abort();
        kp_data_free(&ds);
    } else if (rc > 0 || !err.message[0] || strchr(err.message, '\n')) {
        fprintf(stderr, "fuzz_cifar: rc %d with message '%s'\n", rc, err.message);
        abort();
    }
    return 0;
}
