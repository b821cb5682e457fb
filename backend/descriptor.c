/*
 * descriptor.c — the constant KarpModelDesc (karp_abi.h) as LLVM IR.
 *
 * The named struct types mirror the C structs field by field; LLVM's
 * default (non-packed) struct layout pads exactly like the x86-64 C ABI,
 * which tests/backend checks with offsetof against LLVMOffsetOfElement.
 */
#include <stdlib.h>
#include <string.h>

#include "../include/karp_abi.h"
#include "llvm_internal.h"

LLVMTypeRef kp_llvm_param_desc_type(LLVMContextRef ctx)
{
    LLVMTypeRef t = LLVMGetTypeByName2(ctx, "KarpParamDesc");
    if (t)
        return t;
    LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), i64 = LLVMInt64TypeInContext(ctx);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
    LLVMTypeRef fields[] = {
        ptr,                      /* name */
        i32, i32,                 /* rank, init */
        LLVMArrayType(i64, 4),    /* shape */
        i64, i64, i64, i64,       /* offset, size, fan_in, fan_out */
    };
    t = LLVMStructCreateNamed(ctx, "KarpParamDesc");
    LLVMStructSetBody(t, fields, sizeof fields / sizeof fields[0], 0);
    return t;
}

static LLVMTypeRef value_desc_type(LLVMContextRef ctx)
{
    LLVMTypeRef t = LLVMGetTypeByName2(ctx, "KarpValueDesc");
    if (t)
        return t;
    LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), i64 = LLVMInt64TypeInContext(ctx);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
    LLVMTypeRef fields[] = {
        ptr, ptr,                 /* layer, op */
        i32, i32,                 /* where, phase */
        i64, i64, i64,            /* offset, sample_floats, fixed_floats */
    };
    t = LLVMStructCreateNamed(ctx, "KarpValueDesc");
    LLVMStructSetBody(t, fields, sizeof fields / sizeof fields[0], 0);
    return t;
}

static LLVMTypeRef augment_type(LLVMContextRef ctx)
{
    LLVMTypeRef t = LLVMGetTypeByName2(ctx, "karp_augment");
    if (t)
        return t;
    LLVMTypeRef fields[] = {
        LLVMInt32TypeInContext(ctx), /* kind */
        LLVMFloatTypeInContext(ctx), /* value */
    };
    t = LLVMStructCreateNamed(ctx, "karp_augment");
    LLVMStructSetBody(t, fields, sizeof fields / sizeof fields[0], 0);
    return t;
}

LLVMTypeRef kp_llvm_model_desc_type(LLVMContextRef ctx)
{
    LLVMTypeRef t = LLVMGetTypeByName2(ctx, "KarpModelDesc");
    if (t)
        return t;
    LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), i64 = LLVMInt64TypeInContext(ctx);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);
    LLVMTypeRef shape = LLVMArrayType(i64, 4);
    LLVMTypeRef fields[] = {
        i32, i32,                 /* abi_version, nparams */
        ptr, ptr, ptr, ptr,       /* name, cpu_features, loss, optimizer */
        i32, i32,                 /* input_rank, output_rank */
        shape, shape,             /* input_shape, output_shape */
        i64, i64, i64, i64,       /* max_batch, param_floats, workspace_bytes, seed */
        ptr, ptr,                 /* params, infer */
        i32, i32,                 /* target_kind, opt_slots */
        i64, i64,                 /* trainable_floats, train_workspace_bytes */
        ptr, ptr, ptr, ptr,       /* forward, backward, apply, train_step */
        ptr,                      /* no_train_reason */
        i64, i32, i32,            /* train_epochs, norm_nmean, norm_nstd */
        ptr, ptr,                 /* norm_mean, norm_std */
        i64, ptr,                 /* naugment, augment */
        i64, ptr,                 /* prep_floats, prepare (ABI 4) */
        i64, ptr,                 /* nvalues, values */
        i64, i64, ptr,            /* scratch_bytes, scratch_shared_bytes, bind_scratch (ABI 5) */
    };
    t = LLVMStructCreateNamed(ctx, "KarpModelDesc");
    LLVMStructSetBody(t, fields, sizeof fields / sizeof fields[0], 0);
    return t;
}

