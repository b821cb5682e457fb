/*
 * emit_optim.c — the optimizer steps: one loop over the trainable floats
 * [0, trainable_floats) of the parameter slab, its gradients and the
 * optimizer state (karp_abi.h's slabs), with runtime/ref/optim.c's
 * arithmetic: float, the operations in the order written there, so the
 * step is the reference's bit for bit.
 *
 *   sgd:      theta -= lr (g + wd theta)
 *   momentum: v = beta v + (1-beta) g;  theta -= lr v            (v = opt[0, P))
 *   adam:     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g g
 *             theta -= (s m) / (sqrt(v) / c + eps)                (m = opt[0, P), v = opt[P, 2P))
 *             s = (float)(lr / (1 - b1^t)), c = (float)sqrt(1 - b2^t), in double,
 *             once per kernel call (libm's pow there; none in the loop)
 *             sqrt(v) / c computed without a division but with the division's
 *             float (below): one division per float instead of two — on the Zen 4
 *             where this was first measured the step was bound by the divider at
 *             batch 1 (on the Zen 5, by moving its slabs to and from L3, and by
 *             the instructions around them: docs/training.md)
 * P = param_floats.  The node function is (params, grads, opt, step):
 * see emit.h.  Chunks of CHUNK floats in parallel from PAR_MIN_ITEMS chunks
 * on (a few chunks cost less on one core than a fork to a core that shares
 * no cache with it: docs/training.md), whole vectors then a scalar tail;
 * every float is updated alone, so the thread count does not matter.
 * Each gradient is zeroed right after the step reads it (the entries'
 * contract: gradients are zero after an update), which saves the entry a
 * second pass over the gradient slab.
 *
 * Why the float a / c comes out of y = RN(1/c) (a float, once per call),
 * q0 = RN(a y) and q = RN(q0 + RN(a - c q0) y), the last two by fused
 * multiply-adds.  a = sqrt(v) is zero, infinite, NaN or a normal float of
 * at least 2^-75, and c = RN(sqrt(1 - b2^t)) lies in [2^-12, 1] (b2 is a
 * float below 1), so nothing below underflows or overflows and only the
 * significands matter: take a and c in [1, 2).  y is within 2^-25 of 1/c,
 * so a y is within a 2^-25 (< 2^-24) of a / c.  Where a / c >= 1 an ulp of
 * it is 2^-23, and q0, within 2^-24 of a y, is a faithful quotient (one of
 * the two floats around a / c).  From a faithful quotient and a reciprocal
 * within 2^-24 (relative) of 1/c, the residual a - c q0 is exact and
 * q0 + residual y rounds to RN(a / c) (Markstein's theorem; Muller et
 * al., Handbook of Floating-Point Arithmetic, on division by fused
 * multiply-adds).  Where a / c < 1 (a < c) the ulp is 2^-24 and q0 can
 * miss by more than an ulp: only where a |1/c - y| >= 2^-25.  Those pairs,
 * 2^-25 / |1/c - y| <= a < c for every significand of c (and every a for
 * the 64 largest c, whose a / c lie near 1/2), were all tried
 * (bench/div_by_c.c, 8.0 * 10^12 pairs): q was a / c in every one.
 * Infinite a makes the residual NaN, so a NaN result is replaced by q0,
 * which is a / c there (infinity, or NaN for NaN a).  So does c = 0, where
 * a b2 given just below 1 rounds to the float 1: y is infinite and q0 is
 * the division's infinity (NaN for a = 0).  Three vector
 * operations and a blend where the double product took eight (two
 * conversions each way): 5-15% of fashion_cnn's batch-1 train_step on
 * the Zen 5 (docs/training.md).  test_backend_train test_division_by_c
 * checks it over whole binades of a for chosen c and on random pairs.
 *
 * Folded updates (train_step of a model compiled for batch 1, see
 * backend/fold_update.c): a dense layer's weight gradient there is the
 * outer product dy x, which dense_grad_w writes into the gradient slab
 * and the update reads back — four passes over a slab as large as the
 * weight, which at fashion_cnn's 128 x 9216 comes from L3.  The folded
 * kernel computes each element of dy x where the step needs it, with
 * dense_grad_w's one fused multiply-add from zero, so the gradient slab is
 * never touched (it stays zero, as the contract wants) and the parameters
 * are the unfolded step's bit for bit:
 *     fold(dy, x, params, opt, step)     rows of W in parallel
 * and the update's lesser function, which train_step calls instead of the
 * whole one, leaves the folded ranges out (e->update_rest).
 */
#include "emit.h"

