/*
 * test_backend.c — the backend's pieces: target machine and the features
 * the descriptor records, the descriptor's layout against the C structs,
 * the accuracy of the generated exp/tanh/sigmoid, the header, and the
 * error paths of code generation and karp_compile.
 * (Whole models against the reference interpreter: test_backend_models.c.)
 */
#include <check.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Target.h>

#include "backend/backend.h"
#include "backend/emit.h"
#include "backend/llvm_internal.h"
#include "include/karp_abi.h"
#include "include/karpc.h"
#include "runtime/model.h"
#include "testutil.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_be_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Write text to <tmpdir>/name; the path in path. */
static void write_file(const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* --- target ------------------------------------------------------------ */

START_TEST(test_target_host)
{
    KpTargetConfig cfg;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_int_eq(kp_llvm_target_config(NULL, &cfg, &d), 0);
    ck_assert_int_eq(cfg.opt_level, 3);
    ck_assert(cfg.vector_width == 4 || cfg.vector_width == 8 || cfg.vector_width == 16);
    /* the host has every feature the code will ask for */
    char missing[256];
    ck_assert_int_eq(kp_rt_cpu_check(cfg.cpu_features, missing, sizeof missing), 0);
    if (__builtin_cpu_supports("avx2"))
        ck_assert_ptr_nonnull(strstr(cfg.cpu_features, "avx2"));
    if (__builtin_cpu_supports("avx512f"))
        ck_assert_int_eq(cfg.vector_width, 16);
    LLVMTargetMachineRef tm = kp_llvm_target_machine(&cfg, &d);
    ck_assert_ptr_nonnull(tm);
    LLVMDisposeTargetMachine(tm);
    kp_llvm_target_config_free(&cfg);
}
END_TEST

START_TEST(test_target_explicit)
{
    KpTargetOpts t = {.opt_level = 2, .cpu = "x86-64", .features = "+fma,+avx2,-avx512f,+sse2"};
    KpTargetConfig cfg;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_int_eq(kp_llvm_target_config(&t, &cfg, &d), 0);
    ck_assert_str_eq(cfg.cpu, "x86-64");
    ck_assert_int_eq(cfg.vector_width, 8);
    /* the runtime table's order, only features turned on */
    ck_assert_str_eq(cfg.cpu_features, "sse2,avx2,fma");
    kp_llvm_target_config_free(&cfg);

    /* features alone: a portable object on the x86-64 baseline */
    KpTargetOpts f = {.opt_level = 3, .features = "+avx512f,+avx512bw"};
    ck_assert_int_eq(kp_llvm_target_config(&f, &cfg, &d), 0);
    ck_assert_str_eq(cfg.cpu, "x86-64");
    ck_assert_int_eq(cfg.vector_width, 16);
    ck_assert_str_eq(cfg.cpu_features, "avx512f,avx512bw");
    kp_llvm_target_config_free(&cfg);

    t.opt_level = 7;
    ck_assert_int_eq(kp_llvm_target_config(&t, &cfg, &d), -1);
    ck_assert_str_eq(d.msg, "optimization level must be 0..3, got 7");
}
END_TEST

/* --- descriptor layout ---------------------------------------------------- */

#define CHECK_FIELD(ty, td, st, idx, field)                                                      \
    ck_assert_int_eq((long long)LLVMOffsetOfElement(td, ty, idx), (long long)offsetof(st, field))

START_TEST(test_descriptor_layout)
{
    KpTargetConfig cfg;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_int_eq(kp_llvm_target_config(NULL, &cfg, &d), 0);
    LLVMTargetMachineRef tm = kp_llvm_target_machine(&cfg, &d);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMContextRef ctx = LLVMContextCreate();

    LLVMTypeRef p = kp_llvm_param_desc_type(ctx);
    ck_assert_ptr_eq(p, kp_llvm_param_desc_type(ctx));
    ck_assert_int_eq(LLVMCountStructElementTypes(p), 8);
    ck_assert_int_eq((long long)LLVMABISizeOfType(td, p), (long long)sizeof(KarpParamDesc));
    CHECK_FIELD(p, td, KarpParamDesc, 0, name);
    CHECK_FIELD(p, td, KarpParamDesc, 1, rank);
    CHECK_FIELD(p, td, KarpParamDesc, 2, init);
    CHECK_FIELD(p, td, KarpParamDesc, 3, shape);
    CHECK_FIELD(p, td, KarpParamDesc, 4, offset);
    CHECK_FIELD(p, td, KarpParamDesc, 5, size);
    CHECK_FIELD(p, td, KarpParamDesc, 6, fan_in);
    CHECK_FIELD(p, td, KarpParamDesc, 7, fan_out);

    LLVMTypeRef m = kp_llvm_model_desc_type(ctx);
    ck_assert_int_eq(LLVMCountStructElementTypes(m), 39);
    ck_assert_int_eq((long long)LLVMABISizeOfType(td, m), (long long)sizeof(KarpModelDesc));
    CHECK_FIELD(m, td, KarpModelDesc, 0, abi_version);
    CHECK_FIELD(m, td, KarpModelDesc, 1, nparams);
    CHECK_FIELD(m, td, KarpModelDesc, 2, name);
    CHECK_FIELD(m, td, KarpModelDesc, 3, cpu_features);
    CHECK_FIELD(m, td, KarpModelDesc, 4, loss);
    CHECK_FIELD(m, td, KarpModelDesc, 5, optimizer);
    CHECK_FIELD(m, td, KarpModelDesc, 6, input_rank);
    CHECK_FIELD(m, td, KarpModelDesc, 7, output_rank);
    CHECK_FIELD(m, td, KarpModelDesc, 8, input_shape);
    CHECK_FIELD(m, td, KarpModelDesc, 9, output_shape);
    CHECK_FIELD(m, td, KarpModelDesc, 10, max_batch);
    CHECK_FIELD(m, td, KarpModelDesc, 11, param_floats);
    CHECK_FIELD(m, td, KarpModelDesc, 12, workspace_bytes);
    CHECK_FIELD(m, td, KarpModelDesc, 13, seed);
    CHECK_FIELD(m, td, KarpModelDesc, 14, params);
    CHECK_FIELD(m, td, KarpModelDesc, 15, infer);
    CHECK_FIELD(m, td, KarpModelDesc, 16, target_kind);
    CHECK_FIELD(m, td, KarpModelDesc, 17, opt_slots);
    CHECK_FIELD(m, td, KarpModelDesc, 18, trainable_floats);
    CHECK_FIELD(m, td, KarpModelDesc, 19, train_workspace_bytes);
    CHECK_FIELD(m, td, KarpModelDesc, 20, forward);
    CHECK_FIELD(m, td, KarpModelDesc, 21, backward);
    CHECK_FIELD(m, td, KarpModelDesc, 22, apply);
    CHECK_FIELD(m, td, KarpModelDesc, 23, train_step);
    CHECK_FIELD(m, td, KarpModelDesc, 24, no_train_reason);
    CHECK_FIELD(m, td, KarpModelDesc, 25, train_epochs);
    CHECK_FIELD(m, td, KarpModelDesc, 26, norm_nmean);
    CHECK_FIELD(m, td, KarpModelDesc, 27, norm_nstd);
    CHECK_FIELD(m, td, KarpModelDesc, 28, norm_mean);
    CHECK_FIELD(m, td, KarpModelDesc, 29, norm_std);
    CHECK_FIELD(m, td, KarpModelDesc, 30, naugment);
    CHECK_FIELD(m, td, KarpModelDesc, 31, augment);
    CHECK_FIELD(m, td, KarpModelDesc, 32, prep_floats);
    CHECK_FIELD(m, td, KarpModelDesc, 33, prepare);
    CHECK_FIELD(m, td, KarpModelDesc, 34, nvalues);
    CHECK_FIELD(m, td, KarpModelDesc, 35, values);
    CHECK_FIELD(m, td, KarpModelDesc, 36, scratch_bytes);
    CHECK_FIELD(m, td, KarpModelDesc, 37, scratch_shared_bytes);
    CHECK_FIELD(m, td, KarpModelDesc, 38, bind_scratch);

    LLVMContextDispose(ctx);
    LLVMDisposeTargetData(td);
    LLVMDisposeTargetMachine(tm);
    kp_llvm_target_config_free(&cfg);
}
END_TEST

/* --- exp, tanh, sigmoid ----------------------------------------------------- */

typedef void (*MathFn)(const float *x, float *y, int64_t count);
typedef LLVMValueRef (*EmitMath)(KpEmit *e, LLVMValueRef x);

/* void name(const float *x, float *y, i64 count): y = f(x), vectors of vw
 * (count a multiple of vw), as the eltwise kernels call them. */
static void add_math_fn(KpEmit *e, const char *name, EmitMath f)
{
    LLVMTypeRef params[3] = {e->ptr, e->ptr, e->i64};
    LLVMValueRef fn = LLVMAddFunction(e->mod, name, LLVMFunctionType(e->void_t, params, 3, 0));
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, fn, "entry"));
    KpLoop l;
    kp_loop_begin(e, &l, kp_i64(e, 0), LLVMGetParam(fn, 2), e->vw, "i");
    LLVMValueRef v = f(e, kp_load_vec(e, LLVMGetParam(fn, 0), l.iv));
    kp_store_vec(e, v, LLVMGetParam(fn, 1), l.iv);
    kp_loop_end(e, &l);
    LLVMBuildRetVoid(e->b);
}

