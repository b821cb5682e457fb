/*
 * safetensors.c — karp_save / karp_load in the safetensors format:
 *
 *   [8 bytes: N, little-endian u64][N bytes: JSON header][data]
 *
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (byte offsets into the data area), plus "__metadata__";
 * it is padded with spaces to a multiple of 8.  The data are raw
 * little-endian floats, our tensors contiguous in the model's parameter
 * order.  The names are the PyTorch state_dict names, so the files load
 * with safetensors.torch.load_file() into a torch model.
 *
 * Saving writes "<path>.tmp.<pid>" and renames it over path: the old file
 * is replaced whole or not at all.  Loading checks the whole header
 * against the model and reads into a scratch buffer before the slab is
 * touched: on any error the parameters are unchanged.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes the slab as is: port it (byte swaps) for big-endian hosts"
#endif

#define MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define MAX_FILE_RANK 8

/* ---- saving ---------------------------------------------------------- */

static cJSON *shape_json(const int64_t *shape, int rank)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < rank; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[i]));
    return a;
}

/* The padded header text (malloc'ed, *len bytes, no NUL counted), or NULL. */
static char *make_header(const KarpModelDesc *d, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    int64_t pos = 0;
    for (uint32_t i = 0; root && i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        cJSON *t = cJSON_AddObjectToObject(root, p->name);
        cJSON *offs = cJSON_CreateArray();
        if (!t || !offs) {
            cJSON_Delete(offs);
            goto fail;
        }
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON_AddItemToObject(t, "shape", shape_json(p->shape, p->rank));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        pos += p->size * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        cJSON_AddItemToObject(t, "data_offsets", offs);
    }
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt") ||
        !cJSON_AddStringToObject(meta, "karp_model", d->name))
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

/* Make the rename durable; best effort, the file itself is already safe. */
static void sync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *name = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        name = dir;
    }
    int fd = open(name, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int karp_save(const karp_model *m, const char *path)
{
    if (!m || !path)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_save: %s is NULL", m ? "path" : "model");
    const KarpModelDesc *d = m->desc;
    size_t hlen = 0;
    char *header = make_header(d, &hlen);
    if (!header)
        return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory building the header", path);

    size_t tmplen = strlen(path) + 32;
    char *tmp = malloc(tmplen);
    if (!tmp) {
        free(header);
        return kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tmplen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        int rc = kp_rt_error(NULL, KARP_EIO, "%s: cannot create temporary file '%s': %s", path, tmp,
                             strerror(errno));
        free(header);
        free(tmp);
        return rc;
    }

    const char *step = "write";
    unsigned char lenbytes[8];
    for (int i = 0; i < 8; i++)
        lenbytes[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int bad = write_all(fd, lenbytes, 8) || write_all(fd, header, hlen);
    for (uint32_t i = 0; !bad && i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        bad = write_all(fd, m->params + p->offset, (size_t)p->size * sizeof(float));
    }
    if (!bad && fsync(fd) != 0) {
        step = "fsync";
        bad = 1;
    }
    int saved_errno = errno;
    if (close(fd) != 0 && !bad) {
        step = "close";
        bad = 1;
        saved_errno = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        step = "rename";
        bad = 1;
        saved_errno = errno;
    }
    int rc = 0;
    if (bad) {
        unlink(tmp);
        rc = kp_rt_error(NULL, KARP_EIO, "%s: %s failed: %s (the old file, if any, is unchanged)",
                         path, step, strerror(saved_errno));
    } else {
        sync_parent_dir(path);
    }
    free(header);
    free(tmp);
    return rc;
}

/* ---- loading --------------------------------------------------------- */

typedef struct Entry {
    const char *name;
    int rank;
    int64_t shape[MAX_FILE_RANK];
    uint64_t begin, end;       /* in the data area */
    int param;                 /* index of the model's parameter */
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
    if (strcmp(dtype->valuestring, "F32") != 0)
        return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has dtype %s, expected F32", path,
                           e->name, dtype->valuestring);
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
    if (end - b != 4 * numel) {
        char s[128];
        format_shape(s, sizeof s, e->shape, rank);
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: tensor '%s' has %lld bytes of data, its shape %s needs %lld", path,
                           e->name, (long long)(end - b), s, (long long)(4 * numel));
    }
    if ((uint64_t)end > data_len)
        return kp_rt_error(NULL, KARP_EFORMAT,
                           "%s: truncated: data ends at byte %llu, file has %llu bytes", path,
                           (unsigned long long)(data_start + (uint64_t)end),
                           (unsigned long long)file_size);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)end;
    return 0;
}

