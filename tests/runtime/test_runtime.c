/*
 * test_runtime.c — the model core of libkarprt: kp_rt_model_new on a
 * hand-built descriptor, karp_infer and its argument checks, parameter
 * access, initialization, the error channel, the CPU check, the RNG and
 * krt_parallel_for, with the team of threads that runs its chunks
 * (runtime/team.c).
 */
#include <check.h>
#include <stdatomic.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tiny_model.h"
#include "testutil.h"

static const KarpModelDesc *static_tiny(void)
{
    static KarpModelDesc d;
    d = tiny_desc();
    return &d;
}

START_TEST(test_new_and_infer)
{
    tiny_releases = 0;
    karp_error err = {.code = 99};
    karp_model *m = kp_rt_model_new(static_tiny(), NULL, tiny_release, &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(err.code, 0);
    ck_assert_str_eq(err.message, "");
    ck_assert_uint_eq((uintptr_t)m->params % 64, 0);
    ck_assert_uint_eq((uintptr_t)m->ws % 64, 0);

    karp_param w, b;
    ck_assert_int_eq(karp_param_find(m, "dense.weight", &w), 0);
    ck_assert_int_eq(karp_param_find(m, "dense.bias", &b), 0);
    const float wv[6] = {1, 2, 3, 4, 5, 6}, bv[2] = {0.5f, -1};
    memcpy(w.data, wv, sizeof wv);
    memcpy(b.data, bv, sizeof bv);
    const float x[6] = {1, 0, 0, 1, 1, 1};
    float y[4] = {0};
    ck_assert_int_eq(karp_infer(m, x, 2, y), 0);
    ck_assert_float_eq(y[0], 1.5f);
    ck_assert_float_eq(y[1], 3.0f);
    ck_assert_float_eq(y[2], 6.5f);
    ck_assert_float_eq(y[3], 14.0f);

    ck_assert_int_eq(tiny_releases, 0);
    karp_close(m);
    ck_assert_int_eq(tiny_releases, 1);
    karp_close(NULL);
}
END_TEST

/* Blocks of 2 MiB and more sit on 2 MiB boundaries (huge pages asked for,
 * docs/abi.md "Memory"), zeroed; smaller ones stay 64-byte aligned. */
START_TEST(test_large_slabs_huge_aligned)
{
    KarpModelDesc d = tiny_desc();
    d.workspace_bytes = (3 << 20) + 64;
    d.train_workspace_bytes = 5 << 20;
    karp_error err = {.code = 99};
    karp_model *m = kp_rt_model_new(&d, NULL, NULL, &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq((uintptr_t)m->ws % (2 << 20), 0);
    ck_assert_uint_eq((uintptr_t)m->tws % (2 << 20), 0);
    ck_assert_uint_eq((uintptr_t)m->params % 64, 0);
    const unsigned char *ws = m->ws, *tws = m->tws;
    size_t nonzero = 0;
    for (int64_t i = 0; i < d.workspace_bytes; i++)
        nonzero += ws[i] != 0;
    for (int64_t i = 0; i < d.train_workspace_bytes; i++)
        nonzero += tws[i] != 0;
    ck_assert_uint_eq(nonzero, 0);
    karp_close(m);
}
END_TEST

/* Slabs made ahead of the model (the JIT makes them while LLVM
 * compiles): taken when every size is the descriptor's, freed and
 * replaced by the model's own when one is not; refused when larger than
 * half the machine's memory. */
static KpSlabs tiny_slabs(const KarpModelDesc *d)
{
    return (KpSlabs){.param_floats = d->param_floats,
                     .opt_slots = d->opt_slots,
                     .prep_floats = d->prep_floats,
                     .input_floats = d->max_batch * d->input_shape[0],
                     .workspace_bytes = d->workspace_bytes,
                     .train_workspace_bytes = d->train_workspace_bytes};
}

START_TEST(test_slabs_made_ahead)
{
    KarpModelDesc d = tiny_desc();
    d.train_workspace_bytes = 3 << 20;
    KpSlabs s = tiny_slabs(&d);
    ck_assert_int_eq(kp_rt_slabs_alloc(&s), 0);
    float *params = s.params;
    void *tws = s.tws;
    ck_assert_uint_eq((uintptr_t)tws % (2 << 20), 0);
    memset(tws, 0, (size_t)d.train_workspace_bytes);
    karp_error err = {.code = 99};
    karp_model *m = kp_rt_model_new_slabs(&d, &s, NULL, NULL, &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(err.code, 0);
    ck_assert_ptr_eq(m->params, params);
    ck_assert_ptr_eq(m->tws, tws);
    ck_assert_ptr_null(s.params);
    ck_assert_ptr_null(s.tws);
    /* initialized like any new model: same parameters as one made alone */
    karp_model *alone = kp_rt_model_new(&d, NULL, NULL, &err);
    ck_assert_ptr_nonnull(alone);
    ck_assert_mem_eq(m->params, alone->params, (size_t)d.param_floats * sizeof(float));
    karp_close(alone);
    karp_close(m);

    /* one size off: not taken (ASan sees them freed) */
    s = tiny_slabs(&d);
    s.workspace_bytes += 64;
    ck_assert_int_eq(kp_rt_slabs_alloc(&s), 0);
    params = s.params;
    m = kp_rt_model_new_slabs(&d, &s, NULL, NULL, &err);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_null(s.params);
    ck_assert_ptr_null(s.ws);
    karp_close(m);

    /* a descriptor the runtime refuses: the slabs are freed with it */
    s = tiny_slabs(&d);
    ck_assert_int_eq(kp_rt_slabs_alloc(&s), 0);
    KarpModelDesc bad = d;
    bad.abi_version = KARP_ABI_VERSION + 1;
    ck_assert_ptr_null(kp_rt_model_new_slabs(&bad, &s, NULL, NULL, &err));
    ck_assert_int_eq(err.code, KARP_EABI);
    ck_assert_ptr_null(s.params);

    /* more than half of memory, or a negative size: none made */
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    s = tiny_slabs(&d);
    s.train_workspace_bytes = (int64_t)pages * psize / 2 + 1;
    ck_assert_int_eq(kp_rt_slabs_alloc(&s), -1);
    ck_assert_ptr_null(s.params);
    ck_assert_ptr_null(s.tws);
    s = tiny_slabs(&d);
    s.prep_floats = -1;
    ck_assert_int_eq(kp_rt_slabs_alloc(&s), -1);
    kp_rt_slabs_free(NULL);
}
END_TEST

START_TEST(test_infer_errors)
{
    karp_model *m = tiny_open(static_tiny());
    float x[12] = {0}, y[8];
    ck_assert_int_eq(karp_infer(NULL, x, 1, y), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_infer: model is NULL");
    ck_assert_int_eq(karp_infer(m, NULL, 1, y), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_infer: x is NULL");
    ck_assert_int_eq(karp_infer(m, x, 1, NULL), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_infer: y is NULL");
    ck_assert_int_eq(karp_infer(m, x, 0, y), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_infer: n must be between 1 and 4, got 0");
    ck_assert_int_eq(karp_infer(m, x, 5, y), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_infer: n must be between 1 and 4, got 5");
    ck_assert_int_eq(karp_infer(m, x, -3, y), KARP_EINVAL);
    ck_assert_int_eq(karp_infer(m, x, 4, y), 0);
    karp_close(m);
}
END_TEST

START_TEST(test_params_and_info)
{
    karp_model *m = tiny_open(static_tiny());
    ck_assert_int_eq(karp_param_count(m), 2);
    ck_assert_int_eq(karp_param_count(NULL), KARP_EINVAL);
    karp_param p;
    ck_assert_int_eq(karp_param_get(m, 0, &p), 0);
    ck_assert_str_eq(p.name, "dense.weight");
    ck_assert_int_eq(p.rank, 2);
    ck_assert_int_eq(p.shape[0], 2);
    ck_assert_int_eq(p.shape[1], 3);
    ck_assert_int_eq(p.size, 6);
    ck_assert_ptr_eq(p.data, m->params);
    ck_assert_int_eq(karp_param_get(m, 1, &p), 0);
    ck_assert_str_eq(p.name, "dense.bias");
    ck_assert_ptr_eq(p.data, m->params + 16);
    ck_assert_int_eq(karp_param_get(m, 2, &p), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(),
                     "karp_param_get: index 2 out of range (the model has 2 parameters)");
    ck_assert_int_eq(karp_param_get(m, -1, &p), KARP_EINVAL);
    ck_assert_int_eq(karp_param_find(m, "x", &p), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_param_find: no parameter named 'x'");
    ck_assert_int_eq(karp_param_find(m, NULL, &p), KARP_EINVAL);

    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    ck_assert_str_eq(info.name, "tiny");
    ck_assert_int_eq(info.input_rank, 1);
    ck_assert_int_eq(info.input_shape[0], 3);
    ck_assert_int_eq(info.input_size, 3);
    ck_assert_int_eq(info.output_rank, 1);
    ck_assert_int_eq(info.output_size, 2);
    ck_assert_int_eq(info.max_batch, 4);
    ck_assert_int_eq(info.nparams, 2);
    ck_assert_int_eq(info.param_floats, 18);
    ck_assert_int_eq(info.workspace_bytes, 0);
    ck_assert_str_eq(info.loss, "none");
    ck_assert_str_eq(info.optimizer, "none");
    ck_assert_str_eq(info.cpu_features, "");
    ck_assert_int_eq(info.has_train, 0);
    ck_assert_int_eq(karp_model_info(NULL, &info), KARP_EINVAL);
    ck_assert_int_eq(karp_model_info(m, NULL), KARP_EINVAL);
    karp_close(m);
}
END_TEST

/* A descriptor broken one way; kp_rt_model_new must refuse it with code
 * and message, and still call release. */
static void expect_refused(const KarpModelDesc *d, int code, const char *msg)
{
    karp_error err;
    tiny_releases = 0;
    karp_model *m = kp_rt_model_new(d, NULL, tiny_release, &err);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(tiny_releases, 1);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.message, msg);
    ck_assert_str_eq(karp_last_error(), msg);
}

START_TEST(test_bad_descriptors)
{
    expect_refused(NULL, KARP_EINVAL, "model: the model descriptor is NULL");
    KarpModelDesc d = tiny_desc();
    d.abi_version = 7;
    expect_refused(&d, KARP_EABI,
                   "model: built for karpc ABI version 7, this runtime is version 5 — rebuild it "
                   "with this karpc");
    d = tiny_desc();
    d.cpu_features = "sse2,no-such-feature,bogus";
    expect_refused(&d, KARP_ECPU,
                   "model 'tiny': needs CPU features this machine lacks: no-such-feature, bogus");
    d = tiny_desc();
    d.max_batch = 0;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: max_batch is 0");
    d = tiny_desc();
    d.infer = NULL;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: no infer function");
    d = tiny_desc();
    d.input_rank = 5;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: input rank 5, output rank 1 (0 to 4 allowed)");
    d = tiny_desc();
    d.param_floats = 17;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: parameter 'dense.bias' at offset 16 (size 2) "
                   "is not a 64-byte aligned range of the 17 parameter floats");

    KarpParamDesc ps[2];
    memcpy(ps, tiny_params, sizeof ps);
    d = tiny_desc();
    d.params = ps;
    ps[1].offset = 0;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: parameters 'dense.weight' and 'dense.bias' "
                   "overlap");
    memcpy(ps, tiny_params, sizeof ps);
    ps[0].rank = 5;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: parameter 'dense.weight' has rank 5 (0 to 4 "
                   "allowed)");
    memcpy(ps, tiny_params, sizeof ps);
    ps[0].size = 7;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: parameter 'dense.weight' has size 7, which "
                   "does not match its shape");
    memcpy(ps, tiny_params, sizeof ps);
    ps[1].name = "dense.weight";
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: two parameters named 'dense.weight'");
    memcpy(ps, tiny_params, sizeof ps);
    ps[0].fan_in = 0;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: parameter 'dense.weight' has fan_in 0, fan_out 2");
    d.params = NULL;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: 2 parameters but no table");

    /* The training fields (ABI 2). */
    d = tiny_desc();
    d.forward = NULL;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: no forward function");
    d = tiny_desc();
    d.backward = NULL;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: no backward function");
    d = tiny_desc();
    d.target_kind = 3;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: unknown target kind 3");
    d = tiny_train_desc(2);
    d.opt_slots = 3;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: 3 optimizer slots (0 to 2 allowed)");
    d = tiny_train_desc(1);
    d.apply = NULL;
    d.train_step = NULL;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: optimizer state but no apply function");
    d = tiny_train_desc(0);
    d.apply = NULL;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: a train_step function but no apply "
                   "function");
    d = tiny_train_desc(0);
    d.target_kind = KARP_TARGET_NONE;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: a train_step function but no target kind");
    d = tiny_train_desc(0);
    d.trainable_floats = 35;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: trainable_floats 35 outside the 34 "
                   "parameter floats");
    d.trainable_floats = -1;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: trainable_floats -1 outside the 34 "
                   "parameter floats");
    d.trainable_floats = 17;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'trainee': invalid descriptor: parameter 'dense.bias' straddles the end "
                   "of the trainable floats (17)");
    d = tiny_desc();
    d.train_workspace_bytes = -4;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: train_workspace_bytes -4");
    /* The values the numerics check reads (ABI 4): a byte offset that
     * is no whole float, or a count per sample too large for any batch,
     * would read past the training workspace (found by fuzz_desc). */
    KarpValueDesc vs[1] = {{"dense", "relu", KARP_VAL_TWS, 0, 2, 0, 7}};
    d = tiny_desc();
    d.nvalues = 1;
    d.values = vs;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: value 0 lies outside its slab");
    vs[0].offset = 4;
    vs[0].fixed_floats = 0;
    vs[0].sample_floats = (int64_t)1 << 62;
    expect_refused(&d, KARP_EFORMAT, "model 'tiny': invalid descriptor: value 0 lies outside its slab");
    vs[0].sample_floats = 1;    /* 4 samples from float 1 of 8: inside */
    karp_model *ok = kp_rt_model_new(&d, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(ok);
    karp_close(ok);
    d = tiny_desc();
    d.max_batch = (int64_t)1 << 39;
    expect_refused(&d, KARP_EFORMAT,
                   "model 'tiny': invalid descriptor: max_batch 549755813888 times the input is "
                   "too large");

    /* No release callback: still refused, nothing called. */
    d = tiny_desc();
    d.max_batch = -1;
    ck_assert_ptr_null(kp_rt_model_new(&d, NULL, NULL, NULL));
    ck_assert_str_eq(karp_last_error(), "model 'tiny': invalid descriptor: max_batch is -1");
}
END_TEST

/* A model of five 64x256-ish parameters, one per init kind. */
static const KarpParamDesc stat_params[5] = {
    {"uniform", 2, KARP_INIT_UNIFORM_FAN_IN, {100, 100}, 0, 10000, 100, 100},
    {"he", 2, KARP_INIT_HE, {100, 100}, 10000, 10000, 50, 100},
    {"xavier", 2, KARP_INIT_XAVIER, {50, 200}, 20000, 10000, 200, 50},
    {"zeros", 1, KARP_INIT_ZEROS, {10}, 30000, 10, 1, 1},
    {"ones", 1, KARP_INIT_ONES, {10}, 30016, 10, 1, 1},
};

static KarpModelDesc stat_desc(void)
{
    KarpModelDesc d = tiny_desc();
    d.name = "stats";
    d.nparams = 5;
    d.params = stat_params;
    d.param_floats = 30026;
    d.trainable_floats = 30026;
    d.seed = 7;
    return d;
}

static void moments(const float *x, int64_t n, double *mean, double *var, double *lo, double *hi)
{
    double s = 0, s2 = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
        *lo = fmin(*lo, x[i]);
        *hi = fmax(*hi, x[i]);
    }
    *mean = s / (double)n;
    *var = s2 / (double)n - *mean * *mean;
}

START_TEST(test_init_statistics)
{
    static KarpModelDesc d;
    d = stat_desc();
    karp_model *m = tiny_open(&d);
    ck_assert_ptr_nonnull(m);
    const float *p = m->params;
    double mean, var, lo, hi;

    moments(p, 10000, &mean, &var, &lo, &hi); /* U(-0.1, 0.1): var 0.01/3 */
    ck_assert(lo >= -0.1 && hi < 0.1 && lo < -0.099 && hi > 0.099);
    ck_assert_double_eq_tol(mean, 0.0, 0.003);
    ck_assert_double_eq_tol(var, 0.01 / 3, 0.0002);

    moments(p + 10000, 10000, &mean, &var, &lo, &hi); /* N(0, 2/50) */
    ck_assert_double_eq_tol(mean, 0.0, 0.006);
    ck_assert_double_eq_tol(var, 0.04, 0.002);
    ck_assert(hi > 0.4 && lo < -0.4); /* a normal's tails, not a uniform */

    double a = sqrt(6.0 / 250);
    moments(p + 20000, 10000, &mean, &var, &lo, &hi);
    ck_assert(lo >= -a && hi < a && lo < -0.99 * a && hi > 0.99 * a);
    ck_assert_double_eq_tol(var, a * a / 3, a * a / 50);

    for (int i = 0; i < 10; i++) {
        ck_assert_float_eq(p[30000 + i], 0.0f);
        ck_assert_float_eq(p[30016 + i], 1.0f);
    }

    /* Deterministic for a seed, different for another. */
    float *first = malloc(30026 * sizeof(float));
    memcpy(first, p, 30026 * sizeof(float));
    ck_assert_int_eq(karp_init_params(m, 7), 0);
    ck_assert_mem_eq(first, p, 30026 * sizeof(float));
    ck_assert_int_eq(karp_init_params(m, 8), 0);
    int same = 0;
    for (int i = 0; i < 30000; i++)
        same += first[i] == p[i];
    ck_assert_int_lt(same, 100);
    ck_assert_int_eq(karp_init_params(NULL, 8), KARP_EINVAL);
    free(first);
    karp_close(m);
}
END_TEST

START_TEST(test_errors_and_strerror)
{
    kp_rt_clear_error();
    ck_assert_str_eq(karp_last_error(), "");
    karp_error err;
    ck_assert_int_eq(kp_rt_error(&err, KARP_EIO, "a %s\nb", "x"), KARP_EIO);
    ck_assert_int_eq(err.code, KARP_EIO);
    ck_assert_str_eq(err.message, "a x b"); /* one line */
    ck_assert_str_eq(karp_last_error(), "a x b");
    kp_rt_clear_error();
    ck_assert_str_eq(karp_last_error(), "");
    ck_assert_str_eq(karp_strerror(KARP_OK), "KARP_OK");
    ck_assert_str_eq(karp_strerror(KARP_ECPU), "KARP_ECPU");
    ck_assert_str_eq(karp_strerror(KARP_EUNSUPPORTED), "KARP_EUNSUPPORTED");
    ck_assert_str_eq(karp_strerror(-100), "KARP_E(unknown)");
}
END_TEST

START_TEST(test_cpu_check)
{
    char missing[256];
    ck_assert_int_eq(kp_rt_cpu_check("", missing, sizeof missing), 0);
    ck_assert_int_eq(kp_rt_cpu_check(NULL, missing, sizeof missing), 0);
    ck_assert_int_eq(kp_rt_cpu_check("sse2,+sse2", missing, sizeof missing), 0);
    ck_assert_str_eq(missing, "");
    ck_assert_int_eq(kp_rt_cpu_check("sse2,frob,,nib", missing, sizeof missing), -1);
    ck_assert_str_eq(missing, "frob, nib");
    /* Every known name is checked the same way as the compiler's builtin. */
    int known = 0;
    for (const char *const *f = kp_rt_cpu_known_features; *f; f++)
        known++;
    ck_assert_int_ge(known, 20);
    __builtin_cpu_init();
    ck_assert_int_eq(kp_rt_cpu_check("avx2", missing, sizeof missing),
                     __builtin_cpu_supports("avx2") ? 0 : -1);
    ck_assert_int_eq(kp_rt_cpu_check("avx512f", missing, sizeof missing),
                     __builtin_cpu_supports("avx512f") ? 0 : -1);
    /* A tiny buffer truncates, never overflows. */
    char small[4];
    ck_assert_int_eq(kp_rt_cpu_check("abcdefgh,ijk", small, sizeof small), -1);
    ck_assert_str_eq(small, "abc");
}
END_TEST

START_TEST(test_rng)
{
    KpRng a, b;
    kp_rng_seed(&a, 1);
    kp_rng_seed(&b, 1);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(kp_rng_next(&a), kp_rng_next(&b));
    kp_rng_seed(&b, 2);
    ck_assert_uint_ne(kp_rng_next(&a), kp_rng_next(&b));
    kp_rng_seed(&a, 0); /* seed 0 is fine: splitmix64 mixes it */
    ck_assert_uint_ne(kp_rng_next(&a), 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        float u = kp_rng_uniform(&a);
        ck_assert(u >= 0.0f && u < 1.0f);
        ck_assert_float_eq(u * 16777216.0f, floorf(u * 16777216.0f));
        float z = kp_rng_normal(&a);
        ck_assert(isfinite(z));
        s += z;
        s2 += (double)z * z;
    }
    ck_assert_double_eq_tol(s / 100000, 0.0, 0.02);
    ck_assert_double_eq_tol(s2 / 100000, 1.0, 0.02);
}
END_TEST

/* krt_parallel_for: every index visited once, chunks as documented. */
typedef struct Visits {
    int *count;
    int64_t begin;
    int calls;
    int64_t chunk_begin[64], chunk_end[64];
} Visits;

static void visit(void *ctx, int64_t b, int64_t e)
{
    Visits *v = ctx;
    int c = __atomic_fetch_add(&v->calls, 1, __ATOMIC_RELAXED);
    if (c < 64) {
        v->chunk_begin[c] = b;
        v->chunk_end[c] = e;
    }
    for (int64_t i = b; i < e; i++)
        __atomic_fetch_add(&v->count[i - v->begin], 1, __ATOMIC_RELAXED);
}

START_TEST(test_parallel_for)
{
    const int64_t ranges[] = {0, 1, 2, 5, 7, 1000};
    /* 12: past the threads whose share lines a team worker prefetches
     * all of (team.c), so each prefetches only its own */
    const int threads[] = {1, 2, 3, 12};
    for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
        int t = threads[ti];
        ck_assert_int_eq(karp_set_threads(t), 0);
        for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
            int64_t n = ranges[r];
            Visits v = {.count = calloc((size_t)n + 1, sizeof(int)), .begin = 10};
            krt_parallel_for(visit, &v, 10, 10 + n);
            for (int64_t i = 0; i < n; i++)
                ck_assert_int_eq(v.count[i], 1);
            /* every call a non-empty piece of the range */
            for (int c = 0; c < v.calls && c < 64; c++) {
                ck_assert_int_lt(v.chunk_begin[c], v.chunk_end[c]);
                ck_assert_int_ge(v.chunk_begin[c], 10);
                ck_assert_int_le(v.chunk_end[c], 10 + n);
            }
            /* one item or one thread: one call over the whole range */
            if (t == 1 || n == 1) {
                ck_assert_int_eq(v.calls, n > 0);
                if (n > 0)
                    ck_assert_int_eq(v.chunk_end[0] - v.chunk_begin[0], n);
            }
            free(v.count);
        }
    }
    /* Inside a parallel region: one direct call per caller. */
    karp_set_threads(3);
    int counts[2][50] = {{0}};
    int calls[2] = {0};
