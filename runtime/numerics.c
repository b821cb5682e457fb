/*
 * numerics.c — karp_set_check_numerics: after each training call, find the
 * first NaN or Inf and say where it is (the step, the layer, the element),
 * instead of letting a diverged run go on.
 *
 * What is scanned: the input batch before the call; after it the loss
 * (karp_train_step), the output (karp_forward's y), then the parameters
 * and their gradients in the model's parameter order, which is the
 * layers' order.  The layer is the parameter name up to its last '.'
 * ("dense4.weight" -> dense4).
 *
 * A model compiled with check_numerics (karp_compile_options, karpc train
 * --check-numerics) has no shared workspace ranges and lists every value
 * of its train graph in schedule order (KarpModelDesc.values); those the
 * call computed are scanned first, so the first non-finite value is the
 * one where the NaN or Inf appeared: "NaN in layer 'conv2' (relu output,
 * element 5 of sample 0)".
 */
#include <math.h>
#include <string.h>

#include "model.h"

int karp_set_check_numerics(karp_model *m, int on)
{
    if (!m)
        return kp_rt_error(NULL, KARP_EINVAL, "karp_set_check_numerics: model is NULL");
    m->check_numerics = on != 0;
    return 0;
}

/* The index of the first non-finite float of a[0..n), or -1. */
static int64_t first_bad(const float *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return i;
    return -1;
}

static const char *bad_name(float v)
{
    return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

int kp_rt_check_input(const karp_model *m, const char *fn, int64_t step, const float *x, int64_t n)
{
    if (!m->check_numerics)
        return 0;
    int64_t per = kp_rt_input_size(m->desc);
    int64_t i = first_bad(x, n * per);
    if (i < 0)
        return 0;
    return kp_rt_error(NULL, KARP_ENUMERIC,
                       "%s: step %lld: the input batch contains %s at element %lld of sample %lld",
                       fn, (long long)step, bad_name(x[i]), (long long)(i % per),
                       (long long)(i / per));
}

/* The parameters, then the gradients, in the model's order. */
static int check_slab(const karp_model *m, const char *fn, int64_t step, const float *slab,
                      const char *what)
{
    const KarpModelDesc *d = m->desc;
    for (uint32_t k = 0; k < d->nparams; k++) {
        const KarpParamDesc *p = &d->params[k];
        int64_t i = first_bad(slab + p->offset, p->size);
        if (i < 0)
            continue;
        const char *dot = strrchr(p->name, '.');
        int len = dot ? (int)(dot - p->name) : (int)strlen(p->name);
        return kp_rt_error(NULL, KARP_ENUMERIC, "%s: step %lld: %s in layer '%.*s' (%s %s, element %lld)",
                           fn, (long long)step, bad_name(slab[p->offset + i]), len, p->name,
                           what, p->name, (long long)i);
    }
    return 0;
}

/* The values of the phases in ran, in schedule order. */
static int check_values(const karp_model *m, const char *fn, int64_t step, int64_t n, unsigned ran)
{
    const KarpModelDesc *d = m->desc;
    for (int64_t k = 0; k < d->nvalues; k++) {
        const KarpValueDesc *v = &d->values[k];
        if (v->phase < 0 || v->phase > 3 || !(ran & (1u << v->phase)))
            continue;
        const float *base = v->where == KARP_VAL_TWS ? (const float *)((const char *)m->tws + v->offset)
                            : v->where == KARP_VAL_GRADS ? m->grads + v->offset
                                                         : m->params + v->offset;
        int64_t count = v->sample_floats ? v->sample_floats * n : v->fixed_floats;
        int64_t i = first_bad(base, count);
        if (i < 0)
            continue;
        if (v->sample_floats)
            return kp_rt_error(NULL, KARP_ENUMERIC,
                               "%s: step %lld: %s in layer '%s' (%s output, element %lld of sample %lld)",
                               fn, (long long)step, bad_name(base[i]), v->layer, v->op,
                               (long long)(i % v->sample_floats), (long long)(i / v->sample_floats));
        return kp_rt_error(NULL, KARP_ENUMERIC, "%s: step %lld: %s in layer '%s' (%s output, element %lld)",
                           fn, (long long)step, bad_name(base[i]), v->layer, v->op, (long long)i);
    }
    return 0;
}

int kp_rt_check_after(const karp_model *m, const char *fn, int64_t step, const float *loss,
                      const float *y, int64_t n, unsigned ran)
{
    if (!m->check_numerics)
        return 0;
    const KarpModelDesc *d = m->desc;
    int rc = check_values(m, fn, step, n, ran);
    if (rc)
        return rc;
    rc = check_slab(m, fn, step, m->params, "parameter");
    if (rc == 0)
        rc = check_slab(m, fn, step, m->grads, "gradient of");
    if (rc)
        return rc;
    if (y) {
        int64_t per = 1;
        for (int i = 0; i < d->output_rank; i++)
            per *= d->output_shape[i];
        int64_t i = first_bad(y, n * per);
        if (i >= 0)
            return kp_rt_error(NULL, KARP_ENUMERIC,
                               "%s: step %lld: %s in the model output (element %lld of sample %lld)", fn,
                               (long long)step, bad_name(y[i]), (long long)(i % per),
                               (long long)(i / per));
    }
    if (rc == 0 && loss && !isfinite(*loss))
        rc = kp_rt_error(NULL, KARP_ENUMERIC,
                         "%s: step %lld: the loss is %s (the parameters and gradients are finite)",
                         fn, (long long)step, bad_name(*loss));
    return rc;
}
