/*
 * emit_batchnorm.c — batch normalization over x [N,C] or [N,C,H,W] (hw
 * floats per (n, c) plane; m = N*hw values per channel), as
 * runtime/ref/batchnorm.c defines it:
 *
 *   batchnorm         y = (x - rmean[c]) * (gamma[c] / sqrt(rvar[c] + eps)) + beta[c]
 *   batchnorm_stats   stats = (mean[C], invstd[C]), invstd = 1/sqrt(biased var + eps);
 *                     rmean, rvar (inputs 1, 2) updated in place with momentum,
 *                     rvar from the unbiased variance (PyTorch)
 *   batchnorm_train   y = (x - mean) * invstd * gamma + beta
 *   batchnorm_grad_x  dx = (dy - sum dy / m - (x - mean) k) * (gamma invstd),
 *                     k = invstd^2 sum(dy (x - mean)) / m
 *   batchnorm_grad_w  dgamma[c] += sum dy xhat, xhat = (x - mean) invstd
 *   batchnorm_fwd     stats, then y, channel by channel (aux stats)
 *   batchnorm_bwd     dgamma[c] += sum dy xhat, dbeta[c] += sum dy, then dx,
 *                     channel by channel (aux dgamma, dbeta)
 *
 * A channel's sums take one sweep over its n planes, in double-precision
 * vectors (floats widened; lanes along hw, the last vector of a plane
 * masked), into two accumulators taken in turn and added at the end, then
 * lanes added by the fixed tree: one thread per channel, so nothing
 * depends on the thread count.  The statistics sum x - K and (x - K)^2
 * with K the channel's first value (a shift that keeps E[(x-K)^2] -
 * E[x-K]^2 free of cancellation unless K lies thousands of deviations from
 * the mean).  The elementwise parts (y, dx) are float vectors with the
 * node's epilogues at the store.  So batchnorm_fwd reads a channel twice
 * (sums, then y while it is in cache) and batchnorm_bwd reads dy and x
 * twice and writes dx once.
 *
 * Work items are runs of channels of at least BN_GRAIN elements at the
 * call's batch (runs of planes of at least KP_GRAIN for the two
 * elementwise ops), so a small batch runs on the calling thread.
 *
 * batchnorm_fwd and batchnorm_bwd of a max batch of at least BN_CHUNKS
 * (planes of at least BN_PHASED_HW floats, in no group) cut the samples
 * instead, as the convolutions around them do, so that each thread reads
 * the lines its own core wrote: phase 1 sums every channel over each of
 * min(n, BN_CHUNKS) fixed chunks of the samples into partials in the
 * shared scratch, and the item that completes the count adds them in
 * chunk order (so again nothing depends on the thread count) and
 * computes the statistics, or the weight gradients; phase 2, a second
 * parallel region, writes y or dx by runs of planes, that is of samples,
 * its inputs prefetched a page ahead.
 */
#include "emit.h"

/* Elements of a work item of the channel sweeps (batchnorm_stats, _fwd,
 * _bwd, _grad_w, _grad_x), smaller than KP_GRAIN: their sums run in
 * double, several times the time per element of the memory-bound loops
 * KP_GRAIN is sized for.  resnet_cifar's 16-channel 32x32 layers at batch
 * 1 (16384 elements) now fork into 4 items; its batch-1 train_step went
 * from 520-526 to 486-496 us on 2 threads (with BN_GRAIN set to 8192:
 * 499-504, to 2048: 493-495; three alternated rounds, docs/passes-fusion.md). */
enum { BN_GRAIN = KP_GRAIN / 8 };

typedef struct Bn {
    int64_t c, hw;
    float eps, momentum;
    const KpNode *node;
} Bn;

static LLVMValueRef mul(KpEmit *e, LLVMValueRef a, int64_t k)
{
    return LLVMBuildNSWMul(e->b, a, kp_i64(e, k), "");
}

