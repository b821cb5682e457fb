/*
 * loader.c — karp_open: a model.so written by `karpc -o`, loaded with
 * dlopen and checked before any of its code runs.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static void release_dl(void *handle)
{
    dlclose(handle);
}

karp_model *karp_open(const char *path, karp_error *err)
{
    if (!path) {
        kp_rt_error(err, KARP_EINVAL, "karp_open: path is NULL");
        return NULL;
    }
    /* A bare name would make dlopen search the library path; the caller
     * means the file in the current directory. */
    size_t len = strlen(path);
    char *dlpath = malloc(len + 3);
    if (!dlpath) {
        kp_rt_error(err, KARP_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    strcpy(dlpath, strchr(path, '/') ? "" : "./");
    strcat(dlpath, path);

    void *handle = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        if (!why)
            why = "dlopen failed";
        /* glibc starts the text with the name it was given; we start
         * every message with the caller's path already. */
        size_t dl = strlen(dlpath);
        if (strncmp(why, dlpath, dl) == 0 && strncmp(why + dl, ": ", 2) == 0)
            why += dl + 2;
        kp_rt_error(err, KARP_EIO, "%s: %s", path, why);
        free(dlpath);
        return NULL;
    }
    free(dlpath);

    dlerror();
    const KarpModelDesc *desc = dlsym(handle, KARP_DESCRIPTOR_SYMBOL);
    if (!desc) {
        kp_rt_error(err, KARP_EFORMAT, "%s: not a karpc model (no %s symbol)", path,
                    KARP_DESCRIPTOR_SYMBOL);
        dlclose(handle);
        return NULL;
    }
    karp_model *m = kp_rt_model_new_named(desc, path, handle, release_dl, err);
    if (m)
        m->dl = handle; /* informational: release_dl closes it */
    return m;
}