enum { CHUNK = 8192, PAR_MIN_ITEMS = 4 };

typedef struct Optim Optim;
/* The step of the floats at i (a vector when vec) of a parameter range:
 * theta at th[i], its moments at m[i] and v[i] (NULL where the optimizer
 * keeps none), its gradient g (loaded or computed by the caller). */
typedef struct StepAt {
    LLVMValueRef th, m, v, i, g;
} StepAt;
typedef void (*StepFn)(KpEmit *e, const Optim *o, const StepAt *at, int vec);

struct Optim {
    StepFn step;
    KpOptimHyper h;
    int64_t count;                  /* trainable floats */
    int64_t pfloats;                /* the slab: v of adam at opt + pfloats */
    int64_t from, len;              /* the range [from, from + len) a region updates */
    LLVMValueRef s, c, y;           /* adam, set in the kernel's prologue: s, c and
                                       RN(1 / c) */
};

static LLVMValueRef ld(KpEmit *e, LLVMValueRef p, LLVMValueRef i, int vec)
{
    return vec ? kp_load_vec(e, p, i) : LLVMBuildLoad2(e->b, e->f32, kp_gep(e, p, i), "");
}

static void st(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, int vec)
{
    if (vec)
        kp_store_vec(e, v, p, i);
    else
        LLVMBuildStore(e->b, v, kp_gep(e, p, i));
}

static LLVMValueRef c(KpEmit *e, double v, int vec)
{
    return kp_fconst(vec ? e->vec : e->f32, v);
}

static LLVMValueRef splat_if(KpEmit *e, LLVMValueRef s, int vec)
{
    return vec ? kp_splat(e, s) : s;
}

static LLVMValueRef fmul(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFMul(e->b, a, b, "");
}

static LLVMValueRef fadd(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(e->b, a, b, "");
}

static void step_sgd(KpEmit *e, const Optim *o, const StepAt *at, int vec)
{
    LLVMValueRef th = ld(e, at->th, at->i, vec);
    LLVMValueRef u = fmul(e, c(e, o->h.lr, vec), fadd(e, at->g, fmul(e, c(e, o->h.weight_decay, vec), th)));
    st(e, LLVMBuildFSub(e->b, th, u, ""), at->th, at->i, vec);
}

static void step_momentum(KpEmit *e, const Optim *o, const StepAt *at, int vec)
{
    float omb = 1.0f - o->h.beta;
    LLVMValueRef th = ld(e, at->th, at->i, vec), v = ld(e, at->m, at->i, vec);
    v = fadd(e, fmul(e, c(e, o->h.beta, vec), v), fmul(e, c(e, omb, vec), at->g));
    st(e, v, at->m, at->i, vec);
    st(e, LLVMBuildFSub(e->b, th, fmul(e, c(e, o->h.lr, vec), v), ""), at->th, at->i, vec);
}

/* The float a / c by multiply-adds (file comment). */
static LLVMValueRef div_c(KpEmit *e, const Optim *o, LLVMValueRef a, int vec)
{
    LLVMValueRef cc = splat_if(e, o->c, vec), y = splat_if(e, o->y, vec);
    LLVMValueRef q0 = fmul(e, a, y);
    LLVMValueRef q = kp_fma(e, kp_fma(e, LLVMBuildFNeg(e->b, q0, ""), cc, a), y, q0);
    LLVMValueRef nan = LLVMBuildFCmp(e->b, LLVMRealUNO, q, q, "");
    return LLVMBuildSelect(e->b, nan, q0, q, "");
}

static void step_adam(KpEmit *e, const Optim *o, const StepAt *at, int vec)
{
    float omb1 = 1.0f - o->h.beta1, omb2 = 1.0f - o->h.beta2;
    LLVMValueRef th = ld(e, at->th, at->i, vec), g = at->g;
    LLVMValueRef m = ld(e, at->m, at->i, vec), v = ld(e, at->v, at->i, vec);
    m = fadd(e, fmul(e, c(e, o->h.beta1, vec), m), fmul(e, c(e, omb1, vec), g));
    v = fadd(e, fmul(e, c(e, o->h.beta2, vec), v), fmul(e, fmul(e, c(e, omb2, vec), g), g));
    st(e, m, at->m, at->i, vec);
    st(e, v, at->v, at->i, vec);
    LLVMTypeRef ty = LLVMTypeOf(v);
    LLVMValueRef sq = kp_intrinsic(e, "llvm.sqrt", &ty, 1, &v, 1);
    LLVMValueRef den = fadd(e, div_c(e, o, sq, vec), c(e, o->h.eps, vec));
    LLVMValueRef u = LLVMBuildFDiv(e->b, fmul(e, splat_if(e, o->s, vec), m), den, "");
    st(e, LLVMBuildFSub(e->b, th, u, ""), at->th, at->i, vec);
}

