/*
 * test_conv.c — the convolution kernels node by node: conv2d, conv2d_grad_x
 * and conv2d_grad_w, each JIT-compiled alone as a model compiles it
 * (kp_llvm_node_jit), against the reference kernels of runtime/ref.
 *
 *   geometries  channels 1, 3 and 17, odd sizes, strides 2, 3 and (3,1),
 *               padding valid, explicit and "same" (even and uneven),
 *               dilation 2, 1x1 kernels (stride 1 and 2), rectangular
 *               kernels, images one pixel wide, k beyond one k block,
 *               filters that are no multiple of the register tile;
 *               input gradients whose dy rows fill more lanes than dx's
 *               (the row kernel: padding top or left, a masked dy vector);
 *               Winograd's 3x3 kernel (fashion_cnn's conv2, odd output
 *               sizes with padding, 34 and 36 channels, blocks of tiles
 *               that start and end inside a tile row; its weight
 *               gradient from 16 channels: 17 -> 19 too, several samples
 *               a block and a chunk of the batch each); the weight
 *               gradient by outer products (a partial vector and tile of
 *               filters, stride and dilation, more taps a tile than lanes,
 *               padding: read in place by forms of the border pixels,
 *               border only right and below, dilated, or x copied with
 *               its border where the forms would be too many)
 *   batches     n = 3, 2 and 1 of a largest batch of 3 (the largest first)
 *   targets     the host (AVX-512 here) and x86-64-v3 (AVX2), each that
 *               this CPU runs; and x86-64-v3 with the kernels of 16- and
 *               4-float vectors, so that an AVX2 machine checks the
 *               AVX-512 code paths too
 *   epilogues   conv2d with a bias, + a residual add, then relu;
 *               conv2d_grad_x + add, then relu_grad (the strided input
 *               gradient's phases too)
 *   accumulate  conv2d_grad_w adds into a gradient slot holding values
 *   threads     1 and 2 threads give the same bits
 * and a residual conv model through the JIT and a model.so: same bits.
 * Every target of a geometry draws the same inputs, so the reference is
 * computed once per geometry, direction and batch (RefCache).
 *
 * Tolerance: |got - ref| <= 1e-5 (|ref| + mean |ref|) (kp_test_tolerance_ratio).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/emit_conv.h"
#include "include/karp.h"
#include "modelbuild.h"
#include "numcheck.h"
#include "runtime/model.h"
#include "runtime/ref/ref.h"

typedef struct Target {
    const char *name, *cpu;
    bool avx2;
    int vw;                     /* 0: the target's vector width */
} Target;

/* The last two run the kernels of the other vector widths here: AVX-512's
 * 16-float code (split into AVX2 halves by LLVM) and SSE's 4-float code. */
static const Target targets[] = {
    {"host", NULL, false, 0},
    {"x86-64-v3 (AVX2)", "x86-64-v3", true, 0},
    {"x86-64-v3, 16-float vectors", "x86-64-v3", true, 16},
    {"x86-64-v3, 4-float vectors", "x86-64-v3", true, 4},
};

/* x [c,h,w], weight [f,c,kh,kw]; stride, padding (explicit unless same), dilation */
typedef struct Geo {
    int64_t c, h, w, f, kh, kw, sh, sw, ph, pw, dh, dw;
    bool same;
} Geo;

