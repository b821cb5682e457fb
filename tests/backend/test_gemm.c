/*
 * test_gemm.c — the GEMM kernels (backend/gemm.h) node by node: dense,
 * dense_packed, dense_grad_x and dense_grad_w, each JIT-compiled alone as
 * a model compiles it (kp_llvm_node_jit), against the reference kernels
 * of runtime/ref.
 *
 *   shapes     1, 3, 17, 129, sizes that are no multiple of the micro-tile
 *              or the vector width, k beyond one k block, columns beyond
 *              one column block, row strides of 1024 floats (packed A, B)
 *   A packing  read in place unless a tile's rows put more lines into one
 *              L1 set than it has ways (the plan itself, test_pack_a_rule)
 *   batches    n = 1, 2, about half, and the largest (1: dense's dot
 *              kernel for a largest batch of 1)
 *   targets    the host (AVX-512 here), x86-64-v3 (AVX2) and x86-64 (SSE),
 *              each that this CPU runs, and x86-64-v3 with the 16-float
 *              kernels (AVX-512's code paths on an AVX2 machine)
 *   epilogues  every op that can be one, on dense and on dense_grad_x
 *   accumulate dense_grad_w adds into a gradient slot that holds values
 *   split k    a tiny C over a batch of thousands: k in fixed chunks
 *   threads    1 and 2 threads give the same bits
 *   the API    a grouped GEMM (one per sample) with CUSTOM packers and a
 *              bias per row, as implicit-GEMM convolution will use it
 *
 * Tolerance: |got - ref| <= 1e-5 (|ref| + mean |ref|) (kp_test_tolerance_ratio):
 * the sums run in another order (vector lanes, fma).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/gemm.h"
#include "backend/gemm_internal.h"
#include "backend/llvm_internal.h"
#include "include/karp.h"
#include "numcheck.h"
#include "testutil.h"
#include "runtime/model.h"
#include "runtime/ref/ref.h"

typedef struct Target {
    const char *name, *cpu;
    bool avx2;                  /* needs AVX2 and FMA */
    int vw;                     /* 0: the target's vector width */
} Target;

/* The last one runs AVX-512's 16-float kernels here, split into AVX2
 * halves by LLVM: an AVX2 machine checks those code paths too. */
static const Target targets[] = {
    {"host", NULL, false, 0},
    {"x86-64-v3 (AVX2)", "x86-64-v3", true, 0},
    {"x86-64 (SSE)", "x86-64", false, 0},
    {"x86-64-v3, 16-float vectors", "x86-64-v3", true, 16},
};

typedef struct Case {
    KpOp op;
    int64_t in, out, maxb;      /* dense [out,in]; for dense_grad_w, maxb is the k */
    KpOp epi;                   /* KP_OP_COUNT: none */
    float alpha;
} Case;

static uint64_t rng = 12345;
static double worst;

static float *floats(int64_t count)
{
    float *p = malloc((size_t)(count > 0 ? count : 1) * sizeof *p);
    for (int64_t i = 0; i < count; i++)
        p[i] = kp_test_uniform(&rng, -1.0f, 1.0f);
    return p;
}

static KpValue *value(KpGraph *g, int rank, int64_t d0, int64_t d1, int64_t d2, KpStorage st)
{
    int64_t dims[3] = {d0, d1, d2};
    KpValue *v = kp_value_new(g, KP_ROLE_ACT, KP_F32, rank, dims);
    v->storage = st;
    return v;
}

static bool epi_has_arg(KpOp op)
{
    return op == KP_OP_add || op == KP_OP_mul || op == KP_OP_relu_grad ||
           op == KP_OP_leaky_relu_grad || op == KP_OP_sigmoid_grad || op == KP_OP_tanh_grad;
}

/* The node of c in g, with its epilogue and the epilogue's operand. */
static KpNode *make_node(KpGraph *g, const Case *c)
{
    KpDiag d;
    kp_diag_init(&d);
    KpNode *nd = kp_dense_node(g, c->op, c->in, c->out, &d);
    ck_assert_msg(nd != NULL, "%s", d.msg);
    if (c->epi != KP_OP_COUNT) {
        nd->nepi = 1;
        nd->epi[0] = (KpEpilogue){.op = c->epi, .alpha = c->alpha};
        if (epi_has_arg(c->epi)) {
            nd->in[nd->nin] = value(g, 2, KP_DIM_N, nd->out->dims[1], 0, KP_STORE_WORKSPACE);
            nd->in[nd->nin]->offset = 1 << 24;
            nd->epi[0].nargs = 1;
            nd->epi[0].arg[0] = nd->nin++;
        }
    }
    return nd;
}

