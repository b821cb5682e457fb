/*
 * emit_batchnorm.c — batch normalization over x [N,C] or [N,C,H,W] (hw
 * floats per (n, c) plane; cnt = N*hw per channel):
 *
 *   batchnorm         y = (x - rmean[c]) / sqrt(rvar[c] + eps) * gamma[c] + beta[c]
 *   batchnorm_stats   stats = (mean[C], invstd[C]), invstd = 1/sqrt(biased var + eps);
 *                     rmean, rvar (inputs 1, 2) updated in place with momentum,
 *                     rvar from the unbiased variance (PyTorch)
 *   batchnorm_train   y = (x - mean) * invstd * gamma + beta
 *   batchnorm_grad_x  dx = gamma invstd / cnt (cnt dy - sum dy - xhat sum(dy xhat)),
 *                     xhat = (x - mean) invstd
 *   batchnorm_grad_w  dgamma[c] += sum dy xhat
 *   batchnorm_fwd     stats, then y, channel by channel (aux stats)
 *   batchnorm_bwd     dgamma[c] += sum dy xhat, dbeta[c] += sum dy, then dx,
 *                     channel by channel (aux dgamma, dbeta)
 *
 * Elementwise ops take (n, c) planes as items; the per-channel sums take
 * channels, each summed by one thread in double-precision vectors (lanes
 * along hw, the last vector masked, lanes added by a fixed tree), so the
 * results do not depend on the thread count.  The merged ops take
 * channels too: a channel's n * hw floats are summed and then rewritten
 * while they are in cache.
 */
#include "emit.h"

typedef struct Bn {
    int64_t c, hw;
    float eps, momentum;
    const KpNode *node;
} Bn;

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef ld(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildLoad2(e->b, e->f32, kp_gep(e, p, i), "");
}

static LLVMValueRef sqrt_f(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    return kp_intrinsic(e, "llvm.sqrt", &ty, 1, &x, 1);
}

/* --- elementwise: y[n,c,i] = x[n,c,i] * scale + shift, per plane ------ */

/* scale and shift of channel c, from the node's inputs */
static void affine(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                   LLVMValueRef *mean, LLVMValueRef *den, LLVMValueRef *gamma, LLVMValueRef *beta)
{
    if (s->node->op == KP_OP_batchnorm) {     /* x, gamma, beta, rmean, rvar */
        *gamma = ld(e, a->p[1], c), *beta = ld(e, a->p[2], c), *mean = ld(e, a->p[3], c);
        *den = sqrt_f(e, LLVMBuildFAdd(e->b, ld(e, a->p[4], c), kp_fconst(e->f32, s->eps), ""));
    } else {                                  /* x, stats, gamma, beta */
        *gamma = ld(e, a->p[2], c), *beta = ld(e, a->p[3], c), *mean = ld(e, a->p[1], c);
        *den = ld(e, a->p[1], LLVMBuildNSWAdd(e->b, c, kp_i64(e, s->c), ""));
    }
}

/* y[plane] = ((x[plane] - mean) / or * den) * gamma + beta, then the
 * node's epilogues: the hw floats of one (n, c) plane from base on */
static void normalize_plane(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef base,
                            LLVMValueRef mean, LLVMValueRef den, int divide, LLVMValueRef gamma,
                            LLVMValueRef beta)
{
    LLVMValueRef x = a->p[0], y = a->p[s->node->nin];
    KpLoop li;
    kp_loop_begin(e, &li, kp_i64(e, 0), kp_i64(e, s->hw), 1, "i");
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, base, li.iv, "");
    LLVMValueRef v = LLVMBuildFSub(e->b, ld(e, x, at), mean, "");
    v = divide ? LLVMBuildFDiv(e->b, v, den, "") : LLVMBuildFMul(e->b, v, den, "");
    v = LLVMBuildFAdd(e->b, LLVMBuildFMul(e->b, v, gamma, ""), beta, "");
    v = kp_emit_epilogue(e, s->node, a->p, v, at, 0);
    LLVMBuildStore(e->b, v, kp_gep(e, y, at));
    kp_loop_end(e, &li);
}

static void plane_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Bn *s = user;
    KpLoop lp;
    kp_loop_begin(e, &lp, a->begin, a->end, 1, "plane");
    LLVMValueRef c = LLVMBuildSRem(e->b, lp.iv, kp_i64(e, s->c), "c");
    LLVMValueRef mean, den, gamma, beta;
    affine(e, a, s, c, &mean, &den, &gamma, &beta);
    normalize_plane(e, a, s, mul(e, lp.iv, s->hw), mean, den, s->node->op == KP_OP_batchnorm,
                    gamma, beta);
    kp_loop_end(e, &lp);
}

