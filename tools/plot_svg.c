/*
 * The training plot, written by hand as SVG:
 *
 *              title
 *         -- train  -- test
 *   +--------------+   +--------------+
 *   | loss         |   | accuracy (%) |
 *   |  \__         |   |    __/--     |
 *   +--------------+   +--------------+
 *        epoch              epoch
 *
 * Each panel maps its data range, widened to "nice" tick values (1, 2 or
 * 5 times a power of ten), onto its box; every epoch is a marker joined by
 * a polyline, so one epoch still shows as a point.
 */
#include "plot_svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { WIDTH = 960, HEIGHT = 420, PANEL_W = 380, PANEL_H = 270, TOP = 90, LEFT0 = 80, GAP = 100,
       PAD = 10 };

static const char *const colors[2] = {"#1f77b4", "#d62728"};   /* train, test */
static const char *const names[2] = {"train", "test"};

typedef struct Axis {
    double lo, hi, step;
} Axis;

/* 1, 2 or 5 times a power of ten, near x. */
static double nice_step(double x)
{
    double p = pow(10, floor(log10(x)));
    double f = x / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* About five ticks over [lo, hi], the ends on ticks. */
static Axis nice_axis(double lo, double hi, double min_span)
{
    if (hi - lo < min_span) {
        double mid = (lo + hi) / 2;
        lo = mid - min_span / 2;
        hi = mid + min_span / 2;
    }
    Axis a;
    a.step = nice_step((hi - lo) / 5);
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    return a;
}

static int decimals(double step)
{
    int d = (int)-floor(log10(step) + 1e-9);
    return d > 0 ? d : 0;
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* value of series k (0 train, 1 test) of epoch i, or < 0 / NAN if absent */
static double value(const KpEpochStats *s, int acc, int k)
{
    if (acc)
        return k == 0 ? s->train_acc : s->test_acc;
    return k == 0 ? s->train_loss : s->test_loss;
}

static int present(double v, int acc)
{
    return isfinite(v) && (!acc || v >= 0);
}

static void panel(FILE *f, const KpHistory *h, int acc, int x0)
{
    const int y0 = TOP, x1 = x0 + PANEL_W, y1 = TOP + PANEL_H;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < h->n; i++)
        for (int k = 0; k < 2; k++) {
            double v = value(&h->e[i], acc, k);
            if (present(v, acc)) {
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
        }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"white\" stroke=\"#333\"/>\n",
            x0, y0, PANEL_W, PANEL_H);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", (x0 + x1) / 2,
            y1 + 40);
    fprintf(f, "<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            x0 - 55, (y0 + y1) / 2, acc ? "accuracy (%)" : "loss");
    if (lo > hi) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#666\">%s</text>\n",
                (x0 + x1) / 2, (y0 + y1) / 2, h->n ? "no accuracy for this model" : "no epochs yet");
        return;
    }

    /* x: epochs 1..n (one epoch: 0..2, its point in the middle) */
    int n = h->n;
    Axis xa = {n > 1 ? 1 : 0, n > 1 ? n : 2, 1};
    if (n > 9)
        xa.step = nice_step((n - 1) / 8.0);
    Axis ya = nice_axis(lo, hi, acc ? 1.0 : fmax(0.01, fabs(hi) * 0.05));
    /* an inner margin keeps the markers off the frame */
#define PX(e) (x0 + PAD + ((e) - xa.lo) / (xa.hi - xa.lo) * (PANEL_W - 2 * PAD))
#define PY(v) (y1 - PAD - ((v) - ya.lo) / (ya.hi - ya.lo) * (PANEL_H - 2 * PAD))
    int dy = decimals(ya.step);
    for (double t = ya.lo; t <= ya.hi + ya.step * 1e-6; t += ya.step) {
        double y = PY(t);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f</text>\n", x0 - 6, y + 4, dy,
                t);
    }
    for (double t = ceil(xa.lo / xa.step) * xa.step; t <= xa.hi + 1e-9; t += xa.step) {
        if (t < 1 || t > n)
            continue;
        double x = PX(t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>\n", x, y1, x,
                y1 + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", x, y1 + 20, t);
    }
    for (int k = 0; k < 2; k++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[k]);
        for (int i = 0; i < n; i++) {
            double v = value(&h->e[i], acc, k);
            if (present(v, acc))
                fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX(h->e[i].epoch), PY(v));
        }
        fputs("\"/>\n", f);
        for (int i = 0; i < n; i++) {
            double v = value(&h->e[i], acc, k);
            if (present(v, acc))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                        PX(h->e[i].epoch), PY(v), colors[k]);
        }
    }
#undef PX
#undef PY
}

int kp_cli_plot_write(const char *path, const char *title, const KpHistory *h)
{
    KpAtomicFile af;
    if (kp_cli_atomic_open(&af, path) != 0)
        return -1;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", WIDTH, HEIGHT);
    fprintf(f, "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"18\">", WIDTH / 2);
    put_escaped(f, title);
    fputs("</text>\n", f);
    for (int k = 0; k < 2; k++) {
        int x = WIDTH / 2 - 90 + 110 * k;
        fprintf(f, "<line x1=\"%d\" y1=\"55\" x2=\"%d\" y2=\"55\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                x, x + 30, colors[k]);
        fprintf(f, "<circle cx=\"%d\" cy=\"55\" r=\"3.5\" fill=\"%s\"/>\n", x + 15, colors[k]);
        fprintf(f, "<text x=\"%d\" y=\"60\">%s</text>\n", x + 38, names[k]);
    }
    panel(f, h, 0, LEFT0);
    panel(f, h, 1, LEFT0 + PANEL_W + GAP);
    fputs("</svg>\n", f);
    return kp_cli_atomic_commit(&af);
}