#pragma omp parallel num_threads(2)
    {
        int me = omp_get_thread_num();
        Visits v = {.count = counts[me], .begin = 0};
        krt_parallel_for(visit, &v, 0, 50);
        calls[me] = v.calls;
    }
    ck_assert_int_eq(calls[0], 1);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(counts[0][i], 1);

    ck_assert_int_eq(karp_set_threads(-1), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_set_threads: nthreads must be >= 0, got -1");
    ck_assert_int_eq(karp_set_threads(0), 0);
}
END_TEST

/* Each piece of a region: the slot its thread runs with and the stride
 * it reads (krt_scratch_stride: where a slot's tail starts). */
typedef struct Slots {
    char *base;
    int64_t stride;
    _Atomic int bad, pieces, others;
} Slots;

static void slot_piece(void *ctx, int64_t b, int64_t e)
{
    Slots *s = ctx;
    char *slot = krt_scratch();
    int64_t off = slot - s->base;
    if (krt_scratch_stride() != s->stride || off < 0 || off % s->stride != 0 || off / s->stride >= 4)
        atomic_fetch_add(&s->bad, 1);
    if (off != 0)
        atomic_fetch_add(&s->others, 1);
    atomic_fetch_add(&s->pieces, 1);
    /* long enough pieces that the other threads come and take some */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t1);
    while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 20000L * (e - b));
}

