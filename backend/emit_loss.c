/*
 * emit_loss.c — the losses and their gradients (runtime/ref/loss.c
 * defines them; PyTorch's reduction='mean').
 *
 *   cross_entropy(logits [N,C], labels int32 [N]) -> mean_i (m_i - x[i,l_i]) + ln sum_j e^(x_ij - m_i)
 *   mse(p, t)        -> mean (p - t)^2
 *   bce(p, t)        -> mean -(t max(ln p, -100) + (1-t) max(ln(1-p), -100))
 *   bce_logits(z, t) -> mean max(z,0) - z t + ln(1 + e^-|z|)
 *   cross_entropy_grad -> (softmax(x_i) - onehot(l_i)) / N
 *   mse_grad           -> 2 (p - t) / count
 *   bce_grad           -> (p - t) / max(p (1-p), 1e-12) / count
 *   bce_logits_grad    -> (sigmoid(z) - t) / count
 * count = all elements (n * size).
 *
 * A loss is one scalar: computed by one thread, rows (or vectors of
 * elements) in order into a double sum, so it never depends on the thread
 * count.  The row max and sum of cross_entropy are vector lanes reduced by
 * the fixed tree.  mse_grad and bce_grad are computed in double, as the
 * reference does.  A label outside [0, C) (the runtime checks labels
 * before calling) gives a NaN loss and no one-hot term, never a read out
 * of bounds.
 */
#include <math.h>

#include "emit.h"

static LLVMTypeRef f64(KpEmit *e)
{
    return LLVMDoubleTypeInContext(e->ctx);
}

static LLVMTypeRef dvec_like(KpEmit *e, LLVMTypeRef ty)
{
    return LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMVectorType(f64(e), LLVMGetVectorSize(ty))
                                                     : f64(e);
}

/* --- cross_entropy ------------------------------------------------------- */

/* A row's max and sum_j e^(x_j - max), vectors reduced by the fixed tree. */
static void row_max_sum(KpEmit *e, LLVMValueRef x, LLVMValueRef base, int64_t cols,
                        LLVMValueRef *max, LLVMValueRef *sum)
{
    int64_t kmain = cols - cols % e->vw;
    int rem = (int)(cols % e->vw);
    LLVMValueRef acc = kp_alloca(e, e->vec, "acc");
    KpLoop lk;
    LLVMBuildStore(e->b, kp_fconst(e->vec, -INFINITY), acc);
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef xv = kp_load_vec(e, x, LLVMBuildNSWAdd(e->b, base, lk.iv, ""));
        LLVMBuildStore(e->b, kp_max(e, LLVMBuildLoad2(e->b, e->vec, acc, ""), xv), acc);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef xv = kp_load_vec_masked(e, x, LLVMBuildNSWAdd(e->b, base, kp_i64(e, kmain), ""),
                                             rem, -INFINITY);
        LLVMBuildStore(e->b, kp_max(e, LLVMBuildLoad2(e->b, e->vec, acc, ""), xv), acc);
    }
    *max = kp_reduce_max(e, LLVMBuildLoad2(e->b, e->vec, acc, ""));
    LLVMValueRef mv = kp_splat(e, *max);
    LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc);
    if (kmain > 0) {
        kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
        LLVMValueRef xv = kp_load_vec(e, x, LLVMBuildNSWAdd(e->b, base, lk.iv, ""));
        LLVMValueRef ev = kp_emit_exp(e, LLVMBuildFSub(e->b, xv, mv, ""));
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""), ev, ""), acc);
        kp_loop_end(e, &lk);
    }
    if (rem > 0) {
        LLVMValueRef xv = kp_load_vec_masked(e, x, LLVMBuildNSWAdd(e->b, base, kp_i64(e, kmain), ""),
                                             rem, -INFINITY);
        LLVMValueRef ev = kp_emit_exp(e, LLVMBuildFSub(e->b, xv, mv, ""));
        ev = LLVMBuildSelect(e->b, kp_mask_first(e, rem), ev, kp_fconst(e->vec, 0.0), "");
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->vec, acc, ""), ev, ""), acc);
    }
    *sum = kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, acc, ""));
}

