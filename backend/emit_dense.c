/*
 * emit_dense.c — y[n,out] = x[n,in] · W[out,in]^T + b[out].
 *
 * Work items are (row block, column tile) pairs, item = rb * ncol + ct:
 *
 *          columns ->  tile 0   tile 1  ...  (TJ = 4 columns each)
 *   rows   block 0   | item 0 | item 1 | ...
 *    |     block 1   | ...
 *
 * so both n = 1 (one row block, out/4 items) and n = 64 give parallel
 * work.  In a full tile the TJ columns share the x loads: per step of VW
 * floats along k, one x vector and TJ weight vectors feed TJ fma chains.
 * The last partial vector of k is a masked load (lanes off read 0), so
 * every `in` is handled without a scalar tail.  Each output element is
 * then reduced by the same fixed tree and the bias added: its result never
 * depends on how items are split across threads.
 */
#include "emit.h"
#include "../ir/epilogue.h"

enum { TJ = 4, RB = 4 };

typedef struct DenseShape {
    int64_t in, out;
    int has_bias;
} DenseShape;

/* y[r, j0..j0+t) for t <= TJ columns. */
static void tile(KpEmit *e, const KpKernelArgs *a, const DenseShape *s, LLVMValueRef r,
                 LLVMValueRef j0, int t)
{
    LLVMValueRef x = a->p[0], w = a->p[1], y = a->p[e->node->nin];
    LLVMValueRef acc[TJ], wrow[TJ];
    LLVMValueRef xrow = LLVMBuildNSWMul(e->b, r, kp_i64(e, s->in), "xrow");
    for (int c = 0; c < t; c++) {
        acc[c] = kp_alloca(e, e->vec, "acc");
        LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc[c]);
        LLVMValueRef j = LLVMBuildNSWAdd(e->b, j0, kp_i64(e, c), "");
        wrow[c] = LLVMBuildNSWMul(e->b, j, kp_i64(e, s->in), "wrow");
    }
    int64_t kmain = s->in - s->in % e->vw;
    int rem = (int)(s->in % e->vw);
    KpLoop lk;
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef xv = kp_load_vec(e, x, LLVMBuildNSWAdd(e->b, xrow, lk.iv, ""));
        for (int c = 0; c < t; c++) {
            LLVMValueRef wv = kp_load_vec(e, w, LLVMBuildNSWAdd(e->b, wrow[c], lk.iv, ""));
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[c], "");
            LLVMBuildStore(e->b, kp_fma(e, xv, wv, old), acc[c]);
        }
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef k = kp_i64(e, kmain);
        LLVMValueRef xv = kp_load_vec_masked(e, x, LLVMBuildNSWAdd(e->b, xrow, k, ""), rem, 0.0);
        for (int c = 0; c < t; c++) {
            LLVMValueRef wv =
                kp_load_vec_masked(e, w, LLVMBuildNSWAdd(e->b, wrow[c], k, ""), rem, 0.0);
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[c], "");
            LLVMBuildStore(e->b, kp_fma(e, xv, wv, old), acc[c]);
        }
    }
    LLVMValueRef yrow = LLVMBuildNSWMul(e->b, r, kp_i64(e, s->out), "yrow");
    for (int c = 0; c < t; c++) {
        LLVMValueRef sum = kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, acc[c], ""));
        LLVMValueRef j = LLVMBuildNSWAdd(e->b, j0, kp_i64(e, c), "");
        if (s->has_bias) {
            LLVMValueRef bj = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[2], j), "");
            sum = LLVMBuildFAdd(e->b, sum, bj, "");
        }
        LLVMValueRef at = LLVMBuildNSWAdd(e->b, yrow, j, "");
        sum = kp_emit_epilogue(e, e->node, a->p, sum, at, 0);
        LLVMBuildStore(e->b, sum, kp_gep(e, y, at));
    }
}

/* Rows [r0, r1) of one column tile of t columns starting at j0. */
static void rows(KpEmit *e, const KpKernelArgs *a, const DenseShape *s, LLVMValueRef r0,
                 LLVMValueRef r1, LLVMValueRef j0, int t)
{
    KpLoop lr;
    kp_loop_begin(e, &lr, r0, r1, 1, "r");
    tile(e, a, s, lr.iv, j0, t);
    kp_loop_end(e, &lr);
}

static void dense_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const DenseShape *s = user;
    int64_t ncol = (s->out + TJ - 1) / TJ;
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef rb = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, ncol), "rb");
    LLVMValueRef ct = LLVMBuildSub(e->b, li.iv, LLVMBuildNSWMul(e->b, rb, kp_i64(e, ncol), ""), "ct");
    LLVMValueRef r0 = LLVMBuildNSWMul(e->b, rb, kp_i64(e, RB), "r0");
    LLVMValueRef r1 = kp_min_i64(e, LLVMBuildNSWAdd(e->b, r0, kp_i64(e, RB), ""), a->n);
    LLVMValueRef j0 = LLVMBuildNSWMul(e->b, ct, kp_i64(e, TJ), "j0");
    int64_t last = s->out % TJ;
    if (last == 0) {
        rows(e, a, s, r0, r1, j0, TJ);
    } else {
        /* the last tile has `last` columns, done one column at a time */
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(e->ctx, fn, "full");
        LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(e->ctx, fn, "part");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "join");
        LLVMValueRef is_full = LLVMBuildICmp(e->b, LLVMIntSLT, ct, kp_i64(e, ncol - 1), "");
        LLVMBuildCondBr(e->b, is_full, full, part);
        LLVMPositionBuilderAtEnd(e->b, full);
        rows(e, a, s, r0, r1, j0, TJ);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, part);
        for (int c = 0; c < last; c++)
            rows(e, a, s, r0, r1, LLVMBuildNSWAdd(e->b, j0, kp_i64(e, c), ""), 1);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    kp_loop_end(e, &li);
}

int emit_dense(KpEmit *e, const KpNode *n, KpDiag *d)
{
    DenseShape s = {
        .in = n->in[1]->dims[1],
        .out = n->in[1]->dims[0],
        .has_bias = kp_node_op_nin(n) >= 3 && n->in[2] != NULL,
    };
    int64_t ncol = (s.out + TJ - 1) / TJ;
    LLVMValueRef nrb = LLVMBuildSDiv(e->b, LLVMBuildNSWAdd(e->b, e->n, kp_i64(e, RB - 1), ""),
                                     kp_i64(e, RB), "nrb");
    LLVMValueRef items = LLVMBuildNSWMul(e->b, nrb, kp_i64(e, ncol), "items");
    /* below ~64k multiply-adds a thread team costs more than it saves */
    int parallel = e->g->max_batch * s.in * s.out >= 65536;
    kp_emit_parallel(e, "dense", kp_i64(e, 0), items, parallel, dense_kernel, &s);
    return 0;
}
