/*
 * emit_conv_phase.c — the scatter form of emit_conv.h as stride_h x
 * stride_w gather forms (conv2d_transpose, and conv2d_grad_x).
 *
 * Along one axis, with stride s, padding p, dilation d and kernel k, the
 * scatter form sums, into output o, the taps t with o + p - t*d = i*s for
 * an input position i.  Cut the outputs by phase r = o mod s, o = r + s*q:
 * the taps that reach phase r are the t with (r + p - t*d) = 0 (mod s),
 * every s/g-th tap from the first (g = gcd(s, d)), and for them
 *
 *     i = q + (r + p - t*d)/s
 *
 * is a stride-1 window over q.  Taking the taps last to first (u = 0 for
 * the last one, tl), it is the gather form with stride 1, dilation d/g and
 * padding -(r + p - tl*d)/s, and the kernel read backwards from tl in
 * steps of s/g:
 *
 *     output  o:  0 1 2 3 4 5 6      s = 2, k = 5, d = 1
 *     phase   r:  0 1 0 1 0 1 0      r = 0: taps t = p, p+2, ... (mod 2)
 *                                    r = 1: the others
 *
 * So each phase is dense, and vectorized along q exactly like conv2d (its
 * stores land every s-th column: a scatter of whole vectors).  At stride 1
 * there is one phase: the gather form with the kernel flipped.  A phase
 * that no tap reaches (a kernel smaller than the stride) has an empty
 * kernel: its outputs are the bias.
 */
#include "emit_conv.h"

typedef struct Axis {
    int64_t taps, last, step;   /* taps reaching the phase: last, last-step, ... */
    int64_t pad, dil, count;    /* the phase's gather geometry; outputs in it */
} Axis;

/* The mathematical remainder, in [0, s). */
static int64_t mod(int64_t a, int64_t s)
{
    int64_t r = a % s;
    return r < 0 ? r + s : r;
}

static int64_t gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

/* Phase r of an axis of out outputs: see the essay above. */
static Axis phase_axis(int64_t r, int64_t s, int64_t p, int64_t d, int64_t k, int64_t out)
{
    Axis a = {.step = s / gcd(s, d), .dil = d / gcd(s, d)};
    int64_t first = -1;
    for (int64_t t = 0; t < k && first < 0; t++)
        if (mod(r + p - t * d, s) == 0)
            first = t;
    if (first >= 0) {
        a.taps = (k - 1 - first) / a.step + 1;
        a.last = first + (a.taps - 1) * a.step;
        a.pad = -((r + p - a.last * d) / s);    /* exact */
    }
    a.count = r < out ? (out - r + s - 1) / s : 0;
    return a;
}

void kp_conv_phases(const KpConvMap *m, KpConvMap *ph)
{
    for (int64_t py = 0; py < m->sh; py++)
        for (int64_t px = 0; px < m->sw; px++) {
            Axis y = phase_axis(py, m->sh, m->pt, m->dh, m->kh, m->oh);
            Axis x = phase_axis(px, m->sw, m->pl, m->dw, m->kw, m->ow);
            KpConvMap *q = &ph[py * m->sw + px];
            *q = *m;
            q->oh = y.count, q->ow = x.count;
            q->kh = y.taps, q->kw = x.taps;
            q->sh = 1, q->sw = 1;
            q->pt = y.pad, q->pl = x.pad;
            q->dh = y.dil, q->dw = x.dil;
            q->w0 = m->w0 + y.last * m->wki + x.last * m->wkj;
            q->wki = -y.step * m->wki, q->wkj = -x.step * m->wkj;
            q->transposed = 0;
        }
}
