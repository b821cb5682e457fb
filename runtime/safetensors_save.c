/*
 * safetensors_save.c — karp_save in the safetensors format:
 *
 *   [8 bytes: N, little-endian u64][N bytes: JSON header][data]
 *
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (byte offsets into the data area), plus "__metadata__"
 * (string pairs); it is padded with spaces to a multiple of 8.  The data
 * are raw little-endian values, the tensors of checkpoint.h contiguous in
 * its order.  The names are PyTorch's (state_dict, optimizer state), so
 * the files load with safetensors.torch.load_file().
 *
 * "__metadata__" also carries the integrity keys of checkpoint.h
 * ("karp.signature", "karp.crc32c.<tensor>"): plain string pairs, so any
 * safetensors reader still reads the file.
 *
 * The file is written through atomic_file.h ("<path>.tmp.<pid>", fsync,
 * rename): the old file is replaced whole or not at all.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "checkpoint.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors_save.c writes the slabs as they are: port it (byte swaps) for big-endian hosts"
#endif

static cJSON *shape_json(const int64_t *shape, int rank)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < rank; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[i]));
    return a;
}

static const void *tensor_data(const karp_model *m, const KpCkptTensor *t);

/* The caller's pairs, then karpc's own: the format, the model's name, its
 * signature and a CRC-32C per tensor (checkpoint.h). */
static int add_metadata(cJSON *root, const karp_model *m, const KpCkpt *c)
{
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt") ||
        !cJSON_AddStringToObject(meta, "karp_model", m->desc->name))
        return -1;
    for (int i = 0; i < m->meta.count; i++) {
        const char *k = m->meta.keys[i];
        /* A loaded file's own pairs are rewritten above. */
        if (strcmp(k, "format") == 0 || strcmp(k, "karp_model") == 0 ||
            strncmp(k, KP_CKPT_RESERVED_PREFIX, strlen(KP_CKPT_RESERVED_PREFIX)) == 0)
            continue;
        if (!cJSON_AddStringToObject(meta, k, m->meta.values[i]))
            return -1;
    }
    char sig[17];
    kp_rt_ckpt_signature(m->desc, sig);
    if (!cJSON_AddStringToObject(meta, KP_CKPT_SIGNATURE_KEY, sig))
        return -1;
    for (int i = 0; i < c->count; i++) {
        const KpCkptTensor *t = &c->t[i];
        char key[512], val[16];
        if ((size_t)snprintf(key, sizeof key, "%s%s", KP_CKPT_CRC_PREFIX, t->name) >= sizeof key)
            return -1;
        snprintf(val, sizeof val, "%08x",
                 (unsigned)kp_rt_crc32c(0, tensor_data(m, t), (size_t)t->bytes));
        if (!cJSON_AddStringToObject(meta, key, val))
            return -1;
    }
    return 0;
}

/* The padded header text (malloc'ed, *len bytes, no NUL counted), or NULL. */
static char *make_header(const karp_model *m, const KpCkpt *c, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    int64_t pos = 0;
    for (int i = 0; root && i < c->count; i++) {
        const KpCkptTensor *ct = &c->t[i];
        cJSON *t = cJSON_AddObjectToObject(root, ct->name);
        cJSON *offs = cJSON_CreateArray();
        if (!t || !offs) {
            cJSON_Delete(offs);
            goto fail;
        }
        cJSON_AddStringToObject(t, "dtype", ct->group == KP_CKPT_STEP ? "I64" : "F32");
        cJSON_AddItemToObject(t, "shape", shape_json(ct->shape, ct->rank));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        pos += ct->bytes;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        cJSON_AddItemToObject(t, "data_offsets", offs);
    }
    if (!root || add_metadata(root, m, c) != 0)
        goto fail;
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return NULL;
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    return out;
fail:
    cJSON_Delete(root);
    return NULL;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const void *tensor_data(const karp_model *m, const KpCkptTensor *t)
{
    switch (t->group) {
    case KP_CKPT_PARAM: return m->params + t->offset;
    case KP_CKPT_OPT: return m->opt + t->offset;
    default: return &m->step;
    }
}

/* Header and data to fd; 0, or -1 with errno. */
static int write_file(int fd, const karp_model *m, const KpCkpt *c, const char *header, size_t hlen)
{
    unsigned char lenbytes[8];
    for (int i = 0; i < 8; i++)
        lenbytes[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (write_all(fd, lenbytes, 8) || write_all(fd, header, hlen))
        return -1;
    for (int i = 0; i < c->count; i++)
        if (write_all(fd, tensor_data(m, &c->t[i]), (size_t)c->t[i].bytes))
            return -1;
    return 0;
}

int karp_save(const karp_model *m, const char *path)
{
    if (!m || !path)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_save: %s is NULL", m ? "path" : "model");
    KpCkpt c;
    if (kp_rt_ckpt_build(m->desc, &c) != 0)
        return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory building the header", path);
    size_t hlen = 0;
    char *header = make_header(m, &c, &hlen);
    if (!header) {
        kp_rt_ckpt_free(&c);
        return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory building the header", path);
    }
    KpAtomic af;
    int rc = 0, err = kp_atomic_begin(&af, path);
    if (err) {
        rc = kp_rt_error(NULL, KARP_EIO, "%s: cannot create temporary file '%s.tmp.%ld': %s",
                         path, path, (long)getpid(), strerror(err));
    } else {
        int bad = write_file(af.fd, m, &c, header, hlen) != 0 ? (errno ? errno : EIO) : 0;
        err = kp_atomic_commit(&af, bad);
        if (err)
            rc = kp_rt_error(NULL, KARP_EIO,
                             "%s: %s failed: %s (the old file, if any, is unchanged)", path,
                             af.step, strerror(err));
    }
    free(header);
    kp_rt_ckpt_free(&c);
    return rc;
}
