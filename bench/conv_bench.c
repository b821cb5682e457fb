/*
 * conv_bench.c — the generated convolution kernels against oneDNN, on
 * the convolutions of the example models, side by side in one run.
 *
 * Each direction of each layer is one node of the op table (conv2d,
 * conv2d_grad_x, conv2d_grad_w; the conv2d_transpose ones for DCGAN's
 * generator) JIT-compiled alone exactly as a model compiles it
 * (kp_llvm_node_jit) and called directly: the kernel's time, no copies
 * of the runtime around it.  The peer is oneDNN's convolution (found
 * with dlopen, conv_dnnl.c) twice: on NCHW data and OIHW weights as
 * karpc holds them ("plain"), and in the layouts oneDNN picks itself
 * ("blocked": nChw16c and blocked weights on AVX-512; reorders not
 * timed).  The transposed convolutions have no peer here.
 *
 * Every case runs at 1 and 2 threads (OpenMP for all).  A figure is the
 * median over rounds of the time per call (each round a run of calls of
 * at least 10 ms, the implementations taking turns in every round, so
 * that load from other processes hits them alike); GFLOP/s counts 2 MACs
 * per tap of the full window at every output (conv) or input (transposed
 * conv) position, padding included, the same for the three directions,
 * with the percent of the peak kp_measure_peak gives at that thread
 * count and the karpc vector width.  Not part of the test suite:
 *
 *   conv_bench [batch [rounds [name]]]    (default 64 and 11; name: only
 *                                          the layers whose name contains it)
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/peak.h"
#include "runtime/clock.h"
#include "runtime/model.h"

#include "conv_dnnl.h"

typedef struct Layer {
    const char *name;
    int transposed;
    int64_t c, h, w, f, k, s, pad;
    int same;                   /* "same" padding (TensorFlow's, maybe uneven) */
} Layer;

static const Layer layers[] = {
    {"fashion/keras conv1 1->32 28x28 k3", 0, 1, 28, 28, 32, 3, 1, 0, 0},
    {"fashion conv2 32->64 26x26 k3", 0, 32, 26, 26, 64, 3, 1, 0, 0},
    {"keras conv2 32->64 13x13 k3", 0, 32, 13, 13, 64, 3, 1, 0, 0},
    {"resnet stem 3->16 32x32 k3 p1", 0, 3, 32, 32, 16, 3, 1, 1, 0},
    {"resnet b1 16->16 32x32 k3 p1", 0, 16, 32, 32, 16, 3, 1, 1, 0},
    {"resnet b2c1 16->32 32x32 k3 s2 p1", 0, 16, 32, 32, 32, 3, 2, 1, 0},
    {"resnet b2c2,b3 32->32 16x16 k3 p1", 0, 32, 16, 16, 32, 3, 1, 1, 0},
    {"resnet proj 16->32 32x32 k1 s2", 0, 16, 32, 32, 32, 1, 2, 0, 0},
    {"dcgan disc1 1->64 28x28 k5 s2 same", 0, 1, 28, 28, 64, 5, 2, 0, 1},
    {"dcgan disc2 64->128 14x14 k5 s2 same", 0, 64, 14, 14, 128, 5, 2, 0, 1},
    {"dcgan convT 256->128 7x7 k5 same", 1, 256, 7, 7, 128, 5, 1, 0, 1},
    {"dcgan convT 128->64 7x7 k5 s2 same", 1, 128, 7, 7, 64, 5, 2, 0, 1},
    {"dcgan convT 64->1 14x14 k5 s2 same", 1, 64, 14, 14, 1, 5, 2, 0, 1},
};

static const char *dir_name[3] = {"forward", "grad_x", "grad_w"};

static float *buffer(int64_t count, uint64_t seed)
{
    float *p = aligned_alloc(64, (size_t)((count * 4 + 63) / 64 * 64 + 64));
    for (int64_t i = 0; i < count; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((seed >> 40) * (1.0 / 16777216.0)) - 0.5f;
    }
    return p;
}

static KpValue *value(KpGraph *g, int64_t d0, int64_t d1, int64_t d2, int64_t d3, KpStorage st)
{
    KpValue *v = kp_value_new(g, KP_ROLE_ACT, KP_F32, 4, (int64_t[]){d0, d1, d2, d3});
    v->storage = st;
    return v;
}

static KpNode *node(KpGraph *g, KpOp op, int nin, KpValue **in, const KpAttrs *at, KpStorage out)
{
    KpNode *nd = kp_node_new(g, op, "bench", "", nin, in);
    nd->attr = *at;
    KpDiag d;
    kp_diag_init(&d);
    if (kp_node_infer_shape(g, nd, &d) < 0) {
        fprintf(stderr, "conv_bench: %s\n", d.msg);
        exit(1);
    }
    nd->out->storage = out;
    nd->out->offset = 1 << 20;
    return nd;
}

