/*
 * fuzzutil.h — what the libFuzzer harnesses share: a private temporary
 * directory for the readers that take a path, and a little-endian byte
 * reader for harnesses that build a struct from the fuzz input.
 */
#ifndef KP_FUZZUTIL_H
#define KP_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/* DIR/name with data[0..size) written to it; DIR is made once per process
 * under $TMPDIR (or /tmp) and removed at exit.  Aborts on an I/O error:
 * that is the harness's fault, not the input's. */
const char *fz_write_file(const char *name, const uint8_t *data, size_t size);
/* The process's temporary directory. */
const char *fz_dir(void);

/* Consumes bytes from the front of the input; past its end every read is 0. */
typedef struct FzBytes {
    const uint8_t *p;
    size_t n;
} FzBytes;
uint64_t fz_u64(FzBytes *b, int nbytes);
/* A NUL-terminated copy of at most max bytes (stops at a 0 byte), in buf. */
const char *fz_str(FzBytes *b, char *buf, size_t max);

#endif