START_TEST(test_scratch_stride)
{
    enum { STRIDE = 256, SLOTS = 4 };
    char *pool = aligned_alloc(64, SLOTS * STRIDE);
    Slots s = {.base = pool, .stride = STRIDE};
    krt_scratch_bind(NULL, pool, STRIDE, SLOTS);
    ck_assert_ptr_eq(krt_scratch(), pool);
    ck_assert_int_eq(krt_scratch_stride(), STRIDE);
    for (int t = 1; t <= 3; t++) {
        karp_set_threads(t);
        krt_parallel_for(slot_piece, &s, 0, 64);
    }
    karp_set_threads(0);
    ck_assert_int_gt(atomic_load(&s.pieces), 3);
    ck_assert_int_eq(atomic_load(&s.bad), 0);
    if (atomic_load(&s.others) == 0)   /* a machine too busy for a second thread to come */
        fprintf(stderr, "test_scratch_stride: no piece ran on another thread\n");
    krt_scratch_bind(NULL, NULL, 0, 0);
    free(pool);
}
END_TEST

/* On a thread of the host's that chose its own OpenMP thread count:
 * karp_set_threads(0) means that choice, not the processor count, and a
 * setting is applied on the thread that calls into the runtime. */
static void *threads_on_host_thread(void *arg)
{
    int *got = arg;
    omp_set_num_threads(1);
    karp_set_threads(0);
    got[0] = omp_get_max_threads();
    karp_set_threads(3);
    got[1] = omp_get_max_threads();
    karp_set_threads(0);
    got[2] = omp_get_max_threads();
    return NULL;
}