static void check_err(LLVMErrorRef err)
{
    if (err) {
        char *msg = LLVMGetErrorMessage(err);
        ck_abort_msg("LLVM: %s", msg);
    }
}

static double sigmoid_ref(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* Max relative error of f against ref over [-20, 20] (and a wider sweep
 * for exp, down into the subnormals). */
static double max_rel_err(MathFn f, double (*ref)(float), float lo, float hi, int64_t count)
{
    /* calloc: gcc -O1 (the sanitizer build) cannot tell that count > 0 */
    float *x = calloc((size_t)count, sizeof *x), *y = malloc((size_t)count * sizeof *y);
    for (int64_t i = 0; i < count; i++)
        x[i] = lo + (hi - lo) * (float)i / (float)(count - 1);
    f(x, y, count);
    double worst = 0;
    for (int64_t i = 0; i < count; i++) {
        double r = ref(x[i]);
        double err = r == 0 ? fabs((double)y[i]) : fabs((double)y[i] - r) / fabs(r);
        if (err > worst)
            worst = err;
    }
    free(x);
    free(y);
    return worst;
}

static double exp_ref(float x) { return expf(x); }
static double tanh_ref(float x) { return tanhf(x); }
static double exp_true(float x) { return exp((double)x); }
static double tanh_true(float x) { return tanh((double)x); }
static double sigmoid_true(float x) { return 1.0 / (1.0 + exp(-(double)x)); }

START_TEST(test_math_accuracy)
{
    KpTargetConfig cfg;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_int_eq(kp_llvm_target_config(NULL, &cfg, &d), 0);
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("math", ctx);
    KpEmit e;
    kp_emit_init(&e, ctx, mod, NULL, cfg.vector_width);
    add_math_fn(&e, "t_exp", kp_emit_exp);
    add_math_fn(&e, "t_tanh", kp_emit_tanh);
    add_math_fn(&e, "t_sigmoid", kp_emit_sigmoid);
    LLVMDisposeBuilder(e.b);

    LLVMTargetMachineRef tm = kp_llvm_target_machine(&cfg, &d);
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMOrcLLJITRef jit;
    check_err(LLVMOrcCreateLLJIT(&jit, builder));
    check_err(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit),
                                          LLVMOrcCreateNewThreadSafeModule(mod, tsc)));
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMOrcExecutorAddress a_exp, a_tanh, a_sig;
    check_err(LLVMOrcLLJITLookup(jit, &a_exp, "t_exp"));
    check_err(LLVMOrcLLJITLookup(jit, &a_tanh, "t_tanh"));
    check_err(LLVMOrcLLJITLookup(jit, &a_sig, "t_sigmoid"));

    const int64_t count = 16 * 25000 + 16;   /* step ~1e-4 over [-20, 20] */
    double e_exp = max_rel_err((MathFn)(uintptr_t)a_exp, exp_ref, -20, 20, count);
    double e_tanh = max_rel_err((MathFn)(uintptr_t)a_tanh, tanh_ref, -20, 20, count);
    double e_sig = max_rel_err((MathFn)(uintptr_t)a_sig, sigmoid_ref, -20, 20, count);
    double e_wide = max_rel_err((MathFn)(uintptr_t)a_exp, exp_ref, -87, 88.7f, count);
    double t_exp = max_rel_err((MathFn)(uintptr_t)a_exp, exp_true, -20, 20, count);
    double t_tanh = max_rel_err((MathFn)(uintptr_t)a_tanh, tanh_true, -20, 20, count);
    double t_sig = max_rel_err((MathFn)(uintptr_t)a_sig, sigmoid_true, -20, 20, count);
    fprintf(stderr, "max relative error over [-20,20] vs libm float: exp %.3g tanh %.3g "
                    "sigmoid %.3g (exp over [-87,88.7] %.3g); vs exact: exp %.3g tanh %.3g "
                    "sigmoid %.3g\n", e_exp, e_tanh, e_sig, e_wide, t_exp, t_tanh, t_sig);
    /* 2 ulp of float is 2.4e-7 at worst; libm's own float results are
     * up to 1 ulp off, and sigmoid's reference rounds three times */
    ck_assert_double_le(e_exp, 2.5e-7);
    ck_assert_double_le(e_tanh, 2.5e-7);
    ck_assert_double_le(e_sig, 3.6e-7);
    ck_assert_double_le(e_wide, 2.5e-7);
    ck_assert_double_le(t_exp, 2e-7);
    ck_assert_double_le(t_tanh, 2e-7);
    ck_assert_double_le(t_sig, 2.5e-7);

    /* the edges: overflow, underflow into subnormals and 0, NaN, signs */
    MathFn fexp = (MathFn)(uintptr_t)a_exp, ftanh = (MathFn)(uintptr_t)a_tanh;
    float x[16] = {100, 89, -103, -104, -200, NAN, 0, -0.0f, 1, -1, 9, -9, 0.5f, -0.5f, 1e-20f, 88.5f};
    float y[16];
    fexp(x, y, 16);
    ck_assert(isinf(y[0]) && y[0] > 0);
    ck_assert(isinf(y[1]));
    ck_assert(y[2] > 0 && y[2] < 1e-44f);
    ck_assert(y[3] >= 0 && y[3] < 1e-44f);
    ck_assert(y[4] == 0);
    ck_assert(isnan(y[5]));
    ck_assert(y[6] == 1 && y[7] == 1);
    ck_assert(fabsf(y[15] - expf(88.5f)) <= 2e-7f * expf(88.5f));
    ftanh(x, y, 16);
    ck_assert(y[0] == 1 && y[4] == -1 && isnan(y[5]));
    ck_assert(y[6] == 0 && signbit(y[7]));
    ck_assert(y[8] == -y[9] && y[10] == -y[11] && y[12] == -y[13]);
    ck_assert(y[14] == 1e-20f);

    check_err(LLVMOrcDisposeLLJIT(jit));
    kp_llvm_target_config_free(&cfg);
}
END_TEST

