/*
 * emit_misc.c — the small ops of graph-form and regularized models:
 *
 *   mul           y = a * b, elementwise (kp_emit_map)
 *   dropout_mask  mask[i] = 1/(1-rate) or 0 over the flat n*size elements,
 *                 bit for bit kp_ref_dropout_mask with the node's seed
 *                 kp_ref_dropout_node_seed(call seed, node key)
 *   masking       a sample whose features all equal attr.value is zeroed
 *   masking_grad  dx = dy where the sample (of x) is kept, else 0
 *   concat        inputs joined along per-sample axis attr.axis
 *   slice         the part [slice_offset, +slice_size) along attr.axis
 *
 * concat and slice copy runs of floats: for each sample and each index
 * before the axis, one contiguous run per input.
 */
#include "emit.h"
#include "../ir/epilogue.h"

static LLVMValueRef f_mul(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    return LLVMBuildFMul(e->b, x[0], x[1], "");
}

int emit_mul(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_mul);
}

/* --- dropout_mask ------------------------------------------------------- */

enum { CHUNK = 4096 };

typedef struct Drop {
    const KpNode *node;
    float scale, rate;
} Drop;

static LLVMValueRef xorshr(KpEmit *e, LLVMValueRef z, int k)
{
    return LLVMBuildXor(e->b, z, LLVMBuildLShr(e->b, z, LLVMConstInt(e->i64, (unsigned)k, 0), ""), "");
}

static LLVMValueRef u64c(KpEmit *e, uint64_t v)
{
    return LLVMConstInt(e->i64, v, 0);
}

static void drop_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Drop *s = user;
    LLVMValueRef count = kp_numel(e, s->node->out), out = a->p[1];
    uint64_t salt = 0x632BE59BD9B4E019ull * (uint64_t)(s->node->key + 1);
    LLVMValueRef seed = LLVMBuildXor(e->b, a->seed, u64c(e, salt), "seed");
    KpLoop lc, li;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "chunk");
    LLVMValueRef lo = LLVMBuildNSWMul(e->b, lc.iv, kp_i64(e, CHUNK), "");
    LLVMValueRef hi = kp_min_i64(e, LLVMBuildNSWAdd(e->b, lo, kp_i64(e, CHUNK), ""), count);
    kp_loop_begin(e, &li, lo, hi, 1, "i");
    LLVMValueRef z = LLVMBuildXor(e->b, seed, LLVMBuildMul(e->b, li.iv, u64c(e, 0x9E3779B97F4A7C15ull), ""), "");
    z = LLVMBuildAdd(e->b, z, u64c(e, 0x9E3779B97F4A7C15ull), "");
    z = LLVMBuildMul(e->b, xorshr(e, z, 30), u64c(e, 0xBF58476D1CE4E5B9ull), "");
    z = LLVMBuildMul(e->b, xorshr(e, z, 27), u64c(e, 0x94D049BB133111EBull), "");
    z = xorshr(e, z, 31);
    LLVMValueRef top = LLVMBuildLShr(e->b, z, u64c(e, 40), "");
    LLVMValueRef u = LLVMBuildFMul(e->b, LLVMBuildUIToFP(e->b, top, e->f32, ""),
                                   kp_fconst(e->f32, 1.0 / 16777216.0), "u");
    LLVMValueRef keep = LLVMBuildFCmp(e->b, LLVMRealOGE, u, kp_fconst(e->f32, s->rate), "");
    LLVMValueRef v = LLVMBuildSelect(e->b, keep, kp_fconst(e->f32, s->scale), kp_fconst(e->f32, 0.0), "");
    LLVMBuildStore(e->b, v, kp_gep(e, out, li.iv));
    kp_loop_end(e, &li);
    kp_loop_end(e, &lc);
}

/* x (shape) -> mask */
int emit_dropout_mask(KpEmit *e, const KpNode *n, KpDiag *d)
{
    if (!e->seed)
        return kp_error(d, "internal error: dropout_mask emitted without the call's seed");
    volatile float one = 1.0f, rate = n->attr.rate;   /* float arithmetic, as the reference */
    Drop s = {.node = n, .rate = n->attr.rate, .scale = one / (one - rate)};
    LLVMValueRef count = kp_numel(e, n->out);
    LLVMValueRef items = LLVMBuildSDiv(e->b, LLVMBuildNSWAdd(e->b, count, kp_i64(e, CHUNK - 1), ""),
                                       kp_i64(e, CHUNK), "items");
    int parallel = e->g->max_batch * kp_value_sample_size(n->out) > CHUNK;
    kp_emit_parallel(e, "dropout_mask", kp_i64(e, 0), items, parallel, drop_kernel, &s);
    return 0;
}

/* --- masking -------------------------------------------------------------- */

typedef struct Mask {
    int64_t size;
    float value;
    int grad;
} Mask;

