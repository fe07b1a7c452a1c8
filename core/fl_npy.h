/* NumPy .npy files (format versions 1.0, 2.0 and 3.0), read and written as
 * C-ordered little-endian tensors. */
#ifndef FL_NPY_H
#define FL_NPY_H

#include "fl_tensor.h"

typedef struct fl_npy_load_opts {
  /* When FL_BF16, a '<u2' array is read as raw bfloat16 bits. Otherwise
   * ignored (pass FL_DTYPE_COUNT). */
  fl_dtype raw_as;
} fl_npy_load_opts;

/* Reads path into a new host tensor. Float64 arrays become f32 (rounded to
 * nearest even); 8- and 16-bit integers become i32, uint32 becomes i64;
 * big-endian and Fortran-ordered arrays are converted. */
fl_status fl_npy_load(const char *path, const fl_npy_load_opts *o, fl_tensor *out, fl_err *e);

/* Writes t (from any device). bf16 is written as '<f4' unless raw_bf16, then
 * as its raw bits in '<u2'. */
fl_status fl_npy_save(const char *path, const fl_tensor *t, int raw_bf16, fl_err *e);

#endif
