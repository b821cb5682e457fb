/*
 * partition.c — the module to machine code in parallel: split into
 * partitions by function, each optimized and compiled to an object, with
 * its own LLVM context, by one of the compile threads (one per CPU, each
 * with its own target machine), which take the partitions from a queue.
 *
 * LLVM spends nearly all of a model's compile time in function passes and
 * instruction selection, one function at a time, and a model has tens to
 * hundreds of kernel functions.  So
 *
 *   module --mergefunc--> bitcode ──lazy read──> partition k >= 1: its
 *      │                      own bodies read in, the others not -> O2 -> object
 *      └─ (in place) ──────────────────────────> partition 0: foreign bodies
 *                                                 dropped -> O2 -> object
 *
 *   queue: 0 1 2 3 4 5   (two threads: 35, 24, 17, 12, 8, 6% of the IR)
 *          each thread takes the next when it is done; the first to find
 *          none left runs the side job (the JIT's model slabs)
 *
 * What goes together: a function and everything it references except
 * the node functions it calls (noinline: entries and groups call node
 * functions, which never inline), so a node function, its parallel-loop
 * bodies and their helpers stay in one partition.  Functions a global's
 * initializer points at (the descriptor's entries) and the globals go to
 * partition 0.  The pieces are dealt out largest first, sized by
 * instruction count, each to the partition furthest below its share
 * (queue_shares): a thread the host runs slower, or one whose pieces cost
 * more per instruction, ends up with fewer of the small last ones.
 *
 * A local function referenced from another partition becomes external
 * with hidden visibility under its own (module-unique) name: the objects
 * link to each other in the JIT's one JITDylib and in model.so, and
 * nothing new is exported.  Local constants are copied into every
 * partition (unused copies are dropped by the pipeline's globaldce); any
 * other global lives in partition 0 and is declared elsewhere.
 *
 * Only cross-partition calls lose what internal linkage gave them (a
 * private calling convention, dead-argument elimination): kernels are
 * node functions called once per run, their loops are untouched.
 */
#define _GNU_SOURCE             /* sched_getaffinity */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <llvm/Config/llvm-config.h>

#include "../runtime/clock.h"
#include "llvm_internal.h"

#define MAX_PARTS KP_LLVM_MAX_PARTS

int kp_llvm_default_jobs(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return n < 1 ? 1 : n > KP_LLVM_MAX_JOBS ? KP_LLVM_MAX_JOBS : n;
}

#if LLVM_VERSION_MAJOR == 19
/* -O2 for karpc's modules: LLVM 19's default<O2> as `opt -passes=default<O2>
 * -print-pipeline-passes` spells it, less what never changes our machine
 * code and only costs time (docs/compile-time.md, item 4): the last four
 * of its eight InstCombine runs, DSE, loop idiom recognition, loop
 * distribution, loop load elimination, called-value propagation,
 * aggressive InstCombine, BDCE, float2int, loop sinking, and the passes
 * for coroutines, OpenMP, instrumentation and remarks.  Loop unrolling
 * stays: kp_loop_end_unrolled's loops ask for it.  The function
 * simplification passes run once over each function, not inside a
 * call-graph walk that ran them on a parallel loop's kernel and again on
 * the body it was inlined into (item 6): the kernels are `alwaysinline`
 * (kp_emit_parallel), and `cgscc(inline)` is left only the small calls
 * (a group's members, mergefunc's thunks). */
#define SCFG_(fwd, icmp, lookup, loops, common, unpred)                                         \
    "simplifycfg<bonus-inst-threshold=1;" fwd "forward-switch-cond;" icmp "switch-range-to-icmp;" \
    lookup "switch-to-lookup;" loops "keep-loops;" common "hoist-common-insts;" common            \
    "sink-common-insts;speculate-blocks;simplify-cond-branch;" unpred "speculate-unpredictables>"
