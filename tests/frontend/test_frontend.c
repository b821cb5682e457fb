/*
 * test_frontend.c — model.json parsing and validation.
 *
 * Every file of tests/frontend/bad/ must fail with exactly the message
 * listed for it in bad/expected.txt ("<file>\t<message>"); the good files
 * and examples/fashion_mlp.json must parse to the values and defaults
 * checked here.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/spec.h"
#include "testutil.h"

#define BAD_DIR KARP_SOURCE_DIR "/tests/frontend/bad"
#define GOOD_DIR KARP_SOURCE_DIR "/tests/frontend/good"

typedef struct Parsed {
    KpArena arena;
    KpDiag diag;
    KpModelSpec *spec;
    int rc;
} Parsed;

static void parse_file(Parsed *r, const char *path)
{
    kp_arena_init(&r->arena);
    kp_diag_init(&r->diag);
    r->rc = kp_frontend_parse_file(path, &r->arena, &r->spec, &r->diag);
}

static void parse_text(Parsed *r, const char *file, const char *text)
{
    kp_arena_init(&r->arena);
    kp_diag_init(&r->diag);
    r->rc = kp_frontend_parse_text(file, text, strlen(text), &r->arena, &r->spec, &r->diag);
}

static void parsed_free(Parsed *r)
{
    kp_arena_free(&r->arena);
}

static const KpLayerSpec *layer(const Parsed *r, int i)
{
    ck_assert_int_lt(i, r->spec->nlayers);
    return &r->spec->layers[i];
}

START_TEST(test_bad_files)
{
    ck_assert_int_eq(chdir(BAD_DIR), 0);
    FILE *f = fopen("expected.txt", "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    int n = 0, failures = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *tab = strchr(line, '\t');
        if (!line[0] || line[0] == '#')
            continue;
        ck_assert_msg(tab, "expected.txt: no tab in '%s'", line);
        *tab = '\0';
        Parsed r;
        parse_file(&r, line);
        if (r.rc != -1 || strcmp(r.diag.msg, tab + 1) != 0 || r.spec) {
            fprintf(stderr, "FAIL %s\n  want: %s\n  got:  %s (rc %d)\n", line, tab + 1,
                    r.diag.msg, r.rc);
            failures++;
        }
        ck_assert_msg(!strchr(r.diag.msg, '\n'), "%s: message spans lines", line);
        parsed_free(&r);
        n++;
    }
    fclose(f);
    ck_assert_msg(failures == 0, "%d of %d bad files gave another message (see stderr)", failures,
                  n);
    ck_assert_int_ge(n, 45);
}
END_TEST

/* Every .json file of bad/ is listed in expected.txt, so none is silently skipped. */
START_TEST(test_bad_files_all_listed)
{
    ck_assert_int_eq(chdir(BAD_DIR), 0);
    FILE *f = fopen("expected.txt", "r");
    ck_assert_ptr_nonnull(f);
    static char listed[1 << 16];
    size_t len = fread(listed + 1, 1, sizeof listed - 2, f);
    listed[0] = '\n';
    listed[len + 1] = '\0';
    fclose(f);
    DIR *dir = opendir(".");
    ck_assert_ptr_nonnull(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        char key[300];
        snprintf(key, sizeof key, "\n%s\t", e->d_name);
        ck_assert_msg(strstr(listed, key), "bad/%s has no line in expected.txt", e->d_name);
        n++;
    }
    closedir(dir);
    ck_assert_int_ge(n, 45);
}
END_TEST

