/*
 * safetensors_load.c — karp_load: a safetensors file (see
 * safetensors_save.c for the layout) checked against the model's
 * checkpoint table (checkpoint.h), in any order, from any writer.
 *
 * Parameters are required.  Optimizer state is all or nothing: either
 * every optimizer tensor (and "optimizer.step") is there, or none is and
 * the optimizer starts fresh ("optimizer.step" alone is accepted then).
 * Any other tensor is an error.  The whole header and the metadata are
 * checked and every tensor read into scratch buffers before the model is
 * touched: on any error, nothing changes.
 *
 * A file with karpc's integrity keys (checkpoint.h) is also checked
 * against them: each tensor's bytes against its CRC-32C (a corrupted byte
 * is named by its tensor), then the parameters' signature.  Files without
 * them (PyTorch's safetensors) load as before.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors_load.c reads into the slabs as they are: port it (byte swaps) for big-endian hosts"
#endif

#define MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define MAX_FILE_RANK 8

typedef struct Entry {
    const char *name;
    int rank;
    int64_t shape[MAX_FILE_RANK];
    uint64_t begin, end;       /* in the data area */
    int tensor;                /* index into the checkpoint table */
} Entry;

static void format_shape(char *buf, size_t cap, const int64_t *shape, int rank)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? "," : "",
                                 (long long)shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

/* An integer in [0, 2^53] stored as a JSON number, or -1. */
static int64_t json_uint(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double x = v->valuedouble;
    if (!(x >= 0.0 && x <= 9007199254740992.0) || x != (double)(int64_t)x)
        return -1;
    return (int64_t)x;
}

/* Parse one header entry; the data area is data_len bytes. */
static int parse_entry(const char *path, const cJSON *t, uint64_t data_start, uint64_t data_len,
                       uint64_t file_size, Entry *e)
{
    e->name = t->string;
    if (!cJSON_IsObject(t))
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' is not a JSON object", path,
                           e->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    if (!cJSON_IsString(dtype))
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has no dtype", path, e->name);
    /* Only the step is an integer (and an unknown name fails later). */
    int is_step = strcmp(e->name, KP_CKPT_STEP_NAME) == 0;
    const char *want = is_step ? "I64" : "F32";
    int64_t elem = is_step ? 8 : 4;
    if (strcmp(dtype->valuestring, want) != 0)
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s", path,
                           e->name, dtype->valuestring, want);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    int rank = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
    if (rank < 0 || rank > MAX_FILE_RANK)
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has an invalid shape", path,
                           e->name);
    e->rank = rank;
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        e->shape[i] = json_uint(cJSON_GetArrayItem(shape, i));
        if (e->shape[i] < 0)
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has an invalid shape", path,
                               e->name);
        numel = (e->shape[i] != 0 && numel > ((int64_t)1 << 53) / e->shape[i])
                    ? ((int64_t)1 << 53) : numel * e->shape[i];
    }
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    int64_t b = -1, end = -1;
    if (cJSON_IsArray(offs) && cJSON_GetArraySize(offs) == 2) {
        b = json_uint(cJSON_GetArrayItem(offs, 0));
        end = json_uint(cJSON_GetArrayItem(offs, 1));
    }
    if (b < 0 || end < b)
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has invalid data_offsets", path,
                           e->name);
    if (end - b != elem * numel) {
        char s[128];
        format_shape(s, sizeof s, e->shape, rank);
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: tensor '%s' has %lld bytes of data, its shape %s needs %lld", path,
                           e->name, (long long)(end - b), s, (long long)(elem * numel));
    }
    if ((uint64_t)end > data_len)
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: truncated: tensor '%s' ends at byte %llu, file has %llu bytes",
                           path, e->name, (unsigned long long)(data_start + (uint64_t)end),
                           (unsigned long long)file_size);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)end;
    return 0;
}

static int same_shape(const Entry *e, const KpCkptTensor *t)
{
    if (e->rank != t->rank)
        return 0;
    for (int i = 0; i < e->rank; i++)
        if (e->shape[i] != t->shape[i])
            return 0;
    return 1;
}

/* Match the header's entries to the checkpoint table, both ways; *has_opt
 * receives whether the file carries the optimizer state. */
