/*
 * checkpoint.c — the table of a model's checkpoint tensors (checkpoint.h).
 */
#include "checkpoint.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PyTorch's names for the optimizer state, by the number of slots. */
static const char *slot_name(int slots, int slot)
{
    if (slots == 1)
        return "momentum_buffer";
    return slot == 0 ? "exp_avg" : "exp_avg_sq";
}

static char *dup_name(const char *prefix, const char *name, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(name) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", prefix, name, suffix);
    return s;
}

int kp_rt_ckpt_build(const KarpModelDesc *d, KpCkpt *c)
{
    memset(c, 0, sizeof *c);
    int cap = (int)d->nparams * (1 + d->opt_slots) + 1;
    c->t = calloc((size_t)cap, sizeof *c->t);
    if (!c->t)
        return KARP_ENOMEM;
    for (uint32_t i = 0; i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        KpCkptTensor *t = &c->t[c->count++];
        t->name = dup_name("", p->name, "");
        t->group = KP_CKPT_PARAM;
        t->rank = p->rank;
        t->shape = p->shape;
        t->bytes = p->size * (int64_t)sizeof(float);
        t->offset = p->offset;
        if (!t->name)
            goto nomem;
    }
    for (uint32_t i = 0; i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        if (p->offset >= d->trainable_floats)
            continue;
        for (int s = 0; s < d->opt_slots; s++) {
            char suffix[32];
            snprintf(suffix, sizeof suffix, ".%s", slot_name(d->opt_slots, s));
            KpCkptTensor *t = &c->t[c->count++];
            t->name = dup_name("optimizer.", p->name, suffix);
            t->group = KP_CKPT_OPT;
            t->rank = p->rank;
            t->shape = p->shape;
            t->bytes = p->size * (int64_t)sizeof(float);
            t->offset = (int64_t)s * d->param_floats + p->offset;
            c->nopt++;
            if (!t->name)
                goto nomem;
        }
    }
    if (d->apply) {
        KpCkptTensor *t = &c->t[c->count++];
        t->name = dup_name("", KP_CKPT_STEP_NAME, "");
        t->group = KP_CKPT_STEP;
        t->bytes = (int64_t)sizeof(int64_t);
        c->has_step = 1;
        if (!t->name)
            goto nomem;
    }
    return 0;
nomem:
    kp_rt_ckpt_free(c);
    return KARP_ENOMEM;
}

void kp_rt_ckpt_free(KpCkpt *c)
{
    for (int i = 0; i < c->count; i++)
        free(c->t[i].name);
    free(c->t);
    memset(c, 0, sizeof *c);
}

/* Table-driven, one byte at a time: a checkpoint of 100 MB takes ~0.2 s,
 * small next to writing it. */
static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t kp_rt_crc32c(uint32_t crc, const void *p, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const unsigned char *b = p;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

void kp_rt_ckpt_signature(const KarpModelDesc *d, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < d->nparams; i++) {
        const KarpParamDesc *p = &d->params[i];
        char dims[32];
        h = fnv1a(h, p->name);
        h = fnv1a(h, ":F32:[");
        for (int k = 0; k < p->rank; k++) {
            snprintf(dims, sizeof dims, "%s%lld", k ? "," : "", (long long)p->shape[k]);
            h = fnv1a(h, dims);
        }
        h = fnv1a(h, "]\n");
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
