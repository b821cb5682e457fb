/*
 * gemm_plan.c — the blocking of one GEMM, from its static shapes, the
 * vector width and the host's caches and cores (docs/kernels-gemm.md).
 *
 *   micro-tile  mr x nv vectors: as many accumulators as the registers
 *               hold beside nv B vectors and a broadcast (32 registers for
 *               AVX-512, 16 for AVX2); nv*vw a multiple of the 16-column
 *               panel
 *   kc          the A micro-panel (mr x kc) in 2/3 of L1: k blocks as long
 *               as that allows, each a pass over C fewer
 *   nc          the B block (kc x nc) stays in L2 while the row tiles
 *               sweep it
 *   pack A      where a tile's rows, or the lines of its k steps, crowd a
 *               set of L1 or L2 beyond its ways
 *   item grid   row chunks x column chunks: enough items for the cores,
 *               each packed block duplicated as little as possible (an
 *               item packs its own rows of A and columns of B)
 *   split k     a tiny C with a long k: fixed chunks of k as more items,
 *               their partial sums added in chunk order by the last
 *               chunk of each tile to finish
 *
 * None of these changes a result: every element is one fma chain in k
 * order (gemm.h), so the host's caches choose speed only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../passes/passes.h"
#include "gemm_internal.h"

/* Below this many multiply-adds a thread team costs more than it saves:
 * such a GEMM is one work item (and a batched one below it at run time),
 * unless its B (a static k, one group) has PAR_MIN_B bytes or more: then
 * a few rows of C are bound by reading B from L2, and two cores read
 * their halves from two L2s (the batch-1 MLP layer, 784 x 128: 4.4 us on
 * one core, 3.1 us on two with the fork and join).
 * A C of at most SPLIT_C floats gives the threads too few tiles: with k at
 * least two chunks of SPLIT_K, k is split into at most SPLIT_MAX fixed
 * chunks, from the shape alone (never the host or the thread count). */
enum { PAR_MIN_MACS = 1 << 19, PAR_MIN_B = KP_PAR_MIN_BYTES, SPLIT_C = 4096, SPLIT_K = 2048, SPLIT_MAX = 16 };

typedef struct Host {
    int64_t l1, l1_ways, l2, l2_ways;
    int64_t cores;
} Host;

/* A number from a sysfs file ("48K" counts as 49152), 0 if unreadable. */
static int64_t read_size(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[32];
    int64_t v = 0;
    if (f && fgets(buf, sizeof buf, f)) {
        char *end;
        v = strtoll(buf, &end, 10);
        if (*end == 'K')
            v *= 1024;
        else if (*end == 'M')
            v *= 1024 * 1024;
    }
    if (f)
        fclose(f);
    return v;
}

/* The data or unified cache of a level from sysfs: size or ways (0 if unknown). */
static int64_t sysfs_cache(int level, const char *what)
{
    for (int idx = 0; idx < 8; idx++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        if (read_size(path) != level)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        FILE *f = fopen(path, "r");
        int inst = f && fgetc(f) == 'I';
        if (f)
            fclose(f);
        if (inst)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", idx, what);
        return read_size(path);
    }
    return 0;
}

static int64_t within(int64_t v, int64_t lo, int64_t hi, int64_t dflt)
{
    return v >= lo && v <= hi ? v : dflt;
}

/* sysconf first (glibc), sysfs next, then sizes common to current x86 cores. */
static Host host(void)
{
    Host h;
    h.l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    h.l1_ways = sysconf(_SC_LEVEL1_DCACHE_ASSOC);
    h.l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    h.l2_ways = sysconf(_SC_LEVEL2_CACHE_ASSOC);
    if (h.l1 <= 0)
        h.l1 = sysfs_cache(1, "size");
    if (h.l1_ways <= 0)
        h.l1_ways = sysfs_cache(1, "ways_of_associativity");
    if (h.l2 <= 0)
        h.l2 = sysfs_cache(2, "size");
    if (h.l2_ways <= 0)
        h.l2_ways = sysfs_cache(2, "ways_of_associativity");
    h.l1 = within(h.l1, 16 << 10, 256 << 10, 32 << 10);
    h.l1_ways = within(h.l1_ways, 2, 32, 8);
    h.l2 = within(h.l2, 128 << 10, 16 << 20, 512 << 10);
    h.l2_ways = within(h.l2_ways, 2, 32, 8);
    h.cores = within(sysconf(_SC_NPROCESSORS_ONLN), 1, 1024, 1);
    return h;
}

