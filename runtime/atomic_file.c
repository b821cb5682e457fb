/*
 * atomic_file.c — write a file whole or not at all (atomic_file.h).
 */
#define _GNU_SOURCE
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* path split into its directory ("." when none) and base name. */
static char *dir_of(const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

int kp_atomic_clean_stale(const char *path)
{
    const char *base;
    char *dir = dir_of(path, &base);
    DIR *d = dir ? opendir(dir) : NULL;
    int removed = 0;
    size_t blen = strlen(base);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) != 0 || strncmp(n + blen, ".tmp.", 5) != 0)
            continue;
        const char *digits = n + blen + 5;
        char *end;
        long pid = strtol(digits, &end, 10);
        if (!*digits || *end || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (unlinkat(dirfd(d), n, 0) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    free(dir);
    return removed;
}

static void release(KpAtomic *a)
{
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->fd = -1;
    a->f = NULL;
}

int kp_atomic_begin(KpAtomic *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->fd = -1;
    a->step = "create";
    size_t n = strlen(path) + 32;
    a->path = strdup(path);
    a->tmp = malloc(n);
    if (!a->path || !a->tmp) {
        release(a);
        return ENOMEM;
    }
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    kp_atomic_clean_stale(path);
    unlink(a->tmp); /* our own, from an earlier failure */
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (a->fd < 0) {
        int e = errno;
        release(a);
        return e;
    }
    return 0;
}

int kp_atomic_begin_stdio(KpAtomic *a, const char *path)
{
    int rc = kp_atomic_begin(a, path);
    if (rc)
        return rc;
    a->f = fdopen(a->fd, "w");
    if (!a->f) {
        int e = errno;
        kp_atomic_abort(a);
        a->step = "create";
        return e;
    }
    return 0;
}

void kp_atomic_abort(KpAtomic *a)
{
    if (a->f)
        fclose(a->f);
    else if (a->fd >= 0)
        close(a->fd);
    if (a->tmp)
        unlink(a->tmp);
    release(a);
}

/* Make the rename durable; best effort, the file itself is already safe. */
static void sync_dir(const char *path)
{
    const char *base;
    char *dir = dir_of(path, &base);
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int kp_atomic_commit(KpAtomic *a, int failed)
{
    int err = failed;
    a->step = "write";
    if (!err && a->f && (fflush(a->f) != 0 || ferror(a->f)))
        err = errno ? errno : EIO;
    if (!err && a->fd < 0) /* written by another program (the linker) */
        a->fd = open(a->tmp, O_RDONLY | O_CLOEXEC);
    if (!err && a->fd < 0)
        err = errno;
    if (!err && fsync(a->fd) != 0) {
        a->step = "fsync";
        err = errno;
    }
    int c = a->f ? fclose(a->f) : a->fd >= 0 ? close(a->fd) : 0;
    a->f = NULL;
    a->fd = -1;
    if (!err && c != 0) {
        a->step = "close";
        err = errno;
    }
    if (!err && rename(a->tmp, a->path) != 0) {
        a->step = "rename";
        err = errno;
    }
    if (err)
        unlink(a->tmp);
    else
        sync_dir(a->path);
    release(a);
    return err;
}
