/*
 * gan_loop.c — adversarial training on the public API (karp.h, karpc.h,
 * karp_data.h).  One step on a batch of n real images:
 *
 *   z ~ N(0,1)                 fake = G(z)            karp_forward(G)
 *   D on real, target 1        D on fake, target 0    karp_forward(D) + karp_backward(D) twice,
 *                                                     then one karp_apply_gradients(D)
 *   G through D:  D(fake) vs target 1 -> dx = dLoss/dfake   karp_forward(D), karp_backward(D, dy, dx)
 *                 karp_zero_gradients(D)  (D is not updated by the G step)
 *                 karp_backward(G, dx), karp_apply_gradients(G)
 *
 * The D step sums the real and the fake loss and takes one optimizer step,
 * as the PyTorch and TensorFlow DCGAN tutorials do; the losses and their
 * gradients with respect to D's output are computed here, on the host (BCE
 * on probabilities, as PyTorch's BCELoss; or on logits).  The G step reuses
 * the D step's fake batch and G's forward, seen by the updated D (PyTorch's
 * tutorial).  Batches are drawn here from the dataset's first --limit
 * samples in an order fixed by (seed, epoch).
 */
#include "gan_loop.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <karp_data.h>
#include <karpc.h>

#include "image.h"

#define GRID 64      /* samples in the grid written after each epoch */
#define GRID_COLS 8

typedef struct Options {
    const char *data, *out, *generator, *discriminator;
    long long epochs, batch, limit, seed, threads, log_every;
} Options;

typedef struct Rng {
    uint64_t s;
    int has_spare;
    double spare;
} Rng;

/* The losses of one step, and D's mean output probability on each batch. */
typedef struct Stats {
    double d_loss, g_loss, d_real, d_fake;
    long long steps;
} Stats;

typedef struct Gan {
    karp_model *g, *d;
    int64_t zdim, img;       /* floats per noise vector, per image */
    int logits;
    float *z, *fake, *out, *dy, *dx;
} Gan;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double uniform(Rng *r)
{
    return ((double)(splitmix(&r->s) >> 11) + 1.0) / 9007199254740992.0;
}

/* N(0,1), Box-Muller. */
static float normal(Rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return (float)r->spare;
    }
    double rad = sqrt(-2.0 * log(uniform(r))), ang = 6.283185307179586 * uniform(r);
    r->spare = rad * sin(ang);
    r->has_spare = 1;
    return (float)(rad * cos(ang));
}

static void fill_normal(Rng *r, float *z, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        z[i] = normal(r);
}

/* Mean binary cross-entropy of D's outputs out[n] against target t; dy[n]
 * receives its gradient with respect to out, *prob D's mean probability. */
static double bce(const float *out, int64_t n, float t, int logits, float *dy, double *prob)
{
    double loss = 0, p_sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double o = out[i], p;
        if (logits) {
            p = 1.0 / (1.0 + exp(-o));
            loss += fmax(o, 0.0) - o * t + log1p(exp(-fabs(o)));
            dy[i] = (float)((p - t) / (double)n);
        } else {
            /* PyTorch's BCELoss: logs clamped at -100, the gradient's
             * denominator at 1e-12 */
            p = o;
            loss -= t * fmax(log(p), -100.0) + (1 - t) * fmax(log(1 - p), -100.0);
            dy[i] = (float)((p - t) / fmax(p * (1 - p), 1e-12) / (double)n);
        }
        p_sum += p;
    }
    *prob = p_sum / (double)n;
    return loss / (double)n;
}

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, karp_last_error());
    return -1;
}

