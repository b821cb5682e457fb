/*
 * gemm_bench.c — the generated GEMM kernels against OpenBLAS and oneDNN,
 * side by side in one run.
 *
 * Each case is one node of the op table (dense, dense_packed,
 * dense_grad_x, dense_grad_w) JIT-compiled alone exactly as a model
 * compiles it (kp_llvm_node_jit), and the same product through
 * cblas_sgemm (OpenBLAS, the OpenMP build) and dnnl_sgemm (oneDNN), both
 * found with dlopen at run time — the build never needs them; a peer that
 * is missing prints "-".  Row-major throughout:
 *
 *   sgemm 1024^3      C = A B           dense_grad_x at batch 1024 (NN);
 *                                       dense and dense_grad_w too (NT, TN)
 *   forward           y = x W^T (+b)    dense (W packed per call) and
 *                                       dense_packed (W packed once), NT
 *   dx                dx = dy W         dense_grad_x, NN
 *   dW                dW += dy^T x      dense_grad_w, TN, beta = 1
 *
 * The karpc forward kernels add the bias (and dense1 its relu) as the
 * model does; the peers compute the plain product.  Every case runs at 1
 * and 2 threads (OpenMP for all three).  A figure is the median over
 * rounds of the time per call (each round a run of calls of at least
 * 10 ms, the three implementations taking turns in every round, so that
 * load from other processes hits them alike); GFLOP/s = 2 M N K / time,
 * with the percent of the peak kp_measure_peak gives at that thread
 * count and the karpc vector width.  Not part of the test suite:
 *
 *   gemm_bench [rounds [cpu [filter]]]
 *       default 15 rounds, the host CPU ("host"; e.g. x86-64-v3 for the AVX2 code,
 *       measured against the 8-lane peak), every case (else those whose
 *       name contains filter)
 *
 *   gemm_bench --ab PLAN [rounds [cpu [filter]]]
 *       karpc against itself: each case compiled twice, A with the stock
 *       plan and B with KARPC_GEMM_PLAN=PLAN (backend/gemm_tune.c, e.g.
 *       "kc=256,pack_a=1"), in one process; per round, 10 calls of each
 *       in turn, which goes first alternating; printed: the median over
 *       the rounds of B's time over A's, with the 10th and 90th
 *       percentiles (below 1: B is faster)
 */
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/llvm_internal.h"
#include "backend/peak.h"
#include "runtime/clock.h"
#include "runtime/model.h"

typedef void (*CblasSgemm)(int, int, int, int, int, int, float, const float *, int, const float *,
                           int, float, float *, int);
typedef int (*DnnlSgemm)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);
typedef void (*OpenblasThreads)(int);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static CblasSgemm cblas;
static OpenblasThreads openblas_threads;
static DnnlSgemm dnnl;

typedef enum { DENSE, DENSE_PACKED, GRAD_X, GRAD_W } Kind;

typedef struct Case {
    const char *name;
    Kind kind;
    int64_t m, n, k;            /* C is m x n; for GRAD_W, m = out, k = batch */
    int relu;                   /* dense1's fused relu */
} Case;

static const Case cases[] = {
    {"sgemm 1024^3 (dense_grad_x, NN)", GRAD_X, 1024, 1024, 1024, 0},
    {"sgemm 1024^3 (dense, NT)", DENSE, 1024, 1024, 1024, 0},
    {"sgemm 1024^3 (dense_grad_w, TN)", GRAD_W, 1024, 1024, 1024, 0},
    {"wide dW 1024x1024x64", GRAD_W, 1024, 1024, 64, 0},
    {"mlp dense1 fwd 64x128x784", DENSE, 64, 128, 784, 1},
    {"mlp dense1 infer (packed)", DENSE_PACKED, 64, 128, 784, 1},
    {"mlp dense2 fwd 64x10x128", DENSE, 64, 10, 128, 0},
    {"mlp dense1 dx 64x784x128", GRAD_X, 64, 784, 128, 0},
    {"mlp dense2 dx 64x128x10", GRAD_X, 64, 128, 10, 0},
    {"mlp dense1 dW 128x784x64", GRAD_W, 128, 784, 64, 0},
    {"mlp dense2 dW 10x128x64", GRAD_W, 10, 128, 64, 0},
    {"cnn dense fwd 64x128x9216", DENSE, 64, 128, 9216, 1},
    {"cnn dense infer (packed)", DENSE_PACKED, 64, 128, 9216, 1},
    {"cnn dense dx 64x9216x128", GRAD_X, 64, 9216, 128, 0},
    {"cnn dense dW 128x9216x64", GRAD_W, 128, 9216, 64, 0},
    {"keras dense5 fwd 64x64x1600", DENSE, 64, 64, 1600, 1},
    {"keras dense5 dx 64x1600x64", GRAD_X, 64, 1600, 64, 0},
    {"keras dense5 dW 64x1600x64", GRAD_W, 64, 1600, 64, 0},
    {"mlp dense1 infer batch 1", DENSE_PACKED, 1, 128, 784, 1},
    {"mlp dense1 fwd batch 1", DENSE, 1, 128, 784, 1},
    {"cnn dense infer batch 1", DENSE_PACKED, 1, 128, 9216, 1},
    {"cnn dense fwd batch 1", DENSE, 1, 128, 9216, 1},
};

