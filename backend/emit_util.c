/*
 * emit_util.c — building blocks for the emitters: constants, memory,
 * counted loops, parallel loops through krt_parallel_for, reductions.
 */
#include <stdio.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "emit.h"

LLVMValueRef kp_i64(KpEmit *e, int64_t v)
{
    return LLVMConstInt(e->i64, (unsigned long long)v, 1);
}

LLVMValueRef kp_iadd(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildNSWAdd(e->b, a, b, "");
}

LLVMValueRef kp_lane_index(KpEmit *e, LLVMValueRef base, int64_t s)
{
    LLVMTypeRef vt = LLVMVectorType(e->i64, (unsigned)e->vw);
    LLVMValueRef elts[64];
    for (int l = 0; l < e->vw; l++)
        elts[l] = LLVMConstInt(e->i64, (unsigned long long)(l * s), 1);
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(vt), base, kp_i32(e, 0), "");
    v = LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(vt),
                               LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw)), "");
    return LLVMBuildAdd(e->b, v, LLVMConstVector(elts, (unsigned)e->vw), "");
}

/* A call to the runtime's `name`, which takes nothing and returns ret. */
static LLVMValueRef runtime_get(KpEmit *e, const char *name, LLVMTypeRef ret)
{
    LLVMTypeRef ty = LLVMFunctionType(ret, NULL, 0, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(e->mod, name);
    if (!fn)
        fn = LLVMAddFunction(e->mod, name, ty);
    return LLVMBuildCall2(e->b, ty, fn, NULL, 0, "");
}

LLVMValueRef kp_scratch(KpEmit *e)
{
    return runtime_get(e, "krt_scratch", e->ptr);
}

/* locality 3: into L1 (prefetcht0 on x86), 2: into L2 (prefetcht1) */
static void prefetch(KpEmit *e, LLVMValueRef p, LLVMValueRef at, int locality)
{
    LLVMValueRef ptr = LLVMBuildGEP2(e->b, e->f32, p, &at, 1, "");
    LLVMTypeRef over[1] = {e->ptr};
    LLVMValueRef args[4] = {ptr, kp_i32(e, 0), kp_i32(e, locality), kp_i32(e, 1)};
    kp_intrinsic(e, "llvm.prefetch", over, 1, args, 4);
}

void kp_prefetch(KpEmit *e, LLVMValueRef p, LLVMValueRef at)
{
    prefetch(e, p, at, 3);
}

void kp_prefetch_l2(KpEmit *e, LLVMValueRef p, LLVMValueRef at)
{
    prefetch(e, p, at, 2);
}

void kp_prefetch_span(KpEmit *e, LLVMValueRef p, LLVMValueRef at, int64_t floats)
{
    /* a line every 16 floats, and the last float's, which that stride
     * misses when the run does not start on a line */
    for (int64_t off = 0; off < floats; off += 16)
        kp_prefetch(e, p, kp_iaddc(e, at, off));
    if (floats > 1)
        kp_prefetch(e, p, kp_iaddc(e, at, floats - 1));
}

LLVMValueRef kp_iaddc(KpEmit *e, LLVMValueRef a, int64_t c)
{
    return c == 0 ? a : LLVMBuildNSWAdd(e->b, a, kp_i64(e, c), "");
}

LLVMValueRef kp_imulc(KpEmit *e, LLVMValueRef a, int64_t c)
{
    return c == 1 ? a : LLVMBuildNSWMul(e->b, a, kp_i64(e, c), "");
}

LLVMBasicBlockRef kp_if_begin(KpEmit *e, LLVMValueRef cond, const char *name)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(e->ctx, fn, name);
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(e->ctx, fn, "endif");
    LLVMBuildCondBr(e->b, cond, then, join);
    LLVMPositionBuilderAtEnd(e->b, then);
    return join;
}

void kp_if_end(KpEmit *e, LLVMBasicBlockRef join)
{
    LLVMBuildBr(e->b, join);
    LLVMPositionBuilderAtEnd(e->b, join);
}

