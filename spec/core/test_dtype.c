#include <math.h>
#include <string.h>

#include "fl_dtype.h"
#include "fl_test.h"

static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* The nearest of two neighbours a < b to x, ties to the one with an even
 * last bit: the reference for round-to-nearest-even. */
static uint16_t nearest(double x, uint16_t a_bits, double a, uint16_t b_bits, double b) {
  if (x - a < b - x) return a_bits;
  if (x - a > b - x) return b_bits;
  return (a_bits & 1) ? b_bits : a_bits;
}

FL_TEST(f16_round_trips_every_value) {
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = fl_f16_to_f32((uint16_t)h);
    if (isnan(f)) CHECK((fl_f32_to_f16(f) & 0x7c00) == 0x7c00 && (fl_f32_to_f16(f) & 0x3ff));
    else CHECK(fl_f32_to_f16(f) == h);
  }
}

FL_TEST(bf16_round_trips_every_value) {
  for (uint32_t b = 0; b < 0x10000; b++) {
    float f = fl_bf16_to_f32((uint16_t)b);
    if (isnan(f)) CHECK(isnan(fl_bf16_to_f32(fl_f32_to_bf16(f))));
    else CHECK(fl_f32_to_bf16(f) == b);
  }
}

/* Every float between consecutive positive halves (sampled densely) rounds
 * to the nearer one, ties to even. */
FL_TEST(f16_rounds_to_nearest_even) {
  for (uint16_t h = 0; h < 0x7bff; h += 7) {
    double a = fl_f16_to_f32(h), b = fl_f16_to_f32((uint16_t)(h + 1));
    for (int k = 0; k <= 16; k++) {
      double x = a + (b - a) * k / 16;
      CHECK(fl_f32_to_f16((float)x) == nearest(x, h, a, (uint16_t)(h + 1), b));
      CHECK(fl_f64_to_f16(x) == nearest(x, h, a, (uint16_t)(h + 1), b));
    }
  }
  CHECK(fl_f32_to_f16(65504.0f) == 0x7bff);
  CHECK(fl_f32_to_f16(65519.0f) == 0x7bff);
  CHECK(fl_f32_to_f16(65520.0f) == 0x7c00);
  CHECK(fl_f32_to_f16(-1e10f) == 0xfc00);
  CHECK(fl_f32_to_f16(0x1p-25f) == 0);          /* halfway to the smallest subnormal: even */
  CHECK(fl_f32_to_f16(0x1.000002p-25f) == 1);
  CHECK(fl_f32_to_f16(-0.0f) == 0x8000);
}

FL_TEST(bf16_rounds_to_nearest_even) {
  for (uint32_t b = 0; b < 0x7f7f; b += 13) {
    double lo = fl_bf16_to_f32((uint16_t)b), hi = fl_bf16_to_f32((uint16_t)(b + 1));
    for (int k = 0; k <= 16; k++) {
      double x = lo + (hi - lo) * k / 16;
      uint16_t want = nearest(x, (uint16_t)b, lo, (uint16_t)(b + 1), hi);
      CHECK(fl_f32_to_bf16((float)x) == want);
      CHECK(fl_f64_to_bf16(x) == want);
    }
  }
  CHECK(fl_f32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80); /* FLT_MAX rounds up to inf */
  CHECK(fl_f32_to_bf16(INFINITY) == 0x7f80);
  CHECK(isnan(fl_bf16_to_f32(fl_f32_to_bf16(NAN))));
}

/* Rounding a double straight to half must not round twice through float:
 * 1 + 2^-11 + 2^-40 lies just above the halfway point between two halves. */
FL_TEST(f64_narrowing_rounds_once) {
  double x = 1.0 + 0x1p-11 + 0x1p-40;
  CHECK(fl_f64_to_f16(x) == 0x3c01);
  CHECK(fl_f32_to_f16((float)x) == 0x3c00); /* float already lost the 2^-40 */
  double y = 1.0 + 0x1p-8 + 0x1p-40;
  CHECK(fl_f64_to_bf16(y) == 0x3f81);
}

FL_TEST(integer_conversions_saturate_and_truncate) {
  int32_t i32[4];
  fl_elem_set_f64(i32, FL_I32, 0, 3.9);
  fl_elem_set_f64(i32, FL_I32, 1, -3.9);
  fl_elem_set_f64(i32, FL_I32, 2, 1e20);
  fl_elem_set_f64(i32, FL_I32, 3, NAN);
  CHECK(i32[0] == 3 && i32[1] == -3 && i32[2] == INT32_MAX && i32[3] == 0);
  int64_t big = (int64_t)1 << 60;
  int64_t i64[1];
  fl_elem_set_i64(i64, FL_I64, 0, big + 1);
  CHECK(fl_elem_get_i64(i64, FL_I64, 0) == big + 1);
  uint8_t b[2];
  fl_elem_set_f64(b, FL_BOOL, 0, 0.5);
  fl_elem_set_f64(b, FL_BOOL, 1, 0.0);
  CHECK(b[0] == 1 && b[1] == 0);
}

FL_TEST(convert_between_all_dtypes) {
  double vals[] = {0, 1, -2, 3, 100, -7};
  for (int s = 0; s < FL_DTYPE_COUNT; s++) {
    for (int d = 0; d < FL_DTYPE_COUNT; d++) {
      int64_t src[6], dst[6];
      for (int i = 0; i < 6; i++) fl_elem_set_f64(src, (fl_dtype)s, (size_t)i, vals[i]);
      fl_convert(dst, (fl_dtype)d, src, (fl_dtype)s, 6);
      for (int i = 0; i < 6; i++) {
        double want = fl_elem_get_f64(src, (fl_dtype)s, (size_t)i);
        if (d == FL_BOOL) want = want != 0;
        CHECK(fl_elem_get_f64(dst, (fl_dtype)d, (size_t)i) == want);
      }
    }
  }
}

FL_TEST(dtype_names_parse_back) {
  for (int d = 0; d < FL_DTYPE_COUNT; d++) {
    fl_dtype out;
    CHECK(fl_dtype_parse(fl_dtype_name((fl_dtype)d), &out) == 0 && out == (fl_dtype)d);
  }
  fl_dtype out;
  CHECK(fl_dtype_parse("float32", &out) == -1);
}
