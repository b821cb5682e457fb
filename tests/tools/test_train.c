/*
 * `karpc train` and `karpc eval` end to end, on a small learnable IDX
 * dataset written here (8x8 images, class = the brightest quadrant) and a
 * small MLP model file: the loss falls and the test accuracy rises; the
 * --log and --plot files; save then eval gives the same test line; a run
 * resumed from a checkpoint repeats the uninterrupted run's numbers;
 * SIGINT stops with status 130 and a checkpoint that loads; the model
 * file's train.augment through a model.so (karp_info) to karpc train, the
 * --augment and --normalize overrides, an augmented run resumed; the
 * errors.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "karp.h"
#include "testutil.h"

enum { SIDE = 8, NTRAIN = 600, NTEST = 200 };

static char *dir, *model;

static const char model_json[] =
    "{\"karp\": 1, \"name\": \"quadrants\", \"input\": {\"shape\": [1, 8, 8]},\n"
    " \"layers\": [{\"type\": \"flatten\"},\n"
    "            {\"type\": \"dense\", \"units\": 16, \"activation\": \"relu\"},\n"
    "            {\"type\": \"dense\", \"units\": 4}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.01},\n"
    " \"batch\": 32, \"seed\": 3, \"train\": {\"epochs\": 2}}\n";

/* n images of noise, one quadrant (the label) brighter. */
static void write_split(const char *split, int n, unsigned seed)
{
    unsigned char *pix = malloc((size_t)n * SIDE * SIDE), *lab = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        int q = (int)(rand_r(&seed) % 4);
        lab[i] = (unsigned char)q;
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++) {
                int quad = (r >= SIDE / 2) * 2 + (c >= SIDE / 2);
                int v = (int)(rand_r(&seed) % 140) + (quad == q ? 90 : 0);
                pix[(i * SIDE + r) * SIDE + c] = (unsigned char)v;
            }
    }
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    char *img = kp_test_path(dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    char *lbl = kp_test_path(dir, name);
    int idims[3] = {n, SIDE, SIDE}, ldims[1] = {n};
    ck_assert_int_eq(kp_test_write_idx(img, 3, idims, pix, (long)n * SIDE * SIDE), 0);
    ck_assert_int_eq(kp_test_write_idx(lbl, 1, ldims, lab, n), 0);
    free(img);
    free(lbl);
    free(pix);
    free(lab);
}

static void setup(void)
{
    dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
    model = kp_test_path(dir, "quadrants.json");
    ck_assert_int_eq(kp_test_write_file(model, model_json), 0);
    write_split("train", NTRAIN, 11);
    write_split("t10k", NTEST, 12);
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
    free(model);
}

/* The "test loss ... acc ...%" of the line of epoch e (1-based) in out,
 * malloc'd; NULL if there is no such line. */
static char *test_part(const char *out, int e)
{
    char key[32];
    snprintf(key, sizeof key, "epoch %d/", e);
    const char *p = strstr(out, key);
    if (!p)
        return NULL;
    p = strstr(p, "test loss ");
    size_t n = strcspn(p, "|\n");
    while (n && p[n - 1] == ' ')
        n--;
    return strndup(p, n);
}

/* The CSV rows of a log file, without the two timing columns. */
static int log_rows(const char *path, char rows[][96], int max)
{
    char *text = kp_test_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (n == 0)
            ck_assert_str_eq(line, "epoch,train_loss,train_acc,test_loss,test_acc,samples_per_s,seconds");
        else if (n <= max) {
            char *cut = line;
            for (int k = 0; k < 5 && cut; k++)
                cut = strchr(cut + 1, ',');
            ck_assert_ptr_nonnull(cut);
            *cut = '\0';
            snprintf(rows[n - 1], 96, "%s", line);
        }
        n++;
    }
    free(text);
    return n - 1;
}

