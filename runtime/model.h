/*
 * model.h — libkarprt internals: the karp_model handle and the pieces
 * the compiler and generated code call.  Not a public header.
 */
#ifndef KP_RT_MODEL_H
#define KP_RT_MODEL_H

#include <stdarg.h>
#include <stdint.h>

#include "../include/karp.h"
#include "../include/karp_abi.h"

struct karp_model {
    const KarpModelDesc *desc;
    void *dl;                       /* dlopen handle (karp_open), or NULL */
    void *owner;                    /* what keeps the code alive (the JIT) */
    void (*release)(void *owner);   /* called by karp_close */
    float *params;                  /* the parameter slab, 64-byte aligned */
    void *ws;                       /* the workspace, 64-byte aligned */
};

/* Build a model from a descriptor: check ABI version and CPU features,
 * allocate and initialize parameters from desc->seed.  On failure returns
 * NULL and calls release(owner) if given.  Used by karp_open and by the JIT. */
karp_model *kp_rt_model_new(const KarpModelDesc *desc, void *owner, void (*release)(void *owner),
                            karp_error *err);
/* The same, with `what` (the file the descriptor came from, e.g. the
 * model.so path) starting every message; NULL means "model '<name>'". */
karp_model *kp_rt_model_new_named(const KarpModelDesc *desc, const char *what, void *owner,
                                  void (*release)(void *owner), karp_error *err);

/* Record an error: sets err (may be NULL) and the thread's last error;
 * returns code. */
int kp_rt_error(karp_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void kp_rt_clear_error(void);

/* Which of the comma-separated CPU features (LLVM names) this machine
 * lacks: 0 if none, else -1 with the missing ones in missing[]. */
int kp_rt_cpu_check(const char *features, char *missing, int cap);

/* The CPU feature names the runtime knows how to check, NULL-terminated;
 * the backend records only these in a descriptor. */
extern const char *const kp_rt_cpu_known_features[];

/* Called by generated code: run body(ctx, b, e) over [begin, end) split
 * in contiguous chunks across the OpenMP threads. */
void krt_parallel_for(void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx, int64_t begin,
                      int64_t end);

/* Make the calling thread use the count chosen by karp_set_threads()
 * (OpenMP keeps that setting per thread). */
void kp_rt_apply_threads(void);

/* Deterministic random numbers for initialization (and later dropout,
 * shuffling): a 64-bit generator seeded once. */
typedef struct KpRng { uint64_t s[4]; } KpRng;
void kp_rng_seed(KpRng *r, uint64_t seed);
uint64_t kp_rng_next(KpRng *r);
float kp_rng_uniform(KpRng *r);       /* [0,1) */
float kp_rng_normal(KpRng *r);        /* N(0,1) */

#endif