LLVMBasicBlockRef kp_last_begin(KpEmit *e, LLVMValueRef counter, LLVMValueRef parts)
{
    LLVMValueRef done = LLVMBuildAtomicRMW(e->b, LLVMAtomicRMWBinOpAdd, counter, kp_i64(e, 1),
                                           LLVMAtomicOrderingAcquireRelease, 0);
    LLVMValueRef last = LLVMBuildICmp(e->b, LLVMIntEQ, done, kp_iaddc(e, parts, -1), "last");
    return kp_if_begin(e, last, "last");
}

void kp_last_end(KpEmit *e, LLVMValueRef counter, LLVMBasicBlockRef join)
{
    LLVMValueRef reset = LLVMBuildStore(e->b, kp_i64(e, 0), counter);
    LLVMSetOrdering(reset, LLVMAtomicOrderingRelease);
    LLVMSetAlignment(reset, 8);
    kp_if_end(e, join);
}

void kp_chunk_samples(KpEmit *e, LLVMValueRef n, LLVMValueRef chunks, LLVMValueRef chunk, LLVMValueRef *g0,
                      LLVMValueRef *g1)
{
    LLVMValueRef q = LLVMBuildUDiv(e->b, n, chunks, "");
    LLVMValueRef r = LLVMBuildURem(e->b, n, chunks, "");
    *g0 = kp_iadd(e, LLVMBuildNSWMul(e->b, chunk, q, ""), kp_min_i64(e, chunk, r));
    LLVMValueRef c1 = kp_iaddc(e, chunk, 1);
    *g1 = kp_iadd(e, LLVMBuildNSWMul(e->b, c1, q, ""), kp_min_i64(e, c1, r));
}

LLVMValueRef kp_i32(KpEmit *e, int32_t v)
{
    return LLVMConstInt(e->i32, (unsigned long long)(int64_t)v, 1);
}

LLVMValueRef kp_fconst(LLVMTypeRef ty, double v)
{
    if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind)
        return LLVMConstReal(ty, v);
    LLVMValueRef elts[64];
    unsigned n = LLVMGetVectorSize(ty);
    LLVMValueRef c = LLVMConstReal(LLVMGetElementType(ty), v);
    for (unsigned i = 0; i < n; i++)
        elts[i] = c;
    return LLVMConstVector(elts, n);
}

LLVMValueRef kp_iconst_like(KpEmit *e, LLVMTypeRef fty, int32_t v)
{
    LLVMValueRef c = kp_i32(e, v);
    if (LLVMGetTypeKind(fty) != LLVMVectorTypeKind)
        return c;
    LLVMValueRef elts[64];
    unsigned n = LLVMGetVectorSize(fty);
    for (unsigned i = 0; i < n; i++)
        elts[i] = c;
    return LLVMConstVector(elts, n);
}

LLVMValueRef kp_interleave(KpEmit *e, LLVMValueRef a, LLVMValueRef b, bool upper)
{
    LLVMValueRef idx[64];
    for (int l = 0; l < e->vw; l++)
        idx[l] = kp_i32(e, (upper ? e->vw / 2 : 0) + l / 2 + (l % 2) * e->vw);
    return LLVMBuildShuffleVector(e->b, a, b, LLVMConstVector(idx, (unsigned)e->vw), "");
}

void kp_transpose_vw(KpEmit *e, LLVMValueRef *row)
{
    int vw = e->vw;
    LLVMValueRef next[64];
    for (int round = 1; round < vw; round *= 2) {
        for (int i = 0; i < vw / 2; i++)
            for (int h = 0; h < 2; h++)
                next[2 * i + h] = kp_interleave(e, row[i], row[i + vw / 2], h);
        memcpy(row, next, sizeof(LLVMValueRef) * (size_t)vw);
    }
}

LLVMValueRef kp_splat(KpEmit *e, LLVMValueRef s)
{
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), (unsigned)e->vw);
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(vt), s, kp_i32(e, 0), "");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(e->i32, (unsigned)e->vw));
    return LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(vt), zeros, "");
}

