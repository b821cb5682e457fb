/*
 * The group pass (passes/group.c) and the input gradient: an INPUT_GRAD
 * kernel that reads only BACKWARD values joins the group of the BACKWARD
 * kernels of its level and runs among them, its INPUT_GRAD members only
 * when karp_backward is given dx; one that reads an INPUT_GRAD value stays
 * after the BACKWARD nodes.  Through the JIT, a grouped and an ungrouped
 * build give the same parameter gradients with and without dx, the same
 * dx and the same losses (bit for bit: a group computes what its members
 * compute apart).
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "include/karpc.h"
#include "ir/ir.h"
#include "numcheck.h"
#include "passes/passes.h"
#include "testutil.h"

#define N 3

static char *src_path(const char *rel)
{
    char *p = malloc(strlen(KARP_SOURCE_DIR) + strlen(rel) + 2);
    sprintf(p, "%s/%s", KARP_SOURCE_DIR, rel);
    return p;
}

static KpProgram build(const char *path, bool group, int64_t batch)
{
    KpPassOpts o;
    kp_pass_opts_init(&o);
    o.group = group;
    KpDiag d;
    kp_diag_init(&d);
    KpProgram p = {0};
    ck_assert_msg(kp_build_program(path, &o, batch, &p, &d) == 0, "%s", d.msg);
    ck_assert_ptr_nonnull(p.train);
    return p;
}

/* The first node of n's group. */
static const KpNode *leader(const KpGraph *g, const KpNode *n)
{
    int k = n->id;
    while (k > 0 && g->nodes[k - 1]->group == n->group)
        k--;
    return g->nodes[k];
}

/* fashion_cnn at batch 1: the first conv's input gradient reads the dy its
 * weight and bias gradients read, and runs in their group. */
START_TEST(input_grad_joins_backward_group)
{
    char *path = src_path("examples/fashion_cnn.json");
    KpProgram p = build(path, true, 1);
    const KpGraph *g = p.train;
    const KpNode *ig = g->d_input->producer;
    ck_assert_int_eq(ig->op, KP_OP_conv2d_grad_x);
    ck_assert_int_eq(ig->phase, KP_PHASE_INPUT_GRAD);
    ck_assert_int_gt(ig->group, 0);
    ck_assert_int_eq(kp_node_run_phase(g, ig), KP_PHASE_BACKWARD);
    const KpNode *first = leader(g, ig);
    ck_assert_int_eq(first->phase, KP_PHASE_BACKWARD);
    int members = 0;
    for (int k = first->id; k < g->nnodes && g->nodes[k]->group == ig->group; k++) {
        ck_assert_ptr_eq(g->nodes[k]->in[0], ig->in[0]);   /* all read the same dy */
        members++;
    }
    ck_assert_int_eq(members, 3);   /* conv2d_grad_w, bias_grad, conv2d_grad_x */
    int grouped = kp_graph_kernel_count(g);
    kp_program_free(&p);

    /* --no-group: the input gradient is a kernel of its own again */
    p = build(path, false, 1);
    ck_assert_int_eq(p.train->d_input->producer->group, 0);
    ck_assert_int_eq(kp_node_run_phase(p.train, p.train->d_input->producer),
                     KP_PHASE_INPUT_GRAD);
    ck_assert_int_gt(kp_graph_kernel_count(p.train), grouped);
    kp_program_free(&p);
    free(path);
}
END_TEST

/* At batch 64 the weight gradients of fashion_cnn's and resnet_cifar's
 * convolutions (3.2 ms and more estimated) are regions of their own
 * (kp_group_too_large: a fork and join saved is nothing to them); at
 * batch 1 those still estimated under 100 us (all of resnet_cifar's,
 * 50 us) are grouped again.  The head's small dense_grad_w stays grouped
 * at 64. */
