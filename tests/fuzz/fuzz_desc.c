/*
 * fuzz_desc.c — the loader's descriptor checks (runtime/model.c,
 * check_desc via kp_rt_model_new) on a KarpModelDesc whose plain-data
 * fields all come from the fuzz bytes.
 *
 * What the check can and cannot guard: a descriptor comes from a model.so
 * the runtime dlopen()ed, so its pointers are whatever the library holds.
 * The check can refuse NULL where a table or function is needed, counts
 * and sizes out of range, shapes whose products overflow, parameter
 * ranges outside the slab or overlapping, inconsistent training entry
 * points.  It cannot tell whether a non-NULL pointer is valid, whether a
 * table is as long as its count says (params/nparams, values/nvalues,
 * augment/naugment, norm_mean/norm_nmean), whether strings are
 * terminated, or whether the functions do what the sizes promise.  So
 * the harness builds every table from the bytes with exactly the length
 * its count field gives (capped small, with the count then set to match)
 * and points every entry at a function that does nothing (noop_*), so an
 * accepted model can be run: the runtime's own work around the entries
 * (workspace pool, prepare, the numerics scan over the value table) is
 * what runs; everything else is raw.
 *
 * Descriptors that would pass and make the runtime allocate more than
 * 256 MB are skipped (a real model that size allocates it; it is not a
 * bug), so the large-but-legal corners of the size checks are covered by
 * tests/runtime, not here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "runtime/model.h"

static void noop_infer(const float *params, const float *prep, float *ws, const float *x, float *y,
                       int64_t n)
{
    (void)params, (void)prep, (void)ws, (void)x, (void)y, (void)n;
}
static void noop_prepare(const float *params, float *prep)
{
    (void)params, (void)prep;
}
static void noop_forward(const float *params, float *tws, const float *x, float *y, int64_t n,
                         uint64_t seed)
{
    (void)params, (void)tws, (void)x, (void)y, (void)n, (void)seed;
}
static void noop_backward(const float *params, float *grads, float *tws, const float *x,
                          const float *dy, float *dx, int64_t n)
{
    (void)params, (void)grads, (void)tws, (void)x, (void)dy, (void)dx, (void)n;
}
static void noop_bind(void *shared, void *slots, int64_t stride, int64_t nslots)
{
    (void)shared, (void)slots, (void)stride, (void)nslots;
}
static void noop_apply(float *params, float *grads, float *opt, int64_t step)
{
    (void)params, (void)grads, (void)opt, (void)step;
}
static float noop_step(float *params, float *grads, float *opt, float *tws, const float *x,
                       const void *target, int64_t n, int64_t step, uint64_t seed)
{
    (void)params, (void)grads, (void)opt, (void)tws, (void)x, (void)target, (void)n, (void)step;
    (void)seed;
    return 0.0f;
}

#define MAX_TABLE 8
#define BIG ((int64_t)1 << 26) /* bytes: skip above 256 MB in all */

/* Sizes: mostly small values so that checks further on are reached, and
 * now and then the raw 64 bits (negative, huge). */
static int64_t size_field(FzBytes *b)
{
    uint8_t sel = (uint8_t)fz_u64(b, 1);
    uint64_t v = fz_u64(b, sel & 0x80 ? 8 : 2);
    return (int64_t)(sel & 0x40 ? 0 - v : v);
}

static int64_t sat_mul(int64_t a, int64_t b)
{
    if (a <= 0 || b <= 0)
        return 0;
    return a > INT64_MAX / b ? INT64_MAX : a * b;
}