/* One layer's three nodes in g: forward, grad_x, grad_w; *geo the
 * resolved geometry (the forward conv's, or for a transposed conv the
 * conv whose adjoint it is). */
static void make_nodes(KpGraph *g, const Layer *l, KpNode *nd[3], PeerGeom *geo)
{
    KpAttrs at = {.filters = l->f, .kernel = {l->k, l->k}, .stride = {l->s, l->s},
                  .padding = {l->pad, l->pad}, .dilation = {1, 1},
                  .pad_mode = l->same ? KP_PAD_SAME : KP_PAD_EXPLICIT};
    KpValue *x = value(g, KP_DIM_N, l->c, l->h, l->w, KP_STORE_INPUT);
    KpValue *w = l->transposed ? value(g, l->c, l->f, l->k, l->k, KP_STORE_PARAM)
                               : value(g, l->f, l->c, l->k, l->k, KP_STORE_PARAM);
    nd[0] = node(g, l->transposed ? KP_OP_conv2d_transpose : KP_OP_conv2d, 2, (KpValue *[]){x, w}, &at,
                 KP_STORE_OUTPUT);
    at = nd[0]->attr;
    const KpValue *y = nd[0]->out;
    KpValue *dy = value(g, KP_DIM_N, y->dims[1], y->dims[2], y->dims[3], KP_STORE_WORKSPACE);
    nd[1] = node(g, l->transposed ? KP_OP_conv2d_transpose_grad_x : KP_OP_conv2d_grad_x, 3,
                 (KpValue *[]){dy, w, x}, &at, KP_STORE_OUTPUT);
    nd[2] = node(g, l->transposed ? KP_OP_conv2d_transpose_grad_w : KP_OP_conv2d_grad_w, 2,
                 (KpValue *[]){dy, x}, &at, KP_STORE_GRAD);
    *geo = (PeerGeom){.c = l->c, .h = l->h, .w = l->w, .f = l->f, .oh = y->dims[2], .ow = y->dims[3],
                      .kh = l->k, .kw = l->k, .sh = l->s, .sw = l->s, .pt = at.padding[0],
                      .pl = at.padding[1], .dh = 1, .dw = 1};
}

/* The operands of a layer: x, w, y and their gradients. */
typedef struct Ops {
    float *x, *w, *y, *dx, *dw, *dy;
    int64_t n;
} Ops;

typedef void (*K2)(const float *, const float *, float *, int64_t);
typedef void (*K3)(const float *, const float *, const float *, float *, int64_t);

static void run_karpc(int dir, const KpNodeJit *j, const Ops *o)
{
    if (dir == 0)
        ((K2)j->fn)(o->x, o->w, o->y, o->n);
    else if (dir == 1)
        ((K3)j->fn)(o->dy, o->w, o->x, o->dx, o->n);
    else
        ((K2)j->fn)(o->dy, o->x, o->dw, o->n);
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
}

/* One call of implementation i: 0 karpc, 1 oneDNN plain, 2 oneDNN blocked. */
static void call(int i, int dir, const KpNodeJit *j, const Ops *o, PeerConv *const peer[2])
{
    if (i == 0)
        run_karpc(dir, j, o);
    else
        peer_conv_run(peer[i - 1]);
}

/* Median seconds per call of each implementation over the rounds. */
static void time_dir(int dir, const KpNodeJit *j, const Ops *o, PeerConv *const peer[2], int rounds,
                     double med[3])
{
    int have[3] = {1, peer[0] != NULL, peer[1] != NULL}, calls[3];
    double *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = calloc((size_t)rounds, sizeof(double));
        calls[i] = 1;
        if (!have[i])
            continue;
        double t0 = kp_seconds();      /* warm up, and size a round to >= 10 ms */
        for (int r = 0; r < 3; r++)
            call(i, dir, j, o, peer);
        double per = (kp_seconds() - t0) / 3;
        calls[i] = per > 0.01 ? 1 : (int)(0.01 / per) + 1;
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 3; i++) {
            if (!have[i])
                continue;
            double t0 = kp_seconds();
            for (int q = 0; q < calls[i]; q++)
                call(i, dir, j, o, peer);
            t[i][r] = (kp_seconds() - t0) / calls[i];
        }
    for (int i = 0; i < 3; i++) {
        qsort(t[i], (size_t)rounds, sizeof(double), cmp_double);
        med[i] = have[i] ? t[i][rounds / 2] : NAN;
        free(t[i]);
    }
}

