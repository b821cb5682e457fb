/*
 * emit_conv_flat.c — the direct kernel (emit_conv.c) on small images:
 * the lanes along a whole (phase) image instead of one of its rows.
 *
 * A row of 7 (dcgan's 14x14 layers cut into 7x7 phases, a 7x7 image)
 * fills 7 of 16 lanes.  Where a phase's input rows are as wide as its
 * output rows (a "same" convolution, and the phases of a "same" strided
 * one), the image can be read as one long row instead: output pixel q =
 * qy*ow + qx reads X at q + (ki*dh - pt)*w + (kj*dw - pl), a contiguous
 * vector for consecutive q, where the lanes whose (qy, qx) falls off X's
 * rows or columns are masked.  A tile is FLAT vectors of consecutive
 * pixels, every tile at a constant pixel, so every mask is a constant,
 * and a tap that reaches no lane of a tile is left out.  A work item is
 * one sample's fb channels, every phase; the scatter form stores each
 * vector with a scatter (amortized over cin x taps fmas), then applies
 * the epilogues over the whole planes.
 *
 * A strided gather (a strided forward, a transposed convolution's input
 * gradient) reads the same way from its input's sh x sw phase images,
 * each sample's copied into the thread's scratch first (split_input).
 */
#include "emit_conv_direct.h"
#include "../ir/epilogue.h"

#include <assert.h>
#include <stdlib.h>

/* Where a tap reads: from the first element of the channel's images,
 * the image (`plane` floats on), its rows and columns (its rows ow
 * floats apart), and the shift (dy, dx) of the tap in it.  Stride 1: X's
 * own image.  A strided gather (split_hp): input phase (a, b), the
 * elements (sh*r + a, sw*c + b), copied per sample by split_input. */
typedef struct FlatTap {
    int64_t plane, h, w, dy, dx;
} FlatTap;

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static FlatTap flat_tap(const Direct *s, const KpConvMap *m, int64_t ki, int64_t kj)
{
    int64_t oy = ki * m->dh - m->pt, ox = kj * m->dw - m->pl;
    if (!s->split_hp)
        return (FlatTap){0, m->h, m->w, oy, ox};
    int64_t a = oy - floor_div(oy, m->sh) * m->sh, b = ox - floor_div(ox, m->sw) * m->sw;
    return (FlatTap){(a * m->sw + b) * s->split_hp * m->ow, kp_ceil_div(m->h - a, m->sh),
                     kp_ceil_div(m->w - b, m->sw), floor_div(oy, m->sh), floor_div(ox, m->sw)};
}

/* Lane l of a flat tile's vector at pixel q (of npix, rows of ow) reads
 * inside the tap's image. */
static bool flat_lane(const FlatTap *t, int64_t npix, int64_t ow, int64_t q)
{
    int64_t qy = q / ow, qx = q % ow;
    return q < npix && qy + t->dy >= 0 && qy + t->dy < t->h && qx + t->dx >= 0 && qx + t->dx < t->w;
}

/* The vector of X at element `at` + lane, lanes where bits[l] (the others
 * 0.0; their addresses may lie outside X: a plain GEP). */
static LLVMValueRef flat_load(KpEmit *e, LLVMValueRef X, LLVMValueRef at, const bool *bits)
{
    int all = 1;
    LLVMValueRef elts[64];
    for (int l = 0; l < e->vw; l++) {
        elts[l] = LLVMConstInt(e->i1, bits[l], 0);
        all &= bits[l];
    }
    if (all)
        return kp_load_vec(e, X, at);
    LLVMValueRef ptr = LLVMBuildGEP2(e->b, e->f32, X, &at, 1, "");
    LLVMTypeRef over[2] = {e->vec, e->ptr};
    LLVMValueRef args[4] = {ptr, kp_i32(e, 4), LLVMConstVector(elts, (unsigned)e->vw),
                            kp_fconst(e->vec, 0.0)};
    return kp_intrinsic(e, "llvm.masked.load", over, 2, args, 4);
}

/* Phase p's pixels q0 .. q0 + nv*vw of channels co0 .. co0 + fb of sample
 * n; ybase is Y's element (n, co0, 0, 0). */