static double log_true(float x) { return log((double)x); }
static double log1p_true(float x) { return log1p((double)x); }

/* ln and ln(1+x), as the losses use them: within 2 ulp of the exact value,
 * and the edges (0, negatives, infinity, subnormals, tiny x of log1p). */
START_TEST(test_log_accuracy)
{
    KpTargetConfig cfg;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_int_eq(kp_llvm_target_config(NULL, &cfg, &d), 0);
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("log", ctx);
    KpEmit e;
    kp_emit_init(&e, ctx, mod, NULL, cfg.vector_width);
    add_math_fn(&e, "t_log", kp_emit_log);
    add_math_fn(&e, "t_log1p", kp_emit_log1p);
    LLVMDisposeBuilder(e.b);
    LLVMTargetMachineRef tm = kp_llvm_target_machine(&cfg, &d);
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMOrcLLJITRef jit;
    check_err(LLVMOrcCreateLLJIT(&jit, builder));
    check_err(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit),
                                          LLVMOrcCreateNewThreadSafeModule(mod, tsc)));
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMOrcExecutorAddress a_log, a_log1p;
    check_err(LLVMOrcLLJITLookup(jit, &a_log, "t_log"));
    check_err(LLVMOrcLLJITLookup(jit, &a_log1p, "t_log1p"));
    MathFn flog = (MathFn)(uintptr_t)a_log, flog1p = (MathFn)(uintptr_t)a_log1p;

    const int64_t count = 16 * 25000;
    double e_small = max_rel_err(flog, log_true, 1e-6f, 0.9f, count);
    double e_near1 = max_rel_err(flog, log_true, 1.1f, 100.0f, count);
    double e_big = max_rel_err(flog, log_true, 100.0f, 3e38f, count);
    double e_l1p = max_rel_err(flog1p, log1p_true, -0.99f, 10.0f, count);
    double e_l1p_tiny = max_rel_err(flog1p, log1p_true, -1e-4f, 1e-4f, count);
    fprintf(stderr, "max relative error vs exact: log %.3g (0,0.9] %.3g [1.1,100] %.3g [100,3e38]; "
                    "log1p %.3g [-0.99,10] %.3g [-1e-4,1e-4]\n",
            e_small, e_near1, e_big, e_l1p, e_l1p_tiny);
    ck_assert_double_le(e_small, 2.5e-7);
    ck_assert_double_le(e_near1, 2.5e-7);
    ck_assert_double_le(e_big, 2.5e-7);
    ck_assert_double_le(e_l1p, 2.5e-7);
    ck_assert_double_le(e_l1p_tiny, 2.5e-7);

    float x[16] = {0, -0.0f, -1, NAN, INFINITY, 1e-40f, 1, 2, 0.5f, 1e-45f, 3e38f, 1e-30f,
                   -INFINITY, 0.999999f, 1.000001f, 4};
    float y[16];
    flog(x, y, 16);
    ck_assert(isinf(y[0]) && y[0] < 0 && isinf(y[1]) && y[1] < 0);
    ck_assert(isnan(y[2]) && isnan(y[3]) && isnan(y[12]));
    ck_assert(isinf(y[4]) && y[4] > 0);
    ck_assert(fabs(y[5] - log((double)x[5])) < 1e-5 * 92.1);
    ck_assert(fabs(y[9] - log((double)x[9])) < 1e-5 * 103.3);
    ck_assert(y[6] == 0);
    ck_assert(fabs(y[7] - log(2.0)) < 1e-7 && fabs(y[8] + log(2.0)) < 1e-7);
    flog1p(x, y, 16);
    ck_assert(y[0] == 0 && isinf(y[2]) && y[2] < 0 && isnan(y[3]) && isinf(y[4]) && y[4] > 0);
    ck_assert(y[11] == 1e-30f && y[5] == 1e-40f);

    check_err(LLVMOrcDisposeLLJIT(jit));
    kp_llvm_target_config_free(&cfg);
}
END_TEST