/* The row's label, and whether it is in [0, cols). */
static LLVMValueRef row_label(KpEmit *e, LLVMValueRef labels, LLVMValueRef r, int64_t cols,
                              LLVMValueRef *valid)
{
    LLVMValueRef p = LLVMBuildInBoundsGEP2(e->b, e->i32, labels, &r, 1, "");
    LLVMValueRef l = LLVMBuildSExt(e->b, LLVMBuildLoad2(e->b, e->i32, p, "label"), e->i64, "");
    *valid = LLVMBuildICmp(e->b, LLVMIntULT, l, kp_i64(e, cols), "valid");
    return LLVMBuildSelect(e->b, *valid, l, kp_i64(e, 0), "");
}

static void cross_entropy_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    int64_t cols = kp_value_sample_size(user);
    LLVMValueRef total = kp_alloca(e, f64(e), "total");
    LLVMBuildStore(e->b, LLVMConstReal(f64(e), 0.0), total);
    KpLoop lr;
    kp_loop_begin(e, &lr, kp_i64(e, 0), a->n, 1, "row");
    LLVMValueRef base = LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, cols), "base");
    LLVMValueRef max, sum, valid;
    row_max_sum(e, a->p[0], base, cols, &max, &sum);
    LLVMValueRef l = row_label(e, a->p[1], lr.iv, cols, &valid);
    LLVMValueRef xl = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[0], LLVMBuildNSWAdd(e->b, base, l, "")), "");
    xl = LLVMBuildSelect(e->b, valid, xl, LLVMConstReal(e->f32, NAN), "");
    LLVMValueRef term = LLVMBuildFAdd(e->b, LLVMBuildFSub(e->b, max, xl, ""), kp_emit_log(e, sum), "");
    LLVMValueRef t = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, f64(e), total, ""),
                                   LLVMBuildFPExt(e->b, term, f64(e), ""), "");
    LLVMBuildStore(e->b, t, total);
    kp_loop_end(e, &lr);
    LLVMValueRef mean = LLVMBuildFDiv(e->b, LLVMBuildLoad2(e->b, f64(e), total, ""),
                                      LLVMBuildSIToFP(e->b, a->n, f64(e), ""), "");
    LLVMBuildStore(e->b, LLVMBuildFPTrunc(e->b, mean, e->f32, ""), a->p[2]);
}

int emit_cross_entropy(KpEmit *e, const KpNode *n, KpDiag *d)
{
    kp_emit_parallel(e, "cross_entropy", kp_i64(e, 0), kp_i64(e, 1), 0, cross_entropy_kernel,
                     (void *)n->in[0]);
    return 0;
}

/* --- rows across the lanes (cols <= vw) ----------------------------------
 *
 * A head of few classes (10) fills 10 of 16 lanes, and each row's max,
 * sum and log wait on one another: about 200 cycles a row.  Here a vector
 * holds vw rows and column j of each (gathered), so the rows run side by
 * side.  The float operations per row are those of the row form above:
 * max over the columns (exact in any order), the sum of e^(x - max) in the
 * order of kp_reduce_add's halving tree over a row vector whose lanes past
 * cols are zero (a lane known zero is not added: x + 0 is x for the sums
 * of exponentials), the same exp and log elementwise.  So the loss and
 * d_output are the row form's bit for bit, and the unfused
 * cross_entropy_kernel's. */

/* sum over j < cols of v[j], as kp_reduce_add would add a vector of vw
 * lanes holding v[j] in lane j and zero past cols; v is overwritten. */
static LLVMValueRef tree_sum(KpEmit *e, LLVMValueRef *v, int64_t cols)
{
    bool live[64];
    for (int j = 0; j < e->vw; j++)
        live[j] = j < cols;
    for (int w = e->vw; w > 1; w /= 2)
        for (int i = 0; i < w / 2; i++) {
            if (live[i] && live[i + w / 2])
                v[i] = LLVMBuildFAdd(e->b, v[i], v[i + w / 2], "");
            else if (live[i + w / 2])
                v[i] = v[i + w / 2];
            live[i] = live[i] || live[i + w / 2];
        }
    return v[0];
}

