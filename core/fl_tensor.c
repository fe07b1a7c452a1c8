#include "fl_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_cuda.h"
#include "fl_rng.h"

int fl_device_parse(const char *name, fl_device *out) {
  if (strcmp(name, "cpu") == 0) {
    *out = (fl_device){FL_CPU, 0};
    return 0;
  }
  if (strncmp(name, "cuda", 4) != 0) return -1;
  if (name[4] == '\0') {
    *out = (fl_device){FL_CUDA, 0};
    return 0;
  }
  if (name[4] != ':' || name[5] == '\0' || strlen(name + 5) > 4) return -1;
  int idx = 0;
  for (const char *p = name + 5; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    idx = idx * 10 + (*p - '0');
  }
  *out = (fl_device){FL_CUDA, idx};
  return 0;
}

void fl_device_format(fl_device d, char *buf, size_t n) {
  if (d.kind == FL_CPU) snprintf(buf, n, "cpu");
  else snprintf(buf, n, "cuda:%d", d.index);
}

/* Tensors stay below 2^62 bytes so that every byte count fits in size_t
 * and int64_t without overflow checks further down. */
#define FL_MAX_BYTES ((int64_t)1 << 62)

fl_status fl_shape_check(int ndim, const int64_t *shape, int64_t *numel, fl_err *e) {
  if (ndim < 0 || ndim > FL_MAX_DIMS)
    return fl_fail(e, FL_EINVAL, "a tensor has at most %d dimensions, got %d", FL_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return fl_fail(e, FL_EINVAL, "size of dimension %d is negative (%lld)", i + 1,
                     (long long)shape[i]);
    if (shape[i] > 0 && n > FL_MAX_BYTES / 8 / shape[i])
      return fl_fail(e, FL_EINVAL, "shape is too large (more than 2^59 elements)");
    n *= shape[i];
  }
  *numel = n;
  return FL_OK;
}

void fl_shape_format(char *buf, size_t n, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > FL_MAX_DIMS) ndim = 0;
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int d = 0; d < ndim && len < n; d++)
    len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

size_t fl_tensor_nbytes(const fl_tensor *t) {
  return (size_t)t->numel * fl_dtype_size(t->dtype);
}

fl_status fl_tensor_alloc(fl_tensor *t, fl_dtype dt, fl_device dev, int ndim,
                          const int64_t *shape, fl_err *e) {
  memset(t, 0, sizeof *t);
  int64_t numel;
  fl_status s = fl_shape_check(ndim, shape, &numel, e);
  if (s != FL_OK) return s;
  t->dtype = dt;
  t->device = dev;
  t->ndim = ndim;
  t->numel = numel;
  if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  size_t bytes = fl_tensor_nbytes(t);
  if (dev.kind == FL_CUDA) {
    s = fl_cuda_alloc(dev.index, bytes, &t->dptr, e);
    if (s != FL_OK) t->numel = 0;
    return s;
  }
  t->host = malloc(bytes ? bytes : 1);
  if (!t->host) {
    t->numel = 0;
    return fl_fail(e, FL_ENOMEM, "out of host memory allocating %zu bytes", bytes);
  }
  return FL_OK;
}

void fl_tensor_free(fl_tensor *t) {
  if (t->device.kind == FL_CUDA) fl_cuda_free(t->device.index, t->dptr);
  else free(t->host);
  t->host = NULL;
  t->dptr = 0;
}

fl_status fl_tensor_upload(fl_tensor *t, const void *src, fl_err *e) {
  size_t n = fl_tensor_nbytes(t);
  if (t->device.kind == FL_CUDA) return fl_cuda_to_device(t->device.index, t->dptr, src, n, e);
  if (n) memmove(t->host, src, n);
  return FL_OK;
}

fl_status fl_tensor_download(const fl_tensor *t, void *dst, fl_err *e) {
  size_t n = fl_tensor_nbytes(t);
  if (t->device.kind == FL_CUDA) return fl_cuda_to_host(t->device.index, dst, t->dptr, n, e);
  if (n) memmove(dst, t->host, n);
  return FL_OK;
}

/* A host buffer of t's size: its own storage on the CPU, for CUDA a new
 * buffer (released with release_host_view), filled with t's bytes if fetch. */
