/*
 * training.c — the training parts of a model file: "loss", "optimizer"
 * and the "train" section's defaults for `karpc train`.
 */
#include "parse_util.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* In KpLoss order (KP_LOSS_NONE first). */
static const char *const loss_names[] = {"none", "cross_entropy", "bce", "bce_logits", "mse"};
/* In KpOptim order (KP_OPTIM_NONE first). */
static const char *const optim_names[] = {"none", "sgd", "momentum", "adam"};

const char *kp_loss_name(KpLoss l)
{
    return (unsigned)l < sizeof loss_names / sizeof *loss_names ? loss_names[l] : "?";
}

const char *kp_optim_name(KpOptim o)
{
    return (unsigned)o < sizeof optim_names / sizeof *optim_names ? optim_names[o] : "?";
}

int kp_fe_parse_loss(KpFe *p, const cJSON *v)
{
    const cJSON *type = v;
    if (cJSON_IsObject(v)) {
        static const char *const keys[] = {"type"};
        if (kp_fe_check_keys(p, "loss", v, keys, 1) < 0)
            return -1;
        type = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!type)
            return kp_fe_fail(p, "loss", NULL, "missing 'type'");
    } else if (!cJSON_IsString(v)) {
        return kp_fe_fail(p, "loss", NULL, "must be a string or {\"type\": ...}, got %s",
                          kp_fe_show(p, v));
    }
    int idx;
    if (kp_fe_enum(p, "loss", cJSON_IsObject(v) ? "type" : NULL, "type", type, loss_names + 1, 4,
                   &idx) < 0)
        return -1;
    p->s->loss = (KpLoss)(idx + 1);
    return 0;
}

typedef struct OptimKey {
    const char *key;
    size_t field;           /* offset of the float in KpModelSpec */
    double def;             /* NAN: required */
    double lo, hi;          /* allowed range */
    bool lo_open, hi_open;  /* whether the bounds themselves are excluded */
} OptimKey;

#define F(x) offsetof(KpModelSpec, x)
static const OptimKey optim_keys[][4] = {
    [KP_OPTIM_SGD] = {{"lr", F(lr), NAN, 0, INFINITY, true, true},
                      {"weight_decay", F(weight_decay), 0, 0, INFINITY, false, true}},
    [KP_OPTIM_MOMENTUM] = {{"lr", F(lr), NAN, 0, INFINITY, true, true},
                           {"beta", F(beta), 0.9, 0, 1, false, true}},
    [KP_OPTIM_ADAM] = {{"lr", F(lr), NAN, 0, INFINITY, true, true},
                       {"beta1", F(beta1), 0.9, 0, 1, false, true},
                       {"beta2", F(beta2), 0.999, 0, 1, false, true},
                       {"eps", F(eps), 1e-8, 0, INFINITY, true, true}},
};
#undef F

static int parse_optim_key(KpFe *p, const OptimKey *k, const cJSON *v)
{
    double x = k->def;
    const char *path = kp_arena_printf(p->a, "optimizer.%s", k->key);
    if (v) {
        bool ok = kp_fe_number(v, &x) && fabs(x) <= 3.0e38;
        ok = ok && (k->lo_open ? x > k->lo : x >= k->lo);
        ok = ok && (k->hi_open ? x < k->hi : x <= k->hi);
        if (!ok && isinf(k->hi))
            return kp_fe_fail(p, path, NULL, "must be a %s finite number, got %s",
                              k->lo_open ? "positive" : "non-negative", kp_fe_show(p, v));
        if (!ok)
            return kp_fe_fail(p, path, NULL, "must be a number in [0, 1), got %s",
                              kp_fe_show(p, v));
    } else if (isnan(x)) {
        return kp_fe_fail(p, "optimizer", NULL, "missing '%s'", k->key);
    }
    *(float *)((char *)p->s + k->field) = (float)x;
    return 0;
}

int kp_fe_parse_optimizer(KpFe *p, const cJSON *v)
{
    if (!cJSON_IsObject(v))
        return kp_fe_fail(p, "optimizer", NULL,
                          "must be an object {\"type\": ..., \"lr\": ...}, got %s",
                          kp_fe_show(p, v));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (!type)
        return kp_fe_fail(p, "optimizer", NULL, "missing 'type'");
    int idx;
    if (kp_fe_enum(p, "optimizer", "type", "type", type, optim_names + 1, 3, &idx) < 0)
        return -1;
    KpOptim o = (KpOptim)(idx + 1);
    const char *keys[5] = {"type"};
    int n = 1;
    for (int k = 0; k < 4 && optim_keys[o][k].key; k++)
        keys[n++] = optim_keys[o][k].key;
    if (kp_fe_check_keys(p, "optimizer", v, keys, n) < 0)
        return -1;
    for (int k = 0; k < 4 && optim_keys[o][k].key; k++) {
        const OptimKey *ok = &optim_keys[o][k];
        if (parse_optim_key(p, ok, cJSON_GetObjectItemCaseSensitive(v, ok->key)) < 0)
            return -1;
    }
    p->s->optimizer = o;
    return 0;
}

/* A list of 1 to 16 finite numbers (std: positive), one per channel or
 * one for all. */
