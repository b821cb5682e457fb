/*
 * karpc bench end to end on a tiny model, with two timed calls per kernel
 * (--repeats 2): the command succeeds, its JSON parses and lists every
 * kernel the infer and train_step entries call, with positive times and
 * the documented fields; text output; --peers with or without the peers
 * installed; the exact error messages.  No assertion on the times
 * themselves: the machine is shared.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "testutil.h"

static const char tiny[] =
    "{\"karp\": 1, \"name\": \"tiny\", \"input\": {\"shape\": [1, 8, 8]},\n"
    " \"layers\": [{\"type\": \"conv2d\", \"filters\": 4, \"kernel\": 3, \"activation\": \"relu\"},\n"
    "            {\"type\": \"maxpool2d\", \"size\": 2}, {\"type\": \"flatten\"},\n"
    "            {\"type\": \"dense\", \"units\": 16, \"activation\": \"relu\"},\n"
    "            {\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"dense\", \"units\": 5}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.001},\n"
    " \"batch\": 4, \"seed\": 1}\n";

/* A first layer of 640 k floats (10 MB with its gradient and adam's
 * state, more than the L2 of any two cores): folded at batch 1. */
static const char wide[] =
    "{\"karp\": 1, \"name\": \"wide\", \"input\": {\"shape\": [20000]},\n"
    " \"layers\": [{\"type\": \"dense\", \"units\": 32, \"activation\": \"relu\"},\n"
    "            {\"type\": \"dense\", \"units\": 5}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.001},\n"
    " \"batch\": 1, \"seed\": 1}\n";

/* batchnorm (its running statistics updated in place), a residual add,
 * relu, dropout and momentum: kernels that read what they write. */
static const char residual[] =
    "{\"karp\": 1, \"name\": \"res\", \"input\": {\"shape\": [2, 8, 8]},\n"
    " \"nodes\": [\n"
    "  {\"name\": \"c0\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": 4, \"kernel\": 3, \"padding\": \"same\", \"bias\": false},\n"
    "  {\"name\": \"bn0\", \"type\": \"batchnorm\", \"input\": \"c0\"},\n"
    "  {\"name\": \"r0\", \"type\": \"relu\", \"input\": \"bn0\"},\n"
    "  {\"name\": \"c1\", \"type\": \"conv2d\", \"input\": \"r0\", \"filters\": 4, \"kernel\": 3, \"padding\": \"same\", \"bias\": false},\n"
    "  {\"name\": \"bn1\", \"type\": \"batchnorm\", \"input\": \"c1\"},\n"
    "  {\"name\": \"sum\", \"type\": \"add\", \"inputs\": [\"bn1\", \"r0\"]},\n"
    "  {\"name\": \"r1\", \"type\": \"relu\", \"input\": \"sum\"},\n"
    "  {\"name\": \"f\", \"type\": \"flatten\", \"input\": \"r1\"},\n"
    "  {\"name\": \"drop\", \"type\": \"dropout\", \"input\": \"f\", \"rate\": 0.25},\n"
    "  {\"name\": \"head\", \"type\": \"dense\", \"input\": \"drop\", \"units\": 3}],\n"
    " \"output\": \"head\",\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"momentum\", \"lr\": 0.1, \"beta\": 0.9},\n"
    " \"batch\": 4, \"seed\": 1}\n";

static char *dir, *model;

static void setup(void)
{
    dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    model = kp_test_path(dir, "tiny.json");
    ck_assert_int_eq(kp_test_write_file(model, tiny), 0);
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
    free(model);
}

/* Whether the group of node i has INPUT_GRAD members that run among the
 * BACKWARD nodes: entries without dx call its .nodx function. */
static bool has_dx_members(const KpGraph *g, int i)
{
    for (int j = i; j < g->nnodes && g->nodes[j]->group == g->nodes[i]->group; j++)
        if (g->nodes[j]->phase == KP_PHASE_INPUT_GRAD &&
            kp_node_run_phase(g, g->nodes[j]) == KP_PHASE_BACKWARD)
            return true;
    return false;
}

/* The names of the kernels entry calls, in order, one per line:
 * "<prefix>.group<k>" for a group of nodes (passes/group.c; ".nodx"
 * after it when it has members that need dx, which the entries benched
 * do not compute), else "<prefix>.node<id>.<op>" for its nodes (in the
 * phases given) that have code. */
