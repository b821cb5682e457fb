/*
 * karpc --stats and --dump-after, end to end (docs/passes.md describes
 * the output).  The figures "without passes" are fixed (every optimizing
 * pass off); the ones with the passes may only be as good or better.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define GOLDEN KARP_SOURCE_DIR "/tests/passes/golden/"

/* The line of out that starts with prefix, malloc'd (a Check failure if none). */
static char *line_starting(const char *out, const char *prefix)
{
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return kp_test_first_line(p);
    ck_abort_msg("no line starting '%s' in:\n%s", prefix, out);
    return NULL;
}

typedef struct Figures {
    long long kernels, kernels_off, ws, ws_off, unplanned;
} Figures;

static Figures figures(const char *out, const char *graph)
{
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s: kernels ", graph);
    char *line = line_starting(out, prefix);
    Figures f;
    int got = sscanf(line + strlen(graph),
                     ": kernels %lld (without passes %lld), workspace %lld bytes (without passes "
                     "%lld), unplanned %lld bytes",
                     &f.kernels, &f.kernels_off, &f.ws, &f.ws_off, &f.unplanned);
    ck_assert_msg(got == 5, "cannot read '%s'", line);
    free(line);
    return f;
}

/* The partitions line: "partitions: P, each LLVM pipeline / code generation: A / B ms, ...",
 * P, checked against the number of times it lists; -1 if they disagree. */
static int partitions(const char *out)
{
    char *l = line_starting(out, "partitions: ");
    int n = -1, listed = 0;
    ck_assert_int_eq(sscanf(l, "partitions: %d, each LLVM pipeline / code generation:", &n), 1);
    const char *p = strchr(l, ':');
    p = strchr(p + 1, ':') + 1;
    double a, b;
    int used;
    while (sscanf(p, " %lf / %lf ms%n", &a, &b, &used) == 2) {
        ck_assert(a >= 0 && b > 0);
        listed++;
        p += used;
        if (*p == ',')
            p++;
    }
    free(l);
    return listed == n ? n : -1;
}

START_TEST(stats_per_pass_and_figures)
{
    KpRun r = kp_test_run("%s %sdead_branch.json --stats", KARPC_EXE, GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char *l = line_starting(r.out, "dead_branch: ");
    ck_assert_str_eq(l, "dead_branch: 4 nodes, 148 parameters in 10 tensors (slab 960 bytes), "
                        "workspace 128 bytes at batch 4");
    free(l);
    /* one line per pass run, in pipeline order, with its report */
    const char *order[] = {"pass infer shapes ", "pass infer simplify ", "pass infer memplan ",
                           "pass train shapes ", "pass train autodiff ",
                           "pass train simplify ", "pass train memplan "};
    const char *at = r.out;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *p = strstr(at, order[i]);
        ck_assert_msg(p != NULL, "'%s' missing or out of order in:\n%s", order[i], r.out);
        at = p;
    }
    l = line_starting(r.out, "pass infer simplify ");
    ck_assert_msg(strstr(l, " ms  removed 4 dead nodes, merged 0 common subexpressions, collapsed 0 "
                            "reshape chains, bypassed 0 identities") != NULL, "%s", l);
    free(l);
    Figures fi = figures(r.out, "infer"), ft = figures(r.out, "train");
    ck_assert_int_eq(fi.kernels_off, 3);
    ck_assert_int_eq(fi.ws_off, 256);
    ck_assert_int_eq(fi.unplanned, 256);
    ck_assert_int_le(fi.ws, fi.ws_off);
    ck_assert_int_eq(ft.kernels_off, 13);
    ck_assert_int_eq(ft.ws_off, 704);
    ck_assert_int_eq(ft.unplanned, 704);
    ck_assert_int_le(ft.ws, ft.ws_off);
    l = line_starting(r.out, "time: ");
    ck_assert_ptr_nonnull(strstr(l, "frontend+passes "));
    free(l);
    ck_assert_int_ge(partitions(r.out), 1);
    ck_assert_int_le(partitions(r.out), 8);
    kp_test_run_free(&r);
    r = kp_test_run("%s %sdead_branch.json --stats --jobs 1", KARPC_EXE, GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(partitions(r.out), 1);
    kp_test_run_free(&r);
}
END_TEST

/* the flags reach the passes: switched off, a pass is not run or listed */
START_TEST(stats_with_passes_off)
{
    KpRun r = kp_test_run("%s %sconv_bn.json --stats --no-fuse --no-fold --no-layout", KARPC_EXE,
                          GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_null(strstr(r.out, " fusion "));
    ck_assert_ptr_null(strstr(r.out, " fold "));
    ck_assert_ptr_null(strstr(r.out, " layout "));
    ck_assert_ptr_nonnull(strstr(r.out, "pass infer memplan "));
    Figures f = figures(r.out, "infer");
    ck_assert_int_eq(f.kernels, f.kernels_off);
    kp_test_run_free(&r);
}
END_TEST

START_TEST(dump_after_text_and_dot)
{
    KpRun r = kp_test_run("%s %sreshape_chain.json --dump-after=simplify", KARPC_EXE, GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char *want = kp_test_read_file(GOLDEN "reshape_chain.simplify.ir", NULL);
    ck_assert_ptr_nonnull(want);
    ck_assert_str_eq(r.out, want);
    free(want);
    kp_test_run_free(&r);

    r = kp_test_run("%s %sreshape_chain.json --dump-after=simplify --emit=dot", KARPC_EXE, GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    /* the inference graph, then the train graph, and nothing else */
    ck_assert(strncmp(r.out, "digraph \"reshape_chain\" {", 25) == 0);
    const char *second = strstr(r.out + 1, "digraph ");
    ck_assert_ptr_nonnull(second);
    ck_assert_ptr_null(strstr(second + 1, "digraph "));
    ck_assert_ptr_null(strstr(r.out, "model reshape_chain"));
    kp_test_run_free(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("karpc_stats");
    TCase *t = tcase_create("stats");
    tcase_add_test(t, stats_per_pass_and_figures);
    tcase_add_test(t, stats_with_passes_off);
    tcase_add_test(t, dump_after_text_and_dot);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
