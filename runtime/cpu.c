/*
 * cpu.c — which CPU features the running machine has, in LLVM's names.
 *
 * __builtin_cpu_supports() takes only string literals, so the features are
 * one X-macro list: it makes both the exported name table and the checks.
 * A name not in the list cannot be verified and is reported as missing:
 * refusing to load is better than an illegal-instruction crash.
 */
#include <stdio.h>
#include <string.h>

#include "model.h"

#if defined(__x86_64__) || defined(__i386__)
#define KP_CPU_X86_EXTRA_NEW(X)
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#undef KP_CPU_X86_EXTRA_NEW
#define KP_CPU_X86_EXTRA_NEW(X) X("avx512bf16") X("avx512fp16") X("avxvnni")
#endif
/* LLVM feature names that GCC's __builtin_cpu_supports spells the same. */
#define KP_CPU_FEATURES(X)                                                                         \
    X("sse2") X("sse3") X("ssse3") X("sse4.1") X("sse4.2") X("popcnt") X("lzcnt") X("movbe")        \
    X("aes") X("pclmul") X("vpclmulqdq") X("gfni") X("avx") X("avx2") X("fma") X("f16c") X("bmi")  \
    X("bmi2") X("avx512f") X("avx512bw") X("avx512dq") X("avx512vl") X("avx512cd")                 \
    X("avx512vnni") X("avx512ifma") X("avx512vbmi") X("avx512vbmi2") X("avx512bitalg")            \
    X("avx512vpopcntdq") KP_CPU_X86_EXTRA_NEW(X)
#else
#define KP_CPU_FEATURES(X)
#endif

#define KP_CPU_NAME(s) s,
const char *const kp_rt_cpu_known_features[] = {KP_CPU_FEATURES(KP_CPU_NAME) NULL};

/* 1 if the machine has the feature, 0 if not or if the name is unknown. */
static int has_feature(const char *name)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#define KP_CPU_TEST(s)                                                                             \
    if (strcmp(name, s) == 0)                                                                      \
        return __builtin_cpu_supports(s) != 0;
    KP_CPU_FEATURES(KP_CPU_TEST)
#undef KP_CPU_TEST
#endif
    return 0;
}

/* Append ", name" (or "name" first) to missing[cap], truncating safely. */
static void append_missing(char *missing, int cap, int first, const char *name, size_t len)
{
    if (!missing || cap <= 0)
        return;
    size_t used = strlen(missing);
    snprintf(missing + used, (size_t)cap - used, "%s%.*s", first ? "" : ", ", (int)len, name);
}

int kp_rt_cpu_check(const char *features, char *missing, int cap)
{
    int nmissing = 0;
    if (missing && cap > 0)
        missing[0] = '\0';
    if (!features)
        return 0;
    const char *p = features;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '+')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0)
            continue;
        char name[64];
        int ok = 0;
        if (len < sizeof name) {
            memcpy(name, start, len);
            name[len] = '\0';
            ok = has_feature(name);
        }
        if (!ok) {
            append_missing(missing, cap, nmissing == 0, start, len);
            nmissing++;
        }
    }
    return nmissing ? -1 : 0;
}
