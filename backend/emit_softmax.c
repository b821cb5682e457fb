/*
 * emit_softmax.c — y[r,:] = exp(x[r,:] - max) / sum, per row, rows in
 * parallel.  Three passes over a row: the max, then e = exp(x - max)
 * stored in y while summed, then y /= sum.  Vectors of VW with a masked
 * last vector; the max and the sum are reduced by a fixed tree, so a row's
 * result does not depend on the thread count.
 */
#include <math.h>

#include "emit.h"

/* One row: input, output, the row's first element, its length. */
typedef struct Row {
    LLVMValueRef x, y, base;
    int64_t cols;
} Row;

static LLVMValueRef at(KpEmit *e, const Row *row, LLVMValueRef k)
{
    return LLVMBuildNSWAdd(e->b, row->base, k, "");
}

static void softmax_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const KpValue *v = user;
    Row row = {a->p[0], a->p[1], NULL, kp_value_sample_size(v)};
    int64_t kmain = row.cols - row.cols % e->vw;
    int rem = (int)(row.cols % e->vw);
    LLVMValueRef vmax = kp_alloca(e, e->vec, "vmax"), vsum = kp_alloca(e, e->vec, "vsum");
    KpLoop lr, lk;

    kp_loop_begin(e, &lr, a->begin, a->end, 1, "row");
    row.base = LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, row.cols), "base");

    /* max */
    LLVMBuildStore(e->b, kp_fconst(e->vec, -INFINITY), vmax);
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef xv = kp_load_vec(e, row.x, at(e, &row, lk.iv));
        LLVMBuildStore(e->b, kp_max(e, LLVMBuildLoad2(e->b, e->vec, vmax, ""), xv), vmax);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef xv = kp_load_vec_masked(e, row.x, at(e, &row, kp_i64(e, kmain)), rem, -INFINITY);
        LLVMBuildStore(e->b, kp_max(e, LLVMBuildLoad2(e->b, e->vec, vmax, ""), xv), vmax);
    }
    LLVMValueRef m = kp_reduce_max(e, LLVMBuildLoad2(e->b, e->vec, vmax, ""));
    LLVMValueRef mv = kp_splat(e, m);

    /* e = exp(x - max) into y, summed */
    LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), vsum);
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef i = at(e, &row, lk.iv);
        LLVMValueRef ev = kp_emit_exp(e, LLVMBuildFSub(e->b, kp_load_vec(e, row.x, i), mv, ""));
        kp_store_vec(e, ev, row.y, i);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, vsum, ""), ev, ""), vsum);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef i = at(e, &row, kp_i64(e, kmain));
        LLVMValueRef xv = kp_load_vec_masked(e, row.x, i, rem, 0.0);
        LLVMValueRef ev = kp_emit_exp(e, LLVMBuildFSub(e->b, xv, mv, ""));
        ev = LLVMBuildSelect(e->b, kp_mask_first(e, rem), ev, kp_fconst(e->vec, 0.0), "");
        kp_store_vec_masked(e, ev, row.y, i, rem);
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, vsum, ""), ev, ""), vsum);
    }
    LLVMValueRef s = kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, vsum, ""));
    LLVMValueRef sv = kp_splat(e, s);

    /* y /= sum */
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef i = at(e, &row, lk.iv);
        kp_store_vec(e, LLVMBuildFDiv(e->b, kp_load_vec(e, row.y, i), sv, ""), row.y, i);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef i = at(e, &row, kp_i64(e, kmain));
        LLVMValueRef yv = kp_load_vec_masked(e, row.y, i, rem, 1.0);
        kp_store_vec_masked(e, LLVMBuildFDiv(e->b, yv, sv, ""), row.y, i, rem);
    }
    kp_loop_end(e, &lr);
}

int emit_softmax(KpEmit *e, const KpNode *n, KpDiag *d)
{
    kp_emit_parallel_units(e, "softmax", 1, 2 * kp_value_sample_size(n->out), softmax_kernel,
                           (void *)n->out);
    return 0;
}

/* softmax_grad: dy, y [rows, cols] -> dx, per row
 *     dot = sum_k dy[k] y[k]   (vector lanes, then the fixed tree)
 *     dx[k] = y[k] (dy[k] - dot) */
static void softmax_grad_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const KpValue *v = user;
    LLVMValueRef dy = a->p[0], y = a->p[1], dx = a->p[2];
    int64_t cols = kp_value_sample_size(v);
    int64_t kmain = cols - cols % e->vw;
    int rem = (int)(cols % e->vw);
    LLVMValueRef vdot = kp_alloca(e, e->vec, "vdot");
    KpLoop lr, lk;
    kp_loop_begin(e, &lr, a->begin, a->end, 1, "row");
    Row row = {NULL, NULL, LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, cols), "base"), cols};

    LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), vdot);
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef i = at(e, &row, lk.iv);
        LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, vdot, "");
        LLVMBuildStore(e->b, kp_fma(e, kp_load_vec(e, dy, i), kp_load_vec(e, y, i), old), vdot);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef i = at(e, &row, kp_i64(e, kmain));
        LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, vdot, "");
        LLVMValueRef p = kp_fma(e, kp_load_vec_masked(e, dy, i, rem, 0.0),
                                kp_load_vec_masked(e, y, i, rem, 0.0), old);
        LLVMBuildStore(e->b, p, vdot);
    }
    LLVMValueRef dot = kp_splat(e, kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, vdot, "")));

    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef i = at(e, &row, lk.iv);
        LLVMValueRef r = LLVMBuildFMul(e->b, kp_load_vec(e, y, i),
                                       LLVMBuildFSub(e->b, kp_load_vec(e, dy, i), dot, ""), "");
        if (e->accumulate)
            r = LLVMBuildFAdd(e->b, kp_load_vec(e, dx, i), r, "");
        kp_store_vec(e, r, dx, i);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef i = at(e, &row, kp_i64(e, kmain));
        LLVMValueRef r = LLVMBuildFMul(e->b, kp_load_vec_masked(e, y, i, rem, 0.0),
                                       LLVMBuildFSub(e->b, kp_load_vec_masked(e, dy, i, rem, 0.0), dot, ""), "");
        if (e->accumulate)
            r = LLVMBuildFAdd(e->b, kp_load_vec_masked(e, dx, i, rem, 0.0), r, "");
        kp_store_vec_masked(e, r, dx, i, rem);
    }
    kp_loop_end(e, &lr);
}

int emit_softmax_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    kp_emit_parallel_units(e, "softmax_grad", 1, 3 * kp_value_sample_size(n->out),
                           softmax_grad_kernel, (void *)n->out);
    return 0;
}