static void flat_tile(KpEmit *e, const KpKernelArgs *a, const Direct *s, const Phase *p,
                      LLVMValueRef n, LLVMValueRef co0, LLVMValueRef ybase, int64_t q0, int nv)
{
    const KpConvMap *m = &p->m;
    LLVMValueRef X = a->p[m->ix], W = a->p[m->iw], Y = a->p[m->iy];
    int64_t cstride = m->h * m->w;
    if (s->split_hp)            /* the sample's input phases, in this thread's scratch */
        X = kp_scratch(e), cstride = m->sh * m->sw * s->split_hp * m->ow;
    int64_t npix = m->oh * m->ow;
    LLVMValueRef acc[16][4];
    for (int f = 0; f < s->fb; f++) {
        LLVMValueRef init = kp_conv_acc_init(e, a, m, co0, f);
        for (int v = 0; v < nv; v++) {
            acc[f][v] = kp_alloca(e, e->vec, "acc");
            LLVMBuildStore(e->b, init, acc[f][v]);
        }
    }
    KpLoop lc;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cin), 1, "ci");
    LLVMValueRef plane = mul(e, s->split_hp ? lc.iv : add(e, mul(e, n, m->cin), lc.iv), cstride);
    LLVMValueRef wci = add(e, addc(e, mul(e, co0, m->wco), m->w0), mul(e, lc.iv, m->wci));
    for (int64_t ki = 0; ki < m->kh; ki++)
        for (int64_t kj = 0; kj < m->kw; kj++) {
            FlatTap t = flat_tap(s, m, ki, kj);
            LLVMValueRef xv[4] = {0};
            int any = 0;
            for (int v = 0; v < nv; v++) {
                bool bits[64];
                int some = 0;
                for (int l = 0; l < e->vw; l++)
                    some |= bits[l] = flat_lane(&t, npix, m->ow, q0 + v * e->vw + l);
                if (some)
                    xv[v] = flat_load(e, X, addc(e, plane, t.plane + q0 + v * e->vw + t.dy * m->ow + t.dx),
                                      bits);
                any |= some;
            }
            if (!any)
                continue;
            LLVMValueRef wt = addc(e, wci, ki * m->wki + kj * m->wkj);
            for (int64_t f = 0; f < s->fb; f++) {
                LLVMValueRef wv = LLVMBuildLoad2(e->b, e->f32, kp_gep(e, W, addc(e, wt, f * m->wco)), "");
                wv = kp_splat(e, wv);
                for (int v = 0; v < nv; v++)
                    if (xv[v]) {
                        LLVMValueRef old = LLVMBuildLoad2(e->b, e->vec, acc[f][v], "");
                        LLVMBuildStore(e->b, kp_fma(e, xv[v], wv, old), acc[f][v]);
                    }
            }
        }
    kp_loop_end(e, &lc);
    for (int64_t f = 0; f < s->fb; f++) {
        LLVMValueRef plane_y = addc(e, ybase, f * s->yh * s->yw);
        for (int v = 0; v < nv; v++) {
            int64_t q = q0 + v * e->vw;
            int lanes = (int)(npix - q < e->vw ? npix - q : e->vw);
            LLVMValueRef r = LLVMBuildLoad2(e->b, e->vec, acc[f][v], "");
            if (s->sy == 1 && s->sx == 1) {     /* Y's plane is the image */
                LLVMValueRef at = addc(e, plane_y, q);
                r = kp_emit_epilogue(e, e->node, a->p, r, at, lanes < e->vw ? lanes : 0);
                if (lanes < e->vw)
                    kp_store_vec_masked(e, r, Y, at, lanes);
                else
                    kp_store_vec(e, r, Y, at);
                continue;
            }
            /* pixel (qy, qx) of phase (py, px) is Y's (py + sy*qy, px + sx*qx) */
            LLVMValueRef offs[64];
            int64_t py = (p - s->ph) / s->sx;
            for (int l = 0; l < e->vw; l++) {
                int64_t ql = q + l < npix ? q + l : npix - 1;
                offs[l] = LLVMConstInt(e->i64, (unsigned long long)((py + s->sy * (ql / m->ow)) * s->yw +
                                                                    p->px + s->sx * (ql % m->ow)), 1);
            }
            /* plane_y in every lane (kp_lane_index at step 0), plus each lane's offset */
            LLVMValueRef idx = LLVMBuildAdd(e->b, kp_lane_index(e, plane_y, 0),
                                            LLVMConstVector(offs, (unsigned)e->vw), "");
            kp_scatter_where(e, r, Y, idx, kp_mask_first(e, lanes));
        }
    }
}

