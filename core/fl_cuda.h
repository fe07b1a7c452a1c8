/* The slice of the CUDA driver API Flashlight uses, opened with dlopen at
 * run time so that the library builds and runs where there is no CUDA. */
#ifndef FL_CUDA_H
#define FL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "fl_error.h"

typedef struct fl_cuda_info {
  char name[256];
  int major, minor;          /* compute capability */
  int multiprocessors;
  int driver_version;        /* e.g. 13000 */
  size_t total_memory;       /* bytes */
  int max_shared_per_block;  /* bytes, opt-in maximum */
  int l2_bytes;
} fl_cuda_info;

/* Loads the driver and initialises it, once. FL_ENODEV with a reason when
 * there is no driver or no device. */
fl_status fl_cuda_init(fl_err *e);
int fl_cuda_available(void);
fl_status fl_cuda_device_count(int *n, fl_err *e);
fl_status fl_cuda_device_info(int ordinal, fl_cuda_info *info, fl_err *e);

/* Makes the primary context of device `ordinal` current on this thread. */
fl_status fl_cuda_use(int ordinal, fl_err *e);
fl_status fl_cuda_alloc(int ordinal, size_t bytes, uint64_t *dptr, fl_err *e);
void fl_cuda_free(int ordinal, uint64_t dptr);
fl_status fl_cuda_to_device(int ordinal, uint64_t dst, const void *src, size_t n, fl_err *e);
fl_status fl_cuda_to_host(int ordinal, void *dst, uint64_t src, size_t n, fl_err *e);
fl_status fl_cuda_device_copy(int ordinal, uint64_t dst, uint64_t src, size_t n, fl_err *e);
/* Sets `count` elements of `width` bytes (1, 2 or 4) to `pattern`. */
fl_status fl_cuda_memset(int ordinal, uint64_t dst, uint32_t pattern, size_t width, size_t count,
                         fl_err *e);

/* Code loaded onto a device, and one of its kernels (a CUmodule and a
 * CUfunction); plain values the caller keeps. */
typedef struct fl_cuda_module {
  void *handle;
  int ordinal;
} fl_cuda_module;

typedef struct fl_cuda_function {
  void *handle;
  int ordinal;
  char name[128]; /* for messages */
} fl_cuda_function;

/* Loads a cubin, or PTX text ending in '\0', onto device `ordinal`; the
 * driver's JIT log is in the message when it fails. */
fl_status fl_cuda_module_load(int ordinal, const void *image, fl_cuda_module *m, fl_err *e);
void fl_cuda_module_unload(fl_cuda_module *m);
fl_status fl_cuda_function_get(const fl_cuda_module *m, const char *name, fl_cuda_function *f,
                               fl_err *e);
/* Lets f take up to `bytes` of dynamic shared memory (above 48 KiB needs it). */
fl_status fl_cuda_function_set_shared(const fl_cuda_function *f, int bytes, fl_err *e);
/* Launches f with params (one pointer to each argument, as cuLaunchKernel
 * takes them) on `stream` (a CUstream; NULL for the default one), then waits
 * for it, so that a fault is reported by the launch that made it. */
fl_status fl_cuda_launch(const fl_cuda_function *f, const unsigned grid[3],
                         const unsigned block[3], unsigned shared_bytes, void *stream,
                         void **params, fl_err *e);
/* The same without the wait: a fault shows at the next synchronization. */
fl_status fl_cuda_launch_async(const fl_cuda_function *f, const unsigned grid[3], const unsigned block[3],
                               unsigned shared_bytes, void *stream, void **params, fl_err *e);
/* Waits for `stream`, a fault named as f's (the last kernel launched there). */
fl_status fl_cuda_launch_wait(const fl_cuda_function *f, void *stream, fl_err *e);
/* A tensor map (the driver's CUtensorMap) for the tensor memory accelerator. */
typedef struct fl_cuda_tensor_map {
  _Alignas(64) uint64_t w[16];
} fl_cuda_tensor_map;

/* A tensor map over the bf16 (f16 if `f16`) tensor at device address
 * `base`: `rank` dims (at most 5) of dims[] elements, innermost first,
 * strides[] the bytes between consecutive indices of dims 1.., boxes of
 * box[] elements landing in shared memory with the 128-byte swizzle,
 * elements outside the tensor read as zeros. */
fl_status fl_cuda_tensor_map_encode(fl_cuda_tensor_map *m, int f16, uint64_t base, int rank, const uint64_t *dims,
                                    const uint64_t *strides, const unsigned *box, fl_err *e);
/* Waits for all work on device `ordinal`. */
fl_status fl_cuda_synchronize(int ordinal, fl_err *e);

/* Device time between two points of device `ordinal`'s default stream
 * (CUDA events, made on the first start and kept). */
typedef struct fl_cuda_timer {
  void *start, *stop;
  int ordinal;
} fl_cuda_timer;
fl_status fl_cuda_timer_start(int ordinal, fl_cuda_timer *t, fl_err *e);
/* Sets the stop point here (the last one set counts). */
fl_status fl_cuda_timer_mark(fl_cuda_timer *t, fl_err *e);
/* Waits for the stop point last marked and sets *ms. */
fl_status fl_cuda_timer_stop(fl_cuda_timer *t, float *ms, fl_err *e);
void fl_cuda_timer_free(fl_cuda_timer *t);

#endif
