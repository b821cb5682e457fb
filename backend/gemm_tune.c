/*
 * gemm_tune.c — KARPC_GEMM_PLAN: choices of the GEMM plan forced from the
 * environment, for measuring one blocking against another
 * (`bench/gemm_bench --ab`, docs/kernels-gemm.md).  A forced choice
 * changes the speed only: every element of C stays one fma chain over k
 * in ascending order (gemm.h), so the results are the same bits.
 *
 *   KARPC_GEMM_PLAN="kc=256,pack_a=1"
 *
 *   mr=N        rows of the main micro-tile, 1..16 (at most the rows of C)
 *   nv=N        its vectors, 1..8; nv times the vector width a multiple of 16
 *   kc=N        the k block, at most; 1..65536
 *   nc=N        the column block, at most (rounded up to the tile's width)
 *   pack_a=0|1  pack A or read it in place, where A is a strided view
 *               (convolution's im2col is always packed)
 *   grid=RxC    row chunks x column chunks of a GEMM the plan runs on
 *               threads (C is 1 where an item must hold whole rows of C)
 *   show        each plan printed to standard error
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_internal.h"

/* A whole number from lo to hi at s, ending the string or at stop: what
 * follows it in *rest. */
static bool number(const char *s, int64_t lo, int64_t hi, char stop, int64_t *out, const char **rest)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || (*end != '\0' && *end != stop) || v < lo || v > hi)
        return false;
    *out = v;
    *rest = end;
    return true;
}

/* One key=value (or "show") into t. */
static int choice(KpGemmTune *t, char *tok, KpDiag *d)
{
    if (strcmp(tok, "show") == 0) {
        t->show = true;
        return 0;
    }
    const struct {
        const char *key;
        int64_t lo, hi, *dst;
    } keys[] = {
        {"mr", 1, KP_GEMM_MAX_MR, &t->mr}, {"nv", 1, KP_GEMM_MAX_NV, &t->nv},
        {"kc", 1, 1 << 16, &t->kc},        {"nc", 1, 1 << 24, &t->nc},
        {"pack_a", 0, 1, &t->pack_a},
    };
    char *eq = strchr(tok, '=');
    size_t klen = eq ? (size_t)(eq - tok) : strlen(tok);
    const char *val = eq ? eq + 1 : "", *rest;
    if (klen == 4 && strncmp(tok, "grid", 4) == 0) {
        if (number(val, 1, 64, 'x', &t->rows, &rest) && *rest == 'x' &&
            number(rest + 1, 1, 64, '\0', &t->cols, &rest))
            return 0;
        return kp_error(d, "KARPC_GEMM_PLAN: \"%s\": expected grid=RxC, R and C from 1 to 64", tok);
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strlen(keys[i].key) != klen || strncmp(tok, keys[i].key, klen) != 0)
            continue;
        if (number(val, keys[i].lo, keys[i].hi, '\0', keys[i].dst, &rest))
            return 0;
        return kp_error(d, "KARPC_GEMM_PLAN: \"%s\": expected %s=N, N from %lld to %lld", tok,
                        keys[i].key, (long long)keys[i].lo, (long long)keys[i].hi);
    }
    return kp_error(d, "KARPC_GEMM_PLAN: unknown choice \"%s\" (expected mr, nv, kc, nc, pack_a, "
                    "grid=, or show)", tok);
}

int kp_gemm_tune(KpGemmTune *t, KpDiag *d)
{
    *t = (KpGemmTune){.pack_a = -1};
    const char *env = getenv("KARPC_GEMM_PLAN");
    if (!env || !*env)
        return 0;
    char buf[256];
    if (strlen(env) >= sizeof buf)
        return kp_error(d, "KARPC_GEMM_PLAN: %zu characters, expected at most %zu", strlen(env),
                        sizeof buf - 1);
    strcpy(buf, env);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (choice(t, tok, d) < 0)
            return -1;
    return 0;
}