LLVMValueRef kp_mask_first(KpEmit *e, int k)
{
    LLVMValueRef elts[64];
    for (int i = 0; i < e->vw; i++)
        elts[i] = LLVMConstInt(e->i1, i < k, 0);
    return LLVMConstVector(elts, (unsigned)e->vw);
}

LLVMValueRef kp_alloca(KpEmit *e, LLVMTypeRef ty, const char *name)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(fn);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(e->ctx);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(b, first);
    else
        LLVMPositionBuilderAtEnd(b, entry);
    LLVMValueRef slot = LLVMBuildAlloca(b, ty, name);
    LLVMDisposeBuilder(b);
    return slot;
}

LLVMValueRef kp_intrinsic(KpEmit *e, const char *name, LLVMTypeRef *over, int nover,
                          LLVMValueRef *args, int nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(e->mod, id, over, (size_t)nover);
    LLVMTypeRef ty = LLVMIntrinsicGetType(e->ctx, id, over, (size_t)nover);
    return LLVMBuildCall2(e->b, ty, fn, args, (unsigned)nargs, "");
}

LLVMValueRef kp_gep(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    return LLVMBuildInBoundsGEP2(e->b, e->f32, p, &i, 1, "");
}

LLVMValueRef kp_load_vec(KpEmit *e, LLVMValueRef p, LLVMValueRef i)
{
    LLVMValueRef v = LLVMBuildLoad2(e->b, e->vec, kp_gep(e, p, i), "");
    LLVMSetAlignment(v, 4);
    return v;
}

void kp_store_vec(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i)
{
    LLVMValueRef s = LLVMBuildStore(e->b, v, kp_gep(e, p, i));
    LLVMSetAlignment(s, 4);
}

LLVMValueRef kp_load_vec_where(KpEmit *e, LLVMValueRef p, LLVMValueRef i, LLVMValueRef mask,
                               double passthru)
{
    LLVMTypeRef over[2] = {e->vec, e->ptr};
    LLVMValueRef args[4] = {kp_gep(e, p, i), kp_i32(e, 4), mask, kp_fconst(e->vec, passthru)};
    return kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
}

void kp_store_vec_where(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, LLVMValueRef mask)
{
    LLVMTypeRef over[2] = {e->vec, e->ptr};
    LLVMValueRef args[4] = {v, kp_gep(e, p, i), kp_i32(e, 4), mask};
    kp_intrinsic(e, "llvm.masked.store", over, 2, args, 4);
}

LLVMValueRef kp_load_vec_masked(KpEmit *e, LLVMValueRef p, LLVMValueRef i, int k,
                                double passthru)
{
    return kp_load_vec_where(e, p, i, kp_mask_first(e, k), passthru);
}

void kp_store_vec_masked(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i, int k)
{
    kp_store_vec_where(e, v, p, i, kp_mask_first(e, k));
}

/* the address of a masked-off lane may lie outside the tensor: plain GEP */
static LLVMValueRef lane_ptrs(KpEmit *e, LLVMValueRef p, LLVMValueRef idx)
{
    return LLVMBuildGEP2(e->b, e->f32, p, &idx, 1, "");
}

LLVMValueRef kp_gather_where(KpEmit *e, LLVMValueRef p, LLVMValueRef idx, LLVMValueRef mask)
{
    LLVMValueRef ptrs = lane_ptrs(e, p, idx);
    LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {ptrs, kp_i32(e, 4), mask, kp_fconst(e->vec, 0.0)};
    return kp_intrinsic(e, "llvm.masked.gather", over, 2, args, 4);
}

void kp_scatter_where(KpEmit *e, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx, LLVMValueRef mask)
{
    LLVMValueRef ptrs = lane_ptrs(e, p, idx);
    LLVMTypeRef over[2] = {e->vec, LLVMTypeOf(ptrs)};
    LLVMValueRef args[4] = {v, ptrs, kp_i32(e, 4), mask};
    kp_intrinsic(e, "llvm.masked.scatter", over, 2, args, 4);
}

