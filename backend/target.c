/*
 * target.c — the target machine: the host CPU (or the one asked for), its
 * features, and what the descriptor records of them.
 *
 * The same KpTargetConfig makes the AOT target machine and the JIT's, so
 * both produce the same machine code.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>

#include "../runtime/model.h"
#include "llvm_internal.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_failed;

/* KARPC_LLVM_ARGS: options for LLVM's own command line, separated by
 * spaces (for measuring the compiler, e.g. "-time-passes": docs/compile-time.md). */
static void llvm_args(void)
{
    const char *env = getenv("KARPC_LLVM_ARGS");
    if (!env || !*env)
        return;
    static char buf[512];
    snprintf(buf, sizeof buf, "%s", env);
    const char *argv[17] = {"karpc"};
    int argc = 1;
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && argc < 17;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    LLVMParseCommandLineOptions(argc, argv, NULL);
}

static void init_native(void)
{
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter() ||
        LLVMInitializeNativeAsmParser())
        init_failed = 1;
    llvm_args();
}

int kp_llvm_error(KpDiag *d, LLVMErrorRef err, const char *what)
{
    char *msg = LLVMGetErrorMessage(err);   /* consumes err */
    kp_error(d, "%s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return -1;
}

/* The x86-64 psABI microarchitecture levels and the features each one
 * turns on (cumulative), as LLVM defines them. */
static const char *psabi_level_features(const char *cpu)
{
    static const struct { const char *cpu, *features; } levels[] = {
        {"x86-64", ""},
        {"generic", ""},
        {"x86-64-v2", "+cx16,+popcnt,+sse3,+sse4.1,+sse4.2,+ssse3,+sahf"},
        {"x86-64-v3", "+cx16,+popcnt,+sse3,+sse4.1,+sse4.2,+ssse3,+sahf,+avx,+avx2,+bmi,+bmi2,"
                      "+f16c,+fma,+lzcnt,+movbe,+xsave"},
        {"x86-64-v4", "+cx16,+popcnt,+sse3,+sse4.1,+sse4.2,+ssse3,+sahf,+avx,+avx2,+bmi,+bmi2,"
                      "+f16c,+fma,+lzcnt,+movbe,+xsave,+avx512f,+avx512bw,+avx512cd,+avx512dq,"
                      "+avx512vl"},
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(cpu, levels[i].cpu) == 0)
            return levels[i].features;
    return NULL;
}

/* Is "+name" one of the comma-separated features? */
static int has_feature(const char *features, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = features; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len + 1 && p[0] == '+' && memcmp(p + 1, name, len) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The features of kp_rt_cpu_known_features enabled in features, in the
 * table's order, comma-separated (malloc'ed). */
static char *known_features(const char *features)
{
    size_t cap = 1;
    for (int i = 0; kp_rt_cpu_known_features[i]; i++)
        cap += strlen(kp_rt_cpu_known_features[i]) + 1;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int i = 0; kp_rt_cpu_known_features[i]; i++) {
        if (!has_feature(features, kp_rt_cpu_known_features[i]))
            continue;
        if (s[0])
            strcat(s, ",");
        strcat(s, kp_rt_cpu_known_features[i]);
    }
    return s;
}


int kp_llvm_target_config(const KpTargetOpts *t, KpTargetConfig *cfg, KpDiag *d)
{
    memset(cfg, 0, sizeof *cfg);
    pthread_once(&init_once, init_native);
    if (init_failed)
        return kp_error(d, "LLVM: the native target is not available");

    int level = t ? t->opt_level : 3;
    if (level < 0 || level > 3)
        return kp_error(d, "optimization level must be 0..3, got %d", level);
    static const LLVMCodeGenOptLevel levels[] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess,
                                                 LLVMCodeGenLevelDefault,
                                                 LLVMCodeGenLevelAggressive};
    cfg->opt_level = level;
    cfg->opt = levels[level];

    char *def = LLVMGetDefaultTargetTriple();
    char *norm = LLVMNormalizeTargetTriple(def);
    cfg->triple = strdup(norm);
    LLVMDisposeMessage(norm);
    LLVMDisposeMessage(def);

    char *host_cpu = LLVMGetHostCPUName();
    char *host_features = LLVMGetHostCPUFeatures();
    /* Features alone ask for a portable object: the x86-64 baseline plus
     * those features (the host CPU's name would turn on all of its own,
     * and the descriptor would not know).  A named CPU turns on its own
     * features, which the C API cannot list, so the descriptor could not
     * record them and karp_open could not refuse a machine without them:
     * only the psABI levels (whose features are fixed) are accepted alone,
     * any other CPU needs --target-features naming what it uses. */
    const char *cpu, *features;
    if (t && t->cpu && *t->cpu)
        cpu = t->cpu;
    else if (t && t->features)
        cpu = "x86-64";
    else
        cpu = host_cpu;
    const char *level_features = psabi_level_features(cpu);
    if (t && t->features)
        features = t->features;
    else if (strcmp(cpu, host_cpu) == 0)
        features = host_features;
    else if (level_features)
        features = level_features;
    else {
        kp_error(d,
                 "--target-cpu=%s needs --target-features too (e.g. +avx2,+fma): karpc records "
                 "the features in the model so that karp_open can refuse a CPU without them "
                 "(x86-64, x86-64-v2, x86-64-v3 and x86-64-v4 need none)",
                 cpu);
        LLVMDisposeMessage(host_cpu);
        LLVMDisposeMessage(host_features);
        kp_llvm_target_config_free(cfg);
        return -1;
    }
    cfg->cpu = strdup(cpu);
    cfg->features = strdup(features);
    LLVMDisposeMessage(host_cpu);
    LLVMDisposeMessage(host_features);

    cfg->cpu_features = known_features(cfg->features);
    if (!cfg->triple || !cfg->cpu || !cfg->features || !cfg->cpu_features) {
        kp_llvm_target_config_free(cfg);
        return kp_error(d, "out of memory");
    }
    if (has_feature(cfg->features, "avx512f"))
        cfg->vector_width = 16;
    else if (has_feature(cfg->features, "avx") || has_feature(cfg->features, "avx2"))
        cfg->vector_width = 8;
    else
        cfg->vector_width = 4;
    if (t && t->vector_width) {
        if (t->vector_width != 4 && t->vector_width != 8 && t->vector_width != 16) {
            kp_llvm_target_config_free(cfg);
            return kp_error(d, "vector width must be 4, 8 or 16 floats, got %d", t->vector_width);
        }
        cfg->vector_width = t->vector_width;
    }
    return 0;
}

void kp_llvm_target_config_free(KpTargetConfig *cfg)
{
    free(cfg->triple);
    free(cfg->cpu);
    free(cfg->features);
    free(cfg->cpu_features);
    memset(cfg, 0, sizeof *cfg);
}

LLVMTargetMachineRef kp_llvm_target_machine(const KpTargetConfig *cfg, KpDiag *d)
{
    LLVMTargetRef target;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(cfg->triple, &target, &msg)) {
        kp_error(d, "LLVM: no target for %s: %s", cfg->triple, msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return NULL;
    }
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, cfg->triple, cfg->cpu, cfg->features,
                                                      cfg->opt, LLVMRelocPIC,
                                                      LLVMCodeModelDefault);
    if (!tm)
        kp_error(d, "LLVM: cannot create a target machine for %s (cpu %s)", cfg->triple,
                 cfg->cpu);
    return tm;
}