/* per sample: keep = some x != value; out = keep ? src : 0 (src x or dy) */
static void mask_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Mask *s = user;
    LLVMValueRef x = a->p[s->grad ? 1 : 0], src = a->p[0], out = a->p[s->grad ? 2 : 1];
    LLVMValueRef keep = kp_alloca(e, e->i1, "keep");
    KpLoop ls, lk, lo;
    kp_loop_begin(e, &ls, a->begin, a->end, 1, "sample");
    LLVMValueRef base = LLVMBuildNSWMul(e->b, ls.iv, kp_i64(e, s->size), "");
    LLVMBuildStore(e->b, LLVMConstInt(e->i1, 0, 0), keep);
    kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, s->size), 1, "k");
    LLVMValueRef v = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, x, LLVMBuildNSWAdd(e->b, base, lk.iv, "")), "");
    LLVMValueRef ne = LLVMBuildFCmp(e->b, LLVMRealUNE, v, kp_fconst(e->f32, s->value), "");
    LLVMBuildStore(e->b, LLVMBuildOr(e->b, LLVMBuildLoad2(e->b, e->i1, keep, ""), ne, ""), keep);
    kp_loop_end(e, &lk);
    LLVMValueRef k = LLVMBuildLoad2(e->b, e->i1, keep, "");
    kp_loop_begin(e, &lo, kp_i64(e, 0), kp_i64(e, s->size), 1, "o");
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, base, lo.iv, "");
    LLVMValueRef r = LLVMBuildSelect(e->b, k, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, src, at), ""),
                                     kp_fconst(e->f32, 0.0), "");
    LLVMBuildStore(e->b, r, kp_gep(e, out, at));
    kp_loop_end(e, &lo);
    kp_loop_end(e, &ls);
}

static int emit_mask(KpEmit *e, const KpNode *n, int grad)
{
    Mask s = {.size = kp_value_sample_size(n->out), .value = n->attr.value, .grad = grad};
    kp_emit_parallel_units(e, "masking", 1, (2 + grad) * s.size, mask_kernel, &s);
    return 0;
}

int emit_masking(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_mask(e, n, 0);
}

int emit_masking_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_mask(e, n, 1);
}

/* --- concat, slice ---------------------------------------------------------- */

/* Floats per index of per-sample axis `axis` of v, and indices before it. */
static void around(const KpValue *v, int axis, int64_t *outer, int64_t *inner)
{
    *outer = 1, *inner = 1;
    for (int k = 1; k < 1 + axis; k++)
        *outer *= v->dims[k];
    for (int k = 2 + axis; k < v->rank; k++)
        *inner *= v->dims[k];
}

/* dst[dst_off + 0..len) = src[src_off + 0..len), floats */
static void copy(KpEmit *e, LLVMValueRef dst, LLVMValueRef doff, LLVMValueRef src, LLVMValueRef soff,
                 int64_t len, int may_overlap)
{
    LLVMValueRef d = kp_gep(e, dst, doff), s = kp_gep(e, src, soff);
    if (may_overlap)
        LLVMBuildMemMove(e->b, d, 4, s, 4, kp_i64(e, len * 4));
    else
        LLVMBuildMemCpy(e->b, d, 4, s, 4, kp_i64(e, len * 4));
}

typedef struct Join {
    const KpNode *node;
    int64_t outer, olen;         /* output: runs per sample, floats per run */
} Join;

static void concat_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Join *s = user;
    const KpNode *n = s->node;
    int64_t outer, inner;
    KpLoop lr;
    kp_loop_begin(e, &lr, LLVMBuildNSWMul(e->b, a->begin, kp_i64(e, s->outer), ""),
                  LLVMBuildNSWMul(e->b, a->end, kp_i64(e, s->outer), ""), 1, "run");
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
        around(n->in[i], n->attr.axis, &outer, &inner);
        int64_t len = n->in[i]->dims[1 + n->attr.axis] * inner;
        LLVMValueRef doff = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, s->olen), ""),
                                            kp_i64(e, off), "");
        copy(e, a->p[n->nin], doff, a->p[i], LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, len), ""), len,
             !e->noalias[i]);
        off += len;
    }
    kp_loop_end(e, &lr);
}

int emit_concat(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t inner;
    Join s = {.node = n};
    around(n->out, n->attr.axis, &s.outer, &inner);
    s.olen = n->out->dims[1 + n->attr.axis] * inner;
    kp_emit_parallel_units(e, "concat", 1, 2 * kp_value_sample_size(n->out), concat_kernel, &s);
    return 0;
}

static void slice_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Join *s = user;
    const KpNode *n = s->node;
    int64_t outer, inner;
    around(n->in[0], n->attr.axis, &outer, &inner);
    int64_t xlen = n->in[0]->dims[1 + n->attr.axis] * inner;
    KpLoop lr;
    kp_loop_begin(e, &lr, LLVMBuildNSWMul(e->b, a->begin, kp_i64(e, outer), ""),
                  LLVMBuildNSWMul(e->b, a->end, kp_i64(e, outer), ""), 1, "run");
    LLVMValueRef soff = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, xlen), ""),
                                        kp_i64(e, n->attr.slice_offset * inner), "");
    copy(e, a->p[1], LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, s->olen), ""), a->p[0], soff, s->olen,
         !e->noalias[0]);
    kp_loop_end(e, &lr);
}

int emit_slice(KpEmit *e, const KpNode *n, KpDiag *d)
{
    int64_t outer, inner;
    around(n->in[0], n->attr.axis, &outer, &inner);
    Join s = {.node = n, .outer = outer, .olen = n->attr.slice_size * inner};
    kp_emit_parallel_units(e, "slice", 1, 2 * kp_value_sample_size(n->out), slice_kernel, &s);
    return 0;
}

KpMapFn kp_map_mul(void)
{
    return f_mul;
}
