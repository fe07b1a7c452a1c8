#include <math.h>

#include "fl_rng.h"
#include "fl_test.h"

static int words_equal(const uint32_t *a, const uint32_t *b) {
  return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Known-answer vectors of Philox4x32-10 (Salmon et al., SC'11). */
FL_TEST(philox_known_answers) {
  uint32_t out[4];
  fl_philox4x32(0, 0, 0, out);
  CHECK(words_equal(out, (uint32_t[]){0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  fl_philox4x32(UINT64_MAX, UINT64_MAX, UINT64_MAX, out);
  CHECK(words_equal(out, (uint32_t[]){0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  fl_philox4x32(0x299f31d0a4093822ull, 0x85a308d3243f6a88ull, 0x0370734413198a2eull, out);
  CHECK(words_equal(out, (uint32_t[]){0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

FL_TEST(normal_is_deterministic_and_standard) {
  double sum = 0, sq = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    double z = fl_rng_normal(7, (uint64_t)i);
    CHECK(z == fl_rng_normal(7, (uint64_t)i));
    CHECK(isfinite(z));
    sum += z;
    sq += z * z;
  }
  double mean = sum / n, var = sq / n - mean * mean;
  CHECK(fabs(mean) < 0.01);
  CHECK(fabs(var - 1) < 0.01);
  CHECK(fl_rng_normal(7, 0) != fl_rng_normal(8, 0));
}

FL_TEST(uniform_stays_in_unit_interval_on_the_grid) {
  for (int i = 0; i < 100000; i++) {
    double u = fl_rng_uniform(3, (uint64_t)i, 8);
    CHECK(u >= 0 && u < 1);
    CHECK(u * 256 == floor(u * 256));
  }
}
