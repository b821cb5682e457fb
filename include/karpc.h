/*
 * karpc.h — the karpc compiler API (libkarpc): compile a model file to
 * native code inside the calling process (ORC JIT).  The handle it returns
 * is used with the runtime API of karp.h, exactly like one from karp_open().
 */
#ifndef KARPC_H
#define KARPC_H

#include "karp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct karp_compile_options {
    int opt_level;              /* 0..3, default 3 */
    const char *target_cpu;     /* NULL = the host CPU */
    const char *target_features;/* NULL = the host CPU's features */
    int max_batch;              /* 0 = the model file's "batch" (default 64) */
    unsigned disable_passes;    /* KARPC_NO_* flags: the optimizing passes to skip */
    int check_numerics;         /* 1: compile for karp_set_check_numerics: no shared
                                   workspace ranges, and the list of every value of
                                   the train graph, so the check finds the layer where
                                   a NaN or Inf first appears (slower, more memory) */
} karp_compile_options;

/* Passes karp_compile_options.disable_passes can switch off (karpc's
 * --no-fuse, --no-layout, --no-memplan, --no-fold, --no-group). */
enum {
    KARPC_NO_FUSE = 1u << 0,    /* vertical fusion: epilogues */
    KARPC_NO_LAYOUT = 1u << 1,
    KARPC_NO_MEMPLAN = 1u << 2,
    KARPC_NO_FOLD = 1u << 3,
    KARPC_NO_GROUP = 1u << 4,   /* horizontal fusion: independent nodes, one kernel */
    KARPC_NO_ALL = (1u << 5) - 1
};

/* Default options: opt_level 3, host CPU, the model's batch. */
void karp_compile_options_init(karp_compile_options *o);

/* Parse, check and JIT-compile model_path.  opts may be NULL (defaults).
 * NULL on failure, with the model-file diagnostic in *err and in
 * karp_last_error().  The returned model is released by karp_close(). */
karp_model *karp_compile(const char *model_path, const karp_compile_options *opts,
                         karp_error *err);

#ifdef __cplusplus
}
#endif

#endif
