/*
 * data_cifar.c — CIFAR-10, binary version: files of 10000 records, each
 * one label byte (0..9) then 3072 pixel bytes, the red, green and blue
 * 32x32 planes in turn (CHW, row-major).  The sizes are checked before
 * anything is read, so a truncated file is named with the offset of its
 * incomplete record.
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"

#define RECORD 3073
#define PIXELS 3072
#define MAX_FILES 5

/* The split's files (paths in files[], at most MAX_FILES); their count. */
static int split_files(const char *dir, const char *split, char files[][4096], karp_error *err)
{
    int train = strcmp(split, "train") == 0;
    if (!train && strcmp(split, "test") != 0)
        return kp_rt_error(err, KARP_EINVAL,
                           "kp_data_load_cifar10: split must be \"train\" or \"test\", got '%s'",
                           split);
    /* The tarball unpacks to cifar-10-batches-bin/: accept its parent. */
    const char *sub = "";
    struct stat st;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/cifar-10-batches-bin", dir);
    if (stat(probe, &st) == 0 && S_ISDIR(st.st_mode))
        sub = "/cifar-10-batches-bin";
    int n = train ? MAX_FILES : 1;
    for (int i = 0; i < n; i++) {
        if (train)
            snprintf(files[i], 4096, "%s%s/data_batch_%d.bin", dir, sub, i + 1);
        else
            snprintf(files[i], 4096, "%s%s/test_batch.bin", dir, sub);
    }
    return n;
}

/* Read one file's records into x and labels (room for `records`). */
static int read_file(const char *path, int64_t records, float *x, int32_t *labels,
                     karp_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kp_rt_error(err, KARP_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char rec[RECORD];
    int rc = 0;
    for (int64_t r = 0; r < records && rc == 0; r++) {
        size_t got = fread(rec, 1, RECORD, f);
        if (got != RECORD) {
            rc = kp_rt_error(err, KARP_EFORMAT,
                             "%s: truncated record at byte %lld: %zu of %d bytes", path,
                             (long long)(r * RECORD), got, RECORD);
            break;
        }
        if (rec[0] > 9) {
            rc = kp_rt_error(err, KARP_EFORMAT, "%s: byte %lld: label %d is not a class 0..9",
                             path, (long long)(r * RECORD), rec[0]);
            break;
        }
        labels[r] = rec[0];
        for (int i = 0; i < PIXELS; i++)
            x[r * PIXELS + i] = rec[1 + i] / 255.0f;
    }
    fclose(f);
    return rc;
}

int kp_data_load_cifar10(const char *dir, const char *split, KpDataset *ds, karp_error *err)
{
    if (!dir || !split || !ds)
        return kp_rt_error(err, KARP_EINVAL, "kp_data_load_cifar10: NULL argument");
    memset(ds, 0, sizeof *ds);
    char files[MAX_FILES][4096];
    int nfiles = split_files(dir, split, files, err);
    if (nfiles < 0)
        return nfiles;
    int64_t records[MAX_FILES], total = 0;
    for (int i = 0; i < nfiles; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0)
            return kp_rt_error(err, KARP_EIO, "%s: cannot open: %s", files[i], strerror(errno));
        int64_t size = (int64_t)st.st_size;
        if (size == 0)
            return kp_rt_error(err, KARP_EFORMAT, "%s: empty file, expected records of %d bytes",
                               files[i], RECORD);
        if (size % RECORD != 0)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: truncated record at byte %lld: %lld of %d bytes", files[i],
                               (long long)(size / RECORD * RECORD), (long long)(size % RECORD),
                               RECORD);
        records[i] = size / RECORD;
        total += records[i];
    }
    ds->x = malloc((size_t)total * PIXELS * sizeof(float));
    ds->labels = malloc((size_t)total * sizeof(int32_t));
    if (!ds->x || !ds->labels) {
        kp_data_free(ds);
        return kp_rt_error(err, KARP_ENOMEM, "%s: out of memory for %lld images", dir,
                           (long long)total);
    }
    int64_t at = 0;
    for (int i = 0; i < nfiles; i++) {
        int rc = read_file(files[i], records[i], ds->x + at * PIXELS, ds->labels + at, err);
        if (rc) {
            kp_data_free(ds);
            return rc;
        }
        at += records[i];
    }
    ds->count = total;
    ds->rank = 3;
    ds->shape[0] = 3;
    ds->shape[1] = 32;
    ds->shape[2] = 32;
    ds->sample_size = PIXELS;
    ds->nclasses = 10;
    return 0;
}