/* One adversarial step on n real images (see the top of the file). */
static int gan_step(Gan *s, const float *real, int64_t n, Rng *rng, Stats *st)
{
    double p_real, p_fake, p_g;
    fill_normal(rng, s->z, n * s->zdim);
    if (karp_forward(s->g, s->z, n, s->fake))
        return fail("generator forward");

    if (karp_forward(s->d, real, n, s->out))
        return fail("discriminator forward");
    double loss_real = bce(s->out, n, 1.0f, s->logits, s->dy, &p_real);
    if (karp_backward(s->d, s->dy, NULL))
        return fail("discriminator backward");
    if (karp_forward(s->d, s->fake, n, s->out))
        return fail("discriminator forward");
    double loss_fake = bce(s->out, n, 0.0f, s->logits, s->dy, &p_fake);
    if (karp_backward(s->d, s->dy, NULL) || karp_apply_gradients(s->d))
        return fail("discriminator update");

    if (karp_forward(s->d, s->fake, n, s->out))
        return fail("discriminator forward");
    double loss_g = bce(s->out, n, 1.0f, s->logits, s->dy, &p_g);
    if (karp_backward(s->d, s->dy, s->dx) || karp_zero_gradients(s->d))
        return fail("discriminator backward (input gradient)");
    if (karp_backward(s->g, s->dx, NULL) || karp_apply_gradients(s->g))
        return fail("generator update");

    st->d_loss += loss_real + loss_fake;
    st->g_loss += loss_g;
    st->d_real += p_real;
    st->d_fake += p_fake;
    st->steps++;
    return 0;
}

static void print_stats(const char *head, const Stats *st)
{
    double k = st->steps > 0 ? (double)st->steps : 1.0;
    printf("%s: D loss %.4f G loss %.4f | D(x) %.3f D(G(z)) %.3f", head, st->d_loss / k,
           st->g_loss / k, st->d_real / k, st->d_fake / k);
}

/* 64 samples of G (inference mode) from the fixed noise, as an 8x8 grid. */
static int write_samples(const Gan *s, const Options *o, const float *zfix, int64_t max_batch,
                         float lo, float hi, int epoch)
{
    float *imgs = malloc(sizeof(float) * (size_t)(GRID * s->img));
    if (!imgs) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    for (int64_t i = 0; i < GRID; i += max_batch) {
        int64_t n = GRID - i < max_batch ? GRID - i : max_batch;
        if (karp_infer(s->g, zfix + i * s->zdim, n, imgs + i * s->img)) {
            free(imgs);
            return fail("generator inference");
        }
    }
    char path[4096], msg[4200];
    snprintf(path, sizeof path, "%s/epoch_%03d.png", o->out, epoch);
    int side = (int)lrint(sqrt((double)s->img));
    int rc = image_write_grid(path, imgs, GRID, side, side, GRID_COLS, lo, hi, msg, sizeof msg);
    double sum = 0;
    for (int64_t i = 0; i < GRID * s->img; i++)
        sum += imgs[i];
    free(imgs);
    if (rc) {
        fprintf(stderr, "%s\n", msg);
        return -1;
    }
    printf("samples: %s (mean pixel %.5f)\n", path, sum / (double)(GRID * s->img));
    return 0;
}