/* y = epi(y, a) over count floats, as the reference kernels define it. */
static void ref_epilogue(const Case *c, float *y, const float *a, int64_t count)
{
    float *t = malloc((size_t)count * sizeof *t);
    memcpy(t, y, (size_t)count * sizeof *t);
    switch (c->epi) {
    case KP_OP_relu: kp_ref_relu_forward(y, t, count); break;
    case KP_OP_leaky_relu: kp_ref_leaky_relu_forward(y, t, c->alpha, count); break;
    case KP_OP_sigmoid: kp_ref_sigmoid_forward(y, t, count); break;
    case KP_OP_tanh: kp_ref_tanh_forward(y, t, count); break;
    case KP_OP_relu_grad: kp_ref_relu_backward(y, t, a, count); break;
    case KP_OP_leaky_relu_grad: kp_ref_leaky_relu_backward(y, t, a, c->alpha, count); break;
    case KP_OP_sigmoid_grad: kp_ref_sigmoid_backward(y, t, a, count); break;
    case KP_OP_tanh_grad: kp_ref_tanh_backward(y, t, a, count); break;
    case KP_OP_add:
        for (int64_t i = 0; i < count; i++)
            y[i] = t[i] + a[i];
        break;
    case KP_OP_mul:
        for (int64_t i = 0; i < count; i++)
            y[i] = t[i] * a[i];
        break;
    default:
        break;
    }
    free(t);
}

/* panel[j][k][l] = w[16 j + l][k], zero past out (pack_panels' layout) */
static float *panels_of(const float *w, int64_t out, int64_t in)
{
    int64_t np = (out + 15) / 16;
    float *p = calloc((size_t)(np * in * 16), sizeof *p);
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < in; k++)
            p[(o / 16) * in * 16 + k * 16 + o % 16] = w[o * in + k];
    return p;
}

typedef void (*Fn2)(const float *, const float *, float *, int64_t);
typedef void (*Fn3)(const float *, const float *, const float *, float *, int64_t);
typedef void (*Fn4)(const float *, const float *, const float *, const float *, float *, int64_t);

/* Run the kernel on (a, b, bias, extra) into y at batch n. */
static void run(const KpNodeJit *j, const Case *c, const float *a, const float *b, const float *bias,
                const float *extra, float *y, int64_t n)
{
    bool dense = c->op == KP_OP_dense || c->op == KP_OP_dense_packed;
    bool arg = c->epi != KP_OP_COUNT && epi_has_arg(c->epi);
    if (dense && arg)
        ((Fn4)j->fn)(a, b, bias, extra, y, n);
    else if (dense)
        ((Fn3)j->fn)(a, b, bias, y, n);
    else if (arg)
        ((Fn3)j->fn)(a, b, extra, y, n);
    else
        ((Fn2)j->fn)(a, b, y, n);
}

/* The reference result of c at batch n into ref (for dense_grad_w: added to ref). */
static void reference(const Case *c, const float *a, const float *b, const float *bias,
                      const float *extra, float *ref, int64_t n)
{
    int64_t count = n * (c->op == KP_OP_dense_grad_x ? c->in : c->out);
    switch (c->op) {
    case KP_OP_dense:
    case KP_OP_dense_packed:
        kp_ref_dense_forward(ref, a, b, bias, n, c->in, c->out);
        break;
    case KP_OP_dense_grad_x:
        kp_ref_dense_backward(ref, NULL, NULL, a, NULL, b, n, c->in, c->out);
        break;
    default:
        kp_ref_dense_backward(NULL, ref, NULL, a, b, NULL, n, c->in, c->out);
        count = c->in * c->out;
        break;
    }
    if (c->epi != KP_OP_COUNT)
        ref_epilogue(c, ref, extra, count);
}

/* The kernel's scratch slots, bound for the runtime; free after use. */
static char *bind_scratch(const KpNodeJit *j)
{
    int64_t nslots = 4, stride = (j->scratch_bytes + 63) / 64 * 64;
    int64_t shared = (j->scratch_shared_bytes + 63) / 64 * 64;
    char *pool = aligned_alloc(64, (size_t)(shared + nslots * stride + 64));
    memset(pool, 0, (size_t)shared);     /* split GEMMs' counters start at 0 */
    krt_scratch_bind(shared ? pool : NULL, stride ? pool + shared : NULL, stride, nslots);
    return pool;
}