START_TEST(train_learns_logs_and_plots)
{
    char *log = kp_test_path(dir, "log.csv"), *plot = kp_test_path(dir, "loss.svg");
    KpRun r = kp_test_run("%s train %s --data mnist:%s --epochs 3 --log %s --plot %s", KARPC_EXE,
                          model, dir, log, plot);
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    /* Not a terminal: plain progress lines, no escape sequences. */
    ck_assert_ptr_nonnull(strstr(r.err, "epoch 1/3: step "));
    ck_assert_ptr_null(strchr(r.err, '\033'));
    ck_assert_ptr_null(strchr(r.err, '\r'));

    char rows[3][96];
    ck_assert_int_eq(log_rows(log, rows, 3), 3);
    double loss[3], acc[3];
    for (int e = 0; e < 3; e++) {
        int ep;
        double tl, ta;
        ck_assert_int_eq(sscanf(rows[e], "%d,%lf,%lf,%lf,%lf", &ep, &tl, &ta, &loss[e], &acc[e]), 5);
        ck_assert_int_eq(ep, e + 1);
    }
    ck_assert_msg(loss[2] < loss[0], "test loss %g -> %g", loss[0], loss[2]);
    ck_assert_msg(acc[2] > 80.0, "test accuracy %g%%", acc[2]);
    /* The epoch line shows the same numbers as the log. */
    char *t3 = test_part(r.out, 3), want[64];
    ck_assert_ptr_nonnull(t3);
    snprintf(want, sizeof want, "test loss %.4f acc %.2f%%", loss[2], acc[2]);
    ck_assert_str_eq(t3, want);
    free(t3);

    char *svg = kp_test_read_file(plot, NULL);
    ck_assert_ptr_nonnull(svg);
    ck_assert(strncmp(svg, "<svg", 4) == 0);
    ck_assert_ptr_nonnull(strstr(svg, "<polyline"));
    ck_assert_ptr_nonnull(strstr(svg, "</svg>\n"));
    free(svg);
    kp_test_run_free(&r);

    /* The model's train section gives the epochs when --epochs is absent. */
    r = kp_test_run("%s train %s --data mnist:%s", KARPC_EXE, model, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "epoch 2/2: train loss"));
    kp_test_run_free(&r);
    free(log);
    free(plot);
}
END_TEST

START_TEST(save_then_eval_same_test_line)
{
    char *ckpt = kp_test_path(dir, "ckpt.safetensors");
    KpRun r = kp_test_run("%s train %s --data mnist:%s --epochs 2 --save %s", KARPC_EXE, model,
                          dir, ckpt);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char *t2 = test_part(r.out, 2);
    ck_assert_ptr_nonnull(t2);
    kp_test_run_free(&r);

    r = kp_test_run("%s eval %s --data mnist:%s --load %s", KARPC_EXE, model, dir, ckpt);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char want[160];
    snprintf(want, sizeof want, "quadrants: %d test samples, %s\n", NTEST, t2);
    ck_assert_msg(strstr(r.out, want), "expected '%s' in:\n%s", want, r.out);
    kp_test_run_free(&r);
    free(t2);
    free(ckpt);
}
END_TEST

START_TEST(resume_repeats_the_run)
{
    char *ckpt = kp_test_path(dir, "ckpt.safetensors");
    char *log_a = kp_test_path(dir, "a.csv"), *log_b = kp_test_path(dir, "b.csv");
    KpRun r = kp_test_run("%s train %s --data mnist:%s --epochs 3 --log %s", KARPC_EXE, model,
                          dir, log_a);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --epochs 1 --save %s --log %s", KARPC_EXE, model,
                    dir, ckpt, log_b);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --epochs 3 --load %s --save %s --log %s",
                    KARPC_EXE, model, dir, ckpt, ckpt, log_b);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "resuming from"));
    ck_assert_ptr_null(strstr(r.out, "epoch 1/3"));
    ck_assert_ptr_nonnull(strstr(r.out, "epoch 2/3"));
    kp_test_run_free(&r);

    char a[3][96], b[3][96];
    ck_assert_int_eq(log_rows(log_a, a, 3), 3);
    ck_assert_int_eq(log_rows(log_b, b, 3), 3);   /* epoch 1's row kept from the first part */
    for (int e = 0; e < 3; e++)
        ck_assert_str_eq(a[e], b[e]);

    /* Already there: nothing to do. */
    r = kp_test_run("%s train %s --data mnist:%s --epochs 3 --load %s", KARPC_EXE, model, dir,
                    ckpt);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "3 epochs done already"));
    kp_test_run_free(&r);
    free(ckpt);
    free(log_a);
    free(log_b);
}
END_TEST

