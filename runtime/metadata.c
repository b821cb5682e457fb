/*
 * metadata.c — the string pairs a checkpoint carries in "__metadata__":
 * set by the caller for the next karp_save, replaced by each karp_load.
 * A handful of pairs at most, so a linear array does.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int find(const KpMeta *meta, const char *key)
{
    for (int i = 0; i < meta->count; i++)
        if (strcmp(meta->keys[i], key) == 0)
            return i;
    return -1;
}

int kp_rt_meta_set(KpMeta *meta, const char *key, const char *value)
{
    int i = find(meta, key);
    if (!value) {
        if (i >= 0) {
            free(meta->keys[i]);
            free(meta->values[i]);
            meta->count--;
            memmove(meta->keys + i, meta->keys + i + 1, (size_t)(meta->count - i) * sizeof(char *));
            memmove(meta->values + i, meta->values + i + 1,
                    (size_t)(meta->count - i) * sizeof(char *));
        }
        return 0;
    }
    char *v = strdup(value);
    if (!v)
        return KARP_ENOMEM;
    if (i >= 0) {
        free(meta->values[i]);
        meta->values[i] = v;
        return 0;
    }
    char *k = strdup(key);
    char **keys = realloc(meta->keys, (size_t)(meta->count + 1) * sizeof(char *));
    if (keys)
        meta->keys = keys;
    char **values = keys ? realloc(meta->values, (size_t)(meta->count + 1) * sizeof(char *)) : NULL;
    if (values)
        meta->values = values;
    if (!k || !keys || !values) {
        free(k);
        free(v);
        return KARP_ENOMEM;
    }
    meta->keys[meta->count] = k;
    meta->values[meta->count] = v;
    meta->count++;
    return 0;
}

const char *kp_rt_meta_get(const KpMeta *meta, const char *key)
{
    int i = find(meta, key);
    return i >= 0 ? meta->values[i] : NULL;
}

void kp_rt_meta_free(KpMeta *meta)
{
    for (int i = 0; i < meta->count; i++) {
        free(meta->keys[i]);
        free(meta->values[i]);
    }
    free(meta->keys);
    free(meta->values);
    memset(meta, 0, sizeof *meta);
}

int karp_set_metadata(karp_model *m, const char *key, const char *value)
{
    if (!m || !key)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_set_metadata: %s is NULL",
                           m ? "key" : "model");
    if (strcmp(key, "format") == 0 || strcmp(key, "karp_model") == 0 ||
        strncmp(key, "karp.", 5) == 0)
        return kp_rt_error(NULL, KARP_EINVAL,
                           "karp_set_metadata: key '%s' is reserved (karp_save writes it)", key);
    if (kp_rt_meta_set(&m->meta, key, value) != 0)
        return kp_rt_error(NULL, KARP_ENOMEM, "karp_set_metadata: out of memory");
    return 0;
}

const char *karp_get_metadata(const karp_model *m, const char *key)
{
    if (!m || !key) {
        kp_rt_error(NULL, KARP_EINVAL, "karp_get_metadata: %s is NULL", m ? "key" : "model");
        return NULL;
    }
    return kp_rt_meta_get(&m->meta, key);
}