static fl_status host_view(const fl_tensor *t, void **buf, int fetch, fl_err *e) {
  if (t->device.kind == FL_CPU) {
    *buf = t->host;
    return FL_OK;
  }
  size_t n = fl_tensor_nbytes(t);
  *buf = malloc(n ? n : 1);
  if (!*buf) return fl_fail(e, FL_ENOMEM, "out of host memory staging %zu bytes", n);
  fl_status s = fetch ? fl_tensor_download(t, *buf, e) : FL_OK;
  if (s != FL_OK) {
    free(*buf);
    *buf = NULL;
  }
  return s;
}

static void release_host_view(const fl_tensor *t, void *buf) {
  if (t->device.kind != FL_CPU) free(buf);
}

fl_status fl_tensor_convert(fl_tensor *dst, const fl_tensor *src, fl_err *e) {
  if (dst->numel != src->numel || dst->ndim != src->ndim)
    return fl_fail(e, FL_EINVAL, "convert: shapes differ");
  fl_device dev = dst->device;
  if (dst->dtype == src->dtype && dev.kind == FL_CUDA && src->device.kind == FL_CUDA &&
      dev.index == src->device.index)
    return fl_cuda_device_copy(dev.index, dst->dptr, src->dptr, fl_tensor_nbytes(src), e);
  void *in = NULL, *out = NULL;
  fl_status s = host_view(src, &in, 1, e);
  if (s == FL_OK) s = host_view(dst, &out, 0, e);
  if (s == FL_OK) {
    fl_convert(out, dst->dtype, in, src->dtype, (size_t)src->numel);
    if (dev.kind == FL_CUDA) s = fl_tensor_upload(dst, out, e);
  }
  if (out) release_host_view(dst, out);
  if (in) release_host_view(src, in);
  return s;
}

typedef void (*fill_fn)(void *buf, fl_dtype dt, int64_t n, const void *arg);

/* Runs fill on a host buffer of t's layout and puts the result in t. */
static fl_status fill_with(fl_tensor *t, fill_fn fill, const void *arg, fl_err *e) {
  void *buf;
  fl_status s = host_view(t, &buf, 0, e);
  if (s != FL_OK) return s;
  fill(buf, t->dtype, t->numel, arg);
  if (t->device.kind == FL_CUDA) s = fl_tensor_upload(t, buf, e);
  release_host_view(t, buf);
  return s;
}

static void fill_const(void *buf, fl_dtype dt, int64_t n, const void *arg) {
  if (n == 0) return;
  fl_elem_set_f64(buf, dt, 0, *(const double *)arg);
  size_t sz = fl_dtype_size(dt);
  for (int64_t i = 1; i < n; i++) memcpy((char *)buf + (size_t)i * sz, buf, sz);
}

static void fill_arange(void *buf, fl_dtype dt, int64_t n, const void *arg) {
  (void)arg;
  for (int64_t i = 0; i < n; i++) fl_elem_set_i64(buf, dt, (size_t)i, i);
}

static void fill_randn(void *buf, fl_dtype dt, int64_t n, const void *arg) {
  uint64_t seed = *(const uint64_t *)arg;
  for (int64_t i = 0; i < n; i++) fl_elem_set_f64(buf, dt, (size_t)i, fl_rng_normal(seed, (uint64_t)i));
}

/* As many random bits as the dtype's significand holds, so that rounding
 * never lifts a sample to 1.0. */
static int significand_bits(fl_dtype dt) {
  return dt == FL_F32 ? 24 : dt == FL_F16 ? 11 : 8;
}

static void fill_rand(void *buf, fl_dtype dt, int64_t n, const void *arg) {
  uint64_t seed = *(const uint64_t *)arg;
  int bits = significand_bits(dt);
  for (int64_t i = 0; i < n; i++)
    fl_elem_set_f64(buf, dt, (size_t)i, fl_rng_uniform(seed, (uint64_t)i, bits));
}

/* On CUDA the element's bytes are repeated by the driver's memset, with no
 * host staging; 8-byte elements go through the host unless all zero. */
fl_status fl_tensor_fill(fl_tensor *t, double v, fl_err *e) {
  if (t->device.kind == FL_CPU) return fill_with(t, fill_const, &v, e);
  uint64_t elem = 0;
  fl_elem_set_f64(&elem, t->dtype, 0, v);
  size_t width = fl_dtype_size(t->dtype), count = (size_t)t->numel;
  if (width == 8) {
    if (elem != 0) return fill_with(t, fill_const, &v, e);
    width = 4;
    count *= 2;
  }
  uint32_t pattern = 0;
  memcpy(&pattern, &elem, width); /* little-endian: the low bytes are the element */
  return fl_cuda_memset(t->device.index, t->dptr, pattern, width, count, e);
}