static int same_shape(const Entry *e, const KarpParamDesc *p)
{
    if (e->rank != p->rank)
        return 0;
    for (int i = 0; i < e->rank; i++)
        if (e->shape[i] != p->shape[i])
            return 0;
    return 1;
}

/* Match the header's entries to the model's parameters, both ways. */
static int match_entries(const char *path, const KarpModelDesc *d, Entry *es, int n)
{
    for (int i = 0; i < n; i++) {
        es[i].param = -1;
        for (uint32_t k = 0; k < d->nparams; k++)
            if (strcmp(es[i].name, d->params[k].name) == 0)
                es[i].param = (int)k;
        if (es[i].param < 0)
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: unexpected tensor '%s'", path, es[i].name);
        for (int j = 0; j < i; j++)
            if (es[j].param == es[i].param)
                return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' appears twice", path,
                                   es[i].name);
        /* A zero-length tensor overlaps nothing. */
        for (int j = 0; j < i; j++)
            if (es[i].begin < es[j].end && es[j].begin < es[i].end)
                return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensors '%s' and '%s' overlap", path,
                                   es[j].name, es[i].name);
    }
    for (uint32_t k = 0; k < d->nparams; k++) {
        const KarpParamDesc *p = &d->params[k];
        const Entry *e = NULL;
        for (int i = 0; i < n && !e; i++)
            if (es[i].param == (int)k)
                e = &es[i];
        if (!e)
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: missing tensor '%s'", path, p->name);
        if (!same_shape(e, p)) {
            char got[128], want[128];
            format_shape(got, sizeof got, e->shape, e->rank);
            format_shape(want, sizeof want, p->shape, p->rank);
            return kp_rt_error(NULL, KARP_EFORMAT, "%s: tensor '%s' has shape %s, the model expects %s",
                               path, p->name, got, want);
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

/* With the file open: check the header, read every tensor into scratch,
 * then copy into the slab. */
static int load_fd(karp_model *m, const char *path, int fd)
{
    const KarpModelDesc *d = m->desc;
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
    Entry *es = NULL;
    float *scratch = NULL;
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
    int n = 0, cap = cJSON_GetArraySize(root);
    es = calloc((size_t)cap + 1, sizeof *es);
    scratch = malloc(((size_t)d->param_floats + 1) * sizeof(float));
    if (!es || !scratch) {
        rc = kp_rt_error(NULL, KARP_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (const cJSON *t = root->child; t; t = t->next) {
        if (t->string && strcmp(t->string, "__metadata__") == 0)
            continue;
        rc = parse_entry(path, t, 8 + hlen, size - 8 - hlen, size, &es[n]);
        if (rc)
            goto out;
        n++;
    }
    rc = match_entries(path, d, es, n);
    if (rc)
        goto out;
    for (int i = 0; i < n; i++) {
        const KarpParamDesc *p = &d->params[es[i].param];
        if (read_at(fd, scratch + p->offset, (size_t)(es[i].end - es[i].begin),
                    8 + hlen + es[i].begin) != 0) {
            rc = io_error(path, "read failed");
            goto out;
        }
    }
    for (uint32_t k = 0; k < d->nparams; k++) {
        const KarpParamDesc *p = &d->params[k];
        memcpy(m->params + p->offset, scratch + p->offset, (size_t)p->size * sizeof(float));
    }
out:
    free(scratch);
    free(es);
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
