/*
 * test_runtime_loader.c — karp_open on shared libraries compiled at test
 * time from small C files: a good model, and every refusal (ABI version,
 * CPU features, bad descriptor, no descriptor symbol, missing file, a
 * file that is not a library), each with its exact code and message.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "karp.h"
#include "karp_abi.h"
#include "testutil.h"

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/karp_rt_loader_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Write <tmpdir>/<name>.c and compile it to <tmpdir>/<name>.so; the
 * library's path goes to so_path. */
static void build_so(const char *name, const char *source, char *so_path, size_t cap)
{
    char c_path[256], cmd[1024];
    snprintf(c_path, sizeof c_path, "%s/%s.c", tmpdir, name);
    snprintf(so_path, cap, "%s/%s.so", tmpdir, name);
    FILE *f = fopen(c_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(source, f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -I'%s/include' -o '%s' '%s'", KARP_SOURCE_DIR,
             so_path, c_path);
    ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

/* A model.so like the backend writes: y = 2x + bias, 4 floats per sample. */
static void build_model(const char *name, unsigned abi, const char *features, int max_batch,
                        char *so_path, size_t cap)
{
    char src[2048];
    snprintf(src, sizeof src,
             "#include \"karp_abi.h\"\n"
             "static void infer(const float *p, const float *prep, float *ws, const float *x, float *y, int64_t n)\n"
             "{ for (int64_t i = 0; i < 4 * n; i++) y[i] = 2 * x[i] + p[i %% 4]; }\n"
             "static void fwd(const float *p, float *tws, const float *x, float *y, int64_t n, uint64_t s)\n"
             "{ (void)s; infer(p, 0, tws, x, y, n); }\n"
             "static void bwd(const float *p, float *g, float *tws, const float *x,\n"
             "                const float *dy, float *dx, int64_t n)\n"
             "{ (void)p; (void)tws; (void)x;\n"
             "  for (int64_t i = 0; i < 4 * n; i++) { g[i %% 4] += dy[i]; if (dx) dx[i] = 2 * dy[i]; } }\n"
             "static const KarpParamDesc params[1] = {\n"
             "    {\"bias\", 1, KARP_INIT_ONES, {4}, 0, 4, 4, 4}};\n"
             "const KarpModelDesc karp_model_v1 = {\n"
             "    %uu, 1, \"%s\", \"%s\", \"none\", \"none\", 1, 1, {4}, {4}, %d, 4, 256, 1,\n"
             "    params, infer, KARP_TARGET_NONE, 0, 4, 0, fwd, bwd, 0, 0};\n",
             abi, name, features, max_batch);
    build_so(name, src, so_path, cap);
}

START_TEST(test_open_good_model)
{
    make_tmpdir();
    char so[256];
    build_model("good", KARP_ABI_VERSION, "sse2", 8, so, sizeof so);
    karp_error err = {.code = 123};
    karp_model *m = karp_open(so, &err);
    ck_assert_msg(m != NULL, "%s", err.message);
    ck_assert_int_eq(err.code, 0);
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_str_eq(info.name, "good");
    ck_assert_int_eq(info.max_batch, 8);
    ck_assert_int_eq(info.workspace_bytes, 256);
    ck_assert_str_eq(info.cpu_features, "sse2");
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8];
    ck_assert_int_eq(karp_infer(m, x, 2, y), 0);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(y[i], 2 * x[i] + 1);
    /* The training entry points of a model without loss or optimizer. */
    ck_assert_int_eq(info.has_train, 0);
    ck_assert_int_eq(info.has_optimizer, 0);
    float dy[8] = {1, 1, 1, 1, 1, 1, 1, 1}, dx[8];
    ck_assert_int_eq(karp_forward(m, x, 2, y), 0);
    ck_assert_float_eq(y[7], 17);
    ck_assert_int_eq(karp_backward(m, dy, dx), 0);
    ck_assert_float_eq(dx[0], 2);
    karp_param p;
    ck_assert_int_eq(karp_param_get(m, 0, &p), 0);
    ck_assert_float_eq(p.grad[3], 2);
    ck_assert_int_eq(p.trainable, 1);
    ck_assert_int_eq(karp_apply_gradients(m), KARP_EUNSUPPORTED);
    karp_close(m);

    /* A bare name means the current directory, not the library path. */
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(tmpdir), 0);
    m = karp_open("good.so", NULL);
    ck_assert_ptr_nonnull(m);
    karp_close(m);
    ck_assert_ptr_null(karp_open("libm.so.6", &err));
    ck_assert_int_eq(err.code, KARP_EIO);
    ck_assert_str_eq(err.message,
                     "libm.so.6: cannot open shared object file: No such file or directory");
    ck_assert_int_eq(chdir(cwd), 0);
    remove_tmpdir();
}
END_TEST

