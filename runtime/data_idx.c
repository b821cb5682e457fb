/*
 * IDX files (the MNIST format): a big-endian header — two zero bytes, a
 * type byte (0x08: unsigned byte), the number of dimensions, then each
 * dimension as a u32 — followed by the data.  zlib's gzread reads gzip'ed
 * and plain files alike.
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "model.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct IdxFile {
    gzFile gz;
    const char *path;
    int64_t pos;            /* bytes consumed, uncompressed */
} IdxFile;

/* len bytes into buf; a short file is "truncated at byte B: expected
 * WHOLE bytes of WHAT" (whole: the size of the field, of which this read
 * may be a part). */
static int read_part(IdxFile *f, void *buf, int64_t len, int64_t whole, const char *what,
                     karp_error *err)
{
    unsigned char *p = buf;
    int64_t done = 0;
    while (done < len) {
        unsigned chunk = (unsigned)(len - done > (1 << 30) ? (1 << 30) : len - done);
        int got = gzread(f->gz, p + done, chunk);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f->gz, &zerr);
            return kp_rt_error(err, KARP_EFORMAT, "%s: byte %lld: cannot read %s: %s", f->path,
                               (long long)(f->pos + done), what, msg);
        }
        if (got == 0)
            return kp_rt_error(err, KARP_EFORMAT,
                               "%s: truncated at byte %lld: expected %lld bytes of %s", f->path,
                               (long long)(f->pos + done), (long long)whole, what);
        done += got;
    }
    f->pos += len;
    return 0;
}

static int read_exact(IdxFile *f, void *buf, int64_t len, const char *what, karp_error *err)
{
    return read_part(f, buf, len, len, what, err);
}

/* Open path and read its header; dims[] receives the dimensions. */
static int idx_open(IdxFile *f, const char *path, int want_rank, int64_t *dims, karp_error *err)
{
    f->path = path;
    f->pos = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return kp_rt_error(err, KARP_EIO, "%s: cannot open: %s", path,
                           errno ? strerror(errno) : "out of memory");
    unsigned char magic[4];
    int rc = read_exact(f, magic, 4, "header", err);
    if (rc)
        return rc;
    if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08)
        return kp_rt_error(err, KARP_EFORMAT,
                           "%s: byte 0: not an IDX file of unsigned bytes (magic %02x %02x %02x %02x)",
                           path, magic[0], magic[1], magic[2], magic[3]);
    if (magic[3] != want_rank)
        return kp_rt_error(err, KARP_EFORMAT, "%s: byte 3: expected %d dimensions, found %d", path,
                           want_rank, magic[3]);
    for (int i = 0; i < want_rank; i++) {
        unsigned char b[4];
        rc = read_exact(f, b, 4, "header", err);
        if (rc)
            return rc;
        dims[i] = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | b[3];
        if (dims[i] <= 0 || dims[i] > (1 << 28))
            return kp_rt_error(err, KARP_EFORMAT, "%s: byte %d: dimension %d is %lld", path,
                               4 + 4 * i, i, (long long)dims[i]);
    }
    return 0;
}

static void idx_close(IdxFile *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}

static int load_images(const char *path, KpDataset *ds, karp_error *err)
{
    IdxFile f = {0};
    int64_t dims[3];
    int rc = idx_open(&f, path, 3, dims, err);
    if (rc == 0 && dims[1] * dims[2] > (1 << 24))
        rc = kp_rt_error(err, KARP_EFORMAT, "%s: images of %lldx%lld are too large", path,
                         (long long)dims[1], (long long)dims[2]);
    if (rc == 0) {
        /* The header's count is not trusted with memory: the pixels are
         * read in chunks and the array grows with what the file really
         * holds, so a 16-byte file claiming a billion images fails with
         * "truncated" instead of allocating gigabytes first. */
        int64_t bytes = dims[0] * dims[1] * dims[2], cap = 0, done = 0;
        unsigned char chunk[1 << 16];
        while (rc == 0 && done < bytes) {
            int64_t n = bytes - done < (int64_t)sizeof chunk ? bytes - done : (int64_t)sizeof chunk;
            if (done + n > cap) {
                int64_t want = cap ? 2 * cap : (int64_t)sizeof chunk;
                want = want > bytes ? bytes : want;
                float *bigger = realloc(ds->x, (size_t)want * sizeof(float));
                if (!bigger) {
                    rc = kp_rt_error(err, KARP_ENOMEM, "%s: out of memory for %lld images", path,
                                     (long long)dims[0]);
                    break;
                }
                ds->x = bigger;
                cap = want;
            }
            rc = read_part(&f, chunk, n, bytes, "pixels", err);
            for (int64_t i = 0; rc == 0 && i < n; i++)
                ds->x[done + i] = chunk[i] / 255.0f;
            done += n;
        }
        if (rc == 0) {
            ds->count = dims[0];
            ds->rank = 3;
            ds->shape[0] = 1;
            ds->shape[1] = dims[1];
            ds->shape[2] = dims[2];
            ds->sample_size = dims[1] * dims[2];
        }
    }
    idx_close(&f);
    return rc;
}