void kp_loop_begin(KpEmit *e, KpLoop *l, LLVMValueRef begin, LLVMValueRef end, int64_t step,
                   const char *name)
{
    char buf[64];
    l->pre = LLVMGetInsertBlock(e->b);
    LLVMValueRef fn = LLVMGetBasicBlockParent(l->pre);
    snprintf(buf, sizeof buf, "%s.head", name);
    l->head = LLVMAppendBasicBlockInContext(e->ctx, fn, buf);
    snprintf(buf, sizeof buf, "%s.body", name);
    l->body = LLVMAppendBasicBlockInContext(e->ctx, fn, buf);
    snprintf(buf, sizeof buf, "%s.exit", name);
    l->exit = LLVMAppendBasicBlockInContext(e->ctx, fn, buf);
    l->step = kp_i64(e, step);
    LLVMBuildBr(e->b, l->head);
    LLVMPositionBuilderAtEnd(e->b, l->head);
    l->iv = LLVMBuildPhi(e->b, e->i64, name);
    LLVMAddIncoming(l->iv, &begin, &l->pre, 1);
    LLVMValueRef more = LLVMBuildICmp(e->b, LLVMIntSLT, l->iv, end, "");
    LLVMBuildCondBr(e->b, more, l->body, l->exit);
    LLVMPositionBuilderAtEnd(e->b, l->body);
}

/* The loop's !llvm.loop node on the latch's branch: a distinct node whose
 * first operand is itself, then the hints flags asks for. */
static void loop_hints(KpEmit *e, LLVMValueRef br, unsigned flags)
{
    LLVMMetadataRef ops[3];
    unsigned n = 1;
    if (!(flags & KP_LOOP_UNROLL)) {
        static const char key[] = "llvm.loop.unroll.disable";
        LLVMMetadataRef s = LLVMMDStringInContext2(e->ctx, key, sizeof key - 1);
        ops[n++] = LLVMMDNodeInContext2(e->ctx, &s, 1);
    }
    if (flags & KP_LOOP_NO_VECTORIZE) {
        static const char key[] = "llvm.loop.vectorize.enable";
        LLVMMetadataRef s[2] = {LLVMMDStringInContext2(e->ctx, key, sizeof key - 1),
                                LLVMValueAsMetadata(LLVMConstInt(e->i1, 0, 0))};
        ops[n++] = LLVMMDNodeInContext2(e->ctx, s, 2);
    }
    if (n == 1)
        return;
    ops[0] = LLVMTemporaryMDNode(e->ctx, NULL, 0);
    LLVMMetadataRef id = LLVMMDNodeInContext2(e->ctx, ops, n);
    LLVMMetadataReplaceAllUsesWith(ops[0], id);
    unsigned kind = LLVMGetMDKindIDInContext(e->ctx, "llvm.loop", 9);
    LLVMSetMetadata(br, kind, LLVMMetadataAsValue(e->ctx, id));
}

void kp_loop_end_with(KpEmit *e, KpLoop *l, unsigned flags)
{
    LLVMValueRef next = LLVMBuildNSWAdd(e->b, l->iv, l->step, "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMValueRef br = LLVMBuildBr(e->b, l->head);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(e->b, l->exit);
    loop_hints(e, br, flags);
}

void kp_loop_end(KpEmit *e, KpLoop *l)
{
    kp_loop_end_with(e, l, 0);
}

void kp_loop_end_unrolled(KpEmit *e, KpLoop *l)
{
    kp_loop_end_with(e, l, KP_LOOP_UNROLL);
}

LLVMValueRef kp_min_i64(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, b, ""), a, b, "");
}

LLVMValueRef kp_max_i64(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntSGT, a, b, ""), a, b, "");
}

static void add_noalias(KpEmit *e, LLVMValueRef fn, unsigned index)
{
    unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
    LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(e->ctx, kind, 0));
}