static void expected_kernels(const KpGraph *g, const char *prefix, unsigned phases, char *buf,
                             size_t cap)
{
    buf[0] = '\0';
    for (int i = 0; i < g->nnodes; i++) {
        const KpNode *nd = g->nodes[i];
        if (!(phases & (1u << nd->phase)))
            continue;
        if (kp_op_is_view(nd->op) && nd->out->storage == nd->in[0]->storage &&
            nd->out->offset == nd->in[0]->offset)
            continue;
        size_t len = strlen(buf);
        if (nd->group > 0 && i > 0 && g->nodes[i - 1]->group == nd->group)
            continue;
        if (nd->group > 0)
            snprintf(buf + len, cap - len, "%s.group%d%s\n", prefix, nd->group,
                     has_dx_members(g, i) ? ".nodx" : "");
        else
            snprintf(buf + len, cap - len, "%s.node%d.%s\n", prefix, nd->id, kp_op_name(nd->op));
    }
}

static double number(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number '%s'", key);
    return v->valuedouble;
}

static const char *string(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsString(v), "no string '%s'", key);
    return v->valuestring;
}

static void check_times(const cJSON *o, const char *key, int calls)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsObject(t), "no '%s'", key);
    ck_assert(number(t, "median_s") > 0);
    ck_assert(number(t, "best_s") > 0 && number(t, "best_s") <= number(t, "median_s"));
    ck_assert_int_eq((int)number(t, "calls"), calls);
}

/* Every kernel of graph entry, in the entry's order, with its fields. */
static void check_graph(const cJSON *graph, const char *entry, const char *want)
{
    ck_assert_str_eq(string(graph, "entry"), entry);
    ck_assert_int_eq((int)number(graph, "n"), 4);
    char got[8192] = "";
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(graph, "kernels"))
    {
        size_t len = strlen(got);
        snprintf(got + len, sizeof got - len, "%s\n", string(k, "kernel"));
        string(k, "layer");
        string(k, "ops");
        string(k, "shape");
        ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(k, "nodes")));
        ck_assert(number(k, "flops") >= 0 && number(k, "bytes") > 0);
        check_times(k, "gen", 2);
        check_times(k, "ref", 2);
        check_times(k, "in_step", 2);   /* one call in each of 2 whole replays */
        ck_assert(number(k, "speedup") > 0 && number(k, "gbs") > 0 && number(k, "pct_peak") > 0);
        const char *bound = string(k, "bound");
        ck_assert(strcmp(bound, "flop") == 0 || strcmp(bound, "mem") == 0);
    }
    ck_assert_str_eq(got, want);
    const cJSON *whole = cJSON_GetObjectItemCaseSensitive(graph, "whole");
    check_times(graph, "whole", 2);
    ck_assert(number(whole, "samples_per_s") > 0);
    check_times(graph, "in_step_total", 2);
}

START_TEST(json_lists_every_kernel)
{
    KpRun r = kp_test_run("%s bench %s --repeats 2 --threads 2 --json", KARPC_EXE, model);
    ck_assert_msg(r.status == 0, "karpc bench: %s", r.err);
    cJSON *doc = cJSON_Parse(r.out);
    ck_assert_msg(doc != NULL, "not JSON:\n%s", r.out);
    ck_assert_str_eq(string(doc, "name"), "tiny");
    ck_assert_int_eq((int)number(doc, "batch"), 4);
    ck_assert(number(doc, "compile_s") > 0);
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(doc, "machine");
    ck_assert(number(mc, "peak_gflops") > 0 && number(mc, "triad_gbs") > 0);
    ck_assert(number(mc, "copy_gbs") > 0 && number(mc, "cores") >= 1);
    ck_assert_int_eq((int)number(mc, "threads"), 2);
    string(mc, "cpu");
    /* where the first two cores sit: a round trip of a cache line, some
     * tens to some hundreds of ns on a quiet machine (far more when a
     * test beside takes a core; absent with one processor) */
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
        for (int i = 0; i < 2; i++) {
            double ns = number(mc, i ? "round_trip_ns_end" : "round_trip_ns_start");
            ck_assert_msg(ns > 1 && ns < 1e9, "round trip %g ns", ns);
        }

    KpProgram p;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_msg(kp_build_program(model, NULL, 0, &p, &d) == 0, "%s", d.msg);
    char want[8192];
    const cJSON *graphs = cJSON_GetObjectItemCaseSensitive(doc, "graphs");
    ck_assert_int_eq(cJSON_GetArraySize(graphs), 2);
    expected_kernels(p.infer, "infer", 1u << KP_PHASE_FORWARD, want, sizeof want);
    check_graph(cJSON_GetArrayItem(graphs, 0), "infer", want);
    expected_kernels(p.train, "train",
                     1u << KP_PHASE_FORWARD | 1u << KP_PHASE_LOSS | 1u << KP_PHASE_BACKWARD |
                         1u << KP_PHASE_UPDATE,
                     want, sizeof want);
    ck_assert_ptr_nonnull(strstr(want, "adam_update"));
    ck_assert_ptr_nonnull(strstr(want, "train.group"));     /* a kernel of several nodes */
    check_graph(cJSON_GetArrayItem(graphs, 1), "train_step", want);
    /* 2 threads allowed: the steps the runtime ran on one are counted */
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(graphs, 1), "whole");
    double one = number(step, "one_thread_calls");
    ck_assert(one >= 0 && one <= number(step, "calls"));
    kp_program_free(&p);
    cJSON_Delete(doc);
    kp_test_run_free(&r);
}
END_TEST