START_TEST(large_kernels_stay_out)
{
    const char *rel[] = {"examples/fashion_cnn.json", "examples/resnet_cifar.json"};
    int large = 0, regrouped = 0;
    for (int i = 0; i < 2; i++) {
        char *path = src_path(rel[i]);
        KpProgram big = build(path, true, 64), small = build(path, true, 1);
        int head = 0;
        for (int k = 0; k < big.train->nnodes; k++) {
            const KpNode *n = big.train->nodes[k], *m = NULL;
            for (int j = 0; j < small.train->nnodes; j++)
                if (small.train->nodes[j]->op == n->op && strcmp(small.train->nodes[j]->name, n->name) == 0)
                    m = small.train->nodes[j];
            if (n->op == KP_OP_dense_grad_w && n->group > 0)
                head++;
            if (n->op != KP_OP_conv2d_grad_w)
                continue;
            ck_assert_msg(kp_group_too_large(big.train, n), "%s: %s", rel[i], n->name);
            ck_assert_msg(n->group == 0, "%s: conv2d_grad_w of %s grouped at batch 64", rel[i],
                          n->name);
            large++;
            ck_assert_ptr_nonnull(m);
            if (!kp_group_too_large(small.train, m)) {
                ck_assert_msg(m->group > 0, "%s: conv2d_grad_w of %s not grouped at batch 1",
                              rel[i], n->name);
                regrouped++;
            } else {
                ck_assert_int_eq(m->group, 0);
            }
        }
        ck_assert_int_eq(head, 1);
        kp_program_free(&big);
        kp_program_free(&small);
        free(path);
    }
    ck_assert_int_ge(large, 10);
    ck_assert_int_ge(regrouped, 8);
}
END_TEST

static const char *const fan_out_model =
    "{\"karp\": 1, \"name\": \"fan\", \"input\": {\"shape\": [6]},\n"
    " \"nodes\": [\n"
    "  {\"name\": \"a\", \"type\": \"dense\", \"input\": \"input\", \"units\": 5, "
    "\"activation\": \"relu\"},\n"
    "  {\"name\": \"b\", \"type\": \"dense\", \"input\": \"input\", \"units\": 5, "
    "\"activation\": \"tanh\"},\n"
    "  {\"name\": \"s\", \"type\": \"add\", \"inputs\": [\"a\", \"b\"]},\n"
    "  {\"name\": \"out\", \"type\": \"dense\", \"input\": \"s\", \"units\": 3}\n"
    " ],\n"
    " \"output\": \"out\", \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1},\n"
    " \"batch\": 4, \"seed\": 3}\n";

START_TEST(input_grad_of_input_grads_stays)
{
    char *dir = kp_test_tmpdir();
    char *path = kp_test_path(dir, "fan.json");
    ck_assert_int_eq(kp_test_write_file(path, fan_out_model), 0);
    KpProgram p = build(path, true, 0);
    const KpGraph *g = p.train;
    const KpNode *last = g->d_input->producer, *first = NULL;
    ck_assert_int_eq(last->phase, KP_PHASE_INPUT_GRAD);
    for (int i = 0; i < last->nin; i++)
        if (last->in[i]->producer && last->in[i]->producer->phase == KP_PHASE_INPUT_GRAD)
            first = last->in[i]->producer;
    ck_assert_ptr_nonnull(first);
    ck_assert_int_eq(last->group, 0);
    ck_assert_int_eq(kp_node_run_phase(g, last), KP_PHASE_INPUT_GRAD);
    int last_backward = -1;
    for (int k = 0; k < g->nnodes; k++)
        if (kp_node_run_phase(g, g->nodes[k]) == KP_PHASE_BACKWARD)
            last_backward = k;
    ck_assert_int_gt(last->id, last_backward);
    ck_assert_int_eq(first->op, KP_OP_dense_grad_x);
    ck_assert_int_gt(first->group, 0);
    ck_assert_int_eq(kp_node_run_phase(g, first), KP_PHASE_BACKWARD);
    kp_program_free(&p);
    kp_test_rmdir(dir);
    free(path), free(dir);
}
END_TEST

