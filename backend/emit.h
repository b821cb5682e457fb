/*
 * emit.h — the emitters' interface (internal to backend/).
 *
 * codegen.c makes one LLVM function per node,
 *     internal void <graph>.node<id>.<op>(ptr noalias in0, ..., ptr noalias out, i64 n)
 * positions the builder in its entry block and calls the node's emitter
 * (the emit column of ir/ops.def).  The emitter appends the body; the core
 * closes it with `ret void`.  Pointers that may overlap (an in-place
 * planned value) are not marked noalias.
 *
 * Two kinds of node differ from that shape:
 *   - a node whose output is a parameter gradient (KP_STORE_GRAD) must add
 *     its result into the output (e->accumulate is set);
 *   - a node without inputs (the optimizer updates) gets
 *         (ptr params, ptr grads, ptr opt, i64 step)
 *     as ptr_arg[0..2] and e->n = step (the slabs of karp_abi.h).
 *
 * Helpers build the usual shapes of code: counted loops, parallel loops
 * through krt_parallel_for, splat constants, masked vector loads, tree
 * reductions (fixed order, so results never depend on the thread count)
 * and vectorizable exp/tanh/sigmoid.
 */
#ifndef KP_EMIT_H
#define KP_EMIT_H

#include <llvm-c/Core.h>

#include "../ir/ir.h"

/* Shared scratch ranges remembered for reuse (kp_scratch_shared_take). */
#define KP_MAX_SHARED_RANGES 128

/* Pointer arguments of a node function at most: inputs, outputs. */
#define KP_MAX_PTR (KP_MAX_IN + 1 + KP_MAX_AUX)
/* All its arguments at most: the pointers, n, the seed, a share's t and nt. */
#define KP_MAX_ARGS (KP_MAX_PTR + 4)

/* train_step's optimizer step folded into the weight gradients of a
 * model compiled for batch 1 (fold_update.c, emit_optim.c): node[k], a
 * dense_grad_w, and the update's step over the trainable floats its
 * output covers (kp_folded_grad) become one kernel, fn[k]; the update's
 * lesser function leaves those ranges out.  Ascending by the output's
 * offset. */
#define KP_MAX_FOLDED 32
typedef struct KpFolded {
    int count;
    int update;                         /* the update node's id */
    int node[KP_MAX_FOLDED];
    LLVMValueRef fn[KP_MAX_FOLDED];     /* set by kp_cg_emit_nodes */
} KpFolded;

/* The gradient the k-th folded node writes: the floats [offset,
 * offset + kp_value_numel(v, 1)) of the trainable range. */
static inline const KpValue *kp_folded_grad(const KpGraph *g, const KpFolded *f, int k)
{
    return g->nodes[f->node[k]]->out;
}

typedef struct KpEmit {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const KpGraph *g;
    int vw;                     /* floats per explicit vector */
    LLVMTypeRef f32, i1, i32, i64, ptr, void_t, vec;   /* vec: <vw x float> */
    LLVMTypeRef pfor_ty;        /* krt_parallel_for */
    LLVMValueRef pfor;
    LLVMTypeRef body_ty;        /* void (ptr ctx, i64 begin, i64 end) */
    /* the node function being emitted */
    const KpNode *node;
    LLVMValueRef fn;
    int nptr;                   /* inputs, then the output, then the aux outputs */
    LLVMValueRef ptr_arg[KP_MAX_PTR];
    int noalias[KP_MAX_PTR];
    LLVMValueRef n;             /* the batch, i64 (the step for an update node) */
    LLVMValueRef seed;          /* i64: the call's seed, for a node that takes one
                                   (kp_node_takes_seed), else NULL */
    int accumulate;             /* the output is a gradient slot: add into it */
    int64_t scratch_bytes;      /* the most any work item of the module takes from
                                   krt_scratch (the descriptor's scratch_bytes is
                                   this plus scratch_tail_bytes) */
    int64_t scratch_tail_bytes; /* the most any node keeps at the end of a slot
                                   across the pieces of a call (kp_scratch_tail) */
    /* a member of a group (codegen_group.c): the node function takes its
     * share t of nt of the work, i64s after its other arguments; NULL
     * otherwise */
    LLVMValueRef share_t, share_nt;
    int regions;                /* kp_emit_parallel calls of the node being emitted */
    int forks;                  /* those of them that may run on several threads */
    struct KpKernelList *kernels;   /* non-NULL: kernels exported, calls listed (kernels.h) */
    int64_t scratch_shared_bytes; /* the shared scratch of the module: the ranges its
                                     split GEMMs, fused losses and Winograd weight
                                     gradients took (kp_scratch_shared_take) */
    struct KpSharedRange {
        const char *kind;
        int64_t bytes, layout, at;
        int group;
    } shared_ranges[KP_MAX_SHARED_RANGES];
    int nshared_ranges;
    KpFolded *folded;           /* while the train graph's functions and train_step
                                   are emitted: its folded updates, or NULL */
    int fold_updates;           /* KpTargetOpts.fold_updates */
    bool update_rest;           /* the update's lesser function is emitted: the
                                   ranges of e->folded left out */
    bool with_loss;             /* the node's fused loss (KpNode.loss) is emitted too:
                                   the node function train_step calls */
} KpEmit;

