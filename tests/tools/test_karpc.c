/*
 * The karpc command and the example programs, end to end: compile the
 * example model to a shared library, run it from host_aot and host_jit
 * (bit-identical outputs), the --emit outputs, `karpc eval` on a small
 * IDX dataset written here, and the command's error messages.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MODEL KARP_SOURCE_DIR "/examples/fashion_mlp.json"

static char *dir;

static void setup(void)
{
    dir = kp_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void)
{
    kp_test_rmdir(dir);
    free(dir);
}

START_TEST(compile_and_run_aot_matches_jit)
{
    char *so = kp_test_path(dir, "fashion_mlp.so");
    char *h = kp_test_path(dir, "fashion_mlp.h");
    KpRun r = kp_test_run("%s %s -o %s --header %s", KARPC_EXE, MODEL, so, h);
    ck_assert_msg(r.status == 0, "karpc failed: %s", r.err);
    kp_test_run_free(&r);

    char *header = kp_test_read_file(h, NULL);
    ck_assert_ptr_nonnull(header);
    ck_assert_ptr_nonnull(strstr(header, "FASHION_MLP_INPUT_SIZE"));
    ck_assert_ptr_nonnull(strstr(header, "784"));
    free(header);

    KpRun aot = kp_test_run("%s/examples/host_aot %s 7", KARP_BINARY_DIR, so);
    KpRun jit = kp_test_run("%s/examples/host_jit %s 7", KARP_BINARY_DIR, MODEL);
    ck_assert_msg(aot.status == 0, "host_aot: %s", aot.err);
    ck_assert_msg(jit.status == 0, "host_jit: %s", jit.err);
    /* host_jit prints the parameters first; compare from the model line. */
    const char *a = strstr(aot.out, "model fashion_mlp");
    const char *j = strstr(jit.out, "model fashion_mlp");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(strstr(a, "y[6] ="));
    ck_assert_str_eq(a, j);
    ck_assert_ptr_nonnull(strstr(jit.out, "param dense1.weight: 100352 floats"));
    ck_assert_ptr_nonnull(strstr(jit.out, "param head.bias: 10 floats"));
    kp_test_run_free(&aot);
    kp_test_run_free(&jit);
    free(so);
    free(h);
}
END_TEST

/* Eight compile threads cut fashion_cnn into more than 16 partitions
 * (three per thread, fewer where the groups run out: docs/compile-time.md,
 * item 7), all linked into model.so; it computes what --jobs 1 does. */
START_TEST(many_partitions_link)
{
    const char *cnn = KARP_SOURCE_DIR "/examples/fashion_cnn.json";
    char *so8 = kp_test_path(dir, "cnn8.so"), *so1 = kp_test_path(dir, "cnn1.so");
    KpRun r = kp_test_run("%s %s --jobs 8 -o %s", KARPC_EXE, cnn, so8);
    ck_assert_msg(r.status == 0, "karpc --jobs 8: %s", r.err);
    kp_test_run_free(&r);
    r = kp_test_run("%s %s --jobs 1 -o %s", KARPC_EXE, cnn, so1);
    ck_assert_msg(r.status == 0, "karpc --jobs 1: %s", r.err);
    kp_test_run_free(&r);
    KpRun a8 = kp_test_run("%s/examples/host_aot %s 3", KARP_BINARY_DIR, so8);
    KpRun a1 = kp_test_run("%s/examples/host_aot %s 3", KARP_BINARY_DIR, so1);
    ck_assert_msg(a8.status == 0, "host_aot: %s", a8.err);
    ck_assert_msg(a1.status == 0, "host_aot: %s", a1.err);
    ck_assert_ptr_nonnull(strstr(a8.out, "y[2] ="));
    ck_assert_str_eq(a8.out, a1.out);
    kp_test_run_free(&a8);
    kp_test_run_free(&a1);
    r = kp_test_run("%s %s --stats --jobs 8", KARPC_EXE, cnn);
    ck_assert_msg(r.status == 0, "%s", r.err);
    const char *l = strstr(r.out, "partitions: ");
    int parts = 0, threads = 0;
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(sscanf(l, "partitions: %d for %d threads", &parts, &threads), 2);
    ck_assert_int_eq(threads, 8);
    ck_assert_int_gt(parts, 16);    /* kp_link_shared's old limit */
    ck_assert_int_le(parts, 24);
    kp_test_run_free(&r);
    free(so8);
    free(so1);
}
END_TEST

