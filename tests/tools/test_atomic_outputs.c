/*
 * Every file karpc writes goes through runtime/atomic_file.h: when the
 * write fails half-way, or the rename cannot happen, the target is left as
 * it was and no "<name>.tmp.<pid>" is left behind.  Per writer: model.so,
 * --header, --emit=ir/llvm -o, train --log, --plot, --save; failures made
 * by a directory where the file should go, and by a file size limit
 * (`ulimit -f 0`, SIGXFSZ ignored) so that the first write fails, or
 * `ulimit -f 1` so that the plot stops half-way.  Plus the
 * helper's own rules: a dead writer's temp file is removed by the next
 * write, a live one's is not.
 */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/atomic_file.h"
#include "testutil.h"

static char *dir, *model, *data;

static const char model_json[] =
    "{\"karp\": 1, \"name\": \"tiny_atomic\", \"input\": {\"shape\": [4]},\n"
    " \"layers\": [{\"type\": \"dense\", \"units\": 3}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1},\n"
    " \"batch\": 4, \"seed\": 1}\n";

static void setup(void)
{
    dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    model = kp_test_path(dir, "m.json");
    data = kp_test_path(dir, "d.csv");
    ck_assert_int_eq(kp_test_write_file(model, model_json), 0);
    ck_assert_int_eq(kp_test_write_file(data, "0,1,0,0,0\n1,0,1,0,0\n2,0,0,1,0\n0,1,0,0,1\n"
                                              "1,0,1,0,1\n2,0,0,1,1\n0,1,1,0,0\n1,0,1,1,0\n"),
                     0);
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
    free(model);
    free(data);
}

static int tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static void make_dir(const char *name)
{
    char *p = kp_test_path(dir, name);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    free(p);
}

static int is_dir(const char *name)
{
    char *p = kp_test_path(dir, name);
    struct stat st;
    int r = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return r;
}

static void expect_content(const char *name, const char *text)
{
    char *p = kp_test_path(dir, name);
    char *got = kp_test_read_file(p, NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, text);
    free(got);
    free(p);
}

/* karpc ARGS run in dir after the shell commands limit; it must fail and
 * its stderr end with the line msg.  The output goes through a pipe,
 * which a file size limit does not restrict. */
static void expect_fail(const char *limit, const char *args, const char *msg)
{
    KpRun r = kp_test_run("cd %s && (%s %s %s; echo \"status $?\") 2>&1 | cat >&2", dir, limit,
                          KARPC_EXE, args);
    char want[1024];
    snprintf(want, sizeof want, "%s\nstatus 1\n", msg);
    size_t n = strlen(r.err), w = strlen(want);
    /* Whole last line, or (msg "..." + tail) its end. */
    int tail = strncmp(msg, "...", 3) == 0;
    if (tail)
        memmove(want, want + 3, (w -= 3) + 1);
    int line_start = n == w || (n > w && r.err[n - w - 1] == '\n');
    ck_assert_msg(n >= w && strcmp(r.err + n - w, want) == 0 && (tail || line_start),
                  "karpc %s: got\n%s\nwanted\n%s",
                  args, r.err, want);
    kp_test_run_free(&r);
    ck_assert_int_eq(tmp_files(), 0);
}

#define NOWRITE "trap '' XFSZ; ulimit -f 0;"
#define HALFWAY "trap '' XFSZ; ulimit -f 1;"

START_TEST(compile_outputs_in_the_way)
{
    make_dir("m.so");
    expect_fail("", "m.json -o m.so", "m.so: cannot write: Is a directory");
    ck_assert(is_dir("m.so"));

    make_dir("m.h");
    expect_fail("", "m.json -o ok.so --header m.h", "m.h: cannot write: Is a directory");
    ck_assert(is_dir("m.h"));

    make_dir("m.ir");
    expect_fail("", "m.json --emit=ir -o m.ir", "karpc: m.ir: cannot write: Is a directory");
    make_dir("m.ll");
    expect_fail("", "m.json --emit=llvm -o m.ll", "m.ll: cannot write: Is a directory");
    ck_assert(is_dir("m.ir") && is_dir("m.ll"));
}
END_TEST

START_TEST(compile_outputs_write_fails)
{
    char *p = kp_test_path(dir, "old.so");
    ck_assert_int_eq(kp_test_write_file(p, "OLD"), 0);
    expect_fail(NOWRITE, "m.json -o old.so", "....o: cannot write: File too large");
    expect_content("old.so", "OLD");
    ck_assert_int_eq(tmp_files(), 0);

    ck_assert_int_eq(kp_test_write_file(p, "OLD"), 0);
    free(p);
    p = kp_test_path(dir, "old.ir");
    ck_assert_int_eq(kp_test_write_file(p, "OLD IR"), 0);
    free(p);
    expect_fail(NOWRITE, "m.json --emit=ir -o old.ir",
                "karpc: old.ir: cannot write: File too large");
    expect_content("old.ir", "OLD IR");
}
END_TEST