fl_status fl_tensor_arange(fl_tensor *t, fl_err *e) {
  return fill_with(t, fill_arange, NULL, e);
}

static fl_status need_float(const fl_tensor *t, const char *what, fl_err *e) {
  if (fl_dtype_is_float(t->dtype)) return FL_OK;
  return fl_fail(e, FL_EINVAL, "%s needs a floating dtype (f32, f16 or bf16), got %s", what,
                 fl_dtype_name(t->dtype));
}

fl_status fl_tensor_randn(fl_tensor *t, uint64_t seed, fl_err *e) {
  fl_status s = need_float(t, "randn", e);
  return s != FL_OK ? s : fill_with(t, fill_randn, &seed, e);
}

fl_status fl_tensor_rand(fl_tensor *t, uint64_t seed, fl_err *e) {
  fl_status s = need_float(t, "rand", e);
  return s != FL_OK ? s : fill_with(t, fill_rand, &seed, e);
}

/* Copies element off into an 8-byte host scratch value. */
static fl_status fetch_elem(const fl_tensor *t, int64_t off, void *scratch, fl_err *e) {
  if (off < 0 || off >= t->numel)
    return fl_fail(e, FL_EINVAL, "element %lld is out of range (tensor has %lld)",
                   (long long)off + 1, (long long)t->numel);
  size_t sz = fl_dtype_size(t->dtype);
  if (t->device.kind == FL_CPU) {
    memcpy(scratch, (const char *)t->host + (size_t)off * sz, sz);
    return FL_OK;
  }
  return fl_cuda_to_host(t->device.index, scratch, t->dptr + (uint64_t)off * sz, sz, e);
}

fl_status fl_tensor_get_f64(const fl_tensor *t, int64_t off, double *v, fl_err *e) {
  uint64_t scratch = 0;
  fl_status s = fetch_elem(t, off, &scratch, e);
  if (s == FL_OK) *v = fl_elem_get_f64(&scratch, t->dtype, 0);
  return s;
}

fl_status fl_tensor_get_i64(const fl_tensor *t, int64_t off, int64_t *v, fl_err *e) {
  uint64_t scratch = 0;
  fl_status s = fetch_elem(t, off, &scratch, e);
  if (s == FL_OK) *v = fl_elem_get_i64(&scratch, t->dtype, 0);
  return s;
}

/* NaN in want is matched only by NaN; NaN or infinity in got elsewhere is an
 * infinite error; infinities in want do not count toward the scale. */
static void diff_elems(const void *g, fl_dtype gd, const void *w, fl_dtype wd, size_t n,
                       double *err, double *scale) {
  for (size_t i = 0; i < n; i++) {
    double x = fl_elem_get_f64(g, gd, i), y = fl_elem_get_f64(w, wd, i);
    double d = y != y ? (x == x ? INFINITY : 0) : x != x ? INFINITY : x == y ? 0 : fabs(x - y);
    if (d > *err) *err = d;
    if (y == y && fabs(y) < INFINITY && fabs(y) > *scale) *scale = fabs(y);
  }
}

fl_status fl_tensor_max_diff(const fl_tensor *got, const fl_tensor *want, double *err,
                             double *scale, fl_err *e) {
  if (got->ndim != want->ndim || got->numel != want->numel)
    return fl_fail(e, FL_EINVAL, "max_diff: shapes differ");
  for (int d = 0; d < got->ndim; d++)
    if (got->shape[d] != want->shape[d]) return fl_fail(e, FL_EINVAL, "max_diff: shapes differ");
  if (!fl_dtype_is_float(got->dtype) || !fl_dtype_is_float(want->dtype))
    return fl_fail(e, FL_EINVAL, "max_diff: float tensors only");
  void *g = NULL, *w = NULL;
  fl_status s = host_view(got, &g, 1, e);
  if (s == FL_OK) s = host_view(want, &w, 1, e);
  *err = 0, *scale = 0;
  if (s == FL_OK) diff_elems(g, got->dtype, w, want->dtype, (size_t)got->numel, err, scale);
  if (w) release_host_view(want, w);
  if (g) release_host_view(got, g);
  return s;
}