/* c's node JIT-compiled alone for target t (under KARPC_GEMM_PLAN=plan
 * unless NULL), its scratch bound */
typedef struct Kernel {
    KpGraph *g;
    KpNodeJit j;
    char *pool;
} Kernel;

static void kernel_open(Kernel *k, const Target *t, const Case *c, const char *plan)
{
    k->g = kp_graph_new();
    k->g->max_batch = c->maxb;
    KpNode *nd = make_node(k->g, c);
    KpTargetOpts opts = {.opt_level = KP_TEST_OPT(3), .cpu = t->cpu, .vector_width = t->vw};
    KpDiag d;
    kp_diag_init(&d);
    if (plan)
        setenv("KARPC_GEMM_PLAN", plan, 1);
    int rc = kp_llvm_node_jit(k->g, nd, &opts, &k->j, &d);
    unsetenv("KARPC_GEMM_PLAN");
    ck_assert_msg(rc == 0, "%s: KARPC_GEMM_PLAN=%s: %s", t->name, plan ? plan : "", d.msg);
    k->pool = bind_scratch(&k->j);
}

static void kernel_close(Kernel *k)
{
    krt_scratch_bind(NULL, NULL, 0, 0);
    free(k->pool);
    kp_llvm_node_jit_free(&k->j);
    kp_graph_free(k->g);
}

/* Floats of c's A (x or dy), of its weight operand (W, or x for
 * dense_grad_w) and of its result, at the largest batch */
static int64_t a_count(const Case *c)
{
    return c->maxb * (c->op == KP_OP_dense || c->op == KP_OP_dense_packed ? c->in : c->out);
}

static int64_t w_count(const Case *c)
{
    return c->op == KP_OP_dense_grad_w ? c->maxb * c->in : c->out * c->in;
}

static int64_t y_count(const Case *c)
{
    return c->op == KP_OP_dense_grad_w ? c->out * c->in
           : c->maxb * (c->op == KP_OP_dense_grad_x ? c->in : c->out);
}

static void check_case(const Target *t, const Case *c)
{
    Kernel k;
    kernel_open(&k, t, c, NULL);
    int64_t mb = c->maxb, ycount = y_count(c);
    float *a = floats(a_count(c));
    float *w = floats(w_count(c));
    float *b = c->op == KP_OP_dense_packed ? panels_of(w, c->out, c->in) : w;
    float *bias = floats(c->out), *extra = floats(ycount);
    float *y1 = floats(ycount), *y2 = floats(ycount), *ref = floats(ycount);
    const int64_t batches[4] = {1, 2, mb / 2 + 1, mb};
    for (int bi = 0; bi < 4; bi++) {
        int64_t n = batches[bi] < mb ? batches[bi] : mb;
        if (c->op == KP_OP_dense_grad_w) {       /* accumulate into the same start */
            for (int64_t i = 0; i < ycount; i++)
                y1[i] = y2[i] = ref[i] = (float)(i % 7) - 3.0f;
        }
        karp_set_threads(2);
        run(&k.j, c, a, b, bias, extra, y2, n);
        karp_set_threads(1);
        run(&k.j, c, a, b, bias, extra, y1, n);
        karp_set_threads(0);
        int64_t cnt = c->op == KP_OP_dense_grad_w ? ycount : n * (ycount / mb);
        ck_assert_msg(memcmp(y1, y2, (size_t)cnt * sizeof *y1) == 0,
                      "%s: %s %lld->%lld n=%lld: 1 and 2 threads differ", t->name, kp_op_name(c->op),
                      (long long)c->in, (long long)c->out, (long long)n);
        reference(c, a, w, bias, extra, ref, n);
        double r = kp_test_tolerance_ratio(y1, ref, cnt);
        ck_assert_msg(r <= 1.0, "%s: %s %lld->%lld (max batch %lld) epilogue %s, n=%lld: off by %.3g x tolerance",
                      t->name, kp_op_name(c->op), (long long)c->in, (long long)c->out, (long long)mb,
                      c->epi == KP_OP_COUNT ? "none" : kp_op_name(c->epi), (long long)n, r);
        worst = r > worst ? r : worst;
    }
    kernel_close(&k);
    if (b != w)
        free(b);
    free(a), free(w), free(bias), free(extra), free(y1), free(y2), free(ref);
}

static bool runs_here(const Target *t)
{
    return !t->avx2 || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
}