/* Shell: start karpc in the background, wait (at most a minute) until
 * file exists, let it run a little more, send sig, wait for karpc. */
#define SIGNAL_AFTER(file, sig) \
    "& i=0; while [ ! -e " file " ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; " \
    "sleep 0.2; kill -" sig " $!; wait $!"

/* Interrupted after the first checkpoint: status 128 + the signal, a
 * checkpoint of the last step that loads and continues.  Where it stops
 * depends on timing; any stop is accepted. */
START_TEST(signal_saves_and_exits_130)
{
    char *ckpt = kp_test_path(dir, "int.safetensors"), *ckpt2 = kp_test_path(dir, "int2.safetensors");
    KpRun r = kp_test_run("%s train %s --data mnist:%s --epochs 100000 --batch 8 --save %s "
                          SIGNAL_AFTER("%s", "INT"),
                          KARPC_EXE, model, dir, ckpt, ckpt);
    ck_assert_msg(r.status == 130, "status %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "karpc: Interrupt: stopped in epoch"), "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "(continue with --load "));
    kp_test_run_free(&r);

    r = kp_test_run("%s eval %s --data mnist:%s --load %s", KARPC_EXE, model, dir, ckpt);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --epochs 100000 --batch 8 --load %s --save %s "
                    SIGNAL_AFTER("%s", "TERM"),
                    KARPC_EXE, model, dir, ckpt, ckpt2, ckpt2);
    ck_assert_msg(r.status == 128 + SIGTERM, "status %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "resuming from"));
    ck_assert_ptr_nonnull(strstr(r.err, "karpc: Terminated: stopped in epoch"));
    kp_test_run_free(&r);
    free(ckpt);
    free(ckpt2);
}
END_TEST

static const char aug_json[] =
    "{\"karp\": 1, \"name\": \"quadrants_aug\", \"input\": {\"shape\": [1, 8, 8]},\n"
    " \"layers\": [{\"type\": \"flatten\"},\n"
    "            {\"type\": \"dense\", \"units\": 16, \"activation\": \"relu\"},\n"
    "            {\"type\": \"dense\", \"units\": 4}],\n"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.01},\n"
    " \"batch\": 32, \"seed\": 3, \"train\": {\"epochs\": 2,\n"
    "   \"normalize\": {\"mean\": [0.5], \"std\": [0.5]},\n"
    "   \"augment\": [{\"type\": \"random_crop\", \"padding\": 1},\n"
    "               {\"type\": \"noise\", \"std\": 0.05}]}}\n";

/* The "train loss X" of epoch e's line, malloc'd. */
static char *train_part(const char *out, int e)
{
    char key[32];
    snprintf(key, sizeof key, "epoch %d/", e);
    const char *p = strstr(out, key);
    ck_assert_ptr_nonnull(p);
    p = strstr(p, "train loss ");
    return strndup(p, strcspn(p, "|"));
}

