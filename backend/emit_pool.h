/*
 * emit_pool.h — what the two pooling code paths share (internal to backend/).
 *
 * A pooling node works on (n, c) planes, NCHW: the window kh x kw at
 * stride (sh, sw) from the top/left padding (pt, pl) over an h x w input
 * plane and an oh x ow output plane.  emit_pool.c makes the planes work
 * items and picks a path per node:
 *
 *   emit_pool_vec.c  vectors of output columns (every forward, and the
 *                    gradients of non-overlapping windows without left
 *                    padding: written once per input element, no zeroing);
 *   emit_pool.c      one element at a time (the other gradients, and
 *                    windows too wide for the vector path's shuffles).
 */
#ifndef KP_EMIT_POOL_H
#define KP_EMIT_POOL_H

#include "emit.h"

typedef struct KpPool {
    int64_t h, w, oh, ow, kh, kw, sh, sw, pt, pl;
    int grad, max;
    const KpNode *node;
    int64_t sums_at;            /* a folded bias gradient (a gradient's aux output): each
                                   plane's sum of dx goes to this float array of the shared
                                   scratch, [N][C]; -1 without */
} KpPool;

/* Kernel pointer indices: the pooled input x (forward) or dy (gradient)
 * is p[0]; a max gradient reads x at p[1]; the output is p[node->nin]. */

/* Whether the vector path computes s (emit_pool_vec.c). */
int kp_pool_vec_ok(const KpEmit *e, const KpPool *s);
/* The vector path's code for plane p (an i64: sample * channels + channel). */
void kp_pool_vec_plane(KpEmit *e, const KpKernelArgs *a, const KpPool *s, LLVMValueRef p);

#endif