/* shapes: (in, out, largest batch) */
static const int64_t shapes[][3] = {
    {1, 1, 1},       {3, 17, 5},     {17, 3, 17},    {129, 129, 3},  {784, 128, 64},
    {128, 10, 64},   {100, 33, 13},  {2500, 40, 9},  {1024, 33, 20}, {1000, 600, 12},
    {37, 1024, 7},   {16, 16, 16},   {31, 47, 65},   {40, 2500, 9},
    /* 16-row tiles of x at 4 KiB: more lines in one L1 set than it has ways, A packed */
    {1024, 16, 32},
    /* W's and x's rows 8 KiB apart, packed by the first row tile of each block
     * (fused): several k blocks and column blocks, a short last column block */
    {2048, 600, 24},
    /* dense_grad_w's dy^T with its batch rows 4 KiB apart: 64 steps of k in
     * one L1 set, A packed */
    {40, 1024, 64},
    /* a largest batch of 1: dense's row of dot products (emit_dense.c): k in
     * pairs of vectors with one left over (784, 20) or not, a masked tail */
    {784, 128, 1},   {37, 19, 1},    {3, 5, 1},      {9216, 40, 1},  {20, 7, 1},
};

static void report(const char *what);

static void shape_grid(KpOp op)
{
    for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++) {
        if (!runs_here(&targets[ti]))
            continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            Case c = {op, shapes[s][0], shapes[s][1], shapes[s][2], KP_OP_COUNT, 0};
            check_case(&targets[ti], &c);
        }
    }
    report(kp_op_name(op));
}

START_TEST(test_dense_shapes)
{
    shape_grid(KP_OP_dense);
}
END_TEST

START_TEST(test_dense_packed_shapes)
{
    shape_grid(KP_OP_dense_packed);
}
END_TEST

START_TEST(test_grad_x_shapes)
{
    shape_grid(KP_OP_dense_grad_x);
}
END_TEST

START_TEST(test_grad_w_accumulates)
{
    shape_grid(KP_OP_dense_grad_w);
}
END_TEST

/* a tiny C with a long k (dense_grad_w's k is the batch): the k is split
 * into fixed chunks, their partial sums added in order by the last */
START_TEST(test_split_k)
{
    static const int64_t split[][3] = {{5, 3, 9000}, {33, 40, 5000}, {3, 2, 40000}};
    for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++) {
        if (!runs_here(&targets[ti]))
            continue;
        for (size_t k = 0; k < sizeof split / sizeof split[0]; k++) {
            Case c = {KP_OP_dense_grad_w, split[k][0], split[k][1], split[k][2], KP_OP_COUNT, 0};
            check_case(&targets[ti], &c);
        }
    }
    report("split k");
}
END_TEST

/* every epilogue op on the forward GEMMs, the gradient ones on dense_grad_x */
START_TEST(test_epilogues)
{
    static const struct { KpOp op; float alpha; int grad; } epis[] = {
        {KP_OP_relu, 0, 0},       {KP_OP_leaky_relu, 0.2f, 0}, {KP_OP_sigmoid, 0, 0},
        {KP_OP_tanh, 0, 0},       {KP_OP_add, 0, 0},           {KP_OP_mul, 0, 0},
        {KP_OP_relu_grad, 0, 1},  {KP_OP_leaky_relu_grad, 0.1f, 1},
        {KP_OP_sigmoid_grad, 0, 1}, {KP_OP_tanh_grad, 0, 1},   {KP_OP_add, 0, 1},
    };
    for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++) {
        if (!runs_here(&targets[ti]))
            continue;
        for (size_t k = 0; k < sizeof epis / sizeof epis[0]; k++) {
            KpOp ops[2] = {KP_OP_dense, KP_OP_dense_packed};
            for (int o = 0; o < (epis[k].grad ? 1 : 3); o++) {
                /* o = 2: dense compiled for a largest batch of 1 */
                Case c = {epis[k].grad ? KP_OP_dense_grad_x : ops[o % 2], 100, 37, o == 2 ? 1 : 19,
                          epis[k].op, epis[k].alpha};
                check_case(&targets[ti], &c);
            }
        }
    }
    report("epilogues");
}
END_TEST

/* --- the API as convolution will use it ---------------------------------
 * Per sample g of the batch, C_g[F x P] = W[F x K] · X_g[K x P] + b[f]:
 * groups batched, both operands packed by CUSTOM packers (which here read
 * a view through the stock packer, as an im2col packer would for the rows
 * it can), the bias per row of C. */
enum { CF = 19, CK = 27, CP = 100, CMAXB = 3 };

static void pack_w(KpEmit *e, const KpGemmPackArgs *p, void *user)
{
    (void)user;
    KpGemmView w = {.arg = 0, .rs = CK, .cs = 1};
    kp_gemm_pack_view(e, p, &w);
}