/* (float)(num / (1 - beta^step)) or, with root, (float)sqrt(1 - beta^step), in double. */
static LLVMValueRef correction(KpEmit *e, double num, float beta, LLVMValueRef step, int root)
{
    LLVMTypeRef d = LLVMDoubleTypeInContext(e->ctx);
    LLVMTypeRef args[2] = {d, d};
    LLVMTypeRef fty = LLVMFunctionType(d, args, 2, 0);
    LLVMValueRef pow = LLVMGetNamedFunction(e->mod, "pow");
    if (!pow)
        pow = LLVMAddFunction(e->mod, "pow", fty);
    LLVMValueRef pargs[2] = {LLVMConstReal(d, (double)beta), LLVMBuildSIToFP(e->b, step, d, "")};
    LLVMValueRef bt = LLVMBuildCall2(e->b, fty, pow, pargs, 2, "");
    LLVMValueRef omb = LLVMBuildFSub(e->b, LLVMConstReal(d, 1.0), bt, "");
    LLVMValueRef r = root ? kp_intrinsic(e, "llvm.sqrt", &d, 1, &omb, 1)
                          : LLVMBuildFDiv(e->b, LLVMConstReal(d, num), omb, "");
    return LLVMBuildFPTrunc(e->b, r, e->f32, "");
}

/* Adam's bias corrections, once per work range of a kernel. */
static void prologue(KpEmit *e, Optim *o, LLVMValueRef step)
{
    if (o->step == step_adam) {
        o->s = correction(e, (double)o->h.lr, o->h.beta1, step, 0);
        o->c = correction(e, 0.0, o->h.beta2, step, 1);
        o->y = LLVMBuildFDiv(e->b, LLVMConstReal(e->f32, 1.0), o->c, "y");
    }
}

/* The moments of the floats from p on in the optimizer state (NULL where
 * the optimizer keeps none): m at opt[p], v at opt[P + p]. */
static void moments(KpEmit *e, const Optim *o, LLVMValueRef opt, int64_t p, StepAt *at)
{
    at->m = at->v = NULL;
    if (o->step == step_sgd)
        return;
    at->m = kp_gep(e, opt, kp_i64(e, p));
    if (o->step == step_adam)
        at->v = kp_gep(e, opt, kp_i64(e, o->pfloats + p));
}

/* The slab's update: item k is the floats [from + k CHUNK, ...) of the
 * range, each with its gradient, which is zeroed after the read. */
static void optim_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    Optim *o = user;
    prologue(e, o, a->n);
    StepAt at = {.th = a->p[0]};
    moments(e, o, a->p[2], 0, &at);
    KpLoop li, lv, ls;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "chunk");
    LLVMValueRef lo = kp_iaddc(e, kp_imulc(e, li.iv, CHUNK), o->from);
    LLVMValueRef hi = kp_min_i64(e, kp_iaddc(e, lo, CHUNK), kp_i64(e, o->from + o->len));
    LLVMValueRef len = LLVMBuildNSWSub(e->b, hi, lo, "");
    LLVMValueRef vend = LLVMBuildNSWAdd(e->b, lo, LLVMBuildAnd(e->b, len, kp_i64(e, ~(int64_t)(e->vw - 1)), ""), "vend");
    for (int vec = 1; vec >= 0; vec--) {
        KpLoop *l = vec ? &lv : &ls;
        kp_loop_begin(e, l, vec ? lo : vend, vec ? vend : hi, vec ? e->vw : 1, vec ? "v" : "s");
        at.i = l->iv;
        at.g = ld(e, a->p[1], l->iv, vec);
        o->step(e, o, &at, vec);
        st(e, c(e, 0.0, vec), a->p[1], l->iv, vec);
        kp_loop_end(e, l);
    }
    kp_loop_end(e, &li);
}

/* One parallel region over the floats [from, from + len). */
static void emit_range(KpEmit *e, const KpNode *n, Optim o, int64_t from, int64_t len, int k)
{
    int64_t items = kp_ceil_div(len, CHUNK);
    if (items <= 0)
        return;
    o.from = from, o.len = len;
    char name[48];
    if (k)
        snprintf(name, sizeof name, "%s.range%d", kp_op_name(n->op), k);
    else
        snprintf(name, sizeof name, "%s", kp_op_name(n->op));
    kp_emit_parallel(e, name, kp_i64(e, 0), kp_i64(e, items), items >= PAR_MIN_ITEMS, optim_kernel, &o);
}

