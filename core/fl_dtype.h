/* Element types, their sizes and names, and exact conversions between them. */
#ifndef FL_DTYPE_H
#define FL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum fl_dtype {
  FL_F32, FL_F16, FL_BF16, FL_I32, FL_I64, FL_BOOL,
  FL_DTYPE_COUNT
} fl_dtype;

size_t fl_dtype_size(fl_dtype d);
const char *fl_dtype_name(fl_dtype d);
/* Returns 0 and sets *out when name is a dtype name, -1 otherwise. */
int fl_dtype_parse(const char *name, fl_dtype *out);
int fl_dtype_is_float(fl_dtype d);

/* Round to nearest even; NaN stays NaN, overflow goes to infinity. */
uint16_t fl_f32_to_f16(float f);
uint16_t fl_f32_to_bf16(float f);
uint16_t fl_f64_to_f16(double x);
uint16_t fl_f64_to_bf16(double x);
float fl_f16_to_f32(uint16_t h);
float fl_bf16_to_f32(uint16_t b);

/* Element i of a host buffer, read as double or int64, written from one.
 * Float to integer truncates toward zero and saturates; NaN becomes 0. */
double fl_elem_get_f64(const void *buf, fl_dtype d, size_t i);
int64_t fl_elem_get_i64(const void *buf, fl_dtype d, size_t i);
void fl_elem_set_f64(void *buf, fl_dtype d, size_t i, double v);
void fl_elem_set_i64(void *buf, fl_dtype d, size_t i, int64_t v);

/* Converts n elements between host buffers of any two dtypes. */
void fl_convert(void *dst, fl_dtype dd, const void *src, fl_dtype sd, size_t n);

#endif