static void pack_x(KpEmit *e, const KpGemmPackArgs *p, void *user)
{
    (void)user;
    KpGemmView x = {.arg = 1, .rs = CP, .cs = 1, .gs = CK * CP};
    kp_gemm_pack_view(e, p, &x);
}

/* void conv(W, X, b, Y, n) through kp_gemm_emit, JIT-compiled */
static void *conv_kernel(const char *cpu, LLVMOrcLLJITRef *jit)
{
    KpTargetOpts t = {.opt_level = KP_TEST_OPT(3), .cpu = cpu};
    KpCodegen *cg;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_int_eq(kp_llvm_module_new(&t, "conv", &cg, &d), 0);
    KpGraph *g = kp_graph_new();
    g->max_batch = CMAXB;
    KpEmit e;
    kp_emit_init(&e, cg->ctx, cg->mod, g, cg->cfg.vector_width);
    LLVMTypeRef params[5] = {e.ptr, e.ptr, e.ptr, e.ptr, e.i64};
    e.fn = LLVMAddFunction(cg->mod, "conv", LLVMFunctionType(e.void_t, params, 5, 0));
    KpNode node = {.op = KP_OP_conv2d, .nin = 3};
    e.node = &node;
    e.nptr = 4;
    for (int i = 0; i < 4; i++) {
        e.ptr_arg[i] = LLVMGetParam(e.fn, (unsigned)i);
        e.noalias[i] = 1;
    }
    e.n = LLVMGetParam(e.fn, 4);
    LLVMPositionBuilderAtEnd(e.b, LLVMAppendBasicBlockInContext(e.ctx, e.fn, "entry"));
    KpGemmOut o = {.c = {.arg = 3, .rs = CP, .cs = 1, .gs = CF * CP}, .bias_arg = 2, .bias_per_row = true};
    KpGemm gm = {
        .name = "conv",
        .m = {CF, false}, .n = {CP, false}, .k = {CK, false}, .groups = {1, true},
        .a = {.source = KP_GEMM_CUSTOM, .pack = pack_w},
        .b = {.source = KP_GEMM_CUSTOM, .pack = pack_x},
        .c = o.c,
        .store = kp_gemm_store_out,
        .store_user = &o,
    };
    ck_assert_int_eq(kp_gemm_emit(&e, &gm, &d), 0);
    ck_assert_int_gt((int)e.scratch_bytes, 0);
    LLVMBuildRetVoid(e.b);
    LLVMDisposeBuilder(e.b);
    ck_assert_msg(kp_llvm_module_finish(cg, &e, &d) == 0, "%s", d.msg);
    ck_assert_msg(kp_llvm_jit_new(cg, jit, &d) == 0, "%s", d.msg);
    kp_llvm_free(cg);
    kp_graph_free(g);
    LLVMOrcExecutorAddress addr;
    LLVMErrorRef err = LLVMOrcLLJITLookup(*jit, &addr, "conv");
    ck_assert_ptr_null(err);
    return (void *)(uintptr_t)addr;
}

START_TEST(test_grouped_custom_packers)
{
    for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++) {
        if (!runs_here(&targets[ti]))
            continue;
        LLVMOrcLLJITRef jit;
        Fn3 conv = (Fn3)(uintptr_t)conv_kernel(targets[ti].cpu, &jit);
        void *pool = aligned_alloc(64, 4 << 20);
        krt_scratch_bind(NULL, pool, 1 << 20, 4);
        float *w = floats(CF * CK), *x = floats(CMAXB * CK * CP), *b = floats(CF);
        float *y1 = floats(CMAXB * CF * CP), *y2 = floats(CMAXB * CF * CP), *ref = floats(CMAXB * CF * CP);
        for (int64_t n = 1; n <= CMAXB; n++) {
            karp_set_threads(2);
            conv(w, x, b, y2, n);
            karp_set_threads(1);
            conv(w, x, b, y1, n);
            karp_set_threads(0);
            ck_assert(memcmp(y1, y2, (size_t)(n * CF * CP) * sizeof *y1) == 0);
            for (int64_t g = 0; g < n; g++)
                for (int64_t f = 0; f < CF; f++)
                    for (int64_t q = 0; q < CP; q++) {
                        float acc = b[f];
                        for (int64_t k = 0; k < CK; k++)
                            acc += w[f * CK + k] * x[(g * CK + k) * CP + q];
                        ref[(g * CF + f) * CP + q] = acc;
                    }
            double r = kp_test_tolerance_ratio(y1, ref, n * CF * CP);
            ck_assert_msg(r <= 1.0, "%s: n=%lld: off by %.3g x tolerance", targets[ti].name,
                          (long long)n, r);
        }
        krt_scratch_bind(NULL, NULL, 0, 0);
        free(pool), free(w), free(x), free(b), free(y1), free(y2), free(ref);
        LLVMConsumeError(LLVMOrcDisposeLLJIT(jit));
    }
}
END_TEST