static LLVMValueRef add(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

static LLVMValueRef ld(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildLoad2(e->b, e->f32, kp_gep(e, p, i), "");
}

static LLVMTypeRef f64(KpEmit *e)
{
    return LLVMDoubleTypeInContext(e->ctx);
}

static LLVMValueRef dbl(KpEmit *e, LLVMValueRef f)
{
    return LLVMBuildFPExt(e->b, f, f64(e), "");
}

static LLVMValueRef flt(KpEmit *e, LLVMValueRef d)
{
    return LLVMBuildFPTrunc(e->b, d, e->f32, "");
}

static LLVMValueRef dconst(KpEmit *e, double v)
{
    return LLVMConstReal(f64(e), v);
}

static LLVMValueRef sqrt_of(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    return kp_intrinsic(e, "llvm.sqrt", &ty, 1, &x, 1);
}

/* --- sweeps over a channel's planes -------------------------------------- */

/* Called for the floats at element at of a plane: a whole vector (lanes
 * 0) or the first `lanes` of one; acc (0 or 1) says which accumulator. */
typedef void (*VecFn)(KpEmit *e, const KpKernelArgs *a, void *ctx, LLVMValueRef at, int lanes,
                      int acc);

/* f over channel c's planes of samples [n0, n1), vector by vector: within a plane, whole
 * vectors two at a time (accumulators 0 and 1), then the odd one (0),
 * then the masked rest (1).  The inputs f reads, p[0] and (two) p[1],
 * are prefetched a plane ahead: a plane is a short stream (4 KiB in
 * resnet_cifar), often a page of its own, where the hardware prefetcher
 * stops. */
static void channel_sweep(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                          LLVMValueRef n0, LLVMValueRef n1, VecFn f, void *ctx, int inputs)
{
    int64_t whole = s->hw / e->vw, rem = s->hw % e->vw;
    KpLoop ln, lv;
    kp_loop_begin(e, &ln, n0, n1, 1, "n");
    LLVMValueRef base = mul(e, add(e, mul(e, ln.iv, s->c), c), s->hw);
    if (whole >= 2) {
        kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, whole / 2 * 2 * e->vw), 2 * e->vw, "v");
        LLVMValueRef at = add(e, base, lv.iv);
        for (int i = 0; i < inputs; i++)
            for (int64_t l = 0; l < 2 * e->vw; l += 16)
                kp_prefetch(e, a->p[i], add(e, at, kp_i64(e, s->c * s->hw + l)));
        f(e, a, ctx, at, 0, 0);
        f(e, a, ctx, add(e, at, kp_i64(e, e->vw)), 0, 1);
        kp_loop_end(e, &lv);
    }
    if (whole % 2)
        f(e, a, ctx, add(e, base, kp_i64(e, (whole - 1) * e->vw)), 0, 0);
    if (rem)
        f(e, a, ctx, add(e, base, kp_i64(e, whole * e->vw)), (int)rem, 1);
    kp_loop_end(e, &ln);
}

/* Floats at at of p, as a vector: whole or the first lanes (others 0). */
static LLVMValueRef load_at(KpEmit *e, LLVMValueRef p, LLVMValueRef at, int lanes)
{
    return lanes ? kp_load_vec_masked(e, p, at, lanes, 0.0) : kp_load_vec(e, p, at);
}

static void store_at(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef at, int lanes)
{
    if (lanes)
        kp_store_vec_masked(e, v, p, at, lanes);
    else
        kp_store_vec(e, v, p, at);
}

/* Two sums per channel in <vw x double> accumulators. */
typedef struct Sums {
    LLVMTypeRef dv;
    LLVMValueRef acc[2][2];     /* [accumulator][sum] */
    LLVMValueRef k;             /* the shift K (stats) or the mean (gradient), splatted double */
    int grad;                   /* sums of dy and dy (x - mean); else of x - K and (x - K)^2 */
} Sums;

static LLVMValueRef dsplat(KpEmit *e, LLVMTypeRef dv, LLVMValueRef s)
{
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(dv), s, kp_i32(e, 0), "");
    return LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(dv),
                                  LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
}

static void sum_terms(KpEmit *e, const KpKernelArgs *a, void *ctx, LLVMValueRef at, int lanes,
                      int acc)
{
    Sums *u = ctx;
    LLVMValueRef x = LLVMBuildFPExt(e->b, load_at(e, a->p[u->grad ? 1 : 0], at, lanes), u->dv, "");
    LLVMValueRef d = LLVMBuildFSub(e->b, x, u->k, "");
    LLVMValueRef t[2];
    if (u->grad) {
        t[0] = LLVMBuildFPExt(e->b, load_at(e, a->p[0], at, lanes), u->dv, "dy");
        t[1] = LLVMBuildFMul(e->b, t[0], d, "");
    } else {
        t[0] = d;
        t[1] = LLVMBuildFMul(e->b, d, d, "");
    }
    for (int i = 0; i < 2; i++) {
        if (lanes)   /* the lanes past the plane read 0, but x - K is not 0 */
            t[i] = LLVMBuildSelect(e->b, kp_mask_first(e, lanes), t[i], LLVMConstNull(u->dv), "");
        LLVMValueRef old = LLVMBuildLoad2(e->b, u->dv, u->acc[acc][i], "");
        LLVMBuildStore(e->b, LLVMBuildFAdd(e->b, old, t[i], ""), u->acc[acc][i]);
    }
}