/* The replay_state_crc32c of each entry of `karpc bench FILE --repeats R`. */
static void replay_crcs(const char *file, int repeats, char crc[2][16])
{
    KpRun r = kp_test_run("%s bench %s --repeats %d --threads 2 --json", KARPC_EXE, file, repeats);
    ck_assert_msg(r.status == 0, "karpc bench: %s", r.err);
    cJSON *doc = cJSON_Parse(r.out);
    ck_assert_msg(doc != NULL, "not JSON:\n%s", r.out);
    const cJSON *graphs = cJSON_GetObjectItemCaseSensitive(doc, "graphs");
    ck_assert_int_eq(cJSON_GetArraySize(graphs), 2);
    for (int g = 0; g < 2; g++) {
        const char *c = string(cJSON_GetArrayItem(graphs, g), "replay_state_crc32c");
        ck_assert_int_eq((int)strlen(c), 8);
        snprintf(crc[g], 16, "%s", c);
    }
    cJSON_Delete(doc);
    kp_test_run_free(&r);
}

/* Each kernel's timed calls start from the state before its first one:
 * the parameters, gradients, optimizer state and outputs after the replay
 * are the same with 1 call a kernel as with 4 (batchnorm's running
 * statistics, momentum, gradients added into, an in-place relu), the
 * buffers put back by two threads, each its share of 256-byte items
 * (dW of 1024 floats: 16 items; a bias of 16 floats: one short item). */
START_TEST(replay_leaves_one_calls_state)
{
    char *file = kp_test_path(dir, "res.json");
    ck_assert_int_eq(kp_test_write_file(file, residual), 0);
    const char *files[2] = {model, file};
    for (int f = 0; f < 2; f++) {
        char one[2][16], four[2][16];
        replay_crcs(files[f], 1, one);
        replay_crcs(files[f], 4, four);
        for (int g = 0; g < 2; g++)
            ck_assert_msg(strcmp(one[g], four[g]) == 0, "%s, %s: state after 1 call a kernel %s, after 4 %s",
                          files[f], g ? "train_step" : "infer", one[g], four[g]);
    }
    free(file);
}
END_TEST

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* At batch 1 train_step folds adam into the first layer's weight gradient
 * (backend/fold_update.c), not into the head's (1.3 KB, in L2): the
 * listing shows the folded kernel, the rest of the update, and the first
 * layer's bias gradient as a kernel of its own: the weight gradient
 * (5 MB of dW read and written) is too large for a group
 * (kp_group_too_large), so no group is left to run without it (.step). */
START_TEST(batch1_lists_the_folded_update)
{
    char *path = kp_test_path(dir, "wide.json");
    ck_assert_int_eq(kp_test_write_file(path, wide), 0);
    KpRun r = kp_test_run("%s bench %s --repeats 2 --json", KARPC_EXE, path);
    ck_assert_msg(r.status == 0, "karpc bench: %s", r.err);
    cJSON *doc = cJSON_Parse(r.out);
    ck_assert_msg(doc != NULL, "not JSON:\n%s", r.out);
    const cJSON *step = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "graphs"), 1);
    ck_assert_str_eq(string(step, "entry"), "train_step");
    int folded = 0, rest = 0, step_groups = 0, bias = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(step, "kernels"))
    {
        const char *name = string(k, "kernel");
        if (ends_with(name, ".dense_grad_w.adam_update")) {
            folded++;
            ck_assert_str_eq(string(k, "ops"), "dense_grad_w,adam_update");
            ck_assert(number(k, "flops") > 0 && number(k, "bytes") > 0);
        }
        rest += ends_with(name, ".adam_update.rest");
        step_groups += ends_with(name, ".step");
        bias += strcmp(string(k, "ops"), "bias_grad") == 0;
    }
    ck_assert_int_eq(folded, 1);
    ck_assert_int_eq(rest, 1);
    ck_assert_int_eq(step_groups, 0);
    ck_assert_int_eq(bias, 1);
    cJSON_Delete(doc);
    kp_test_run_free(&r);
    free(path);
}
END_TEST

