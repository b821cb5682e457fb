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
 *             sqrt(v) / c taken as (float)((double)sqrt(v) * (1 / (double)c)), with
 *             1 / (double)c once per call: the same float (below), one division
 *             per float instead of two — on the Zen 4 where this was measured the
 *             step was bound by the divider at batch 1 (on the Zen 5, by moving
 *             its slabs to and from L3: docs/training.md)
 * P = param_floats.  The node function is (params, grads, opt, step):
 * see emit.h.  Chunks of CHUNK floats in parallel from PAR_MIN_ITEMS chunks
 * on (a few chunks cost less on one core than a fork to a core that shares
 * no cache with it: docs/training.md), whole vectors then a scalar tail;
 * every float is updated alone, so the thread count does not matter.
 * Each gradient is zeroed right after the step reads it (the entries'
 * contract: gradients are zero after an update), which saves the entry a
 * second pass over the gradient slab.
 *
 * Why (float)((double)a * r), r = RN(1 / (double)c), is the float a / c:
 * the double product is within 2^-52 (relative) of a / c (two roundings
 * of 2^-53), while the quotient of two floats is never a float midpoint
 * and never nearer to one than about 2^-49 relative (a - m c, m a 25-bit
 * midpoint, is a nonzero multiple of the product's last place, some
 * 2^-49 of it; more where a has fewer bits or the result is subnormal).
 * So the product rounds to the float the division rounds to, and zeros,
 * infinities and NaN come out as the division's (test_backend_train
 * test_division_in_double tries it on random bit patterns).
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
    LLVMValueRef s, rc;             /* adam, set in the kernel's prologue: s, and 1 / c
                                       in double */
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

/* The float a / c, as (float)((double)a * rc) (file comment). */
static LLVMValueRef div_c(KpEmit *e, const Optim *o, LLVMValueRef a, int vec)
{
    LLVMValueRef rc = splat_if(e, o->rc, vec);
    LLVMValueRef wide = LLVMBuildFPExt(e->b, a, LLVMTypeOf(rc), "");
    return LLVMBuildFPTrunc(e->b, LLVMBuildFMul(e->b, wide, rc, ""), vec ? e->vec : e->f32, "");
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
        LLVMTypeRef d = LLVMDoubleTypeInContext(e->ctx);
        LLVMValueRef c = correction(e, 0.0, o->h.beta2, step, 1);
        o->rc = LLVMBuildFDiv(e->b, LLVMConstReal(d, 1.0), LLVMBuildFPExt(e->b, c, d, ""), "rc");
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