/* begin + c*q + min(c, r): where chunk c of krt_parallel_for's cut starts */
static LLVMValueRef chunk_start(KpEmit *e, LLVMValueRef begin, LLVMValueRef q, LLVMValueRef r,
                                LLVMValueRef c)
{
    LLVMValueRef at = LLVMBuildNSWAdd(e->b, begin, LLVMBuildNSWMul(e->b, c, q, ""), "");
    return LLVMBuildNSWAdd(e->b, at, kp_min_i64(e, c, r), "");
}

/* In a group member: kernel(args..., b, e) over share t of nt (the last
 * two argument slots are filled here). */
static void call_share(KpEmit *e, LLVMTypeRef kty, LLVMValueRef kernel, LLVMValueRef *args,
                       unsigned nk, LLVMValueRef begin, LLVMValueRef end, int parallel)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(e->ctx, fn, "share.run");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "share.done");
    LLVMValueRef b = begin, en = end;
    if (parallel) {
        LLVMValueRef count = LLVMBuildNSWSub(e->b, end, begin, "count");
        LLVMValueRef q = LLVMBuildSDiv(e->b, count, e->share_nt, "q");
        LLVMValueRef r = LLVMBuildSRem(e->b, count, e->share_nt, "r");
        b = chunk_start(e, begin, q, r, e->share_t);
        en = chunk_start(e, begin, q, r, LLVMBuildNSWAdd(e->b, e->share_t, kp_i64(e, 1), ""));
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, b, en, ""), run, done);
    } else {
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, e->share_t, kp_i64(e, 0), ""), run,
                        done);
    }
    LLVMPositionBuilderAtEnd(e->b, run);
    args[nk - 2] = b;
    args[nk - 1] = en;
    LLVMBuildCall2(e->b, kty, kernel, args, nk, "");
    LLVMBuildBr(e->b, done);
    LLVMPositionBuilderAtEnd(e->b, done);
}

