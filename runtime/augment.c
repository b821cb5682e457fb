/*
 * augment.c — data augmentation, one sample at a time.
 *
 * Every sample gets its own generator, seeded from (seed, epoch, index of
 * the sample in the dataset) alone, and the transforms draw from it in the
 * list's order.  Which thread prepares a sample, and in which batch it
 * lands, therefore change nothing: a resumed run, or a loader with or
 * without its background thread, sees the same pixels.
 *
 * The transforms work on CHW images of pixels in [0,1] (before any
 * normalization: the zeros that random_crop and rotate bring in are black),
 * the same geometry on every channel:
 *
 *   hflip        out(y, x) = in(y, W-1-x)                       p = 1/2
 *   random_crop  out(y, x) = in(y+dy-p, x+dx-p), 0 outside      dy, dx uniform in [0, 2p]
 *   rotate       out(u) = bilinear in(R(-a) (u - c) + c), 0 outside
 *                c = ((W-1)/2, (H-1)/2); a uniform in [-d, d] degrees,
 *                positive counter-clockwise as seen (y grows downwards)
 *   noise        out = in + s * N(0, 1), every element (any rank)
 */
#include "data.h"

#include <math.h>
#include <string.h>

#include "model.h"

static const char *const kind_names[] = {NULL, "hflip", "random_crop", "rotate", "noise"};

const char *kp_augment_name(int kind)
{
    return kind >= KARP_AUG_HFLIP && kind <= KARP_AUG_NOISE ? kind_names[kind] : NULL;
}

int kp_augment_check(const karp_augment *aug, int64_t naug, int rank, const char *what,
                     karp_error *err)
{
    if (naug < 0 || naug > KP_MAX_AUGMENT || (naug > 0 && !aug))
        return kp_rt_error(err, KARP_EINVAL, "%s: %lld transforms (0 to %d, and a list)", what,
                           (long long)naug, KP_MAX_AUGMENT);
    for (int64_t i = 0; i < naug; i++) {
        const karp_augment *a = &aug[i];
        const char *name = kp_augment_name(a->kind);
        double v = a->value;
        if (!name)
            return kp_rt_error(err, KARP_EINVAL, "%s[%lld]: unknown kind %d", what, (long long)i,
                               (int)a->kind);
        if (!isfinite(v) ||
            (a->kind == KARP_AUG_RANDOM_CROP && (v < 0 || v > 1e6 || v != floor(v))) ||
            (a->kind == KARP_AUG_ROTATE && (v < 0 || v > 180)) ||
            (a->kind == KARP_AUG_NOISE && v < 0))
            return kp_rt_error(err, KARP_EINVAL, "%s[%lld]: %s: bad value %g (%s)", what,
                               (long long)i, name, v,
                               a->kind == KARP_AUG_RANDOM_CROP ? "padding: an integer >= 0"
                               : a->kind == KARP_AUG_ROTATE    ? "degrees: 0 to 180"
                               : a->kind == KARP_AUG_NOISE     ? "std: >= 0"
                                                               : "finite");
        if (rank >= 0 && a->kind != KARP_AUG_NOISE && rank != 3)
            return kp_rt_error(err, KARP_EINVAL,
                               "%s[%lld]: %s needs image samples [C,H,W], these have rank %d "
                               "(only noise applies to them)",
                               what, (long long)i, name, rank);
    }
    return 0;
}

/* splitmix64's finalizer: a bijection that mixes every bit. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void kp_augment_rng(KpRng *r, uint64_t seed, int64_t epoch, int64_t index)
{
    uint64_t h = mix64(seed ^ 0x6175676d656e7421u); /* "augment!": apart from the shuffle */
    h = mix64(h ^ (uint64_t)epoch);
    h = mix64(h ^ (uint64_t)index);
    kp_rng_seed(r, h);
}