#define SCFG SCFG_("no-", "", "no-", "", "no-", "no-")
#define IC "instcombine<max-iterations=1;no-use-loop-info;no-verify-fixpoint>"
#define ROTATE "loop-rotate<header-duplication;no-prepare-for-lto>"
#define LICM "licm<allowspeculation>"
#define UNSWITCH "simple-loop-unswitch<no-nontrivial;trivial>"
static const char O2_PIPELINE[] =
    "inferattrs,"
    "function<eager-inv>(lower-expect," SCFG_("no-", "no-", "no-", "", "no-", "no-")
    ",sroa<modify-cfg>,early-cse<>),"
    "ipsccp,globalopt,"
    "function<eager-inv>(mem2reg," IC "," SCFG "),"
    "always-inline,require<globals-aa>,function(invalidate<aa>),require<profile-summary>,"
    "cgscc(inline),"
    "function<eager-inv>("
    "sroa<modify-cfg>,early-cse<memssa>,jump-threading,correlated-propagation," SCFG "," IC ","
    "tailcallelim," SCFG ",reassociate,constraint-elimination,"
    "loop-mssa(loop-instsimplify,loop-simplifycfg,licm<no-allowspeculation>," ROTATE "," LICM ","
    UNSWITCH ")," SCFG "," IC ","
    "loop(indvars," UNSWITCH ",loop-deletion,loop-unroll-full),"
    "sroa<modify-cfg>,vector-combine,mldst-motion<no-split-footer-bb>,gvn<>,sccp," IC ","
    "jump-threading,correlated-propagation,adce,memcpyopt,loop-mssa(" LICM "),"
    SCFG_("no-", "", "no-", "", "", "no-") "),"
    "deadargelim,globalopt,globaldce,rpo-function-attrs,recompute-globalsaa,"
    "function<eager-inv>(lower-constant-intrinsics,loop(" ROTATE ",loop-deletion),"
    "inject-tli-mappings,loop-vectorize<no-interleave-forced-only;no-vectorize-forced-only;>,"
    "infer-alignment," SCFG_("", "", "", "no-", "", "no-") ",slp-vectorizer,vector-combine,"
    "loop-unroll<O2>,sroa<preserve-cfg>,infer-alignment,loop-mssa(" LICM "),"
    "alignment-from-assumptions,instsimplify,div-rem-pairs,tailcallelim,"
    SCFG_("no-", "", "no-", "", "no-", "") "),"
    "globaldce,constmerge";
#undef SCFG_
#undef SCFG
#undef IC
#undef ROTATE
#undef LICM
#undef UNSWITCH
#endif

int kp_llvm_run_pipeline(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level,
                         char *msg, size_t cap)
{
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", opt_level);
    const char *passes = pipeline;
#if LLVM_VERSION_MAJOR == 19
    if (opt_level == 2)
        passes = O2_PIPELINE;
#endif
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, opt_level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, opt_level >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, opt_level >= 2);
    LLVMErrorRef err = LLVMRunPasses(mod, passes, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (!err)
        return 0;
    char *m = LLVMGetErrorMessage(err);
    snprintf(msg, cap, "%s", m);
    LLVMDisposeErrorMessage(m);
    return -1;
}

/* ---- which function goes where ---------------------------------------- */

typedef struct Plan {
    int nfn;
    LLVMValueRef *fn;           /* the module's functions, in order */
    int *part;                  /* each one's partition; -1: a declaration */
    char *exported;             /* local, referenced from another partition */
    int nparts;
    int64_t load[MAX_PARTS];    /* each partition's IR instructions */
} Plan;

static int fn_index(const Plan *pl, LLVMValueRef f)
{
    for (int i = 0; i < pl->nfn; i++)   /* a hundred or so functions: a scan will do */
        if (pl->fn[i] == f)
            return i;
    return -1;
}

static int find(int *up, int i)
{
    while (up[i] != i)
        i = up[i] = up[up[i]];
    return i;
}

static int is_noinline(LLVMValueRef f)
{
    unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
    return LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, kind) != NULL;
}

/* Every function that uses v (through constant expressions), passed to
 * visit(ctx, user function, is-a-direct-call); a use in a global's
 * initializer as user NULL. */
typedef void (*UseFn)(void *ctx, LLVMValueRef v, LLVMValueRef user_fn, int call);

