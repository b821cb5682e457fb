/*
 * test_golden_passes.c — golden IR dumps after each optimizing pass.
 *
 * For every model tests/passes/golden/<model>.json and every pass P of
 * simplify, fold, fusion, layout, group, memplan, the graphs printed right after
 * P (what `karpc <model>.json --dump-after=P` prints: the inference graph,
 * then the train graph when the model trains and its pipeline runs P) must
 * equal tests/passes/golden/<model>.<P>.ir byte for byte.  The graphs are
 * built as kp_build_program builds them: the file parsed once, lowered
 * twice, through kp_pipeline_infer and kp_pipeline_train with the default
 * options.
 *
 * KARP_UPDATE_GOLDEN=1 rewrites the .ir files from the current passes
 * instead; review the diff before committing it.
 *
 * Beside the goldens, the simplify models are checked for what simplify
 * reports and for the properties the dumps only show in passing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/spec.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

static const char *const models[] = {"dead_branch", "common_subexpr", "reshape_chain", "conv_bn",
                                     "residual_fuse"};
static const char *const passes[] = {"simplify", "fold", "fusion", "layout", "group", "memplan"};
enum { NMODELS = sizeof models / sizeof models[0], NPASSES = sizeof passes / sizeof passes[0] };

static char *model_path(const char *model)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s/tests/passes/golden/%s.json", KARP_SOURCE_DIR, model);
    return strdup(buf);
}

typedef struct Built {
    KpGraph *infer, *train;
    KpPassLog log;
} Built;

static void built_free(Built *b)
{
    kp_graph_free(b->train);
    kp_graph_free(b->infer);
}

/* Parse once, lower and run both pipelines with o (as kp_build_program);
 * a model that cannot train leaves b->train NULL. */
static void build(const char *model, KpPassOpts *o, Built *b)
{
    memset(b, 0, sizeof *b);
    o->log = &b->log;
    char *path = model_path(model);
    KpDiag d;
    kp_diag_init(&d);
    b->infer = kp_graph_new();
    ck_assert_ptr_nonnull(b->infer);
    KpModelSpec *spec = NULL;
    ck_assert_msg(kp_frontend_parse_file(path, &b->infer->arena, &spec, &d) == 0, "%s", d.msg);
    ck_assert_msg(kp_frontend_lower(spec, b->infer, &d) == 0, "%s", d.msg);
    ck_assert_msg(kp_pipeline_infer(b->infer, o, &d) == 0, "%s: %s", model, d.msg);
    b->train = kp_graph_new();
    ck_assert_ptr_nonnull(b->train);
    b->train->training = true;
    KpDiag td;
    kp_diag_init(&td);
    if (kp_frontend_lower(spec, b->train, &td) < 0 || kp_pipeline_train(b->train, o, &td) < 0) {
        kp_graph_free(b->train);
        b->train = NULL;
    }
    free(path);
}

static void check_golden(const char *model, const char *pass)
{
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);
    ck_assert_ptr_nonnull(f);
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.dump_after = pass;
    o.dump_to = f;
    Built b;
    build(model, &o, &b);
    fclose(f);
    built_free(&b);
    ck_assert_msg(len > 0, "%s: nothing printed after %s", model, pass);

    char expect[512];
    snprintf(expect, sizeof expect, "%s/tests/passes/golden/%s.%s.ir", KARP_SOURCE_DIR, model,
             pass);
    const char *update = getenv("KARP_UPDATE_GOLDEN");
    if (update && strcmp(update, "1") == 0)
        ck_assert_msg(kp_test_write_file(expect, got) == 0, "cannot write %s", expect);
    char *want = kp_test_read_file(expect, NULL);
    ck_assert_msg(want != NULL, "missing %s (run with KARP_UPDATE_GOLDEN=1)", expect);
    ck_assert_msg(strcmp(got, want) == 0, "%s differs from the IR printed after %s:\n%s", expect,
                  pass, got);
    free(want);
    free(got);
}

START_TEST(golden_after_pass)
{
    check_golden(models[_i / NPASSES], passes[_i % NPASSES]);
}
END_TEST

/* --- what simplify reports and keeps ------------------------------------- */

static const char *report(const Built *b, const char *graph, const char *pass)
{
    for (int i = 0; i < b->log.n; i++)
        if (strcmp(b->log.e[i].graph, graph) == 0 && strcmp(b->log.e[i].pass, pass) == 0)
            return b->log.e[i].what;
    ck_abort_msg("no %s run of %s in the log", graph, pass);
    return NULL;
}

static int count_op(const KpGraph *g, KpOp op)
{
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        k += g->nodes[i]->op == op;
    return k;
}

static bool names_node(const KpGraph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0)
            return true;
    return false;
}

static bool has_param(const KpGraph *g, const char *name)
{
    for (int i = 0; i < g->nvalues; i++)
        if (g->values[i]->role == KP_ROLE_PARAM && strcmp(g->values[i]->name, name) == 0)
            return true;
    return false;
}