void kp_aug_hflip(float *x, int64_t c, int64_t h, int64_t w)
{
    for (int64_t row = 0; row < c * h; row++) {
        float *p = x + row * w;
        for (int64_t i = 0, j = w - 1; i < j; i++, j--) {
            float t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
    }
}

void kp_aug_crop(float *x, float *tmp, int64_t c, int64_t h, int64_t w, int64_t pad, int64_t dy,
                 int64_t dx)
{
    size_t n = (size_t)(c * h * w);
    memcpy(tmp, x, n * sizeof(float));
    for (int64_t k = 0; k < c; k++)
        for (int64_t y = 0; y < h; y++) {
            int64_t sy = y + dy - pad;
            float *out = x + (k * h + y) * w;
            const float *in = tmp + (k * h + sy) * w;
            for (int64_t xx = 0; xx < w; xx++) {
                int64_t sx = xx + dx - pad;
                out[xx] = sy >= 0 && sy < h && sx >= 0 && sx < w ? in[sx] : 0.0f;
            }
        }
}

/* v rounded to an integer when it is one up to rounding error, so that
 * quarter turns move pixels exactly. */
static double snap(double v)
{
    double r = nearbyint(v);
    return fabs(v - r) < 1e-9 ? r : v;
}

static float pixel(const float *plane, int64_t h, int64_t w, int64_t y, int64_t x)
{
    return y >= 0 && y < h && x >= 0 && x < w ? plane[y * w + x] : 0.0f;
}

void kp_aug_rotate(float *x, float *tmp, int64_t c, int64_t h, int64_t w, double radians)
{
    size_t n = (size_t)(c * h * w);
    memcpy(tmp, x, n * sizeof(float));
    double cs = cos(radians), sn = sin(radians);
    double cx = (double)(w - 1) / 2, cy = (double)(h - 1) / 2;
    for (int64_t y = 0; y < h; y++)
        for (int64_t xx = 0; xx < w; xx++) {
            /* u right, v up, from the centre; the source is R(-a) (u, v). */
            double u = (double)xx - cx, v = cy - (double)y;
            double us = u * cs + v * sn, vs = -u * sn + v * cs;
            double sx = snap(cx + us), sy = snap(cy - vs);
            double fx0 = floor(sx), fy0 = floor(sy);
            int64_t x0 = (int64_t)fx0, y0 = (int64_t)fy0;
            float ax = (float)(sx - fx0), ay = (float)(sy - fy0);
            for (int64_t k = 0; k < c; k++) {
                const float *pl = tmp + k * h * w;
                float top = pixel(pl, h, w, y0, x0), bot = pixel(pl, h, w, y0 + 1, x0);
                float v0 = top, v1 = bot;
                if (ax != 0) {
                    v0 = top * (1 - ax) + pixel(pl, h, w, y0, x0 + 1) * ax;
                    v1 = bot * (1 - ax) + pixel(pl, h, w, y0 + 1, x0 + 1) * ax;
                }
                x[(k * h + y) * w + xx] = ay != 0 ? v0 * (1 - ay) + v1 * ay : v0;
            }
        }
}

void kp_augment_sample(float *x, float *tmp, int rank, const int64_t shape[3], int64_t size,
                       const karp_augment *aug, int naug, KpRng *r)
{
    int64_t c = rank == 3 ? shape[0] : 1, h = rank == 3 ? shape[1] : 1,
            w = rank == 3 ? shape[2] : size;
    for (int i = 0; i < naug; i++) {
        float v = aug[i].value;
        switch (aug[i].kind) {
        case KARP_AUG_HFLIP:
            if (kp_rng_next(r) >> 63)
                kp_aug_hflip(x, c, h, w);
            break;
        case KARP_AUG_RANDOM_CROP: {
            int64_t p = (int64_t)v;
            int64_t dy = (int64_t)kp_rng_below(r, (uint64_t)(2 * p + 1));
            int64_t dx = (int64_t)kp_rng_below(r, (uint64_t)(2 * p + 1));
            kp_aug_crop(x, tmp, c, h, w, p, dy, dx);
            break;
        }
        case KARP_AUG_ROTATE: {
            double deg = (double)v * (2.0 * (double)kp_rng_uniform(r) - 1.0);
            kp_aug_rotate(x, tmp, c, h, w, deg * (3.14159265358979323846 / 180.0));
            break;
        }
        case KARP_AUG_NOISE:
            for (int64_t j = 0; j < size; j++)
                x[j] += v * kp_rng_normal(r);
            break;
        default:
            break; /* kp_augment_check refused it */
        }
    }
}