/* --- the driver's errors, code generation's errors, the header ------------- */

START_TEST(test_compile_errors)
{
    make_tmpdir();
    karp_error err;
    ck_assert_ptr_null(karp_compile(NULL, NULL, &err));
    ck_assert_int_eq(err.code, KARP_EINVAL);
    ck_assert_str_eq(err.message, "karp_compile: model_path is NULL");

    char path[512];
    snprintf(path, sizeof path, "%s/missing.json", tmpdir);
    ck_assert_ptr_null(karp_compile(path, NULL, &err));
    ck_assert_int_lt(err.code, 0);
    ck_assert_ptr_nonnull(strstr(err.message, "missing.json"));
    ck_assert_ptr_nonnull(strstr(err.message, "No such file"));

    write_file("bad.json", "{\"karp\": 1, \"input\": {\"shape\": [4]}, \"layers\": "
                           "[{\"type\": \"dense\", \"units\": -3}]}", path, sizeof path);
    ck_assert_ptr_null(karp_compile(path, NULL, &err));
    ck_assert_int_eq(err.code, KARP_EMODEL);
    ck_assert_ptr_nonnull(strstr(err.message, "bad.json"));
    ck_assert_ptr_nonnull(strstr(err.message, "units"));

    write_file("syntax.json", "{\"karp\": 1,, }", path, sizeof path);
    ck_assert_ptr_null(karp_compile(path, NULL, &err));
    ck_assert_int_eq(err.code, KARP_EMODEL);
    ck_assert_ptr_nonnull(strstr(err.message, "syntax.json:1:"));

    karp_compile_options o;
    karp_compile_options_init(&o);
    ck_assert_int_eq(o.opt_level, 3);
    ck_assert_ptr_null(o.target_cpu);
    o.opt_level = 9;
    ck_assert_ptr_null(karp_compile(path, &o, &err));
    ck_assert_int_eq(err.code, KARP_EINVAL);
    remove_tmpdir();
}
END_TEST

