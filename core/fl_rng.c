#include "fl_rng.h"

#include <math.h>

static void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

void fl_philox4x32(uint64_t key, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]) {
  uint32_t c[4] = {(uint32_t)ctr_lo, (uint32_t)(ctr_lo >> 32), (uint32_t)ctr_hi,
                   (uint32_t)(ctr_hi >> 32)};
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
  for (int r = 0; r < 10; r++) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, c[0], &hi0, &lo0);
    mulhilo(0xCD9E8D57u, c[2], &hi1, &lo1);
    c[0] = hi1 ^ c[1] ^ k0;
    c[1] = lo1;
    c[2] = hi0 ^ c[3] ^ k1;
    c[3] = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int i = 0; i < 4; i++) out[i] = c[i];
}

static uint64_t join53(uint32_t hi, uint32_t lo) {
  return ((uint64_t)hi << 21) ^ (lo >> 11);
}

/* Samples 2k and 2k+1 share one Box-Muller pair: cos and sin of one angle. */
double fl_rng_normal(uint64_t seed, uint64_t i) {
  uint32_t w[4];
  fl_philox4x32(seed, i >> 1, 0, w);
  double u1 = (double)(join53(w[0], w[1]) + 1) * 0x1p-53; /* (0, 1]: log is finite */
  double u2 = (double)join53(w[2], w[3]) * 0x1p-53;
  double r = sqrt(-2.0 * log(u1));
  double a = 6.283185307179586476925286766559 * u2;
  return (i & 1) ? r * sin(a) : r * cos(a);
}

double fl_rng_uniform(uint64_t seed, uint64_t i, int bits) {
  uint32_t w[4];
  fl_philox4x32(seed, i, 1, w);
  uint64_t r = ((uint64_t)w[0] << 32) | w[1];
  return (double)(r >> (64 - bits)) * ldexp(1.0, -bits);
}
