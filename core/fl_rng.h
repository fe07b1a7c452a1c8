/* Counter-based random numbers: element i of a tensor depends only on the
 * seed and i, so any device, any order and any tiling give the same values. */
#ifndef FL_RNG_H
#define FL_RNG_H

#include <stdint.h>

/* Philox4x32-10: four 32-bit words from a 64-bit key and a 128-bit counter. */
void fl_philox4x32(uint64_t key, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]);

/* Standard normal sample number i of the stream for seed (Box-Muller). */
double fl_rng_normal(uint64_t seed, uint64_t i);
/* Uniform sample in [0, 1) with `bits` random bits (1..53): k / 2^bits. */
double fl_rng_uniform(uint64_t seed, uint64_t i, int bits);

#endif