START_TEST(emit_outputs)
{
    KpRun r = kp_test_run("%s %s --emit=ir", KARPC_EXE, MODEL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "dense"));
    ck_assert_ptr_nonnull(strstr(r.out, "dense1.weight"));
    ck_assert_ptr_nonnull(strstr(r.out, "[N,784]"));
    kp_test_run_free(&r);

    r = kp_test_run("%s %s --emit=dot", KARPC_EXE, MODEL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "digraph"));
    kp_test_run_free(&r);

    r = kp_test_run("%s %s --emit=llvm", KARPC_EXE, MODEL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "noalias"));
    ck_assert_ptr_nonnull(strstr(r.out, "krt_parallel_for"));
    ck_assert_ptr_nonnull(strstr(r.out, "@karp_model_v1"));
    kp_test_run_free(&r);

    /* This machine has FMA: the dense kernel must use it, in vectors. */
    r = kp_test_run("%s %s --emit=asm", KARPC_EXE, MODEL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "vfmadd"));
    kp_test_run_free(&r);

    char *obj = kp_test_path(dir, "m.o");
    r = kp_test_run("%s %s --emit=obj -o %s && od -An -c -N4 %s", KARPC_EXE, MODEL, obj, obj);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "E   L   F"));
    kp_test_run_free(&r);
    free(obj);

    r = kp_test_run("%s %s --dump-after=shapes", KARPC_EXE, MODEL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "[N,128]"));
    kp_test_run_free(&r);

    r = kp_test_run("%s %s -o %s/s.so --stats", KARPC_EXE, MODEL, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "101770 parameters in 4 tensors"));
    kp_test_run_free(&r);
}
END_TEST

/* One command line and the exact first line it must print on stderr. */
static void expect_error(const char *args, int status, const char *message)
{
    KpRun r = kp_test_run("cd %s && %s %s", dir, KARPC_EXE, args);
    char *line = kp_test_first_line(r.err);
    ck_assert_msg(r.status == status, "karpc %s: status %d, stderr: %s", args, r.status, r.err);
    if (message)
        ck_assert_msg(strcmp(line, message) == 0, "karpc %s:\n  expected: %s\n  got:      %s",
                      args, message, line);
    else
        ck_assert_msg(line[0] != '\0', "karpc %s: no message", args);
    free(line);
    kp_test_run_free(&r);
}

/* resnet_cifar's --emit=llvm at max batch `batch` names every function in
 * has and none in lacks (NULL-terminated) */
static void expect_functions(int batch, const char *const *has, const char *const *lacks)
{
    KpRun r = kp_test_run("%s %s/examples/resnet_cifar.json --batch %d --emit=llvm", KARPC_EXE,
                          KARP_SOURCE_DIR, batch);
    ck_assert_msg(r.status == 0, "%s", r.err);
    for (; *has; has++)
        ck_assert_msg(strstr(r.out, *has), "batch %d: no %s", batch, *has);
    for (; *lacks; lacks++)
        ck_assert_msg(!strstr(r.out, *lacks), "batch %d: %s", batch, *lacks);
    kp_test_run_free(&r);
}

/* resnet_cifar's batchnorms by chunks of the samples from a max batch of
 * 4 (two regions: sums, then planes; backend/emit_batchnorm.c), by runs of
 * channels below it (one region) */
START_TEST(batchnorm_by_samples)
{
    static const char *const chunked[] = {"batchnorm_fwd.bn.sums.body", "batchnorm_fwd.bn.planes.body",
                                          "batchnorm_bwd.bn.sums.body", "batchnorm_bwd.bn.planes.body",
                                          NULL};
    static const char *const channels[] = {"batchnorm_fwd.bn.body", "batchnorm_bwd.bn.body", NULL};
    static const char *const fwd_channels[] = {"batchnorm_fwd.bn.body", NULL};
    static const char *const any_chunked[] = {".bn.sums", NULL};
    expect_functions(4, chunked, fwd_channels);
    expect_functions(3, channels, any_chunked);
}
END_TEST

