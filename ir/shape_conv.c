/*
 * shape_conv.c — shape rules of the windowed ops: conv2d,
 * conv2d_transpose, maxpool2d and avgpool2d.  Layout NCHW.
 *
 * Per spatial axis, with input size I, kernel K, stride S, dilation D,
 * padding P (each side), the effective kernel is E = D*(K-1)+1 and
 *
 *   conv2d, pools (PyTorch, floor):   O = (I + 2P - E) / S + 1
 *   conv2d_transpose (PyTorch):       O = (I-1)*S - 2P + E + output_padding
 *
 * "valid" is P = 0.  "same" follows TensorFlow/Keras for every stride, so
 * a Keras model keeps its shapes: O = ceil(I/S), total padding
 * T = max((O-1)*S + E - I, 0), top/left T/2, bottom/right T - T/2.  When T
 * is even on both axes the padding is symmetric: the rule resolves it into
 * attr.padding and sets pad_mode to KP_PAD_EXPLICIT (always the case for
 * stride 1 and an odd kernel).  Otherwise pad_mode stays KP_PAD_SAME,
 * attr.padding holds the top/left padding and the kernels pad the
 * bottom/right by one more.
 *
 * conv2d_transpose "same" gives O = I*S (Keras): 2P - output_padding =
 * E - S, solved with the smallest P; "valid" is P = 0.  Both end up
 * explicit (padding and output_padding).
 */
#include "shape_rules.h"

#include <assert.h>
#include <inttypes.h>

typedef struct Axis {
    int64_t in, k, s, dil;  /* input size, kernel, stride, dilation */
    int64_t pad, out;       /* resolved padding (top/left), output size */
    bool odd;               /* "same" padding is one larger at the end */
} Axis;

static int64_t eff(const Axis *a)
{
    return a->dil * (a->k - 1) + 1;
}

/* Resolve the padding of one axis of a conv or pool and size its output. */
static void window_axis(Axis *a, KpPadMode mode, int64_t pad)
{
    a->odd = false;
    if (mode == KP_PAD_SAME) {
        a->out = (a->in + a->s - 1) / a->s;
        int64_t total = (a->out - 1) * a->s + eff(a) - a->in;
        if (total < 0)
            total = 0;
        a->pad = total / 2;
        a->odd = total % 2 != 0;
        return;
    }
    a->pad = mode == KP_PAD_VALID ? 0 : pad;
    int64_t padded = a->in + 2 * a->pad;
    a->out = padded >= eff(a) ? (padded - eff(a)) / a->s + 1 : 0;
}

static void axes_init(Axis ax[2], const KpValue *x, const KpAttrs *at, bool dilated)
{
    for (int i = 0; i < 2; i++) {
        ax[i] = (Axis){.in = x->dims[2 + i], .k = at->kernel[i], .s = at->stride[i],
                       .dil = dilated ? at->dilation[i] : 1};
    }
}

static int check_attrs(KpGraph *g, KpNode *n, KpDiag *d, const Axis ax[2])
{
    for (int i = 0; i < 2; i++) {
        if (ax[i].k < 1 || ax[i].s < 1 || ax[i].dil < 1)
            return kp_shape_error(g, n, d, NULL,
                                  "kernel, stride and dilation must be positive, got kernel "
                                  "%" PRId64 "x%" PRId64 ", stride %" PRId64 "x%" PRId64
                                  ", dilation %" PRId64 "x%" PRId64,
                                  ax[0].k, ax[1].k, ax[0].s, ax[1].s, ax[0].dil, ax[1].dil);
        if (n->attr.pad_mode == KP_PAD_EXPLICIT && n->attr.padding[i] < 0)
            return kp_shape_error(g, n, d, NULL, "padding must not be negative");
    }
    return 0;
}

/* Store the resolved padding; symmetric "same"/"valid" become explicit. */
static void store_padding(KpAttrs *at, const Axis ax[2])
{
    if (!ax[0].odd && !ax[1].odd)
        at->pad_mode = KP_PAD_EXPLICIT;
    at->padding[0] = ax[0].pad;
    at->padding[1] = ax[1].pad;
}