/* The two sums of channel c over samples [n0, n1) around k (a double),
 * each reduced to a double. */
static void channel_sums(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                         LLVMValueRef n0, LLVMValueRef n1, int grad, LLVMValueRef k, LLVMValueRef *sum)
{
    Sums u = {.dv = LLVMVectorType(f64(e), (unsigned)e->vw), .grad = grad};
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
            u.acc[j][i] = kp_alloca(e, u.dv, "acc");
            LLVMBuildStore(e->b, LLVMConstNull(u.dv), u.acc[j][i]);
        }
    u.k = dsplat(e, u.dv, k);
    channel_sweep(e, a, s, c, n0, n1, sum_terms, &u, grad ? 2 : 1);
    for (int i = 0; i < 2; i++) {
        LLVMValueRef s0 = LLVMBuildLoad2(e->b, u.dv, u.acc[0][i], "");
        LLVMValueRef s1 = LLVMBuildLoad2(e->b, u.dv, u.acc[1][i], "");
        sum[i] = kp_reduce_add(e, LLVMBuildFAdd(e->b, s0, s1, ""));
    }
}

/* --- the forward --------------------------------------------------------------- */

/* y = ((x - mean) * invstd) * gamma + beta, or with rstat (inference)
 * (x - mean) * invstd + beta, invstd then gamma / sqrt(rvar + eps) */
typedef struct Norm {
    LLVMValueRef mean, invstd, gamma, beta;     /* splatted floats; gamma NULL: folded */
    const Bn *s;
} Norm;

static void norm_vec(KpEmit *e, const KpKernelArgs *a, void *ctx, LLVMValueRef at, int lanes,
                     int acc)
{
    const Norm *z = ctx;
    LLVMValueRef v = LLVMBuildFMul(e->b, LLVMBuildFSub(e->b, load_at(e, a->p[0], at, lanes), z->mean, ""),
                                   z->invstd, "");
    if (z->gamma)
        v = LLVMBuildFMul(e->b, v, z->gamma, "");
    v = LLVMBuildFAdd(e->b, v, z->beta, "");
    v = kp_emit_epilogue(e, z->s->node, a->p, v, at, lanes);
    store_at(e, v, a->p[z->s->node->nin], at, lanes);
}

/* f over one plane from base (hw floats): whole vectors, then the masked
 * rest.  Phase 2 prefetches its inputs KP_PREFETCH_PAGE_AHEAD floats on,
 * the next page of a run of planes: resnet_cifar's step at batch 64 on two
 * threads, 2-core Intel Xeon, 0.978-0.996x the time in four alternated
 * `bench/train_steps --ab` runs. */
static void plane_sweep(KpEmit *e, const KpKernelArgs *a, int64_t hw, LLVMValueRef base, VecFn f,
                        void *ctx, int prefetch /* inputs p[0..prefetch) a page on */)
{
    int64_t whole = hw - hw % e->vw;
    if (whole > 0) {
        KpLoop lv;
        kp_loop_begin(e, &lv, kp_i64(e, 0), kp_i64(e, whole), e->vw, "v");
        for (int i = 0; i < prefetch; i++)
            kp_prefetch(e, a->p[i], kp_iaddc(e, add(e, base, lv.iv), KP_PREFETCH_PAGE_AHEAD));
        f(e, a, ctx, add(e, base, lv.iv), 0, 0);
        kp_loop_end(e, &lv);
    }
    if (hw % e->vw)
        f(e, a, ctx, add(e, base, kp_i64(e, whole)), (int)(hw % e->vw), 0);
}

/* channel c's scale and shift, from the node's inputs */
static Norm channel_norm(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c)
{
    Norm z = {.s = s};
    if (s->node->op == KP_OP_batchnorm) {     /* x, gamma, beta, rmean, rvar */
        LLVMValueRef den = sqrt_of(e, LLVMBuildFAdd(e->b, ld(e, a->p[4], c), kp_fconst(e->f32, s->eps), ""));
        z.mean = ld(e, a->p[3], c);
        z.invstd = LLVMBuildFDiv(e->b, ld(e, a->p[1], c), den, "scale");
        z.beta = ld(e, a->p[2], c);
    } else {                                  /* x, stats, gamma, beta */
        z.mean = ld(e, a->p[1], c);
        z.invstd = ld(e, a->p[1], add(e, c, kp_i64(e, s->c)));
        z.gamma = kp_splat(e, ld(e, a->p[2], c));
        z.beta = ld(e, a->p[3], c);
    }
    z.mean = kp_splat(e, z.mean), z.invstd = kp_splat(e, z.invstd), z.beta = kp_splat(e, z.beta);
    return z;
}

