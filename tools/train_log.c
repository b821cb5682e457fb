/*
 * The --log CSV of `karpc train`: one row per epoch, rewritten whole after
 * each epoch so that the file on disk is always complete.
 */
#include "train_log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char header[] = "epoch,train_loss,train_acc,test_loss,test_acc,samples_per_s,seconds";

int kp_cli_history_add(KpHistory *h, const KpEpochStats *s)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        KpEpochStats *e = realloc(h->e, (size_t)cap * sizeof *e);
        if (!e) {
            kp_cli_fail("out of memory");
            return -1;
        }
        h->e = e;
        h->cap = cap;
    }
    h->e[h->n++] = *s;
    return 0;
}

void kp_cli_history_free(KpHistory *h)
{
    free(h->e);
    memset(h, 0, sizeof *h);
}

/* A missing value (an accuracy < 0, no test loss: NAN) is an empty field. */
static void put(FILE *f, double v, int decimals)
{
    if (v >= 0)
        fprintf(f, "%.*f", decimals, v);
}

int kp_cli_log_write(const char *path, const KpHistory *h)
{
    KpAtomicFile af;
    if (kp_cli_atomic_open(&af, path) != 0)
        return -1;
    fprintf(af.f, "%s\n", header);
    for (int i = 0; i < h->n; i++) {
        const KpEpochStats *s = &h->e[i];
        fprintf(af.f, "%d,%.4f,", s->epoch, s->train_loss);
        put(af.f, s->train_acc, 2);
        fputc(',', af.f);
        put(af.f, s->test_loss, 4);
        fputc(',', af.f);
        put(af.f, s->test_acc, 2);
        fprintf(af.f, ",%.0f,%.3f\n", s->samples_per_s, s->seconds);
    }
    return kp_cli_atomic_commit(&af);
}

/* One field of a row: a number, or empty (NAN) where a value may be missing. */
static int field(char **p, double *v, int may_be_empty)
{
    char *end;
    if (may_be_empty && (**p == ',' || **p == '\n' || **p == '\0')) {
        *v = NAN;
        end = *p;
    } else {
        errno = 0;
        *v = strtod(*p, &end);
        if (end == *p || errno)
            return -1;
    }
    if (*end == ',')
        end++;
    *p = end;
    return 0;
}

static int parse_row(char *line, KpEpochStats *s)
{
    char *p = line;
    double epoch;
    if (field(&p, &epoch, 0) || field(&p, &s->train_loss, 0) || field(&p, &s->train_acc, 1) ||
        field(&p, &s->test_loss, 1) || field(&p, &s->test_acc, 1) ||
        field(&p, &s->samples_per_s, 0) || field(&p, &s->seconds, 0))
        return -1;
    if (epoch < 1 || epoch > 1e6 || *p != '\0')
        return -1;
    s->epoch = (int)epoch;
    return 0;
}

int kp_cli_log_read(const char *path, int upto, KpHistory *h)
{
    FILE *f = fopen(path, "r");
    if (!f && errno == ENOENT)
        return 0;
    if (!f) {
        kp_cli_fail("%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    int rc = 0, first = 1;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (first) {
            first = 0;
            if (strcmp(line, header) == 0)
                continue;
        }
        KpEpochStats s;
        /* Only an unbroken run 1, 2, ... upto is kept. */
        if (parse_row(line, &s) != 0 || s.epoch > upto || s.epoch != h->n + 1)
            break;
        rc = kp_cli_history_add(h, &s);
    }
    fclose(f);
    return rc;
}