static StepFn step_of(KpOp op)
{
    switch (op) {
    case KP_OP_sgd_update: return step_sgd;
    case KP_OP_momentum_update: return step_momentum;
    case KP_OP_adam_update: return step_adam;
    default: return NULL;
    }
}

bool kp_emit_can_fold_update(KpOp op)
{
    return step_of(op) != NULL;
}

/* Every trainable float, or (train_step's lesser function) those outside
 * the ranges folded into weight gradients (e->folded). */
static int emit_optim(KpEmit *e, const KpNode *n)
{
    Optim o = {.step = step_of(n->op), .h = n->attr.optim, .count = kp_value_numel(n->out, 1),
               .pfloats = e->g->param_floats};
    if (!e->update_rest) {
        emit_range(e, n, o, 0, o.count, 0);
        return 0;
    }
    int64_t at = 0;
    for (int k = 0; k < e->folded->count; k++) {
        const KpValue *gv = kp_folded_grad(e->g, e->folded, k);
        emit_range(e, n, o, at, gv->offset - at, k + 1);
        at = gv->offset + kp_value_numel(gv, 1);
    }
    emit_range(e, n, o, at, o.count - at, e->folded->count + 1);
    return 0;
}

int emit_sgd_update(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_optim(e, n);
}

int emit_momentum_update(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_optim(e, n);
}

int emit_adam_update(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_optim(e, n);
}

/* --- an update folded into a weight gradient at batch 1 ----------------- */

typedef struct Folded {
    Optim o;
    int64_t at, in, out, rows;      /* the weight [out, in] at params + at; rows per item */
} Folded;

/* Item k: rows [k rows, ...) of W.  Row r's gradient is dy[r] x, one
 * fused multiply-add from zero per element as dense_grad_w's outer
 * product makes it (emit_grad_dense.c), then the step. */
static void folded_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    Folded *f = user;
    Optim *o = &f->o;
    prologue(e, o, a->n);
    LLVMValueRef dy = a->p[0], x = a->p[1];
    StepAt at = {.th = kp_gep(e, a->p[2], kp_i64(e, f->at))};
    moments(e, o, a->p[3], f->at, &at);
    int64_t whole = f->in / e->vw * e->vw;
    KpLoop li, lr, lj;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "item");
    LLVMValueRef r0 = kp_imulc(e, li.iv, f->rows);
    LLVMValueRef r1 = kp_min_i64(e, kp_iaddc(e, r0, f->rows), kp_i64(e, f->out));
    kp_loop_begin(e, &lr, r0, r1, 1, "row");
    LLVMValueRef ds = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, dy, lr.iv), "dy");
    LLVMValueRef row = kp_imulc(e, lr.iv, f->in);
    for (int vec = 1; vec >= 0; vec--) {
        if (vec ? whole == 0 : whole == f->in)
            continue;
        kp_loop_begin(e, &lj, kp_i64(e, vec ? 0 : whole), kp_i64(e, vec ? whole : f->in),
                      vec ? e->vw : 1, vec ? "v" : "s");
        LLVMValueRef xv = ld(e, x, lj.iv, vec);
        at.i = kp_iadd(e, row, lj.iv);
        at.g = kp_fma(e, splat_if(e, ds, vec), xv, c(e, 0.0, vec));
        o->step(e, o, &at, vec);
        kp_loop_end(e, &lj);
    }
    kp_loop_end(e, &lr);
    kp_loop_end(e, &li);
}

int kp_emit_folded_update(KpEmit *e, const KpNode *grad_w, const KpNode *update, KpDiag *d)
{
    StepFn step = step_of(update->op);
    if (!step || grad_w->op != KP_OP_dense_grad_w)
        return kp_error(d, "internal error: node %d (%s) cannot be folded into node %d (%s)",
                        update->id, kp_op_name(update->op), grad_w->id, kp_op_name(grad_w->op));
    Folded f = {.o = {.step = step, .h = update->attr.optim, .count = kp_value_numel(update->out, 1),
                      .pfloats = e->g->param_floats},
                .at = grad_w->out->offset, .out = grad_w->in[0]->dims[1], .in = grad_w->in[1]->dims[1]};
    f.rows = f.in >= CHUNK ? 1 : CHUNK / f.in;
    int64_t items = kp_ceil_div(f.out, f.rows);
    kp_emit_parallel(e, "folded", kp_i64(e, 0), kp_i64(e, items), items > 1, folded_kernel, &f);
    return 0;
}