static int64_t numel(const int64_t *s, int rank)
{
    int64_t n = 1;
    for (int i = 0; i < rank && i < 4; i++)
        n = sat_mul(n, s[i]);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FzBytes b = {data, size};
    static char strs[8][64];
    static char pnames[MAX_TABLE][32];
    static KarpParamDesc params[MAX_TABLE];
    static KarpValueDesc values[MAX_TABLE];
    static karp_augment aug[MAX_TABLE];
    static float mean[16], stdv[16];

    KarpModelDesc d;
    memset(&d, 0, sizeof d);
    uint32_t flags = (uint32_t)fz_u64(&b, 4);
    d.abi_version = flags & 1 ? (uint32_t)fz_u64(&b, 4) : KARP_ABI_VERSION;
    d.name = flags & 2 ? NULL : fz_str(&b, strs[0], 32);
    d.cpu_features = fz_str(&b, strs[1], 60);
    d.loss = fz_str(&b, strs[2], 16);
    d.optimizer = fz_str(&b, strs[3], 16);
    d.input_rank = (int32_t)fz_u64(&b, 1) - 2;
    d.output_rank = (int32_t)fz_u64(&b, 1) - 2;
    for (int i = 0; i < 4; i++)
        d.input_shape[i] = size_field(&b);
    for (int i = 0; i < 4; i++)
        d.output_shape[i] = size_field(&b);
    d.max_batch = size_field(&b);
    d.param_floats = size_field(&b);
    d.workspace_bytes = size_field(&b);
    d.seed = fz_u64(&b, 8);
    uint32_t np = (uint32_t)fz_u64(&b, 1) % (MAX_TABLE + 1);
    d.nparams = flags & 4 ? np + (uint32_t)fz_u64(&b, 4) : np; /* a count without a table */
    d.params = flags & 8 ? NULL : params;
    for (uint32_t i = 0; i < np; i++) {
        KarpParamDesc *p = &params[i];
        p->name = flags & (16u << i % 8) && i == 0 ? NULL : fz_str(&b, pnames[i], 24);
        p->rank = (int32_t)fz_u64(&b, 1) - 2;
        p->init = (int32_t)fz_u64(&b, 1) - 1;
        for (int k = 0; k < 4; k++)
            p->shape[k] = size_field(&b);
        p->offset = size_field(&b);
        p->size = size_field(&b);
        p->fan_in = size_field(&b);
        p->fan_out = size_field(&b);
    }
    if (d.nparams != np)
        d.params = NULL;
    d.infer = flags & 0x1000 ? NULL : noop_infer;
    d.target_kind = (int32_t)fz_u64(&b, 1) - 1;
    d.opt_slots = (int32_t)fz_u64(&b, 1) - 1;
    d.trainable_floats = size_field(&b);
    d.train_workspace_bytes = size_field(&b);
    d.forward = flags & 0x2000 ? noop_forward : NULL;
    d.backward = flags & 0x4000 ? noop_backward : NULL;
    d.apply = flags & 0x8000 ? noop_apply : NULL;
    d.train_step = flags & 0x10000 ? noop_step : NULL;
    d.no_train_reason = flags & 0x20000 ? fz_str(&b, strs[4], 40) : NULL;
    d.train_epochs = size_field(&b);
    d.norm_nmean = (int32_t)fz_u64(&b, 1) - 1;
    d.norm_nstd = (int32_t)fz_u64(&b, 1) - 1;
    for (int i = 0; i < 16; i++)
        mean[i] = stdv[i] = (float)(int8_t)fz_u64(&b, 1) / 8.0f;
    /* a count of at most 16 has its table; a larger one is refused unread */
    d.norm_mean = d.norm_nmean > 0 && !(flags & 0x40000) ? mean : NULL;
    d.norm_std = d.norm_nstd > 0 && !(flags & 0x80000) ? stdv : NULL;
    if (d.norm_nmean > 16 || d.norm_nstd > 16)
        d.norm_mean = d.norm_std = NULL;
    d.naugment = (int64_t)(fz_u64(&b, 1) % (MAX_TABLE + 1));
    for (int64_t i = 0; i < d.naugment; i++) {
        aug[i].kind = (int32_t)fz_u64(&b, 1) - 1;
        aug[i].value = (float)(int16_t)fz_u64(&b, 2) / 16.0f;
    }
    d.augment = d.naugment ? aug : NULL;
    d.prep_floats = size_field(&b);
    d.prepare = flags & 0x100000 ? noop_prepare : NULL;
    d.nvalues = (int64_t)(fz_u64(&b, 1) % (MAX_TABLE + 1));
    for (int64_t i = 0; i < d.nvalues; i++) {
        values[i].layer = "layer";
        values[i].op = "op";
        values[i].where = (int32_t)fz_u64(&b, 1);
        values[i].phase = (int32_t)fz_u64(&b, 1);
        values[i].offset = size_field(&b);
        values[i].sample_floats = size_field(&b);
        values[i].fixed_floats = size_field(&b);
    }
    d.values = d.nvalues && !(flags & 0x200000) ? values : NULL;
    d.scratch_bytes = size_field(&b);
    d.scratch_shared_bytes = size_field(&b);
    d.bind_scratch = flags & 0x400000 ? noop_bind : NULL;

    /* what kp_rt_model_new would allocate if the check passes */
    int64_t pbytes = sat_mul(d.param_floats, 4);
    int64_t total = sat_mul(pbytes, 2 + (d.opt_slots > 0 ? d.opt_slots : 0));
    int64_t parts[6] = {d.workspace_bytes, d.train_workspace_bytes, sat_mul(d.prep_floats, 4),
                        sat_mul(sat_mul(d.max_batch, numel(d.input_shape, d.input_rank)), 4),
                        sat_mul(d.scratch_bytes, 2 * 64),      /* two pools, up to 64 threads */
                        sat_mul(d.scratch_shared_bytes, 2)};
    for (int i = 0; i < 6; i++)
        total = parts[i] > 0 && total < INT64_MAX - parts[i] ? total + parts[i]
                                                             : (parts[i] > 0 ? INT64_MAX : total);
    if (total > BIG)
        return 0;

    karp_error err;
    karp_model *m = kp_rt_model_new(&d, NULL, NULL, &err);
    if (!m) {
        if (err.code >= 0 || !err.message[0] || strchr(err.message, '\n')) {
            fprintf(stderr, "fuzz_desc: code %d with message '%s'\n", err.code, err.message);
            abort();
        }
        return 0;
    }
    /* accepted: every parameter must be reachable and inside the slab */
    karp_info info;
    if (karp_model_info(m, &info) != 0)
        abort();
    for (int i = 0; i < karp_param_count(m); i++) {
        karp_param p;
        if (karp_param_get(m, i, &p) != 0)
            abort();
        volatile float sum = 0;
        for (int64_t k = 0; k < p.size; k++)
            sum += p.data[k] + p.grad[k];
    }
    /* run it: prepare and a pooled workspace, then (with training entries)
     * a forward whose numerics check reads every FORWARD value the table
     * lists — inside its slab, or the check above let a bad table through */
    if (info.input_size > BIG / 4 || info.output_size > BIG / 4) {
        karp_close(m);      /* the caller's buffers would be too large to run it */
        return 0;
    }
    float *x = calloc((size_t)info.input_size + 1, sizeof *x);
    float *y = calloc((size_t)info.output_size + 1, sizeof *y);
    if (!x || !y)
        abort();
    if (karp_infer(m, x, 1, y) != 0) {
        fprintf(stderr, "fuzz_desc: karp_infer on an accepted model: %s\n", karp_last_error());
        abort();
    }
    if (d.forward && d.backward && karp_set_check_numerics(m, 1) == 0)
        (void)karp_forward(m, x, 1, y);
    free(x);
    free(y);
    karp_close(m);
    return 0;
}
