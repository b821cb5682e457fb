/*
 * conv_bench.c — GFLOP/s of the generated convolution kernels against the
 * reference kernels of runtime/ref, side by side in one run.
 *
 * Per layer, a one-layer model (no bias, no activation) is compiled with
 * karp_compile and timed through the public API at 1 and 2 threads:
 *
 *   forward   karp_forward
 *   grad_w    karp_backward(dy, NULL): the weight gradient only
 *   grad_x    karp_backward(dy, dx) minus the above: the input gradient
 *             (the two calls alternate; "(noise)" when the difference is
 *             under 5% of grad_w's time)
 *
 * and the reference kernel of each direction is timed on the same sizes
 * (one thread; it is plain C).  A time is the best of several calls; the
 * flop count is 2 * batch * the MACs of the full kernel window at every
 * output (conv) or input (transposed conv) pixel, padding included, the
 * same for the three directions.  Not part of the test suite:
 *
 *   conv_bench [batch]      (default 16)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "karpc.h"
#include "runtime/ref/ref.h"

typedef struct Layer {
    const char *name;
    int transposed;
    int64_t c, h, w, f, k, s, pad, outpad;  /* pad: top/left */
    const char *padding;                    /* as in the model file */
} Layer;

static const Layer layers[] = {
    {"fashion_cnn conv2 3x3 32->64 26->24", 0, 32, 26, 26, 64, 3, 1, 0, 0, "0"},
    {"dcgan convT 5x5 s2 128->64 7->14", 1, 128, 7, 7, 64, 5, 2, 2, 1, "\"same\""},
    {"dcgan convT 5x5 s2 64->1 14->28", 1, 64, 14, 14, 1, 5, 2, 2, 1, "\"same\""},
    {"dcgan disc conv 5x5 s2 64->128 14->7", 0, 64, 14, 14, 128, 5, 2, 1, 0, "\"same\""},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *randoms(int64_t count, uint64_t *state)
{
    float *p = malloc((size_t)count * sizeof *p);
    for (int64_t i = 0; i < count; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((*state >> 40) * (1.0 / 16777216.0)) - 0.5f;
    }
    return p;
}

/* What one timed call does. */
typedef enum { FWD, BWD_W, BWD_WX, REF_FWD, REF_GX, REF_GW } Job;

typedef struct Ctx {
    const Layer *l;
    karp_model *m;
    KpRefConv g;                /* the reference's geometry */
    float *x, *y, *dy, *dx, *w, *dw;
    int64_t n;
} Ctx;

static void run(Ctx *c, Job j)
{
    const KpRefConv *g = &c->g;
    switch (j) {
    case FWD:
        karp_forward(c->m, c->x, c->n, c->y);
        break;
    case BWD_W:
        karp_backward(c->m, c->dy, NULL);
        break;
    case BWD_WX:
        karp_backward(c->m, c->dy, c->dx);
        break;
    case REF_FWD:
        if (c->l->transposed)
            kp_ref_conv2d_transpose_forward(c->y, c->x, c->w, NULL, g);
        else
            kp_ref_conv2d_forward(c->y, c->x, c->w, NULL, g);
        break;
    case REF_GX:
        if (c->l->transposed)
            kp_ref_conv2d_transpose_backward(c->dx, NULL, NULL, c->dy, c->x, c->w, g);
        else
            kp_ref_conv2d_backward(c->dx, NULL, NULL, c->dy, c->x, c->w, g);
        break;
    case REF_GW:
        if (c->l->transposed)
            kp_ref_conv2d_transpose_backward(NULL, c->dw, NULL, c->dy, c->x, c->w, g);
        else
            kp_ref_conv2d_backward(NULL, c->dw, NULL, c->dy, c->x, c->w, g);
        break;
    }
}

static double timed(Ctx *c, Job j)
{
    double t0 = now();
    run(c, j);
    return now() - t0;
}

/* The best time of calls repeated for about budget seconds (at least 3). */
static double best(Ctx *c, Job j, double budget)
{
    double b = timed(c, j), spent = b;
    for (int r = 1; (r < 3 || spent < budget) && r < 1000; r++) {
        double t = timed(c, j);
        spent += t;
        b = t < b ? t : b;
    }
    return b;
}

/* The best times of karp_backward without and with dx, the calls
 * alternating so that both meet the same load on a shared machine. */
static void best_backward(Ctx *c, double budget, double *w, double *wx)
{
    run(c, FWD);
    *w = timed(c, BWD_W), *wx = timed(c, BWD_WX);
    double spent = *w + *wx;
    for (int r = 1; (r < 5 || spent < 2 * budget) && r < 1000; r++) {
        double a = timed(c, BWD_W), b = timed(c, BWD_WX);
        spent += a + b;
        *w = a < *w ? a : *w;
        *wx = b < *wx ? b : *wx;
    }
}

static karp_model *compile(const Layer *l, int64_t n)
{
    char path[] = "/tmp/conv_bench_XXXXXX.json";
    int fd = mkstemps(path, 5);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"karp\": 1, \"name\": \"bench\", \"input\": {\"shape\": [%lld, %lld, %lld]}, "
            "\"layers\": [{\"type\": \"%s\", \"filters\": %lld, \"kernel\": %lld, \"stride\": %lld, "
            "\"padding\": %s, \"bias\": false}], \"batch\": %lld, \"seed\": 1}\n",
            (long long)l->c, (long long)l->h, (long long)l->w,
            l->transposed ? "conv2d_transpose" : "conv2d", (long long)l->f, (long long)l->k,
            (long long)l->s, l->padding, (long long)n);
    fclose(f);
    karp_error err;
    karp_model *m = karp_compile(path, NULL, &err);
    if (!m)
        fprintf(stderr, "conv_bench: %s: %s\n", l->name, err.message);
    unlink(path);
    return m;
}