/* Function definitions in an --emit=llvm output whose line names sub */
static int count_defines(const char *ll, const char *sub)
{
    int n = 0;
    for (const char *p = strstr(ll, sub); p; p = strstr(p + 1, sub)) {
        const char *line = p;
        while (line > ll && line[-1] != '\n')
            line--;
        n += strncmp(line, "define", 6) == 0;
    }
    return n;
}

/* Twin layers leave one function each, not a thunk per twin: resnet_cifar's
 * eight batchnorms backward come in two shapes, and so do their kernel
 * bodies and node functions; its forward ones in five
 * (backend/codegen.c, mark_unnamed) */
START_TEST(twins_merged)
{
    KpRun r = kp_test_run("%s %s/examples/resnet_cifar.json -O2 --emit=llvm", KARPC_EXE, KARP_SOURCE_DIR);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_int_eq(count_defines(r.out, ".batchnorm_bwd.bn.planes.body("), 2);
    ck_assert_int_eq(count_defines(r.out, ".batchnorm_bwd.bn.sums.body("), 2);
    ck_assert_int_eq(count_defines(r.out, ".batchnorm_bwd("), 2);
    ck_assert_int_eq(count_defines(r.out, ".batchnorm_fwd("), 5);
    kp_test_run_free(&r);
}
END_TEST

START_TEST(command_errors)
{
    expect_error("", 2, "usage: karpc model.json -o model.so [--header model.h] [-O0..3]");
    expect_error("nope.json -o m.so", 1, "nope.json: cannot open: No such file or directory");
    expect_error(MODEL, 1, "karpc: no output: give -o model.so, or --emit=ir|dot|llvm|asm|obj");
    expect_error(MODEL " --emit=png", 1, "karpc: --emit expects ir, dot, llvm, asm or obj, got 'png'");
    expect_error(MODEL " --frobnicate", 1, "karpc: unknown option '--frobnicate' (karpc --help lists them)");
    expect_error(MODEL " -o", 1, "karpc: -o needs a file name");
    expect_error(MODEL " --batch 0 -o m.so", 1,
                 "karpc: --batch expects an integer between 1 and 65536, got '0'");
    expect_error("a.json b.json", 1, "karpc: one model file at a time: 'a.json' and 'b.json'");
    expect_error(MODEL " --emit=obj", 1, "--emit=obj needs -o file.o");
    expect_error(MODEL " --dump-after=nosuchpass", 1, NULL);
}
END_TEST

