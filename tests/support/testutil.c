#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zlib.h>

char *kp_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/karp-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

void kp_test_rmdir(const char *dir)
{
    if (!dir || !strstr(dir, "karp-test-"))
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

char *kp_test_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *kp_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int kp_test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

KpRun kp_test_run(const char *fmt, ...)
{
    KpRun r = {-1, NULL, NULL};
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *dir = kp_test_tmpdir();
    if (!dir)
        return r;
    char *o = kp_test_path(dir, "out"), *e = kp_test_path(dir, "err");
    char *full = malloc(strlen(cmd) + strlen(o) + strlen(e) + 32);
    sprintf(full, "( %s ) >'%s' 2>'%s' </dev/null", cmd, o, e);
    int st = system(full);
    if (st != -1)
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = kp_test_read_file(o, NULL);
    r.err = kp_test_read_file(e, NULL);
    if (!r.out)
        r.out = strdup("");
    if (!r.err)
        r.err = strdup("");
    free(full);
    free(o);
    free(e);
    kp_test_rmdir(dir);
    free(dir);
    return r;
}

void kp_test_run_free(KpRun *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

char *kp_test_first_line(const char *s)
{
    size_t n = strcspn(s, "\n");
    char *p = malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int kp_test_main(Suite *s, enum fork_status fork)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, fork);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void kp_test_log_row(const char *csv, int epoch, double v[5])
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "\n%d,", epoch);
    const char *row = strstr(csv, prefix);
    ck_assert_msg(row != NULL, "no row for epoch %d in:\n%s", epoch, csv);
    ck_assert_int_eq(sscanf(row + 1, "%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4]), 5);
}

int kp_test_write_idx(const char *path, int rank, const int *dims, const unsigned char *data,
                      long len)
{
    gzFile gz = gzopen(path, "wb");
    if (!gz)
        return -1;
    unsigned char hdr[4] = {0, 0, 8, (unsigned char)rank};
    int ok = gzwrite(gz, hdr, 4) == 4;
    for (int i = 0; i < rank; i++) {
        unsigned char b[4] = {(unsigned char)(dims[i] >> 24), (unsigned char)(dims[i] >> 16),
                              (unsigned char)(dims[i] >> 8), (unsigned char)dims[i]};
        ok &= gzwrite(gz, b, 4) == 4;
    }
    ok &= len == 0 || gzwrite(gz, data, (unsigned)len) == (int)len;
    return gzclose(gz) == Z_OK && ok ? 0 : -1;
}
