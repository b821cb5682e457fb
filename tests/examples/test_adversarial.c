/*
 * examples/adversarial (FGSM adversarial training) on a small learnable
 * dataset written here: 28x28 images of four classes, the class being
 * which quadrant holds a bright 8x8 square, on dim noise.  The square is
 * bright enough for a classifier to stay right under eps = 0.1, and the
 * noise gives a normally trained one plenty of pixels to be fooled by.
 *
 *   - FGSM itself (the example's fgsm.c, compiled in here): x_adv - x is
 *     +-eps in the sign of the input gradient, or clipped to [0,1]; that
 *     gradient agrees with central differences of the loss on single
 *     pixels, through train.normalize; the attack leaves no parameter
 *     gradient behind and changes no weight.
 *   - The program: finite losses in every epoch; the attack lowers the
 *     normally trained model's accuracy by far; the adversarially trained
 *     model is clearly more robust than the normal one under the attack.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "karpc.h"
#include "testutil.h"

/* The example's FGSM, exactly as the program builds it. */
#include "examples/adversarial/fgsm.c"

#define PROGRAM KARP_BINARY_DIR "/examples/adversarial/adversarial"
#define SIDE 28
#define PIXELS (SIDE * SIDE)
#define CLASSES 4
#define NTRAIN 3000
#define NTEST 1000
#define EPS 0.1f
#define NOISE 160         /* background bytes 0..159 */
#define LIFT 60           /* square bytes 60..255 */

/* A small MLP, with train.normalize so that the chain rule through it is
 * part of what is checked. */
static const char *MODEL_JSON =
    "{\"karp\": 1, \"name\": \"quadrants\", \"input\": {\"shape\": [1, 28, 28]},\n"
    " \"layers\": [{\"type\": \"flatten\"},\n"
    "   {\"type\": \"dense\", \"units\": 32, \"activation\": \"relu\"},\n"
    "   {\"type\": \"dense\", \"units\": 4}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.001},\n"
    " \"batch\": 32, \"seed\": 7,\n"
    " \"train\": {\"epochs\": 3, \"normalize\": {\"mean\": [0.3], \"std\": [0.25]}}}\n";

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* One image of class k: noise bytes 0..NOISE-1, then an 8x8 square of
 * bytes LIFT..255 in quadrant k, its corner jittered by up to 3 pixels. */
static void draw(unsigned char *img, int k)
{
    for (int i = 0; i < PIXELS; i++)
        img[i] = (unsigned char)(rnd() % NOISE);
    int r0 = (k / 2) * 14 + 3 + (int)(rnd() % 4) - 1;
    int c0 = (k % 2) * 14 + 3 + (int)(rnd() % 4) - 1;
    for (int r = r0; r < r0 + 8; r++)
        for (int c = c0; c < c0 + 8; c++)
            img[r * SIDE + c] = (unsigned char)(LIFT + rnd() % (256 - LIFT));
}

/* A split as the IDX pair mnist:DIR reads ("train" or "t10k"). */
static void write_split(const char *dir, const char *prefix, int n)
{
    unsigned char *pix = malloc((size_t)n * PIXELS), *lab = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        lab[i] = (unsigned char)(rnd() % CLASSES);
        draw(pix + (size_t)i * PIXELS, lab[i]);
    }
    char name[64];
    int idims[3] = {n, SIDE, SIDE}, ldims[1] = {n};
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    char *p = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_idx(p, 3, idims, pix, (long)n * PIXELS), 0);
    free(p);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    p = kp_test_path(dir, name);
    ck_assert_int_eq(kp_test_write_idx(p, 1, ldims, lab, n), 0);
    free(p);
    free(pix);
    free(lab);
}

static char *write_model(const char *dir)
{
    char *path = kp_test_path(dir, "quadrants.json");
    ck_assert_int_eq(kp_test_write_file(path, MODEL_JSON), 0);
    return path;
}

/* Mean cross-entropy of m on raw pixels x (n samples), through karp_infer. */
static double loss_at(FgsmModel *f, const float *x, const int32_t *labels, int64_t n)
{
    float xn[4 * PIXELS], logits[4 * CLASSES], dy[4 * CLASSES];
    ck_assert_int_le(n, 4);
    fgsm_normalize(f, x, n, xn);
    ck_assert_int_eq(karp_infer(f->m, xn, n, logits), 0);
    return fgsm_ce_grad(logits, labels, n, CLASSES, dy);
}

