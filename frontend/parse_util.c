#include "parse_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SHOW_MAX = 40 };

int kp_fe_fail(KpFe *p, const char *path, const char *key, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *sep = path && *path ? ": " : "";
    if (key)
        return kp_error(p->d, "%s: %s%s'%s' %s", p->file, path ? path : "", sep, key, what);
    return kp_error(p->d, "%s: %s%s%s", p->file, path ? path : "", sep, what);
}

const char *kp_fe_show(KpFe *p, const cJSON *v)
{
    if (!v)
        return "nothing";
    const char *raw = p->doc ? kp_json_text(p->doc, v, p->a, SHOW_MAX) : NULL;
    if (raw)
        return raw;
    char *s = cJSON_PrintUnformatted(v);
    if (!s)
        return "?";
    const char *out;
    if (strlen(s) > SHOW_MAX)
        out = kp_arena_printf(p->a, "%.*s...", SHOW_MAX - 3, s);
    else
        out = kp_arena_strdup(p->a, s);
    free(s);
    return out ? out : "?";
}

const char *kp_fe_clip(KpFe *p, const char *s)
{
    size_t n = strlen(s);
    size_t keep = n > SHOW_MAX ? SHOW_MAX - 3 : n;
    char *out = kp_arena_alloc(p->a, keep + 4);
    if (!out)
        return "?";
    for (size_t i = 0; i < keep; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (keep < n)
        strcpy(out + keep, "...");
    return out;
}

/* Optimal string alignment distance (edits and adjacent swaps), capped:
 * anything above 3 is reported as 4. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40 || (la > lb ? la - lb : lb - la) > 3)
        return 4;
    int d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb] > 3 ? 4 : d[la][lb];
}

const char *kp_fe_suggest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int best_d = 3;
    for (int k = 0; k < n; k++) {
        size_t len = strlen(cands[k]);
        int limit = len >= 6 ? 2 : 1;
        int dist = distance(word, cands[k]);
        if (dist <= limit && dist < best_d) {
            best = cands[k];
            best_d = dist;
        }
    }
    return best;
}

int kp_fe_check_keys(KpFe *p, const char *path, const cJSON *obj, const char *const *keys, int n)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        int k = 0;
        while (k < n && strcmp(c->string, keys[k]) != 0)
            k++;
        if (k < n)
            continue;
        const char *near = kp_fe_suggest(c->string, keys, n);
        if (near)
            return kp_fe_fail(p, path, NULL, "unknown key '%s', did you mean '%s'?",
                              kp_fe_clip(p, c->string), near);
        return kp_fe_fail(p, path, NULL, "unknown key '%s', expected one of %s",
                          kp_fe_clip(p, c->string), kp_fe_join(p, keys, n));
    }
    return 0;
}

const char *kp_fe_join(KpFe *p, const char *const *names, int n)
{
    size_t len = 1;
    for (int k = 0; k < n; k++)
        len += strlen(names[k]) + 2;
    char *s = kp_arena_alloc(p->a, len);
    if (!s)
        return "";
    for (int k = 0; k < n; k++) {
        if (k)
            strcat(s, ", ");
        strcat(s, names[k]);
    }
    return s;
}

bool kp_fe_number(const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return false;
    *out = v->valuedouble;
    return true;
}

bool kp_fe_int_in(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    double x;
    if (!kp_fe_number(v, &x) || x != floor(x) || x < (double)lo || x > (double)hi)
        return false;
    *out = (int64_t)x;
    return true;
}

int kp_fe_pos_int(KpFe *p, const char *path, const char *key, const cJSON *v, int64_t max,
                  int64_t *out)
{
    if (kp_fe_int_in(v, 1, max, out))
        return 0;
    double x = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (x > (double)max && x == floor(x))
        return kp_fe_fail(p, path, key, "must be at most %lld, got %s", (long long)max,
                          kp_fe_show(p, v));
    return kp_fe_fail(p, path, key, "must be a positive integer, got %s", kp_fe_show(p, v));
}

int kp_fe_enum(KpFe *p, const char *path, const char *key, const char *noun, const cJSON *v,
               const char *const *names, int n, int *out)
{
    if (!cJSON_IsString(v))
        return kp_fe_fail(p, path, key, "must be one of %s, got %s", kp_fe_join(p, names, n),
                          kp_fe_show(p, v));
    for (int k = 0; k < n; k++) {
        if (strcmp(v->valuestring, names[k]) == 0) {
            *out = k;
            return 0;
        }
    }
    return kp_fe_fail(p, path, NULL, "unknown %s '%s', expected one of %s", noun,
                      kp_fe_clip(p, v->valuestring), kp_fe_join(p, names, n));
}

bool kp_fe_is_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > KP_FE_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

int64_t kp_fe_mul_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return INT64_MAX;
    return r;
}