/* Rows r .. r + vw (those below r1) of kp_emit_xent_rows, one per lane. */
static void xent_lanes(KpEmit *e, LLVMValueRef x, LLVMValueRef labels, LLVMValueRef dx, LLVMValueRef terms,
                       LLVMValueRef r, LLVMValueRef r1, int64_t cols, LLVMValueRef nf)
{
    int vw = e->vw;
    LLVMValueRef rows = kp_lane_index(e, r, 1);
    LLVMValueRef mask = LLVMBuildICmp(e->b, LLVMIntSLT, rows, kp_lane_index(e, r1, 0), "");
    LLVMValueRef at = LLVMBuildNSWMul(e->b, rows, kp_lane_index(e, kp_i64(e, cols), 0), "");
    LLVMValueRef xc[64], ec[64];
    LLVMValueRef mv = kp_fconst(e->vec, -INFINITY);
    for (int64_t j = 0; j < cols; j++) {
        xc[j] = kp_gather_where(e, x, LLVMBuildNSWAdd(e->b, at, kp_lane_index(e, kp_i64(e, j), 0), ""), mask);
        mv = kp_max(e, mv, xc[j]);
    }
    for (int64_t j = 0; j < cols; j++)
        ec[j] = kp_emit_exp(e, LLVMBuildFSub(e->b, xc[j], mv, ""));
    LLVMValueRef sum[64];
    for (int64_t j = 0; j < cols; j++)
        sum[j] = ec[j];
    LLVMValueRef sv = tree_sum(e, sum, cols);
    /* the labels: lanes past r1 read nothing (and count as invalid) */
    LLVMTypeRef ivec = LLVMVectorType(e->i32, (unsigned)vw);
    LLVMValueRef lp = LLVMBuildInBoundsGEP2(e->b, e->i32, labels, &r, 1, "");
    LLVMTypeRef over[2] = {ivec, e->ptr};
    LLVMValueRef largs[4] = {lp, kp_i32(e, 4), mask, LLVMConstAllOnes(ivec)};
    LLVMValueRef lab = LLVMBuildSExt(e->b, kp_intrinsic(e, "llvm.masked.load", over, 2, largs, 4),
                                     LLVMVectorType(e->i64, (unsigned)vw), "label");
    LLVMValueRef valid = LLVMBuildICmp(e->b, LLVMIntULT, lab, kp_lane_index(e, kp_i64(e, cols), 0), "valid");
    if (terms) {
        LLVMValueRef xl = kp_fconst(e->vec, NAN);
        for (int64_t j = 0; j < cols; j++) {
            LLVMValueRef jv = kp_lane_index(e, kp_i64(e, j), 0);
            xl = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, lab, jv, ""), xc[j], xl, "");
        }
        LLVMValueRef term = LLVMBuildFAdd(e->b, LLVMBuildFSub(e->b, mv, xl, ""), kp_emit_log(e, sv), "");
        kp_store_vec_where(e, term, terms, r, mask);
    }
    LLVMValueRef lv = LLVMBuildSelect(e->b, valid, lab, kp_lane_index(e, kp_i64(e, -1), 0), "");
    for (int64_t j = 0; j < cols; j++) {
        LLVMValueRef jv = kp_lane_index(e, kp_i64(e, j), 0);
        LLVMValueRef oh = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, lv, jv, ""),
                                          kp_fconst(e->vec, 1.0), kp_fconst(e->vec, 0.0), "");
        LLVMValueRef g = LLVMBuildFDiv(e->b, LLVMBuildFSub(e->b, LLVMBuildFDiv(e->b, ec[j], sv, ""), oh, ""),
                                       nf, "");
        LLVMValueRef idx = LLVMBuildNSWAdd(e->b, at, kp_lane_index(e, kp_i64(e, j), 0), "");
        if (e->accumulate)
            g = LLVMBuildFAdd(e->b, kp_gather_where(e, dx, idx, mask), g, "");
        kp_scatter_where(e, g, dx, idx, mask);
    }
}

