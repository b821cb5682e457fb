/*
 * bench_peers.c — karpc bench --peers: the shapes of the gemm-like and
 * convolution kernels through OpenBLAS and oneDNN, loaded with dlopen when
 * installed (never a build dependency):
 *
 *   dense, dense_packed   Y = X W^T         sgemm N,T  M=n   N=out K=in
 *   dense_grad_x          dX = dY W         sgemm N,N  M=n   N=in  K=out
 *   dense_grad_w          dW += dY^T X      sgemm T,N  M=out N=in  K=n
 *   conv2d                per sample: im2col, Y = W col          (sgemm N,N)
 *   conv2d_grad_w         per sample: im2col, dW += dY col^T     (sgemm N,T)
 *   conv2d_grad_x         per sample: col = W^T dY (sgemm T,N), col2im
 *
 * The convolutions are im2col + sgemm, the way PyTorch's own CPU fallback
 * computes them, with OpenBLAS's cblas_sgemm or oneDNN's dnnl_sgemm; the
 * im2col/col2im loops (plain C, one thread) are inside the time.  oneDNN's
 * convolution primitives are not used.  Bias and fused epilogues are not
 * computed by the peers.  OpenBLAS: the OpenMP build first (it shares
 * karpc's OpenMP threads instead of fighting them), then the default one;
 * its thread count set to karpc's; oneDNN (Debian's, OpenMP) follows the
 * OpenMP setting karpc bench made.  Inputs are seeded uniform [0,1); an
 * output added into (dW) is put back before each call, as karpc's is.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp_rules.h"
#include "bench.h"
#include "cli.h"

typedef void (*CblasSgemm)(int order, int ta, int tb, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc);
typedef int (*DnnlSgemm)(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc);

static struct {
    CblasSgemm cblas;
    DnnlSgemm dnnl;
} lib;

static void *open_first(const char *const *names, const char **which)
{
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            *which = names[i];
            return h;
        }
    }
    return NULL;
}

void kp_bench_peers_open(BenchRun *run, int threads)
{
    static const char *const blas[] = {"/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
                                       "libopenblas.so.0", NULL};
    static const char *const dnnl[] = {"libdnnl.so.3", "libdnnl.so.2", NULL};
    void *h = open_first(blas, &run->peer_lib[BENCH_OPENBLAS]);
    if (h && (lib.cblas = (CblasSgemm)dlsym(h, "cblas_sgemm"))) {
        void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
        if (set_threads)
            set_threads(threads);
    } else {
        run->peer_lib[BENCH_OPENBLAS] = NULL;
    }
    h = open_first(dnnl, &run->peer_lib[BENCH_ONEDNN]);
    if (!h || !(lib.dnnl = (DnnlSgemm)dlsym(h, "dnnl_sgemm")))
        run->peer_lib[BENCH_ONEDNN] = NULL;
    /* the libraries stay loaded until the process ends */
}

/* Row-major C[M,N] = op(A) op(B) + beta C through library which. */
static void sgemm(int which, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (which == BENCH_OPENBLAS)
        lib.cblas(101, ta ? 112 : 111, tb ? 112 : 111, (int)m, (int)n, (int)k, 1.0f, a, (int)lda,
                  b, (int)ldb, beta, c, (int)ldc);
    else
        lib.dnnl(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

typedef enum { GEMM, CONV_FWD, CONV_GRAD_W, CONV_GRAD_X } JobKind;

typedef struct PeerJob {
    int which;
    JobKind kind;
    bool ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float beta;
    KpRefConv s;
    float *a, *b, *c, *col;     /* gemm: A, B, C; conv: x or dy, w or x, y or dw or dx */
    float *c0;                  /* an output added into (dW): its values before the calls */
    int64_t c_floats;
} PeerJob;

/* col [C*kh*kw, OH*OW] of one sample x [C,H,W] */
static void im2col(float *col, const float *x, const KpRefConv *s)
{
    int64_t ohw = s->oh * s->ow;
    for (int64_t c = 0; c < s->c; c++)
        for (int64_t i = 0; i < s->kh; i++)
            for (int64_t j = 0; j < s->kw; j++) {
                float *row = col + ((c * s->kh + i) * s->kw + j) * ohw;
                for (int64_t oy = 0; oy < s->oh; oy++) {
                    int64_t y = oy * s->sh - s->pt + i * s->dh;
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        int64_t xx = ox * s->sw - s->pl + j * s->dw;
                        bool in = y >= 0 && y < s->h && xx >= 0 && xx < s->w;
                        row[oy * s->ow + ox] = in ? x[(c * s->h + y) * s->w + xx] : 0.0f;
                    }
                }
            }
}

/* dx [C,H,W] of one sample += col [C*kh*kw, OH*OW] scattered back */
static void col2im(float *dx, const float *col, const KpRefConv *s)
{
    int64_t ohw = s->oh * s->ow;
    memset(dx, 0, (size_t)(s->c * s->h * s->w) * sizeof *dx);
    for (int64_t c = 0; c < s->c; c++)
        for (int64_t i = 0; i < s->kh; i++)
            for (int64_t j = 0; j < s->kw; j++) {
                const float *row = col + ((c * s->kh + i) * s->kw + j) * ohw;
                for (int64_t oy = 0; oy < s->oh; oy++) {
                    int64_t y = oy * s->sh - s->pt + i * s->dh;
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        int64_t xx = ox * s->sw - s->pl + j * s->dw;
                        if (y >= 0 && y < s->h && xx >= 0 && xx < s->w)
                            dx[(c * s->h + y) * s->w + xx] += row[oy * s->ow + ox];
                    }
                }
            }
}