static void plane_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Bn *s = user;
    KpLoop lp;
    kp_loop_begin(e, &lp, a->begin, a->end, 1, "plane");
    LLVMValueRef c = LLVMBuildSRem(e->b, lp.iv, kp_i64(e, s->c), "c");
    Norm z = channel_norm(e, a, s, c);
    plane_sweep(e, a, s->hw, mul(e, lp.iv, s->hw), norm_vec, &z, 0);
    kp_loop_end(e, &lp);
}

static Bn bn_of(const KpNode *n)
{
    const KpValue *x = n->in[0];
    Bn s = {.c = x->dims[1], .hw = kp_value_sample_size(x) / x->dims[1], .eps = n->attr.eps,
            .momentum = n->attr.momentum, .node = n};
    return s;
}

static int emit_planes(KpEmit *e, const KpNode *n)
{
    Bn s = bn_of(n);
    kp_emit_parallel_units(e, "bn", s.c, 2 * s.hw, plane_kernel, &s);
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

/* The shift K of channel c's statistics: its first value, as a double. */
static LLVMValueRef stats_shift(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c)
{
    return dbl(e, ld(e, a->p[0], mul(e, c, s->hw)));
}

/* Channel c's statistics from its sums of x - k and (x - k)^2 over the
 * batch (x input 0) into st [2,C], the running ones (inputs 1, 2) updated
 * in place; returns the normalization they give. */
static Norm stats_of_sums(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                          LLVMValueRef k, const LLVMValueRef *sum, LLVMValueRef st)
{
    LLVMValueRef cnt = LLVMBuildSIToFP(e->b, mul(e, a->n, s->hw), f64(e), "cnt");
    LLVMValueRef dmean = LLVMBuildFDiv(e->b, sum[0], cnt, "");
    LLVMValueRef mean = LLVMBuildFAdd(e->b, k, dmean, "mean");
    /* sum (x - mean)^2 = sum (x - K)^2 - (sum (x - K))^2 / cnt, at least 0 */
    LLVMValueRef ss = LLVMBuildFSub(e->b, sum[1], LLVMBuildFMul(e->b, sum[0], dmean, ""), "");
    ss = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, ss, dconst(e, 0.0), ""), ss,
                         dconst(e, 0.0), "ss");
    LLVMValueRef var = LLVMBuildFDiv(e->b, ss, cnt, "var");
    LLVMValueRef invstd = LLVMBuildFDiv(e->b, dconst(e, 1.0),
                                        sqrt_of(e, LLVMBuildFAdd(e->b, var, dconst(e, s->eps), "")), "");
    Norm z = {.mean = flt(e, mean), .invstd = flt(e, invstd), .s = s};
    LLVMBuildStore(e->b, z.mean, kp_gep(e, st, c));
    LLVMBuildStore(e->b, z.invstd, kp_gep(e, st, add(e, c, kp_i64(e, s->c))));
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
    z.mean = kp_splat(e, z.mean), z.invstd = kp_splat(e, z.invstd);
    return z;
}

/* Channel c's statistics of the whole batch into st (stats_of_sums). */
static Norm channel_stats(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                          LLVMValueRef st)
{
    LLVMValueRef k = stats_shift(e, a, s, c), sum[2];
    channel_sums(e, a, s, c, kp_i64(e, 0), a->n, 0, k, sum);
    return stats_of_sums(e, a, s, c, k, sum, st);
}

/* channels per work item: at least BN_GRAIN elements at batch n */
static LLVMValueRef channels_per_item(KpEmit *e, const Bn *s, LLVMValueRef n)
{
    LLVMValueRef plane = mul(e, n, s->hw);
    return LLVMBuildSDiv(e->b, add(e, plane, kp_i64(e, BN_GRAIN - 1)), plane, "per");
}

typedef void (*ChannelFn)(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c);

static void each_channel(KpEmit *e, const KpKernelArgs *a, const Bn *s, ChannelFn f)
{
    LLVMValueRef per = channels_per_item(e, s, a->n);
    LLVMValueRef end = kp_min_i64(e, LLVMBuildNSWMul(e->b, a->end, per, ""), kp_i64(e, s->c));
    KpLoop lc;
    kp_loop_begin(e, &lc, LLVMBuildNSWMul(e->b, a->begin, per, ""), end, 1, "c");
    f(e, a, s, lc.iv);
    kp_loop_end(e, &lc);
}

