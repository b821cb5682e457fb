/*
 * cli.h — the subcommands of the karpc command.  Each returns the exit
 * status: 0, 1 for a user's mistake (already reported on stderr), 2 for a
 * usage error.
 */
#ifndef KP_CLI_H
#define KP_CLI_H

#include <stdio.h>

#include "../runtime/atomic_file.h"

int kp_cmd_compile(int argc, char **argv);
int kp_cmd_eval(int argc, char **argv);
int kp_cmd_train(int argc, char **argv);
int kp_cmd_bench(int argc, char **argv);

/* "karpc: " + message on stderr; returns 1. */
int kp_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a whole decimal integer in [lo, hi] for option opt; -1 on error
 * (reported). */
int kp_cli_int(const char *opt, const char *s, long lo, long hi, long *out);
/* The value of option name at argv[*i], given as "--name=v" or "--name v"
 * (then *i advances): NULL if argv[*i] is another option; *missing is set
 * (and reported) when it is this option without a value. */
const char *kp_cli_take(int argc, char **argv, int *i, const char *name, int *missing);

/* Seconds on a monotonic clock. */
double kp_cli_now(void);

/* A file replaced whole or not at all, through runtime/atomic_file.h:
 * kp_cli_atomic_open creates "<path>.tmp.<pid>" (f writes to it),
 * kp_cli_atomic_commit flushes, fsyncs and renames it over path (or removes
 * it on a write error).  Both return 0, or -1 with the error reported. */
typedef struct KpAtomicFile {
    FILE *f;
    KpAtomic a;
} KpAtomicFile;
int kp_cli_atomic_open(KpAtomicFile *af, const char *path);
int kp_cli_atomic_commit(KpAtomicFile *af);

#endif