START_TEST(train_augments_as_the_model_says)
{
    char *json = kp_test_path(dir, "aug.json"), *so = kp_test_path(dir, "aug.so");
    ck_assert_int_eq(kp_test_write_file(json, aug_json), 0);
    KpRun r = kp_test_run("%s %s -o %s", KARPC_EXE, json, so);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);

    /* The descriptor carries the list. */
    karp_error err;
    karp_model *m = karp_open(so, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_int_eq(info.naugment, 2);
    ck_assert_int_eq(info.augment[0].kind, KARP_AUG_RANDOM_CROP);
    ck_assert_float_eq(info.augment[0].value, 1.0f);
    ck_assert_int_eq(info.augment[1].kind, KARP_AUG_NOISE);
    ck_assert_float_eq(info.augment[1].value, 0.05f);
    ck_assert_int_eq(info.normalize_nmean, 1);
    karp_close(m);

    /* karpc train applies it, from the model.so as from the model file. */
    r = kp_test_run("%s train %s --data mnist:%s --epochs 1", KARPC_EXE, so, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "augment: random_crop=1,noise=0.05 (train.augment)\n"));
    char *with_so = train_part(r.out, 1);
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --epochs 1", KARPC_EXE, json, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    char *with_json = train_part(r.out, 1);
    ck_assert_str_eq(with_so, with_json);
    kp_test_run_free(&r);

    /* Overrides: another list; none (another loss: the augmentation mattered). */
    r = kp_test_run("%s train %s --data mnist:%s --epochs 1 --augment hflip,rotate=10,noise=0.1 "
                    "--normalize 0.4/0.3",
                    KARPC_EXE, json, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "augment: hflip,rotate=10,noise=0.1 (--augment)\n"));
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --epochs 1 --augment none", KARPC_EXE, json, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_null(strstr(r.err, "augment:"));
    char *plain = train_part(r.out, 1);
    ck_assert_str_ne(plain, with_json);
    kp_test_run_free(&r);
    r = kp_test_run("%s eval %s --data mnist:%s --normalize 0.5,/0.5", KARPC_EXE, json, dir);
    ck_assert_int_eq(r.status, 1);
    kp_test_run_free(&r);

    /* Resumed, an augmented run repeats the uninterrupted one. */
    char *ckpt = kp_test_path(dir, "aug.safetensors");
    char *log_a = kp_test_path(dir, "aug_a.csv"), *log_b = kp_test_path(dir, "aug_b.csv");
    r = kp_test_run("%s train %s --data mnist:%s --log %s", KARPC_EXE, json, dir, log_a);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --epochs 1 --save %s --log %s", KARPC_EXE, json,
                    dir, ckpt, log_b);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    r = kp_test_run("%s train %s --data mnist:%s --load %s --log %s", KARPC_EXE, json, dir, ckpt,
                    log_b);
    ck_assert_msg(r.status == 0, "%s", r.err);
    kp_test_run_free(&r);
    char a[2][96], b[2][96];
    ck_assert_int_eq(log_rows(log_a, a, 2), 2);
    ck_assert_int_eq(log_rows(log_b, b, 2), 2);
    for (int e = 0; e < 2; e++)
        ck_assert_str_eq(a[e], b[e]);
    free(with_so);
    free(with_json);
    free(plain);
    free(ckpt);
    free(log_a);
    free(log_b);
    free(json);
    free(so);
}
END_TEST

/* +Inf: dense2's GEMM sums each output in k order and overflows one way;
 * a kernel adding in another order may meet +Inf and -Inf and say NaN */
#define DIV_CHECKED "karp_forward: step 2: +Inf in layer 'dense2' (dense output, element 0 of sample 0)"
static void expect_error(const char *args, const char *message)
{
    KpRun r = kp_test_run("cd %s && %s %s", dir, KARPC_EXE, args);
    char *line = kp_test_first_line(r.err);
    ck_assert_msg(r.status == 1, "karpc %s: status %d, stderr: %s", args, r.status, r.err);
    ck_assert_msg(strcmp(line, message) == 0, "karpc %s:\n  expected: %s\n  got:      %s", args,
                  message, line);
    free(line);
    kp_test_run_free(&r);
}