static int match_entries(const char *path, const karp_model *m, const KpCkpt *c, Entry *es, int n,
                         int *has_opt)
{
    for (int i = 0; i < n; i++) {
        es[i].tensor = -1;
        for (int k = 0; k < c->count; k++)
            if (strcmp(es[i].name, c->t[k].name) == 0)
                es[i].tensor = k;
        if (es[i].tensor < 0 && strncmp(es[i].name, "optimizer.", 10) == 0)
            return kp_rt_error(NULL, KARP_EFORMAT,
                               "%s: unexpected tensor '%s' (model '%s' has %s)", path, es[i].name,
                               m->desc->name,
                               m->desc->apply ? "another optimizer" : "no optimizer");
        if (es[i].tensor < 0)
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: unexpected tensor '%s'", path, es[i].name);
        for (int j = 0; j < i; j++)
            if (es[j].tensor == es[i].tensor)
                return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' appears twice", path,
                                   es[i].name);
        /* A zero-length tensor overlaps nothing. */
        for (int j = 0; j < i; j++)
            if (es[i].begin < es[j].end && es[j].begin < es[i].end)
                return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensors '%s' and '%s' overlap", path,
                                   es[j].name, es[i].name);
    }
    int nopt = 0, has_step = 0;
    for (int i = 0; i < n; i++) {
        nopt += c->t[es[i].tensor].group == KP_CKPT_OPT;
        has_step |= c->t[es[i].tensor].group == KP_CKPT_STEP;
    }
    *has_opt = nopt > 0;
    for (int k = 0; k < c->count; k++) {
        const KpCkptTensor *t = &c->t[k];
        const Entry *e = NULL;
        for (int i = 0; i < n && !e; i++)
            if (es[i].tensor == k)
                e = &es[i];
        if (!e && t->group == KP_CKPT_PARAM)
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: missing tensor '%s'", path, t->name);
        /* The step alone may come with a fresh optimizer (sgd has no
         * slots); slots without the step, or some slots, may not. */
        if (!e && (nopt > 0 || (t->group == KP_CKPT_OPT && has_step)))
            return kp_rt_error(NULL, KARP_EFORMAT,
                               "%s: partial optimizer state: missing tensor '%s'", path, t->name);
        if (e && !same_shape(e, t)) {
            char got[128], want[128];
            format_shape(got, sizeof got, e->shape, e->rank);
            format_shape(want, sizeof want, t->shape, t->rank);
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has shape %s, the model expects %s",
                               path, t->name, got, want);
        }
    }
    return 0;
}

static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = 0; /* the file shrank under us */
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int io_error(const char *path, const char *what)
{
    return kp_rt_error(NULL, KARP_EIO, "%s: %s: %s", path, what,
                       errno ? strerror(errno) : "unexpected end of file");
}

/* "__metadata__" (absent, or an object of strings) into *meta. */
static int parse_metadata(const char *path, const cJSON *root, KpMeta *meta)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (!md)
        return 0;
    if (!cJSON_IsObject(md))
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: __metadata__ is not a JSON object", path);
    for (const cJSON *v = md->child; v; v = v->next) {
        if (!cJSON_IsString(v))
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: metadata '%s' is not a string", path,
                               v->string);
        /* The integrity keys are checked by verify_*, not passed on. */
        if (strncmp(v->string, KP_CKPT_RESERVED_PREFIX, strlen(KP_CKPT_RESERVED_PREFIX)) == 0)
            continue;
        if (kp_rt_meta_set(meta, v->string, v->valuestring) != 0)
            return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory", path);
    }
    return 0;
}

static const char *meta_string(const cJSON *root, const char *key)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The tensor's bytes against its "karp.crc32c.<name>", when the file has
 * one; a file with a signature must have one for every tensor. */
static int verify_crc(const char *path, const cJSON *root, const char *name, const void *data,
                      size_t n)
{
    char key[512];
    if ((size_t)snprintf(key, sizeof key, "%s%s", KP_CKPT_CRC_PREFIX, name) >= sizeof key)
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor name '%s' is too long", path, name);
    const char *want = meta_string(root, key);
    if (!want) {
        if (meta_string(root, KP_CKPT_SIGNATURE_KEY))
            return kp_rt_error(NULL, KARP_EFORMAT,
                               "%s: tensor '%s' has no checksum (metadata '%s')", path, name, key);
        return 0;
    }
    char got[16];
    snprintf(got, sizeof got, "%08x", (unsigned)kp_rt_crc32c(0, data, n));
    if (strcmp(got, want) != 0)
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: tensor '%s' is corrupted: its data have CRC-32C %s, the file "
                           "says %s",
                           path, name, got, want);
    return 0;
}

/* The file's "karp.signature", when it has one, against the model's. */
static int verify_signature(const char *path, const cJSON *root, const karp_model *m)
{
    const char *want = meta_string(root, KP_CKPT_SIGNATURE_KEY);
    if (!want)
        return 0;
    char sig[17];
    kp_rt_ckpt_signature(m->desc, sig);
    if (strcmp(sig, want) == 0)
        return 0;
    const char *from = meta_string(root, "karp_model");
    return kp_rt_error(NULL, KARP_EFORMAT,
                       "%s: signature %s (model '%s') does not match model '%s' (signature %s)",
                       path, want, from ? from : "?", m->desc->name, sig);
}

/* Where the tensor's data go: scratch for params and optimizer state,
 * *step for the step. */
static void *scratch_for(const KpCkptTensor *t, float *sp, float *so, int64_t *step)
{
    switch (t->group) {
    case KP_CKPT_PARAM: return sp + t->offset;
    case KP_CKPT_OPT: return so + t->offset;
    default: return step;
    }
}

