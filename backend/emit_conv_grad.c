/*
 * emit_conv_grad.c — the weight gradients of the convolutions:
 *
 *   dW[m,k,ky,kx] += sum_{n,oy,ox} A[n,m,oy,ox] B[n,k, oy*sh-pt+ky*dh, ox*sw-pl+kx*dw]
 *
 *   conv2d_grad_w:            A = dy [N,F,OH,OW], B = x  [N,C,H,W], dW [F,C,kh,kw]
 *   conv2d_transpose_grad_w:  A = x  [N,C,H,W],  B = dy [N,F,OH,OW], dW [C,F,kh,kw]
 *
 * (positions of B outside the image read zero).  A work item is (a block
 * of MB m's, one k, one ky, a block of XB kx's): MB*XB vector accumulators,
 * one lane per output column ox:
 *
 *   for n, oy (rows of B outside the image skipped), ox in vectors:
 *       MB vectors a = A[n, m0+i, oy, ox..]     XB vectors b = B[..., ix(kx)..]
 *       acc[i][j] = fma(a[i], b[j], acc[i][j])
 *
 * then each accumulator is summed across its lanes by a fixed tree and
 * added to dW.  One thread per item, a fixed order: the result does not
 * depend on the thread count.
 */
#include "emit_conv.h"

enum { MAXMB = 16, MAXXB = 8 };

typedef struct GradW {
    int64_t m, k, oh, ow, h, w;  /* A [N,m,oh,ow], B [N,k,h,w] */
    int64_t kh, kw, sh, sw, pt, pl, dh, dw;
    int64_t mb, xb;
    int edges;
    int ia, ib;                  /* kernel pointer indices of A and B */
} GradW;

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef add(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

static LLVMValueRef addc(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWAdd(e->b, a, kp_i64(e, k), "");
}

typedef struct Acc {
    LLVMValueRef v[MAXMB][MAXXB];
    int nx;                      /* kx's in this block */
} Acc;

/* The fmas of one vector of columns ox0.. (lanes of them) in row oy. */
static void columns(KpEmit *e, const KpKernelArgs *a, const GradW *s, const Acc *acc,
                    LLVMValueRef arow, LLVMValueRef brow, LLVMValueRef kx0, LLVMValueRef ox0,
                    int lanes, int edge)
{
    LLVMValueRef av[MAXMB];
    for (int i = 0; i < s->mb; i++) {
        LLVMValueRef at = add(e, addc(e, arow, i * s->oh * s->ow), ox0);
        av[i] = lanes == e->vw ? kp_load_vec(e, a->p[s->ia], at)
                               : kp_load_vec_masked(e, a->p[s->ia], at, lanes, 0.0);
    }
    for (int j = 0; j < acc->nx; j++) {
        LLVMValueRef ix0 = add(e, addc(e, mul(e, ox0, s->sw), -s->pl), mul(e, addc(e, kx0, j), s->dw));
        LLVMValueRef bv = kp_conv_load(e, a->p[s->ib], brow, ix0, s->sw, s->w, lanes, edge);
        for (int i = 0; i < s->mb; i++) {
            LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc->v[i][j], "");
            LLVMBuildStore(e->b, kp_fma(e, av[i], bv, old), acc->v[i][j]);
        }
    }
}

