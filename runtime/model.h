/*
 * model.h — libkarprt internals: the karp_model handle and the pieces
 * the compiler and generated code call.  Not a public header.
 */
#ifndef KP_RT_MODEL_H
#define KP_RT_MODEL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "../include/karp.h"
#include "../include/karp_abi.h"
#include "adapt.h"

/* Scratch memory for generated kernels (scratch.c): an area shared by
 * the call's chunks, and nslots slots of stride bytes, one per chunk of
 * krt_parallel_for. */
typedef struct KpScratchPool {
    char *shared, *base;
    int64_t stride, nslots;
} KpScratchPool;
typedef struct KpScratchMem {
    void *mem;                      /* 64-byte aligned: the shared area, then nslots
                                       slots; NULL: none yet */
    int64_t nslots;
} KpScratchMem;

/* Checkpoint metadata: string pairs, each key once, in insertion order. */
typedef struct KpMeta {
    char **keys;
    char **values;
    int count;
} KpMeta;

struct karp_model {
    const KarpModelDesc *desc;
    void *dl;                       /* dlopen handle (karp_open), or NULL */
    void *owner;                    /* what keeps the code alive (the JIT) */
    void (*release)(void *owner);   /* called by karp_close */
    float *params;                  /* the parameter slab, 64-byte aligned */
    void *ws;                       /* the first inference workspace, 64-byte aligned */
    float *prep;                    /* the prepared slab (prep_floats), or NULL */
    _Atomic int prep_stale;         /* the parameters changed since prepare last ran */
    /* karp_infer may run on several threads at once: each call takes a
     * workspace from this free list (growing it when empty) and gives it
     * back; prepare runs under the lock, the other callers waiting. */
    pthread_mutex_t infer_lock;
    struct KpWsNode *ws_free;       /* idle workspaces, m->ws among them */
    int64_t ws_count;               /* workspaces allocated, m->ws included */
    int check_numerics;             /* karp_set_check_numerics */
    KpScratchMem train_scratch;     /* the training calls' scratch pool */
    /* training (every block 64-byte aligned and owned by the model) */
    float *grads;                   /* param_floats, same layout, zero at rest */
    float *opt;                     /* opt_slots * param_floats, zero when fresh */
    void *tws;                      /* the training workspace */
    float *last_x;                  /* max_batch * input floats: karp_forward's x */
    int64_t last_n;                 /* its n; 0: no forward to go back through */
    int64_t step;                   /* optimizer steps taken */
    int64_t seed_step;              /* kp_rt_call_seed: the step of the last call */
    int64_t seed_calls;             /*   and how many calls that step has had */
    KpMeta meta;                    /* from karp_load / karp_set_metadata */
    KpAdapt adapt;                  /* train_step's thread count (adapt.h) */
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

/* A model's slabs, made before its descriptor exists: the JIT has them
 * allocated and zeroed by a core that is done compiling while the other
 * still compiles (backend/jit.c), and kp_rt_model_new_slabs takes them
 * when their sizes are the descriptor's.  The sizes are set by the
 * caller, the pointers by kp_rt_slabs_alloc. */
typedef struct KpSlabs {
    int64_t param_floats, opt_slots, prep_floats;
    int64_t input_floats;           /* max_batch * an input sample's floats: last_x */
    int64_t workspace_bytes, train_workspace_bytes;
    float *params, *grads, *opt, *prep, *last_x;
    void *ws, *tws;
} KpSlabs;
/* Allocate and zero the slabs of s's sizes: 0, or -1 with none kept
 * (out of memory, or more than half of this machine's memory, which is
 * left to the model's own check and message). */
int kp_rt_slabs_alloc(KpSlabs *s);
/* Free what s holds (NULL accepted); the sizes stay. */
void kp_rt_slabs_free(KpSlabs *s);
/* kp_rt_model_new, taking slabs' blocks when they are all there and of
 * the descriptor's sizes (slabs is left empty); otherwise slabs is
 * freed and the model allocates its own.  slabs NULL: as kp_rt_model_new. */
karp_model *kp_rt_model_new_slabs(const KarpModelDesc *desc, KpSlabs *slabs, void *owner,
                                  void (*release)(void *owner), karp_error *err);

/* The parameters changed: the next infer re-runs prepare first. */
void kp_rt_params_changed(const karp_model *m);

/* Zero the gradients and the optimizer state, step 0, and forget the last
 * forward (karp_init_params, a karp_load without optimizer state). */
void kp_rt_reset_training(karp_model *m);

/* Floats per input sample (the descriptor was checked). */
int64_t kp_rt_input_size(const KarpModelDesc *d);

/* Metadata store (metadata.c).  kp_rt_meta_set copies key and value
 * (value NULL removes key); 0 or KARP_ENOMEM.  kp_rt_meta_get: NULL if
 * absent.  kp_rt_meta_free leaves an empty store. */
int kp_rt_meta_set(KpMeta *meta, const char *key, const char *value);
const char *kp_rt_meta_get(const KpMeta *meta, const char *key);
void kp_rt_meta_free(KpMeta *meta);

/* karp_set_check_numerics (numerics.c): 0, or KARP_ENUMERIC with the
 * message, when the model checks numerics and finds a NaN or Inf in the
 * input x[n] (before a call of optimizer step `step`), or after it: in
 * the values of the phases the call ran (`ran`, KP_RT_RAN_* bits; only a
 * model compiled with check_numerics lists them, KarpModelDesc.values),
 * then *loss, y[n] (each may be NULL), the parameters and the gradients. */
enum {
    KP_RT_RAN_FORWARD = 1u << 0,    /* the bit of each KarpValueDesc.phase */
    KP_RT_RAN_LOSS = 1u << 1,
    KP_RT_RAN_BACKWARD = 1u << 2,
    KP_RT_RAN_INPUT_GRAD = 1u << 3
};
int kp_rt_check_input(const karp_model *m, const char *fn, int64_t step, const float *x, int64_t n);
int kp_rt_check_after(const karp_model *m, const char *fn, int64_t step, const float *loss,
                      const float *y, int64_t n, unsigned ran);

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

/* Called by generated code: run body(ctx, b, e) over pieces of
 * [begin, end), each item once, spread over the OpenMP thread count with
 * the faster threads taking over the rest of the slower ones' shares. */
void krt_parallel_for(void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx, int64_t begin,
                      int64_t end);
/* Called by generated code for a group of nodes (one kernel): run
 * body(ctx, s, ns) once for each share s = 0..ns-1 (a few per thread, each
 * thread taking the next share nobody has started); body takes share s of
 * ns of every member's work. */
void krt_parallel_run(void (*body)(void *ctx, int64_t t, int64_t nt), void *ctx);

/* Called by generated code: the scratch slot of the calling thread in the
 * region it runs (KarpModelDesc.scratch_bytes, 64-byte aligned), and the
 * area every thread of the call shares (scratch_shared_bytes). */
void *krt_scratch(void);
void *krt_scratch_shared(void);
/* The bytes of a slot: its last KpEmit.scratch_tail_bytes are a tail no
 * kernel's ordinary scratch reaches (zero when the pool is reserved). */
int64_t krt_scratch_stride(void);
/* The descriptor's bind_scratch: the shared area and nslots slots of
 * stride bytes are the calling thread's until the next bind; slot 0 is
 * current. */
void krt_scratch_bind(void *shared, void *slots, int64_t stride, int64_t nslots);
/* krt_parallel_for's side: the calling thread's pool, and making slot
 * current on this thread (nothing for a pool without memory). */
KpScratchPool kp_rt_scratch_bound(void);
void kp_rt_scratch_use(const KpScratchPool *pool, int64_t slot);
/* Bytes per slot: scratch_bytes rounded up to a cache line. */
int64_t kp_rt_scratch_stride(const KarpModelDesc *d);
/* Before a call into d's code on this thread: grow s to a slot per
 * thread krt_parallel_for may use (KARP_ENOMEM, with fn in the message,
 * if that fails; s is then empty) and bind it. */
int kp_rt_scratch_reserve(const KarpModelDesc *d, KpScratchMem *s, const char *fn);
void kp_rt_scratch_free(KpScratchMem *s);

/* Make the calling thread use the count chosen by karp_set_threads()
 * (OpenMP keeps that setting per thread). */
void kp_rt_apply_threads(void);
/* fn(arg) on the thread count a chooses for batch size n (adapt.h: all
 * of OpenMP's threads or one), the choice carried by this thread's
 * OpenMP setting and put back after the call, and the call's time
 * recorded; just fn(arg) when KARP_ADAPTIVE_THREADS=0. */
void kp_rt_adapted_call(KpAdapt *a, int64_t n, void (*fn)(void *arg), void *arg);
/* Calls of karp_infer so far on one thread (the adaptive choice) and in
 * all, over the idle workspaces (a call under way holds its own). */
void kp_rt_infer_thread_counts(karp_model *m, int64_t *one, int64_t *all);

/* The seed of a forward or train_step call (dropout masks): a function of
 * the model's seed, the optimizer step the call belongs to (m->step + 1
 * for karp_forward, the new step for karp_train_step) and how many
 * forwards that step has had, so a run resumed from a checkpoint (which
 * keeps the step) draws the same masks. */
uint64_t kp_rt_call_seed(karp_model *m, int64_t step);

/* Deterministic random numbers for initialization (and later dropout,
 * shuffling): a 64-bit generator seeded once. */
typedef struct KpRng { uint64_t s[4]; } KpRng;
void kp_rng_seed(KpRng *r, uint64_t seed);
uint64_t kp_rng_next(KpRng *r);
uint64_t kp_rng_below(KpRng *r, uint64_t n); /* [0, n), n >= 1, unbiased */
float kp_rng_uniform(KpRng *r);       /* [0,1) */
float kp_rng_normal(KpRng *r);        /* N(0,1) */

#endif
