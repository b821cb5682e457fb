/*
 * codegen_group.c — a group of nodes (passes/group.c) as one kernel:
 *
 *   <prefix>.group<k>(args of member 1, args of member 2, ...)
 *       ctx = {those arguments}
 *       each member with a prologue (emit.h): its node function as share -1
 *       krt_parallel_run(<prefix>.group<k>.body, &ctx)      one fork, one join
 *   <prefix>.group<k>.body(ctx, t, nt)                      on every thread t
 *       member 1's node function (its arguments from ctx, t, nt)
 *       member 2's node function (...)
 *
 * Each member's node function was emitted in share mode (emit.h): it runs
 * share t of nt of its work items, cut as krt_parallel_for would cut them
 * for nt threads, and a member too small to be worth threads runs whole
 * in share 0.  A group none of whose members is worth threads calls its
 * body as share 0 of 1 and forks nothing.  So a group computes exactly what its members compute when
 * run one after the other — element for element, the same operations in
 * the same order — and nothing depends on the thread count.  The members
 * do not read each other's outputs and the memory plan keeps what they
 * write apart from what any of them reads, so they need no barrier.
 *
 * A group that runs INPUT_GRAD members among the BACKWARD nodes
 * (passes/group.c) is emitted twice by codegen.c: whole, and without
 * those members as <prefix>.group<k>.nodx, which train_step and a
 * karp_backward without dx call.
 */
#include <string.h>

#include "codegen.h"

LLVMValueRef kp_cg_emit_group(KpEmit *e, const char *group, const LLVMValueRef *members, int count,
                              int fork, KpDiag *d)
{
    /* the members' parameters without their (t, nt), one after the other */
    LLVMTypeRef types[KP_CG_GROUP_ARGS];
    int first[KP_CG_GROUP_ARGS], nargs[KP_CG_GROUP_ARGS];
    int total = 0;
    for (int m = 0; m < count; m++) {
        LLVMTypeRef ty = LLVMGlobalGetValueType(members[m]);
        unsigned np = LLVMCountParamTypes(ty);
        LLVMTypeRef ps[KP_MAX_ARGS];
        if (np < 2 || np > KP_MAX_ARGS || total + (int)np > KP_CG_GROUP_ARGS) {
            kp_error(d, "internal error: %s: member %d has %u parameters", group, m, np);
            return NULL;
        }
        LLVMGetParamTypes(ty, ps);
        first[m] = total;
        nargs[m] = (int)np - 2;
        for (int i = 0; i < nargs[m]; i++)
            types[total++] = ps[i];
    }

    char name[160];
    LLVMTypeRef fty = LLVMFunctionType(e->void_t, types, (unsigned)total, 0);
    LLVMValueRef fn = LLVMAddFunction(e->mod, group, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    LLVMTypeRef ctx_ty = LLVMStructTypeInContext(e->ctx, types, (unsigned)total, 0);

    /* body(ctx, t, nt): every member on share t of nt */
    snprintf(name, sizeof name, "%s.body", group);
    LLVMTypeRef bparams[3] = {e->ptr, e->i64, e->i64};
    LLVMTypeRef bty = LLVMFunctionType(e->void_t, bparams, 3, 0);
    LLVMValueRef body = LLVMAddFunction(e->mod, name, bty);
    LLVMSetLinkage(body, LLVMInternalLinkage);
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, body, "entry"));
    LLVMValueRef ctx = LLVMGetParam(body, 0);
    for (int m = 0; m < count; m++) {
        LLVMValueRef args[KP_MAX_ARGS];
        for (int i = 0; i < nargs[m]; i++) {
            unsigned field = (unsigned)(first[m] + i);
            LLVMValueRef at = LLVMBuildStructGEP2(e->b, ctx_ty, ctx, field, "");
            args[i] = LLVMBuildLoad2(e->b, types[field], at, "");
        }
        args[nargs[m]] = LLVMGetParam(body, 1);
        args[nargs[m] + 1] = LLVMGetParam(body, 2);
        LLVMBuildCall2(e->b, LLVMGlobalGetValueType(members[m]), members[m], args,
                       (unsigned)nargs[m] + 2, "");
    }
    LLVMBuildRetVoid(e->b);

    /* the group's function: its arguments into ctx, then one parallel run,
     * or the body as share 0 of 1 when no member is worth threads */
    LLVMPositionBuilderAtEnd(e->b, LLVMAppendBasicBlockInContext(e->ctx, fn, "entry"));
    LLVMValueRef slot = LLVMBuildAlloca(e->b, ctx_ty, "ctx");
    for (int i = 0; i < total; i++)
        LLVMBuildStore(e->b, LLVMGetParam(fn, (unsigned)i),
                       LLVMBuildStructGEP2(e->b, ctx_ty, slot, (unsigned)i, ""));
    /* the members' prologues (emit.h), share -1 of 1, on this thread */
    for (int m = 0; m < count; m++) {
        if (!LLVMGetStringAttributeAtIndex(members[m], LLVMAttributeFunctionIndex, KP_PROLOGUE_ATTR,
                                           (unsigned)strlen(KP_PROLOGUE_ATTR)))
            continue;
        LLVMValueRef args[KP_MAX_ARGS];
        for (int i = 0; i < nargs[m]; i++)
            args[i] = LLVMGetParam(fn, (unsigned)(first[m] + i));
        args[nargs[m]] = kp_i64(e, -1);
        args[nargs[m] + 1] = kp_i64(e, 1);
        LLVMBuildCall2(e->b, LLVMGlobalGetValueType(members[m]), members[m], args,
                       (unsigned)nargs[m] + 2, "");
    }
    if (!fork) {
        LLVMValueRef bargs[3] = {slot, kp_i64(e, 0), kp_i64(e, 1)};
        LLVMBuildCall2(e->b, bty, body, bargs, 3, "");
        LLVMBuildRetVoid(e->b);
        return fn;
    }
    LLVMTypeRef rparams[2] = {e->ptr, e->ptr};
    LLVMTypeRef rty = LLVMFunctionType(e->void_t, rparams, 2, 0);
    LLVMValueRef run = LLVMGetNamedFunction(e->mod, "krt_parallel_run");
    if (!run)
        run = LLVMAddFunction(e->mod, "krt_parallel_run", rty);
    LLVMValueRef rargs[2] = {body, slot};
    LLVMBuildCall2(e->b, rty, run, rargs, 2, "");
    LLVMBuildRetVoid(e->b);
    return fn;
}