static int emit_planes(KpEmit *e, const KpNode *n)
{
    const KpValue *x = n->in[0];
    Bn s = {.c = x->dims[1], .hw = kp_value_sample_size(x) / x->dims[1], .eps = n->attr.eps,
            .node = n};
    LLVMValueRef planes = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, s.c), "planes");
    kp_emit_parallel(e, "bn", kp_i64(e, 0), planes, e->g->max_batch * s.c * s.hw >= 65536,
                     plane_kernel, &s);
    return 0;
}

int emit_batchnorm(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_planes(e, n);
}

int emit_batchnorm_train(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_planes(e, n);
}

/* --- per-channel sums in double ---------------------------------------- */

/* f(loaded float vectors of the inputs listed, as doubles) -> <vw x double> */
typedef LLVMValueRef (*TermFn)(KpEmit *e, LLVMValueRef *v, LLVMValueRef const *k);

/* sum over n and the plane of channel c of f(in[0][.], in[1][.]...) */
static LLVMValueRef chan_sum(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                             int nin, const int *in, TermFn f, LLVMValueRef const *k)
{
    LLVMTypeRef dv = LLVMVectorType(LLVMDoubleTypeInContext(e->ctx), (unsigned)e->vw);
    LLVMValueRef acc = kp_alloca(e, dv, "acc");
    LLVMBuildStore(e->b, kp_fconst(dv, 0.0), acc);
    int64_t nwhole = s->hw / e->vw, rem = s->hw % e->vw;
    KpLoop ln, lv;
    kp_loop_begin(e, &ln, kp_i64(e, 0), a->n, 1, "n");
    LLVMValueRef base = mul(e, LLVMBuildNSWAdd(e->b, mul(e, ln.iv, s->c), c, ""), s->hw);
    for (int part = 0; part < 2; part++) {
        if ((part == 0 && nwhole == 0) || (part == 1 && rem == 0))
            continue;
        LLVMValueRef at;
        if (part == 0) {
            kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, nwhole * e->vw), e->vw, "v");
            at = LLVMBuildNSWAdd(e->b, base, lv.iv, "");
        } else {
            at = LLVMBuildNSWAdd(e->b, base, kp_i64(e, nwhole * e->vw), "");
        }
        LLVMValueRef v[4];
        for (int i = 0; i < nin; i++) {
            LLVMValueRef fv = part == 0 ? kp_load_vec(e, a->p[in[i]], at)
                                        : kp_load_vec_masked(e, a->p[in[i]], at, (int)rem, 0.0);
            v[i] = LLVMBuildFPExt(e->b, fv, dv, "");
        }
        LLVMValueRef t = f(e, v, k);
        if (part == 1)
            t = LLVMBuildSelect(e->b, kp_mask_first(e, (int)rem), t, kp_fconst(dv, 0.0), "");
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, LLVMBuildLoad2(e->b, dv, acc, ""), t, ""), acc);
        if (part == 0)
            kp_loop_end(e, &lv);
    }
    kp_loop_end(e, &ln);
    return kp_reduce_add(e, LLVMBuildLoad2(e->b, dv, acc, ""));
}

static LLVMValueRef dsplat(KpEmit *e, LLVMValueRef s)
{
    LLVMTypeRef dv = LLVMVectorType(LLVMDoubleTypeInContext(e->ctx), (unsigned)e->vw);
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(dv), s, kp_i32(e, 0), "");
    return LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(dv),
                                  LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
}

static LLVMValueRef t_x(KpEmit *e, LLVMValueRef *v, LLVMValueRef const *k)
{
    return v[0];
}

/* (x - mean)^2; k[0] = mean splatted */
static LLVMValueRef t_dev2(KpEmit *e, LLVMValueRef *v, LLVMValueRef const *k)
{
    LLVMValueRef dlt = LLVMBuildFSub(e->b, v[0], k[0], "");
    return LLVMBuildFMul(e->b, dlt, dlt, "");
}

/* dy * (x - mean) * invstd; v = (dy, x); k = (mean, invstd) splatted */
static LLVMValueRef t_dyxhat(KpEmit *e, LLVMValueRef *v, LLVMValueRef const *k)
{
    LLVMValueRef xh = LLVMBuildFMul(e->b, LLVMBuildFSub(e->b, v[1], k[0], ""), k[1], "");
    return LLVMBuildFMul(e->b, v[0], xh, "");
}

static LLVMValueRef dbl(KpEmit *e, LLVMValueRef f)
{
    return LLVMBuildFPExt(e->b, f, LLVMDoubleTypeInContext(e->ctx), "");
}