/* columns(), the inside variant when every read of B is in the row. */
static void columns_at(KpEmit *e, const KpKernelArgs *a, const GradW *s, const Acc *acc,
                       LLVMValueRef arow, LLVMValueRef brow, LLVMValueRef kx0, LLVMValueRef ox0,
                       int lanes)
{
    if (!s->edges) {
        columns(e, a, s, acc, arow, brow, kx0, ox0, lanes, 0);
        return;
    }
    LLVMValueRef lo = add(e, addc(e, mul(e, ox0, s->sw), -s->pl), mul(e, kx0, s->dw));
    LLVMValueRef hi = addc(e, lo, (int64_t)(lanes - 1) * s->sw + (acc->nx - 1) * s->dw);
    LLVMValueRef inside = LLVMBuildAnd(e->b, LLVMBuildICmp(e->b, LLVMIntSGE, lo, kp_i64(e, 0), ""),
                                       LLVMBuildICmp(e->b, LLVMIntSLT, hi, kp_i64(e, s->w), ""), "");
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef bi = LLVMAppendBasicBlockInContext(e->ctx, fn, "inside");
    LLVMBasicBlockRef be = LLVMAppendBasicBlockInContext(e->ctx, fn, "edge");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "cols.done");
    LLVMBuildCondBr(e->b, inside, bi, be);
    LLVMPositionBuilderAtEnd(e->b, bi);
    columns(e, a, s, acc, arow, brow, kx0, ox0, lanes, 0);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, be);
    columns(e, a, s, acc, arow, brow, kx0, ox0, lanes, 1);
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, join);
}

/* The item's sums for nx kx's from kx0, added into dW. */
static void block(KpEmit *e, const KpKernelArgs *a, const GradW *s, LLVMValueRef m0,
                  LLVMValueRef k, LLVMValueRef ky, LLVMValueRef kx0, int nx)
{
    Acc acc = {.nx = nx};
    for (int i = 0; i < s->mb; i++)
        for (int j = 0; j < nx; j++) {
            acc.v[i][j] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, kp_fconst(e->vec, 0.0), acc.v[i][j]);
        }
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    KpLoop ln, ly, lx;
    kp_loop_begin(e, &ln, kp_i64(e, 0), a->n, 1, "n");
    LLVMValueRef aplane = mul(e, add(e, mul(e, ln.iv, s->m), m0), s->oh);
    LLVMValueRef bplane = mul(e, add(e, mul(e, ln.iv, s->k), k), s->h);
    kp_loop_begin(e, &ly, kp_i64(e, 0), kp_i64(e, s->oh), 1, "oy");
    LLVMValueRef iy = add(e, addc(e, mul(e, ly.iv, s->sh), -s->pt), mul(e, ky, s->dh));
    LLVMBasicBlockRef row = LLVMAppendBasicBlockInContext(e->ctx, fn, "row");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(e->ctx, fn, "row.next");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntULT, iy, kp_i64(e, s->h), ""), row, next);
    LLVMPositionBuilderAtEnd(e->b, row);
    LLVMValueRef arow = mul(e, add(e, aplane, ly.iv), s->ow);
    LLVMValueRef brow = mul(e, add(e, bplane, iy), s->w);
    int64_t nwhole = s->ow / e->vw, rem = s->ow % e->vw;
    if (nwhole > 0) {
        kp_loop_begin(e, &lx, kp_i64(e, 0), kp_i64(e, nwhole), 1, "ox");
        columns_at(e, a, s, &acc, arow, brow, kx0, mul(e, lx.iv, e->vw), e->vw);
        kp_loop_end(e, &lx);
    }
    if (rem > 0)
        columns_at(e, a, s, &acc, arow, brow, kx0, kp_i64(e, nwhole * e->vw), (int)rem);
    LLVMBuildBr(e->b, next);
    LLVMPositionBuilderAtEnd(e->b, next);
    kp_loop_end(e, &ly);
    kp_loop_end(e, &ln);

    LLVMValueRef dW = a->p[2];
    for (int i = 0; i < s->mb; i++)
        for (int j = 0; j < nx; j++) {
            LLVMValueRef at = add(e, mul(e, add(e, mul(e, add(e, mul(e, addc(e, m0, i), s->k), k), s->kh), ky), s->kw),
                                  addc(e, kx0, j));
            LLVMValueRef sum = kp_reduce_add(e, LLVMBuildLoad2(e->b, e->vec, acc.v[i][j], ""));
            if (e->accumulate)
                sum = LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, e->f32, kp_gep(e, dW, at), ""), sum, "");
            LLVMBuildStore(e->b, sum, kp_gep(e, dW, at));
        }
}