static const Geo geos[] = {
    {1, 28, 28, 32, 3, 3, 1, 1, 0, 0, 1, 1, false},     /* a first layer */
    {3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, false},      /* three channels, odd sizes */
    {17, 9, 7, 19, 3, 3, 1, 1, 1, 1, 1, 1, false},
    {16, 10, 10, 24, 3, 3, 2, 2, 1, 1, 1, 1, false},    /* stride 2 */
    {8, 12, 9, 6, 5, 5, 2, 2, 0, 0, 1, 1, true},        /* uneven "same", stride 2 */
    {6, 14, 13, 7, 3, 3, 1, 1, 0, 0, 2, 2, true},       /* dilation 2, "same" */
    {16, 8, 8, 32, 1, 1, 1, 1, 0, 0, 1, 1, false},      /* 1x1 */
    {12, 16, 16, 20, 1, 1, 2, 2, 0, 0, 1, 1, false},    /* 1x1 stride 2 */
    {5, 7, 30, 9, 3, 5, 3, 1, 2, 1, 1, 1, false},       /* stride (3,1), 3x5 */
    {4, 5, 1, 3, 3, 1, 1, 1, 1, 0, 1, 1, false},        /* one pixel wide */
    {32, 26, 26, 64, 3, 3, 1, 1, 0, 0, 1, 1, false},    /* fashion_cnn's conv2 */
    {64, 6, 6, 40, 5, 5, 1, 1, 2, 2, 1, 1, false},      /* k = 1600, 1000: several k blocks */
    /* grad_x summed along dy's rows (emit_conv_rows.c), dy fuller than dx: */
    {3, 9, 10, 5, 3, 3, 1, 1, 1, 0, 1, 1, false},       /* dy 8 wide, dx 10, top padding */
    {6, 6, 10, 4, 3, 5, 1, 1, 0, 1, 1, 1, false},       /* 3x5, left padding, 2 channels an item */
    {2, 7, 9, 3, 3, 3, 1, 1, 0, 0, 1, 1, false},        /* dy 7 wide: its vector masked */
    {3, 6, 18, 4, 3, 3, 1, 1, 0, 0, 1, 1, false},       /* dy 16, dx 18 (the AVX-512 case too) */
    /* Winograd F(2x2, 3x3) (emit_conv_winograd.c), 16 channels and more (17 -> 19 above too): */
    {32, 11, 13, 40, 3, 3, 1, 1, 1, 1, 1, 1, false},    /* odd output sizes, padding 1 */
    {36, 7, 9, 34, 3, 3, 1, 1, 0, 0, 1, 1, false},      /* channels no multiple of the tile or vector */
    {48, 25, 21, 48, 3, 3, 1, 1, 1, 1, 1, 1, false},    /* 143 tiles: blocks that start mid-row, oh odd */
    {32, 9, 40, 32, 3, 3, 1, 1, 1, 1, 1, 1, false},     /* tile rows of two vectors, split by blocks */
    /* its weight gradient with the tiles in the GEMMs' lanes (emit_conv_winograd_w.c): */
    {16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false},    /* resnet_cifar's b1 */
    {17, 30, 30, 19, 3, 3, 1, 1, 1, 1, 1, 1, false},    /* 225 tiles: a masked last vector; partial 4 x 4 tiles */
    /* the weight gradient by outer products (emit_conv_grad_w_outer.c): */
    {8, 9, 11, 70, 3, 3, 1, 1, 0, 0, 1, 1, false},      /* 70 filters: a partial vector and tile of them */
    {4, 12, 11, 16, 3, 3, 1, 2, 0, 0, 2, 2, false},     /* stride (1,2), dilation 2 */
    {3, 10, 10, 8, 3, 3, 1, 1, 0, 0, 1, 1, false},      /* 8 filters: 12 taps a tile with AVX2 */
    {3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false},     /* padded (resnet's stem): 3 x 3 forms, 2 channels a tile */
    {16, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, false},      /* padded, stride 2: 2 x 2 forms */
    {8, 12, 9, 16, 5, 5, 2, 2, 0, 0, 1, 1, true},       /* uneven "same": more border right and below; 3 x 3 forms of 25 taps */
    {16, 14, 13, 32, 3, 3, 2, 2, 0, 0, 1, 1, true},     /* "same", stride 2: border below and right only */
    {4, 11, 12, 16, 3, 3, 1, 1, 1, 1, 2, 2, false},     /* dilation 2, padding 1: 4 x 4 forms */
    {3, 8, 9, 16, 3, 3, 1, 1, 3, 3, 1, 1, false},       /* padding 3: 7 x 7 forms, too many: copied */
    {6, 10, 10, 32, 5, 5, 2, 2, 0, 0, 1, 1, true},      /* 5x5, 32 filters: 12-tap tiles, copied */
    /* the input gradient with lanes along dx's channels (emit_conv_grad_x_outer.c): */
    {32, 13, 13, 12, 3, 3, 1, 1, 0, 0, 1, 1, false},    /* keras_cnn's conv2d2 turned round: rows of 7 + 6
                                                            (12 filters: Winograd takes 16 and more) */
    {70, 9, 11, 8, 3, 3, 1, 1, 1, 1, 1, 1, false},      /* 70 channels: a partial vector, a narrower block */
    {16, 5, 20, 8, 5, 5, 1, 1, 2, 2, 1, 1, false},      /* 25 taps, rows off dy skipped, 2-4 tiles a row */
    {16, 6, 9, 4, 3, 5, 1, 1, 0, 0, 1, 1, true},        /* 3x5, uneven "same" */
    /* the strided input gradient's phases read as one row each (emit_conv.c, "Small images"): */
    {12, 14, 14, 20, 5, 5, 2, 2, 0, 0, 1, 1, true},     /* dcgan's 14x14 "same": 7x7 phases, 4 x 4 tiles */
    {6, 14, 10, 6, 3, 3, 2, 2, 1, 1, 1, 1, false},      /* 7x5 phases: 3 vectors by 3 channels */
    {8, 40, 14, 8, 3, 3, 2, 2, 1, 1, 1, 1, false},      /* 20x7 phases: tiles of 4, 4 and 1 vectors */
    /* one dx channel: input channels split among fma chains, 3 left over */
    {1, 9, 10, 11, 3, 3, 2, 2, 1, 1, 1, 1, false},
};

/* The weight gradient by chunks of the samples, at a largest batch of
 * CHUNKED_MAXB: n = 1..6, chunks without samples below 4, uneven chunks
 * at 5 and 6.  The dot kernel's (emit_conv_grad_w.c) for fewer taps than
 * filters, the outer products' (emit_conv_grad_w_outer.c) past
 * KP_OUTER_MAX_PIXELS pixels in the largest batch. */
