/*
 * A file replaced whole or not at all: written under a temporary name in
 * the same directory, then renamed over the target.  A reader (a browser
 * reloading loss.svg, a script tailing log.csv) never sees half a file, and
 * Ctrl-C in the middle leaves the previous version.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int kp_cli_atomic_open(KpAtomicFile *af, const char *path)
{
    size_t n = strlen(path) + 32;
    af->path = path;
    af->f = NULL;
    af->tmp = malloc(n);
    if (!af->tmp)
        return kp_cli_fail("out of memory");
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "w");
    if (!af->f) {
        kp_cli_fail("%s: cannot write: %s", path, strerror(errno));
        free(af->tmp);
        af->tmp = NULL;
        return -1;
    }
    return 0;
}

int kp_cli_atomic_commit(KpAtomicFile *af)
{
    int bad = ferror(af->f);
    int err = bad ? EIO : 0;
    if (fclose(af->f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    af->f = NULL;
    if (!bad && rename(af->tmp, af->path) != 0) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        unlink(af->tmp);
        kp_cli_fail("%s: cannot write: %s", af->path, strerror(err));
    }
    free(af->tmp);
    af->tmp = NULL;
    return bad ? -1 : 0;
}