static int bench(const Layer *l, int64_t n, int rounds, const KpPeak peak[3])
{
    KpGraph *g = kp_graph_new();
    g->max_batch = n;
    KpNode *nd[3];
    PeerGeom geo;
    make_nodes(g, l, nd, &geo);
    geo.n = n;
    const KpValue *y = nd[0]->out;
    Ops o = {.n = n};
    int64_t xs = n * l->c * l->h * l->w, ys = n * y->dims[1] * y->dims[2] * y->dims[3];
    int64_t ws = l->c * l->f * l->k * l->k;
    o.x = buffer(xs, 1), o.dx = buffer(xs, 2), o.w = buffer(ws, 3), o.dw = buffer(ws, 4);
    o.y = buffer(ys, 5), o.dy = buffer(ys, 6);
    double pixels = l->transposed ? (double)(l->h * l->w) : (double)(y->dims[2] * y->dims[3]);
    double flop = 2.0 * (double)ws * (double)n * pixels;
    printf("\n%s, batch %lld: %.3f GFLOP per direction\n", l->name, (long long)n, flop * 1e-9);
    printf("  %-8s %3s %16s %17s %17s\n", "", "thr", "karpc GF/s %peak", "oneDNN plain", "oneDNN blocked");
    for (int dir = 0; dir < 3; dir++) {
        /* KARPC_BENCH_CPU=x86-64-v3 times the AVX2 kernels on an AVX-512 machine */
        KpTargetOpts t = {.opt_level = 3, .cpu = getenv("KARPC_BENCH_CPU")};
        KpNodeJit j;
        KpDiag d;
        kp_diag_init(&d);
        if (kp_llvm_node_jit(g, nd[dir], &t, &j, &d) < 0) {
            fprintf(stderr, "conv_bench: %s %s: %s\n", l->name, dir_name[dir], d.msg);
            return -1;
        }
        int64_t nslots = 4, stride = (j.scratch_bytes + 63) / 64 * 64;
        int64_t shared = (j.scratch_shared_bytes + 63) / 64 * 64;
        char *pool = aligned_alloc(64, (size_t)(shared + nslots * stride + 64));
        memset(pool, 0, (size_t)(shared + nslots * stride));   /* counters at 0, slot tails untagged */
        krt_scratch_bind(shared ? pool : NULL, stride ? pool + shared : NULL, stride, nslots);
        for (int th = 1; th <= 2; th++) {
            set_threads(th);
            /* oneDNN sizes a primitive for the threads there are when it is made */
            PeerConv *peer[2] = {NULL, NULL};
            char impl[2][64] = {"-", "-"};
            for (int b = 0; b < 2 && !l->transposed; b++)
                peer[b] = peer_conv_new(&geo, (PeerDir)dir, b, dir == 1 ? o.dx : o.x,
                                        dir == 2 ? o.dw : o.w, dir == 0 ? o.y : o.dy, impl[b],
                                        sizeof impl[b]);
            double med[3], gf[3];
            time_dir(dir, &j, &o, peer, rounds, med);
            for (int i = 0; i < 3; i++)
                gf[i] = flop / med[i] * 1e-9;
            printf("  %-8s %3d %9.1f %5.1f%% %17.1f %17.1f", dir_name[dir], th, gf[0],
                   100.0 * gf[0] / peak[th].gflops, gf[1], gf[2]);
            printf(th == 1 && peer[0] ? "   (%s, %s)\n" : "\n", impl[0], impl[1]);
            fflush(stdout);
            for (int b = 0; b < 2; b++)
                peer_conv_free(peer[b]);
        }
        krt_scratch_bind(NULL, NULL, 0, 0);
        free(pool);
        kp_llvm_node_jit_free(&j);
    }
    free(o.x), free(o.dx), free(o.w), free(o.dw), free(o.y), free(o.dy);
    kp_graph_free(g);
    return 0;
}

int main(int argc, char **argv)
{
    /* karpc's regions on OpenMP's threads, which the peers use too: one
     * pool for the three, else libgomp's threads spin after a peer's turn
     * beside karpc's team (docs/abi.md, "A host with OpenMP work of its own") */
    setenv("KARP_THREAD_POOL", "openmp", 1);
    int64_t n = argc > 1 ? atoll(argv[1]) : 64;
    int rounds = argc > 2 ? atoi(argv[2]) : 11;
    const char *only = argc > 3 ? argv[3] : "";
    if (n < 1 || rounds < 1) {
        fprintf(stderr, "usage: conv_bench [batch [rounds [name]]]\n");
        return 2;
    }
    if (!peer_dnnl_compiled())
        printf("oneDNN: not compiled in (its header is missing: scripts/setup.sh --peers)\n");
    else
        printf("oneDNN: %s\n", peer_dnnl_load() ? "found" : "missing");
    KpPeak peak[3];
    for (int t = 1; t <= 2; t++)
        peak[t] = kp_measure_peak(t, 0);
    printf("peak: %.0f GFLOP/s on 1 thread, %.0f on 2 (%d-lane FMA); median of %d rounds\n",
           peak[1].gflops, peak[2].gflops, peak[1].lanes, rounds);
    int failed = 0;
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
        if (strstr(layers[i].name, only))
            failed |= bench(&layers[i], n, rounds, peak) != 0;
    return failed;
}
