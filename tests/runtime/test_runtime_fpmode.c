/*
 * test_runtime_fpmode.c — calls into generated code run with subnormal
 * floats flushed to zero, on the calling thread and on the threads of
 * their parallel regions, and leave every thread's own mode as it was
 * (runtime/fpmode.h); KARP_FLUSH_DENORMALS=0 keeps subnormals.
 */
#include <check.h>
#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/fpmode.h"
#include "tiny_model.h"
#include "testutil.h"

/* The thread's mode without the exception flags (bits 0-5). */
static unsigned control(void)
{
    return kp_rt_fp_mode() & ~0x3fu;
}

/* 1e-20 * 1e-20 = 1e-40: a subnormal float, or 0 when flushed. */
static float product(float a, float b)
{
    volatile float x = a, y = b;
    return x * y;
}

/* The tiny model with y[0] = 1e-20 * 1e-20 + 0 and y[1] = 0. */
static karp_model *tiny_subnormal(void)
{
    static KarpModelDesc d;
    d = tiny_desc();
    karp_error err;
    karp_model *m = kp_rt_model_new(&d, NULL, NULL, &err);
    ck_assert_ptr_nonnull(m);
    karp_param w, b;
    ck_assert_int_eq(karp_param_find(m, "dense.weight", &w), 0);
    ck_assert_int_eq(karp_param_find(m, "dense.bias", &b), 0);
    memset(w.data, 0, 6 * sizeof(float));
    memset(b.data, 0, 2 * sizeof(float));
    w.data[0] = 1e-20f;
    return m;
}

START_TEST(test_calls_flush)
{
    unsigned before = control();
    karp_model *m = tiny_subnormal();
    const float x[3] = {1e-20f, 0, 0};
    float y[2] = {1, 1};
    ck_assert_int_eq(karp_infer(m, x, 1, y), 0);
    ck_assert(y[0] == 0.0f);
    ck_assert_uint_eq(control(), before);
    y[0] = 1;
    ck_assert_int_eq(karp_forward(m, x, 1, y), 0);
    ck_assert(y[0] == 0.0f);
    ck_assert_uint_eq(control(), before);
    /* the caller's own arithmetic keeps its subnormals */
    float p = product(1e-20f, 1e-20f);
    ck_assert(p > 0 && p < FLT_MIN);
    karp_close(m);
}
END_TEST

START_TEST(test_keep_subnormals)
{
    setenv("KARP_FLUSH_DENORMALS", "0", 1);
    karp_model *m = tiny_subnormal();
    const float x[3] = {1e-20f, 0, 0};
    float y[2] = {0};
    ck_assert_int_eq(karp_infer(m, x, 1, y), 0);
    ck_assert(y[0] > 0 && y[0] < FLT_MIN);
    karp_close(m);
}
END_TEST

enum { ITEMS = 64 };

typedef struct Items {
    float out[ITEMS];
    pthread_t who[ITEMS];
} Items;

/* Each item: a subnormal product, and 20 us long so that the other
 * threads come and take items. */
static void item(void *ctx, int64_t b, int64_t e)
{
    Items *it = ctx;
    for (int64_t i = b; i < e; i++) {
        it->out[i] = product(1e-20f, 1e-20f);
        it->who[i] = pthread_self();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do
            clock_gettime(CLOCK_MONOTONIC, &t1);
        while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 20000L);
    }
}

static int other_threads(const Items *it)
{
    int n = 0;
    for (int i = 0; i < ITEMS; i++)
        n += !pthread_equal(it->who[i], pthread_self());
    return n;
}

START_TEST(test_regions_take_the_mode)
{
    karp_set_threads(2);
    int others = 0;
    for (int round = 0; round < 20 && others == 0; round++) {
        Items in, after;
        memset(&in, 0, sizeof in);
        memset(&after, 0, sizeof after);
        unsigned had = kp_rt_fp_enter();
        krt_parallel_for(item, &in, 0, ITEMS);
        kp_rt_fp_adopt(had);
        /* the same threads, back in their own mode */
        krt_parallel_for(item, &after, 0, ITEMS);
        for (int i = 0; i < ITEMS; i++) {
            ck_assert_msg(in.out[i] == 0.0f, "item %d: %g, not flushed", i, (double)in.out[i]);
            ck_assert_msg(after.out[i] > 0 && after.out[i] < FLT_MIN, "item %d: %g after", i,
                          (double)after.out[i]);
        }
        others = other_threads(&in) > 0 && other_threads(&after) > 0;
    }
    ck_assert_msg(others, "no item ran on another thread in 20 rounds");
    karp_set_threads(0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runtime_fpmode");
    TCase *tc = tcase_create("fpmode");
#if defined(__x86_64__) || defined(__i386__)
    tcase_add_test(tc, test_calls_flush);
    tcase_add_test(tc, test_regions_take_the_mode);
#endif
    /* elsewhere the mode is left alone (fpmode.h): subnormals are kept */
    tcase_add_test(tc, test_keep_subnormals);
    suite_add_tcase(s, tc);
    /* forked: KARP_FLUSH_DENORMALS is read once per process */
    return kp_test_main(s, CK_FORK);
}
