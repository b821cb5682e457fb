/*
 * cli.h — the subcommands of the karpc command.  Each returns the exit
 * status: 0, 1 for a user's mistake (already reported on stderr), 2 for a
 * usage error.
 */
#ifndef KP_CLI_H
#define KP_CLI_H

int kp_cmd_compile(int argc, char **argv);
int kp_cmd_eval(int argc, char **argv);

/* "karpc: " + message on stderr; returns 1. */
int kp_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a whole decimal integer in [lo, hi] for option opt; -1 on error
 * (reported). */
int kp_cli_int(const char *opt, const char *s, long lo, long hi, long *out);
/* Seconds on a monotonic clock. */
double kp_cli_now(void);

#endif