/* g's plan for 16-float vectors and a largest batch of batch, on this host */
static KpGemmPlan plan_of(const KpGemm *g, int64_t batch)
{
    KpGemmPlan p;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_msg(kp_gemm_plan(g, 16, batch, &p, &d) == 0, "%s", d.msg);
    return p;
}

/* dense_grad_w's GEMM for a layer of `in` inputs and `out` outputs:
 * dW [out x in] += dy^T · x, k the batch. */
static KpGemm grad_w_gemm(int64_t in, int64_t out)
{
    return (KpGemm){
        .name = "grad_w",
        .m = {out, false}, .n = {in, false}, .k = {1, true}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = 1, .cs = out}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = in, .cs = 1}},
        .c = {.arg = 2, .rs = in, .cs = 1},
        .accumulate = true,
    };
}

/* The plan packs x (A of dense) only when a tile's rows, 4 KiB apart, put
 * more lines into one L1 set than the set has ways: 16 rows (16 columns,
 * one vector a row) do, 8 rows (128 columns, two vectors) do not. */
static KpGemmPlan dense_plan(int64_t in, int64_t out, int64_t batch)
{
    KpGemm g = {
        .name = "dense",
        .m = {1, true}, .n = {out, false}, .k = {in, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = in, .cs = 1}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = 1, .cs = in}},
        .c = {.arg = 3, .rs = out, .cs = 1},
    };
    return plan_of(&g, batch);
}

START_TEST(test_pack_a_rule)
{
    long ways = sysconf(_SC_LEVEL1_DCACHE_ASSOC);
    if (ways < 8 || ways >= 16)
        return;                 /* unknown, or a cache these two shapes do not separate */
    KpGemmPlan p16 = dense_plan(1024, 16, 32), p8 = dense_plan(1024, 128, 64);
    ck_assert_int_eq(p16.mr, 16);
    ck_assert_msg(p16.pack_a, "16 rows 4 KiB apart in %ld ways: A should be packed", ways);
    ck_assert_int_eq(p8.mr, 8);
    ck_assert_msg(!p8.pack_a, "8 rows 4 KiB apart in %ld ways: A should be read in place", ways);
    ck_assert(p8.pack_b && p16.pack_b);     /* W^T is always packed */
}
END_TEST

/* B rows whose stride is a multiple of 1 KiB are packed; the first row
 * tile of each block packs them as it reads them when they are contiguous
 * along C's columns (W in dense_grad_x), not when they need a transpose
 * (W^T in dense). */
START_TEST(test_fused_pack_rule)
{
    KpGemm g = {
        .name = "dense_grad_x",
        .m = {1, true}, .n = {2048, false}, .k = {600, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = 600, .cs = 1}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = 2048, .cs = 1}},
        .c = {.arg = 3, .rs = 2048, .cs = 1},
    };
    KpGemmPlan p = plan_of(&g, 24);
    ck_assert(p.pack_b && p.fuse_b);
    g.b.view.rs = 2000;         /* no multiple of 1 KiB: read in place */
    p = plan_of(&g, 24);
    ck_assert(!p.pack_b && !p.fuse_b);
    KpGemmPlan t = dense_plan(2048, 600, 24);
    ck_assert(t.pack_b && !t.fuse_b);
}
END_TEST

/* dense_grad_w's A is dy^T, its steps of k (the batch's rows) `out`
 * floats apart: at 1024 outputs all 4 KiB apart, so a batch of 64 puts
 * the micro-panel into one L1 set and a batch of 1024 into a few L2 sets:
 * packed.  At 128 outputs (mlp dense1's dW) 64 steps spread over 8 L1
 * sets, 8 lines each: read in place. */
