/*
 * PyTorch as an oracle for training: the same initial weights (through a
 * safetensors file written by karp_save), the same batches, the same loss
 * and optimizer give the same loss for 20 steps, within 1e-4 relative.
 * Momentum is compared with torch.optim.SGD(momentum=b, dampening=b) and a
 * zero initial buffer, which is DESIGN.md's v = b v + (1-b) g from step 1.
 *
 * Runs only where Debian's python3-torch is installed (/usr/bin/python3);
 * otherwise every case says it is skipped and passes.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "karpc.h"
#include "oracle.h"
#include "testutil.h"

#define STEPS 20
#define REL_TOL 1e-4

/* A deterministic generator for the batches (the model's own seed makes
 * the weights). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float urand(void)
{
    return kp_oracle_urand(&rng_state);
}

/* Train model_json for STEPS steps with karpc, then with PyTorch, and
 * compare the losses.  Batches alternate between the full batch and odd
 * smaller ones (the last partial batch of an epoch). */
static void compare(const char *name, const char *model_json, int labels, int64_t classes)
{
    if (!kp_oracle_torch_available())
        return;
    char *dir = kp_test_tmpdir();
    char *model = kp_test_path(dir, "model.json");
    char *init = kp_test_path(dir, "init.safetensors");
    char *batches = kp_test_path(dir, "batches.bin");
    ck_assert_int_eq(kp_test_write_file(model, model_json), 0);

    karp_error err;
    karp_model *m = karp_compile(model, NULL, &err);
    ck_assert_msg(m != NULL, "%s: %s", name, err.message);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_int_eq(karp_save(m, init), 0);

    FILE *bf = fopen(batches, "wb");
    ck_assert_ptr_nonnull(bf);
    float *x = malloc(sizeof(float) * (size_t)(info.max_batch * info.input_size));
    float *yt = malloc(sizeof(float) * (size_t)(info.max_batch * info.output_size));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)info.max_batch);
    float ours[STEPS];
    for (int s = 0; s < STEPS; s++) {
        int32_t n = (int32_t)(s % 3 == 2 ? info.max_batch - 3 : info.max_batch);
        for (int64_t i = 0; i < n * info.input_size; i++)
            x[i] = 2.0f * urand() - 1.0f;
        for (int64_t i = 0; i < n; i++)
            lab[i] = (int32_t)(urand() * (float)classes) % (int32_t)classes;
        for (int64_t i = 0; i < n * info.output_size; i++)
            yt[i] = urand() < 0.5f ? 0.0f : 1.0f;
        fwrite(&n, sizeof n, 1, bf);
        fwrite(x, sizeof(float), (size_t)(n * info.input_size), bf);
        if (labels)
            fwrite(lab, sizeof(int32_t), (size_t)n, bf);
        else
            fwrite(yt, sizeof(float), (size_t)(n * info.output_size), bf);
        const void *target = labels ? (const void *)lab : (const void *)yt;
        ck_assert_msg(karp_train_step(m, x, target, n, &ours[s]) == 0, "%s: %s", name,
                      karp_last_error());
    }
    fclose(bf);
    karp_close(m);

    KpRun r = kp_test_run("%s %s/tests/oracle/torch_train.py %s %s %s %d", KP_ORACLE_PYTHON,
                          KARP_SOURCE_DIR, model, init, batches, STEPS);
    ck_assert_msg(r.status == 0, "%s: torch_train.py failed: %s", name, r.err);
    const char *p = r.out;
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        char *end;
        double theirs = strtod(p, &end);
        ck_assert_msg(end != p, "%s: torch printed too few losses:\n%s", name, r.out);
        p = end;
        double rel = fabs(ours[s] - theirs) / fmax(fabs(theirs), 1e-6);
        if (rel > worst)
            worst = rel;
        ck_assert_msg(rel <= REL_TOL, "%s step %d: karpc loss %.9g, PyTorch %.9g (relative %.2g)",
                      name, s + 1, ours[s], theirs, rel);
    }
    printf("%-28s 20 steps, max relative loss difference to PyTorch %.2e\n", name, worst);
    kp_test_run_free(&r);
    free(x);
    free(yt);
    free(lab);
    free(model);
    free(init);
    free(batches);
    kp_test_rmdir(dir);
    free(dir);
}

#define MLP(LAST, LOSS, OPT)                                                                   \
    "{\"karp\": 1, \"name\": \"oracle\", \"input\": {\"shape\": [1, 4, 5]}, \"layers\": ["    \
    "{\"type\": \"flatten\"},"                                                                 \
    "{\"type\": \"dense\", \"units\": 17, \"activation\": \"relu\"},"                        \
    "{\"type\": \"dense\", \"units\": 9, \"activation\": \"tanh\"},"                         \
    "{\"type\": \"dense\", \"units\": 7},"                                                     \
    "{\"type\": \"leaky_relu\", \"alpha\": 0.1},"                                             \
    "{\"type\": \"dense\", \"units\": 5 " LAST "}],"                                          \
    "\"loss\": \"" LOSS "\", \"optimizer\": " OPT ", \"batch\": 8, \"seed\": 3}"

START_TEST(sgd_weight_decay_cross_entropy)
{
    compare("sgd+wd, cross_entropy", MLP("", "cross_entropy",
                                         "{\"type\": \"sgd\", \"lr\": 0.1, \"weight_decay\": 0.01}"),
            1, 5);
}
END_TEST

START_TEST(momentum_cross_entropy)
{
    compare("momentum, cross_entropy",
            MLP("", "cross_entropy", "{\"type\": \"momentum\", \"lr\": 0.2, \"beta\": 0.8}"), 1, 5);
}
END_TEST

START_TEST(adam_cross_entropy)
{
    compare("adam, cross_entropy", MLP("", "cross_entropy", "{\"type\": \"adam\", \"lr\": 0.01}"),
            1, 5);
}
END_TEST

START_TEST(adam_mse_softmax)
{
    compare("adam, softmax + mse",
            MLP(", \"activation\": \"softmax\"", "mse", "{\"type\": \"adam\", \"lr\": 0.01}"), 0, 5);
}
END_TEST

START_TEST(sgd_bce_sigmoid)
{
    compare("sgd, sigmoid + bce",
            MLP(", \"activation\": \"sigmoid\"", "bce", "{\"type\": \"sgd\", \"lr\": 0.5}"), 0, 5);
}
END_TEST

START_TEST(momentum_bce_logits)
{
    compare("momentum, bce_logits",
            MLP("", "bce_logits", "{\"type\": \"momentum\", \"lr\": 0.3, \"beta\": 0.9}"), 0, 5);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("oracle_torch");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sgd_weight_decay_cross_entropy);
    tcase_add_test(tc, momentum_cross_entropy);
    tcase_add_test(tc, adam_cross_entropy);
    tcase_add_test(tc, adam_mse_softmax);
    tcase_add_test(tc, sgd_bce_sigmoid);
    tcase_add_test(tc, momentum_bce_logits);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_NOFORK);
}