/* A strided gather's input for sample n into this thread's scratch as
 * its phases: [cin][sh*sw][split_hp][ow], phase (a, b) row r column c
 * being X[n, ci, sh*r + a, sw*c + b] (flat_tap); a gather of a row's
 * every sw-th float, ow of them (no more: the phases' rows are ow wide). */
static void split_input(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef n)
{
    const KpConvMap *m = &s->ph[0].m;
    LLVMValueRef X = a->p[m->ix], D = kp_scratch(e);
    KpLoop lc, lr;
    kp_loop_begin(e, &lc, kp_i64(e, 0), kp_i64(e, m->cin), 1, "split.ci");
    LLVMValueRef src = mul(e, add(e, mul(e, n, m->cin), lc.iv), m->h * m->w);
    LLVMValueRef dst = mul(e, lc.iv, m->sh * m->sw * s->split_hp * m->ow);
    kp_loop_begin(e, &lr, kp_i64(e, 0), kp_i64(e, m->h), 1, "split.row");
    LLVMValueRef pa = LLVMBuildSRem(e->b, lr.iv, kp_i64(e, m->sh), "");
    LLVMValueRef r = LLVMBuildSDiv(e->b, lr.iv, kp_i64(e, m->sh), "");
    LLVMValueRef xrow = add(e, src, mul(e, lr.iv, m->w));
    LLVMValueRef drow = add(e, dst, mul(e, add(e, mul(e, mul(e, pa, m->sw), s->split_hp), r), m->ow));
    for (int64_t b = 0; b < m->sw; b++)
        for (int64_t c0 = 0; c0 < m->ow; c0 += e->vw) {
            int64_t cols = kp_ceil_div(m->w - b, m->sw) - c0;
            int lanes = (int)(cols < e->vw ? cols : e->vw);
            if (lanes <= 0)
                continue;
            LLVMValueRef idx = kp_lane_index(e, addc(e, xrow, b + c0 * m->sw), m->sw);
            LLVMValueRef v = kp_gather_where(e, X, idx, kp_mask_first(e, lanes));
            LLVMValueRef at = addc(e, drow, b * s->split_hp * m->ow + c0);
            if (lanes < e->vw)
                kp_store_vec_masked(e, v, D, at, lanes);
            else
                kp_store_vec(e, v, D, at);
        }
    kp_loop_end(e, &lr);
    kp_loop_end(e, &lc);
}

/* A strided gather, item = n * split_groups + g: the sample's input
 * phases, then share g of its blocks of fb channels from them. */
static void split_item(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef item)
{
    const Phase *p = &s->ph[0];
    int64_t npix = p->m.oh * p->m.ow, T = s->flat * e->vw, per = s->cout / s->split_groups;
    LLVMValueRef n = LLVMBuildSDiv(e->b, item, kp_i64(e, s->split_groups), "n");
    LLVMValueRef c0 = mul(e, LLVMBuildSRem(e->b, item, kp_i64(e, s->split_groups), ""), per);
    split_input(e, a, s, n);
    KpLoop lb;
    kp_loop_begin(e, &lb, c0, addc(e, c0, per), s->fb, "block");
    LLVMValueRef ybase = mul(e, add(e, mul(e, n, s->cout), lb.iv), s->yh * s->yw);
    for (int64_t q0 = 0; q0 < npix; q0 += T) {
        int nv = (int)((npix - q0 < T ? npix - q0 : T) + e->vw - 1) / e->vw;
        flat_tile(e, a, s, p, n, lb.iv, ybase, q0, nv);
    }
    kp_loop_end(e, &lb);
}

/* item = n * (cout/fb) + block: every phase's image, then (scatter form)
 * the epilogues over the fb planes. */
