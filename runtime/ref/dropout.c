/*
 * dropout.c — dropout's mask, bit for bit as ref.h defines it (the
 * generated code computes the same numbers): element i keeps with
 * probability 1-rate and is then scaled by 1/(1-rate) (inverted dropout),
 * from a counter-based generator, so any element can be computed alone
 * and in parallel.  Dropout itself is mul(x, mask); its gradient is
 * mul(dy, mask).
 */
#include "ref.h"

static uint64_t splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* -> mask (count): 0 or 1/(1-rate); rate in [0,1) */
void kp_ref_dropout_mask(float *mask, int64_t count, uint64_t seed, float rate)
{
    float keep = 1.0f / (1.0f - rate);
    for (int64_t i = 0; i < count; i++) {
        uint64_t u = splitmix64(seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull));
        float r = (float)(u >> 40) * 0x1p-24f;
        mask[i] = r >= rate ? keep : 0.0f;
    }
}