void kp_emit_xent_rows(KpEmit *e, LLVMValueRef x, LLVMValueRef labels, LLVMValueRef dx,
                       LLVMValueRef terms, LLVMValueRef r0, LLVMValueRef r1, int64_t cols,
                       LLVMValueRef n)
{
    if (cols <= e->vw) {
        LLVMValueRef nf = kp_count_f32(e, n, e->vec);
        KpLoop lb;
        kp_loop_begin(e, &lb, r0, r1, e->vw, "rows");
        xent_lanes(e, x, labels, dx, terms, lb.iv, r1, cols, nf);
        kp_loop_end(e, &lb);
        return;
    }
    int64_t kmain = cols - cols % e->vw;
    int rem = (int)(cols % e->vw);
    LLVMValueRef lanes[64];
    for (int i = 0; i < e->vw; i++)
        lanes[i] = LLVMConstInt(e->i64, (unsigned long long)i, 0);
    LLVMValueRef iota = LLVMConstVector(lanes, (unsigned)e->vw);
    LLVMTypeRef ivec = LLVMVectorType(e->i64, (unsigned)e->vw);
    LLVMValueRef nf = kp_count_f32(e, n, e->vec);
    KpLoop lr, lk;
    kp_loop_begin(e, &lr, r0, r1, 1, "row");
    LLVMValueRef base = LLVMBuildNSWMul(e->b, lr.iv, kp_i64(e, cols), "base");
    LLVMValueRef max, sum, valid;
    row_max_sum(e, x, base, cols, &max, &sum);
    LLVMValueRef l = row_label(e, labels, lr.iv, cols, &valid);
    if (terms) {
        /* the row's term of the loss, as cross_entropy_kernel computes it */
        LLVMValueRef xl = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, x, LLVMBuildNSWAdd(e->b, base, l, "")), "");
        xl = LLVMBuildSelect(e->b, valid, xl, LLVMConstReal(e->f32, NAN), "");
        LLVMValueRef term = LLVMBuildFAdd(e->b, LLVMBuildFSub(e->b, max, xl, ""), kp_emit_log(e, sum), "");
        LLVMBuildStore(e->b, term, kp_gep(e, terms, lr.iv));
    }
    l = LLVMBuildSelect(e->b, valid, l, kp_i64(e, -1), "");
    LLVMValueRef lv = LLVMBuildShuffleVector(
        e->b, LLVMBuildInsertElement(e->b, LLVMGetPoison(ivec), l, kp_i32(e, 0), ""), LLVMGetPoison(ivec),
        LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
    LLVMValueRef mv = kp_splat(e, max), sv = kp_splat(e, sum);
    for (int part = 0; part < 2; part++) {
        int masked = part == 1;
        if ((masked && rem == 0) || (!masked && kmain == 0))
            continue;
        LLVMValueRef k;
        if (!masked) {
            kp_loop_begin(e, &lk, kp_i64(e, 0), kp_i64(e, kmain), e->vw, "k");
            k = lk.iv;
        } else {
            k = kp_i64(e, kmain);
        }
        LLVMValueRef i = LLVMBuildNSWAdd(e->b, base, k, "");
        LLVMValueRef xv = masked ? kp_load_vec_masked(e, x, i, rem, 0.0) : kp_load_vec(e, x, i);
        LLVMValueRef p = LLVMBuildFDiv(e->b, kp_emit_exp(e, LLVMBuildFSub(e->b, xv, mv, "")), sv, "");
        LLVMValueRef js = LLVMBuildAdd(e->b, iota, LLVMBuildShuffleVector(
            e->b, LLVMBuildInsertElement(e->b, LLVMGetPoison(ivec), k, kp_i32(e, 0), ""),
            LLVMGetPoison(ivec), LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), ""), "");
        LLVMValueRef hot = LLVMBuildICmp(e->b, LLVMIntEQ, js, lv, "");
        LLVMValueRef oh = LLVMBuildSelect(e->b, hot, kp_fconst(e->vec, 1.0), kp_fconst(e->vec, 0.0), "");
        LLVMValueRef g = LLVMBuildFDiv(e->b, LLVMBuildFSub(e->b, p, oh, ""), nf, "");
        if (e->accumulate)
            g = LLVMBuildFAdd(e->b, masked ? kp_load_vec_masked(e, dx, i, rem, 0.0) : kp_load_vec(e, dx, i),
                              g, "");
        if (masked)
            kp_store_vec_masked(e, g, dx, i, rem);
        else {
            kp_store_vec(e, g, dx, i);
            kp_loop_end(e, &lk);
        }
    }
    kp_loop_end(e, &lr);
}

void kp_emit_xent_mean(KpEmit *e, LLVMValueRef terms, LLVMValueRef n, LLVMValueRef loss)
{
    LLVMValueRef total = kp_alloca(e, f64(e), "total");
    LLVMBuildStore(e->b, LLVMConstReal(f64(e), 0.0), total);
    KpLoop lr;
    kp_loop_begin(e, &lr, kp_i64(e, 0), n, 1, "row");
    LLVMValueRef term = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, terms, lr.iv), "term");
    LLVMValueRef t = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, f64(e), total, ""),
                                   LLVMBuildFPExt(e->b, term, f64(e), ""), "");
    LLVMBuildStore(e->b, t, total);
    kp_loop_end(e, &lr);
    LLVMValueRef mean = LLVMBuildFDiv(e->b, LLVMBuildLoad2(e->b, f64(e), total, ""),
                                      LLVMBuildSIToFP(e->b, n, f64(e), ""), "");
    LLVMBuildStore(e->b, LLVMBuildFPTrunc(e->b, mean, e->f32, ""), loss);
}