START_TEST(eval_on_idx)
{
    enum { N = 100 };
    static unsigned char pix[N * 784], lab[N];
    for (int i = 0; i < N * 784; i++)
        pix[i] = (unsigned char)(i * 7 % 251);
    for (int i = 0; i < N; i++)
        lab[i] = (unsigned char)(i % 10);
    char *img = kp_test_path(dir, "t10k-images-idx3-ubyte.gz");
    char *lbl = kp_test_path(dir, "t10k-labels-idx1-ubyte.gz");
    int idims[3] = {N, 28, 28}, ldims[1] = {N};
    ck_assert_int_eq(kp_test_write_idx(img, 3, idims, pix, sizeof pix), 0);
    ck_assert_int_eq(kp_test_write_idx(lbl, 1, ldims, lab, sizeof lab), 0);

    KpRun r = kp_test_run("%s eval %s --data mnist:%s --show 3 --batch 16", KARPC_EXE, MODEL, dir);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "image 2: predicted class"));
    ck_assert_ptr_nonnull(strstr(r.out, "fashion_mlp: 100 test samples, test loss "));
    ck_assert_ptr_nonnull(strstr(r.out, " acc "));
    ck_assert_ptr_nonnull(strstr(r.out, "samples/s at batch 16"));
    kp_test_run_free(&r);

    /* Truncated labels: the file and the byte offset. */
    ck_assert_int_eq(kp_test_write_idx(lbl, 1, ldims, lab, 40), 0);   /* cut short */
    char msg[512];
    snprintf(msg, sizeof msg,
             "karpc: %s: truncated at byte 48: expected 100 bytes of labels", lbl);
    r = kp_test_run("%s eval %s --data mnist:%s", KARPC_EXE, MODEL, dir);
    char *line = kp_test_first_line(r.err);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(line, msg);
    free(line);
    kp_test_run_free(&r);

    /* Label count differing from the image count. */
    int short_dims[1] = {N - 1};
    ck_assert_int_eq(kp_test_write_idx(lbl, 1, short_dims, lab, N - 1), 0);
    snprintf(msg, sizeof msg, "karpc: %s: byte 4: 99 labels for 100 images", lbl);
    r = kp_test_run("%s eval %s --data mnist:%s", KARPC_EXE, MODEL, dir);
    line = kp_test_first_line(r.err);
    ck_assert_str_eq(line, msg);
    free(line);
    kp_test_run_free(&r);

    /* Not an IDX file at all. */
    kp_test_write_file(img, "hello, world\n");
    snprintf(msg, sizeof msg,
             "karpc: %s: byte 0: not an IDX file of unsigned bytes (magic 68 65 6c 6c)", img);
    r = kp_test_run("%s eval %s --data mnist:%s", KARPC_EXE, MODEL, dir);
    line = kp_test_first_line(r.err);
    ck_assert_str_eq(line, msg);
    free(line);
    kp_test_run_free(&r);

    r = kp_test_run("%s eval %s --data cifar:%s", KARPC_EXE, MODEL, dir);
    line = kp_test_first_line(r.err);
    snprintf(msg, sizeof msg,
             "karpc: --data cifar:%s: expected fashion-mnist, fashion-mnist:DIR, mnist:DIR, "
             "cifar10:DIR or csv:TRAIN.csv[:TEST.csv]",
             dir);
    ck_assert_str_eq(line, msg);
    free(line);
    kp_test_run_free(&r);
    free(img);
    free(lbl);
}
END_TEST

/* Portable objects: a psABI level alone is enough; a named CPU needs its
 * features spelled out; a model needing features this machine lacks is
 * refused by karp_open with their names. */
START_TEST(target_cpu_and_features)
{
    char *so = kp_test_path(dir, "v3.so");
    KpRun r = kp_test_run("%s %s --target-cpu=x86-64-v3 -o %s && %s/examples/host_aot %s 2",
                          KARPC_EXE, MODEL, so, KARP_BINARY_DIR, so);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "y[1] ="));
    kp_test_run_free(&r);

    expect_error(MODEL " --target-cpu=skylake-avx512 -o m.so", 1,
                 "--target-cpu=skylake-avx512 needs --target-features too (e.g. +avx2,+fma): "
                 "karpc records the features in the model so that karp_open can refuse a CPU "
                 "without them (x86-64, x86-64-v2, x86-64-v3 and x86-64-v4 need none)");

    const char *missing = !__builtin_cpu_supports("avx512fp16") ? "avx512fp16"
                          : !__builtin_cpu_supports("avx512bf16") ? "avx512bf16"
                                                                  : NULL;
    if (missing) {
        r = kp_test_run("%s %s --target-features=+avx2,+fma,+%s -o %s && %s/examples/host_aot %s",
                        KARPC_EXE, MODEL, missing, so, KARP_BINARY_DIR, so);
        char expect[512];
        snprintf(expect, sizeof expect, "%s: needs CPU features this machine lacks: %s", so,
                 missing);
        char *line = kp_test_first_line(r.err);
        ck_assert_int_eq(r.status, 1);
        ck_assert_str_eq(line, expect);
        free(line);
        kp_test_run_free(&r);
    }
    free(so);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("karpc");
    TCase *tc = tcase_create("command");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, compile_and_run_aot_matches_jit);
    tcase_add_test(tc, many_partitions_link);
    tcase_add_test(tc, emit_outputs);
    tcase_add_test(tc, twins_merged);
    tcase_add_test(tc, batchnorm_by_samples);
    tcase_add_test(tc, command_errors);
    tcase_add_test(tc, eval_on_idx);
    tcase_add_test(tc, target_cpu_and_features);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(suite(), CK_FORK_GETENV);
}