/* x, rmean, rvar -> stats [2,C] */
static void stats_channel(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c)
{
    channel_stats(e, a, s, c, a->p[3]);
}

/* x, rmean, rvar, gamma, beta -> y, aux stats: the statistics, then the
 * channel's planes normalized */
static void fwd_channel(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c)
{
    Norm z = channel_stats(e, a, s, c, a->p[s->node->nin + 1]);
    z.gamma = kp_splat(e, ld(e, a->p[3], c));
    z.beta = kp_splat(e, ld(e, a->p[4], c));
    channel_sweep(e, a, s, c, kp_i64(e, 0), a->n, norm_vec, &z, 0);
}

/* --- the backward --------------------------------------------------------------- */

/* dx = ((dy - mdy) - (x - mean) k) * scale in double (as the reference:
 * float32 here loses the cancellation of dy against its mean), mean a
 * float, the others doubles, all splatted */
typedef struct Dx {
    LLVMTypeRef dv;
    LLVMValueRef mdy, mean, k, scale;
    const Bn *s;
} Dx;

static void dx_vec(KpEmit *e, const KpKernelArgs *a, void *ctx, LLVMValueRef at, int lanes, int acc)
{
    const Dx *z = ctx;
    LLVMValueRef dy = LLVMBuildFPExt(e->b, load_at(e, a->p[0], at, lanes), z->dv, "");
    LLVMValueRef x = LLVMBuildFPExt(e->b, load_at(e, a->p[1], at, lanes), z->dv, "");
    LLVMValueRef xk = LLVMBuildFMul(e->b, LLVMBuildFSub(e->b, x, z->mean, ""), z->k, "");
    LLVMValueRef v = LLVMBuildFSub(e->b, LLVMBuildFSub(e->b, dy, z->mdy, ""), xk, "");
    v = LLVMBuildFPTrunc(e->b, LLVMBuildFMul(e->b, v, z->scale, ""), e->vec, "");
    v = kp_emit_epilogue(e, z->s->node, a->p, v, at, lanes);
    store_at(e, v, a->p[z->s->node->nin], at, lanes);
}

/* g[c] = sum as a float, added to what g[c] holds when accumulating */
static void store_sum(KpEmit *e, LLVMValueRef g, LLVMValueRef c, LLVMValueRef sum, int accumulate)
{
    LLVMValueRef r = flt(e, sum);
    if (accumulate)
        r = LLVMBuildFAdd(e->b, ld(e, g, c), r, "");
    LLVMBuildStore(e->b, r, kp_gep(e, g, c));
}

/* channel c's mean and invstd (floats) from stats, pointer 2 of the gradients */
static void grad_stats(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c, LLVMValueRef *mean,
                       LLVMValueRef *inv)
{
    *mean = ld(e, a->p[2], c);
    *inv = ld(e, a->p[2], add(e, c, kp_i64(e, s->c)));
}

/* From channel c's sums of dy and dy (x - mean) over the batch: sum dy
 * xhat (returned), both stored where the op keeps its weight gradients
 * (grad_w: dgamma; bwd: aux dgamma, dbeta, added to). */
static LLVMValueRef grad_w_of_sums(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c,
                                   const LLVMValueRef *sum, LLVMValueRef inv)
{
    int nin = s->node->nin;
    LLVMValueRef sdyx = LLVMBuildFMul(e->b, sum[1], dbl(e, inv), "sdyx");
    if (s->node->op == KP_OP_batchnorm_grad_w)
        store_sum(e, a->p[nin], c, sdyx, e->accumulate);
    if (s->node->op == KP_OP_batchnorm_bwd) {
        store_sum(e, a->p[nin + 1], c, sdyx, 1);
        store_sum(e, a->p[nin + 2], c, sum[0], 1);
    }
    return sdyx;
}

/* doubles a channel's dx takes from its sums (dx_coeffs) */
enum { DX_COEFFS = 3 };

/* dx's coefficients of channel c as doubles, mdy, k and scale, from sum dy
 * and sum dy xhat */