/* Check the parsed header against the model, read everything into
 * scratch, and only then change the model. */
static int load_tensors(karp_model *m, const char *path, int fd, const cJSON *root,
                        uint64_t data_start, uint64_t size)
{
    const KarpModelDesc *d = m->desc;
    KpCkpt c;
    KpMeta meta = {0};
    int64_t step = 0;
    int n = 0, has_opt = 0, rc = 0;
    if (kp_rt_ckpt_build(d, &c) != 0)
        return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory", path);
    Entry *es = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *es);
    size_t pf = (size_t)d->param_floats;
    float *sp = malloc((pf + 1) * sizeof(float));
    float *so = calloc((size_t)d->opt_slots * pf + 1, sizeof(float));
    if (!es || !sp || !so) {
        rc = kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (const cJSON *t = root->child; t; t = t->next) {
        if (t->string && strcmp(t->string, "__metadata__") == 0)
            continue;
        rc = parse_entry(path, t, data_start, size - data_start, size, &es[n]);
        if (rc)
            goto out;
        n++;
    }
    rc = match_entries(path, m, &c, es, n, &has_opt);
    if (rc == 0)
        rc = parse_metadata(path, root, &meta);
    for (int i = 0; rc == 0 && i < n; i++) {
        void *dst = scratch_for(&c.t[es[i].tensor], sp, so, &step);
        size_t bytes = (size_t)(es[i].end - es[i].begin);
        if (read_at(fd, dst, bytes, data_start + es[i].begin) != 0)
            rc = io_error(path, "read failed");
        else
            rc = verify_crc(path, root, es[i].name, dst, bytes);
    }
    if (rc == 0)
        rc = verify_signature(path, root, m);
    if (rc == 0 && step < 0)
        rc = kp_rt_error(NULL, KARP_EFORMAT, "%s: %s is %lld, not a count of steps", path,
                         KP_CKPT_STEP_NAME, (long long)step);
    if (rc)
        goto out;

    kp_rt_reset_training(m);
    kp_rt_params_changed(m);
    for (uint32_t k = 0; k < d->nparams; k++) {
        const KarpParamDesc *p = &d->params[k];
        memcpy(m->params + p->offset, sp + p->offset, (size_t)p->size * sizeof(float));
    }
    if (has_opt)
        memcpy(m->opt, so, (size_t)d->opt_slots * pf * sizeof(float));
    m->step = step;
    kp_rt_meta_free(&m->meta);
    m->meta = meta;
    memset(&meta, 0, sizeof meta);
out:
    kp_rt_meta_free(&meta);
    free(so);
    free(sp);
    free(es);
    kp_rt_ckpt_free(&c);
    return rc;
}

/* With the file open: read and parse the header, then load_tensors. */
static int load_fd(karp_model *m, const char *path, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return io_error(path, "cannot stat");
    if (!S_ISREG(st.st_mode))
        return kp_rt_error(NULL, KARP_EIO, "%s: not a regular file", path);
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8)
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: truncated: file has %llu bytes, the header length alone takes 8",
                           path, (unsigned long long)size);
    unsigned char lenbytes[8];
    if (read_at(fd, lenbytes, 8, 0) != 0)
        return io_error(path, "read failed");
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)lenbytes[i] << (8 * i);
    if (hlen > MAX_HEADER)
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: header length %llu is too large (at most %llu bytes)", path,
                           (unsigned long long)hlen, (unsigned long long)MAX_HEADER);
    if (hlen > size - 8)
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: truncated: header ends at byte %llu, file has %llu bytes", path,
                           (unsigned long long)(8 + hlen), (unsigned long long)size);

    char *text = malloc(hlen + 1);
    if (!text)
        return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory reading the header", path);
    if (read_at(fd, text, hlen, 8) != 0) {
        free(text);
        return io_error(path, "read failed");
    }
    text[hlen] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, hlen, &end, 0);
    int rc = 0;
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        rc = kp_rt_error(NULL, KARP_EFORMAT, "%s: header is not valid JSON (near byte %zu)",
                         path, 8 + at);
        goto out;
    }
    while (end && end < text + hlen && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != text + hlen) {
        rc = kp_rt_error(NULL, KARP_EFORMAT, "%s: header has bytes after the JSON object (at byte %zu)",
                         path, 8 + (size_t)(end - text));
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        rc = kp_rt_error(NULL, KARP_EFORMAT, "%s: header is not a JSON object", path);
        goto out;
    }
    rc = load_tensors(m, path, fd, root, 8 + hlen, size);
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

int karp_load(karp_model *m, const char *path)
{
    if (!m || !path)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_load: %s is NULL", m ? "path" : "model");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_error(path, "cannot open");
    int rc = load_fd(m, path, fd);
    close(fd);
    return rc;
}