START_TEST(test_fashion_example)
{
    Parsed r;
    parse_file(&r, KARP_SOURCE_DIR "/examples/fashion_mlp.json");
    ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
    const KpModelSpec *s = r.spec;
    ck_assert_str_eq(s->name, "fashion_mlp");
    ck_assert_int_eq(s->input_rank, 3);
    ck_assert_int_eq(s->input_shape[0], 1);
    ck_assert_int_eq(s->input_shape[1], 28);
    ck_assert_int_eq(s->input_shape[2], 28);
    ck_assert(!s->graph_form);
    ck_assert_int_eq(s->nlayers, 3);
    ck_assert_int_eq(layer(&r, 0)->type, KP_LAYER_FLATTEN);
    ck_assert_str_eq(layer(&r, 0)->name, "flatten0");
    ck_assert_str_eq(layer(&r, 1)->name, "dense1");
    ck_assert_str_eq(layer(&r, 1)->where, "layers[1]");
    ck_assert_int_eq(layer(&r, 1)->attr.units, 128);
    ck_assert_int_eq(layer(&r, 1)->activation, KP_ACT_RELU);
    ck_assert(layer(&r, 1)->attr.has_bias);
    ck_assert(!layer(&r, 1)->has_init);
    ck_assert_int_eq(layer(&r, 1)->line, 7);
    ck_assert_int_eq(layer(&r, 1)->ninputs, 0);
    ck_assert_ptr_null(layer(&r, 1)->inputs);
    ck_assert_str_eq(layer(&r, 2)->name, "head");
    ck_assert_int_eq(layer(&r, 2)->attr.units, 10);
    ck_assert_int_eq(layer(&r, 2)->activation, KP_ACT_NONE);
    ck_assert_int_eq(s->loss, KP_LOSS_CROSS_ENTROPY);
    ck_assert_int_eq(s->optimizer, KP_OPTIM_ADAM);
    ck_assert_float_eq(s->lr, 0.0005f);
    ck_assert_float_eq(s->beta1, 0.9f);
    ck_assert_float_eq(s->beta2, 0.999f);
    ck_assert_float_eq(s->eps, 1e-8f);
    ck_assert_int_eq(s->batch, 16);
    ck_assert_uint_eq(s->seed, 1);
    ck_assert(s->train.present);
    ck_assert_int_eq(s->train.epochs, 5);
    ck_assert_int_eq(s->train.nmean, 1);
    ck_assert_float_eq(s->train.mean[0], 0.286f);
    ck_assert_float_eq(s->train.std[0], 0.353f);
    ck_assert_str_eq(s->file, KARP_SOURCE_DIR "/examples/fashion_mlp.json");
    parsed_free(&r);
}
END_TEST

START_TEST(test_good_mlp_defaults)
{
    Parsed r;
    parse_file(&r, GOOD_DIR "/mlp.json");
    ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
    const KpModelSpec *s = r.spec;
    ck_assert_str_eq(s->name, "mlp");
    ck_assert_int_eq(s->input_rank, 1);
    ck_assert_int_eq(s->input_shape[0], 784);
    ck_assert_int_eq(s->batch, 64);
    ck_assert_uint_eq(s->seed, 0);
    ck_assert_int_eq(s->nlayers, 5);
    const char *names[] = {"dense0", "dropout1", "dense2", "batchnorm3", "logits"};
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(layer(&r, i)->name, names[i]);
    ck_assert(layer(&r, 0)->has_init);
    ck_assert_int_eq(layer(&r, 0)->init, KP_INIT_HE);
    ck_assert_float_eq(layer(&r, 1)->attr.rate, 0.25f);
    ck_assert_int_eq(layer(&r, 2)->activation, KP_ACT_LEAKY_RELU);
    ck_assert_float_eq(layer(&r, 2)->act_alpha, 0.01f);
    ck_assert(!layer(&r, 2)->attr.has_bias);
    ck_assert_float_eq(layer(&r, 3)->attr.momentum, 0.1f);
    ck_assert_float_eq(layer(&r, 3)->attr.eps, 1e-5f);
    ck_assert_int_eq(s->loss, KP_LOSS_MSE);
    ck_assert_int_eq(s->optimizer, KP_OPTIM_MOMENTUM);
    ck_assert_float_eq(s->lr, 0.05f);
    ck_assert_float_eq(s->beta, 0.9f);
    parsed_free(&r);
}
END_TEST