/* An output the job adds into, put back before each call and outside its
 * time, as karpc bench puts back a gradient its kernel adds into
 * (bench_kernels.c): by the threads that make the call, each a contiguous
 * share.  Left as the last call left it, each thread would find its own
 * share of C in its own core's caches, as no call inside a training step
 * does. */
static void put_back(const PeerJob *j)
{
    enum { FLOATS = 64 };   /* an item: four cache lines */
    int64_t items = (j->c_floats + FLOATS - 1) / FLOATS;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < items; i++) {
        int64_t from = i * FLOATS, count = j->c_floats - from < FLOATS ? j->c_floats - from : FLOATS;
        memcpy(j->c + from, j->c0 + from, (size_t)count * sizeof *j->c);
    }
}

static double timed_peer(void *arg)
{
    PeerJob *j = arg;
    const KpRefConv *s = &j->s;
    int64_t ckk = s->c * s->kh * s->kw, ohw = s->oh * s->ow;
    int64_t xs = s->c * s->h * s->w, ys = s->f * ohw;
    if (j->c0)
        put_back(j);
    double t0 = kp_cli_now();
    switch (j->kind) {
    case GEMM:
        sgemm(j->which, j->ta, j->tb, j->m, j->n, j->k, j->a, j->lda, j->b, j->ldb, j->beta, j->c,
              j->ldc);
        break;
    case CONV_FWD:  /* a = x, b = w [F,CKK], c = y */
        for (int64_t i = 0; i < s->n; i++) {
            im2col(j->col, j->a + i * xs, s);
            sgemm(j->which, false, false, s->f, ohw, ckk, j->b, ckk, j->col, ohw, 0.0f,
                  j->c + i * ys, ohw);
        }
        break;
    case CONV_GRAD_W:   /* a = dy, b = x, c = dw [F,CKK] */
        for (int64_t i = 0; i < s->n; i++) {
            im2col(j->col, j->b + i * xs, s);
            sgemm(j->which, false, true, s->f, ckk, ohw, j->a + i * ys, ohw, j->col, ohw, 1.0f,
                  j->c, ckk);
        }
        break;
    case CONV_GRAD_X:   /* a = dy, b = w [F,CKK], c = dx */
        for (int64_t i = 0; i < s->n; i++) {
            sgemm(j->which, true, false, ckk, ohw, s->f, j->b, ckk, j->a + i * ys, ohw, 0.0f,
                  j->col, ohw);
            col2im(j->c + i * xs, j->col, s);
        }
        break;
    }
    return kp_cli_now() - t0;
}

static void set_gemm(PeerJob *j, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float beta)
{
    j->kind = GEMM;
    j->ta = ta, j->tb = tb;
    j->m = m, j->n = n, j->k = k;
    j->lda = ta ? m : k;
    j->ldb = tb ? k : n;
    j->ldc = n;
    j->beta = beta;
}

/* The job for node nd at n samples and its buffers' sizes in floats, or
 * false when it has no peer. */
