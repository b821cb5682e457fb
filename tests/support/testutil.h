/*
 * testutil.h — small helpers shared by the test programs: temporary
 * directories, running a command and capturing its output, files, and
 * the Check runner of every main().
 * Every returned string is malloc'd; the caller frees it.
 */
#ifndef KP_TESTUTIL_H
#define KP_TESTUTIL_H

#include <check.h>
#include <stddef.h>

/* KP_TEST_ASAN: 1 in an AddressSanitizer build (gcc says so with
 * __SANITIZE_ADDRESS__, clang with __has_feature). */
#if defined(__SANITIZE_ADDRESS__)
#define KP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KP_TEST_ASAN 1
#endif
#endif
#ifndef KP_TEST_ASAN
#define KP_TEST_ASAN 0
#endif

/* KP_TEST_OPT(level): the LLVM optimization level for a test that
 * compiles models to compare what they compute: level in the normal
 * build, 0 under ASan.  The sanitizers instrument karpc, not libLLVM nor
 * the code it generates, and karpc's own code runs the same at every
 * level (the level only names LLVM's pass pipeline); but LLVM at -O2/-O3,
 * slowed down further by ASan's malloc, was most of those tests' time in
 * the sanitizer build.  The normal build keeps the test's level. */
#define KP_TEST_OPT(level) (KP_TEST_ASAN ? 0 : (level))

/* A fresh directory under $TMPDIR (or /tmp); the path is malloc'd. */
char *kp_test_tmpdir(void);
/* rm -rf dir (for directories made by kp_test_tmpdir). */
void kp_test_rmdir(const char *dir);
/* path = dir + "/" + name, malloc'd. */
char *kp_test_path(const char *dir, const char *name);

typedef struct KpRun {
    int status;            /* exit status, or 128+signal, or -1 */
    char *out;             /* stdout */
    char *err;             /* stderr */
} KpRun;

/* Run a shell command line; stdout and stderr captured. */
KpRun kp_test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kp_test_run_free(KpRun *r);

/* Whole file as a NUL-terminated string (NULL if unreadable); *len if given. */
char *kp_test_read_file(const char *path, size_t *len);
/* Write text to path; 0 or -1. */
int kp_test_write_file(const char *path, const char *text);

/* A gzip'ed IDX file at path: the header for dims[0..rank) (unsigned
 * bytes), then len bytes of data (fewer than the dims promise for a
 * truncated file).  0 or -1. */
int kp_test_write_idx(const char *path, int rank, const int *dims, const unsigned char *data,
                      long len);

/* The first line of s, malloc'd, without the newline. */
char *kp_test_first_line(const char *s);

/* Run every test of s (fork as srunner_set_fork_status: CK_FORK_GETENV
 * for Check's default) and free it; EXIT_SUCCESS or EXIT_FAILURE, the
 * return value of a test program's main(). */
int kp_test_main(Suite *s, enum fork_status fork);

/* The first five columns of `karpc train --log`'s row for epoch (epoch,
 * train_loss, train_acc, test_loss, test_acc) into v; a Check failure if
 * the row is missing or malformed. */
void kp_test_log_row(const char *csv, int epoch, double v[5]);

#endif