void kp_conv_flat_item(KpEmit *e, const KpKernelArgs *a, const Direct *s, LLVMValueRef item)
{
    if (s->split_hp) {
        split_item(e, a, s, item);
        return;
    }
    int64_t nfb = s->cout / s->fb, plane = s->yh * s->yw;
    LLVMValueRef co0 = mul(e, LLVMBuildSRem(e->b, item, kp_i64(e, nfb), ""), s->fb);
    LLVMValueRef n = LLVMBuildSDiv(e->b, item, kp_i64(e, nfb), "n");
    LLVMValueRef ybase = mul(e, add(e, mul(e, n, s->cout), co0), plane);
    for (int64_t i = 0; i < s->sy * s->sx; i++) {
        const Phase *p = &s->ph[i];
        int64_t npix = p->m.oh * p->m.ow, T = s->flat * e->vw;
        for (int64_t q0 = 0; q0 < npix; q0 += T) {
            int nv = (int)((npix - q0 < T ? npix - q0 : T) + e->vw - 1) / e->vw;
            flat_tile(e, a, s, p, n, co0, ybase, q0, nv);
        }
    }
    if ((s->sy > 1 || s->sx > 1) && e->node->nepi > 0)
        kp_conv_span_epilogue(e, a, s, ybase, plane);
}

/* Vectors per flat tile where the phases' rows leave a quarter of their
 * lanes idle or more and their whole images, read as one row, fill an
 * eighth more of them (dcgan's 7-wide rows: 7 of 16 lanes, a 7x7 image
 * 49 of 64); 0 where not, or where an input row is not as wide as the
 * output row (flat_tile), or an image has more than FLAT_MAX_PIXELS. */
static int64_t flat_vectors(const KpConvMap *ph, int64_t nph, int vw)
{
    int64_t used = 0, rowlanes = 0, imglanes = 0, nvec = 0;
    for (int64_t i = 0; i < nph; i++) {
        const KpConvMap *m = &ph[i];
        int64_t npix = m->oh * m->ow;
        if (npix == 0)
            continue;
        if (m->sh != 1 || m->sw != 1 || m->w != m->ow || npix > FLAT_MAX_PIXELS)
            return 0;
        used += npix;
        rowlanes += m->oh * kp_ceil_div(m->ow, vw) * vw;
        imglanes += kp_ceil_div(npix, vw) * vw;
        nvec = kp_ceil_div(npix, vw) > nvec ? kp_ceil_div(npix, vw) : nvec;
    }
    if (used == 0 || 4 * used > 3 * rowlanes)
        return 0;
    if (8 * (used * rowlanes - used * imglanes) < imglanes * rowlanes)
        return 0;
    return nvec < 4 ? nvec : 4;
}

/* The flat tiles' vectors and channels (fb) for the phases of a map, or
 * 0: also where fewer than 8 accumulators would hide the fma latency. */
int64_t kp_conv_flat_plan(const KpConvMap *ph, int64_t nph, int vw, int64_t *fb)
{
    int64_t nv = flat_vectors(ph, nph, vw);
    *fb = nv ? kp_divisor_upto(ph[0].cout, kp_conv_tile_budget(vw) / nv) : 0;
    return nv && *fb * nv >= 8 ? nv : 0;
}

/* A strided gather form read from its input's phases (split_input): the
 * flat plan of a stride-1 map over images of the phases' size, where no
 * phase row is wider than the output's and the copy fits SPLIT_MAX_BYTES;
 * *hp its rows per phase image. */
int64_t kp_conv_split_plan(const KpConvMap *m, int vw, int64_t *fb, int64_t *hp)
{
    *hp = 0;
    if (m->transposed || (m->sh == 1 && m->sw == 1) || kp_ceil_div(m->w, m->sw) > m->ow)
        return 0;
    KpConvMap v = *m;
    v.h = kp_ceil_div(m->h, m->sh), v.w = m->ow, v.sh = v.sw = 1;
    int64_t nv = kp_conv_flat_plan(&v, 1, vw, fb);
    if (!nv || 4 * m->cin * m->sh * m->sw * v.h * m->ow > SPLIT_MAX_BYTES)
        return 0;
    *hp = v.h;
    return nv;
}

bool kp_conv_flat_taken(const KpConvMap *m, int vw)
{
    int64_t hp, fb;
    if (!m->transposed && (m->sh > 1 || m->sw > 1))
        return kp_conv_split_plan(m, vw, &fb, &hp) > 0;
    int64_t nph = m->transposed ? m->sh * m->sw : 1;
    KpConvMap *ph = calloc((size_t)nph, sizeof *ph);
    assert(ph);
    if (m->transposed)
        kp_conv_phases(m, ph);
    else
        ph[0] = *m;
    bool taken = kp_conv_flat_plan(ph, nph, vw, &fb) > 0;
    free(ph);
    return taken;
}