/* A private constant C string. */
static LLVMValueRef cstring(LLVMModuleRef mod, const char *s)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    unsigned len = (unsigned)strlen(s);
    LLVMValueRef init = LLVMConstStringInContext(ctx, s, len, 0);
    LLVMValueRef g = LLVMAddGlobal(mod, LLVMTypeOf(init), ".str");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(g, 1);
    return g;
}

static LLVMValueRef i32c(LLVMContextRef ctx, int64_t v)
{
    return LLVMConstInt(LLVMInt32TypeInContext(ctx), (unsigned long long)v, 1);
}

static LLVMValueRef i64c(LLVMContextRef ctx, int64_t v)
{
    return LLVMConstInt(LLVMInt64TypeInContext(ctx), (unsigned long long)v, 1);
}

/* [4 x i64] from dims[first..rank), zero-padded. */
static LLVMValueRef shape4(LLVMContextRef ctx, const int64_t *dims, int first, int rank)
{
    LLVMValueRef v[4];
    for (int i = 0; i < 4; i++)
        v[i] = i64c(ctx, first + i < rank ? dims[first + i] : 0);
    return LLVMConstArray(LLVMInt64TypeInContext(ctx), v, 4);
}

static LLVMValueRef param_desc(LLVMModuleRef mod, const KpValue *v)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMValueRef f[] = {
        cstring(mod, v->name ? v->name : ""),
        i32c(ctx, v->rank),
        i32c(ctx, (int64_t)v->init),
        shape4(ctx, v->dims, 0, v->rank),
        i64c(ctx, v->offset),
        i64c(ctx, kp_value_numel(v, 1)),
        i64c(ctx, v->fan_in),
        i64c(ctx, v->fan_out),
    };
    return LLVMConstNamedStruct(kp_llvm_param_desc_type(ctx), f, sizeof f / sizeof f[0]);
}

int kp_llvm_target_kind(const KpGraph *tg)
{
    if (!tg || !tg->loss || strcmp(tg->loss, "none") == 0)
        return KARP_TARGET_NONE;
    return strcmp(tg->loss, "cross_entropy") == 0 ? KARP_TARGET_LABELS : KARP_TARGET_DENSE;
}

static LLVMValueRef fn_or_null(LLVMContextRef ctx, LLVMValueRef fn)
{
    return fn ? fn : LLVMConstPointerNull(LLVMPointerTypeInContext(ctx, 0));
}

