// A small seeded pseudo-random generator (xoshiro256**), so that jitter and
// simulations replay exactly from a seed. Not for secrets.
#ifndef SWD_RUNTIME_RNG_H
#define SWD_RUNTIME_RNG_H

#include <stdint.h>

typedef struct swd_rng {
    uint64_t s[4];
} swd_rng_t;

/// Seeds the generator; every seed, 0 included, gives a usable state.
void swd_rng_seed(swd_rng_t *r, uint64_t seed);
uint64_t swd_rng_u64(swd_rng_t *r);
/// Uniform in [0, 1).
double swd_rng_double(swd_rng_t *r);
/// Uniform in [0, n); 0 when n is 0.
uint64_t swd_rng_below(swd_rng_t *r, uint64_t n);
/// Standard normal deviate (Box-Muller).
double swd_rng_normal(swd_rng_t *r);

#endif