/* Rows in parallel: dx = e^(x - max) / sum, minus 1 at the label, over n. */
static void cross_entropy_grad_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    kp_emit_xent_rows(e, a->p[0], a->p[1], a->p[2], NULL, a->begin, a->end,
                      kp_value_sample_size(user), a->n);
}

int emit_cross_entropy_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    kp_emit_parallel_units(e, "cross_entropy_grad", 1, 2 * kp_value_sample_size(n->out),
                           cross_entropy_grad_kernel, (void *)n->in[0]);
    return 0;
}

/* --- mse, bce, bce_logits: the mean of a term over all elements ----------- */

typedef LLVMValueRef (*TermFn)(KpEmit *e, LLVMValueRef p, LLVMValueRef t);

typedef struct Mean {
    TermFn term;
    const KpValue *pred;
} Mean;

/* sum of term(p[i], t[i]) in double: vector lanes over whole vectors (then
 * the fixed tree), plus the scalar tail; one thread. */
static void mean_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Mean *m = user;
    LLVMTypeRef dv = dvec_like(e, e->vec);
    LLVMValueRef count = kp_numel(e, m->pred);
    LLVMValueRef vend = LLVMBuildAnd(e->b, count, kp_i64(e, ~(int64_t)(e->vw - 1)), "vend");
    LLVMValueRef vacc = kp_alloca(e, dv, "vacc"), sacc = kp_alloca(e, f64(e), "sacc");
    LLVMBuildStore(e->b, LLVMConstNull(dv), vacc);
    LLVMBuildStore(e->b, LLVMConstReal(f64(e), 0.0), sacc);
    KpLoop lv, ls;
    kp_loop_begin(e, &lv, kp_i64(e, 0), vend, e->vw, "v");
    LLVMValueRef tv = m->term(e, kp_load_vec(e, a->p[0], lv.iv), kp_load_vec(e, a->p[1], lv.iv));
    LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, dv, vacc, ""),
                                       LLVMBuildFPExt(e->b, tv, dv, ""), ""), vacc);
    kp_loop_end(e, &lv);
    kp_loop_begin(e, &ls, vend, count, 1, "s");
    LLVMValueRef ps = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[0], ls.iv), "");
    LLVMValueRef ts = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, a->p[1], ls.iv), "");
    LLVMValueRef t1 = m->term(e, ps, ts);
    LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, f64(e), sacc, ""),
                                       LLVMBuildFPExt(e->b, t1, f64(e), ""), ""), sacc);
    kp_loop_end(e, &ls);
    LLVMValueRef total = LLVMBuildFAdd(e->b, kp_reduce_add(e, LLVMBuildLoad2(e->b, dv, vacc, "")),
                                       LLVMBuildLoad2(e->b, f64(e), sacc, ""), "");
    LLVMValueRef mean = LLVMBuildFDiv(e->b, total, LLVMBuildSIToFP(e->b, count, f64(e), ""), "");
    LLVMBuildStore(e->b, LLVMBuildFPTrunc(e->b, mean, e->f32, ""), a->p[2]);
}

static int emit_mean(KpEmit *e, const KpNode *n, TermFn term)
{
    Mean m = {term, n->in[0]};
    kp_emit_parallel(e, kp_op_name(n->op), kp_i64(e, 0), kp_i64(e, 1), 0, mean_kernel, &m);
    return 0;
}

static LLVMValueRef term_mse(KpEmit *e, LLVMValueRef p, LLVMValueRef t)
{
    LLVMValueRef d = LLVMBuildFSub(e->b, p, t, "");
    return LLVMBuildFMul(e->b, d, d, "");
}

static LLVMValueRef clamped_log(KpEmit *e, LLVMValueRef x)
{
    return kp_max(e, kp_emit_log(e, x), kp_fconst(LLVMTypeOf(x), -100.0));
}