bool kp_gemm_worth_threads(int64_t macs, int64_t b_bytes)
{
    return macs >= PAR_MIN_MACS || b_bytes >= PAR_MIN_B;
}

void kp_gemm_host(int64_t *l1, int64_t *l2, int64_t *cores)
{
    Host h = host();
    *l1 = h.l1, *l2 = h.l2, *cores = h.cores;
}

/* The most rows of a micro-tile of nv vectors: the registers hold the
 * accumulators, nv B vectors and a broadcast. */
static int rows_for(int vw, int nv)
{
    int regs = vw == 16 ? 32 : 16;
    int mr = (regs - nv - 2) / nv;
    if (vw == 16 && nv == 2)
        mr = 12;                /* measured best of 8..14 (docs/kernels-gemm.md) */
    return mr < KP_GEMM_MAX_MR ? mr : KP_GEMM_MAX_MR;
}

/* The micro-tile: nv vectors (one panel for narrow C, else two vectors
 * or one panel), as many rows as the registers allow, or the most rows
 * down to two thirds of that which divide m (the largest batch for a
 * batched m) while 12 accumulators remain, so that no one-row tiles are
 * needed (fewer accumulators lose more than one-row tiles cost). */
static void choose_tile(KpGemmPlan *p, int64_t mmax, int64_t n)
{
    int per_panel = KP_GEMM_PANEL / p->vw;     /* vectors per 16 columns: 1, 2 or 4 */
    p->nv = n <= KP_GEMM_PANEL ? per_panel : per_panel < 2 ? 2 : per_panel;
    int most = rows_for(p->vw, p->nv);
    p->mr = most;
    for (int mr = most; 3 * mr >= 2 * most && mr * p->nv >= 12; mr--)
        if (mmax % mr == 0) {
            p->mr = mr;
            break;
        }
    if (mmax < p->mr)
        p->mr = (int)mmax;
}

/* The most lines of an A micro-panel read in place that fall into one
 * set of a cache of `bytes` and `ways`: mr rows rs floats apart, kc steps
 * of k cs floats apart, rows that share a line counted once. */
static int64_t worst_set(int64_t bytes, int64_t ways, int mr, int64_t kc, int64_t rs, int64_t cs)
{
    int64_t sets = bytes / (64 * ways);
    if (rs < 0 || cs < 0 || sets < 1 || sets > 1 << 16)
        return 0;               /* (no view has negative strides; the count needs none) */
    int64_t *count = calloc((size_t)sets, sizeof *count), worst = 0;
    if (!count)
        return 0;
    for (int64_t k = 0; k < kc; k++)
        for (int64_t line = -1, i = 0; i < mr; i++) {
            int64_t at = (i * rs + k * cs) * 4 / 64;
            if (at == line)
                continue;       /* the tile's rows on one line */
            line = at;
            int64_t c = ++count[at % sets];
            worst = c > worst ? c : worst;
        }
    free(count);
    return worst;
}

/* Whether mr rows rs floats apart put more lines into one L1 set than it
 * has ways: then a row's line is gone before its next 15 floats are read,
 * and A is packed.  Up to the ways, A is read in place: on the Zen 4
 * (8 ways) its 8-row tiles at strides of 4 KiB (sgemm 1024^3) and 36 KiB
 * (fashion_cnn's dense4, k = 9216) ran faster in place than packed: 1024^3
 * 87-91% -> 93-95% of peak, dense4's forward 35-72% -> 87% (its packer
 * reads 16 rows for an 8-row panel; docs/kernels-gemm.md). */
static bool rows_collide(const Host *h, int mr, int64_t rs)
{
    return worst_set(h->l1, h->l1_ways, mr, 1, rs, 0) > h->l1_ways;
}

/* Whether the lines of an A micro-panel read in place, its k steps on
 * lines of their own (cs of 16 floats or more), crowd one set of a cache
 * of `bytes` and `ways` beyond its ways; then A is packed.  dense_grad_w's
 * A is dy^T: its k steps are the batch's rows, `out` floats apart.  At
 * 1024 outputs they are 4 KiB apart: a batch of 64 puts its micro-panel
 * into one L1 set, a batch of 1024 into 16 sets of the 1 MiB L2, from
 * which it came again from L3 for every column tile (docs/kernels-gemm.md,
 * "A packed where its k steps crowd a set"). */