enum { CHUNKED_MAXB = 6 };
static const struct {
    Geo g;
    bool outer;
} chunked_geos[] = {
    {{3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false}, true},     /* resnet's stem */
    {{4, 54, 54, 32, 3, 3, 2, 2, 1, 1, 1, 1, false}, true},     /* stride 2, padded, 27x27 out */
    {{16, 32, 32, 32, 1, 1, 2, 2, 0, 0, 1, 1, false}, false},   /* resnet's projection: 16 taps */
};

enum { MAXB = 3 };

static uint64_t rng = 777;     /* check_geo seeds it per geometry */
static double worst[3];

static float *floats(int64_t count)
{
    float *p = malloc((size_t)(count > 0 ? count : 1) * sizeof *p);
    for (int64_t i = 0; i < count; i++)
        p[i] = kp_test_uniform(&rng, -1.0f, 1.0f);
    return p;
}

static KpValue *value(KpGraph *g, int64_t d0, int64_t d1, int64_t d2, int64_t d3, KpStorage st)
{
    KpValue *v = kp_value_new(g, KP_ROLE_ACT, KP_F32, 4, (int64_t[]){d0, d1, d2, d3});
    v->storage = st;
    return v;
}

static void add_operand(KpGraph *g, KpNode *nd, KpEpilogue *ep)
{
    const KpValue *o = nd->out;
    nd->in[nd->nin] = value(g, KP_DIM_N, o->dims[1], o->dims[2], o->dims[3], KP_STORE_WORKSPACE);
    ep->arg[ep->nargs++] = nd->nin++;
}

/* The three nodes of geometry c in g: [0] conv2d (with a bias and, if
 * epi, add then relu), [1] conv2d_grad_x (if epi: add then relu_grad),
 * [2] conv2d_grad_w into a gradient slot. */
static void make_nodes(KpGraph *g, const Geo *c, bool epi, KpNode *nd[3])
{
    KpAttrs at = {.filters = c->f, .kernel = {c->kh, c->kw}, .stride = {c->sh, c->sw},
                  .padding = {c->ph, c->pw}, .dilation = {c->dh, c->dw},
                  .pad_mode = c->same ? KP_PAD_SAME : KP_PAD_EXPLICIT};
    KpValue *x = value(g, KP_DIM_N, c->c, c->h, c->w, KP_STORE_INPUT);
    KpValue *w = value(g, c->f, c->c, c->kh, c->kw, KP_STORE_PARAM);
    KpValue *b = kp_value_new(g, KP_ROLE_ACT, KP_F32, 1, (int64_t[]){c->f});
    b->storage = KP_STORE_PARAM;
    KpDiag d;
    kp_diag_init(&d);
    nd[0] = kp_node_new(g, KP_OP_conv2d, "conv", "", epi ? 3 : 2, (KpValue *[]){x, w, b});
    nd[0]->attr = at;
    ck_assert_msg(kp_node_infer_shape(g, nd[0], &d) == 0, "%s", d.msg);
    at = nd[0]->attr;
    const KpValue *y = nd[0]->out;
    KpValue *dy = value(g, KP_DIM_N, y->dims[1], y->dims[2], y->dims[3], KP_STORE_WORKSPACE);
    nd[1] = kp_node_new(g, KP_OP_conv2d_grad_x, "conv", "", 3, (KpValue *[]){dy, w, x});
    nd[2] = kp_node_new(g, KP_OP_conv2d_grad_w, "conv", "", 2, (KpValue *[]){dy, x});
    for (int i = 1; i < 3; i++) {
        nd[i]->attr = at;
        ck_assert_msg(kp_node_infer_shape(g, nd[i], &d) == 0, "%s", d.msg);
    }
    nd[2]->out->storage = KP_STORE_GRAD;
    if (epi) {
        for (int i = 0; i < 2; i++) {
            nd[i]->nepi = 2;
            nd[i]->epi[0] = (KpEpilogue){.op = KP_OP_add};
            nd[i]->epi[1] = (KpEpilogue){.op = i == 0 ? KP_OP_relu : KP_OP_relu_grad};
            add_operand(g, nd[i], &nd[i]->epi[0]);
            if (i == 1)
                add_operand(g, nd[i], &nd[i]->epi[1]);
        }
    }
}

typedef void (*Fn2)(const float *, const float *, float *, int64_t);
typedef void (*Fn3)(const float *, const float *, const float *, float *, int64_t);
typedef void (*Fn4)(const float *, const float *, const float *, const float *, float *, int64_t);
typedef void (*Fn5)(const float *, const float *, const float *, const float *, const float *,
                    float *, int64_t);

typedef struct Data {
    float *x, *w, *b, *dy, *r, *s;      /* r: the add's operand, s: relu_grad's */
} Data;

