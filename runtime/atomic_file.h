/*
 * atomic_file.h — every file karpc and libkarprt write (checkpoints,
 * model.so, the --header, the --log CSV, the --plot SVG) is written
 * through this: a temporary file "<path>.tmp.<pid>" in the target's own
 * directory, fsync'ed, renamed over the target, and the directory
 * fsync'ed.  A reader, a crash or a kill -9 at any moment sees the old file
 * or the new one, never a mix; on failure the temporary file is removed and
 * the target is untouched.
 *
 * A writer killed between create and rename leaves its "<path>.tmp.<pid>":
 * the next kp_atomic_begin on the same path removes those whose pid is no
 * longer a running process (a live pid's file, even a reused pid's, is left
 * alone: harmless, and never read by karpc).
 *
 * Internal to karpc (the runtime exports it for the tools and the backend).
 */
#ifndef KP_RT_ATOMIC_FILE_H
#define KP_RT_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct KpAtomic {
    char *path;             /* the target (a copy) */
    char *tmp;              /* "<path>.tmp.<pid>" */
    int fd;                 /* open on tmp, or -1 once closed */
    FILE *f;                /* kp_atomic_begin_stdio: the stream on fd */
    const char *step;       /* after a failure: "create", "write", "fsync", "close", "rename" */
} KpAtomic;

/* Create the temporary file (O_EXCL, after removing dead writers' stale
 * ones); 0, or an errno value (a->step = "create") with nothing left. */
int kp_atomic_begin(KpAtomic *a, const char *path);
/* The same, with a->f a stdio stream to write to. */
int kp_atomic_begin_stdio(KpAtomic *a, const char *path);
/* Flush, fsync, close, rename over the target, fsync the directory.
 * failed != 0 (the caller's writes went wrong, errno value) aborts
 * instead.  0, or an errno value with a->step saying which step failed;
 * either way the temporary file is gone and a is released. */
int kp_atomic_commit(KpAtomic *a, int failed);
/* Give up: close and remove the temporary file, release a. */
void kp_atomic_abort(KpAtomic *a);
/* Remove "<path>.tmp.<pid>" files of writers no longer running; how many. */
int kp_atomic_clean_stale(const char *path);

#endif