/* An integer option in [lo, hi]. */
static int int_arg(const char *prog, const char *opt, const char *v, long long lo, long long hi,
                   long long *out)
{
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "%s: %s expects an integer between %lld and %lld, got '%s'\n", prog, opt, lo,
                hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_args(const GanSpec *spec, int argc, char **argv, Options *o)
{
    *o = (Options){"fashion-mnist", spec->name, spec->generator, spec->discriminator,
                   spec->epochs, 64, 0, 1, 0, 100};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--data") == 0 && v)
            o->data = v;
        else if (strcmp(a, "--out") == 0 && v)
            o->out = v;
        else if (strcmp(a, "--generator") == 0 && v)
            o->generator = v;
        else if (strcmp(a, "--discriminator") == 0 && v)
            o->discriminator = v;
        else if (strcmp(a, "--epochs") == 0)
            rc = int_arg(spec->name, a, v, 1, 1000000, &o->epochs);
        else if (strcmp(a, "--batch") == 0)
            rc = int_arg(spec->name, a, v, 1, 65536, &o->batch);
        else if (strcmp(a, "--limit") == 0)
            rc = int_arg(spec->name, a, v, 1, INT64_MAX, &o->limit);
        else if (strcmp(a, "--seed") == 0)
            rc = int_arg(spec->name, a, v, 0, INT64_MAX, &o->seed);
        else if (strcmp(a, "--threads") == 0)
            rc = int_arg(spec->name, a, v, 0, 4096, &o->threads);
        else if (strcmp(a, "--log-every") == 0)
            rc = int_arg(spec->name, a, v, 1, INT64_MAX, &o->log_every);
        else {
            fprintf(stderr,
                    "usage: %s [--data SPEC] [--epochs N] [--batch N] [--limit N] [--out DIR] "
                    "[--seed N] [--threads N] [--log-every STEPS] [--generator G.json] "
                    "[--discriminator D.json]\n",
                    spec->name);
            return -1;
        }
        if (rc)
            return -1;
        i++;
    }
    return 0;
}

static karp_model *compile(const char *path, int64_t batch)
{
    karp_compile_options co;
    karp_compile_options_init(&co);
    co.max_batch = (int)batch;
    karp_error err;
    karp_model *m = karp_compile(path, &co, &err);
    if (!m)
        fprintf(stderr, "%s\n", err.message);
    return m;
}

