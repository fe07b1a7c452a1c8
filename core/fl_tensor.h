/* A dense, contiguous, C-ordered tensor in host or CUDA device memory. */
#ifndef FL_TENSOR_H
#define FL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "fl_dtype.h"
#include "fl_error.h"

#define FL_MAX_DIMS 8

typedef enum fl_device_kind { FL_CPU, FL_CUDA } fl_device_kind;

typedef struct fl_device {
  fl_device_kind kind;
  int index; /* CUDA ordinal; 0 for the CPU */
} fl_device;

typedef struct fl_tensor {
  fl_dtype dtype;
  fl_device device;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t numel;
  void *host;    /* storage when device.kind == FL_CPU */
  uint64_t dptr; /* storage when device.kind == FL_CUDA (a CUdeviceptr) */
} fl_tensor;

/* "cpu", "cuda", "cuda:N". Returns 0 on success. */
int fl_device_parse(const char *name, fl_device *out);
/* Writes "cpu" or "cuda:N" into buf. */
void fl_device_format(fl_device d, char *buf, size_t n);

/* Checks ndim and sizes (each >= 0, product representable) and computes numel. */
fl_status fl_shape_check(int ndim, const int64_t *shape, int64_t *numel, fl_err *e);
/* Writes "[2,4,128,64]" into buf (ndim clamped to 0..FL_MAX_DIMS). */
void fl_shape_format(char *buf, size_t n, int ndim, const int64_t *shape);

/* Allocates uninitialised storage. On failure *t holds nothing to free. */
fl_status fl_tensor_alloc(fl_tensor *t, fl_dtype dt, fl_device dev, int ndim,
                          const int64_t *shape, fl_err *e);
/* Frees storage; safe to call twice. */
void fl_tensor_free(fl_tensor *t);
size_t fl_tensor_nbytes(const fl_tensor *t);

/* Copies a host buffer of t's dtype and size into t, wherever t lives. */
fl_status fl_tensor_upload(fl_tensor *t, const void *src, fl_err *e);
/* Copies t's contents into a host buffer of fl_tensor_nbytes(t) bytes. */
fl_status fl_tensor_download(const fl_tensor *t, void *dst, fl_err *e);
/* Copies src's values into dst, an allocated tensor of the same shape on
 * any device and of any dtype, converting them to dst's dtype. */
fl_status fl_tensor_convert(fl_tensor *dst, const fl_tensor *src, fl_err *e);

/* Initialisers: each writes every element. */
fl_status fl_tensor_fill(fl_tensor *t, double v, fl_err *e);
fl_status fl_tensor_arange(fl_tensor *t, fl_err *e);
fl_status fl_tensor_randn(fl_tensor *t, uint64_t seed, fl_err *e);
fl_status fl_tensor_rand(fl_tensor *t, uint64_t seed, fl_err *e);

/* Element at a flat C-order offset, read as double or int64. */
fl_status fl_tensor_get_f64(const fl_tensor *t, int64_t off, double *v, fl_err *e);
fl_status fl_tensor_get_i64(const fl_tensor *t, int64_t off, int64_t *v, fl_err *e);

/* max |got - want| (*err) and max |want| over finite wants (*scale), for
 * tensors of one shape on any devices: NaN in want is matched only by NaN,
 * NaN in got elsewhere is an infinite error. */
fl_status fl_tensor_max_diff(const fl_tensor *got, const fl_tensor *want, double *err,
                             double *scale, fl_err *e);

#endif