static bool panel_crowds(int64_t bytes, int64_t ways, int mr, int64_t kc, int64_t rs, int64_t cs)
{
    return cs >= 16 && worst_set(bytes, ways, mr, kc, rs, cs) > ways;
}

/* Cycles per element of a packed block: vector copies where the lines are
 * contiguous in the source, shuffles or scalars otherwise; a quarter of
 * that for a B packed by its first row tile, whose reads come in while
 * that tile's multiply-adds run (A's packer is a pass of its own).  sgemm
 * TN 1024^3 (A = dy^T packed, B = x packed so) took 0.88-0.93x the time
 * on a 2 x 1 grid, B packed twice, as on 1 x 2, A packed twice
 * (docs/kernels-gemm.md, "A's packer prefetches, two vectors a step;
 * which operand to pack twice"). */
static double pack_cost(const KpGemmView *v, bool is_b, bool fused)
{
    int64_t line_stride = is_b ? v->cs : v->rs;
    return (line_stride == 1 ? 0.1 : 0.5) / (fused ? 4 : 1);
}

/* Estimated cycles of the grid r x c: the busiest thread's micro-tiles
 * and its share of the packing, plus the cost of an item.  With tail,
 * also half an item: the wait for the last one when a core runs slower
 * than the other (parallel.c's threads take work from a slow one only
 * in whole items). */
static double grid_cost(const KpGemmPlan *p, const Host *h, int64_t groups, int64_t m, int64_t n,
                        int64_t k, int64_t r, int64_t c, double pa, double pb, bool tail)
{
    int64_t rows = kp_round_up(kp_ceil_div(m, r), p->mr), cols = kp_round_up(kp_ceil_div(n, c), p->nv * p->vw);
    int64_t items = groups * r * c;
    double per_item = (double)rows * (double)cols * (double)k / (2.0 * p->vw) + 2000.0;
    int64_t threads = items < h->cores ? items : h->cores;
    double span = (double)kp_ceil_div(items, h->cores) * per_item + (tail ? per_item / 2 : 0);
    double packing = (double)groups * (pa * (double)(m * k * c) + pb * (double)(n * k * r));
    return span + packing / (double)threads;
}

/* The grid of least cost; with tail, only the row chunks are chosen
 * (the columns stay at the plan's ncol_chunks). */
static void choose_grid(KpGemmPlan *p, const Host *h, int64_t groups, int64_t m, int64_t n,
                        int64_t k, double pa, double pb, bool full_rows, bool tail)
{
    double best = -1;
    int64_t rmax = kp_ceil_div(m, p->mr), cmax = full_rows ? 1 : kp_ceil_div(n, p->nv * p->vw);
    int64_t c0 = tail ? p->ncol_chunks : 1, c1 = tail ? p->ncol_chunks : cmax;
    for (int64_t r = 1; r <= rmax && r <= 64; r++)
        for (int64_t c = c0; c <= c1 && c <= 64; c++) {
            double cost = grid_cost(p, h, groups, m, n, k, r, c, pa, pb, tail);
            if (best < 0 || cost < best) {
                best = cost;
                p->nrow_chunks = r;
                p->ncol_chunks = c;
            }
        }
}

/* Whether more row chunks cost nothing but their items' overhead: nothing
 * is packed (each row chunk would pack B again) and the columns of B an
 * item reads stay in half of L2 for the next row chunk.  Then the rows
 * are cut finer than the cores alone ask, so that a fast core can take
 * whole items from a slow one: mlp dense1's dW (128 x 784 x 64) on the
 * two cores of the Zen 5, one of which runs 6% slower on an FMA loop,
 * went from 2 items to 8 and 0.92x the time (docs/kernels-gemm.md). */
static bool rows_cheap(const KpGemmPlan *p, const Host *h, int64_t n, int64_t k)
{
    int64_t cols = kp_round_up(kp_ceil_div(n, p->ncol_chunks), (int64_t)p->nv * p->vw);
    return !p->pack_a && !p->pack_b && 4 * k * cols <= h->l2 / 2;
}

/* The vectors of a tile of `rows` rows: at least 8 fma chains where the
 * column block allows (a widened tile still divides nc). */