void kp_emit_parallel(KpEmit *e, const char *name, LLVMValueRef begin, LLVMValueRef end,
                      int parallel, KpKernelGen gen, void *user)
{
    LLVMBasicBlockRef caller = LLVMGetInsertBlock(e->b);
    char buf[128];
    /* scalars after the pointers: n, then the seed if the node has one */
    int nsc = e->seed ? 2 : 1;

    /* kernel(p0..pk, n, [seed,] begin, end) */
    LLVMTypeRef kparams[KP_MAX_ARGS];
    for (int i = 0; i < e->nptr; i++)
        kparams[i] = e->ptr;
    for (int i = 0; i < nsc + 2; i++)
        kparams[e->nptr + i] = e->i64;
    unsigned nk = (unsigned)(e->nptr + nsc + 2);
    LLVMTypeRef kty = LLVMFunctionType(e->void_t, kparams, nk, 0);
    size_t fnlen;
    const char *fname = LLVMGetValueName2(LLVMGetBasicBlockParent(caller), &fnlen);
    char base[96];
    snprintf(base, sizeof base, "%.*s.%s", (int)fnlen, fname, name);
    snprintf(buf, sizeof buf, "%s.kernel", base);
    LLVMValueRef kernel = LLVMAddFunction(e->mod, buf, kty);
    LLVMSetLinkage(kernel, LLVMInternalLinkage);
    /* its one call site (the body, the node function or a group's share)
     * takes it in before the pipeline simplifies anything: the inliner
     * would take it anyway, but only after simplifying the kernel alone
     * and then again inside its caller (docs/compile-time.md, item 6) */
    unsigned always = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
    LLVMAddAttributeAtIndex(kernel, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->ctx, always, 0));
    for (int i = 0; i < e->nptr; i++)
        if (e->noalias[i])
            add_noalias(e, kernel, (unsigned)i + 1);
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, kernel, "entry"));
    KpKernelArgs a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < e->nptr; i++)
        a.p[i] = LLVMGetParam(kernel, (unsigned)i);
    a.n = LLVMGetParam(kernel, (unsigned)e->nptr);
    if (e->seed)
        a.seed = LLVMGetParam(kernel, (unsigned)e->nptr + 1);
    a.begin = LLVMGetParam(kernel, (unsigned)(e->nptr + nsc));
    a.end = LLVMGetParam(kernel, (unsigned)(e->nptr + nsc + 1));
    LLVMValueRef saved_n = e->n, saved_seed = e->seed;
    e->n = a.n;
    e->seed = a.seed;
    gen(e, &a, user);
    e->n = saved_n;
    e->seed = saved_seed;
    LLVMBuildRetVoid(e->b);

    LLVMValueRef args[KP_MAX_ARGS];
    for (int i = 0; i < e->nptr; i++)
        args[i] = e->ptr_arg[i];
    args[e->nptr] = e->n;
    if (e->seed)
        args[e->nptr + 1] = e->seed;
    e->regions++;
    e->forks += parallel != 0;
    if (e->share_t) {
        LLVMPositionBuilderAtEnd(e->b, caller);
        call_share(e, kty, kernel, args, nk, begin, end, parallel);
        return;
    }
    if (!parallel) {
        LLVMPositionBuilderAtEnd(e->b, caller);
        args[e->nptr + nsc] = begin;
        args[e->nptr + nsc + 1] = end;
        LLVMBuildCall2(e->b, kty, kernel, args, nk, "");
        return;
    }

    /* ctx = {p0..pk, n, [seed]}; body(ctx, b, e) unpacks it and calls the kernel */
    LLVMTypeRef fields[KP_MAX_PTR + 2];
    for (int i = 0; i < e->nptr; i++)
        fields[i] = e->ptr;
    for (int i = 0; i < nsc; i++)
        fields[e->nptr + i] = e->i64;
    unsigned nf = (unsigned)(e->nptr + nsc);
    LLVMTypeRef ctx_ty = LLVMStructTypeInContext(e->ctx, fields, nf, 0);
    snprintf(buf, sizeof buf, "%s.body", base);
    LLVMValueRef body = LLVMAddFunction(e->mod, buf, e->body_ty);
    LLVMSetLinkage(body, LLVMInternalLinkage);
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, body, "entry"));
    LLVMValueRef ctx = LLVMGetParam(body, 0);
    LLVMValueRef kargs[KP_MAX_ARGS];
    for (unsigned i = 0; i < nf; i++) {
        LLVMValueRef f = LLVMBuildStructGEP2(e->b, ctx_ty, ctx, i, "");
        kargs[i] = LLVMBuildLoad2(e->b, fields[i], f, "");
    }
    kargs[nf] = LLVMGetParam(body, 1);
    kargs[nf + 1] = LLVMGetParam(body, 2);
    LLVMBuildCall2(e->b, kty, kernel, kargs, nk, "");
    LLVMBuildRetVoid(e->b);

    LLVMPositionBuilderAtEnd(e->b, caller);
    LLVMValueRef slot = kp_alloca(e, ctx_ty, "ctx");
    for (unsigned i = 0; i < nf; i++)
        LLVMBuildStore(e->b, args[i], LLVMBuildStructGEP2(e->b, ctx_ty, slot, i, ""));
    LLVMValueRef pargs[4] = {body, slot, begin, end};
    LLVMBuildCall2(e->b, e->pfor_ty, e->pfor, pargs, 4, "");
}

typedef struct Units {
    KpKernelGen gen;
    void *user;
    int64_t per_sample, per_item;
} Units;

/* items [begin, end) as units [begin*per, min(end*per, n*per_sample)) */
static void units_kernel(KpEmit *e, const KpKernelArgs *a, void *user)
{
    const Units *u = user;
    KpKernelArgs b = *a;
    LLVMValueRef units = LLVMBuildNSWMul(e->b, a->n, kp_i64(e, u->per_sample), "units");
    b.begin = LLVMBuildNSWMul(e->b, a->begin, kp_i64(e, u->per_item), "");
    b.end = kp_min_i64(e, LLVMBuildNSWMul(e->b, a->end, kp_i64(e, u->per_item), ""), units);
    u->gen(e, &b, u->user);
}