static LLVMValueRef flt(KpEmit *e, LLVMValueRef d)
{
    return LLVMBuildFPTrunc(e->b, d, e->f32, "");
}

static LLVMValueRef dconst(KpEmit *e, double v)
{
    return LLVMConstReal(LLVMDoubleTypeInContext(e->ctx), v);
}

/* Channel c's statistics of x (input 0) into st [2,C], the running ones
 * (inputs 1, 2) updated in place; *mean and *invstd get them as stored
 * (floats). */
static void channel_stats(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                          LLVMValueRef st, LLVMValueRef *mean_f, LLVMValueRef *invstd_f)
{
    LLVMValueRef cnt = LLVMBuildSIToFP(e->b, mul(e, a->n, s->hw), LLVMDoubleTypeInContext(e->ctx), "cnt");
    static const int in_x[1] = {0};
    LLVMValueRef mean = LLVMBuildFDiv(e->b, chan_sum(e, a, s, c, 1, in_x, t_x, NULL), cnt, "mean");
    LLVMValueRef k[1] = {dsplat(e, mean)};
    LLVMValueRef ss = chan_sum(e, a, s, c, 1, in_x, t_dev2, k);
    LLVMValueRef var = LLVMBuildFDiv(e->b, ss, cnt, "var");
    LLVMValueRef invstd = LLVMBuildFDiv(e->b, dconst(e, 1.0),
                                        sqrt_f(e, LLVMBuildFAdd(e->b, var, dconst(e, s->eps), "")), "");
    *mean_f = flt(e, mean);
    *invstd_f = flt(e, invstd);
    LLVMBuildStore(e->b, *mean_f, kp_gep(e, st, c));
    LLVMBuildStore(e->b, *invstd_f, kp_gep(e, st, LLVMBuildNSWAdd(e->b, c, kp_i64(e, s->c), "")));
    /* unbiased: ss / (cnt - 1), or the biased variance for one value */
    LLVMValueRef cm1 = LLVMBuildFSub(e->b, cnt, dconst(e, 1.0), "");
    LLVMValueRef one = LLVMBuildFCmp(e->b, LLVMRealOLE, cm1, dconst(e, 0.0), "");
    LLVMValueRef unb = LLVMBuildSelect(e->b, one, var, LLVMBuildFDiv(e->b, ss, cm1, ""), "");
    LLVMValueRef m = dconst(e, s->momentum), keep = dconst(e, 1.0 - (double)s->momentum);
    LLVMValueRef stat[2] = {mean, unb};
    for (int i = 0; i < 2; i++) {
        LLVMValueRef p = kp_gep(e, a->p[1 + i], c);
        LLVMValueRef r = dbl(e, LLVMBuildLoad2(e->b, e->f32, p, ""));
        r = LLVMBuildFAdd(e->b, LLVMBuildFMul(e->b, keep, r, ""), LLVMBuildFMul(e->b, m, stat[i], ""), "");
        LLVMBuildStore(e->b, flt(e, r), p);
    }
}

/* x, rmean, rvar -> stats [2,C] */
static void stats_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Bn *s = user;
    KpLoop lc;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "c");
    LLVMValueRef mean, invstd;
    channel_stats(e, a, s, lc.iv, a->p[3], &mean, &invstd);
    kp_loop_end(e, &lc);
}

/* x, rmean, rvar, gamma, beta -> y, aux stats: per channel, the statistics
 * and then the channel's planes normalized */
static void fwd_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Bn *s = user;
    int nin = s->node->nin;
    KpLoop lc, ln;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "c");
    LLVMValueRef mean, invstd;
    channel_stats(e, a, s, lc.iv, a->p[nin + 1], &mean, &invstd);
    LLVMValueRef gamma = ld(e, a->p[3], lc.iv), beta = ld(e, a->p[4], lc.iv);
    kp_loop_begin(e, &ln, kp_i64(e, 0), a->n, 1, "n");
    LLVMValueRef plane = LLVMBuildNSWAdd(e->b, mul(e, ln.iv, s->c), lc.iv, "");
    normalize_plane(e, a, s, mul(e, plane, s->hw), mean, invstd, 0, gamma, beta);
    kp_loop_end(e, &ln);
    kp_loop_end(e, &lc);
}

/* g[c] = sum as a float, added to what g[c] holds when accumulating */
static void store_sum(KpEmit *e, LLVMValueRef g, LLVMValueRef c, LLVMValueRef sum, int accumulate)
{
    LLVMValueRef r = flt(e, sum);
    if (accumulate)
        r = LLVMBuildFAdd(e->b, ld(e, g, c), r, "");
    LLVMBuildStore(e->b, r, kp_gep(e, g, c));
}