static void visit_uses(LLVMValueRef v, LLVMValueRef top, UseFn visit, void *ctx)
{
    for (LLVMUseRef u = LLVMGetFirstUse(v); u; u = LLVMGetNextUse(u)) {
        LLVMValueRef user = LLVMGetUser(u);
        if (LLVMIsAInstruction(user)) {
            LLVMValueRef f = LLVMGetBasicBlockParent(LLVMGetInstructionParent(user));
            int call = LLVMIsACallInst(user) && LLVMGetCalledValue(user) == v;
            visit(ctx, top, f, call);
        } else if (LLVMIsAGlobalValue(user)) {
            visit(ctx, top, NULL, 0);
        } else {
            visit_uses(user, top, visit, ctx);   /* a constant: look through it */
        }
    }
}

typedef struct UnionCtx {
    Plan *pl;
    int *up;
    char *pinned;               /* referenced by a global's initializer */
} UnionCtx;

static void union_use(void *ctx, LLVMValueRef callee, LLVMValueRef user_fn, int call)
{
    UnionCtx *c = ctx;
    int i = fn_index(c->pl, callee);
    if (!user_fn) {
        c->pinned[i] = 1;
        return;
    }
    if (call && is_noinline(callee))
        return;
    int j = fn_index(c->pl, user_fn);
    c->up[find(c->up, i)] = find(c->up, j);
}

static void export_use(void *ctx, LLVMValueRef callee, LLVMValueRef user_fn, int call)
{
    (void)call;
    Plan *pl = ctx;
    int i = fn_index(pl, callee);
    int pu = user_fn ? pl->part[fn_index(pl, user_fn)] : 0;
    if (pu != pl->part[i])
        pl->exported[i] = 1;
}

static int64_t fn_size(LLVMValueRef f)
{
    int64_t n = 0;
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i))
            n++;
    return n;
}

static void plan_free(Plan *pl)
{
    free(pl->fn);
    free(pl->part);
    free(pl->exported);
}

/* The partitions for `threads` threads taking them from one queue: three
 * per thread, each planned a fixed ratio smaller than the one before
 * (0.7 for two threads, closer to 1 for more), so that the last ones to
 * be taken are small and a thread the host runs slower ends up with less
 * (docs/compile-time.md, item 7).  One thread: one partition.  At most
 * `most` partitions. */
static int queue_shares(int threads, int most, double *share)
{
    int n = threads <= 1 ? 1 : 3 * threads > MAX_PARTS ? MAX_PARTS : 3 * threads;
    n = n < most ? n : most < 1 ? 1 : most;
    double q = threads <= 1 ? 1.0 : pow(0.7, 2.0 / threads), sum = 0;
    for (int p = 0; p < n; p++)
        sum += share[p] = pow(q, p);
    for (int p = 0; p < n; p++)
        share[p] /= sum;
    return n;
}

/* Group the functions of mod and deal the groups out to the partitions
 * of queue_shares(threads) (fewer when there are fewer groups): largest
 * first, each to the partition furthest below its share. */