static float *buffer(int64_t count, uint64_t seed)
{
    float *p = aligned_alloc(64, (size_t)((count * 4 + 63) / 64 * 64 + 64));
    for (int64_t i = 0; i < count; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((seed >> 40) * (1.0 / 16777216.0)) - 0.5f;
    }
    return p;
}

/* The case's node in g (batch m, or k for GRAD_W). */
static KpNode *make_node(KpGraph *g, const Case *c)
{
    static const KpOp ops[] = {[DENSE] = KP_OP_dense, [DENSE_PACKED] = KP_OP_dense_packed,
                               [GRAD_X] = KP_OP_dense_grad_x, [GRAD_W] = KP_OP_dense_grad_w};
    int64_t in = c->kind == DENSE || c->kind == DENSE_PACKED ? c->k : c->n;
    int64_t out = c->kind == GRAD_X ? c->k : c->kind == GRAD_W ? c->m : c->n;
    KpDiag d;
    kp_diag_init(&d);
    KpNode *nd = kp_dense_node(g, ops[c->kind], in, out, &d);
    if (!nd) {
        fprintf(stderr, "gemm_bench: %s\n", d.msg);
        exit(1);
    }
    if (c->relu) {
        nd->nepi = 1;
        nd->epi[0] = (KpEpilogue){.op = KP_OP_relu};
    }
    return nd;
}

/* Operands of one case, for all three implementations. */
typedef struct Ops {
    float *a, *b, *bias, *panels, *c, *cpeer;
    int64_t batch;              /* the kernel's n */
} Ops;

typedef void (*K2)(const float *, const float *, float *, int64_t);
typedef void (*K3)(const float *, const float *, const float *, float *, int64_t);

static void run_karpc(const Case *c, const KpNodeJit *j, Ops *o)
{
    switch (c->kind) {
    case DENSE:
        ((K3)j->fn)(o->a, o->b, o->bias, o->c, o->batch);
        break;
    case DENSE_PACKED:
        ((K3)j->fn)(o->a, o->panels, o->bias, o->c, o->batch);
        break;
    case GRAD_X:
    case GRAD_W:
        ((K2)j->fn)(o->a, o->b, o->c, o->batch);
        break;
    }
}