static const char *small_model =
    "{\"karp\": 1, \"name\": \"tiny_net\", \"input\": {\"shape\": [2, 3]},\n"
    " \"layers\": [{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 5, \"activation\": "
    "\"tanh\"},\n            {\"type\": \"dense\", \"units\": 4, \"activation\": \"softmax\"}],\n"
    " \"batch\": 16}\n";

START_TEST(test_header_and_emit)
{
    make_tmpdir();
    char path[512], out[600];
    write_file("tiny.json", small_model, path, sizeof path);
    KpDiag d;
    kp_diag_init(&d);
    KpProgram prog;
    ck_assert_msg(kp_build_program(path, NULL, 0, &prog, &d) == 0, "%s", d.msg);
    ck_assert_ptr_nonnull(prog.train);
    const KpGraph *g = prog.infer;
    snprintf(out, sizeof out, "%s/tiny.h", tmpdir);
    ck_assert_int_eq(kp_write_header(g, out, &d), 0);

    /* the header compiles, and says what the model is */
    char src[600], cmd[2048];
    write_file("use.c", "#include \"tiny.h\"\n"
                        "_Static_assert(TINY_NET_INPUT_SIZE == 6, \"in\");\n"
                        "_Static_assert(TINY_NET_OUTPUT_SIZE == 4, \"out\");\n"
                        "_Static_assert(TINY_NET_MAX_BATCH == 16, \"batch\");\n"
                        "_Static_assert(TINY_NET_INPUT_RANK == 2, \"rank\");\n"
                        "_Static_assert(TINY_NET_PARAM_COUNT == 4, \"params\");\n"
                        "_Static_assert(TINY_NET_TARGET_KIND == KARP_TARGET_NONE, \"target\");\n"
                        "_Static_assert(TINY_NET_OPT_SLOTS == 0 && !TINY_NET_HAS_TRAIN_STEP, \"train\");\n"
                        "_Static_assert(!TINY_NET_HAS_APPLY, \"apply\");\n"
                        "static const long long shape[] = TINY_NET_INPUT_SHAPE;\n"
                        "const KarpModelDesc *f(void) { (void)shape; return &karp_model_v1; }\n",
               src, sizeof src);
    snprintf(cmd, sizeof cmd, "cc -std=c17 -Wall -Werror -fsyntax-only -I%s/include %s",
             KARP_SOURCE_DIR, src);
    ck_assert_int_eq(system(cmd), 0);

    /* every output kind, to files and to stdout */
    KpCodegen *cg = NULL;
    KpTargetOpts t = {.opt_level = 1};
    ck_assert_msg(kp_llvm_codegen(&prog, &t, &cg, &d) == 0, "%s", d.msg);
    const char *names[] = {"tiny.ll", "tiny.s", "tiny.o"};
    for (int k = 0; k < 3; k++) {
        snprintf(out, sizeof out, "%s/%s", tmpdir, names[k]);
        ck_assert_int_eq(kp_llvm_emit_file(cg, (KpEmitKind)k, out, &d), 0);
        ck_assert_int_eq(access(out, R_OK), 0);
    }
    snprintf(out, sizeof out, "%s/tiny.ll", tmpdir);
    FILE *f = fopen(out, "r");
    char text[65536];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "@karp_model_v1 = local_unnamed_addr constant %KarpModelDesc"));

    /* link errors are reported with cc's words, and nothing is left behind */
    char so[600];
    snprintf(so, sizeof so, "%s/bad.so", tmpdir);
    ck_assert_int_eq(kp_link_shared((const char *[]){src}, 1, so, NULL, &d), -1);
    ck_assert_ptr_nonnull(strstr(d.msg, "bad.so: linking failed:"));
    ck_assert_int_ne(access(so, F_OK), 0);
    kp_diag_init(&d);
    ck_assert_int_eq(kp_link_shared((const char *[]){out}, 1, so, "/nonexistent/libkarprt.a", &d), -1);
    ck_assert_ptr_nonnull(strstr(d.msg, "/nonexistent/libkarprt.a: cannot read"));

    kp_llvm_free(cg);
    kp_program_free(&prog);
    remove_tmpdir();
}
END_TEST

static Suite *backend_suite(void)
{
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_target_host);
    tcase_add_test(tc, test_target_explicit);
    tcase_add_test(tc, test_descriptor_layout);
    tcase_add_test(tc, test_math_accuracy);
    tcase_add_test(tc, test_log_accuracy);
    tcase_add_test(tc, test_compile_errors);
    tcase_add_test(tc, test_header_and_emit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(backend_suite(), CK_FORK_GETENV);
}