static int plan_parts(LLVMModuleRef mod, int threads, Plan *pl)
{
    memset(pl, 0, sizeof *pl);
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        pl->nfn++;
    size_t n = (size_t)pl->nfn + 1;
    pl->fn = calloc(n, sizeof *pl->fn);
    pl->part = calloc(n, sizeof *pl->part);
    pl->exported = calloc(n, 1);
    int *up = calloc(n, sizeof *up);
    char *pinned = calloc(n, 1);
    int64_t *size = calloc(n, sizeof *size);
    int *order = calloc(n, sizeof *order);
    if (!pl->fn || !pl->part || !pl->exported || !up || !pinned || !size || !order) {
        free(up), free(pinned), free(size), free(order);
        plan_free(pl);
        return -1;
    }
    int k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        pl->fn[k++] = f;
    for (int i = 0; i < pl->nfn; i++)
        up[i] = i;
    UnionCtx uc = {pl, up, pinned};
    for (int i = 0; i < pl->nfn; i++)
        if (!LLVMIsDeclaration(pl->fn[i]))
            visit_uses(pl->fn[i], pl->fn[i], union_use, &uc);
    /* each group's size at its root; pinned groups count as partition 0's */
    int ngroups = 0;
    for (int i = 0; i < pl->nfn; i++)
        if (!LLVMIsDeclaration(pl->fn[i]))
            size[find(up, i)] += fn_size(pl->fn[i]);
    for (int i = 0; i < pl->nfn; i++)
        if (pinned[i])
            pinned[find(up, i)] = 1;
    for (int i = 0; i < pl->nfn; i++)
        if (!LLVMIsDeclaration(pl->fn[i]) && find(up, i) == i && !pinned[i])
            order[ngroups++] = i;
    /* largest first (insertion sort: ties keep module order, so the
     * partitioning does not depend on the sort) */
    for (int a = 1; a < ngroups; a++)
        for (int b = a; b > 0 && size[order[b]] > size[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    double share[MAX_PARTS];
    pl->nparts = queue_shares(threads, ngroups + 1, share);
    int64_t load[MAX_PARTS] = {0}, total = 0;
    for (int i = 0; i < pl->nfn; i++)
        if (!LLVMIsDeclaration(pl->fn[i]) && find(up, i) == i) {
            total += size[i];
            if (pinned[i])
                load[0] += size[i];
        }
    int *where = calloc(n, sizeof *where);
    if (!where) {
        free(up), free(pinned), free(size), free(order);
        plan_free(pl);
        return -1;
    }
    for (int g = 0; g < ngroups; g++) {
        int best = 0;
        for (int p = 1; p < pl->nparts; p++)
            if (share[p] * (double)total - (double)load[p] >
                share[best] * (double)total - (double)load[best])
                best = p;
        where[order[g]] = best;
        load[best] += size[order[g]];
    }
    /* no empty partitions: the ones left keep their order */
    int renum[MAX_PARTS], used = 0;
    for (int p = 0; p < pl->nparts; p++) {
        renum[p] = p == 0 || load[p] > 0 ? used++ : -1;
        if (renum[p] >= 0)
            pl->load[renum[p]] = load[p];
    }
    for (int g = 0; g < ngroups; g++)
        where[order[g]] = renum[where[order[g]]];
    pl->nparts = used;
    for (int i = 0; i < pl->nfn; i++)
        pl->part[i] = LLVMIsDeclaration(pl->fn[i]) ? -1 : where[find(up, i)];
    for (int i = 0; i < pl->nfn; i++) {
        LLVMLinkage l = LLVMGetLinkage(pl->fn[i]);
        if (pl->part[i] >= 0 && (l == LLVMInternalLinkage || l == LLVMPrivateLinkage))
            visit_uses(pl->fn[i], pl->fn[i], export_use, pl);
    }
    free(up), free(pinned), free(size), free(order), free(where);
    return 0;
}

/* ---- one partition ------------------------------------------------------ */

/* f becomes a declaration: every instruction's value replaced by poison
 * (they may use each other across blocks), then the instructions and the
 * blocks deleted. */
static void drop_body(LLVMValueRef f)
{
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i))
            if (LLVMGetTypeKind(LLVMTypeOf(i)) != LLVMVoidTypeKind)
                LLVMReplaceAllUsesWith(i, LLVMGetPoison(LLVMTypeOf(i)));
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b)) {
        LLVMValueRef i;
        while ((i = LLVMGetLastInstruction(b)))
            LLVMInstructionEraseFromParent(i);
    }
    LLVMBasicBlockRef b;
    while ((b = LLVMGetFirstBasicBlock(f)))
        LLVMDeleteBasicBlock(b);
    LLVMSetLinkage(f, LLVMExternalLinkage);
}

static void make_hidden(LLVMValueRef g)
{
    LLVMSetLinkage(g, LLVMExternalLinkage);
    LLVMSetVisibility(g, LLVMHiddenVisibility);
    LLVMSetUnnamedAddress(g, LLVMNoUnnamedAddr);
}