static int widen(const KpGemmPlan *p, int rows)
{
    int nv = p->nv;
    while (rows * nv < 8 && 2 * nv <= KP_GEMM_MAX_NV && p->nc % (2 * nv * p->vw) == 0)
        nv *= 2;
    return nv;
}

int kp_gemm_plan(const KpGemm *g, int vw, int64_t max_batch, KpGemmPlan *p, KpDiag *d)
{
    *p = (KpGemmPlan){.vw = vw};
    int64_t nb = max_batch > 0 ? max_batch : 1;
    int64_t m = g->m.size * (g->m.batched ? nb : 1), n = g->n.size;
    int64_t k = g->k.size * (g->k.batched ? nb : 1);
    int64_t groups = g->groups.size * (g->groups.batched ? nb : 1);
    if (g->n.batched || m < 1 || n < 1 || k < 1 || groups < 1)
        return kp_error(d, "internal error: GEMM %s: unsupported shape %lld x %lld x %lld", g->name,
                        (long long)m, (long long)n, (long long)k);
    if (g->c.cs != 1 || g->a.source == KP_GEMM_PANELS || (g->b.source == KP_GEMM_PANELS && g->k.batched))
        return kp_error(d, "internal error: GEMM %s: C must be contiguous along its rows, A cannot "
                        "be prepacked, B's panels need a static k", g->name);
    KpGemmTune t;
    if (kp_gemm_tune(&t, d) < 0)
        return -1;
    if (t.nv && t.nv * vw % KP_GEMM_PANEL)
        return kp_error(d, "KARPC_GEMM_PLAN: nv=%lld: tiles of %lld columns with %d-float vectors; "
                        "expected a multiple of %d columns", (long long)t.nv, (long long)(t.nv * vw),
                        vw, KP_GEMM_PANEL);
    Host h = host();
    choose_tile(p, m, n);
    if (t.mr)
        p->mr = (int)(t.mr < m ? t.mr : m);
    if (t.nv)
        p->nv = (int)t.nv;

    /* kc: A micro-panel in 2/3 of L1 (fewer, longer k blocks measured
     * faster than a smaller share: docs/kernels-gemm.md); balanced k blocks */
    int64_t kc_max = h.l1 * 2 / 3 / (4 * p->mr);
    kc_max = kc_max < 64 ? 64 : kc_max > 1024 ? 1024 : kc_max;
    kc_max = t.kc ? t.kc : kc_max;
    p->kc = g->k.batched ? kc_max : kp_ceil_div(k, kp_ceil_div(k, kc_max));

    /* (an inference conv's constant weight never collides: passes/layout.c pads such rows) */
    const KpGemmView *av = &g->a.view;
    int64_t kblock = p->kc < k ? p->kc : k;
    p->pack_a = g->a.source == KP_GEMM_CUSTOM ||
                (g->a.source == KP_GEMM_VIEW &&
                 ((av->rs != 1 && rows_collide(&h, p->mr, av->rs)) ||
                  panel_crowds(h.l1, h.l1_ways, p->mr, kblock, av->rs, av->cs) ||
                  panel_crowds(h.l2, h.l2_ways, p->mr, kblock, av->rs, av->cs)));
    p->pack_b = g->b.source == KP_GEMM_CUSTOM ||
                (g->b.source == KP_GEMM_VIEW && (g->b.view.cs != 1 || g->b.view.rs % 1024 == 0));
    p->fuse_b = p->pack_b && g->b.source == KP_GEMM_VIEW && g->b.view.cs == 1;
    if (t.pack_a >= 0 && g->a.source == KP_GEMM_VIEW)
        p->pack_a = t.pack_a;

    /* nc: B block in half of L2 */
    int64_t nr = (int64_t)p->nv * vw;
    int64_t nc_max = h.l2 / 2 / (4 * p->kc) / nr * nr;
    nc_max = t.nc ? kp_round_up(t.nc, nr) : nc_max < nr ? nr : nc_max;

    int64_t macs = groups * m * n * k;
    double pa = p->pack_a ? (g->a.source == KP_GEMM_CUSTOM ? 0.5 : pack_cost(&g->a.view, false, false)) : 0;
    double pb = p->pack_b ? (g->b.source == KP_GEMM_CUSTOM ? 0.5 : pack_cost(&g->b.view, true, p->fuse_b)) : 0;
    bool wide_b = !g->k.batched && groups == 1 && 4 * n * k >= PAR_MIN_B;
    p->parallel = kp_gemm_worth_threads(macs, wide_b ? 4 * n * k : 0) && h.cores > 1;
    p->nrow_chunks = p->ncol_chunks = 1;
    if (p->parallel)
        choose_grid(p, &h, groups, m, n, k, pa, pb, g->full_rows, false);
    if (p->parallel && rows_cheap(p, &h, n, k))
        choose_grid(p, &h, groups, m, n, k, pa, pb, g->full_rows, true);
    if (p->parallel && t.rows) {
        p->nrow_chunks = t.rows;
        p->ncol_chunks = g->full_rows ? 1 : t.cols;
    }
    p->mci = kp_round_up(kp_ceil_div(m, p->nrow_chunks), p->mr);
    p->nci = kp_round_up(kp_ceil_div(n, p->ncol_chunks), nr);
    p->nc = p->nci <= nc_max ? p->nci : kp_ceil_div(p->nci, kp_ceil_div(p->nci, nc_max));
    p->nc = kp_round_up(p->nc, nr);
    p->nci = kp_round_up(p->nci, p->nc);
    p->nrow_chunks = kp_ceil_div(m, p->mci);
    p->ncol_chunks = kp_ceil_div(n, p->nci);
    p->parallel = p->parallel && groups * p->nrow_chunks * p->ncol_chunks > 1;
    /* the multiply-adds grow with the batch: below n_par, one item */
    p->n_par = 1;
    if (p->parallel && !wide_b && (g->m.batched || g->k.batched || g->groups.batched))
        p->n_par = kp_ceil_div(PAR_MIN_MACS * nb, macs);

    p->one_block = p->ncol_chunks == 1 && p->nci == p->nc;
    /* a chunk ends in rows fewer than mr: any batch but multiples of mr,
     * else only a last chunk that is short */
    bool short_rows = g->m.batched || m % p->mci % p->mr || (p->n_par > 1 && m % p->mr);
    p->row_nv = p->mr > 1 && short_rows ? widen(p, 1) : 0;
    p->nv = widen(p, p->mr);     /* m itself may be too small for 8 chains */

    p->kchunks_max = 1;
    if (macs >= PAR_MIN_MACS && !g->full_rows && !g->m.batched && !g->groups.batched &&
        g->groups.size == 1 &&
        m * n <= SPLIT_C && k >= 2 * SPLIT_K) {
        p->kchunks_max = kp_ceil_div(k, SPLIT_K) < SPLIT_MAX ? kp_ceil_div(k, SPLIT_K) : SPLIT_MAX;
        /* a batched k: chunks of SPLIT_K, as many as the batch makes, at run time */
        p->kchunk = g->k.batched ? SPLIT_K : kp_ceil_div(k, p->kchunks_max);
        p->m_floats = kp_round_up(m * n, 16);
        p->counters_at = 4 * p->m_floats * p->kchunks_max;
        p->shared_bytes = p->counters_at + 8 * p->nrow_chunks * p->ncol_chunks;
        p->n_par = 1;
        p->parallel = h.cores > 1;
    }
    int64_t arows = p->n_par > 1 ? kp_round_up(m, p->mr) : p->mci;
    /* (a batched k has kc at its most, but a block never passes k at the largest batch) */
    p->a_floats = p->pack_a ? kp_round_up(arows * (p->kc < k ? p->kc : k) + vw, 16) : 0;
    p->b_floats = p->pack_b ? kp_round_up(p->nc, KP_GEMM_PANEL) * p->kc : 0;
    p->scratch_bytes = 4 * (p->a_floats + p->b_floats);
    if (t.show)
        fprintf(stderr, "gemm plan %s %lld x %lld x %lld: tile %d x %d vectors, kc %lld, nc %lld, grid "
                "%lld x %lld%s, A %s, B %s\n", g->name, (long long)m, (long long)n, (long long)k, p->mr,
                p->nv, (long long)p->kc, (long long)p->nc, (long long)p->nrow_chunks,
                (long long)p->ncol_chunks, p->parallel ? "" : " (one thread)",
                p->pack_a ? "packed" : "in place", p->fuse_b ? "packed by the first row tile"
                : p->pack_b ? "packed" : "in place");
    return 0;
}
