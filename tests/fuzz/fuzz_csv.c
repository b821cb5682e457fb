/*
 * fuzz_csv.c — kp_data_load_csv on a file of the fuzz bytes.  Either a
 * dataset whose sizes agree, or a negative code with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write_file("data.csv", data, size);
    KpDataset ds;
    karp_error err;
    memset(&ds, 0, sizeof ds);
    int rc = kp_data_load_csv(path, &ds, &err);
    if (rc == 0) {
        if (ds.count < 1 || ds.rank != 1 || ds.sample_size != ds.shape[0] || !ds.x || !ds.targets)
            abort();
        /* touch every float: ASan checks the arrays are as long as said */
        volatile float sum = 0;
        for (int64_t i = 0; i < ds.count * ds.sample_size; i++)
            sum += ds.x[i];
        for (int64_t i = 0; i < ds.count; i++)
            sum += ds.targets[i] + (ds.labels ? (float)ds.labels[i] : 0.0f);
        for (int64_t i = 0; ds.labels && i < ds.count; i++)
            if (ds.labels[i] < 0 || ds.labels[i] >= ds.nclasses)
                abort();
        kp_data_free(&ds);
    } else if (rc > 0 || !err.message[0] || strchr(err.message, '\n')) {
        fprintf(stderr, "fuzz_csv: rc %d with message '%s'\n", rc, err.message);
        abort();
    }
    return 0;
}
