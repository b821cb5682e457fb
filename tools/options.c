/*
 * Parsing the options of `karpc train` and `karpc eval` from a table.
 */
#include "options.h"

#include <string.h>

#include "cli.h"

/* 1 when argv[*i] is option o (value stored, or *bad set on a mistake). */
static int take_option(int argc, char **argv, int *i, const KpOption *o, int *bad)
{
    const char *v = kp_cli_take(argc, argv, i, o->name, bad);
    if (!v && !*bad)
        return 0;
    if (*bad)
        return 1;
    if (o->str && !*v) {
        kp_cli_fail("%s needs a value", o->name);
        *bad = 1;
    } else if (o->str) {
        *o->str = v;
    } else if (kp_cli_int(o->name, v, o->lo, o->hi, o->num) != 0) {
        *bad = 1;
    }
    if (o->given)
        *o->given = 1;
    return 1;
}

int kp_cli_options(const char *cmd, int argc, char **argv, const KpOption *opts, int nopts,
                   const char **model, const char **data)
{
    *model = NULL;
    *data = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int bad = 0, known = 0;
        for (int k = 0; k < nopts && !known; k++)
            known = take_option(argc, argv, &i, &opts[k], &bad);
        if (!known)
            known = take_option(argc, argv, &i, &(KpOption){"--data", data, NULL, 0, 0, NULL}, &bad);
        if (bad)
            return 1;
        if (known)
            continue;
        if (s[0] == '-' && s[1] != '\0')
            return kp_cli_fail("%s: unknown option '%s' (karpc --help lists them)", cmd, s);
        if (*model)
            return kp_cli_fail("%s: one model at a time: '%s' and '%s'", cmd, *model, s);
        *model = s;
    }
    if (!*model)
        return kp_cli_fail("%s: no model given (model.json or model.so)", cmd);
    if (!*data)
        return kp_cli_fail("%s: --data is required (e.g. --data fashion-mnist)", cmd);
    return 0;
}