static bool plan_job(const KpNode *nd, int64_t n, PeerJob *j, int64_t sizes[4])
{
    switch (nd->op) {
    case KP_OP_dense:
    case KP_OP_dense_packed:
        set_gemm(j, false, true, n, nd->out->dims[1], nd->in[0]->dims[1], 0.0f);
        break;
    case KP_OP_dense_grad_x:
        set_gemm(j, false, false, n, nd->out->dims[1], nd->in[0]->dims[1], 0.0f);
        break;
    case KP_OP_dense_grad_w:
        set_gemm(j, true, false, nd->out->dims[0], nd->out->dims[1], n, 1.0f);
        break;
    case KP_OP_conv2d:
        j->kind = CONV_FWD;
        j->s = kp_interp_conv(nd, nd->in[0], nd->out, n, true);
        break;
    case KP_OP_conv2d_grad_w:
        j->kind = CONV_GRAD_W;
        j->s = kp_interp_conv(nd, nd->in[1], nd->in[0], n, true);
        break;
    case KP_OP_conv2d_grad_x:
        j->kind = CONV_GRAD_X;
        j->s = kp_interp_conv(nd, nd->in[2], nd->in[0], n, true);
        break;
    default:
        return false;
    }
    const KpRefConv *s = &j->s;
    int64_t ckk = s->c * s->kh * s->kw, ohw = s->oh * s->ow, x = s->n * s->c * s->h * s->w,
            y = s->n * s->f * ohw, w = s->f * ckk;
    switch (j->kind) {
    case GEMM:
        sizes[0] = (j->ta ? j->k : j->m) * j->lda;
        sizes[1] = (j->tb ? j->n : j->k) * j->ldb;
        sizes[2] = j->m * j->ldc;
        sizes[3] = 0;
        break;
    case CONV_FWD: sizes[0] = x, sizes[1] = w, sizes[2] = y, sizes[3] = ckk * ohw; break;
    case CONV_GRAD_W: sizes[0] = y, sizes[1] = x, sizes[2] = w, sizes[3] = ckk * ohw; break;
    case CONV_GRAD_X: sizes[0] = y, sizes[1] = w, sizes[2] = x, sizes[3] = ckk * ohw; break;
    }
    return true;
}

/* "sgemm NT 64x128x784" or the convolution's method */
static void describe_job(const PeerJob *j, char *buf, size_t cap)
{
    static const char *const kinds[] = {"sgemm", "im2col+sgemm", "im2col+sgemm", "sgemm+col2im"};
    if (j->kind == GEMM)
        snprintf(buf, cap, "sgemm %c%c %lldx%lldx%lld", j->ta ? 'T' : 'N', j->tb ? 'T' : 'N',
                 (long long)j->m, (long long)j->n, (long long)j->k);
    else
        snprintf(buf, cap, "%s", kinds[j->kind]);
}

/* Node nd's job through peer p on fresh seeded buffers; false if none. */
static bool time_node(int p, const KpNode *nd, int64_t n, long repeats, BenchTimes *t, char *how,
                      size_t cap)
{
    PeerJob j = {0};
    int64_t sizes[4];
    if (!plan_job(nd, n, &j, sizes))
        return false;
    float *buf[4];
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        buf[i] = kp_bench_uniform(malloc((size_t)(sizes[i] > 0 ? sizes[i] : 1) * sizeof(float)),
                                  sizes[i], 7 + (uint64_t)i);
        ok &= buf[i] != NULL;
    }
    bool adds = (j.kind == GEMM && j.beta != 0.0f) || j.kind == CONV_GRAD_W;
    if (ok && adds) {
        j.c_floats = sizes[2];
        ok = (j.c0 = malloc((size_t)sizes[2] * sizeof(float))) != NULL;
        if (ok)
            memcpy(j.c0, buf[2], (size_t)sizes[2] * sizeof(float));
    }
    if (ok) {
        j.which = p;
        j.a = buf[0], j.b = buf[1], j.c = buf[2], j.col = buf[3];
        timed_peer(&j);     /* warm-up: the library's threads and buffers */
        *t = kp_bench_time(timed_peer, &j, repeats, 0.2, 5, 500);
        describe_job(&j, how, cap);
    }
    for (int i = 0; i < 4; i++)
        free(buf[i]);
    free(j.c0);
    return ok && t->calls > 0;
}

void kp_bench_peers_run(const BenchRun *run, BenchKernel *bk, int64_t n, long repeats)
{
    for (int p = 0; p < BENCH_NPEERS; p++) {
        if (!run->peer_lib[p])
            continue;
        BenchPeer *pe = &bk->peer[p];
        char without[96] = "";
        for (int i = 0; i < bk->k->nnodes; i++) {
            BenchTimes t;
            char how[48];
            if (!time_node(p, bk->node[i], n, repeats, &t, how, sizeof how)) {
                kp_bench_append(without, sizeof without, ",", kp_op_name(bk->node[i]->op));
                continue;
            }
            pe->t.median += t.median;
            pe->t.best += t.best;
            pe->t.calls = pe->ran && pe->t.calls < t.calls ? pe->t.calls : t.calls;
            pe->ran = true;
            kp_bench_append(pe->how, sizeof pe->how, "+", how);
        }
        if (pe->ran && without[0]) {
            kp_bench_append(pe->how, sizeof pe->how, " ", "without");
            kp_bench_append(pe->how, sizeof pe->how, " ", without);
        }
    }
}