static void run(int dir, bool epi, const KpNodeJit *j, const Data *t, float *out, int64_t n)
{
    if (dir == 0 && epi)
        ((Fn4)j->fn)(t->x, t->w, t->b, t->r, out, n);
    else if (dir == 0)
        ((Fn2)j->fn)(t->x, t->w, out, n);
    else if (dir == 1 && epi)
        ((Fn5)j->fn)(t->dy, t->w, t->x, t->r, t->s, out, n);
    else if (dir == 1)
        ((Fn3)j->fn)(t->dy, t->w, t->x, out, n);
    else
        ((Fn2)j->fn)(t->dy, t->x, out, n);
}

/* The reference of direction dir at batch n into ref (grad_w: added to it). */
static void reference(int dir, bool epi, const KpRefConv *k, const Data *t, float *ref)
{
    int64_t count = k->n * (dir == 0 ? k->f * k->oh * k->ow : k->c * k->h * k->w);
    if (dir == 0)
        kp_ref_conv2d_forward(ref, t->x, t->w, epi ? t->b : NULL, k);
    else if (dir == 1)
        kp_ref_conv2d_backward(ref, NULL, NULL, t->dy, t->x, t->w, k);
    else
        kp_ref_conv2d_backward(NULL, ref, NULL, t->dy, t->x, t->w, k);
    if (!epi || dir == 2)
        return;
    for (int64_t i = 0; i < count; i++)
        ref[i] += t->r[i];
    if (dir == 0)
        kp_ref_relu_forward(ref, ref, count);
    else
        kp_ref_relu_backward(ref, ref, t->s, count);
}

static const char *dir_name[3] = {"conv2d", "conv2d_grad_x", "conv2d_grad_w"};

enum { MAXN = 8 };

/* One geometry's references, direction by batch, computed for the first
 * target and compared against by the others: every target of a geometry
 * draws the same inputs (check_geo seeds the generator from the geometry),
 * and the plain reference kernels were most of this test's time under
 * AddressSanitizer. */
typedef struct RefCache {
    float *ref[3][MAXN + 1];
} RefCache;

static void ref_cache_free(RefCache *rc)
{
    for (int dir = 0; dir < 3; dir++)
        for (int n = 0; n <= MAXN; n++)
            free(rc->ref[dir][n]);
}

/* the generator's seed for geometry c (epi: the epilogue variant) */
static uint64_t geo_seed(const Geo *c, bool epi)
{
    const int64_t f[] = {c->c, c->h, c->w, c->f, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw,
                         c->same, epi};
    uint64_t h = 777;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        h = h * 1000003u + (uint64_t)f[i];
    return h;
}

/* maxb: the largest batch, n = 1 .. maxb; chunked: the weight gradient is
 * expected to split the samples */