static void dx_coeffs(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c, LLVMValueRef inv,
                      LLVMValueRef sdy, LLVMValueRef sdyx, LLVMValueRef coef[DX_COEFFS])
{
    LLVMValueRef cnt = LLVMBuildSIToFP(e->b, mul(e, a->n, s->hw), f64(e), "cnt");
    coef[0] = LLVMBuildFDiv(e->b, sdy, cnt, "mdy");
    coef[1] = LLVMBuildFDiv(e->b, LLVMBuildFMul(e->b, sdyx, dbl(e, inv), ""), cnt, "k");
    coef[2] = LLVMBuildFMul(e->b, dbl(e, ld(e, a->p[3], c)), dbl(e, inv), "scale");
}

/* the coefficients and the channel's mean (a float), splatted */
static Dx dx_splat(KpEmit *e, const Bn *s, LLVMValueRef mean, const LLVMValueRef coef[DX_COEFFS])
{
    Dx z = {.dv = LLVMVectorType(f64(e), (unsigned)e->vw), .s = s};
    z.mean = dsplat(e, z.dv, dbl(e, mean));
    z.mdy = dsplat(e, z.dv, coef[0]);
    z.k = dsplat(e, z.dv, coef[1]);
    z.scale = dsplat(e, z.dv, coef[2]);
    return z;
}

/* grad_x: dy, x, stats, gamma -> dx;  grad_w: dy, x, stats -> dgamma;
 * bwd: dy, x, stats, gamma -> dx, aux dgamma, dbeta (gradient slots) */
static void grad_channel(KpEmit *e, const KpKernelArgs *a, const Bn *s, LLVMValueRef c)
{
    LLVMValueRef mean, inv, sum[2];
    grad_stats(e, a, s, c, &mean, &inv);
    channel_sums(e, a, s, c, kp_i64(e, 0), a->n, 1, dbl(e, mean), sum);
    LLVMValueRef sdyx = grad_w_of_sums(e, a, s, c, sum, inv);
    if (s->node->op == KP_OP_batchnorm_grad_w)
        return;
    LLVMValueRef coef[DX_COEFFS];
    dx_coeffs(e, a, s, c, inv, sum[0], sdyx, coef);
    Dx z = dx_splat(e, s, mean, coef);
    channel_sweep(e, a, s, c, kp_i64(e, 0), a->n, dx_vec, &z, 0);
}

typedef struct ChannelJob {
    Bn s;
    ChannelFn f;
} ChannelJob;

static void channel_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const ChannelJob *j = user;
    each_channel(e, a, &j->s, j->f);
}

static int emit_channels(KpEmit *e, const KpNode *n, ChannelFn f)
{
    ChannelJob j = {bn_of(n), f};
    LLVMValueRef per = channels_per_item(e, &j.s, e->n);
    LLVMValueRef items = LLVMBuildSDiv(e->b, add(e, kp_i64(e, j.s.c), LLVMBuildNSWSub(e->b, per, kp_i64(e, 1), "")),
                                       per, "items");
    int parallel = e->g->max_batch * j.s.hw * j.s.c >= 2 * BN_GRAIN && j.s.c > 1;
    kp_emit_parallel(e, "bn", kp_i64(e, 0), items, parallel, channel_kernel, &j);
    return 0;
}

/* --- by chunks of the samples ------------------------------------------------ */

/* batchnorm_fwd and batchnorm_bwd of planes of at least BN_PHASED_HW
 * floats, in no group, run in two phases over min(n, BN_CHUNKS) fixed
 * chunks of the samples rather than one over runs of channels. */
enum { BN_CHUNKS = 4, BN_PHASED_HW = 16 };

typedef struct Phased {
    Bn s;
    int64_t at;     /* shared scratch: partial sums [BN_CHUNKS][C][2], then dx's
                       coefficients [C][DX_COEFFS] (doubles; batchnorm_bwd), then the
                       counter of items done */
} Phased;

static LLVMValueRef dgep(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildInBoundsGEP2(e->b, f64(e), p, &i, 1, "");
}

/* Phase 1's chunks at batch n, the channels of an item and the runs of
 * channels a chunk is cut into: about BN_CHUNKS items in all (each one
 * counts itself done on a counter both cores write), but at least
 * BN_GRAIN elements each */