static int bench(const Layer *l, int64_t n, double budget)
{
    Ctx c = {.l = l, .n = n};
    c.m = compile(l, n);
    if (!c.m)
        return -1;
    /* the reference's geometry: a conv's (oh, ow) or a transposed conv's */
    int64_t oh = l->transposed ? (l->h - 1) * l->s - 2 * l->pad + l->k + l->outpad
                               : (l->h + l->s - 1) / l->s;
    if (!l->transposed && strcmp(l->padding, "0") == 0)
        oh = l->h - l->k + 1;
    c.g = (KpRefConv){.n = n, .c = l->c, .h = l->h, .w = l->w, .f = l->f, .kh = l->k, .kw = l->k,
                      .oh = oh, .ow = oh, .sh = l->s, .sw = l->s, .pt = l->pad, .pl = l->pad,
                      .dh = 1, .dw = 1};
    int64_t xs = n * l->c * l->h * l->w, ys = n * l->f * oh * oh, ws = l->c * l->f * l->k * l->k;
    uint64_t st = 42;
    c.x = randoms(xs, &st), c.dx = randoms(xs, &st);
    c.y = randoms(ys, &st), c.dy = randoms(ys, &st);
    c.w = randoms(ws, &st), c.dw = randoms(ws, &st);
    double macs = (double)ws * (double)n * (double)(l->transposed ? l->h * l->w : oh * oh);
    double gf = 2.0 * macs * 1e-9;

    double ref[3] = {best(&c, REF_FWD, budget), best(&c, REF_GX, budget), best(&c, REF_GW, budget)};
    printf("\n%s, batch %lld: %.3f GFLOP per direction\n", l->name, (long long)n, gf);
    printf("  %-8s %12s %21s %21s\n", "", "reference", "generated 1 thread", "generated 2 threads");
    double gen[2][3];
    for (int t = 0; t < 2; t++) {
        karp_set_threads(t + 1);
        double bw, bwx;
        gen[t][0] = best(&c, FWD, budget);
        best_backward(&c, budget, &bw, &bwx);
        gen[t][1] = bwx - bw, gen[t][2] = bw;
    }
    karp_set_threads(0);
    static const char *dir[3] = {"forward", "grad_x", "grad_w"};
    for (int d = 0; d < 3; d++) {
        printf("  %-8s %7.2f GF/s", dir[d], gf / ref[d]);
        for (int t = 0; t < 2; t++) {
            /* grad_x is a difference of two times: lost in the noise when small */
            if (gen[t][d] < 0.05 * gen[t][2])
                printf(" %21s", "(noise)");
            else
                printf(" %9.2f GF/s %6.1fx", gf / gen[t][d], ref[d] / gen[t][d]);
        }
        printf("\n");
    }
    karp_close(c.m);
    free(c.x), free(c.dx), free(c.y), free(c.dy), free(c.w), free(c.dw);
    return 0;
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 16;
    if (n < 1) {
        fprintf(stderr, "usage: conv_bench [batch]\n");
        return 2;
    }
    int failed = 0;
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
        failed |= bench(&layers[i], n, 0.3) != 0;
    return failed;
}