static karp_model *compile(const char *path, unsigned disable)
{
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.max_batch = 4;
    o.opt_level = 1;
    o.disable_passes = disable;
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    ck_assert_msg(m != NULL, "%s: %s", path, err.message);
    return m;
}

/* every trained parameter's gradient of a and b, bit for bit */
static void same_gradients(karp_model *a, karp_model *b, const char *what)
{
    int np = karp_param_count(a);
    for (int i = 0; i < np; i++) {
        karp_param pa, pb;
        ck_assert_int_eq(karp_param_get(a, i, &pa), 0);
        ck_assert_int_eq(karp_param_get(b, i, &pb), 0);
        if (pa.trainable)
            ck_assert_msg(memcmp(pa.grad, pb.grad, (size_t)pa.size * 4) == 0,
                          "%s: gradient of %s differs", what, pa.name);
    }
}

static const char *const models[] = {"examples/fashion_cnn.json", "examples/fashion_mlp.json",
                                     "tests/passes/golden/conv_bn.json", "tests/ir/golden/residual.json"};

/* Grouped ([0]) against --no-group ([1]): karp_backward without dx (the
 * group's .nodx function), with dx, and train steps (residual has no
 * loss: its input gradient sums three, two of which join groups). */
START_TEST(grouped_equals_ungrouped)
{
    char *path = src_path(models[_i]);
    karp_model *m[2] = {compile(path, 0), compile(path, KARPC_NO_GROUP)};
    karp_info in;
    ck_assert_int_eq(karp_model_info(m[0], &in), 0);
    uint64_t rng = 0x51ED270B27A1ull + (uint64_t)_i;
    int64_t nx = N * in.input_size, ny = N * in.output_size;
    float *x = malloc((size_t)nx * 4), *dy = malloc((size_t)ny * 4);
    float *dx[2] = {malloc((size_t)nx * 4), malloc((size_t)nx * 4)};
    int32_t labels[N];
    for (int64_t i = 0; i < nx; i++)
        x[i] = kp_test_uniform(&rng, -1, 1);
    for (int64_t i = 0; i < ny; i++)
        dy[i] = kp_test_uniform(&rng, -1, 1);
    for (int i = 0; i < N; i++)
        labels[i] = kp_test_pick(&rng, (int)in.output_size);

    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(karp_zero_gradients(m[k]), 0);
        ck_assert_int_eq(karp_forward(m[k], x, N, NULL), 0);
        ck_assert_int_eq(karp_backward(m[k], dy, NULL), 0);
    }
    same_gradients(m[0], m[1], "backward without dx");
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(karp_zero_gradients(m[k]), 0);
        ck_assert_int_eq(karp_backward(m[k], dy, dx[k]), 0);
    }
    same_gradients(m[0], m[1], "backward with dx");
    ck_assert_msg(memcmp(dx[0], dx[1], (size_t)nx * 4) == 0, "dx differs");
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(karp_zero_gradients(m[k]), 0);
    for (int step = 0; step < 3 && in.has_train; step++) {
        float loss[2];
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_train_step(m[k], x, labels, N, &loss[k]), 0);
        ck_assert_msg(memcmp(&loss[0], &loss[1], 4) == 0, "loss of step %d: %g against %g",
                      step + 1, loss[0], loss[1]);
    }
    for (int k = 0; k < 2; k++)
        karp_close(m[k]), free(dx[k]);
    free(x), free(dy), free(path);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("group");
    TCase *tc = tcase_create("group");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, input_grad_joins_backward_group);
    tcase_add_test(tc, input_grad_of_input_grads_stays);
    tcase_add_test(tc, large_kernels_stay_out);
    tcase_add_loop_test(tc, grouped_equals_ungrouped, 0, (int)(sizeof models / sizeof models[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