START_TEST(test_pack_a_far_k)
{
    long ways = sysconf(_SC_LEVEL1_DCACHE_ASSOC);
    if (ways < 8 || ways > 32)
        return;                 /* unknown, or too few ways for 8 lines a set */
    for (int i = 0; i < 3; i++) {
        static const int64_t outs[3] = {1024, 1024, 128}, batches[3] = {64, 1024, 64};
        KpGemm g = grad_w_gemm(100, outs[i]);
        KpGemmPlan p = plan_of(&g, batches[i]);
        ck_assert_msg(p.pack_a == (outs[i] == 1024), "dW %lld outputs at batch %lld: A %s",
                      (long long)outs[i], (long long)batches[i], p.pack_a ? "packed" : "in place");
    }
}
END_TEST

/* Where A is packed by its own pass and B by the first row tile (sgemm
 * TN: dy^T and x of a 1024-1024 layer at batch 1024), the cores split
 * the rows: each item packs its rows of A once and B again, which its
 * multiply-adds hide.  Split by columns, every item would pack all of A. */
START_TEST(test_pack_twice)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    KpGemm g = grad_w_gemm(1024, 1024);
    KpGemmPlan p = plan_of(&g, 1024);
    if (cores < 2 || !p.pack_a)
        return;                 /* one item, or caches where A's k steps do not crowd */
    ck_assert(p.fuse_b && p.parallel);
    ck_assert_msg(p.ncol_chunks == 1 && p.nrow_chunks >= 2, "dW 1024 x 1024 x 1024: %lld x %lld items",
                  (long long)p.nrow_chunks, (long long)p.ncol_chunks);
}
END_TEST

/* More row chunks than the cores ask where they cost no packing and B
 * stays in L2 (mlp dense1's dW: a fast core takes whole items from a
 * slow one), the grid of least time alone, at most an item a core, where
 * a row chunk packs B again (dense's W^T). */
START_TEST(test_rows_for_a_slow_core)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (cores < 2 || l2 < 512 * 1024)
        return;                 /* one item, or a B that leaves L2 */
    KpGemm g = grad_w_gemm(784, 128);
    KpGemmPlan p = plan_of(&g, 64);
    ck_assert(!p.pack_a && !p.pack_b && p.parallel);
    ck_assert_msg(p.nrow_chunks * p.ncol_chunks >= 2 * cores,
                  "dW 128 x 784 x 64: %lld x %lld items for %ld cores",
                  (long long)p.nrow_chunks, (long long)p.ncol_chunks, cores);
    KpGemmPlan t = dense_plan(784, 128, 64);
    ck_assert(t.pack_b);
    ck_assert_msg(t.nrow_chunks * t.ncol_chunks <= cores, "dense 64 x 128 x 784: %lld x %lld items",
                  (long long)t.nrow_chunks, (long long)t.ncol_chunks);
}
END_TEST

/* c's output at its largest batch on 2 threads (dense_grad_w added to
 * i % 7 - 3), its kernel compiled under KARPC_GEMM_PLAN=plan (NULL: the
 * stock plan) */
static void forced_output(const Target *tg, const Case *c, const char *plan, const float *a,
                          const float *b, const float *bias, float *y)
{
    Kernel k;
    kernel_open(&k, tg, c, plan);
    for (int64_t i = 0; i < y_count(c); i++)
        y[i] = (float)(i % 7) - 3.0f;
    karp_set_threads(2);
    run(&k.j, c, a, b, bias, NULL, y, c->maxb);
    karp_set_threads(0);
    kernel_close(&k);
}

/* Each forced plan against the stock plan on target tg, bit for bit. */
static void forced_plans_on(const Target *tg, const char *const *plans, size_t nplans)
{
    static const Case cases[] = {
        {KP_OP_dense, 2048, 600, 24, KP_OP_COUNT, 0},          /* W^T packed, 3 k blocks */
        {KP_OP_dense_grad_x, 1024, 33, 20, KP_OP_COUNT, 0},    /* W packed by the first tile */
        {KP_OP_dense_grad_w, 784, 128, 64, KP_OP_COUNT, 0},    /* accumulates, k batched */
        {KP_OP_dense_grad_w, 40, 100, 64, KP_OP_COUNT, 0},     /* A's panels in groups and alone */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const Case *c = &cases[ci];
        int64_t ycount = y_count(c);
        float *a = floats(a_count(c)), *b = floats(w_count(c)), *bias = floats(c->out);
        float *stock = floats(ycount), *y = floats(ycount);
        forced_output(tg, c, NULL, a, b, bias, stock);
        for (size_t pi = 0; pi < nplans; pi++) {
            forced_output(tg, c, plans[pi], a, b, bias, y);
            ck_assert_msg(memcmp(y, stock, (size_t)ycount * sizeof *y) == 0,
                          "%s: %s %lld->%lld: KARPC_GEMM_PLAN=%s changed the result", tg->name,
                          kp_op_name(c->op), (long long)c->in, (long long)c->out, plans[pi]);
        }
        free(a), free(b), free(bias), free(stock), free(y);
    }
}

