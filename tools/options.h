/*
 * options.h — the command line of the commands that run a model (train,
 * eval): one model argument and options from a table, each value given as
 * "--opt v" or "--opt=v", integers range-checked.
 */
#ifndef KP_OPTIONS_H
#define KP_OPTIONS_H

typedef struct KpOption {
    const char *name;       /* "--epochs" */
    const char **str;       /* a string option's destination, or NULL */
    long *num;              /* an integer option's destination, or NULL */
    long lo, hi;            /* its range */
    int *given;             /* may be NULL: set to 1 when the option is given */
} KpOption;

/* Parse argv[1..] of subcommand cmd ("train"); *model receives the one
 * non-option argument.  --data is required.  0, or 1 with the mistake
 * reported ("karpc: train: unknown option '--x' ..."). */
int kp_cli_options(const char *cmd, int argc, char **argv, const KpOption *opts, int nopts,
                   const char **model, const char **data);

#endif