/* A private constant float[n], or a null pointer for n == 0. */
static LLVMValueRef float_array(LLVMModuleRef mod, const char *name, const float *v, int n)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    if (n <= 0)
        return LLVMConstPointerNull(LLVMPointerTypeInContext(ctx, 0));
    LLVMTypeRef f32 = LLVMFloatTypeInContext(ctx);
    LLVMValueRef elts[16];
    for (int i = 0; i < n && i < 16; i++)
        elts[i] = LLVMConstReal(f32, v[i]);
    LLVMValueRef init = LLVMConstArray(f32, elts, (unsigned)(n < 16 ? n : 16));
    LLVMValueRef gv = LLVMAddGlobal(mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

/* Where a train-graph node's output lies after a call, for the numerics
 * check: 0 and *where set, or -1 for one it does not scan. */
static int value_where(const KpValue *v, int32_t *where)
{
    switch (v->storage) {
    case KP_STORE_WORKSPACE: *where = KARP_VAL_TWS; return 0;
    case KP_STORE_GRAD: *where = KARP_VAL_GRADS; return 0;
    default: return -1;     /* the caller's buffers, the whole slab of the update */
    }
}

/* The train graph's node outputs in schedule order (KarpValueDesc[]), only
 * when its workspace is not shared (tg->ws_reuse false): then every
 * value's bytes still hold it after the call.  *n is the count. */
static LLVMValueRef value_table(LLVMModuleRef mod, const KpGraph *tg, int64_t *n, KpDiag *d)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    *n = 0;
    if (!tg || tg->ws_reuse)
        return LLVMConstPointerNull(LLVMPointerTypeInContext(ctx, 0));
    LLVMValueRef *elts = calloc((size_t)tg->nnodes * (1 + KP_MAX_AUX) + 1, sizeof *elts);
    if (!elts) {
        kp_error(d, "out of memory");
        return NULL;
    }
    for (int i = 0; i < tg->nnodes * (1 + KP_MAX_AUX); i++) {
        const KpNode *nd = tg->nodes[i / (1 + KP_MAX_AUX)];
        int o = i % (1 + KP_MAX_AUX);
        if (o >= kp_node_nout(nd))
            continue;
        const KpValue *v = kp_node_output(nd, o);
        int32_t where;
        if (nd->phase == KP_PHASE_UPDATE || v->dtype != KP_F32 || value_where(v, &where) < 0)
            continue;
        int batched = v->rank > 0 && v->dims[0] == KP_DIM_N;
        int64_t size = kp_value_sample_size(v);
        /* a fused loss's outputs are LOSS work in a FORWARD node: written
         * only by a call that runs the LOSS phase (train_step) */
        KpPhase phase = nd->loss.on && o > 0 ? KP_PHASE_LOSS : nd->phase;
        LLVMValueRef f[] = {
            cstring(mod, nd->name ? nd->name : "?"),
            cstring(mod, kp_op_name(o > 0 && nd->loss.on ? (o == 1 ? nd->loss.op : nd->loss.grad_op)
                                                         : nd->op)),
            i32c(ctx, where),
            i32c(ctx, phase),
            i64c(ctx, v->offset),
            i64c(ctx, batched ? size : 0),
            i64c(ctx, batched ? 0 : size),
        };
        elts[(*n)++] = LLVMConstNamedStruct(value_desc_type(ctx), f, sizeof f / sizeof f[0]);
    }
    if (*n == 0) {
        free(elts);
        return LLVMConstPointerNull(LLVMPointerTypeInContext(ctx, 0));
    }
    LLVMValueRef init = LLVMConstArray(value_desc_type(ctx), elts, (unsigned)*n);
    free(elts);
    LLVMValueRef gv = LLVMAddGlobal(mod, LLVMTypeOf(init), "karp_values");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

/* train.augment as a private constant karp_augment[n], or a null pointer. */
static LLVMValueRef augment_array(LLVMModuleRef mod, const KpGraph *g)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    if (g->naugment <= 0)
        return LLVMConstPointerNull(LLVMPointerTypeInContext(ctx, 0));
    LLVMTypeRef aty = augment_type(ctx);
    LLVMValueRef elts[sizeof g->augment / sizeof g->augment[0]];
    for (int i = 0; i < g->naugment; i++) {
        LLVMValueRef f[] = {
            i32c(ctx, g->augment[i].kind),
            LLVMConstReal(LLVMFloatTypeInContext(ctx), g->augment[i].value),
        };
        elts[i] = LLVMConstNamedStruct(aty, f, 2);
    }
    LLVMValueRef init = LLVMConstArray(aty, elts, (unsigned)g->naugment);
    LLVMValueRef gv = LLVMAddGlobal(mod, LLVMTypeOf(init), "karp_augment");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

/* krt_scratch_bind, which the runtime calls before every entry: the
 * runtime's own copy (the JIT's, or the one linked into model.so). */
static LLVMValueRef bind_scratch(LLVMModuleRef mod, int64_t scratch_bytes)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx);
    if (scratch_bytes == 0)
        return LLVMConstPointerNull(ptr);
    LLVMValueRef fn = LLVMGetNamedFunction(mod, "krt_scratch_bind");
    if (fn)
        return fn;
    LLVMTypeRef params[4] = {ptr, ptr, i64, i64};
    return LLVMAddFunction(mod, "krt_scratch_bind",
                           LLVMFunctionType(LLVMVoidTypeInContext(ctx), params, 4, 0));
}