START_TEST(fgsm_follows_the_gradient_sign)
{
    char *dir = kp_test_tmpdir();
    char *model = write_model(dir);
    karp_error err;
    karp_model *m = karp_compile(model, NULL, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    FgsmModel f;
    char msg[512];
    ck_assert_msg(fgsm_init(&f, m, 4, msg, sizeof msg) == 0, "%s", msg);
    ck_assert_int_eq(f.nchan, 1);

    enum { N = 4 };
    static float x[N * PIXELS], grad[N * PIXELS], x_adv[N * PIXELS];
    int32_t labels[N];
    unsigned char img[PIXELS];
    for (int i = 0; i < N; i++) {
        labels[i] = i % CLASSES;
        draw(img, labels[i]);
        for (int p = 0; p < PIXELS; p++)
            x[i * PIXELS + p] = img[p] / 255.0f;
    }
    karp_param w;
    ck_assert_int_eq(karp_param_find(m, "dense1.weight", &w), 0);
    float w0 = w.data[0];

    double loss;
    ck_assert_int_eq(fgsm_attack(&f, x, labels, N, EPS, grad, x_adv, &loss, NULL), 0);
    ck_assert(isfinite(loss));

    /* the attack is not a training step: no gradient left, no weight moved */
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        ck_assert_int_eq(karp_param_get(m, i, &p), 0);
        for (int64_t k = 0; k < p.size; k++)
            ck_assert_msg(p.grad[k] == 0.0f, "%s.grad[%lld] = %g after the attack", p.name,
                          (long long)k, (double)p.grad[k]);
    }
    ck_assert(w.data[0] == w0);

    /* x_adv - x = eps * sign(grad), or clipped to the [0,1] box */
    int clipped = 0, moved = 0;
    for (int i = 0; i < N * PIXELS; i++) {
        float want = grad[i] > 0 ? fminf(x[i] + EPS, 1.0f)
                   : grad[i] < 0 ? fmaxf(x[i] - EPS, 0.0f)
                                 : x[i];
        ck_assert_msg(x_adv[i] == want, "pixel %d: x %g grad %g x_adv %g, expected %g", i,
                      (double)x[i], (double)grad[i], (double)x_adv[i], (double)want);
        ck_assert(x_adv[i] >= 0.0f && x_adv[i] <= 1.0f);
        moved += grad[i] != 0;
        clipped += grad[i] != 0 && fabsf(fabsf(x_adv[i] - x[i]) - EPS) > 1e-6f;
    }
    ck_assert_int_gt(moved, N * PIXELS / 2);
    ck_assert_int_gt(clipped, 0);

    /* the gradient against central differences of the loss on single
     * pixels of one sample: the largest |grad| and a few others */
    float g1[PIXELS];
    ck_assert_int_eq(fgsm_input_grad(&f, x, labels, 1, g1, NULL, NULL), 0);
    int probes[4] = {0, 100, 300, 500};
    for (int p = 0; p < PIXELS; p++)
        if (fabsf(g1[p]) > fabsf(g1[probes[0]]))
            probes[0] = p;
    const float h = 1e-2f;
    for (int j = 0; j < 4; j++) {
        int p = probes[j];
        float xp[PIXELS];
        memcpy(xp, x, sizeof xp);
        xp[p] = x[p] + h;
        double up = loss_at(&f, xp, labels, 1);
        xp[p] = x[p] - h;
        double down = loss_at(&f, xp, labels, 1);
        double fd = (up - down) / (2.0 * h);
        ck_assert_msg(fabs(fd - g1[p]) <= 0.03 * fabs(g1[p]) + 1e-5,
                      "pixel %d: gradient %g, central difference %g", p, (double)g1[p], fd);
        if (j == 0)
            ck_assert_msg(fd * g1[p] > 0 && fabs(g1[p]) > 1e-3,
                          "pixel %d: gradient %g, central difference %g", p, (double)g1[p], fd);
    }

    fgsm_free(&f);
    karp_close(m);
    free(model);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

/* The number after key on the line starting with row, or NAN. */
static double field(const char *out, const char *row, int column)
{
    const char *line = strstr(out, row);
    if (!line)
        return NAN;
    line += strlen(row);
    double v = NAN;
    for (int i = 0; i <= column; i++) {
        char *end;
        v = strtod(line, &end);
        if (end == line)
            return NAN;
        line = end + (*end == '%');
    }
    return v;
}

START_TEST(adversarial_training_is_more_robust)
{
    char *dir = kp_test_tmpdir();
    char *model = write_model(dir);
    write_split(dir, "train", NTRAIN);
    write_split(dir, "t10k", NTEST);
    KpRun r = kp_test_run("%s --model %s --data mnist:%s --epochs 3 --threads 2", PROGRAM, model,
                          dir);
    printf("%s", r.out);
    ck_assert_msg(r.status == 0, "%s", r.err);

    /* every epoch's losses are finite numbers */
    int epochs = 0;
    for (const char *at = r.out; (at = strstr(at, "epoch ")) != NULL; at++) {
        const char *loss = strstr(at, "loss ");
        ck_assert_ptr_nonnull(loss);
        double v = strtod(loss + 5, NULL);
        ck_assert_msg(isfinite(v) && v > 0, "epoch line with loss %g", v);
        epochs++;
    }
    ck_assert_int_eq(epochs, 6);
    const char *last = strstr(r.out, "adversarial epoch 3/3");
    ck_assert_ptr_nonnull(last);
    ck_assert(isfinite(field(last, "(clean ", 0)));
    ck_assert(isfinite(field(last, ", adversarial ", 0)));

    double nc = field(r.out, "normal training", 0), na = field(r.out, "normal training", 1);
    double ac = field(r.out, "adversarial training", 0), aa = field(r.out, "adversarial training", 1);
    printf("normal: clean %.2f%% attacked %.2f%%; adversarial: clean %.2f%% attacked %.2f%%\n", nc,
           na, ac, aa);
    ck_assert_msg(nc >= 90 && ac >= 90, "clean accuracies %.2f%% and %.2f%%", nc, ac);
    ck_assert_msg(na <= nc - 20, "the attack barely hurts the normal model: %.2f%% -> %.2f%%", nc,
                  na);
    ck_assert_msg(aa >= na + 20, "adversarial training gains little: attacked %.2f%% vs %.2f%%",
                  aa, na);
    kp_test_run_free(&r);
    free(model);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("adversarial");
    TCase *tc = tcase_create("fgsm");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, fgsm_follows_the_gradient_sign);
    tcase_add_test(tc, adversarial_training_is_more_robust);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK_GETENV);
}