static void check_geo(const Target *tg, const Geo *c, bool epi, int64_t maxb, bool chunked,
                      RefCache *rc)
{
    ck_assert_int_le(maxb, MAXN);
    rng = geo_seed(c, epi);
    KpGraph *g = kp_graph_new();
    g->max_batch = maxb;
    KpNode *nd[3];
    make_nodes(g, c, epi, nd);
    const KpValue *y = nd[0]->out;
    KpRefConv k = {.c = c->c, .h = c->h, .w = c->w, .f = c->f, .kh = c->kh, .kw = c->kw,
                   .oh = y->dims[2], .ow = y->dims[3], .sh = c->sh, .sw = c->sw,
                   .pt = nd[0]->attr.padding[0], .pl = nd[0]->attr.padding[1], .dh = c->dh, .dw = c->dw};
    int64_t xs = c->c * c->h * c->w, ys = c->f * k.oh * k.ow, ws = c->f * c->c * c->kh * c->kw;
    int64_t big = maxb * (xs > ys ? xs : ys);
    Data t = {floats(maxb * xs), floats(ws), floats(c->f), floats(maxb * ys), floats(big), floats(big)};
    for (int dir = 0; dir < 3; dir++) {
        if (dir == 2 && epi)
            continue;
        KpTargetOpts opts = {.opt_level = KP_TEST_OPT(2), .cpu = tg->cpu, .vector_width = tg->vw};
        KpNodeJit j;
        KpDiag d;
        kp_diag_init(&d);
        ck_assert_msg(kp_llvm_node_jit(g, nd[dir], &opts, &j, &d) == 0, "%s", d.msg);
        if (dir == 2 && chunked)    /* its partial sums in the shared scratch (the unchunked
                                       dot kernel keeps none; these layers get no Winograd) */
            ck_assert_msg(j.scratch_shared_bytes > 0, "%s: grad_w of %lld -> %lld: not by chunks "
                          "of the samples", tg->name, (long long)c->c, (long long)c->f);
        int64_t nslots = 4, stride = (j.scratch_bytes + 63) / 64 * 64;
        int64_t shared = (j.scratch_shared_bytes + 63) / 64 * 64;
        char *pool = aligned_alloc(64, (size_t)(shared + nslots * stride + 64));
        memset(pool, 0, (size_t)(shared + nslots * stride));   /* counters, and the slots' tails untagged */
        krt_scratch_bind(shared ? pool : NULL, stride ? pool + shared : NULL, stride, nslots);
        int64_t per = dir == 0 ? ys : dir == 1 ? xs : 0;
        int64_t cap = dir == 2 ? ws : maxb * per;
        float *o1 = floats(cap), *o2 = floats(cap), *ref = floats(cap);
        /* the largest batch first: a smaller one then finds the scratch
         * (a chunk's partial sums, say) holding a larger one's values */
        for (int64_t n = maxb; n >= 1; n--) {
            int64_t cnt = dir == 2 ? ws : n * per;
            /* new weights every batch: nothing a kernel derives from them
             * (a transposed or transformed copy) may outlive its call */
            for (int64_t i = 0; i < ws; i++)
                t.w[i] = kp_test_uniform(&rng, -1.0f, 1.0f);
            if (dir == 2)       /* the slot holds values: both add into the same start */
                for (int64_t i = 0; i < ws; i++)
                    o1[i] = o2[i] = ref[i] = (float)(i % 5) - 2.0f;
            karp_set_threads(2);
            run(dir, epi, &j, &t, o2, n);
            karp_set_threads(1);
            run(dir, epi, &j, &t, o1, n);
            karp_set_threads(0);
            ck_assert_msg(memcmp(o1, o2, (size_t)cnt * sizeof *o1) == 0,
                          "%s: %s of %lldx%lldx%lld -> %lld, k %lldx%lld s %lld,%lld, n=%lld: "
                          "1 and 2 threads differ", tg->name, dir_name[dir], (long long)c->c,
                          (long long)c->h, (long long)c->w, (long long)c->f, (long long)c->kh,
                          (long long)c->kw, (long long)c->sh, (long long)c->sw, (long long)n);
            k.n = n;
            if (rc->ref[dir][n]) {
                memcpy(ref, rc->ref[dir][n], (size_t)cnt * sizeof *ref);
            } else {
                reference(dir, epi, &k, &t, ref);
                rc->ref[dir][n] = malloc((size_t)cnt * sizeof *ref);
                memcpy(rc->ref[dir][n], ref, (size_t)cnt * sizeof *ref);
            }
            double r = kp_test_tolerance_ratio(o1, ref, cnt);
            ck_assert_msg(r <= 1.0,
                          "%s: %s%s of %lldx%lldx%lld -> %lld, k %lldx%lld s %lld,%lld p %lld,%lld%s "
                          "d %lld, n=%lld: off by %.3g x tolerance", tg->name, dir_name[dir],
                          epi ? " with epilogues" : "", (long long)c->c, (long long)c->h,
                          (long long)c->w, (long long)c->f, (long long)c->kh, (long long)c->kw,
                          (long long)c->sh, (long long)c->sw, (long long)k.pt, (long long)k.pl,
                          c->same ? " same" : "", (long long)c->dh, (long long)n, r);
            worst[dir] = r > worst[dir] ? r : worst[dir];
        }
        krt_scratch_bind(NULL, NULL, 0, 0);
        free(pool), free(o1), free(o2), free(ref);
        kp_llvm_node_jit_free(&j);
    }
    free(t.x), free(t.w), free(t.b), free(t.dy), free(t.r), free(t.s);
    kp_graph_free(g);
}

static bool runs_here(const Target *t)
{
    return !t->avx2 || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
}

/* Geometry c on every target this CPU runs, against one set of references. */
static void every_target(const Geo *c, bool epi, int64_t maxb, bool chunked)
{
    RefCache rc = {0};
    for (size_t ti = 0; ti < sizeof targets / sizeof targets[0]; ti++)
        if (runs_here(&targets[ti]))
            check_geo(&targets[ti], c, epi, maxb, chunked, &rc);
    ref_cache_free(&rc);
}

static void grid(bool epi)
{
    for (size_t i = 0; i < sizeof geos / sizeof geos[0]; i++)
        every_target(&geos[i], epi, MAXB, false);
    printf("conv%s: worst of the tolerance: forward %.3g, grad_x %.3g, grad_w %.3g\n",
           epi ? " with epilogues" : "", worst[0], worst[1], worst[2]);
}

START_TEST(test_conv_directions)
{
    grid(false);
}
END_TEST

START_TEST(test_conv_grad_w_chunked)
{
    for (size_t i = 0; i < sizeof chunked_geos / sizeof chunked_geos[0]; i++) {
        KpGraph *g = kp_graph_new();
        g->max_batch = CHUNKED_MAXB;
        KpNode *nd[3];
        make_nodes(g, &chunked_geos[i].g, false, nd);
        KpConvMap m = kp_conv_grad_w_map(nd[2]);
        for (int vw = 4; vw <= 16; vw *= 2)
            ck_assert_msg(kp_conv_grad_w_outer_fits(&m, CHUNKED_MAXB, vw) == chunked_geos[i].outer,
                          "chunked geometry %zu at %d floats a vector: outer products %s", i, vw,
                          chunked_geos[i].outer ? "not taken" : "taken");
        kp_graph_free(g);
        every_target(&chunked_geos[i].g, false, CHUNKED_MAXB, true);
    }
}
END_TEST

