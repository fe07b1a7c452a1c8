#include "fl_dtype.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtype_table[FL_DTYPE_COUNT] = {
  [FL_F32] = {"f32", 4}, [FL_F16] = {"f16", 2}, [FL_BF16] = {"bf16", 2},
  [FL_I32] = {"i32", 4}, [FL_I64] = {"i64", 8}, [FL_BOOL] = {"bool", 1},
};

size_t fl_dtype_size(fl_dtype d) { return dtype_table[d].size; }
const char *fl_dtype_name(fl_dtype d) { return dtype_table[d].name; }
int fl_dtype_is_float(fl_dtype d) { return d == FL_F32 || d == FL_F16 || d == FL_BF16; }

int fl_dtype_parse(const char *name, fl_dtype *out) {
  for (int d = 0; d < FL_DTYPE_COUNT; d++) {
    if (strcmp(name, dtype_table[d].name) == 0) {
      *out = (fl_dtype)d;
      return 0;
    }
  }
  return -1;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t fl_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float fl_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t fl_f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x47800000u) /* >= 2^16: infinity, or NaN kept quiet */
    return sign | (u > 0x7f800000u ? 0x7e00 : 0x7c00);
  if (u < 0x38800000u) {
    /* Below the smallest normal half: adding 0.5 lets the FPU's own
     * round-to-nearest-even place the bits of the subnormal result. */
    float t = bits_f32(u) + 0.5f;
    return sign | (uint16_t)(f32_bits(t) - 0x3f000000u);
  }
  uint32_t odd = (u >> 13) & 1u;
  u += 0xc8000fffu + odd; /* rebias exponent 127 -> 15, round half to even */
  return sign | (uint16_t)(u >> 13);
}

float fl_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round-to-odd narrowing to float keeps enough information that a second
 * round-to-nearest-even step to a format of at most 22 bits is exact, so
 * double -> half/bf16 rounds once, correctly. */
static float f64_to_f32_odd(double x) {
  float f = (float)x;
  if (isnan(x) || isinf(f) || (double)f == x) return f;
  if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f);
  return bits_f32(f32_bits(f) | 1u);
}

uint16_t fl_f64_to_f16(double x) { return fl_f32_to_f16(f64_to_f32_odd(x)); }
uint16_t fl_f64_to_bf16(double x) { return fl_f32_to_bf16(f64_to_f32_odd(x)); }

static int64_t f64_to_i64_sat(double v, int64_t lo, int64_t hi) {
  if (isnan(v)) return 0;
  if (v <= (double)lo) return lo;
  if (v >= (double)hi) return hi;
  return (int64_t)v;
}

double fl_elem_get_f64(const void *buf, fl_dtype d, size_t i) {
  switch (d) {
  case FL_F32: return ((const float *)buf)[i];
  case FL_F16: return fl_f16_to_f32(((const uint16_t *)buf)[i]);
  case FL_BF16: return fl_bf16_to_f32(((const uint16_t *)buf)[i]);
  case FL_I32: return ((const int32_t *)buf)[i];
  case FL_I64: return (double)((const int64_t *)buf)[i];
  case FL_BOOL: return ((const uint8_t *)buf)[i] != 0;
  default: return 0;
  }
}

int64_t fl_elem_get_i64(const void *buf, fl_dtype d, size_t i) {
  switch (d) {
  case FL_I32: return ((const int32_t *)buf)[i];
  case FL_I64: return ((const int64_t *)buf)[i];
  case FL_BOOL: return ((const uint8_t *)buf)[i] != 0;
  default: return f64_to_i64_sat(fl_elem_get_f64(buf, d, i), INT64_MIN, INT64_MAX);
  }
}

void fl_elem_set_f64(void *buf, fl_dtype d, size_t i, double v) {
  switch (d) {
  case FL_F32: ((float *)buf)[i] = (float)v; break;
  case FL_F16: ((uint16_t *)buf)[i] = fl_f64_to_f16(v); break;
  case FL_BF16: ((uint16_t *)buf)[i] = fl_f64_to_bf16(v); break;
  case FL_I32: ((int32_t *)buf)[i] = (int32_t)f64_to_i64_sat(v, INT32_MIN, INT32_MAX); break;
  case FL_I64: ((int64_t *)buf)[i] = f64_to_i64_sat(v, INT64_MIN, INT64_MAX); break;
  case FL_BOOL: ((uint8_t *)buf)[i] = v != 0; break;
  default: break;
  }
}

void fl_elem_set_i64(void *buf, fl_dtype d, size_t i, int64_t v) {
  switch (d) {
  case FL_I32:
    ((int32_t *)buf)[i] = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
    break;
  case FL_I64: ((int64_t *)buf)[i] = v; break;
  case FL_BOOL: ((uint8_t *)buf)[i] = v != 0; break;
  default: fl_elem_set_f64(buf, d, i, (double)v); break;
  }
}

void fl_convert(void *dst, fl_dtype dd, const void *src, fl_dtype sd, size_t n) {
  if (dd == sd) {
    memcpy(dst, src, n * fl_dtype_size(sd));
  } else if (fl_dtype_is_float(sd)) {
    for (size_t i = 0; i < n; i++) fl_elem_set_f64(dst, dd, i, fl_elem_get_f64(src, sd, i));
  } else {
    for (size_t i = 0; i < n; i++) fl_elem_set_i64(dst, dd, i, fl_elem_get_i64(src, sd, i));
  }
}