static void expect_refused(const char *path, int code, const char *msg)
{
    karp_error err;
    ck_assert_ptr_null(karp_open(path, &err));
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.message, msg);
    ck_assert_str_eq(karp_last_error(), msg);
    ck_assert_ptr_null(karp_open(path, NULL)); /* err is optional */
    ck_assert_str_eq(karp_last_error(), msg);
}

START_TEST(test_abi_mismatch)
{
    make_tmpdir();
    char so[256], msg[512];
    build_model("future", 999, "", 8, so, sizeof so);
    snprintf(msg, sizeof msg,
             "%s: built for karpc ABI version 999, this runtime is version 5 — rebuild it with "
             "this karpc",
             so);
    expect_refused(so, KARP_EABI, msg);
    remove_tmpdir();
}
END_TEST

/* A feature the runtime knows but this machine lacks, or NULL. */
static const char *lacking_feature(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512fp16"))
        return "avx512fp16";
    if (!__builtin_cpu_supports("avx512vbmi2"))
        return "avx512vbmi2";
    if (!__builtin_cpu_supports("avx512f"))
        return "avx512f";
    if (!__builtin_cpu_supports("avx2"))
        return "avx2";
    return NULL;
}

START_TEST(test_cpu_refusal)
{
    make_tmpdir();
    char so[256], msg[512], features[128];
    const char *lacking = lacking_feature();
    /* A made-up name cannot be verified: it counts as missing too. */
    snprintf(features, sizeof features, "sse2,%s%snot-a-cpu-feature", lacking ? lacking : "",
             lacking ? "," : "");
    build_model("needy", KARP_ABI_VERSION, features, 8, so, sizeof so);
    snprintf(msg, sizeof msg, "%s: needs CPU features this machine lacks: %s%snot-a-cpu-feature",
             so, lacking ? lacking : "", lacking ? ", " : "");
    expect_refused(so, KARP_ECPU, msg);
    remove_tmpdir();
}
END_TEST

START_TEST(test_bad_descriptor_in_so)
{
    make_tmpdir();
    char so[256], msg[512];
    build_model("nobatch", KARP_ABI_VERSION, "", 0, so, sizeof so);
    snprintf(msg, sizeof msg, "%s: invalid descriptor: max_batch is 0", so);
    expect_refused(so, KARP_EFORMAT, msg);
    remove_tmpdir();
}
END_TEST

START_TEST(test_not_a_model)
{
    make_tmpdir();
    char so[256], msg[512];
    build_so("plain", "int karp_model_v2 = 1;\nint plain(void) { return 1; }\n", so, sizeof so);
    snprintf(msg, sizeof msg, "%s: not a karpc model (no karp_model_v1 symbol)", so);
    expect_refused(so, KARP_EFORMAT, msg);

    char path[256];
    snprintf(path, sizeof path, "%s/missing.so", tmpdir);
    snprintf(msg, sizeof msg, "%s: cannot open shared object file: No such file or directory",
             path);
    expect_refused(path, KARP_EIO, msg);

    /* A text file: glibc's reason varies by size ("file too short",
     * "invalid ELF header"), so only its start is fixed. */
    snprintf(path, sizeof path, "%s/model.so", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not a shared library, it is a text file long enough for a header\n", f);
    fclose(f);
    karp_error err;
    ck_assert_ptr_null(karp_open(path, &err));
    ck_assert_int_eq(err.code, KARP_EIO);
    snprintf(msg, sizeof msg, "%s: ", path);
    ck_assert_msg(strncmp(err.message, msg, strlen(msg)) == 0, "%s", err.message);
    ck_assert_ptr_nonnull(strstr(err.message, "ELF"));

    expect_refused(NULL, KARP_EINVAL, "karp_open: path is NULL");
    remove_tmpdir();
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("runtime_loader");
    TCase *tc = tcase_create("karp_open");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_open_good_model);
    tcase_add_test(tc, test_abi_mismatch);
    tcase_add_test(tc, test_cpu_refusal);
    tcase_add_test(tc, test_bad_descriptor_in_so);
    tcase_add_test(tc, test_not_a_model);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(loader_suite(), CK_FORK_GETENV);
}