/* Types, krt_parallel_for's declaration and a builder for emitting into
 * mod; g may be NULL outside a model (tests).  Dispose e->b when done. */
void kp_emit_init(KpEmit *e, LLVMContextRef ctx, LLVMModuleRef mod, const KpGraph *g, int vw);

/* Whether n's function takes the call's seed as a last i64 argument,
 *     void <graph>.node<id>.<op>(ptr in0, ..., ptr out, i64 n, i64 seed)
 * (dropout masks); only the forward and train_step entries have one. */
int kp_node_takes_seed(const KpNode *n);

/* Emitters, one per row of ops.def (a name may serve several rows). */
#define O(op, kind, nin, shape, interp, emit, ...) int emit(KpEmit *e, const KpNode *n, KpDiag *d);
#include "../ir/ops.def"
#undef O
/* For a row whose code generation a later issue brings: a diagnostic. */

/* The body of the folded kernel of grad_w (a dense_grad_w) and update
 * (emit_optim.c): the function's pointers e->ptr_arg[0..3] are dy, x, the
 * parameter slab and the optimizer state, e->n the step. */
int kp_emit_folded_update(KpEmit *e, const KpNode *grad_w, const KpNode *update, KpDiag *d);
/* Whether kp_emit_folded_update has a step for the update op. */
bool kp_emit_can_fold_update(KpOp op);
/* Which dense_grad_w nodes of g train_step folds its update into
 * (fold_update.c), with mode a KpFoldUpdates: f->count 0 when none. */
void kp_fold_updates(const KpGraph *g, int mode, KpFolded *f);

/* --- constants and types --------------------------------------------- */
LLVMValueRef kp_i64(KpEmit *e, int64_t v);
/* i64 index arithmetic (nsw): a + b; a + c and a * c, a itself when c
 * is 0 (add) or 1 (mul), so constant strides cost nothing in the IR. */
LLVMValueRef kp_iadd(KpEmit *e, LLVMValueRef a, LLVMValueRef b);
/* Prefetch the line of float p[at] into L1 for reading (llvm.prefetch;
 * at may lie outside the tensor: the address is a plain GEP and a
 * prefetch never faults). */
void kp_prefetch(KpEmit *e, LLVMValueRef p, LLVMValueRef at);
/* The same into L2 only: data for after the current loop (the next
 * sample's rows, say) that would push what the loop uses out of L1. */
void kp_prefetch_l2(KpEmit *e, LLVMValueRef p, LLVMValueRef at);
/* Prefetch the lines of the `floats` floats at p[at ..]: short runs (a
 * row of each channel plane, say) that the hardware prefetcher does not
 * start on before the kernel moves to the next. */
void kp_prefetch_span(KpEmit *e, LLVMValueRef p, LLVMValueRef at, int64_t floats);
/* How far ahead (floats) a streaming pass prefetches its inputs: the next
 * 4 KiB page, where Intel's L2 streamer stops and starts over
 * (emit_batchnorm.c's phase 2 and emit_pool_vec.c's forward rows say what
 * it gained; 2048 measured the same as 1024). */