LLVMBasicBlockRef kp_prologue_begin(KpEmit *e)
{
    if (!e->share_t)
        return NULL;
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(e->b));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(e->ctx, KP_PROLOGUE_ATTR,
                                                      (unsigned)strlen(KP_PROLOGUE_ATTR), "", 0));
    LLVMBasicBlockRef pro = LLVMAppendBasicBlockInContext(e->ctx, fn, "prologue");
    LLVMBasicBlockRef share = LLVMAppendBasicBlockInContext(e->ctx, fn, "share");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, e->share_t, kp_i64(e, -1), ""), pro, share);
    LLVMPositionBuilderAtEnd(e->b, pro);
    return share;
}

void kp_prologue_end(KpEmit *e, LLVMBasicBlockRef share)
{
    if (!share)
        return;
    LLVMBuildRetVoid(e->b);
    LLVMPositionBuilderAtEnd(e->b, share);
}

void kp_emit_parallel_units(KpEmit *e, const char *name, int64_t per_sample, int64_t unit_elems,
                            KpKernelGen gen, void *user)
{
    Units u = {gen, user, per_sample, (KP_GRAIN + unit_elems - 1) / (unit_elems > 0 ? unit_elems : 1)};
    LLVMValueRef units = LLVMBuildNSWMul(e->b, e->n, kp_i64(e, per_sample), "units");
    LLVMValueRef items = LLVMBuildSDiv(e->b, LLVMBuildNSWAdd(e->b, units, kp_i64(e, u.per_item - 1), ""),
                                       kp_i64(e, u.per_item), "items");
    kp_emit_parallel(e, name, kp_i64(e, 0), items, e->g->max_batch * per_sample > u.per_item,
                     units_kernel, &u);
}

LLVMValueRef kp_fma(KpEmit *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef ty = LLVMTypeOf(a);
    LLVMValueRef args[3] = {a, b, c};
    return kp_intrinsic(e, "llvm.fma", &ty, 1, args, 3);
}

LLVMValueRef kp_max(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    LLVMTypeRef ty = LLVMTypeOf(a);
    LLVMValueRef args[2] = {a, b};
    return kp_intrinsic(e, "llvm.maxnum", &ty, 1, args, 2);
}

LLVMValueRef kp_min(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    LLVMTypeRef ty = LLVMTypeOf(a);
    LLVMValueRef args[2] = {a, b};
    return kp_intrinsic(e, "llvm.minnum", &ty, 1, args, 2);
}

/* Fold the upper half of v onto the lower half until one lane is left. */
static LLVMValueRef reduce(KpEmit *e, LLVMValueRef v, int is_max)
{
    unsigned w = LLVMGetVectorSize(LLVMTypeOf(v));
    LLVMValueRef poison = LLVMGetPoison(LLVMTypeOf(v));
    while (w > 1) {
        LLVMValueRef lo_idx[32], hi_idx[32];
        for (unsigned i = 0; i < w / 2; i++) {
            lo_idx[i] = LLVMConstInt(e->i32, i, 0);
            hi_idx[i] = LLVMConstInt(e->i32, i + w / 2, 0);
        }
        LLVMValueRef lo = LLVMBuildShuffleVector(e->b, v, poison, LLVMConstVector(lo_idx, w / 2), "");
        LLVMValueRef hi = LLVMBuildShuffleVector(e->b, v, poison, LLVMConstVector(hi_idx, w / 2), "");
        v = is_max ? kp_max(e, lo, hi) : LLVMBuildFAdd(e->b, lo, hi, "");
        w /= 2;
        poison = LLVMGetPoison(LLVMTypeOf(v));
    }
    return LLVMBuildExtractElement(e->b, v, kp_i32(e, 0), "");
}

LLVMValueRef kp_reduce_add(KpEmit *e, LLVMValueRef v)
{
    return reduce(e, v, 0);
}

LLVMValueRef kp_reduce_max(KpEmit *e, LLVMValueRef v)
{
    return reduce(e, v, 1);
}