START_TEST(test_conv_epilogues)
{
    grid(true);
}
END_TEST

/* Whether each geometry reaches a kernel at 16-, 8- and 4-float vectors,
 * asked of the map the backend builds for the node (the grid above would
 * otherwise test another kernel twice without noticing). */
typedef struct Reach {
    Geo g;
    bool at[3];                 /* 16-, 8- and 4-float vectors */
} Reach;

typedef bool (*Taken)(const KpConvMap *m, int64_t max_batch, int vw);

/* dir: the node whose map is asked, 0 conv2d, 1 conv2d_grad_x, 2 conv2d_grad_w */
static void check_reached(const Reach *cases, size_t count, int dir, Taken taken, const char *kernel)
{
    static const int vws[3] = {16, 8, 4};
    for (size_t i = 0; i < count; i++) {
        KpGraph *g = kp_graph_new();
        g->max_batch = MAXB;
        KpNode *nd[3];
        make_nodes(g, &cases[i].g, false, nd);
        KpConvMap m = dir == 0 ? kp_conv_forward_map(nd[0]) : dir == 1 ? kp_conv_grad_x_map(nd[1])
                                                                      : kp_conv_grad_w_map(nd[2]);
        for (int v = 0; v < 3; v++)
            ck_assert_msg(taken(&m, MAXB, vws[v]) == cases[i].at[v], "geometry %zu at %d floats a vector: %s %s", i,
                          vws[v], kernel, cases[i].at[v] ? "not taken" : "taken");
        kp_graph_free(g);
    }
}

/* The geometries above that are meant for the outer-product weight
 * gradient do reach it at each vector width; those with fewer taps than
 * filters do not. */
START_TEST(test_conv_outer_reached)
{
    static const Reach cases[] = {
        {{8, 9, 11, 70, 3, 3, 1, 1, 0, 0, 1, 1, false}, {true, true, true}},
        {{5, 9, 11, 70, 3, 3, 1, 1, 0, 0, 1, 1, false}, {false, false, false}},   /* 45 taps, 70 filters */
        {{4, 12, 11, 16, 3, 3, 1, 2, 0, 0, 2, 2, false}, {true, true, true}},
        {{3, 10, 10, 8, 3, 3, 1, 1, 0, 0, 1, 1, false}, {false, true, true}},
        {{1, 28, 28, 32, 3, 3, 1, 1, 0, 0, 1, 1, false}, {false, false, false}},  /* 9 taps, 32 filters */
        {{32, 13, 13, 64, 3, 3, 1, 1, 0, 0, 1, 1, false}, {true, true, true}},   /* keras_cnn's conv2d2 */
        {{3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false}, {true, true, true}},
        {{16, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, false}, {true, true, true}},
        {{16, 8, 8, 32, 1, 1, 1, 1, 0, 0, 1, 1, false}, {false, false, false}},    /* 16 taps, 32 filters */
    };
    check_reached(cases, sizeof cases / sizeof cases[0], 2, kp_conv_grad_w_outer_fits,
                  "grad_w outer-product kernel");
}
END_TEST

/* Which of them the outer products read in place: an unpadded layer
 * always; a padded one where its tiles are of whole input channels (at
 * 16 floats a vector: 9 taps by 2 vectors, 27 or 25 by 1) and its border
 * needs at most 16 forms of the pixel; else from a copy with the border. */
START_TEST(test_conv_outer_in_place)
{
    static const Reach cases[] = {
        {{8, 9, 11, 70, 3, 3, 1, 1, 0, 0, 1, 1, false}, {true, true, true}},      /* unpadded */
        {{3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false}, {true, false, false}},   /* AVX2: 6-tap tiles */
        {{16, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, false}, {true, false, false}},
        {{16, 14, 13, 32, 3, 3, 2, 2, 0, 0, 1, 1, true}, {true, false, false}},
        {{4, 11, 12, 16, 3, 3, 1, 1, 1, 1, 2, 2, false}, {true, false, false}},
        {{8, 12, 9, 16, 5, 5, 2, 2, 0, 0, 1, 1, true}, {true, false, false}},     /* 25 taps, 28 a tile */
        {{3, 8, 9, 16, 3, 3, 1, 1, 3, 3, 1, 1, false}, {false, false, false}},    /* 49 forms */
        {{6, 10, 10, 32, 5, 5, 2, 2, 0, 0, 1, 1, true}, {false, false, false}},   /* 12-tap tiles of 25-tap channels */
    };
    check_reached(cases, sizeof cases / sizeof cases[0], 2, kp_conv_grad_w_outer_in_place,
                  "grad_w outer products read in place");
}
END_TEST

/* Likewise for the input gradient with lanes along dx's channels: the
 * geometries meant for it reach it (no Winograd below 16 channels: at the
 * grid's batch of 3 Winograd comes first), those
 * it does not take (strides, dilation, few channels, many pixels in rows wider than a vector, dx rows
 * that fill 7/8 of their vectors or more, vectors of 8 or 4 floats, a
 * transposed weight over 256 KiB) do not.
 * On an AVX2 machine the grid reaches it through the 16-float target. */
