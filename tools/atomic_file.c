/*
 * A file replaced whole or not at all (runtime/atomic_file.h): written
 * under a temporary name in the same directory, fsync'ed, then renamed
 * over the target.  A reader (a browser reloading loss.svg, a script
 * tailing log.csv) never sees half a file, and Ctrl-C or kill -9 in the
 * middle leaves the previous version.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int kp_cli_atomic_open(KpAtomicFile *af, const char *path)
{
    af->f = NULL;
    int err = kp_atomic_begin_stdio(&af->a, path);
    if (err)
        return kp_cli_fail("%s: cannot write: %s", path, strerror(err));
    af->f = af->a.f;
    return 0;
}

int kp_cli_atomic_commit(KpAtomicFile *af)
{
    char *path = strdup(af->a.path);
    int err = kp_atomic_commit(&af->a, 0);
    af->f = NULL;
    if (err)
        kp_cli_fail("%s: cannot write: %s", path ? path : "?", strerror(err));
    free(path);
    return err ? -1 : 0;
}