START_TEST(train_errors)
{
    char args[1024], msg[1024];
    expect_error("train", "karpc: train: no model given (model.json or model.so)");
    expect_error("train quadrants.json", "karpc: train: --data is required (e.g. --data fashion-mnist)");
    expect_error("train quadrants.json --data mnist:. --epochs x",
                 "karpc: --epochs expects an integer between 1 and 1000000, got 'x'");
    expect_error("train quadrants.json --data mnist:. --epochs 0",
                 "karpc: --epochs expects an integer between 1 and 1000000, got '0'");
    expect_error("train quadrants.json --data mnist:. --batch=-3",
                 "karpc: --batch expects an integer between 1 and 65536, got '-3'");
    expect_error("train quadrants.json --data mnist:. --threads 0",
                 "karpc: --threads expects an integer between 1 and 1024, got '0'");
    expect_error("train quadrants.json --data mnist:. --seed -1",
                 "karpc: --seed expects an integer between 0 and 2147483647, got '-1'");
    expect_error("train quadrants.json --data mnist:. --save", "karpc: --save needs a value");
    expect_error("train quadrants.json --data mnist:. --save=", "karpc: --save needs a value");
    expect_error("train quadrants.json --data mnist:. --frobnicate",
                 "karpc: train: unknown option '--frobnicate' (karpc --help lists them)");
    expect_error("train a.json b.json", "karpc: train: one model at a time: 'a.json' and 'b.json'");
    expect_error("train quadrants.json --data mnist:. --load nope.safetensors",
                 "karpc: nope.safetensors: cannot open: No such file or directory");
    expect_error("eval quadrants.json --data mnist:. --show x",
                 "karpc: --show expects an integer between 0 and 1000, got 'x'");

    /* A model without a loss cannot be trained. */
    char *infer_only = kp_test_path(dir, "infer.json");
    kp_test_write_file(infer_only, "{\"karp\": 1, \"input\": {\"shape\": [64]}, "
                                   "\"layers\": [{\"type\": \"dense\", \"units\": 4}]}");
    expect_error("train infer.json --data mnist:.",
                 "karpc: infer.json: the model has no train_step: give it a \"loss\" and an "
                 "\"optimizer\"");
    free(infer_only);

    /* The wrong input size for the data. */
    char *wide = kp_test_path(dir, "wide.json");
    kp_test_write_file(wide, "{\"karp\": 1, \"input\": {\"shape\": [65]}, \"loss\": \"mse\", "
                             "\"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, "
                             "\"layers\": [{\"type\": \"dense\", \"units\": 4}]}");
    expect_error("train wide.json --data mnist:.",
                 "karpc: wide.json takes 65 floats per sample, the train data of mnist:. has 64");
    free(wide);

    /* A checkpoint from another model. */
    snprintf(args, sizeof args, "train quadrants.json --data mnist:. --load %s/quadrants.json", dir);
    KpRun r = kp_test_run("cd %s && %s %s", dir, KARPC_EXE, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "karpc: "));
    ck_assert_ptr_null(strchr(strchr(r.err, '\n') + 1, '\n'));   /* one line */
    kp_test_run_free(&r);

    /* --augment and --normalize. */
    expect_error("train quadrants.json --data mnist:. --augment flip",
                 "karpc: --augment: unknown transform 'flip' (expected hflip, "
                 "random_crop=PADDING, rotate=DEGREES, noise=STD)");
    expect_error("train quadrants.json --data mnist:. --augment hflip,,noise=1",
                 "karpc: --augment hflip,,noise=1: an empty transform (expected hflip, "
                 "random_crop=PADDING, rotate=DEGREES, noise=STD, or none)");
    expect_error("train quadrants.json --data mnist:. --augment random_crop",
                 "karpc: --augment: 'random_crop' needs a value (expected hflip, "
                 "random_crop=PADDING, rotate=DEGREES, noise=STD)");
    expect_error("train quadrants.json --data mnist:. --augment rotate=200",
                 "karpc: --augment: rotate: bad value 200 (degrees: 0 to 180)");
    expect_error("train quadrants.json --data mnist:. --augment noise=x",
                 "karpc: --augment: 'noise=x': the value is not a number");
    expect_error("train quadrants.json --data mnist:. --augment hflip=1",
                 "karpc: --augment: hflip takes no value, got 'hflip=1'");
    expect_error("train quadrants.json --data mnist:. --normalize 0.5",
                 "karpc: --normalize 0.5: expected MEAN/STD or M1,M2,.../S1,S2,... (at most 16 "
                 "numbers each), or none");
    expect_error("train quadrants.json --data mnist:. --normalize 0.5/0",
                 "karpc: --normalize 0.5/0: std 0 must be > 0");
    expect_error("train quadrants.json --data mnist:. --normalize 0.5,0.5/1",
                 "karpc: quadrants.json: --normalize: normalize: 2 means and 1 stds for 1 "
                 "channels (give 1 or 1)");
    /* Rank-1 samples: only noise. */
    char *csv = kp_test_path(dir, "flat.csv");
    FILE *f = fopen(csv, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%d", i);
        for (int j = 0; j < 64; j++)
            fprintf(f, ",%d", (i + j) % 3);
        fputc('\n', f);
    }
    ck_assert_int_eq(fclose(f), 0);
    expect_error("train quadrants.json --data csv:flat.csv --augment noise=0.1,hflip",
                 "karpc: --augment of quadrants.json with --data csv:flat.csv: augment[1]: hflip "
                 "needs image samples [C,H,W], these have rank 1 (only noise applies to them)");
    free(csv);

    /* An unwritable log: refused before training. */
    snprintf(args, sizeof args, "train quadrants.json --data mnist:. --log %s/nodir/log.csv", dir);
    snprintf(msg, sizeof msg, "karpc: %s/nodir/log.csv: cannot write: No such file or directory",
             dir);
    expect_error(args, msg);
}
END_TEST