int kp_llvm_emit_descriptor(LLVMModuleRef mod, const KpGraph *g, const KpGraph *tg,
                            const char *no_train_reason, const char *cpu_features,
                            const KpDescEntries *entries, KpDiag *d)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0);

    int nparams = 0;
    for (int i = 0; i < g->nvalues; i++)
        nparams += g->values[i]->role == KP_ROLE_PARAM;
    LLVMValueRef params = LLVMConstPointerNull(ptr);
    if (nparams > 0) {
        LLVMValueRef *elts = calloc((size_t)nparams, sizeof *elts);
        if (!elts)
            return kp_error(d, "out of memory");
        int k = 0;
        for (int i = 0; i < g->nvalues; i++)
            if (g->values[i]->role == KP_ROLE_PARAM)
                elts[k++] = param_desc(mod, g->values[i]);
        LLVMTypeRef pty = kp_llvm_param_desc_type(ctx);
        LLVMValueRef init = LLVMConstArray(pty, elts, (unsigned)nparams);
        free(elts);
        params = LLVMAddGlobal(mod, LLVMTypeOf(init), "karp_params");
        LLVMSetInitializer(params, init);
        LLVMSetGlobalConstant(params, 1);
        LLVMSetLinkage(params, LLVMPrivateLinkage);
    }

    int64_t nvalues = 0;
    LLVMValueRef values = value_table(mod, tg, &nvalues, d);
    if (!values)
        return -1;
    const KpValue *in = g->input, *out = g->output;
    LLVMValueRef f[] = {
        i32c(ctx, KARP_ABI_VERSION),
        i32c(ctx, nparams),
        cstring(mod, g->name ? g->name : "model"),
        cstring(mod, cpu_features ? cpu_features : ""),
        cstring(mod, g->loss ? g->loss : "none"),
        cstring(mod, g->optimizer ? g->optimizer : "none"),
        i32c(ctx, in->rank - 1),
        i32c(ctx, out->rank - 1),
        shape4(ctx, in->dims, 1, in->rank),
        shape4(ctx, out->dims, 1, out->rank),
        i64c(ctx, g->max_batch),
        i64c(ctx, g->param_floats),
        i64c(ctx, g->workspace_bytes),
        i64c(ctx, (int64_t)g->seed),
        params,
        fn_or_null(ctx, entries->infer),
        i32c(ctx, kp_llvm_target_kind(tg)),
        i32c(ctx, tg ? tg->opt_slots : 0),
        i64c(ctx, tg ? tg->trainable_floats : 0),
        i64c(ctx, tg ? tg->workspace_bytes : 0),
        fn_or_null(ctx, entries->forward),
        fn_or_null(ctx, entries->backward),
        fn_or_null(ctx, entries->apply),
        fn_or_null(ctx, entries->train_step),
        no_train_reason ? cstring(mod, no_train_reason) : LLVMConstPointerNull(ptr),
        i64c(ctx, g->train_epochs),
        i32c(ctx, g->norm_nmean),
        i32c(ctx, g->norm_nstd),
        float_array(mod, "karp_norm_mean", g->norm_mean, g->norm_nmean),
        float_array(mod, "karp_norm_std", g->norm_std, g->norm_nstd),
        i64c(ctx, g->naugment),
        augment_array(mod, g),
        i64c(ctx, g->prep_floats),
        fn_or_null(ctx, entries->prepare),
        i64c(ctx, nvalues),
        values,
        i64c(ctx, entries->scratch_bytes),
        i64c(ctx, entries->scratch_shared_bytes),
        bind_scratch(mod, entries->scratch_bytes + entries->scratch_shared_bytes),
    };
    LLVMTypeRef dty = kp_llvm_model_desc_type(ctx);
    LLVMValueRef desc = LLVMAddGlobal(mod, dty, KARP_DESCRIPTOR_SYMBOL);
    LLVMSetInitializer(desc, LLVMConstNamedStruct(dty, f, sizeof f / sizeof f[0]));
    LLVMSetGlobalConstant(desc, 1);
    LLVMSetLinkage(desc, LLVMExternalLinkage);
    LLVMSetVisibility(desc, LLVMDefaultVisibility);
    return 0;
}
