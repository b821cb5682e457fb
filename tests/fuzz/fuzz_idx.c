/*
 * fuzz_idx.c — kp_data_load_idx on an image file and a label file made
 * from the fuzz bytes: the first two bytes (little-endian) are the length
 * of the image file, the rest after it is the label file.  Files may be
 * raw or gzip'ed (zlib reads both).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FzBytes b = {data, size};
    size_t nimg = (size_t)fz_u64(&b, 2);
    if (nimg > b.n)
        nimg = b.n;
    char images[4200];
    snprintf(images, sizeof images, "%s", fz_write_file("images-idx3-ubyte", b.p, nimg));
    const char *labels = fz_write_file("labels-idx1-ubyte", b.p + nimg, b.n - nimg);
    KpDataset ds;
    karp_error err;
    int rc = kp_data_load_idx(images, labels, &ds, &err);
    if (rc == 0) {
        if (ds.count < 1 || ds.rank != 3 || ds.sample_size != ds.shape[1] * ds.shape[2])
            abort();
        volatile float sum = 0;
        for (int64_t i = 0; i < ds.count * ds.sample_size; i++)
            sum += ds.x[i];
        for (int64_t i = 0; i < ds.count; i++)
            if (ds.labels[i] < 0 || ds.labels[i] >= ds.nclasses)
                abort();
        kp_data_free(&ds);
    } else if (rc > 0 || !err.message[0] || strchr(err.message, '\n')) {
        fprintf(stderr, "fuzz_idx: rc %d with message '%s'\n", rc, err.message);
        abort();
    }
    return 0;
}