START_TEST(test_conv_grad_x_outer_reached)
{
    static const Reach cases[] = {
        {{32, 13, 13, 12, 3, 3, 1, 1, 0, 0, 1, 1, false}, {true, false, false}},
        {{70, 9, 11, 8, 3, 3, 1, 1, 1, 1, 1, 1, false}, {true, false, false}},
        {{16, 5, 20, 8, 5, 5, 1, 1, 2, 2, 1, 1, false}, {true, false, false}},
        {{16, 6, 9, 4, 3, 5, 1, 1, 0, 0, 1, 1, true}, {true, false, false}},      /* uneven "same" */
        {{32, 26, 26, 64, 3, 3, 1, 1, 0, 0, 1, 1, false}, {true, false, false}},   /* fashion_cnn's conv2d1 */
        {{16, 10, 10, 24, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}}, /* stride 2 */
        {{6, 14, 13, 7, 3, 3, 1, 1, 2, 2, 2, 2, false}, {false, false, false}},   /* dilation 2 */
        {{3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}},   /* 3 channels */
        {{16, 40, 40, 16, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}}, /* 3 x 1600 pixels */
        {{16, 120, 13, 16, 3, 3, 1, 1, 0, 0, 1, 1, false}, {true, false, false}}, /* 3 x 1560, rows of 13 */
        {{16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}}, /* rows of whole vectors */
        {{64, 9, 11, 112, 3, 3, 1, 1, 1, 1, 1, 1, false}, {true, false, false}},  /* a 252 KiB weight copy */
        {{64, 9, 11, 128, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}}, /* 288 KiB: too big */
    };
    check_reached(cases, sizeof cases / sizeof cases[0], 1, kp_conv_grad_x_outer_fits,
                  "grad_x channel-lane kernel");
}
END_TEST

static bool flat_taken(const KpConvMap *m, int64_t max_batch, int vw)
{
    (void)max_batch;
    return kp_conv_flat_taken(m, vw);
}

/* The strided input gradient reads its phases as one row each where
 * their rows are narrow and the images small: the grid's geometries for
 * it, dcgan's discriminator (7-wide rows: with 16-float vectors only, 8
 * floats fill 7 of 8 lanes), rows of 5 at every width; not resnet's
 * 16-wide phases, odd sizes
 * (phases of 7 and 6 columns from dy rows of 7), one dx channel (too few
 * accumulators), images past 256 pixels. */
START_TEST(test_conv_flat_reached)
{
    static const Reach cases[] = {
        {{12, 14, 14, 20, 5, 5, 2, 2, 0, 0, 1, 1, true}, {true, false, false}},
        {{6, 14, 10, 6, 3, 3, 2, 2, 1, 1, 1, 1, false}, {true, true, true}},      /* rows of 5 */
        {{64, 14, 14, 128, 5, 5, 2, 2, 0, 0, 1, 1, true}, {true, false, false}},  /* dcgan's disc2 */
        {{16, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}}, /* resnet's b2_conv1 */
        {{8, 13, 13, 8, 5, 5, 2, 2, 0, 0, 1, 1, true}, {false, false, false}},    /* odd */
        {{1, 9, 10, 11, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}},   /* one dx channel */
        {{8, 40, 14, 8, 3, 3, 2, 2, 1, 1, 1, 1, false}, {true, false, false}},    /* 20x7: 3 tiles */
        {{8, 80, 14, 8, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}},   /* 40x7: 280 px */
    };
    check_reached(cases, sizeof cases / sizeof cases[0], 1, flat_taken, "flat phases");
}
END_TEST

/* The strided forward reads small images from its input's phases, copied
 * per sample: the grid's strided geometries with narrow output rows, at
 * the widths where their rows waste a quarter of the lanes; not resnet's
 * 16-wide rows, nor a copy past 256 KiB. */
START_TEST(test_conv_split_reached)
{
    static const Reach cases[] = {
        {{12, 14, 14, 20, 5, 5, 2, 2, 0, 0, 1, 1, true}, {true, false, false}},
        {{16, 10, 10, 24, 3, 3, 2, 2, 1, 1, 1, 1, false}, {true, true, true}},    /* rows of 5 */
        {{8, 40, 14, 8, 3, 3, 2, 2, 1, 1, 1, 1, false}, {true, false, false}},
        {{64, 14, 14, 128, 5, 5, 2, 2, 0, 0, 1, 1, true}, {true, false, false}},  /* dcgan's disc2 */
        {{16, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}}, /* resnet's b2_conv1 */
        {{512, 14, 14, 16, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}}, /* a 392 KiB copy */
        {{3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}},   /* stride 1 */
    };
    check_reached(cases, sizeof cases / sizeof cases[0], 0, flat_taken, "strided forward from phases");
}
END_TEST