/* grad_x: dy, x, stats, gamma -> dx;  grad_w: dy, x, stats -> dgamma;
 * bwd: dy, x, stats, gamma -> dx, aux dgamma, dbeta (gradient slots) */
static void grad_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Bn *s = user;
    KpOp op = s->node->op;
    int nin = s->node->nin;
    LLVMValueRef st = a->p[2], out = a->p[nin];
    KpLoop lc;
    kp_loop_begin(e, &lc, a->begin, a->end, 1, "c");
    LLVMValueRef mean = ld(e, st, lc.iv);
    LLVMValueRef inv = ld(e, st, LLVMBuildNSWAdd(e->b, lc.iv, kp_i64(e, s->c), ""));
    LLVMValueRef k[2] = {dsplat(e, dbl(e, mean)), dsplat(e, dbl(e, inv))};
    static const int in_dyx[2] = {0, 1};
    LLVMValueRef sdyx = chan_sum(e, a, s, lc.iv, 2, in_dyx, t_dyxhat, k);
    if (op == KP_OP_batchnorm_grad_w) {
        store_sum(e, out, lc.iv, sdyx, e->accumulate);
    } else {
        static const int in_dy[1] = {0};
        LLVMValueRef sdy = chan_sum(e, a, s, lc.iv, 1, in_dy, t_x, NULL);
        if (op == KP_OP_batchnorm_bwd) {
            store_sum(e, a->p[nin + 1], lc.iv, sdyx, 1);
            store_sum(e, a->p[nin + 2], lc.iv, sdy, 1);
        }
        LLVMValueRef cnt = LLVMBuildSIToFP(e->b, mul(e, a->n, s->hw), LLVMDoubleTypeInContext(e->ctx), "");
        /* dx = scale (cnt dy - sdy - xhat sdyx), scale = gamma invstd / cnt */
        LLVMValueRef scale = LLVMBuildFDiv(e->b, LLVMBuildFMul(e->b, dbl(e, ld(e, a->p[3], lc.iv)),
                                                               dbl(e, inv), ""), cnt, "");
        KpLoop ln, li;
        kp_loop_begin(e, &ln, kp_i64(e, 0), a->n, 1, "n");
        LLVMValueRef base = mul(e, LLVMBuildNSWAdd(e->b, mul(e, ln.iv, s->c), lc.iv, ""), s->hw);
        kp_loop_begin(e, &li, kp_i64(e, 0), kp_i64(e, s->hw), 1, "i");
        LLVMValueRef at = LLVMBuildNSWAdd(e->b, base, li.iv, "");
        LLVMValueRef dy = dbl(e, ld(e, a->p[0], at));
        LLVMValueRef xh = LLVMBuildFMul(e->b, LLVMBuildFSub(e->b, dbl(e, ld(e, a->p[1], at)), dbl(e, mean), ""),
                                        dbl(e, inv), "");
        LLVMValueRef t = LLVMBuildFSub(e->b, LLVMBuildFMul(e->b, cnt, dy, ""), sdy, "");
        t = LLVMBuildFSub(e->b, t, LLVMBuildFMul(e->b, xh, sdyx, ""), "");
        LLVMValueRef v = flt(e, LLVMBuildFMul(e->b, scale, t, ""));
        v = kp_emit_epilogue(e, s->node, a->p, v, at, 0);
        LLVMBuildStore(e->b, v, kp_gep(e, out, at));
        kp_loop_end(e, &li);
        kp_loop_end(e, &ln);
    }
    kp_loop_end(e, &lc);
}

static int emit_channels(KpEmit *e, const KpNode *n, KpKernelGen gen)
{
    const KpValue *x = n->in[0];
    Bn s = {.c = x->dims[1], .hw = kp_value_sample_size(x) / x->dims[1], .eps = n->attr.eps,
            .momentum = n->attr.momentum, .node = n};
    int parallel = e->g->max_batch * s.c * s.hw >= 65536 && s.c > 1;
    kp_emit_parallel(e, "bn", kp_i64(e, 0), kp_i64(e, s.c), parallel, gen, &s);
    return 0;
}

int emit_batchnorm_stats(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, stats_kernel);
}

int emit_batchnorm_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, grad_kernel);
}

int emit_batchnorm_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, grad_kernel);
}

int emit_batchnorm_fwd(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, fwd_kernel);
}

int emit_batchnorm_bwd(KpEmit *e, const KpNode *n, KpDiag *d)
{
    for (int i = 0; i < n->naux; i++)
        if (n->aux[i]->storage != KP_STORE_GRAD)
            return kp_error(d, "internal error: batchnorm_bwd's output %d is no gradient slot",
                            i + 1);
    return emit_channels(e, n, grad_kernel);
}