static int load_labels(const char *path, KpDataset *ds, karp_error *err)
{
    IdxFile f = {0};
    int64_t count;
    int rc = idx_open(&f, path, 1, &count, err);
    unsigned char *raw = NULL;
    if (rc == 0 && count != ds->count)
        rc = kp_rt_error(err, KARP_EFORMAT, "%s: byte 4: %lld labels for %lld images", path,
                         (long long)count, (long long)ds->count);
    if (rc == 0) {
        raw = malloc((size_t)count);
        ds->labels = malloc((size_t)count * sizeof(int32_t));
        if (!raw || !ds->labels)
            rc = kp_rt_error(err, KARP_ENOMEM, "%s: out of memory", path);
        else
            rc = read_exact(&f, raw, count, "labels", err);
    }
    if (rc == 0) {
        ds->nclasses = 0;
        for (int64_t i = 0; i < count; i++) {
            ds->labels[i] = raw[i];
            if (raw[i] + 1 > ds->nclasses)
                ds->nclasses = raw[i] + 1;
        }
    }
    free(raw);
    idx_close(&f);
    return rc;
}

int kp_data_load_idx(const char *images, const char *labels, KpDataset *ds, karp_error *err)
{
    if (!images || !labels || !ds)
        return kp_rt_error(err, KARP_EINVAL, "kp_data_load_idx: NULL argument");
    memset(ds, 0, sizeof *ds);
    int rc = load_images(images, ds, err);
    if (rc == 0)
        rc = load_labels(labels, ds, err);
    if (rc)
        kp_data_free(ds);
    return rc;
}

int kp_data_idx_paths(const char *spec, const char *split, char *images, char *labels, size_t cap,
                      karp_error *err)
{
    const char *dir = NULL;
    if (strcmp(spec, "fashion-mnist") == 0)
        dir = FASHION_MNIST_DIR;
    else if (strncmp(spec, "mnist:", 6) == 0)
        dir = spec + 6;
    else if (strncmp(spec, "fashion-mnist:", 14) == 0)
        dir = spec + 14;
    else
        return kp_rt_error(err, KARP_EINVAL,
                           "--data %s: expected fashion-mnist, fashion-mnist:DIR or mnist:DIR", spec);
    /* Prefer the gzip'ed files, as shipped; fall back to unpacked ones. */
    const char *suffix[] = {"-ubyte.gz", "-ubyte"};
    for (int i = 0; i < 2; i++) {
        snprintf(images, cap, "%s/%s-images-idx3%s", dir, split, suffix[i]);
        snprintf(labels, cap, "%s/%s-labels-idx1%s", dir, split, suffix[i]);
        FILE *f = fopen(images, "rb");
        if (f) {
            fclose(f);
            return 0;
        }
    }
    snprintf(images, cap, "%s/%s-images-idx3-ubyte.gz", dir, split);
    return kp_rt_error(err, KARP_EIO, "--data %s: cannot find %s (is dataset-fashion-mnist installed?)",
                       spec, images);
}

void kp_data_free(KpDataset *ds)
{
    free(ds->x);
    free(ds->labels);
    free(ds->targets);
    ds->x = NULL;
    ds->labels = NULL;
    ds->targets = NULL;
    ds->count = 0;
}