START_TEST(text_and_peers)
{
    KpRun r = kp_test_run("%s bench %s --repeats 1 --batch 2", KARPC_EXE, model);
    ck_assert_msg(r.status == 0, "karpc bench: %s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "batch 2,"));
    ck_assert_ptr_nonnull(strstr(r.out, "train_step (n = 2)"));
    ck_assert_ptr_nonnull(strstr(r.out, "whole entries"));
    ck_assert_ptr_nonnull(strstr(r.out, "in step us"));
    ck_assert_ptr_nonnull(strstr(r.out, "with nothing put back (median of 1)"));
    ck_assert_ptr_nonnull(strstr(r.out, "dense+relu"));
    kp_test_run_free(&r);

    /* with or without OpenBLAS and oneDNN on the machine.  Not leak-checked:
     * in the sanitizer build LeakSanitizer's exit-time tracer once crashed
     * here ("Tracer caught signal 11"), an intermittent failure of the
     * sanitizer runtime with the peers' thread pools alive; the run above
     * checks karpc bench's own allocations. */
    r = kp_test_run("ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" %s bench %s --repeats 1 --peers "
                    "--json", KARPC_EXE, model);
    ck_assert_msg(r.status == 0, "karpc bench --peers: %s", r.err);
    cJSON *doc = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(doc);
    const cJSON *libs = cJSON_GetObjectItemCaseSensitive(doc, "peer_libs");
    ck_assert(cJSON_IsObject(libs));
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(libs, "openblas"));
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(libs, "onednn"));
    cJSON_Delete(doc);
    kp_test_run_free(&r);

    r = kp_test_run("%s bench %s --repeats 1 --no-kernels --json", KARPC_EXE, model);
    ck_assert_msg(r.status == 0, "karpc bench --no-kernels: %s", r.err);
    doc = cJSON_Parse(r.out);
    ck_assert_ptr_nonnull(doc);
    const cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "graphs"), 1);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g, "kernels")), 0);
    check_times(g, "whole", 1);
    cJSON_Delete(doc);
    kp_test_run_free(&r);
}
END_TEST

static void expect_error(const char *args, const char *message)
{
    KpRun r = kp_test_run("cd %s && %s bench %s", dir, KARPC_EXE, args);
    char *line = kp_test_first_line(r.err);
    ck_assert_msg(r.status == 1, "karpc bench %s: status %d, stderr: %s", args, r.status, r.err);
    ck_assert_msg(strcmp(line, message) == 0, "karpc bench %s:\n  expected: %s\n  got:      %s",
                  args, message, line);
    free(line);
    kp_test_run_free(&r);
}

START_TEST(errors)
{
    expect_error("", "karpc: bench: no model given (model.json)");
    expect_error("tiny.json --frob", "karpc: bench: unknown option '--frob' (karpc --help lists them)");
    expect_error("tiny.json --batch 0", "karpc: --batch expects an integer between 1 and 65536, got '0'");
    expect_error("tiny.json --threads x", "karpc: --threads expects an integer between 1 and 1024, got 'x'");
    expect_error("tiny.json --repeats", "karpc: --repeats needs a value");
    expect_error("tiny.json other.json", "karpc: bench: one model at a time: 'tiny.json' and 'other.json'");
    expect_error("missing.json", "karpc: missing.json: cannot open: No such file or directory");
    expect_error("tiny.so", "karpc: bench: 'tiny.so' is not a model file: karpc bench compiles "
                            "model.json itself, to reach each kernel");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bench");
    TCase *tc = tcase_create("bench");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, json_lists_every_kernel);
    tcase_add_test(tc, text_and_peers);
    tcase_add_test(tc, batch1_lists_the_folded_update);
    tcase_add_test(tc, replay_leaves_one_calls_state);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