static void phase_items(KpEmit *e, const Bn *s, LLVMValueRef n, LLVMValueRef *chunks, LLVMValueRef *per,
                        LLVMValueRef *runs)
{
    *chunks = kp_min_i64(e, n, kp_i64(e, BN_CHUNKS));
    LLVMValueRef want = LLVMBuildSDiv(e->b, add(e, *chunks, kp_i64(e, BN_CHUNKS - 1)), *chunks, "");
    LLVMValueRef most = LLVMBuildSDiv(e->b, add(e, n, kp_i64(e, BN_CHUNKS - 1)), kp_i64(e, BN_CHUNKS), "");
    LLVMValueRef plane = mul(e, most, s->hw);
    LLVMValueRef grain = LLVMBuildSDiv(e->b, add(e, plane, kp_i64(e, BN_GRAIN - 1)), plane, "");
    *per = LLVMBuildSDiv(e->b, add(e, kp_i64(e, s->c - 1), want), want, "");
    *per = LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSGT, grain, *per, ""), grain, *per, "per");
    *runs = LLVMBuildSDiv(e->b, add(e, kp_i64(e, s->c - 1), *per), *per, "runs");
}

/* Phase 1, items [begin, end) of (chunk, run of channels), chunk-major:
 * the two sums of each channel over the chunk's samples into its
 * partials; the item that completes the count adds them in chunk order
 * and computes what phase 2 reads: the statistics (batchnorm_fwd: stats,
 * running stats) or the weight gradients and dx's coefficients
 * (batchnorm_bwd). */
static void phase_sums_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Phased *ph = user;
    const Bn *s = &ph->s;
    int grad = s->node->op == KP_OP_batchnorm_bwd;
    LLVMValueRef part = kp_scratch_shared_at(e, ph->at);
    LLVMValueRef total = dgep(e, part, kp_i64(e, BN_CHUNKS * s->c * 2));
    LLVMValueRef counter = dgep(e, part, kp_i64(e, (BN_CHUNKS * 2 + DX_COEFFS) * s->c));
    LLVMValueRef chunks, per, runs, g0, g1, sum[2], mean, inv, k;
    phase_items(e, s, a->n, &chunks, &per, &runs);
    KpLoop li, lc, lk;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef chunk = LLVMBuildSDiv(e->b, li.iv, runs, "chunk");
    LLVMValueRef c0 = LLVMBuildNSWMul(e->b, LLVMBuildSRem(e->b, li.iv, runs, ""), per, "c0");
    kp_chunk_samples(e, a->n, chunks, chunk, &g0, &g1);
    kp_loop_begin(e, &lc, c0, kp_min_i64(e, add(e, c0, per), kp_i64(e, s->c)), 1, "c");
    if (grad) {
        grad_stats(e, a, s, lc.iv, &mean, &inv);
        k = dbl(e, mean);
    } else {
        k = stats_shift(e, a, s, lc.iv);
    }
    channel_sums(e, a, s, lc.iv, g0, g1, grad, k, sum);
    LLVMValueRef at = mul(e, add(e, LLVMBuildNSWMul(e->b, chunk, kp_i64(e, s->c), ""), lc.iv), 2);
    for (int i = 0; i < 2; i++)
        LLVMBuildStore(e->b, sum[i], dgep(e, part, add(e, at, kp_i64(e, i))));
    kp_loop_end(e, &lc);

    LLVMBasicBlockRef join = kp_last_begin(e, counter, LLVMBuildNSWMul(e->b, chunks, runs, ""));
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, s->c), 1, "c");
    LLVMValueRef acc = kp_alloca(e, LLVMArrayType(f64(e), 2), "tot");
    for (int i = 0; i < 2; i++)
        LLVMBuildStore(e->b, dconst(e, 0.0), dgep(e, acc, kp_i64(e, i)));
    kp_loop_begin(e, &lk, kp_i64(e, 0), chunks, 1, "k");
    for (int i = 0; i < 2; i++) {
        LLVMValueRef w = add(e, mul(e, add(e, mul(e, lk.iv, s->c), lc.iv), 2), kp_i64(e, i));
        LLVMValueRef t = LLVMBuildLoad2(e->b, f64(e), dgep(e, acc, kp_i64(e, i)), "");
        t = LLVMBuildFAdd(e->b, t, LLVMBuildLoad2(e->b, f64(e), dgep(e, part, w), ""), "");
        LLVMBuildStore(e->b, t, dgep(e, acc, kp_i64(e, i)));
    }
    kp_loop_end(e, &lk);
    for (int i = 0; i < 2; i++)
        sum[i] = LLVMBuildLoad2(e->b, f64(e), dgep(e, acc, kp_i64(e, i)), "");
    if (grad) {
        grad_stats(e, a, s, lc.iv, &mean, &inv);
        LLVMValueRef coef[DX_COEFFS], at3 = mul(e, lc.iv, DX_COEFFS);
        dx_coeffs(e, a, s, lc.iv, inv, sum[0], grad_w_of_sums(e, a, s, lc.iv, sum, inv), coef);
        for (int i = 0; i < DX_COEFFS; i++)
            LLVMBuildStore(e->b, coef[i], dgep(e, total, add(e, at3, kp_i64(e, i))));
    } else {
        stats_of_sums(e, a, s, lc.iv, stats_shift(e, a, s, lc.iv), sum, a->p[s->node->nin + 1]);
    }
    kp_loop_end(e, &lc);
    kp_last_end(e, counter, join);
    kp_loop_end(e, &li);
}

