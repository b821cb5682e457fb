/* fuzzutil.c — see fuzzutil.h. */
#include "fuzzutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[4096];
static char file[4096 + 64];

static void remove_dir(void)
{
    if (!dir[0])
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", dir);
}

const char *fz_dir(void)
{
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/karp-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fz_write_file(const char *name, const uint8_t *data, size_t size)
{
    snprintf(file, sizeof file, "%s/%s", fz_dir(), name);
    FILE *f = fopen(file, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(file);
        abort();
    }
    return file;
}

uint64_t fz_u64(FzBytes *b, int nbytes)
{
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) {
        uint64_t byte = 0;
        if (b->n) {
            byte = *b->p++;
            b->n--;
        }
        v |= byte << (8 * i);
    }
    return v;
}

const char *fz_str(FzBytes *b, char *buf, size_t max)
{
    size_t i = 0;
    while (i < max && b->n && *b->p) {
        buf[i++] = (char)*b->p++;
        b->n--;
    }
    if (b->n && *b->p == 0) {
        b->p++;
        b->n--;
    }
    buf[i] = '\0';
    return buf;
}