/* The models fit each other and the data: G: [zdim] -> image, D: image -> [1]. */
static int check_shapes(Gan *s, const karp_dataset *data, const Options *o)
{
    karp_info gi, di;
    karp_model_info(s->g, &gi);
    karp_model_info(s->d, &di);
    if (!gi.has_optimizer || !di.has_optimizer) {
        fprintf(stderr, "%s: both models need an optimizer\n", !gi.has_optimizer ? o->generator
                                                                                 : o->discriminator);
        return -1;
    }
    if (gi.output_size != di.input_size || di.output_size != 1 ||
        karp_data_sample_size(data) != di.input_size) {
        fprintf(stderr,
                "shapes do not fit: generator output %lld floats, discriminator input %lld and "
                "output %lld (must be 1), data samples %lld\n",
                (long long)gi.output_size, (long long)di.input_size, (long long)di.output_size,
                (long long)karp_data_sample_size(data));
        return -1;
    }
    s->zdim = gi.input_size;
    s->img = di.input_size;
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A permutation of count indices fixed by (seed, epoch). */
static void shuffle(int64_t *perm, int64_t count, uint64_t seed, int64_t epoch)
{
    uint64_t s = seed * 0x2545f4914f6cdd1dull + (uint64_t)epoch;
    for (int64_t i = 0; i < count; i++)
        perm[i] = i;
    for (int64_t i = count - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int train(const GanSpec *spec, const Options *o, Gan *s, const karp_dataset *data)
{
    int64_t count = karp_data_count(data);
    if (o->limit > 0 && o->limit < count)
        count = o->limit;
    int64_t b = o->batch, steps = (count + b - 1) / b;
    const float *x = karp_data_x(data);
    float scale = spec->symmetric ? 2.0f : 1.0f, shift = spec->symmetric ? -1.0f : 0.0f;

    int64_t *perm = malloc(sizeof(int64_t) * (size_t)count);
    float *real = malloc(sizeof(float) * (size_t)(b * s->img));
    float *zfix = malloc(sizeof(float) * (size_t)(GRID * s->zdim));
    if (!perm || !real || !zfix) {
        fprintf(stderr, "out of memory\n");
        free(perm), free(real), free(zfix);
        return 1;
    }
    Rng noise = {.s = (uint64_t)o->seed ^ 0x6a09e667f3bcc908ull};
    Rng fixed = {.s = (uint64_t)o->seed ^ 0xbb67ae8584caa73bull};
    fill_normal(&fixed, zfix, GRID * s->zdim);

    printf("%s: %lld samples of %s, %lld steps of %lld per epoch\n", spec->name, (long long)count,
           o->data, (long long)steps, (long long)b);
    fflush(stdout);
    int status = 0;
    for (int64_t e = 0; e < o->epochs && !status; e++) {
        shuffle(perm, count, (uint64_t)o->seed, e);
        Stats ep = {0}, win = {0};
        double t0 = now();
        for (int64_t k = 0; k < steps && !status; k++) {
            int64_t n = count - k * b < b ? count - k * b : b;
            for (int64_t i = 0; i < n; i++) {
                const float *src = x + perm[k * b + i] * s->img;
                for (int64_t j = 0; j < s->img; j++)
                    real[i * s->img + j] = src[j] * scale + shift;
            }
            Stats one = {0};
            if (gan_step(s, real, n, &noise, &one)) {
                status = 1;
                break;
            }
            ep.d_loss += one.d_loss, ep.g_loss += one.g_loss;
            ep.d_real += one.d_real, ep.d_fake += one.d_fake, ep.steps++;
            win.d_loss += one.d_loss, win.g_loss += one.g_loss;
            win.d_real += one.d_real, win.d_fake += one.d_fake, win.steps++;
            if (k == 0 || (k + 1) % o->log_every == 0) {
                char head[128];
                snprintf(head, sizeof head, "epoch %lld/%lld step %lld/%lld", (long long)e + 1,
                         o->epochs, (long long)k + 1, (long long)steps);
                print_stats(head, &win);
                printf("\n");
                fflush(stdout);
                win = (Stats){0};
            }
        }
        if (status)
            break;
        double dt = now() - t0;
        char head[64];
        snprintf(head, sizeof head, "epoch %lld/%lld", (long long)e + 1, o->epochs);
        print_stats(head, &ep);
        printf(" | %.1f s, %.0f samples/s\n", dt, (double)count / dt);
        if (write_samples(s, o, zfix, b < GRID ? b : GRID, spec->symmetric ? -1.0f : 0.0f, 1.0f,
                          (int)e + 1))
            status = 1;
        fflush(stdout);
    }
    free(perm), free(real), free(zfix);
    return status;
}

int gan_main(const GanSpec *spec, int argc, char **argv)
{
    Options o;
    if (parse_args(spec, argc, argv, &o))
        return 1;
    if (o.threads)
        karp_set_threads((int)o.threads);
    karp_error err;
    karp_dataset *data = karp_data_open(o.data, "train", &err);
    if (!data) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    Gan s = {.logits = spec->logits};
    int status = 1;
    s.g = compile(o.generator, o.batch);
    s.d = s.g ? compile(o.discriminator, o.batch) : NULL;
    if (!s.g || !s.d || check_shapes(&s, data, &o))
        goto done;
    /* G from seed, D from seed + 1: the model files' own seeds by default */
    if (karp_init_params(s.g, (uint64_t)o.seed) || karp_init_params(s.d, (uint64_t)o.seed + 1)) {
        fail("init");
        goto done;
    }
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create %s: %s\n", spec->name, o.out, strerror(errno));
        goto done;
    }
    size_t b = (size_t)o.batch;
    s.z = malloc(sizeof(float) * b * (size_t)s.zdim);
    s.fake = malloc(sizeof(float) * b * (size_t)s.img);
    s.dx = malloc(sizeof(float) * b * (size_t)s.img);
    s.out = malloc(sizeof(float) * b);
    s.dy = malloc(sizeof(float) * b);
    if (!s.z || !s.fake || !s.dx || !s.out || !s.dy)
        fprintf(stderr, "out of memory\n");
    else
        status = train(spec, &o, &s, data);
done:
    free(s.z), free(s.fake), free(s.dx), free(s.out), free(s.dy);
    karp_close(s.g);
    karp_close(s.d);
    karp_data_close(data);
    return status;
}
