/*
 * data_csv.c — a CSV file of numbers: target first, then the features.
 * The whole file is read into memory and parsed line by line; fields are
 * separated by commas, may carry spaces around them, and are parsed with
 * strtod.  Every row must have as many fields as the first one (or the
 * header).
 */
#include "data.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef struct Rows {
    float *v;               /* rows * width numbers */
    int64_t rows, cap;      /* in rows */
    int64_t width;          /* numbers per row, 0 until known */
} Rows;

/* The whole file, NUL-terminated, in *text (*len bytes). */
static int read_text(const char *path, char **text, size_t *len, karp_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kp_rt_error(err, KARP_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        char *bigger = realloc(buf, cap + 1);
        if (!bigger)
            free(buf);
        buf = bigger;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return kp_rt_error(err, KARP_ENOMEM, "%s: out of memory", path);
    if (bad) {
        free(buf);
        return kp_rt_error(err, KARP_EIO, "%s: read failed", path);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Parse the field [s, e) as a finite float. */
static int parse_number(const char *s, const char *e, float *out)
{
    while (s < e && is_space(*s))
        s++;
    while (e > s && is_space(e[-1]))
        e--;
    if (s == e)
        return -1;
    char buf[64];
    if ((size_t)(e - s) >= sizeof buf)
        return -1;
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end != '\0' || !isfinite(v) || fabs(v) > FLT_MAX)
        return -1;
    *out = (float)v;
    return 0;
}

/* Fields of the line [s, e): their count. */
static int64_t count_fields(const char *s, const char *e)
{
    int64_t n = 1;
    for (const char *p = s; p < e; p++)
        n += *p == ',';
    return n;
}

/* Append the line [s, e) (line number ln) to rows. */
static int add_row(const char *path, int64_t ln, const char *s, const char *e, Rows *r,
                   karp_error *err)
{
    int64_t n = count_fields(s, e);
    if (n != r->width)
        return kp_rt_error(err, KARP_EFORMAT, "%s:%lld: expected %lld numbers, found %lld", path,
                           (long long)ln, (long long)r->width, (long long)n);
    if (r->rows == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 1024;
        float *v = realloc(r->v, (size_t)(cap * r->width) * sizeof(float));
        if (!v)
            return kp_rt_error(err, KARP_ENOMEM, "%s: out of memory", path);
        r->v = v;
        r->cap = cap;
    }
    float *row = r->v + r->rows * r->width;
    const char *f = s;
    for (int64_t i = 0; i < n; i++) {
        const char *fe = memchr(f, ',', (size_t)(e - f));
        if (!fe)
            fe = e;
        if (parse_number(f, fe, &row[i]) != 0) {
            const char *t = f, *te = fe;
            while (t < te && is_space(*t))
                t++;
            while (te > t && is_space(te[-1]))
                te--;
            return kp_rt_error(err, KARP_EFORMAT, "%s:%lld:%lld: not a number: '%.*s'", path,
                               (long long)ln, (long long)(t - s + 1),
                               (int)(te - t > 40 ? 40 : te - t), t);
        }
        f = fe + 1;
    }
    r->rows++;
    return 0;
}

static int parse_text(const char *path, const char *text, size_t len, Rows *r, karp_error *err)
{
    const char *p = text, *end = text + len;
    int64_t ln = 0;
    int first = 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p;
        p = nl ? nl + 1 : end;
        ln++;
        if (le > s && le[-1] == '\r')
            le--;
        const char *q = s;
        while (q < le && is_space(*q))
            q++;
        if (q == le)
            continue;
        if (first) {
            first = 0;
            r->width = count_fields(s, le);
            if (r->width < 2)
                return kp_rt_error(err, KARP_EFORMAT,
                                   "%s:%lld: expected a target and at least one feature, found "
                                   "1 field",
                                   path, (long long)ln);
            const char *fe = memchr(s, ',', (size_t)(le - s));
            float dummy;
            if (parse_number(s, fe, &dummy) != 0)
                continue; /* a header */
        }
        int rc = add_row(path, ln, s, le, r, err);
        if (rc)
            return rc;
    }
    if (r->rows == 0)
        return kp_rt_error(err, KARP_EFORMAT, "%s: no rows of numbers", path);
    return 0;
}

/* Split rows into ds: features to x, the first column to targets (and to
 * labels when they are all class numbers). */
static int fill(const char *path, const Rows *r, KpDataset *ds, karp_error *err)
{
    int64_t nf = r->width - 1;
    ds->x = malloc((size_t)(r->rows * nf) * sizeof(float));
    ds->targets = malloc((size_t)r->rows * sizeof(float));
    if (!ds->x || !ds->targets)
        return kp_rt_error(err, KARP_ENOMEM, "%s: out of memory", path);
    int integral = 1;
    float top = 0;
    for (int64_t i = 0; i < r->rows; i++) {
        const float *row = r->v + i * r->width;
        float t = row[0];
        ds->targets[i] = t;
        if (!(t >= 0 && t < 16777216.0f && t == floorf(t)))
            integral = 0;
        else if (t > top)
            top = t;
        memcpy(ds->x + i * nf, row + 1, (size_t)nf * sizeof(float));
    }
    if (integral) {
        ds->labels = malloc((size_t)r->rows * sizeof(int32_t));
        if (!ds->labels)
            return kp_rt_error(err, KARP_ENOMEM, "%s: out of memory", path);
        for (int64_t i = 0; i < r->rows; i++)
            ds->labels[i] = (int32_t)ds->targets[i];
        ds->nclasses = (int)top + 1;
    }
    ds->count = r->rows;
    ds->rank = 1;
    ds->shape[0] = nf;
    ds->sample_size = nf;
    return 0;
}

int kp_data_load_csv(const char *path, KpDataset *ds, karp_error *err)
{
    if (!path || !ds)
        return kp_rt_error(err, KARP_EINVAL, "kp_data_load_csv: NULL argument");
    memset(ds, 0, sizeof *ds);
    size_t len = 0;
    char *text = NULL;
    int rc = read_text(path, &text, &len, err);
    if (rc)
        return rc;
    Rows r = {0};
    rc = parse_text(path, text, len, &r, err);
    if (rc == 0)
        rc = fill(path, &r, ds, err);
    if (rc)
        kp_data_free(ds);
    free(r.v);
    free(text);
    return rc;
}
