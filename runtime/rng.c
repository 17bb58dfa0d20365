#include <math.h>

#include "runtime/rng.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void swd_rng_seed(swd_rng_t *r, uint64_t seed) {
    // splitmix64 spreads any seed over the state, so it is never all zero.
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&seed);
    }
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t swd_rng_u64(swd_rng_t *r) {
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

double swd_rng_double(swd_rng_t *r) {
    return (double)(swd_rng_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t swd_rng_below(swd_rng_t *r, uint64_t n) {
    if (n == 0) {
        return 0;
    }
    // Rejection keeps the result unbiased for any n.
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = swd_rng_u64(r);
    } while (x >= limit);
    return x % n;
}

double swd_rng_normal(swd_rng_t *r) {
    double u1 = swd_rng_double(r);
    double u2 = swd_rng_double(r);
    if (u1 < 1e-300) {
        u1 = 1e-300;
    }
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}