enum { KP_PREFETCH_PAGE_AHEAD = 1024 };
LLVMValueRef kp_iaddc(KpEmit *e, LLVMValueRef a, int64_t c);
/* <vw x i64> {base, base + s, base + 2s, ...} (s = 0: base splatted). */
LLVMValueRef kp_lane_index(KpEmit *e, LLVMValueRef base, int64_t s);
/* The calling thread's scratch (krt_scratch(): the work item's slot of
 * e->scratch_bytes, runtime/scratch.c). */
LLVMValueRef kp_scratch(KpEmit *e);
LLVMValueRef kp_imulc(KpEmit *e, LLVMValueRef a, int64_t c);
/* if (cond) { ... } around what the caller emits between the two calls:
 * kp_if_begin leaves the builder in the then-block and returns the join
 * block that kp_if_end branches to and continues in. */
LLVMBasicBlockRef kp_if_begin(KpEmit *e, LLVMValueRef cond, const char *name);
void kp_if_end(KpEmit *e, LLVMBasicBlockRef join);

/* Pieces of work that count themselves done on an i64 counter (atomic
 * add, acquire-release): kp_last_begin opens a block that only the piece
 * completing the count of `parts` runs, which sees every other piece's
 * stores; kp_last_end sets the counter back to 0 (release: zero again for
 * the next call) and closes the block. */
LLVMBasicBlockRef kp_last_begin(KpEmit *e, LLVMValueRef counter, LLVMValueRef parts);
void kp_last_end(KpEmit *e, LLVMValueRef counter, LLVMBasicBlockRef join);
/* Kernels that sum by fixed chunks of the samples (the convolutions'
 * weight gradients, batchnorm), so the order of the sums does not depend
 * on the thread count: chunk `chunk` of n samples cut into `chunks` parts,
 * the first n % chunks one sample longer, is [*g0, *g1). */
void kp_chunk_samples(KpEmit *e, LLVMValueRef n, LLVMValueRef chunks, LLVMValueRef chunk, LLVMValueRef *g0,
                      LLVMValueRef *g1);
static inline int64_t kp_ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}
static inline int64_t kp_round_up(int64_t a, int64_t b)
{
    return kp_ceil_div(a, b) * b;
}
LLVMValueRef kp_i32(KpEmit *e, int32_t v);
/* A float constant of type ty (float or a vector of float: splatted). */
LLVMValueRef kp_fconst(LLVMTypeRef ty, double v);
/* An i32 constant of the integer type matching the float type ty. */
LLVMValueRef kp_iconst_like(KpEmit *e, LLVMTypeRef fty, int32_t v);
/* A vector of vw lanes of s (a float, or any scalar), every lane s. */
LLVMValueRef kp_splat(KpEmit *e, LLVMValueRef s);
/* a and b interleaved, lane by lane, from their lower (or upper) halves. */
LLVMValueRef kp_interleave(KpEmit *e, LLVMValueRef a, LLVMValueRef b, bool upper);
/* row[0..vw) transposed in place: lane l of row i becomes lane i of row l
 * (log2(vw) rounds of interleaving row i with row i + vw/2, the perfect
 * shuffle). */
void kp_transpose_vw(KpEmit *e, LLVMValueRef *row);
/* The mask <vw x i1> with the first k lanes set. */
LLVMValueRef kp_mask_first(KpEmit *e, int k);
/* A new stack slot in the current function's entry block. */
LLVMValueRef kp_alloca(KpEmit *e, LLVMTypeRef ty, const char *name);
/* Call an intrinsic overloaded on the given types. */
LLVMValueRef kp_intrinsic(KpEmit *e, const char *name, LLVMTypeRef *over, int nover,
                          LLVMValueRef *args, int nargs);

/* --- addressing and memory -------------------------------------------- */
/* &p[i] for float elements. */
LLVMValueRef kp_gep(KpEmit *e, LLVMValueRef p, LLVMValueRef i);
LLVMValueRef kp_load_vec(KpEmit *e, LLVMValueRef p, LLVMValueRef i);
void kp_store_vec(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i);
/* Masked load (lanes off read as passthru) and store of the first k lanes. */
LLVMValueRef kp_load_vec_masked(KpEmit *e, LLVMValueRef p, LLVMValueRef i, int k,
                                double passthru);