/* The same product through a peer (0: OpenBLAS, 1: oneDNN). */
static void run_peer(int which, const Case *c, Ops *o)
{
    int64_t m = c->m, n = c->n, k = c->k;
    int ta = c->kind == GRAD_W, tb = c->kind == DENSE || c->kind == DENSE_PACKED;
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    float beta = c->kind == GRAD_W ? 1.0f : 0.0f;
    if (which == 0)
        cblas(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, (int)m, (int)n, (int)k, 1.0f,
              o->a, (int)lda, o->b, (int)ldb, beta, o->cpeer, (int)n);
    else
        dnnl(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, o->a, lda, o->b, ldb, beta, o->cpeer, n);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void set_threads(int t)
{
    karp_set_threads(t);
    omp_set_num_threads(t);
    if (openblas_threads)
        openblas_threads(t);
}

/* Median seconds per call of implementation impl (0 karpc, 1 OpenBLAS,
 * 2 oneDNN) over the rounds, the three taking turns per round. */
static void time_case(const Case *c, const KpNodeJit *j, Ops *o, int rounds, double med[3])
{
    int have[3] = {1, cblas != NULL, dnnl != NULL};
    double *t[3];
    int calls[3];
    for (int i = 0; i < 3; i++) {
        t[i] = calloc((size_t)rounds, sizeof(double));
        calls[i] = 1;
        if (!have[i])
            continue;
        double t0 = kp_seconds();      /* warm up, and size a round to >= 10 ms */
        for (int r = 0; r < 3; r++)
            i ? run_peer(i - 1, c, o) : run_karpc(c, j, o);
        double per = (kp_seconds() - t0) / 3;
        calls[i] = per > 0.01 ? 1 : (int)(0.01 / per) + 1;
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 3; i++) {
            if (!have[i])
                continue;
            double t0 = kp_seconds();
            for (int q = 0; q < calls[i]; q++)
                i ? run_peer(i - 1, c, o) : run_karpc(c, j, o);
            t[i][r] = (kp_seconds() - t0) / calls[i];
        }
    for (int i = 0; i < 3; i++) {
        qsort(t[i], (size_t)rounds, sizeof(double), cmp_double);
        med[i] = have[i] ? t[i][rounds / 2] : NAN;
        free(t[i]);
    }
}

/* Per round, B's time over A's for 10 calls each, the order alternating;
 * printed: the median ratio and its 10th-90th percentiles. */
static void ab_case(const Case *c, const KpNodeJit *ja, const KpNodeJit *jb, Ops *o, int rounds, int th)
{
    double *ratio = calloc((size_t)rounds, sizeof(double));
    for (int w = 0; w < 3; w++)
        run_karpc(c, ja, o), run_karpc(c, jb, o);
    for (int r = 0; r < rounds; r++) {
        double ta = 0, tb = 0;
        for (int q = 0; q < 10; q++) {
            const KpNodeJit *first = q & 1 ? jb : ja, *second = q & 1 ? ja : jb;
            double t0 = kp_seconds();
            run_karpc(c, first, o);
            double t1 = kp_seconds();
            run_karpc(c, second, o);
            double t2 = kp_seconds();
            ta += q & 1 ? t2 - t1 : t1 - t0;
            tb += q & 1 ? t1 - t0 : t2 - t1;
        }
        ratio[r] = tb / ta;
    }
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    printf("%-34s %3d %8.3f %7.3f-%.3f\n", c->name, th, ratio[rounds / 2], ratio[rounds / 10],
           ratio[rounds - 1 - rounds / 10]);
    fflush(stdout);
    free(ratio);
}

/* The case's kernel under KARPC_GEMM_PLAN=plan (NULL: the stock plan). */
static int compile_case(const Case *c, const KpTargetOpts *target, const char *plan, KpGraph **g,
                        KpNodeJit *j)
{
    *g = kp_graph_new();
    (*g)->max_batch = c->kind == GRAD_W ? c->k : c->m;
    KpNode *nd = make_node(*g, c);
    KpDiag d;
    kp_diag_init(&d);
    if (plan)
        setenv("KARPC_GEMM_PLAN", plan, 1);
    int rc = kp_llvm_node_jit(*g, nd, target, j, &d);
    if (plan)
        unsetenv("KARPC_GEMM_PLAN");
    if (rc < 0)
        fprintf(stderr, "gemm_bench: %s: %s\n", c->name, d.msg);
    return rc;
}

static void load_peers(void)
{
    void *h = dlopen("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        cblas = (CblasSgemm)(uintptr_t)dlsym(h, "cblas_sgemm");
        openblas_threads = (OpenblasThreads)(uintptr_t)dlsym(h, "openblas_set_num_threads");
    }
    const char *names[] = {"libdnnl.so.3", "libdnnl.so.2", "libdnnl.so"};
    for (int i = 0; i < 3 && !dnnl; i++) {
        void *hd = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (hd)
            dnnl = (DnnlSgemm)(uintptr_t)dlsym(hd, "dnnl_sgemm");
    }
}

int main(int argc, char **argv)
{
    /* karpc's regions on OpenMP's threads, which the peers use too: one
     * pool for the three, else libgomp's threads spin after a peer's turn
     * beside karpc's team (docs/abi.md, "A host with OpenMP work of its own") */
    setenv("KARP_THREAD_POOL", "openmp", 1);
    const char *plan = NULL;
    if (argc > 2 && strcmp(argv[1], "--ab") == 0) {
        plan = argv[2];
        unsetenv("KARPC_GEMM_PLAN");    /* A is the stock plan */
        argc -= 2, argv += 2;
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    const char *cpu = argc > 2 && strcmp(argv[2], "host") != 0 ? argv[2] : NULL;
    const char *filter = argc > 3 ? argv[3] : "";
    if (rounds < 1 || (argc > 1 && strcmp(argv[1], "--ab") == 0)) {
        fprintf(stderr, "usage: gemm_bench [--ab PLAN] [rounds [cpu|host [filter]]]\n");
        return 1;
    }
    load_peers();
    KpTargetOpts target = {.opt_level = 3, .cpu = cpu};
    if (plan) {
        printf("karpc for %s: A the stock plan, B KARPC_GEMM_PLAN=%s; %d rounds\n\n", cpu ? cpu : "the host CPU",
               plan, rounds);
        printf("%-34s %3s %8s %13s\n", "case", "thr", "B/A", "10-90%");
    } else {
        printf("OpenBLAS (openblas-openmp): %s; oneDNN: %s; karpc for %s\n", cblas ? "found" : "missing",
               dnnl ? "found" : "missing", cpu ? cpu : "the host CPU");
    }
    /* the peak at the vector width the code is compiled for */
    KpTargetConfig cfg;
    KpDiag dg;
    kp_diag_init(&dg);
    if (kp_llvm_target_config(&target, &cfg, &dg) < 0) {
        fprintf(stderr, "gemm_bench: %s\n", dg.msg);
        return 1;
    }
    int lanes = cfg.vector_width;
    kp_llvm_target_config_free(&cfg);
    KpPeak peak[3];
    for (int t = 1; t <= 2 && !plan; t++)
        peak[t] = kp_measure_peak(t, lanes);
    if (!plan) {
        printf("peak: %.0f GFLOP/s on 1 thread, %.0f on 2 (%d-lane FMA); median of %d rounds\n\n",
               peak[1].gflops, peak[2].gflops, peak[1].lanes, rounds);
        printf("%-34s %3s %15s %15s %15s %7s %7s\n", "case", "thr", "karpc GF/s %pk", "OpenBLAS",
               "oneDNN", "k/OB", "k/DNNL");
    }
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const Case *c = &cases[ci];
        if (!strstr(c->name, filter))
            continue;
        KpGraph *g, *gb = NULL;
        KpNodeJit j, jb;
        if (compile_case(c, &target, NULL, &g, &j) < 0 || (plan && compile_case(c, &target, plan, &gb, &jb) < 0))
            return 1;
        int64_t batch = c->kind == GRAD_W ? c->k : c->m;
        Ops o = {.batch = batch};
        int64_t asz = c->m * c->k, bsz = c->k * c->n;
        o.a = buffer(asz, 1);
        o.b = buffer(bsz, 2);
        o.bias = buffer(c->n, 3);
        o.c = buffer(c->m * c->n, 4);
        o.cpeer = buffer(c->m * c->n, 5);
        int64_t np = (c->n + 15) / 16;
        o.panels = buffer(np * c->k * 16, 6);
        for (int64_t p = 0; p < np * 16; p++)      /* panel[p/16][k][p%16] = W[p][k] */
            for (int64_t k = 0; k < c->k; k++)
                o.panels[(p / 16) * c->k * 16 + k * 16 + p % 16] = p < c->n ? o.b[p * c->k + k] : 0;
        int64_t sb = plan && jb.scratch_bytes > j.scratch_bytes ? jb.scratch_bytes : j.scratch_bytes;
        int64_t sh = plan && jb.scratch_shared_bytes > j.scratch_shared_bytes ? jb.scratch_shared_bytes
                                                                              : j.scratch_shared_bytes;
        int64_t nslots = 4, stride = (sb + 63) / 64 * 64, shared = (sh + 63) / 64 * 64;
        char *pool = aligned_alloc(64, (size_t)(shared + nslots * stride + 64));
        memset(pool, 0, (size_t)shared);     /* split GEMMs' counters start at 0 */
        krt_scratch_bind(shared ? pool : NULL, stride ? pool + shared : NULL, stride, nslots);
        for (int th = 1; th <= 2; th++) {
            set_threads(th);
            if (plan) {
                ab_case(c, &j, &jb, &o, rounds, th);
                continue;
            }
            double med[3];
            time_case(c, &j, &o, rounds, med);
            double flop = 2.0 * (double)c->m * (double)c->n * (double)c->k;
            double gf[3];
            for (int i = 0; i < 3; i++)
                gf[i] = flop / med[i] * 1e-9;
            printf("%-34s %3d %8.1f %5.1f%% %15.1f %15.1f %7.2f %7.2f\n", c->name, th, gf[0],
                   100.0 * gf[0] / peak[th].gflops, gf[1], gf[2], gf[0] / gf[1], gf[0] / gf[2]);
            fflush(stdout);
        }
        krt_scratch_bind(NULL, NULL, 0, 0);
        free(pool);
        free(o.a), free(o.b), free(o.bias), free(o.c), free(o.cpeer), free(o.panels);
        kp_llvm_node_jit_free(&j);
        kp_graph_free(g);
        if (plan) {
            kp_llvm_node_jit_free(&jb);
            kp_graph_free(gb);
        }
    }
    return 0;
}