static int window_fits(KpGraph *g, KpNode *n, KpDiag *d, const Axis ax[2], const char *what)
{
    if (ax[0].out >= 1 && ax[1].out >= 1)
        return 0;
    int64_t ph = ax[0].in + 2 * ax[0].pad, pw = ax[1].in + 2 * ax[1].pad;
    if (ax[0].dil > 1 || ax[1].dil > 1)
        return kp_shape_error(g, n, d, NULL,
                              "%s %s %" PRId64 "x%" PRId64 " (dilated %" PRId64 "x%" PRId64
                              ") is larger than the padded input %" PRId64 "x%" PRId64,
                              kp_op_name(n->op), what, ax[0].k, ax[1].k, eff(&ax[0]),
                              eff(&ax[1]), ph, pw);
    return kp_shape_error(g, n, d, NULL,
                          "%s %s %" PRId64 "x%" PRId64 " is larger than the padded input %" PRId64
                          "x%" PRId64,
                          kp_op_name(n->op), what, ax[0].k, ax[1].k, ph, pw);
}

static int check_bias(KpGraph *g, KpNode *n, KpDiag *d, int64_t filters)
{
    if (n->nin == 3) {
        const KpValue *b = n->in[2];
        if (b->rank != 1 || b->dims[0] != filters)
            return kp_shape_error(g, n, d, b, "bias must be [%" PRId64 "]", filters);
    }
    return 0;
}

static bool has_dims(const KpValue *v, int64_t a, int64_t b, int64_t c, int64_t e)
{
    return v->rank == 4 && v->dims[0] == a && v->dims[1] == b && v->dims[2] == c &&
           v->dims[3] == e;
}

/* What conv2d and conv2d_transpose check alike: x [N,C,H,W], the window
 * attributes into ax, the weight [F,C,kh,kw] ([C,F,kh,kw] if transpose),
 * the bias [F].  0 or -1. */
static int conv_operands(KpGraph *g, KpNode *n, KpDiag *d, Axis ax[2], bool transpose)
{
    assert(n->nin == 2 || n->nin == 3);
    const KpValue *x = n->in[0], *w = n->in[1];
    KpAttrs *at = &n->attr;
    if (x->rank != 4)
        return kp_shape_error(g, n, d, x, "input must be rank 3 per sample [C,H,W]");
    axes_init(ax, x, at, true);
    if (check_attrs(g, n, d, ax))
        return -1;
    int64_t f = at->filters, c = x->dims[1];
    int64_t w0 = transpose ? c : f, w1 = transpose ? f : c;
    if (!transpose && at->wstride > 0) {
        /* a weight padded by passes/layout.c: its rows wstride floats apart */
        int64_t per = c * ax[0].k * ax[1].k;
        if (w->rank != 2 || w->dims[0] != f || w->dims[1] != at->wstride || at->wstride < per)
            return kp_shape_error(g, n, d, w,
                                  "padded weight must be [%" PRId64 ",%" PRId64 "] with rows of "
                                  "at least %" PRId64 " floats", f, at->wstride, per);
        return check_bias(g, n, d, f);
    }
    if (!has_dims(w, w0, w1, ax[0].k, ax[1].k))
        return kp_shape_error(g, n, d, w,
                              "weight must be [%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "]",
                              w0, w1, ax[0].k, ax[1].k);
    return check_bias(g, n, d, f);
}

/* x [N,C,H,W], weight [F,C,kh,kw], bias [F] (optional) -> [N,F,OH,OW] */
int shape_conv2d(KpGraph *g, KpNode *n, KpDiag *d)
{
    KpAttrs *at = &n->attr;
    Axis ax[2];
    if (conv_operands(g, n, d, ax, false))
        return -1;
    int64_t f = at->filters;
    for (int i = 0; i < 2; i++)
        window_axis(&ax[i], at->pad_mode, at->padding[i]);
    if (window_fits(g, n, d, ax, "kernel"))
        return -1;
    store_padding(at, ax);
    kp_shape_set(n->out, 4, (int64_t[]){KP_DIM_N, f, ax[0].out, ax[1].out});
    return 0;
}