START_TEST(train_outputs)
{
    char args[1024];
    make_dir("log.csv");
    snprintf(args, sizeof args, "train m.json --data csv:d.csv --log log.csv");
    expect_fail("", args, "karpc: log.csv: cannot write: Is a directory");
    make_dir("loss.svg");
    snprintf(args, sizeof args, "train m.json --data csv:d.csv --plot loss.svg");
    expect_fail("", args, "karpc: loss.svg: cannot write: Is a directory");
    make_dir("ck.safetensors");
    snprintf(args, sizeof args, "train m.json --data csv:d.csv --save ck.safetensors");
    expect_fail("", args,
                "karpc: ck.safetensors: rename failed: Is a directory (the old file, if any, is "
                "unchanged)");

    /* The first write fails: the old files stay as they were. */
    char *p = kp_test_path(dir, "old.csv");
    ck_assert_int_eq(kp_test_write_file(p, "OLD LOG"), 0);
    free(p);
    p = kp_test_path(dir, "old.svg");
    ck_assert_int_eq(kp_test_write_file(p, "OLD SVG"), 0);
    free(p);
    p = kp_test_path(dir, "old.safetensors");
    ck_assert_int_eq(kp_test_write_file(p, "OLD CKPT"), 0);
    free(p);
    expect_fail(NOWRITE, "train m.json --data csv:d.csv --log old.csv",
                "karpc: old.csv: cannot write: File too large");
    expect_fail(NOWRITE, "train m.json --data csv:d.csv --plot old.svg",
                "karpc: old.svg: cannot write: File too large");
    expect_fail(NOWRITE, "train m.json --data csv:d.csv --save old.safetensors",
                "karpc: old.safetensors: write failed: File too large (the old file, if any, is "
                "unchanged)");
    expect_content("old.csv", "OLD LOG");
    expect_content("old.svg", "OLD SVG");
    /* Half-way: the plot (several kB) stops at the shell's 1-block limit. */
    expect_fail(HALFWAY, "train m.json --data csv:d.csv --plot old.svg",
                "karpc: old.svg: cannot write: File too large");
    expect_content("old.svg", "OLD SVG");
    expect_content("old.safetensors", "OLD CKPT");

    /* And without a limit they are replaced. */
    KpRun r = kp_test_run("cd %s && %s train m.json --data csv:d.csv --log old.csv --plot old.svg "
                          "--save old.safetensors",
                          dir, KARPC_EXE);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    p = kp_test_path(dir, "old.csv");
    char *log = kp_test_read_file(p, NULL);
    ck_assert_ptr_nonnull(strstr(log, "epoch,"));
    free(log);
    free(p);
    ck_assert_int_eq(tmp_files(), 0);
}
END_TEST

START_TEST(stale_temp_files)
{
    char *target = kp_test_path(dir, "f.txt");
    /* A writer that died: its pid is free once reaped. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(child, NULL, 0), child);
    char dead[512], live[512], other[512];
    snprintf(dead, sizeof dead, "%s.tmp.%ld", target, (long)child);
    snprintf(live, sizeof live, "%s.tmp.%ld", target, (long)getppid());
    snprintf(other, sizeof other, "%s.tmp.notapid", target);
    ck_assert_int_eq(kp_test_write_file(dead, "half"), 0);
    ck_assert_int_eq(kp_test_write_file(live, "busy"), 0);
    ck_assert_int_eq(kp_test_write_file(other, "x"), 0);

    KpAtomic a;
    ck_assert_int_eq(kp_atomic_begin_stdio(&a, target), 0);
    fputs("new", a.f);
    ck_assert_int_eq(kp_atomic_commit(&a, 0), 0);
    expect_content("f.txt", "new");
    ck_assert_int_eq(access(dead, F_OK), -1);
    ck_assert_int_eq(access(live, F_OK), 0);
    ck_assert_int_eq(access(other, F_OK), 0);

    /* A caller's failure aborts: the target keeps "new", no temp file. */
    unlink(live);
    unlink(other);
    ck_assert_int_eq(kp_atomic_begin_stdio(&a, target), 0);
    fputs("newer", a.f);
    ck_assert_int_eq(kp_atomic_commit(&a, 5), 5);
    expect_content("f.txt", "new");
    ck_assert_int_eq(tmp_files(), 0);
    free(target);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("atomic_outputs");
    TCase *tc = tcase_create("atomic");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, compile_outputs_in_the_way);
    tcase_add_test(tc, compile_outputs_write_fails);
    tcase_add_test(tc, train_outputs);
    tcase_add_test(tc, stale_temp_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