START_TEST(test_good_cnn_every_layer)
{
    Parsed r;
    parse_file(&r, GOOD_DIR "/cnn_all.json");
    ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
    const KpModelSpec *s = r.spec;
    ck_assert_int_eq(s->nlayers, 18);
    const KpAttrs *c0 = &layer(&r, 0)->attr;
    ck_assert_int_eq(c0->filters, 16);
    ck_assert_int_eq(c0->kernel[0], 3);
    ck_assert_int_eq(c0->kernel[1], 3);
    ck_assert_int_eq(c0->stride[0], 1);
    ck_assert_int_eq(c0->dilation[1], 1);
    ck_assert_int_eq(c0->pad_mode, KP_PAD_SAME);
    ck_assert(c0->has_bias);
    ck_assert_float_eq(layer(&r, 1)->attr.momentum, 0.2f);
    ck_assert_float_eq(layer(&r, 1)->attr.eps, 0.001f);
    const KpAttrs *p2 = &layer(&r, 2)->attr;
    ck_assert_int_eq(p2->kernel[0], 2);
    ck_assert_int_eq(p2->stride[0], 2);
    ck_assert_int_eq(p2->stride[1], 2);
    ck_assert_int_eq(p2->padding[0], 0);
    const KpLayerSpec *c3 = layer(&r, 3);
    ck_assert_str_eq(c3->name, "conv_b");
    ck_assert_int_eq(c3->attr.kernel[0], 3);
    ck_assert_int_eq(c3->attr.kernel[1], 5);
    ck_assert_int_eq(c3->attr.stride[0], 1);
    ck_assert_int_eq(c3->attr.stride[1], 2);
    ck_assert_int_eq(c3->attr.pad_mode, KP_PAD_EXPLICIT);
    ck_assert_int_eq(c3->attr.padding[0], 1);
    ck_assert_int_eq(c3->attr.padding[1], 2);
    ck_assert_int_eq(c3->attr.dilation[0], 2);
    ck_assert(!c3->attr.has_bias);
    ck_assert_int_eq(c3->init, KP_INIT_XAVIER);
    ck_assert_int_eq(c3->line, 9);
    ck_assert_int_eq(layer(&r, 4)->attr.stride[0], 1);
    ck_assert_int_eq(layer(&r, 4)->attr.padding[1], 1);
    const KpLayerSpec *t5 = layer(&r, 5);
    ck_assert_int_eq(t5->type, KP_LAYER_CONV2D_TRANSPOSE);
    ck_assert_int_eq(t5->attr.output_padding[0], 1);
    ck_assert_int_eq(t5->activation, KP_ACT_TANH);
    ck_assert_int_eq(t5->init, KP_INIT_ZEROS);
    ck_assert_float_eq(layer(&r, 9)->attr.alpha, 0.2f);
    ck_assert_int_eq(layer(&r, 10)->attr.pad_mode, KP_PAD_VALID);
    ck_assert_float_eq(layer(&r, 12)->attr.value, -1.0f);
    ck_assert_int_eq(layer(&r, 13)->attr.reshape_rank, 2);
    ck_assert_int_eq(layer(&r, 13)->attr.reshape_dims[0], 4);
    ck_assert_int_eq(layer(&r, 13)->attr.reshape_dims[1], -1);
    ck_assert_float_eq(layer(&r, 15)->attr.rate, 0.0f);
    ck_assert_str_eq(layer(&r, 17)->name, "softmax17");
    ck_assert_int_eq(s->loss, KP_LOSS_BCE);
    ck_assert_int_eq(s->optimizer, KP_OPTIM_SGD);
    ck_assert_float_eq(s->weight_decay, 0.0005f);
    ck_assert_int_eq(s->batch, 128);
    ck_assert_uint_eq(s->seed, 42);
    const KpTrainSpec *t = &s->train;
    ck_assert(t->present);
    ck_assert_int_eq(t->epochs, 5);
    ck_assert_int_eq(t->nmean, 3);
    ck_assert_float_eq(t->mean[2], 0.3f);
    ck_assert_int_eq(t->nstd, 1);
    ck_assert_float_eq(t->std[0], 0.25f);
    ck_assert_int_eq(t->naugment, 4);
    ck_assert_str_eq(t->augment[0].type, "hflip");
    ck_assert_int_eq(t->augment[1].padding, 4);
    ck_assert_float_eq(t->augment[2].degrees, 15.0f);
    ck_assert_float_eq(t->augment[3].std, 0.1f);
    parsed_free(&r);
}
END_TEST