/* "same" for a transposed conv: O = I*S, i.e. 2P - output_padding = E - S. */
/* "same" for a transposed conv, as TensorFlow: the output is I*S, and of
 * the full transposed output ((I-1)*S + E rows) the top/left loses
 * floor((E-S)/2) rows and the bottom/right the rest — the adjoint of the
 * forward conv's "same", which pads floor(total/2) at the top.  The kernels
 * read only the top/left padding and the output size.  An even crop is
 * PyTorch's padding (and output_padding when E < S); an odd one has no
 * PyTorch form: *uneven is set and the node keeps pad_mode SAME (printed
 * pad=same[..]). */
static void transpose_same(const Axis *a, int64_t *pad, int64_t *outpad, bool *uneven)
{
    int64_t total = eff(a) - a->s;
    *pad = total > 0 ? total / 2 : 0;
    *outpad = total < 0 ? -total : 0;
    if (total > 0 && total % 2 != 0)
        *uneven = true;
}

/* x [N,C,H,W], weight [C,F,kh,kw], bias [F] (optional) -> [N,F,OH,OW],
 * OH = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1 */
int shape_conv2d_transpose(KpGraph *g, KpNode *n, KpDiag *d)
{
    KpAttrs *at = &n->attr;
    Axis ax[2];
    if (conv_operands(g, n, d, ax, true))
        return -1;
    const KpValue *x = n->in[0];
    int64_t f = at->filters;
    int64_t pad[2], outpad[2];
    bool uneven = false;
    for (int i = 0; i < 2; i++) {
        if (at->pad_mode == KP_PAD_SAME) {
            transpose_same(&ax[i], &pad[i], &outpad[i], &uneven);
        } else {
            pad[i] = at->pad_mode == KP_PAD_VALID ? 0 : at->padding[i];
            outpad[i] = at->output_padding[i];
        }
        if (outpad[i] < 0 || (outpad[i] >= ax[i].s && outpad[i] >= ax[i].dil))
            return kp_shape_error(g, n, d, NULL,
                                  "output_padding %" PRId64
                                  " must be smaller than the stride or the dilation",
                                  outpad[i]);
        if (at->pad_mode == KP_PAD_SAME)
            ax[i].out = ax[i].in * ax[i].s;
        else
            ax[i].out = (ax[i].in - 1) * ax[i].s - 2 * pad[i] + eff(&ax[i]) + outpad[i];
    }
    if (ax[0].out < 1 || ax[1].out < 1)
        return kp_shape_error(g, n, d, x,
                              "padding %" PRId64 "x%" PRId64 " leaves an empty output", pad[0],
                              pad[1]);
    if (!uneven)
        at->pad_mode = KP_PAD_EXPLICIT;
    for (int i = 0; i < 2; i++) {
        at->padding[i] = pad[i];
        at->output_padding[i] = outpad[i];
    }
    kp_shape_set(n->out, 4, (int64_t[]){KP_DIM_N, f, ax[0].out, ax[1].out});
    return 0;
}

/* x [N,C,H,W] -> [N,C,OH,OW], OH = floor((H + 2*padding - size) / stride) + 1 */
int shape_pool2d(KpGraph *g, KpNode *n, KpDiag *d)
{
    const KpValue *x = n->in[0];
    KpAttrs *at = &n->attr;
    if (x->rank != 4)
        return kp_shape_error(g, n, d, x, "input must be rank 3 per sample [C,H,W]");
    Axis ax[2];
    axes_init(ax, x, at, false);
    if (check_attrs(g, n, d, ax))
        return -1;
    for (int i = 0; i < 2; i++) {
        if (at->pad_mode == KP_PAD_EXPLICIT && at->padding[i] > ax[i].k / 2)
            return kp_shape_error(g, n, d, NULL,
                                  "padding %" PRId64 " must be at most half the pool size %" PRId64,
                                  at->padding[i], ax[i].k);
        window_axis(&ax[i], at->pad_mode, at->padding[i]);
    }
    if (window_fits(g, n, d, ax, "window"))
        return -1;
    store_padding(at, ax);
    kp_shape_set(n->out, 4, (int64_t[]){KP_DIM_N, x->dims[1], ax[0].out, ax[1].out});
    return 0;
}
