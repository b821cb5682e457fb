/*
 * rng.c — xoshiro256** (Blackman and Vigna), seeded through splitmix64 so
 * that any 64-bit seed, 0 included, gives a well-mixed nonzero state.
 */
#include <math.h>

#include "model.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void kp_rng_seed(KpRng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t kp_rng_next(KpRng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), n >= 1, without modulo bias. */
uint64_t kp_rng_below(KpRng *r, uint64_t n)
{
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t x = kp_rng_next(r);
        if (x >= threshold)
            return x % n;
    }
}

/* The top 24 bits: every float in [0,1) a multiple of 2^-24, exactly. */
float kp_rng_uniform(KpRng *r)
{
    return (float)(kp_rng_next(r) >> 40) * 0x1.0p-24f;
}

/* Box-Muller; one draw per call (the state has no room for a spare). */
float kp_rng_normal(KpRng *r)
{
    double u1 = 1.0 - (double)kp_rng_uniform(r); /* (0,1]: log is finite */
    double u2 = (double)kp_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