/* mod (a copy of the planned module, functions in the same order) cut
 * down to partition p.  A lazily read copy (lazy: bodies still in the
 * bitcode) has this partition's bodies read in first; another partition's
 * body is read only when something here refers to its function, which
 * then becomes a declaration (mergefunc's thunks across partitions, the
 * descriptor's pointers), and dropped right away; the others are deleted
 * unread below.  An empty legacy function pass manager is the C API's way
 * to read in one body (llvm::FunctionPassManager::run materializes it). */
static void cut_partition(LLVMModuleRef mod, const Plan *pl, int p, bool lazy)
{
    LLVMPassManagerRef reader = lazy ? LLVMCreateFunctionPassManagerForModule(mod) : NULL;
    int k = 0;
    if (reader)
        for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f), k++)
            if (pl->part[k] == p)
                LLVMRunFunctionPassManager(reader, f);
    k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f), k++) {
        if (pl->part[k] >= 0 && pl->part[k] != p) {
            if (reader && LLVMGetFirstUse(f))
                LLVMRunFunctionPassManager(reader, f);
            drop_body(f);
        }
        if (pl->exported[k])
            make_hidden(f);
    }
    if (reader)
        LLVMDisposePassManager(reader);
    /* the other partitions' functions nothing here calls go (the order
     * still matches the plan's: nothing was deleted above) */
    k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod), next; f; f = next, k++) {
        next = LLVMGetNextFunction(f);
        if (pl->part[k] >= 0 && pl->part[k] != p && !LLVMGetFirstUse(f))
            LLVMDeleteFunction(f);
    }
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g)) {
        if (LLVMIsDeclaration(g))
            continue;
        LLVMLinkage l = LLVMGetLinkage(g);
        int local = l == LLVMInternalLinkage || l == LLVMPrivateLinkage;
        if (local && LLVMIsGlobalConstant(g))
            continue;   /* a copy in every partition */
        if (local)
            make_hidden(g);
        if (p != 0) {
            LLVMSetInitializer(g, NULL);
            LLVMSetLinkage(g, LLVMExternalLinkage);
        }
    }
}

typedef struct Job {
    const Plan *pl;
    int part;
    LLVMModuleRef mod;          /* partition 0: the codegen's module, cut in place */
    LLVMMemoryBufferRef bitcode;    /* the others parse this */
    int opt_level;
    LLVMMemoryBufferRef obj;    /* out */
    double pipeline_s, codegen_s;   /* out */
    char err[512];              /* out, when obj is NULL */
} Job;

/* One partition to an object, with the taking thread's target machine. */
static void run_job(Job *j, LLVMTargetMachineRef tm)
{
    LLVMContextRef ctx = NULL;
    if (!j->mod) {
        /* the module takes the view (not the bytes, which every job reads) */
        ctx = LLVMContextCreate();
        LLVMMemoryBufferRef view = LLVMCreateMemoryBufferWithMemoryRange(
            LLVMGetBufferStart(j->bitcode), LLVMGetBufferSize(j->bitcode), "partition", 0);
        if (LLVMGetBitcodeModuleInContext2(ctx, view, &j->mod)) {
            snprintf(j->err, sizeof j->err, "cannot read back the module's bitcode");
            LLVMDisposeMemoryBuffer(view);
            LLVMContextDispose(ctx);
            j->mod = NULL;
            return;
        }
    }
    cut_partition(j->mod, j->pl, j->part, ctx != NULL);
    char *msg = NULL;
    double t0 = kp_seconds();
    int rc = kp_llvm_run_pipeline(j->mod, tm, j->opt_level, j->err, sizeof j->err);
    double t1 = kp_seconds();
    if (rc == 0 && LLVMTargetMachineEmitToMemoryBuffer(tm, j->mod, LLVMObjectFile, &msg, &j->obj)) {
        snprintf(j->err, sizeof j->err, "code generation failed: %s", msg ? msg : "?");
        j->obj = NULL;
    }
    j->pipeline_s = t1 - t0;
    j->codegen_s = kp_seconds() - t1;
    LLVMDisposeMessage(msg);
    if (ctx) {
        LLVMDisposeModule(j->mod);
        LLVMContextDispose(ctx);
        j->mod = NULL;
    }
}