START_TEST(test_threads_default)
{
    int got[3] = {0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, threads_on_host_thread, got), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(got[0], 1);
    ck_assert_int_eq(got[1], 3);
    ck_assert_int_eq(got[2], 1);
}
END_TEST

/* Balancing: the share of the second thread stalls on its first block
 * until every other item is done, which only happens if the first thread
 * takes over the rest of that share (a stalled core on a shared VM). */
typedef struct Stall {
    int64_t n, stall_at;
    int count[256];
    int done;
    int timed_out;
    int64_t stalled_len;    /* items of the call that stalled */
} Stall;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wait (10 s at most) until everything but `mine` is done. */
static void stall_until_rest_done(Stall *s, int64_t mine, int64_t total)
{
    double until = now_s() + 10;
    while (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) < total - mine) {
        if (now_s() > until) {
            s->timed_out = 1;
            return;
        }
        sched_yield();
    }
}

static void stall_items(void *ctx, int64_t b, int64_t e)
{
    Stall *s = ctx;
    if (b <= s->stall_at && s->stall_at < e) {
        s->stalled_len = e - b;
        stall_until_rest_done(s, e - b, s->n);
    }
    for (int64_t i = b; i < e; i++)
        __atomic_fetch_add(&s->count[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->done, (int)(e - b), __ATOMIC_RELEASE);
}

static void stall_shares(void *ctx, int64_t t, int64_t nt)
{
    Stall *s = ctx;
    if (nt > 256)
        return;     /* the test below fails on s->n */
    s->n = nt;
    if (t == 1)
        stall_until_rest_done(s, 1, nt);
    __atomic_fetch_add(&s->count[t], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->done, 1, __ATOMIC_RELEASE);
}

START_TEST(test_parallel_balance)
{
    ck_assert_int_eq(karp_set_threads(2), 0);
    for (int64_t n = 4; n <= 256; n *= 4) {
        Stall s = {.n = n, .stall_at = n / 2};
        krt_parallel_for(stall_items, &s, 0, n);
        ck_assert_msg(!s.timed_out, "%lld items: the stalled share was not taken over",
                      (long long)n);
        /* the stalled thread held half of its share, not all of it */
        ck_assert_int_le(s.stalled_len, n / 4 > 1 ? n / 4 : 1);
        for (int64_t i = 0; i < n; i++)
            ck_assert_int_eq(s.count[i], 1);
    }
    Stall s = {0};
    krt_parallel_run(stall_shares, &s);
    ck_assert_msg(!s.timed_out, "krt_parallel_run: the other shares waited for share 1");
    ck_assert_int_ge(s.n, 4);
    ck_assert_int_le(s.n, 256);
    for (int64_t t = 0; t < s.n; t++)
        ck_assert_int_eq(s.count[t], 1);
    ck_assert_int_eq(karp_set_threads(0), 0);
}
END_TEST

/* The team: work runs on its threads, which are not OpenMP's; callers on
 * several host threads at once (the team busy: the others on OpenMP), a
 * region from inside a piece, workers asleep (the caller takes their
 * shares and does not wait for them), and a forked child (no workers there
 * until it makes its own) all visit every index once. */
typedef struct TeamProbe {
    pthread_t caller;
    int team_items;     /* items that ran off the calling thread */
    int openmp;         /* pieces that ran inside an OpenMP region */
    int nested_calls;   /* calls a region started inside a piece made */
} TeamProbe;

static void probe(void *ctx, int64_t b, int64_t e)
{
    TeamProbe *p = ctx;
    if (!pthread_equal(pthread_self(), p->caller))
        __atomic_fetch_add(&p->team_items, (int)(e - b), __ATOMIC_RELAXED);
    if (omp_in_parallel())
        __atomic_fetch_add(&p->openmp, 1, __ATOMIC_RELAXED);
    if (b == 0) {
        int counts[8] = {0};
        Visits v = {.count = counts, .begin = 0};
        krt_parallel_for(visit, &v, 0, 8);
        p->nested_calls = v.calls;
    }
    usleep(5000 * (useconds_t)(e - b));    /* time for the workers to come */
}

static int full_visit(int64_t n)
{
    Visits v = {.count = calloc((size_t)n, sizeof(int)), .begin = 0};
    krt_parallel_for(visit, &v, 0, n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        ok &= v.count[i] == 1;
    free(v.count);
    return ok;
}

static void *hammer(void *arg)
{
    int *ok = arg;
    karp_set_threads(3);
    for (int i = 0; i < 2000; i++)
        *ok &= full_visit(1 + i % 97);
    return NULL;
}

START_TEST(test_team)
{
    ck_assert_int_eq(karp_set_threads(3), 0);
    TeamProbe p = {.caller = pthread_self()};
    krt_parallel_for(probe, &p, 0, 8);
    ck_assert_int_ge(p.team_items, 1);
    ck_assert_int_eq(p.openmp, 0);
    ck_assert_int_eq(p.nested_calls, 1);

    int ok[4] = {1, 1, 1, 1};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &ok[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(ok[i], "host thread %d: an index visited other than once", i);
    }

    usleep(20000);      /* the workers asleep by now */
    ck_assert(full_visit(1000));

    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        alarm(20);      /* a hang is a failure, not a stuck test */
        karp_set_threads(3);
        _exit(full_visit(1000) && full_visit(5) ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "forked child: status %d", status);
    ck_assert(full_visit(1000));

    /* KARP_THREAD_POOL=openmp: the regions run in OpenMP's (a child reads
     * the environment afresh) */
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        alarm(20);
        setenv("KARP_THREAD_POOL", "openmp", 1);
        karp_set_threads(2);
        TeamProbe q = {.caller = pthread_self()};
        krt_parallel_for(probe, &q, 0, 8);
        _exit(q.openmp > 0 && full_visit(1000) ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "KARP_THREAD_POOL=openmp child: status %d", status);
    ck_assert_int_eq(karp_set_threads(0), 0);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, test_new_and_infer);
    tcase_add_test(tc, test_large_slabs_huge_aligned);
    tcase_add_test(tc, test_slabs_made_ahead);
    tcase_add_test(tc, test_infer_errors);
    tcase_add_test(tc, test_params_and_info);
    tcase_add_test(tc, test_bad_descriptors);
    tcase_add_test(tc, test_init_statistics);
    tcase_add_test(tc, test_errors_and_strerror);
    suite_add_tcase(s, tc);
    tc = tcase_create("support");
    tcase_add_test(tc, test_cpu_check);
    tcase_add_test(tc, test_rng);
    tcase_add_test(tc, test_parallel_for);
    tcase_add_test(tc, test_scratch_stride);
    tcase_add_test(tc, test_parallel_balance);
    tcase_add_test(tc, test_team);
    tcase_add_test(tc, test_threads_default);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(runtime_suite(), CK_FORK_GETENV);
}