static int parse_stats(KpFe *p, const cJSON *obj, const char *key, bool positive, float *out,
                       int *n)
{
    const char *path = kp_arena_printf(p->a, "train.normalize.%s", key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return kp_fe_fail(p, "train.normalize", NULL, "missing '%s'", key);
    int len = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
    bool ok = len >= 1 && len <= 16;
    for (int i = 0; ok && i < len; i++) {
        double x;
        ok = kp_fe_number(cJSON_GetArrayItem(v, i), &x) && fabs(x) <= 3.0e38 &&
             (!positive || x > 0);
        out[i] = (float)x;
    }
    if (!ok)
        return kp_fe_fail(p, path, NULL, "must be a list of 1 to 16 %s numbers, got %s",
                          positive ? "positive" : "finite", kp_fe_show(p, v));
    const KpModelSpec *s = p->s;
    int64_t channels = s->input_rank == 3 ? s->input_shape[0] : 1;
    if (len != 1 && len != channels)
        return kp_fe_fail(p, path, NULL, "has %d values, expected 1 or one per input channel "
                          "(%lld)", len, (long long)channels);
    *n = len;
    return 0;
}

static int parse_normalize(KpFe *p, const cJSON *v)
{
    static const char *const keys[] = {"mean", "std"};
    KpTrainSpec *t = &p->s->train;
    if (!cJSON_IsObject(v))
        return kp_fe_fail(p, "train.normalize", NULL,
                          "must be an object {\"mean\": [...], \"std\": [...]}, got %s",
                          kp_fe_show(p, v));
    if (kp_fe_check_keys(p, "train.normalize", v, keys, 2) < 0 ||
        parse_stats(p, v, "mean", false, t->mean, &t->nmean) < 0 ||
        parse_stats(p, v, "std", true, t->std, &t->nstd) < 0)
        return -1;
    return 0;
}

static const char *const augment_types[] = {"hflip", "random_crop", "rotate", "noise"};
/* The one parameter of each augmentation, NULL for none. */
static const char *const augment_param[] = {NULL, "padding", "degrees", "std"};

static int parse_augment_one(KpFe *p, const char *at, const cJSON *v, KpAugmentSpec *out)
{
    if (!cJSON_IsObject(v))
        return kp_fe_fail(p, at, NULL, "must be an object {\"type\": ...}, got %s",
                          kp_fe_show(p, v));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(v, "type");
    int idx;
    if (!type)
        return kp_fe_fail(p, at, NULL, "missing 'type'");
    if (kp_fe_enum(p, at, "type", "augmentation", type, augment_types, 4, &idx) < 0)
        return -1;
    const char *keys[2] = {"type", augment_param[idx]};
    if (kp_fe_check_keys(p, at, v, keys, augment_param[idx] ? 2 : 1) < 0)
        return -1;
    out->type = augment_types[idx];
    const KpModelSpec *s = p->s;
    /* noise applies to any sample; the others move pixels of an image */
    if (s->input_rank != 3 && idx != 3)
        return kp_fe_fail(p, at, NULL, "'%s' needs an image input [C,H,W], the input has rank %d",
                          out->type, s->input_rank);
    if (!augment_param[idx])
        return 0;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(v, augment_param[idx]);
    if (!pv)
        return kp_fe_fail(p, at, NULL, "missing '%s'", augment_param[idx]);
    double x = 0;
    bool ok = kp_fe_number(pv, &x);
    if (idx == 1)
        return kp_fe_pos_int(p, at, "padding", pv, KP_FE_MAX_DIM, &out->padding);
    if (idx == 2 && !(ok && x > 0 && x <= 180))
        return kp_fe_fail(p, at, "degrees", "must be a number in (0, 180], got %s",
                          kp_fe_show(p, pv));
    if (idx == 3 && !(ok && x > 0 && x <= 3.0e38))
        return kp_fe_fail(p, at, "std", "must be a positive number, got %s", kp_fe_show(p, pv));
    if (idx == 2)
        out->degrees = (float)x;
    else
        out->std = (float)x;
    return 0;
}

int kp_fe_parse_train(KpFe *p, const cJSON *v)
{
    static const char *const keys[] = {"epochs", "normalize", "augment"};
    KpTrainSpec *t = &p->s->train;
    if (!cJSON_IsObject(v))
        return kp_fe_fail(p, "train", NULL, "must be an object, got %s", kp_fe_show(p, v));
    if (kp_fe_check_keys(p, "train", v, keys, 3) < 0)
        return -1;
    t->present = true;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "epochs");
    if (e && kp_fe_pos_int(p, "train.epochs", NULL, e, 1000000, &t->epochs) < 0)
        return -1;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(v, "normalize");
    if (norm && parse_normalize(p, norm) < 0)
        return -1;
    const cJSON *aug = cJSON_GetObjectItemCaseSensitive(v, "augment");
    if (!aug)
        return 0;
    if (!cJSON_IsArray(aug))
        return kp_fe_fail(p, "train.augment", NULL, "must be a list of {\"type\": ...}, got %s",
                          kp_fe_show(p, aug));
    t->naugment = cJSON_GetArraySize(aug);
    t->augment = kp_arena_alloc(p->a, (size_t)t->naugment * sizeof *t->augment);
    if (!t->augment)
        return kp_fe_fail(p, "train.augment", NULL, "out of memory");
    int i = 0;
    for (const cJSON *c = aug->child; c; c = c->next, i++) {
        const char *at = kp_arena_printf(p->a, "train.augment[%d]", i);
        if (parse_augment_one(p, at, c, &t->augment[i]) < 0)
            return -1;
    }
    return 0;
}