/* A learning rate of 1e30 diverges: without --check-numerics the run stops
 * at the end of epoch 1, with it at the step and the layer. */
START_TEST(train_divergence)
{
    char *csv = kp_test_path(dir, "div.csv"), *json = kp_test_path(dir, "div.json");
    char rows[64 * 48] = "";
    for (int i = 0; i < 64; i++) {
        char row[48];
        snprintf(row, sizeof row, "%d,%.3f,%.3f,%.3f,%.3f\n", i % 2, (i % 7) / 7.0 - 0.5,
                 (i % 5) / 5.0, (i % 3) / 3.0 - 0.3, (i % 2) * 0.8);
        strcat(rows, row);
    }
    ck_assert_int_eq(kp_test_write_file(csv, rows), 0);
    ck_assert_int_eq(
        kp_test_write_file(json,
                           "{\"karp\": 1, \"name\": \"div\", \"input\": {\"shape\": [4]},\n"
                           " \"layers\": [{\"type\": \"dense\", \"name\": \"dense1\", \"units\": 8,"
                           " \"activation\": \"relu\"},\n"
                           "  {\"type\": \"dense\", \"name\": \"dense2\", \"units\": 2}],\n"
                           " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 1e30},\n"
                           " \"batch\": 16, \"seed\": 1, \"train\": {\"epochs\": 3}}\n"),
        0);
    KpRun r = kp_test_run("cd %s && %s train div.json --data csv:div.csv 2>&1", dir, KARPC_EXE);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.out, "karpc: epoch 1: the loss is NaN — the run diverged; try a lower "
                                "learning rate or --check-numerics\n"),
                  "%s", r.out);
    ck_assert_ptr_null(strstr(r.out, "epoch 2/3"));
    kp_test_run_free(&r);
    r = kp_test_run("cd %s && %s train div.json --data csv:div.csv --check-numerics 2>&1", dir,
                    KARPC_EXE);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.out, "karpc: " DIV_CHECKED "\n"), "%s", r.out);
    kp_test_run_free(&r);
    free(csv);
    free(json);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("karpc_train");
    TCase *tc = tcase_create("train");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, train_divergence);
    tcase_add_test(tc, train_learns_logs_and_plots);
    tcase_add_test(tc, save_then_eval_same_test_line);
    tcase_add_test(tc, resume_repeats_the_run);
    tcase_add_test(tc, signal_saves_and_exits_130);
    tcase_add_test(tc, train_errors);
    tcase_add_test(tc, train_augments_as_the_model_says);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
