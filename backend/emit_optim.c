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
 * P = param_floats.  The node function is (params, grads, opt, step):
 * see emit.h.  Chunks of CHUNK floats in parallel, whole vectors then a
 * scalar tail; every float is updated alone, so the thread count does not
 * matter.  Each gradient is zeroed right after the step reads it (the
 * entries' contract: gradients are zero after an update), which saves the
 * entry a second pass over the gradient slab.
 */
#include "emit.h"

enum { CHUNK = 8192 };

typedef struct Optim Optim;
/* Update the floats at i (a vector when vec). */
typedef void (*StepFn)(KpEmit *e, const KpKernelArgs *a, const Optim *o, LLVMValueRef i, int vec);

struct Optim {
    StepFn step;
    KpOptimHyper h;
    int64_t count;                  /* trainable floats */
    int64_t pfloats;                /* the slab: v of adam at opt + pfloats */
    LLVMValueRef s, c;              /* adam: set in the kernel's prologue */
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

static void step_sgd(KpEmit *e, const KpKernelArgs *a, const Optim *o, LLVMValueRef i, int vec)
{
    LLVMValueRef th = ld(e, a->p[0], i, vec), g = ld(e, a->p[1], i, vec);
    LLVMValueRef u = fmul(e, c(e, o->h.lr, vec), fadd(e, g, fmul(e, c(e, o->h.weight_decay, vec), th)));
    st(e, LLVMBuildFSub(e->b, th, u, ""), a->p[0], i, vec);
}

static void step_momentum(KpEmit *e, const KpKernelArgs *a, const Optim *o, LLVMValueRef i, int vec)
{
    float omb = 1.0f - o->h.beta;
    LLVMValueRef th = ld(e, a->p[0], i, vec), g = ld(e, a->p[1], i, vec), v = ld(e, a->p[2], i, vec);
    v = fadd(e, fmul(e, c(e, o->h.beta, vec), v), fmul(e, c(e, omb, vec), g));
    st(e, v, a->p[2], i, vec);
    st(e, LLVMBuildFSub(e->b, th, fmul(e, c(e, o->h.lr, vec), v), ""), a->p[0], i, vec);
}

static void step_adam(KpEmit *e, const KpKernelArgs *a, const Optim *o, LLVMValueRef i, int vec)
{
    float omb1 = 1.0f - o->h.beta1, omb2 = 1.0f - o->h.beta2;
    LLVMValueRef vi = LLVMBuildNSWAdd(e->b, i, kp_i64(e, o->pfloats), "");
    LLVMValueRef th = ld(e, a->p[0], i, vec), g = ld(e, a->p[1], i, vec);
    LLVMValueRef m = ld(e, a->p[2], i, vec), v = ld(e, a->p[2], vi, vec);
    m = fadd(e, fmul(e, c(e, o->h.beta1, vec), m), fmul(e, c(e, omb1, vec), g));
    v = fadd(e, fmul(e, c(e, o->h.beta2, vec), v), fmul(e, fmul(e, c(e, omb2, vec), g), g));
    st(e, m, a->p[2], i, vec);
    st(e, v, a->p[2], vi, vec);
    LLVMTypeRef ty = LLVMTypeOf(v);
    LLVMValueRef sq = kp_intrinsic(e, "llvm.sqrt", &ty, 1, &v, 1);
    LLVMValueRef den = fadd(e, LLVMBuildFDiv(e->b, sq, splat_if(e, o->c, vec), ""), c(e, o->h.eps, vec));
    LLVMValueRef u = LLVMBuildFDiv(e->b, fmul(e, splat_if(e, o->s, vec), m), den, "");
    st(e, LLVMBuildFSub(e->b, th, u, ""), a->p[0], i, vec);
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

static void optim_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    Optim *o = user;
    if (o->step == step_adam) {
        o->s = correction(e, (double)o->h.lr, o->h.beta1, a->n, 0);
        o->c = correction(e, 0.0, o->h.beta2, a->n, 1);
    }
    KpLoop li, lv, ls;
    kp_loop_begin(e, &li, a->begin, a->end, 1, "chunk");
    LLVMValueRef lo = LLVMBuildNSWMul(e->b, li.iv, kp_i64(e, CHUNK), "lo");
    LLVMValueRef hi = kp_min_i64(e, LLVMBuildNSWAdd(e->b, lo, kp_i64(e, CHUNK), ""), kp_i64(e, o->count));
    LLVMValueRef len = LLVMBuildNSWSub(e->b, hi, lo, "");
    LLVMValueRef vend = LLVMBuildNSWAdd(e->b, lo, LLVMBuildAnd(e->b, len, kp_i64(e, ~(int64_t)(e->vw - 1)), ""), "vend");
    kp_loop_begin(e, &lv, lo, vend, e->vw, "v");
    o->step(e, a, o, lv.iv, 1);
    st(e, c(e, 0.0, 1), a->p[1], lv.iv, 1);
    kp_loop_end(e, &lv);
    kp_loop_begin(e, &ls, vend, hi, 1, "s");
    o->step(e, a, o, ls.iv, 0);
    st(e, c(e, 0.0, 0), a->p[1], ls.iv, 0);
    kp_loop_end(e, &ls);
    kp_loop_end(e, &li);
}

static int emit_optim(KpEmit *e, const KpNode *n, StepFn step)
{
    Optim o = {.step = step, .h = n->attr.optim, .count = kp_value_numel(n->out, 1),
               .pfloats = e->g->param_floats};
    int64_t items = (o.count + CHUNK - 1) / CHUNK;
    if (items == 0)
        return 0;
    kp_emit_parallel(e, kp_op_name(n->op), kp_i64(e, 0), kp_i64(e, items), items > 1, optim_kernel, &o);
    return 0;
}

int emit_sgd_update(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_optim(e, n, step_sgd);
}

int emit_momentum_update(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_optim(e, n, step_momentum);
}

int emit_adam_update(KpEmit *e, const KpNode *n, KpDiag *d)
{
    return emit_optim(e, n, step_adam);
}