void kp_store_vec_masked(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, int k);
/* The same for the lanes of a <vw x i1> mask (computed at run time, say). */
LLVMValueRef kp_load_vec_where(KpEmit *e, LLVMValueRef p, LLVMValueRef i, LLVMValueRef mask,
                               double passthru);
void kp_store_vec_where(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, LLVMValueRef mask);
/* p[idx[l]] for the lanes of mask (the others zero), and its store: idx a
 * <vw x i64> of float indices; a masked-off lane's index is never used. */
LLVMValueRef kp_gather_where(KpEmit *e, LLVMValueRef p, LLVMValueRef idx, LLVMValueRef mask);
void kp_scatter_where(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, LLVMValueRef mask);

/* --- control flow -------------------------------------------------------- */
typedef struct KpLoop {
    LLVMBasicBlockRef pre, head, body, exit;
    LLVMValueRef iv;            /* the induction variable, i64 */
    LLVMValueRef step;
} KpLoop;
/* for (iv = begin; iv < end; iv += step) { ...body emitted by the caller... }
 *
 * kp_loop_end closes the loop with LLVM told not to unroll it.  The kernels
 * are explicit vector code already, and unrolling every loop cost a large
 * part of a model's compile time for loops whose speed does not hang on it:
 * prepare code, memory-bound bodies, the tile loops around a GEMM
 * micro-kernel (docs/compile-time.md).  The short loops of a kernel's innermost body
 * that do gain (a convolution's 3x3 window) end with kp_loop_end_unrolled:
 * LLVM unrolls them as it sees fit.  kp_loop_end_with takes KP_LOOP_*
 * flags. */
enum {
    KP_LOOP_UNROLL = 1,         /* LLVM may unroll the loop */
    KP_LOOP_NO_VECTORIZE = 2,   /* the loop vectorizer must leave it alone */
};
void kp_loop_begin(KpEmit *e, KpLoop *l, LLVMValueRef begin, LLVMValueRef end, int64_t step,
                   const char *name);