START_TEST(simplify_dead_branch)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = o.fold = o.layout = false;   /* simplify's own effect, as the graph shows it */
    Built b;
    build("dead_branch", &o, &b);
    ck_assert_str_eq(report(&b, "infer", "simplify"),
                     "removed 4 dead nodes, merged 0 common subexpressions, "
                     "collapsed 0 reshape chains, bypassed 0 identities");
    /* the train graph loses the dead forward nodes, the batchnorm's
     * statistics update with them */
    ck_assert_str_eq(report(&b, "train", "simplify"),
                     "removed 5 dead nodes, merged 0 common subexpressions, "
                     "collapsed 0 reshape chains, bypassed 0 identities");
    ck_assert_int_eq(b.infer->nnodes, 3);
    ck_assert(!names_node(b.infer, "unused") && !names_node(b.train, "unused_bn"));
    ck_assert_int_eq(count_op(b.train, KP_OP_batchnorm_stats), 0);
    /* parameters stay, read or not: both graphs keep one layout */
    ck_assert(has_param(b.infer, "unused.weight") && has_param(b.train, "unused_bn.running_var"));
    ck_assert_int_eq(b.infer->param_floats, b.train->param_floats);
    for (int i = 0; i < b.train->nvalues; i++)
        ck_assert_int_eq(b.train->values[i]->id, i);
    built_free(&b);
}
END_TEST

START_TEST(simplify_common_subexpr)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = o.fold = o.layout = false;   /* simplify's own effect, as the graph shows it */
    Built b;
    build("common_subexpr", &o, &b);
    /* act_b = act_a, then pool_b = pool_a: sum reads one value twice */
    ck_assert_str_eq(report(&b, "infer", "simplify"),
                     "removed 2 dead nodes, merged 2 common subexpressions, "
                     "collapsed 0 reshape chains, bypassed 0 identities");
    ck_assert_int_eq(count_op(b.infer, KP_OP_relu), 1);
    ck_assert_int_eq(count_op(b.infer, KP_OP_maxpool2d), 1);
    const KpNode *sum = NULL;
    for (int i = 0; i < b.infer->nnodes; i++)
        if (b.infer->nodes[i]->op == KP_OP_add)
            sum = b.infer->nodes[i];
    ck_assert_ptr_nonnull(sum);
    ck_assert_ptr_eq(sum->in[0], sum->in[1]);
    ck_assert_int_eq(sum->in[0]->nusers, 1);
    /* the train graph also merges the two branches' identical gradients */
    ck_assert_str_eq(report(&b, "train", "simplify"),
                     "removed 4 dead nodes, merged 4 common subexpressions, "
                     "collapsed 0 reshape chains, bypassed 0 identities");
    ck_assert_int_eq(count_op(b.train, KP_OP_relu_grad), 1);
    ck_assert_int_eq(count_op(b.train, KP_OP_maxpool2d_grad), 1);
    built_free(&b);
}
END_TEST

START_TEST(simplify_reshape_chain)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = o.fold = o.layout = false;   /* simplify's own effect, as the graph shows it */
    Built b;
    build("reshape_chain", &o, &b);
    /* r1, r2, flat, same, back, flat2: one reshape of the input to [24] */
    ck_assert_int_eq(count_op(b.infer, KP_OP_reshape) + count_op(b.infer, KP_OP_flatten), 1);
    const KpNode *r = b.infer->nodes[0];
    ck_assert_int_eq(r->op, KP_OP_reshape);
    ck_assert_ptr_eq(r->in[0], b.infer->input);
    ck_assert_int_eq(r->attr.reshape_rank, 1);
    ck_assert_int_eq(r->attr.reshape_dims[0], 24);
    /* the input gradient is special: its reshape stays, one of it */
    ck_assert_int_eq(count_op(b.train, KP_OP_reshape) + count_op(b.train, KP_OP_flatten), 2);
    ck_assert_int_eq(b.train->d_input->producer->op, KP_OP_reshape);
    ck_assert_ptr_eq(b.train->d_input->producer->out, b.train->d_input);
    built_free(&b);
}
END_TEST

/* No change where there is nothing to simplify: the report says so. */
START_TEST(simplify_nothing)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.fuse = o.fold = o.layout = false;   /* simplify's own effect, as the graph shows it */
    Built b;
    build("residual_fuse", &o, &b);
    ck_assert_str_eq(report(&b, "infer", "simplify"),
                     "removed 0 dead nodes, merged 0 common subexpressions, "
                     "collapsed 0 reshape chains, bypassed 0 identities");
    ck_assert_int_eq(b.infer->nnodes, 9);
    built_free(&b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("golden_passes");
    TCase *t = tcase_create("golden");
    tcase_add_loop_test(t, golden_after_pass, 0, NMODELS * NPASSES);
    suite_add_tcase(s, t);
    t = tcase_create("simplify");
    tcase_add_test(t, simplify_dead_branch);
    tcase_add_test(t, simplify_common_subexpr);
    tcase_add_test(t, simplify_reshape_chain);
    tcase_add_test(t, simplify_nothing);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