/* Phase 2, planes [begin, end) (sample-major, so a run of samples): y
 * from the statistics, or dx from its coefficients */
static void phase_planes_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Phased *ph = user;
    const Bn *s = &ph->s;
    LLVMValueRef total = dgep(e, kp_scratch_shared_at(e, ph->at), kp_i64(e, BN_CHUNKS * s->c * 2));
    KpLoop lp;
    kp_loop_begin(e, &lp, a->begin, a->end, 1, "plane");
    LLVMValueRef c = LLVMBuildSRem(e->b, lp.iv, kp_i64(e, s->c), "c");
    LLVMValueRef base = mul(e, lp.iv, s->hw);
    if (s->node->op == KP_OP_batchnorm_bwd) {
        LLVMValueRef coef[DX_COEFFS], at = mul(e, c, DX_COEFFS);
        for (int i = 0; i < DX_COEFFS; i++)
            coef[i] = LLVMBuildLoad2(e->b, f64(e), dgep(e, total, add(e, at, kp_i64(e, i))), "");
        Dx z = dx_splat(e, s, ld(e, a->p[2], c), coef);
        plane_sweep(e, a, s->hw, base, dx_vec, &z, 2);
    } else {                                  /* x, rmean, rvar, gamma, beta -> y, aux stats */
        LLVMValueRef st = a->p[s->node->nin + 1];
        Norm z = {.s = s};
        z.mean = kp_splat(e, ld(e, st, c));
        z.invstd = kp_splat(e, ld(e, st, add(e, c, kp_i64(e, s->c))));
        z.gamma = kp_splat(e, ld(e, a->p[3], c));
        z.beta = kp_splat(e, ld(e, a->p[4], c));
        plane_sweep(e, a, s->hw, base, norm_vec, &z, 1);
    }
    kp_loop_end(e, &lp);
}

/* batchnorm_fwd / _bwd by chunks of the samples, or by channels with f:
 * for planes under BN_PHASED_HW floats, a max batch under BN_CHUNKS (at
 * batch 1 the channels' one region of sums and outputs beats two
 * regions: resnet_cifar's train_step 3-5% faster) and in a group (whose
 * members have one region each) */
static int emit_phased(KpEmit *e, const KpNode *n, ChannelFn f)
{
    Phased ph = {.s = bn_of(n)};
    const Bn *s = &ph.s;
    if (e->share_t || s->hw < BN_PHASED_HW || e->g->max_batch < BN_CHUNKS)
        return emit_channels(e, n, f);
    ph.at = kp_scratch_shared_take(e, "bn_chunks", 8 * (BN_CHUNKS * 2 + DX_COEFFS) * s->c + 8, s->c);
    LLVMValueRef chunks, per, runs;
    phase_items(e, s, e->n, &chunks, &per, &runs);
    int parallel = e->g->max_batch * s->hw * s->c >= 2 * BN_GRAIN;
    kp_emit_parallel(e, "bn.sums", kp_i64(e, 0), LLVMBuildNSWMul(e->b, chunks, runs, "items"), parallel,
                     phase_sums_kernel, &ph);
    kp_emit_parallel_units(e, "bn.planes", s->c, (n->op == KP_OP_batchnorm_bwd ? 3 : 2) * s->hw,
                           phase_planes_kernel, &ph);
    return 0;
}

int emit_batchnorm_stats(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, stats_channel);
}

int emit_batchnorm_grad_x(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, grad_channel);
}

int emit_batchnorm_grad_w(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_channels(e, n, grad_channel);
}

int emit_batchnorm_fwd(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_phased(e, n, fwd_channel);
}

int emit_batchnorm_bwd(KpEmit *e, const KpNode *n, KpDiag *d)
{
    for (int i = 0; i < n->naux; i++)
        if (n->aux[i]->storage != KP_STORE_GRAD)
            return kp_error(d, "internal error: batchnorm_bwd's output %d is no gradient slot",
                            i + 1);
    return emit_phased(e, n, grad_channel);
}
