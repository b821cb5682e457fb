/*
 * link.c — model.so: the object linked with the static runtime by the
 * system C compiler,
 *     cc -shared -o <so>.tmp.<pid> <obj> libkarprt.a -fopenmp -lm -lcjson -ldl
 *        -Wl,--exclude-libs,ALL
 * spawned without a shell, its output captured for the diagnostic, then
 * fsync'ed and renamed over <so> (runtime/atomic_file.h): a model.so is
 * replaced whole or not at all.
 * --exclude-libs keeps the runtime's symbols out of the .so's exports, so
 * a host linking libkarprt.so and loading several models sees one
 * karp_model_v1 per .so and no clashes.
 */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../runtime/atomic_file.h"
#include "backend.h"

extern char **environ;

#ifndef KARP_INSTALL_RUNTIME_LIB
#define KARP_INSTALL_RUNTIME_LIB "/usr/local/lib/libkarprt.a"
#endif
#ifndef KARP_BUILD_RUNTIME_LIB
#define KARP_BUILD_RUNTIME_LIB ""
#endif

static int readable(const char *p)
{
    return p && *p && access(p, R_OK) == 0;
}

/* The runtime archive: next to the running program (installed layout),
 * then the install prefix, then the build tree. */
static int find_runtime(const char *given, char *out, size_t cap, KpDiag *d)
{
    if (given) {
        if (!readable(given))
            return kp_error(d, "%s: cannot read the runtime library: %s", given, strerror(errno));
        snprintf(out, cap, "%s", given);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        /* the multiarch directory of the install libdir, if any ("x86_64-linux-gnu") */
        char libdir[PATH_MAX];
        snprintf(libdir, sizeof libdir, "%s", KARP_INSTALL_RUNTIME_LIB);
        char *last = strrchr(libdir, '/');
        if (last)
            *last = '\0';
        const char *sub = strrchr(libdir, '/');
        sub = sub ? sub + 1 : libdir;
        int n = snprintf(out, cap, "%s/../lib/libkarprt.a", exe);
        if (n > 0 && (size_t)n < cap && readable(out))
            return 0;
        if (strcmp(sub, "lib") != 0) {
            n = snprintf(out, cap, "%s/../lib/%s/libkarprt.a", exe, sub);
            if (n > 0 && (size_t)n < cap && readable(out))
                return 0;
        }
    }
    /* The build tree before the install prefix: a karpc run from its build
     * directory must not pick up an older installed runtime. */
    const char *fixed[] = {KARP_BUILD_RUNTIME_LIB, KARP_INSTALL_RUNTIME_LIB};
    for (int i = 0; i < 2; i++)
        if (readable(fixed[i])) {
            snprintf(out, cap, "%s", fixed[i]);
            return 0;
        }
    return kp_error(d, "cannot find libkarprt.a (looked next to the program, in %s and %s)",
                    KARP_INSTALL_RUNTIME_LIB, KARP_BUILD_RUNTIME_LIB);
}

/* Run argv; its stdout and stderr into log (truncated to cap). */
static int run(char *const argv[], char *log, size_t cap, int *status)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        errno = rc;
        return -1;
    }
    size_t used = 0;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n && used + 1 < cap; i++)
            log[used++] = buf[i];
    }
    log[used] = '\0';
    close(fds[0]);
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

/* The captured output as one line: newlines become "; ". */
static void one_line(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
        s[--len] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

int kp_link_shared(const char *const *objs, int nobjs, const char *so_path,
                   const char *runtime_lib, KpDiag *d)
{
    enum { MAXOBJ = KP_LLVM_MAX_PARTS };
    if (nobjs < 1 || nobjs > MAXOBJ)
        return kp_error(d, "internal error: %d objects to link", nobjs);
    char lib[PATH_MAX];
    if (find_runtime(runtime_lib, lib, sizeof lib, d) < 0)
        return -1;
    KpAtomic af;
    int err = kp_atomic_begin(&af, so_path);
    if (err)
        return kp_error(d, "%s: cannot write: %s", so_path, strerror(err));
    /* cc writes the file itself: only its name is ours. */
    close(af.fd);
    af.fd = -1;
    char *argv[MAXOBJ + 16] = {"cc", "-shared", "-o", af.tmp};
    int argc = 4;
    for (int i = 0; i < nobjs; i++)
        argv[argc++] = (char *)objs[i];
    const char *rest[] = {lib, "-fopenmp", "-lm", "-lcjson", "-ldl", "-Wl,--exclude-libs,ALL", NULL};
    for (int i = 0; rest[i]; i++)
        argv[argc++] = (char *)rest[i];
    argv[argc] = NULL;
    char log[768];
    int status = 0;
    if (run(argv, log, sizeof log, &status) < 0) {
        int e = errno;
        kp_atomic_abort(&af);
        return kp_error(d, "cannot run cc: %s", strerror(e));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        kp_atomic_abort(&af);
        one_line(log);
        return kp_error(d, "%s: linking failed: %s", so_path, log[0] ? log : "cc failed");
    }
    err = kp_atomic_commit(&af, 0);
    if (err)
        return kp_error(d, "%s: cannot write: %s", so_path, strerror(err));
    return 0;
}