/* The Winograd weight gradient puts the tiles in its GEMMs' lanes where a
 * block has 8 tiles or more per filter (the grid's two geometries for it
 * do), and the input channels elsewhere. */
START_TEST(test_winograd_w_tiles_in_lanes_reached)
{
    static const Reach cases[] = {
        {{16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, false}, {true, true, true}},     /* resnet's b1: 256 tiles */
        {{17, 30, 30, 19, 3, 3, 1, 1, 1, 1, 1, 1, false}, {true, true, true}},     /* 225 tiles, 19 filters */
        {{32, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}},  /* 2 x 64 tiles, 32 filters */
        {{32, 26, 26, 64, 3, 3, 1, 1, 0, 0, 1, 1, false}, {false, false, false}},  /* fashion_cnn's conv2d1 */
        {{48, 25, 21, 48, 3, 3, 1, 1, 1, 1, 1, 1, false}, {false, false, false}},
        {{16, 10, 10, 24, 3, 3, 2, 2, 1, 1, 1, 1, false}, {false, false, false}},  /* stride 2: no Winograd */
    };
    check_reached(cases, sizeof cases / sizeof cases[0], 2, kp_conv_winograd_w_tiles_in_lanes,
                  "Winograd weight gradient with the tiles in the lanes");
}
END_TEST

/* A residual block (its input gradient takes add and relu_grad as
 * epilogues), trained one step through the JIT and through a model.so:
 * the same loss and parameters, bit for bit. */
START_TEST(test_conv_jit_so)
{
    const char *json =
        "{\"karp\": 1, \"name\": \"res\", \"input\": {\"shape\": [3, 12, 12]},\n"
        " \"nodes\": [\n"
        "  {\"name\": \"c0\", \"type\": \"conv2d\", \"input\": \"input\", \"filters\": 8, \"kernel\": 3, \"padding\": \"same\", \"activation\": \"relu\"},\n"
        "  {\"name\": \"c1\", \"type\": \"conv2d\", \"input\": \"c0\", \"filters\": 8, \"kernel\": 3, \"padding\": 1, \"activation\": \"relu\"},\n"
        "  {\"name\": \"c2\", \"type\": \"conv2d\", \"input\": \"c1\", \"filters\": 8, \"kernel\": 3, \"padding\": 1},\n"
        "  {\"name\": \"sum\", \"type\": \"add\", \"inputs\": [\"c2\", \"c0\"]},\n"
        "  {\"name\": \"act\", \"type\": \"relu\", \"input\": \"sum\"},\n"
        "  {\"name\": \"down\", \"type\": \"conv2d\", \"input\": \"act\", \"filters\": 12, \"kernel\": 3, \"stride\": 2, \"padding\": 1, \"activation\": \"relu\"},\n"
        "  {\"name\": \"flat\", \"type\": \"flatten\", \"input\": \"down\"},\n"
        "  {\"name\": \"head\", \"type\": \"dense\", \"input\": \"flat\", \"units\": 5}],\n"
        " \"output\": \"head\", \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1},\n"
        " \"batch\": 6, \"seed\": 4}\n";
    char *dir = kp_test_tmpdir();
    KpProgram prog;
    karp_model *jit, *so;
    kp_test_build_model(dir, "res", json, 2, &prog, &jit, &so);
    int64_t n = 5, in = 3 * 12 * 12;
    float *x = floats(n * in);
    int32_t labels[5] = {0, 4, 2, 1, 3};
    float l1, l2;
    for (int step = 0; step < 3; step++) {
        ck_assert_int_eq(karp_train_step(jit, x, labels, n, &l1), 0);
        ck_assert_int_eq(karp_train_step(so, x, labels, n, &l2), 0);
        ck_assert_msg(memcmp(&l1, &l2, sizeof l1) == 0, "step %d: loss %g (JIT) vs %g (.so)", step,
                      (double)l1, (double)l2);
    }
    karp_info info;
    karp_model_info(jit, &info);
    for (int p = 0; p < info.nparams; p++) {
        karp_param a, b;
        ck_assert_int_eq(karp_param_get(jit, p, &a), 0);
        ck_assert_int_eq(karp_param_get(so, p, &b), 0);
        ck_assert_msg(memcmp(a.data, b.data, (size_t)a.size * sizeof(float)) == 0,
                      "%s differs between the JIT and the .so", a.name);
    }
    karp_close(jit), karp_close(so);
    kp_program_free(&prog);
    kp_test_rmdir(dir);
    free(dir), free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_conv_directions);
    tcase_add_test(tc, test_conv_epilogues);
    tcase_add_test(tc, test_conv_grad_w_chunked);
    tcase_add_test(tc, test_conv_jit_so);
    tcase_add_test(tc, test_conv_outer_reached);
    tcase_add_test(tc, test_conv_outer_in_place);
    tcase_add_test(tc, test_conv_grad_x_outer_reached);
    tcase_add_test(tc, test_winograd_w_tiles_in_lanes_reached);
    tcase_add_test(tc, test_conv_flat_reached);
    tcase_add_test(tc, test_conv_split_reached);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