void kp_loop_end_with(KpEmit *e, KpLoop *l, unsigned flags);
void kp_loop_end(KpEmit *e, KpLoop *l);
void kp_loop_end_unrolled(KpEmit *e, KpLoop *l);
LLVMValueRef kp_min_i64(KpEmit *e, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef kp_max_i64(KpEmit *e, LLVMValueRef a, LLVMValueRef b);

/* A parallel loop over items [begin, end): krt_parallel_for calls a body
 * that unpacks the node's pointers and n and calls an internal kernel
 *     void kernel(ptr noalias p0, ..., i64 n, i64 begin, i64 end)
 * whose code gen() emits with the builder in the kernel's entry block
 * (a->p are the kernel's pointer parameters).  With parallel false the
 * kernel is called directly over the whole range.  A node with a seed
 * (e->seed) passes it on as one more i64 after n (a->seed).
 * In a group member (e->share_t set) the node function calls the kernel
 * itself over share t of nt of [begin, end), cut as krt_parallel_for
 * cuts it (with parallel false: all of it in share 0).  A node that can
 * join a group makes exactly one such call and has no other effect
 * (but for a prologue, below). */
/* Elements of memory-bound work (read and written) below which a loop is
 * not worth a thread team: forking and joining one costs microseconds,
 * about what this much work takes.  The memory-bound emitters make their
 * work items at least this big, so a small batch makes one item and runs
 * without forking (krt_parallel_for runs a single item on its caller). */
enum { KP_GRAIN = 32768 };

typedef struct KpKernelArgs {
    LLVMValueRef p[KP_MAX_PTR];
    LLVMValueRef n, begin, end;
    LLVMValueRef seed;          /* NULL unless e->seed */
} KpKernelArgs;
typedef void (*KpKernelGen)(KpEmit *e, const KpKernelArgs *a, void *user);
void kp_emit_parallel(KpEmit *e, const char *name, LLVMValueRef begin, LLVMValueRef end,
                      int parallel, KpKernelGen gen, void *user);
/* Work a node does once per call, on the calling thread, before its
 * parallel region (bumping a count of calls in the shared scratch, say):
 * the code emitted between kp_prologue_begin and
 * kp_prologue_end.  Outside a group it runs in place.  In a group member
 * the node function runs it, and only it, when called as share -1 of 1,
 * which the group's function does for such members (the function
 * attribute KP_PROLOGUE_ATTR marks them) before it forks; the code after
 * kp_prologue_end is the share's. */
#define KP_PROLOGUE_ATTR "karpc-prologue"
LLVMBasicBlockRef kp_prologue_begin(KpEmit *e);
void kp_prologue_end(KpEmit *e, LLVMBasicBlockRef share);
/* kp_emit_parallel over n * per_sample units of work (rows, planes,
 * samples) of unit_elems elements each (read and written), grouped into
 * items of at least KP_GRAIN elements: gen gets a range of units in
 * a->begin, a->end.  Work of one item, a small batch, runs on the calling
 * thread, and a node whose max batch makes one item never forks. */
void kp_emit_parallel_units(KpEmit *e, const char *name, int64_t per_sample, int64_t unit_elems,
                            KpKernelGen gen, void *user);

/* --- arithmetic (float or vector of float) ------------------------------- */
LLVMValueRef kp_fma(KpEmit *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
LLVMValueRef kp_max(KpEmit *e, LLVMValueRef a, LLVMValueRef b);   /* llvm.maxnum */
LLVMValueRef kp_min(KpEmit *e, LLVMValueRef a, LLVMValueRef b);
/* Horizontal sum / max of a vector by halving (a fixed tree). */
LLVMValueRef kp_reduce_add(KpEmit *e, LLVMValueRef v);
LLVMValueRef kp_reduce_max(KpEmit *e, LLVMValueRef v);
/* Lane c of the result: the sum of v[c]'s lanes, for vw vectors v (a
 * fixed tree: adjacent pairs, level by level; v is overwritten). */
LLVMValueRef kp_sum_lanes(KpEmit *e, LLVMValueRef *v);
/* e^x, tanh(x), 1/(1+e^-x) without libm: range reduction and polynomials,
 * about 1 ulp; vectorizable.  x is a float or a vector of float. */
LLVMValueRef kp_emit_exp(KpEmit *e, LLVMValueRef x);
LLVMValueRef kp_emit_tanh(KpEmit *e, LLVMValueRef x);
LLVMValueRef kp_emit_sigmoid(KpEmit *e, LLVMValueRef x);
/* ln x and ln(1 + x), the same way: -inf at 0 (and ln(1+x) at -1), NaN
 * below, +inf at +inf; subnormals handled; about 1-2 ulp. */
LLVMValueRef kp_emit_log(KpEmit *e, LLVMValueRef x);
LLVMValueRef kp_emit_log1p(KpEmit *e, LLVMValueRef x);

/* --- elementwise maps (emit_map.c) ---------------------------------------- */
/* out[i] = f(in0[i], ..., in<k-1>[i]) over the n * size floats of the
 * node's output, k = n->nin, every input f32 shaped like the output; with
 * e->accumulate, out[i] += f(...).  f gets the loaded inputs (all floats
 * or all <vw x float>) and builds the result of the same type.  Chunks of
 * elements in parallel; each element computed alone, so the result does
 * not depend on the thread count. */
typedef LLVMValueRef (*KpMapFn)(KpEmit *e, const LLVMValueRef *x, const KpNode *n);
int kp_emit_map(KpEmit *e, const KpNode *n, KpMapFn f);
/* The map function of an elementwise op that can be an epilogue
 * (KpEpilogue in ir.h), NULL for any other op; the lookups of
 * emit_eltwise.c, emit_eltwise_grad.c and emit_misc.c behind it. */
KpMapFn kp_epilogue_fn(KpOp op);
KpMapFn kp_map_eltwise(KpOp op);
KpMapFn kp_map_eltwise_grad(KpOp op);
KpMapFn kp_map_mul(void);
/* Apply node n's fused epilogues (n->epi, in order) to v, the node's
 * result for output elements idx, idx+1, ... (v a float, or a <vw x
 * float> of consecutive elements).  p are the pointers the kernel got for
 * n's inputs (p[i] is n->in[i]): each epilogue argument is read at the
 * same flat index; with lanes > 0 only the first `lanes` lanes are read
 * (masked, for a partial vector).  Returns v itself when n->nepi is 0. */
LLVMValueRef kp_emit_epilogue(KpEmit *e, const KpNode *n, const LLVMValueRef *p, LLVMValueRef v,
                              LLVMValueRef idx, int lanes);
/* kp_prefetch_span of the `floats` elements from flat index idx of every
 * operand n's epilogues read (kp_emit_epilogue's p and idx). */
void kp_prefetch_epilogue(KpEmit *e, const KpNode *n, const LLVMValueRef *p, LLVMValueRef idx,
                          int64_t floats);

/* cross_entropy's gradient over rows [r0, r1) of logits x [., cols] with
 * int32 labels (one per row): dx rows = (softmax(x) - onehot) / n; and
 * with terms non-NULL, terms[r] = the row's term of the loss (max - x[l] +
 * ln sum e^(x - max)), the float cross_entropy adds up (emit_loss.c). */
void kp_emit_xent_rows(KpEmit *e, LLVMValueRef x, LLVMValueRef labels, LLVMValueRef dx,
                       LLVMValueRef terms, LLVMValueRef r0, LLVMValueRef r1, int64_t cols,
                       LLVMValueRef n);
/* *loss = the mean of terms[0, n), summed in double in row order: the
 * loss cross_entropy computes, bit for bit, from kp_emit_xent_rows' terms. */
void kp_emit_xent_mean(KpEmit *e, LLVMValueRef terms, LLVMValueRef n, LLVMValueRef loss);
/* Plane sums, the fixed order of every bias gradient over planes
 * (emit_grad_dense.c).  kp_plane_sums_take: a [N][channels] float range of
 * the shared scratch, its offset.  kp_emit_plane_sum_store: the sum of the
 * hw floats of plane `plane` (an i64) at src stored at sums[plane], sums
 * being kp_scratch_shared_at of the range.  kp_emit_plane_sums_add, after
 * the parallel region, on the calling thread: db[c] (+)= the sums of
 * channel c in the order of the samples (added into db when accumulate). */
int64_t kp_plane_sums_take(KpEmit *e, int64_t channels);
void kp_emit_plane_sum_store(KpEmit *e, LLVMValueRef sums, LLVMValueRef src, LLVMValueRef plane,
                             int64_t hw);
void kp_emit_plane_sums_add(KpEmit *e, int64_t sums_at, LLVMValueRef db, int64_t channels,
                            int accumulate);

/* The float (f32) value of an i64 count, splatted to ty if ty is a vector. */
LLVMValueRef kp_count_f32(KpEmit *e, LLVMValueRef count, LLVMTypeRef ty);

/* The tail of the thread's scratch slot: `bytes` (rounded up to 64) of
 * data, then 64 bytes whose first i64 is a tag, at the end of the slot
 * (krt_scratch_stride), past what any work item's kp_scratch use
 * reaches.  So data a thread keeps there survives the other pieces of
 * work and the other members of a group it runs in the same call; a node
 * tags it (with a count the call's prologue bumps, say) to know whether
 * it is this call's.  Every node using the tail writes its own tag, and
 * the pool starts zeroed.  *tag receives the tag's address. */
LLVMValueRef kp_scratch_tail(KpEmit *e, int64_t bytes, LLVMValueRef *tag);
/* The call's shared scratch (krt_scratch_shared: one area for every
 * thread of the call, runtime/scratch.c) at byte at: a range a node took
 * with kp_scratch_shared_take. */
LLVMValueRef kp_scratch_shared_at(KpEmit *e, int64_t at);

/* A range of bytes of the shared scratch for the node being emitted; its
 * offset.  Nodes run one after the other except the members of a group,
 * so a range taken before for the same kind and layout (the kernel keeps
 * counters at the same places, zero between calls) is handed out again,
 * unless a member of the node's own group holds it.  Twin layers then get
 * the same offset, hence identical kernels that mergefunc folds into one
 * (compile time).  Kinds never share, so one kind's data never lands on
 * another's counters. */
int64_t kp_scratch_shared_take(KpEmit *e, const char *kind, int64_t bytes, int64_t layout);

/* Elements of one sample of v, and of n samples (i64 IR value). */
LLVMValueRef kp_numel(KpEmit *e, const KpValue *v);

#endif
