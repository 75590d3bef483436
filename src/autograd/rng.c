/* rng.c - counter-based random numbers (splitmix64-style finaliser). */
#include "vt_autograd.h"

#include <math.h>

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t vt_hash64(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t z = mix64(seed + 0x9e3779b97f4a7c15ULL);
    z = mix64(z ^ (stream + 0x632be59bd9b4e019ULL));
    return mix64(z ^ (i * 0x9e3779b97f4a7c15ULL + 0xd1b54a32d192ed03ULL));
}

float vt_rng_uniform(vt_rng *r)
{
    return vt_hash_uniform(r->seed, 0xffffffffULL, r->counter++);
}

/* Box-Muller; uses two draws and discards the second variate so that the
 * state stays a single counter. */
float vt_rng_normal(vt_rng *r)
{
    double u1 = ((double)(vt_hash64(r->seed, 0xffffffffULL, r->counter++) >> 11) + 0.5) *
                (1.0 / 9007199254740992.0);
    double u2 = (double)(vt_hash64(r->seed, 0xffffffffULL, r->counter++) >> 11) *
                (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t vt_rng_below(vt_rng *r, uint32_t n)
{
    VT_ASSERT(n > 0, "vt_rng_below(0)");
    /* 64-bit multiply-shift: bias below 2^-32, fine for shuffles. */
    uint64_t x = vt_hash64(r->seed, 0xffffffffULL, r->counter++) >> 32;
    return (uint32_t)((x * n) >> 32);
}