/* The partitions in plan order, taken by the threads as they come free;
 * the first thread to find none left runs cg->side_job. */
typedef struct Queue {
    Job *job;
    int n;
    atomic_int next, side_taken;
    void (*side)(void *arg);
    void *side_arg;
} Queue;

typedef struct Worker {
    Queue *q;
    LLVMTargetMachineRef tm;    /* each thread its own */
} Worker;

static void *run_queue(void *arg)
{
    Worker *w = arg;
    Queue *q = w->q;
    int i;
    while ((i = atomic_fetch_add(&q->next, 1)) < q->n)
        run_job(&q->job[i], w->tm);
    if (q->side && !atomic_exchange(&q->side_taken, 1))
        q->side(q->side_arg);
    return NULL;
}

int kp_llvm_objects(KpCodegen *cg, int jobs, LLVMMemoryBufferRef *objs, int *nobjs, KpDiag *d)
{
    *nobjs = 0;
    if (!cg || !cg->mod)
        return kp_error(d, "internal error: no module to compile");
    int threads = jobs > 0 ? jobs : kp_llvm_default_jobs();
    threads = threads > KP_LLVM_MAX_JOBS ? KP_LLVM_MAX_JOBS : threads;
    Plan pl;
    if (plan_parts(cg->mod, threads, &pl) < 0)
        return kp_error(d, "out of memory");
    threads = threads < pl.nparts ? threads : pl.nparts;
    Job job[MAX_PARTS];
    memset(job, 0, sizeof job);
    LLVMMemoryBufferRef bc = pl.nparts > 1 ? LLVMWriteBitcodeToMemoryBuffer(cg->mod) : NULL;
    for (int p = 0; p < pl.nparts; p++)
        job[p] = (Job){.pl = &pl, .part = p, .bitcode = bc, .opt_level = cg->cfg.opt_level};
    job[0].mod = cg->mod;
    Queue q = {.job = job, .n = pl.nparts, .side = cg->side_job, .side_arg = cg->side_arg};
    Worker w[KP_LLVM_MAX_JOBS];
    pthread_t tid[KP_LLVM_MAX_JOBS];
    int started[KP_LLVM_MAX_JOBS] = {0};
    w[0] = (Worker){.q = &q, .tm = cg->tm};
    for (int t = 1; t < threads; t++) {     /* every target machine before any thread runs */
        w[t] = (Worker){.q = &q, .tm = kp_llvm_target_machine(&cg->cfg, d)};
        if (!w[t].tm) {         /* fewer threads, then */
            threads = t;
            break;
        }
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, run_queue, &w[t]) == 0;
    run_queue(&w[0]);           /* with no thread to be had, here it all runs */
    int rc = 0;
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        if (w[t].tm)
            LLVMDisposeTargetMachine(w[t].tm);
    }
    /* the codegen's module was partition 0, cut: no use to anyone now */
    LLVMDisposeModule(cg->mod);
    cg->mod = NULL;
    cg->parts.n = pl.nparts;
    cg->parts.threads = threads;
    for (int p = 0; p < pl.nparts; p++) {
        cg->parts.insts[p] = pl.load[p];
        cg->parts.pipeline_ms[p] = 1e3 * job[p].pipeline_s;
        cg->parts.codegen_ms[p] = 1e3 * job[p].codegen_s;
        if (rc == 0 && !job[p].obj)
            rc = kp_error(d, "internal error: partition %d of %d: %s", p, pl.nparts, job[p].err);
    }
    for (int p = 0; p < pl.nparts; p++) {
        if (rc == 0)
            objs[(*nobjs)++] = job[p].obj;
        else if (job[p].obj)
            LLVMDisposeMemoryBuffer(job[p].obj);
    }
    if (bc)
        LLVMDisposeMemoryBuffer(bc);
    plan_free(&pl);
    return rc;
}

KpPartTimes kp_llvm_part_times(const KpCodegen *cg)
{
    return cg ? cg->parts : (KpPartTimes){0};
}
