/*
 * data_opts.c — `--augment` and `--normalize`, which override the model
 * file's train.augment and train.normalize:
 *
 *   --augment hflip,random_crop=4,rotate=15,noise=0.1   in this order
 *   --augment none                                      no augmentation
 *   --normalize 0.5/0.25                                one mean / one std
 *   --normalize 0.49,0.48,0.45/0.25,0.24,0.26           per channel
 *   --normalize none                                    no normalization
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_open.h"

#define AUGMENTS "hflip, random_crop=PADDING, rotate=DEGREES, noise=STD"

/* A whole finite number from s[0..n); 0 or -1. */
static int number(const char *s, size_t n, float *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end || !isfinite(v) || fabs(v) > 3.0e38)
        return -1;
    *out = (float)v;
    return 0;
}

/* One "name[=value]" of s[0..n) into *a. */
static int augment_one(const char *s, size_t n, karp_augment *a)
{
    static const struct { const char *name; int kind; } kinds[] = {
        {"hflip", KARP_AUG_HFLIP},
        {"random_crop", KARP_AUG_RANDOM_CROP},
        {"rotate", KARP_AUG_ROTATE},
        {"noise", KARP_AUG_NOISE},
    };
    const char *eq = memchr(s, '=', n);
    size_t len = eq ? (size_t)(eq - s) : n;
    a->kind = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (strlen(kinds[k].name) == len && strncmp(s, kinds[k].name, len) == 0)
            a->kind = kinds[k].kind;
    if (!a->kind)
        return kp_cli_fail("--augment: unknown transform '%.*s' (expected " AUGMENTS ")",
                           (int)len, s);
    a->value = 0;
    if (a->kind == KARP_AUG_HFLIP) {
        if (eq)
            return kp_cli_fail("--augment: hflip takes no value, got '%.*s'", (int)n, s);
        return 0;
    }
    if (!eq)
        return kp_cli_fail("--augment: '%.*s' needs a value (expected " AUGMENTS ")", (int)n, s);
    if (number(eq + 1, n - len - 1, &a->value) != 0)
        return kp_cli_fail("--augment: '%.*s': the value is not a number", (int)n, s);
    karp_error err;
    if (kp_augment_check(a, 1, -1, "x", &err) != 0)
        return kp_cli_fail("--augment: %s", err.message + strlen("x[0]: "));
    return 0;
}

int kp_cli_parse_augment(const char *s, KpTrainDefaults *d)
{
    d->aug_from = "--augment";
    d->naug = 0;
    if (strcmp(s, "none") == 0)
        return 0;
    for (const char *p = s;; p++) {
        size_t n = strcspn(p, ",");
        if (n == 0)
            return kp_cli_fail("--augment %s: an empty transform (expected " AUGMENTS ", or none)",
                               s);
        if (d->naug == KP_MAX_AUGMENT)
            return kp_cli_fail("--augment: more than %d transforms", KP_MAX_AUGMENT);
        if (augment_one(p, n, &d->aug[d->naug]) != 0)
            return 1;
        d->naug++;
        p += n;
        if (!*p)
            return 0;
    }
}

/* A comma-separated list of at most 16 numbers from s[0..n). */
static int numbers(const char *s, size_t n, float *v, int *count)
{
    *count = 0;
    const char *end = s + n;
    for (const char *p = s;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t len = c ? (size_t)(c - p) : (size_t)(end - p);
        if (*count == 16 || number(p, len, &v[*count]) != 0)
            return -1;
        (*count)++;
        if (!c)
            return 0;
        p = c + 1;
    }
}

int kp_cli_parse_normalize(const char *s, KpTrainDefaults *d)
{
    d->norm_from = "--normalize";
    d->nmean = d->nstd = 0;
    if (strcmp(s, "none") == 0)
        return 0;
    const char *slash = strchr(s, '/');
    if (!slash || numbers(s, (size_t)(slash - s), d->mean, &d->nmean) != 0 ||
        numbers(slash + 1, strlen(slash + 1), d->std, &d->nstd) != 0) {
        d->nmean = d->nstd = 0;
        return kp_cli_fail("--normalize %s: expected MEAN/STD or M1,M2,.../S1,S2,... (at most 16 "
                           "numbers each), or none",
                           s);
    }
    for (int i = 0; i < d->nstd; i++)
        if (!(d->std[i] > 0))
            return kp_cli_fail("--normalize %s: std %g must be > 0", s, (double)d->std[i]);
    return 0;
}

void kp_cli_format_augment(char *buf, size_t cap, const karp_augment *aug, int naug)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < naug && len < cap; i++) {
        const char *name = kp_augment_name(aug[i].kind);
        int w = aug[i].kind == KARP_AUG_HFLIP
                    ? snprintf(buf + len, cap - len, "%s%s", i ? "," : "", name)
                    : snprintf(buf + len, cap - len, "%s%s=%g", i ? "," : "", name,
                               (double)aug[i].value);
        if (w < 0)
            return;
        len += (size_t)w;
    }
}