LLVMValueRef kp_sum_lanes(KpEmit *e, LLVMValueRef *v)
{
    LLVMValueRef lo[64], hi[64];
    for (int i = 0; i < e->vw; i++)
        lo[i] = kp_i32(e, 2 * i), hi[i] = kp_i32(e, 2 * i + 1);
    LLVMValueRef mlo = LLVMConstVector(lo, (unsigned)e->vw), mhi = LLVMConstVector(hi, (unsigned)e->vw);
    for (int w = e->vw; w > 1; w /= 2)
        for (int p = 0; p < w / 2; p++) {
            LLVMValueRef a = LLVMBuildShuffleVector(e->b, v[2 * p], v[2 * p + 1], mlo, "");
            LLVMValueRef b = LLVMBuildShuffleVector(e->b, v[2 * p], v[2 * p + 1], mhi, "");
            v[p] = LLVMBuildFAdd(e->b, a, b, "");
        }
    return v[0];
}

LLVMValueRef kp_numel(KpEmit *e, const KpValue *v)
{
    return LLVMBuildNSWMul(e->b, e->n, kp_i64(e, kp_value_sample_size(v)), "");
}

static bool range_held_by_group(const KpEmit *e, int64_t at, int group)
{
    for (int i = 0; i < e->nshared_ranges; i++)
        if (e->shared_ranges[i].at == at && e->shared_ranges[i].group == group)
            return true;
    return false;
}

int64_t kp_scratch_shared_take(KpEmit *e, const char *kind, int64_t bytes, int64_t layout)
{
    bytes = kp_round_up(bytes, 64);
    if (bytes == 0)
        return e->scratch_shared_bytes;
    int group = e->node ? e->node->group : 0;
    int64_t at = -1;
    /* once the list is full a holder goes unrecorded, and a range could go
     * to a member of its group: from then on every range is a new one */
    bool full = e->nshared_ranges == KP_MAX_SHARED_RANGES;
    for (int i = 0; i < e->nshared_ranges && at < 0 && !full; i++) {
        const struct KpSharedRange *r = &e->shared_ranges[i];
        if (strcmp(r->kind, kind) == 0 && r->bytes == bytes && r->layout == layout &&
            (group == 0 || !range_held_by_group(e, r->at, group)))
            at = r->at;
    }
    if (at < 0) {
        at = e->scratch_shared_bytes;
        e->scratch_shared_bytes += bytes;
    }
    if (!full)
        e->shared_ranges[e->nshared_ranges++] =
            (struct KpSharedRange){.kind = kind, .bytes = bytes, .layout = layout, .at = at, .group = group};
    return at;
}

LLVMValueRef kp_scratch_tail(KpEmit *e, int64_t bytes, LLVMValueRef *tag)
{
    int64_t data = kp_round_up(bytes, 64);
    if (data + 64 > e->scratch_tail_bytes)
        e->scratch_tail_bytes = data + 64;
    LLVMValueRef end = runtime_get(e, "krt_scratch_stride", e->i64);
    LLVMTypeRef i8 = LLVMInt8TypeInContext(e->ctx);
    LLVMValueRef slot = kp_scratch(e);
    LLVMValueRef at = LLVMBuildNSWSub(e->b, end, kp_i64(e, 64), "");
    *tag = LLVMBuildInBoundsGEP2(e->b, i8, slot, &at, 1, "tail.tag");
    at = LLVMBuildNSWSub(e->b, at, kp_i64(e, data), "");
    return LLVMBuildInBoundsGEP2(e->b, i8, slot, &at, 1, "tail");
}

LLVMValueRef kp_scratch_shared_at(KpEmit *e, int64_t at)
{
    LLVMValueRef base = runtime_get(e, "krt_scratch_shared", e->ptr);
    LLVMValueRef off = kp_i64(e, at);
    return LLVMBuildInBoundsGEP2(e->b, LLVMInt8TypeInContext(e->ctx), base, &off, 1, "");
}
