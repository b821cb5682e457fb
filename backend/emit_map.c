/*
 * emit_map.c — elementwise maps: out[i] = f(in0[i], ..., in<k-1>[i]) over
 * the flat n*size elements (activations and their gradients, add, the
 * elementwise loss gradients).
 *
 * Items are chunks of elements, a multiple of every vector width, about
 * KP_GRAIN elements read and written each (so a map of a small batch is
 * one item and forks no thread team); in a chunk, whole <VW x float>
 * vectors, then a scalar loop for the few elements left at the very end.  f is written once, for a float or a
 * vector of floats, so both loops share it.  A gradient slot (KP_STORE_GRAD)
 * receives out[i] + f(...).  Fused epilogues apply to f's result, before
 * the store (or the add into a gradient slot).
 */
#include "emit.h"
#include "../ir/epilogue.h"

typedef struct Map {
    KpMapFn f;
    int64_t chunk;              /* elements per item */
    const KpNode *node;
    KpNode own;                 /* the node as f sees it: its own operands only,
                                   without the ones its epilogues added */
} Map;

/* f at element i (a vector of vw elements when vec, else one). */
static void map_at(KpEmit *e, const KpKernelArgs *a, const Map *m, LLVMValueRef i, int vec)
{
    const KpNode *n = m->node;
    LLVMValueRef x[KP_MAX_IN], y = a->p[n->nin];
    for (int k = 0; k < m->own.nin; k++)
        x[k] = vec ? kp_load_vec(e, a->p[k], i)
                   : LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[k], i), "");
    LLVMValueRef r = m->f(e, x, &m->own);
    r = kp_emit_epilogue(e, n, a->p, r, i, 0);
    if (e->accumulate) {
        LLVMValueRef old = vec ? kp_load_vec(e, y, i) : LLVMBuildLoad2(e->b, e->f32, kp_gep(e, y, i), "");
        r = LLVMBuildFAdd(e->b, old, r, "");
    }
    if (vec)
        kp_store_vec(e, r, y, i);
    else
        LLVMBuildStore(e->b, r, kp_gep(e, y, i));
}

static void map_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Map *m = user;
    LLVMValueRef count = kp_numel(e, m->node->out);
    KpLoop li, lv, ls;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "chunk");
    LLVMValueRef lo = LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, m->chunk), "lo");
    LLVMValueRef hi = kp_min_i64(e, LLVMBuildNSWAdd(e->b, lo, kp_i64(e, m->chunk), ""), count);
    LLVMValueRef len = LLVMBuildNSWSub(e->b, hi, lo, "");
    LLVMValueRef vlen = LLVMBuildAnd(e->b, len, kp_i64(e, ~(int64_t)(e->vw - 1)), "");
    LLVMValueRef vend = LLVMBuildNSWAdd(e->b, lo, vlen, "vend");

    kp_loop_begin(e, &lv, lo, vend, e->vw, "v");
    map_at(e, a, m, lv.iv, 1);
    kp_loop_end(e, &lv);

    kp_loop_begin(e, &ls, vend, hi, 1, "s");
    map_at(e, a, m, ls.iv, 0);
    kp_loop_end(e, &ls);

    kp_loop_end(e, &li);
}

int kp_emit_map(KpEmit *e, const KpNode *n, KpMapFn f)
{
    /* every input read and the output written (read too when accumulating) */
    int64_t streams = n->nin + 1 + e->accumulate;
    Map m = {f, (KP_GRAIN / streams) & ~(int64_t)63, n, *n};
    m.own.nin = kp_node_op_nin(n);
    LLVMValueRef count = kp_numel(e, n->out);
    LLVMValueRef items = LLVMBuildSDiv(e->b, LLVMBuildNSWAdd(e->b, count, kp_i64(e, m.chunk - 1), ""),
                                       kp_i64(e, m.chunk), "items");
    int parallel = e->g->max_batch * kp_value_sample_size(n->out) > m.chunk;
    kp_emit_parallel(e, kp_op_name(n->op), kp_i64(e, 0), items, parallel, map_kernel, &m);
    return 0;
}

LLVMValueRef kp_count_f32(KpEmit *e, LLVMValueRef count, LLVMTypeRef ty)
{
    LLVMValueRef c = LLVMBuildSIToFP(e->b, count, e->f32, "count");
    return LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? kp_splat(e, c) : c;
}