/* Any plan KARPC_GEMM_PLAN forces gives the stock plan's bits: tiles, k
 * and column blocks, A packed or not and the item grid change the speed
 * only (every element one fma chain in k order). */
START_TEST(test_forced_plans)
{
    /* nv a multiple of 4: SSE's 4-float vectors need four for a 16-column panel */
    static const char *plans[] = {
        "kc=100,nc=40,pack_a=1,grid=3x2,mr=5,nv=4",
        "kc=7,mr=16,nv=4,pack_a=0,grid=1x1",
        "nv=4,mr=3,kc=513,grid=2x5,show",
        "pack_a=1,mr=7",
        "mr=1,nv=8,kc=64,pack_a=1",
        /* 100 outputs in row chunks of 56 and 44 (mr 8) or 50 and 50
         * (mr 2): A's panels two vectors to a step, one, and one by one;
         * with mr 8 the 44 rows' last group masked */
        "pack_a=1,mr=8,grid=2x1",
        "pack_a=1,mr=2,grid=2x1",
    };
    for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++) {
        const Target *tg = &targets[ti];
        if (runs_here(tg))
            forced_plans_on(tg, plans, sizeof plans / sizeof plans[0]);
    }
}
END_TEST

/* A KARPC_GEMM_PLAN that does not parse stops the compile with what was
 * expected. */
START_TEST(test_forced_plan_errors)
{
    static const struct {
        const char *plan, *msg;
        int vw;
    } bad[] = {
        {"kc=abc", "KARPC_GEMM_PLAN: \"kc=abc\": expected kc=N, N from 1 to 65536", 16},
        {"mr=17", "KARPC_GEMM_PLAN: \"mr=17\": expected mr=N, N from 1 to 16", 16},
        {"kc=64,grid=2", "KARPC_GEMM_PLAN: \"grid=2\": expected grid=RxC, R and C from 1 to 64", 16},
        {"pack_a=2", "KARPC_GEMM_PLAN: \"pack_a=2\": expected pack_a=N, N from 0 to 1", 16},
        {"tile=8", "KARPC_GEMM_PLAN: unknown choice \"tile=8\" (expected mr, nv, kc, nc, pack_a, "
                   "grid=, or show)", 16},
        {"nv=1", "KARPC_GEMM_PLAN: nv=1: tiles of 8 columns with 8-float vectors; expected a "
                 "multiple of 16 columns", 8},
    };
    KpGemm g = {
        .name = "grad_x",
        .m = {1, true}, .n = {300, false}, .k = {40, false}, .groups = {1, false},
        .a = {.source = KP_GEMM_VIEW, .view = {.arg = 0, .rs = 40, .cs = 1}},
        .b = {.source = KP_GEMM_VIEW, .view = {.arg = 1, .rs = 300, .cs = 1}},
        .c = {.arg = 2, .rs = 300, .cs = 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        KpGemmPlan p;
        KpDiag d;
        kp_diag_init(&d);
        setenv("KARPC_GEMM_PLAN", bad[i].plan, 1);
        int rc = kp_gemm_plan(&g, bad[i].vw, 8, &p, &d);
        unsetenv("KARPC_GEMM_PLAN");
        ck_assert_int_eq(rc, -1);
        ck_assert_str_eq(d.msg, bad[i].msg);
    }
}
END_TEST

static void report(const char *what)
{
    fprintf(stderr, "%s: worst %.3g of the tolerance\n", what, worst);
}

static Suite *gemm_suite(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_dense_shapes);
    tcase_add_test(tc, test_dense_packed_shapes);
    tcase_add_test(tc, test_grad_x_shapes);
    tcase_add_test(tc, test_grad_w_accumulates);
    tcase_add_test(tc, test_epilogues);
    tcase_add_test(tc, test_split_k);
    tcase_add_test(tc, test_pack_a_rule);
    tcase_add_test(tc, test_fused_pack_rule);
    tcase_add_test(tc, test_pack_a_far_k);
    tcase_add_test(tc, test_pack_twice);
    tcase_add_test(tc, test_rows_for_a_slow_core);
    tcase_add_test(tc, test_grouped_custom_packers);
    tcase_add_test(tc, test_forced_plans);
    tcase_add_test(tc, test_forced_plan_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(gemm_suite(), CK_FORK_GETENV);
}