/* item = ((mblock * k + kc) * kh + ky) * nxb + xblock */
static void gradw_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const GradW *s = user;
    int64_t nxb = (s->kw + s->xb - 1) / s->xb, lastx = s->kw - (nxb - 1) * s->xb;
    KpLoop li;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef xbk = LLVMBuildSRem(e->b, li.iv, kp_i64(e, nxb), "");
    LLVMValueRef t = LLVMBuildSDiv(e->b, li.iv, kp_i64(e, nxb), "");
    LLVMValueRef ky = LLVMBuildSRem(e->b, t, kp_i64(e, s->kh), "ky");
    t = LLVMBuildSDiv(e->b, t, kp_i64(e, s->kh), "");
    LLVMValueRef k = LLVMBuildSRem(e->b, t, kp_i64(e, s->k), "k");
    LLVMValueRef m0 = mul(e, LLVMBuildSDiv(e->b, t, kp_i64(e, s->k), ""), s->mb);
    LLVMValueRef kx0 = mul(e, xbk, s->xb);
    if (lastx == s->xb) {
        block(e, a, s, m0, k, ky, kx0, (int)s->xb);
    } else {
        LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
        LLVMBasicBlockRef bw = LLVMAppendBasicBlockInContext(e->ctx, fn, "xb.whole");
        LLVMBasicBlockRef bl = LLVMAppendBasicBlockInContext(e->ctx, fn, "xb.last");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "xb.done");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, xbk, kp_i64(e, nxb - 1), ""), bw, bl);
        LLVMPositionBuilderAtEnd(e->b, bw);
        block(e, a, s, m0, k, ky, kx0, (int)s->xb);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, bl);
        block(e, a, s, m0, k, ky, kx0, (int)lastx);
        LLVMBuildBr(e->b, join);
        LLVMPositionBuilderAtEnd(e->b, join);
    }
    kp_loop_end(e, &li);
}

static void emit_gradw(KpEmit *e, GradW *s)
{
    int64_t budget = e->vw >= 16 ? 24 : 10;
    s->xb = s->kw < MAXXB ? s->kw : MAXXB;
    if (s->xb > budget / 2)
        s->xb = budget / 2;
    s->mb = kp_divisor_upto(s->m, budget / s->xb < MAXMB ? budget / s->xb : MAXMB);
    s->edges = !(s->pl <= 0 && (s->ow - 1) * s->sw - s->pl + (s->kw - 1) * s->dw <= s->w - 1);
    int64_t nxb = (s->kw + s->xb - 1) / s->xb;
    int64_t items = s->m / s->mb * s->k * s->kh * nxb;
    int64_t macs = e->g->max_batch * s->m * s->k * s->kh * s->kw * s->oh * s->ow;
    kp_emit_parallel(e, "conv_grad_w", kp_i64(e, 0), kp_i64(e, items), macs >= 65536 && items > 1,
                     gradw_kernel, s);
}

static void geometry(GradW *s, const KpNode *n)
{
    kp_conv_geometry(n, 1, &s->kh, &s->kw, &s->sh, &s->sw, &s->pt, &s->pl, &s->dh, &s->dw);
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dW [F,C,kh,kw] */
int emit_conv2d_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    GradW s = {.m = dy->dims[1], .oh = dy->dims[2], .ow = dy->dims[3],
               .k = x->dims[1], .h = x->dims[2], .w = x->dims[3], .ia = 0, .ib = 1};
    geometry(&s, n);
    emit_gradw(e, &s);
    return 0;
}

/* dy [N,F,OH,OW], x [N,C,H,W] -> dW [C,F,kh,kw]: A = x, B = dy */
int emit_conv2d_transpose_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    const KpValue *dy = n->in[0], *x = n->in[1];
    GradW s = {.m = x->dims[1], .oh = x->dims[2], .ow = x->dims[3],
               .k = dy->dims[1], .h = dy->dims[2], .w = dy->dims[3], .ia = 1, .ib = 0};
    geometry(&s, n);
    emit_gradw(e, &s);
    return 0;
}
