/*
 * karpc --stats and --dump-after, end to end (docs/passes.md describes
 * the output).  The figures "without passes" are fixed (every optimizing
 * pass off); the ones with the passes may only be as good or better.
 */
#include <check.h>
#include <inttypes.h>
#include <math.h>
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

/* The partitions line: "partitions: P for T threads (IR instructions I0 I1 ...), each LLVM
 * pipeline / code generation: A / B ms, ...".  The sizes go to insts (room for 24), T to
 * *threads; returns P, checked against the sizes and times it lists (-1 if they disagree). */
typedef struct Parts {
    int n, threads;
    long long insts[24];
} Parts;

static Parts partitions(const char *out)
{
    char *l = line_starting(out, "partitions: ");
    Parts r = {.n = -1};
    int used = 0;
    ck_assert_msg(sscanf(l, "partitions: %d for %d thread%n", &r.n, &r.threads, &used) == 2 &&
                      used > 0, "cannot read '%s'", l);
    ck_assert(r.n >= 1 && r.n <= 24);
    const char *p = l + used + (l[used] == 's');
    ck_assert_msg(strncmp(p, " (IR instructions", 17) == 0, "at '%s'", p);
    p += 17;
    int sizes = 0, times = 0, k;
    long long v;
    while (sizes < 24 && sscanf(p, " %lld%n", &v, &k) == 1) {
        ck_assert(v > 0);
        r.insts[sizes++] = v;
        p += k;
    }
    ck_assert_msg(strncmp(p, "), each LLVM pipeline / code generation:", 40) == 0, "at '%s'", p);
    p += 40;
    double a, b;
    while (sscanf(p, " %lf / %lf ms%n", &a, &b, &k) == 2) {
        ck_assert(a >= 0 && b > 0);
        times++;
        p += k;
        if (*p == ',')
            p++;
    }
    free(l);
    if (sizes != r.n || times != r.n)
        r.n = -1;
    return r;
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
    Parts pt = partitions(r.out);
    ck_assert_int_ge(pt.n, 1);
    ck_assert_int_le(pt.n, 3 * pt.threads);
    kp_test_run_free(&r);
    r = kp_test_run("%s %sdead_branch.json --stats --jobs 1", KARPC_EXE, GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    pt = partitions(r.out);
    ck_assert_int_eq(pt.n, 1);
    ck_assert_int_eq(pt.threads, 1);
    kp_test_run_free(&r);
}
END_TEST

/* Two threads take the partitions from a queue, three each, each planned
 * smaller than the one before (docs/compile-time.md, item 7); together
 * they hold the whole module, as the one partition of one thread does. */
START_TEST(partitions_shrink)
{
    KpRun r = kp_test_run("%s %s/examples/fashion_cnn.json --stats --jobs 2", KARPC_EXE,
                          KARP_SOURCE_DIR);
    ck_assert_msg(r.status == 0, "%s", r.err);
    Parts two = partitions(r.out);
    kp_test_run_free(&r);
    ck_assert_int_eq(two.n, 6);
    ck_assert_int_eq(two.threads, 2);
    long long sum = 0;
    for (int i = 0; i < two.n; i++) {
        sum += two.insts[i];
        if (i > 0)
            ck_assert_msg(two.insts[i] <= two.insts[i - 1], "partition %d: %lld > %lld", i,
                          two.insts[i], two.insts[i - 1]);
    }
    /* the largest planned at 0.7^-5 = 6x the smallest: not as even as before */
    ck_assert_int_ge(two.insts[0], 3 * two.insts[5]);
    r = kp_test_run("%s %s/examples/fashion_cnn.json --stats --jobs 1", KARPC_EXE,
                    KARP_SOURCE_DIR);
    ck_assert_msg(r.status == 0, "%s", r.err);
    Parts one = partitions(r.out);
    kp_test_run_free(&r);
    ck_assert_int_eq(one.n, 1);
    ck_assert_int_eq(one.insts[0], sum);
}
END_TEST

/* bench/compile_ab.sh, the compile-time comparison of two builds
 * (docs/bench.md), run here with this build as both */
START_TEST(compile_ab_script)
{
    KpRun r = kp_test_run("%s/bench/compile_ab.sh %s %s %sdead_branch.json 2", KARP_SOURCE_DIR,
                          KARP_BINARY_DIR, KARP_BINARY_DIR, GOLDEN);
    ck_assert_msg(r.status == 0, "%s", r.err);
    double ma = 0, mb = 0, ratio = 0;
    const char *a = strstr(r.out, "A "), *b = strstr(r.out, "\nB "), *q = strstr(r.out, "B / A: ");
    ck_assert_msg(a && b && q, "%s", r.out);
    ck_assert_int_eq(sscanf(strstr(a, "median "), "median %lf ms", &ma), 1);
    ck_assert_int_eq(sscanf(strstr(b, "median "), "median %lf ms", &mb), 1);
    ck_assert_int_eq(sscanf(q, "B / A: %lf", &ratio), 1);
    ck_assert(ma > 0 && mb > 0 && ratio > 0);
    ck_assert_double_eq_tol(ratio, mb / ma, 0.006);
    /* the median of the two rounds' ratios: the lower one */
    double xa[2], xb[2], within = 0;
    ck_assert_int_eq(sscanf(strstr(a, "runs:"), "runs: %lf %lf", &xa[0], &xa[1]), 2);
    ck_assert_int_eq(sscanf(strstr(b, "runs:"), "runs: %lf %lf", &xb[0], &xb[1]), 2);
    const char *w = strstr(r.out, "B / A within a round: median ");
    ck_assert_msg(w, "%s", r.out);
    ck_assert_int_eq(sscanf(w, "B / A within a round: median %lf", &within), 1);
    ck_assert_double_eq_tol(within, fmin(xb[0] / xa[0], xb[1] / xa[1]), 0.006);
    kp_test_run_free(&r);
    r = kp_test_run("%s/bench/compile_ab.sh %s", KARP_SOURCE_DIR, KARP_BINARY_DIR);
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "usage: bench/compile_ab.sh A_BUILD_DIR B_BUILD_DIR MODEL [ROUNDS]\n");
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
    tcase_add_test(t, partitions_shrink);
    tcase_add_test(t, compile_ab_script);
    tcase_add_test(t, dump_after_text_and_dot);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
