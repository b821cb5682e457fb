/*
 * scratch.c — scratch memory for generated kernels (the GEMM's packed
 * blocks), reserved before the code runs, so that generated code never
 * allocates and never fails.
 *
 *   karp_infer / training call            generated code
 *   --------------------------            --------------
 *   kp_rt_scratch_reserve: a pool of      krt_parallel_for: thread t runs
 *     the shared area and nslots slots      with slot t current, whatever
 *     of stride bytes, nslots = the         piece of the range it takes
 *     threads krt_parallel_for may use    krt_scratch(): the current slot,
 *     (KARP_ENOMEM if it fails);            KarpModelDesc.scratch_bytes,
 *   desc->bind_scratch(...) on the        krt_scratch_shared(): the call's
 *     calling thread                        shared area, scratch_shared_bytes;
 *                                         krt_scratch_stride(): the slots' size
 *
 *   pool:  | shared area | slot 0 | slot 1 | ... |      all 64-byte aligned
 *
 * A pool belongs to one call at a time (karp_infer's comes with the
 * workspace it took from the model's free list; the training calls', one
 * per model), so concurrent karp_infer calls never share a slot.  A
 * model.so carries its own copy of this file with the rest of the runtime
 * (linked in, hidden): the host reaches the copy its generated code calls
 * through the descriptor's bind_scratch, never by a direct call.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"

/* The calling thread's pool, and the slot and shared area of the chunk
 * it runs now. */
static _Thread_local KpScratchPool bound;
static _Thread_local char *current, *current_shared;
static _Thread_local int64_t current_stride;

void krt_scratch_bind(void *shared, void *slots, int64_t stride, int64_t nslots)
{
    bound.shared = shared;
    bound.base = slots;
    bound.stride = stride;
    bound.nslots = nslots;
    current = slots;
    current_shared = shared;
    current_stride = stride;
}

void *krt_scratch(void)
{
    return current;
}

void *krt_scratch_shared(void)
{
    return current_shared;
}

int64_t krt_scratch_stride(void)
{
    return current_stride;
}

KpScratchPool kp_rt_scratch_bound(void)
{
    return bound;
}

void kp_rt_scratch_use(const KpScratchPool *pool, int64_t slot)
{
    if (pool->base) {
        current = pool->base + slot * pool->stride;
        current_stride = pool->stride;
    }
    if (pool->shared)
        current_shared = pool->shared;
}

int64_t kp_rt_scratch_stride(const KarpModelDesc *d)
{
    return (d->scratch_bytes + 63) / 64 * 64;
}

static int64_t shared_size(const KarpModelDesc *d)
{
    return (d->scratch_shared_bytes + 63) / 64 * 64;
}

int kp_rt_scratch_reserve(const KarpModelDesc *d, KpScratchMem *s, const char *fn)
{
    int64_t stride = kp_rt_scratch_stride(d), shared = shared_size(d);
    if (stride == 0 && shared == 0) {
        if (d->bind_scratch)
            d->bind_scratch(NULL, NULL, 0, 0);
        return 0;
    }
    int64_t want = omp_get_max_threads();
    if (s->nslots < want) {
        kp_rt_scratch_free(s);
        /* more than the machine has is refused before asking (with
         * overcommit it could be granted, then fail when touched) */
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        int64_t phys = pages > 0 && psize > 0 ? (int64_t)pages * psize : INT64_MAX;
        if (shared <= phys && (stride == 0 || want <= (phys - shared) / stride))
            s->mem = aligned_alloc(64, (size_t)(shared + want * stride));
        if (!s->mem)
            return kp_rt_error(NULL, KARP_ENOMEM,
                               "%s: out of memory reserving %.1f MiB of scratch for %lld threads "
                               "(%lld bytes each, %lld shared)",
                               fn, ((double)want * (double)stride + (double)shared) / (1 << 20),
                               (long long)want, (long long)stride, (long long)shared);
        s->nslots = want;
        /* the split GEMMs' counters start at zero and end every call there;
         * the slots' tails (KpEmit.scratch_tail_bytes) start untagged */
        memset(s->mem, 0, (size_t)(shared + want * stride));
    }
    char *mem = s->mem;
    d->bind_scratch(shared ? mem : NULL, stride ? mem + shared : NULL, stride, s->nslots);
    return 0;
}

void kp_rt_scratch_free(KpScratchMem *s)
{
    free(s->mem);
    s->mem = NULL;
    s->nslots = 0;
}
