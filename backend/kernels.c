/*
 * kernels.c — the listing of the kernels an entry calls, and what karpc
 * bench needs to call one alone (kernels.h).
 */
#include "kernels.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>

#include "../runtime/model.h"
#include "codegen.h"
#include "llvm_internal.h"

KpKernelArg kp_karg_value(const KpValue *v)
{
    int batched = v->rank > 0 && v->dims[0] == KP_DIM_N;
    int64_t bytes = kp_value_sample_size(v) * 4;
    return (KpKernelArg){.kind = KP_KARG_VALUE, .value = v->id, .storage = v->storage,
                         .offset = v->offset, .sample_bytes = batched ? bytes : 0,
                         .fixed_bytes = batched ? 0 : bytes};
}

KpKernelArg kp_karg(KpKargKind kind)
{
    return (KpKernelArg){.kind = kind, .value = -1};
}

/* bench.<kernel>(ptr args): the kernel called with args[i] loaded as its
 * i-th parameter's type (once per kernel, however many calls). */
static void emit_trampoline(KpEmit *e, LLVMValueRef fn, const char *name)
{
    if (LLVMGetNamedFunction(e->mod, name))
        return;
    LLVMTypeRef fty = LLVMGlobalGetValueType(fn);
    unsigned np = LLVMCountParamTypes(fty);
    LLVMTypeRef types[KP_CG_GROUP_ARGS];
    LLVMValueRef args[KP_CG_GROUP_ARGS];
    assert(np <= KP_CG_GROUP_ARGS);
    LLVMGetParamTypes(fty, types);
    LLVMValueRef t = LLVMAddFunction(e->mod, name, LLVMFunctionType(e->void_t, &e->ptr, 1, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(e->ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(e->ctx, t, "entry"));
    for (unsigned i = 0; i < np; i++) {
        LLVMValueRef at = LLVMBuildInBoundsGEP2(b, e->i64, LLVMGetParam(t, 0),
                                                &(LLVMValueRef){kp_i64(e, i)}, 1, "");
        args[i] = LLVMBuildLoad2(b, types[i], at, "");
    }
    LLVMBuildCall2(b, fty, fn, args, np, "");
    LLVMBuildRetVoid(b);
    LLVMDisposeBuilder(b);
}

int kp_cg_note_call(KpEmit *e, const KpEntryEnv *env, LLVMValueRef fn, const KpNode *const *nodes,
                    int nnodes, const KpKernelArg *args, int nargs, KpDiag *d)
{
    KpKernelList *l = e->kernels;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        KpKernel *k = realloc(l->k, (size_t)cap * sizeof *k);
        if (!k)
            return kp_error(d, "out of memory");
        l->k = k;
        l->cap = cap;
    }
    KpKernel *k = &l->k[l->n];
    memset(k, 0, sizeof *k);
    k->node = malloc((size_t)nnodes * sizeof *k->node);
    k->arg = malloc((size_t)(nargs > 0 ? nargs : 1) * sizeof *k->arg);
    if (!k->node || !k->arg) {
        free(k->node);
        free(k->arg);
        return kp_error(d, "out of memory");
    }
    l->n++;
    /* the entry is "<model>_<what>" (kp_cg_entry) */
    size_t len = 0;
    const char *entry = LLVMGetValueName2(env->fn, &len);
    size_t skip = strlen(e->g->name ? e->g->name : "model") + 1;
    snprintf(k->entry, sizeof k->entry, "%s", len > skip ? entry + skip : entry);
    snprintf(k->symbol, sizeof k->symbol, "%s", LLVMGetValueName2(fn, &len));
    snprintf(k->trampoline, sizeof k->trampoline, "bench.%s", k->symbol);
    emit_trampoline(e, fn, k->trampoline);
    k->train = e->g->training;
    k->nnodes = nnodes;
    for (int i = 0; i < nnodes; i++)
        k->node[i] = nodes[i]->id;
    k->nargs = nargs;
    memcpy(k->arg, args, (size_t)nargs * sizeof *args);
    return 0;
}

void kp_kernel_list_free(KpKernelList *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++) {
        free(l->k[i].node);
        free(l->k[i].arg);
    }
    free(l->k);
    free(l);
}

KpKernelList *kp_llvm_take_kernels(KpCodegen *cg)
{
    KpKernelList *l = cg->kernels;
    cg->kernels = NULL;
    return l;
}

int kp_llvm_vector_width(const KpCodegen *cg)
{
    return cg->cfg.vector_width;
}

int kp_llvm_jit_lookup(karp_model *m, const char *symbol, void **addr, KpDiag *d)
{
    LLVMOrcExecutorAddress a = 0;
    LLVMErrorRef err = LLVMOrcLLJITLookup((LLVMOrcLLJITRef)m->owner, &a, symbol);
    if (err)
        return kp_llvm_error(d, err, "JIT: cannot find a kernel (compiled without keep_kernels?)");
    *addr = (void *)(uintptr_t)a;
    return 0;
}

void kp_entry_bufs(karp_model *m, bool train, KpEntryBufs *b)
{
    memset(b, 0, sizeof *b);
    b->params = m->params;
    b->prep = m->prep;
    b->grads = m->grads;
    b->opt = m->opt;
    b->ws = train ? m->tws : m->ws;
    b->param_floats = m->desc->param_floats;
    b->opt_floats = m->desc->opt_slots * m->desc->param_floats;
}

/* Where a value lives in the buffers of a call: codegen.h's table. */
static void *value_ptr(const KpKernelArg *a, const KpEntryBufs *b)
{
    switch (a->storage) {
    case KP_STORE_INPUT: return (void *)b->x;
    case KP_STORE_OUTPUT: return b->y;
    case KP_STORE_TARGET: return (void *)b->target;
    case KP_STORE_DX: return b->dx;
    case KP_STORE_PREP: return b->prep + a->offset;
    case KP_STORE_PARAM: return b->params + a->offset;
    case KP_STORE_GRAD: return b->grads + a->offset;
    case KP_STORE_WORKSPACE: return (char *)b->ws + a->offset;
    case KP_STORE_NONE: break;
    }
    assert(!"a kernel argument without storage");
    return NULL;
}

uint64_t kp_kernel_arg_word(const KpKernelArg *a, const KpEntryBufs *b)
{
    switch (a->kind) {
    case KP_KARG_VALUE: return (uint64_t)(uintptr_t)value_ptr(a, b);
    case KP_KARG_N: return (uint64_t)b->n;
    case KP_KARG_SEED: return b->seed;
    case KP_KARG_STEP: return (uint64_t)b->step;
    case KP_KARG_GRADS: return (uint64_t)(uintptr_t)b->grads;
    case KP_KARG_OPT: return (uint64_t)(uintptr_t)b->opt;
    }
    return 0;
}

int64_t kp_kernel_arg_bytes(const KpKernelArg *a, const KpEntryBufs *b)
{
    switch (a->kind) {
    case KP_KARG_VALUE: return a->sample_bytes * b->n + a->fixed_bytes;
    case KP_KARG_GRADS: return b->param_floats * 4;
    case KP_KARG_OPT: return b->opt_floats * 4;
    default: return 0;
    }
}

void kp_kernel_call(void *trampoline, const uint64_t *w)
{
    ((void (*)(const uint64_t *))trampoline)(w);
}