START_TEST(test_good_graph)
{
    Parsed r;
    parse_file(&r, GOOD_DIR "/residual-graph.json");
    ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
    const KpModelSpec *s = r.spec;
    ck_assert_str_eq(s->name, "residual_graph");
    ck_assert(s->graph_form);
    ck_assert_str_eq(s->output, "out");
    ck_assert_int_eq(s->nlayers, 4);
    const KpLayerSpec *out = layer(&r, 0);
    ck_assert_str_eq(out->name, "out");
    ck_assert_str_eq(out->where, "nodes[0]");
    ck_assert_int_eq(out->type, KP_LAYER_CONCAT);
    ck_assert_int_eq(out->ninputs, 2);
    ck_assert_str_eq(out->inputs[0], "sum");
    ck_assert_str_eq(out->inputs[1], "c1");
    ck_assert_int_eq(out->attr.axis, 0);
    ck_assert_int_eq(layer(&r, 1)->ninputs, 1);
    ck_assert_str_eq(layer(&r, 1)->inputs[0], "input");
    ck_assert_str_eq(layer(&r, 2)->inputs[0], "c1");
    ck_assert_int_eq(layer(&r, 3)->type, KP_LAYER_ADD);
    ck_assert_str_eq(layer(&r, 3)->inputs[1], "input");
    ck_assert_int_eq(s->loss, KP_LOSS_NONE);
    ck_assert_int_eq(s->optimizer, KP_OPTIM_NONE);
    parsed_free(&r);
}
END_TEST

START_TEST(test_text_defaults)
{
    Parsed r;
    parse_text(&r, "some/dir/3d-model.v1.json",
               "{\"karp\": 1, \"input\": {\"shape\": [4]}, \"layers\": [{\"type\": \"relu\"}],"
               " \"loss\": \"bce_logits\", \"seed\": 9007199254740992}");
    ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
    ck_assert_str_eq(r.spec->name, "_3d_model_v1");
    ck_assert_int_eq(r.spec->loss, KP_LOSS_BCE_LOGITS);
    ck_assert_int_eq(r.spec->optimizer, KP_OPTIM_NONE);
    ck_assert_uint_eq(r.spec->seed, 9007199254740992ull);
    ck_assert_int_eq(layer(&r, 0)->line, 1);
    parsed_free(&r);

    parse_text(&r, "m.json", "\xEF\xBB\xBF{\"karp\": 1, \"input\": {\"shape\": [4]}, "
               "\"layers\": [{\"type\": \"relu\"}], \"name\": \"x\\u0079\"}");
    ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
    ck_assert_str_eq(r.spec->name, "xy");
    parsed_free(&r);
}
END_TEST

START_TEST(test_cannot_open)
{
    Parsed r;
    parse_file(&r, "/nonexistent/m.json");
    ck_assert_int_eq(r.rc, -1);
    ck_assert_ptr_null(r.spec);
    ck_assert_str_eq(r.diag.msg, "/nonexistent/m.json: cannot open: No such file or directory");
    parsed_free(&r);
}
END_TEST

START_TEST(test_name_tables)
{
    ck_assert_str_eq(kp_layer_type_name(KP_LAYER_DENSE), "dense");
    ck_assert_str_eq(kp_layer_type_name(KP_LAYER_CONV2D_TRANSPOSE), "conv2d_transpose");
    ck_assert_str_eq(kp_layer_type_name(KP_LAYER_CONCAT), "concat");
    ck_assert_str_eq(kp_layer_type_name(KP_LAYER_COUNT), "?");
    ck_assert_str_eq(kp_loss_name(KP_LOSS_NONE), "none");
    ck_assert_str_eq(kp_loss_name(KP_LOSS_CROSS_ENTROPY), "cross_entropy");
    ck_assert_str_eq(kp_loss_name(KP_LOSS_MSE), "mse");
    ck_assert_str_eq(kp_optim_name(KP_OPTIM_NONE), "none");
    ck_assert_str_eq(kp_optim_name(KP_OPTIM_ADAM), "adam");
}
END_TEST

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    char *copy = malloc(*len + 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, buf, *len);
    copy[*len] = '\0';
    return copy;
}