static LLVMValueRef term_bce(KpEmit *e, LLVMValueRef p, LLVMValueRef t)
{
    LLVMTypeRef ty = LLVMTypeOf(p);
    LLVMValueRef one = kp_fconst(ty, 1.0);
    LLVMValueRef a = LLVMBuildFMul(e->b, t, clamped_log(e, p), "");
    LLVMValueRef b = LLVMBuildFMul(e->b, LLVMBuildFSub(e->b, one, t, ""),
                                   clamped_log(e, LLVMBuildFSub(e->b, one, p, "")), "");
    return LLVMBuildFNeg(e->b, LLVMBuildFAdd(e->b, a, b, ""), "");
}

static LLVMValueRef term_bce_logits(KpEmit *e, LLVMValueRef z, LLVMValueRef t)
{
    LLVMTypeRef ty = LLVMTypeOf(z);
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, z, kp_fconst(ty, 0.0), "");
    LLVMValueRef relu = LLVMBuildSelect(e->b, pos, z, kp_fconst(ty, 0.0), "");
    LLVMValueRef az = kp_intrinsic(e, "llvm.fabs", &ty, 1, &z, 1);
    LLVMValueRef sp = kp_emit_log1p(e, kp_emit_exp(e, LLVMBuildFNeg(e->b, az, "")));
    return LLVMBuildFAdd(e->b, LLVMBuildFSub(e->b, relu, LLVMBuildFMul(e->b, z, t, ""), ""), sp, "");
}

int emit_mse(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_mean(e, n, term_mse);
}

int emit_bce(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_mean(e, n, term_bce);
}

int emit_bce_logits(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_mean(e, n, term_bce_logits);
}

/* --- the elementwise gradients --------------------------------------------- */

/* count = n * size of the prediction, as a double of ty's shape */
static LLVMValueRef count_f64(KpEmit *e, const KpNode *n, LLVMTypeRef dty)
{
    LLVMValueRef c = LLVMBuildSIToFP(e->b, kp_numel(e, n->in[0]), f64(e), "count");
    if (LLVMGetTypeKind(dty) != LLVMVectorTypeKind)
        return c;
    LLVMTypeRef dv = dvec_like(e, e->vec);
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(dv), c, kp_i32(e, 0), "");
    return LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(dv),
                                  LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
}

static LLVMValueRef f_mse_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]), dty = dvec_like(e, ty);
    LLVMValueRef d = LLVMBuildFSub(e->b, LLVMBuildFPExt(e->b, x[0], dty, ""),
                                   LLVMBuildFPExt(e->b, x[1], dty, ""), "");
    LLVMValueRef g = LLVMBuildFDiv(e->b, LLVMBuildFMul(e->b, kp_fconst(dty, 2.0), d, ""),
                                   count_f64(e, n, dty), "");
    return LLVMBuildFPTrunc(e->b, g, ty, "");
}

static LLVMValueRef f_bce_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]), dty = dvec_like(e, ty);
    LLVMValueRef p = LLVMBuildFPExt(e->b, x[0], dty, ""), t = LLVMBuildFPExt(e->b, x[1], dty, "");
    LLVMValueRef denom = LLVMBuildFMul(e->b, p, LLVMBuildFSub(e->b, kp_fconst(dty, 1.0), p, ""), "");
    LLVMValueRef small = LLVMBuildFCmp(e->b, LLVMRealOLT, denom, kp_fconst(dty, 1e-12), "");
    denom = LLVMBuildSelect(e->b, small, kp_fconst(dty, 1e-12), denom, "");
    LLVMValueRef g = LLVMBuildFDiv(e->b, LLVMBuildFSub(e->b, p, t, ""), denom, "");
    g = LLVMBuildFDiv(e->b, g, count_f64(e, n, dty), "");
    return LLVMBuildFPTrunc(e->b, g, ty, "");
}

static LLVMValueRef f_bce_logits_grad(KpEmit *e, const LLVMValueRef *x, const KpNode *n)
{
    LLVMTypeRef ty = LLVMTypeOf(x[0]);
    LLVMValueRef d = LLVMBuildFSub(e->b, kp_emit_sigmoid(e, x[0]), x[1], "");
    return LLVMBuildFDiv(e->b, d, kp_count_f32(e, kp_numel(e, n->in[0]), ty), "");
}

int emit_mse_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_mse_grad);
}

int emit_bce_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_bce_grad);
}

int emit_bce_logits_grad(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return kp_emit_map(e, n, f_bce_logits_grad);
}