static void check_outcome(const char *text, size_t len)
{
    KpArena a;
    KpDiag d;
    KpModelSpec *s;
    kp_arena_init(&a);
    kp_diag_init(&d);
    int rc = kp_frontend_parse_text("f.json", text, len, &a, &s, &d);
    if (rc == 0)
        ck_assert_ptr_nonnull(s);
    else
        ck_assert_msg(strncmp(d.msg, "f.json", 6) == 0 && !strchr(d.msg, '\n'), "bad message '%s'",
                      d.msg);
    kp_arena_free(&a);
}

/* Every prefix of a good file, and every one-byte change of it, either
 * parses or fails with a one-line message: never a crash (run under ASan). */
START_TEST(test_truncations_and_mutations)
{
    size_t len;
    char *text = slurp(GOOD_DIR "/cnn_all.json", &len);
    for (size_t n = 0; n < len; n++) {
        char *prefix = malloc(n ? n : 1);
        memcpy(prefix, text, n);
        check_outcome(prefix, n);
        free(prefix);
    }
    static const char subst[] = "\"{}[],:0-9.eE \x01";
    for (size_t i = 0; i < len; i++) {
        char keep = text[i];
        for (const char *c = subst; *c; c++) {
            text[i] = *c;
            check_outcome(text, len);
        }
        text[i] = keep;
    }
    free(text);
}
END_TEST

/* A 20000-node graph: names resolve through the hash, the cycle search
 * does not recurse, and a long cycle's message stays one bounded line. */
START_TEST(test_large_graph)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 64 + 256, len = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    for (int cycle = 0; cycle < 2; cycle++) {
        len = (size_t)snprintf(text, cap, "{\"karp\": 1, \"input\": {\"shape\": [4]}, \"nodes\": [");
        for (int i = 0; i < N; i++) {
            char in[16];
            snprintf(in, sizeof in, i ? "n%d" : (cycle ? "n%d" : "input"), i ? i - 1 : N - 1);
            len += (size_t)snprintf(text + len, cap - len,
                                    "%s{\"name\": \"n%d\", \"type\": \"relu\", \"input\": \"%s\"}",
                                    i ? ", " : "", i, in);
        }
        len += (size_t)snprintf(text + len, cap - len, "], \"output\": \"n%d\"}", N - 1);
        Parsed r;
        kp_arena_init(&r.arena);
        kp_diag_init(&r.diag);
        r.rc = kp_frontend_parse_text("big.json", text, len, &r.arena, &r.spec, &r.diag);
        if (!cycle) {
            ck_assert_msg(r.rc == 0, "%s", r.diag.msg);
            ck_assert_int_eq(r.spec->nlayers, N);
        } else {
            ck_assert_int_eq(r.rc, -1);
            const char *want = "big.json: nodes[0] (n0): the inputs form a cycle: n0 -> n1 -> ";
            ck_assert_msg(strncmp(r.diag.msg, want, strlen(want)) == 0, "%s", r.diag.msg);
            ck_assert_msg(strstr(r.diag.msg, " -> ...") != NULL, "%s", r.diag.msg);
        }
        parsed_free(&r);
    }
    free(text);
}
END_TEST

static Suite *frontend_suite(void)
{
    Suite *s = suite_create("frontend");
    TCase *tc = tcase_create("parse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_bad_files_all_listed);
    tcase_add_test(tc, test_fashion_example);
    tcase_add_test(tc, test_good_mlp_defaults);
    tcase_add_test(tc, test_good_cnn_every_layer);
    tcase_add_test(tc, test_good_graph);
    tcase_add_test(tc, test_text_defaults);
    tcase_add_test(tc, test_cannot_open);
    tcase_add_test(tc, test_name_tables);
    tcase_add_test(tc, test_truncations_and_mutations);
    tcase_add_test(tc, test_large_graph);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(frontend_suite(), CK_FORK_GETENV);
}
