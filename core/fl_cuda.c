#include "fl_cuda.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Driver API types and the entry points we call, declared here so that no
 * CUDA header is needed to build. */
typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef void *CUevent;

enum {
  CU_JIT_ERROR_LOG_BUFFER = 5,
  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
  CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
};

#define FL_CUDA_MAX_DEVICES 64

static struct cu_driver {
  int tried;
  fl_status status;
  char reason[400];
  void *lib;
  int count;
  CUcontext ctx[FL_CUDA_MAX_DEVICES];
  CUresult (*Init)(unsigned);
  CUresult (*DriverGetVersion)(int *);
  CUresult (*DeviceGetCount)(int *);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetName)(char *, int, CUdevice);
  CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*DeviceTotalMem)(size_t *, CUdevice);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*MemAlloc)(CUdeviceptr *, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*MemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
  CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
  CUresult (*MemsetD16)(CUdeviceptr, unsigned short, size_t);
  CUresult (*MemsetD32)(CUdeviceptr, unsigned int, size_t);
  CUresult (*ModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **);
  CUresult (*ModuleUnload)(CUmodule);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*FuncSetAttribute)(CUfunction, int, int);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, unsigned, CUstream, void **, void **);
  CUresult (*StreamSynchronize)(CUstream);
  CUresult (*CtxSynchronize)(void);
  CUresult (*EventCreate)(CUevent *, unsigned);
  CUresult (*EventRecord)(CUevent, CUstream);
  CUresult (*EventSynchronize)(CUevent);
  CUresult (*EventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*EventDestroy)(CUevent);
  CUresult (*GetErrorName)(CUresult, const char **);
  CUresult (*GetErrorString)(CUresult, const char **);
  /* CUDA 12 and later; NULL before (kernels that use it then fail to launch) */
  CUresult (*TensorMapEncodeTiled)(void *, int, unsigned, void *, const uint64_t *, const uint64_t *,
                                   const unsigned *, const unsigned *, int, int, int, int);
} cu;

static const struct { const char *name; size_t offset; } cu_symbols[] = {
#define SYM(field, name) {name, offsetof(struct cu_driver, field)}
  SYM(Init, "cuInit"), SYM(DriverGetVersion, "cuDriverGetVersion"),
  SYM(DeviceGetCount, "cuDeviceGetCount"), SYM(DeviceGet, "cuDeviceGet"),
  SYM(DeviceGetName, "cuDeviceGetName"), SYM(DeviceGetAttribute, "cuDeviceGetAttribute"),
  SYM(DeviceTotalMem, "cuDeviceTotalMem_v2"),
  SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
  SYM(CtxSetCurrent, "cuCtxSetCurrent"), SYM(MemAlloc, "cuMemAlloc_v2"),
  SYM(MemFree, "cuMemFree_v2"), SYM(MemcpyHtoD, "cuMemcpyHtoD_v2"),
  SYM(MemcpyDtoH, "cuMemcpyDtoH_v2"), SYM(MemcpyDtoD, "cuMemcpyDtoD_v2"),
  SYM(MemsetD8, "cuMemsetD8_v2"), SYM(MemsetD16, "cuMemsetD16_v2"),
  SYM(MemsetD32, "cuMemsetD32_v2"),
  SYM(ModuleLoadDataEx, "cuModuleLoadDataEx"), SYM(ModuleUnload, "cuModuleUnload"),
  SYM(ModuleGetFunction, "cuModuleGetFunction"), SYM(FuncSetAttribute, "cuFuncSetAttribute"),
  SYM(LaunchKernel, "cuLaunchKernel"), SYM(StreamSynchronize, "cuStreamSynchronize"),
  SYM(CtxSynchronize, "cuCtxSynchronize"),
  SYM(EventCreate, "cuEventCreate"), SYM(EventRecord, "cuEventRecord"),
  SYM(EventSynchronize, "cuEventSynchronize"), SYM(EventElapsedTime, "cuEventElapsedTime"),
  SYM(EventDestroy, "cuEventDestroy_v2"),
  SYM(GetErrorName, "cuGetErrorName"), SYM(GetErrorString, "cuGetErrorString"),
#undef SYM
};

/* Fails with the driver's own name and text for r. */
static fl_status cu_fail(fl_err *e, CUresult r, const char *call) {
  const char *name = "CUDA_ERROR_UNKNOWN", *text = "unknown error";
  if (cu.GetErrorName) cu.GetErrorName(r, &name);
  if (cu.GetErrorString) cu.GetErrorString(r, &text);
  return fl_fail(e, FL_ECUDA, "%s failed: %s (%d): %s", call, name, r, text);
}

static fl_status load_driver(void) {
  cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cu.lib) {
    const char *why = dlerror();
    snprintf(cu.reason, sizeof cu.reason,
             "CUDA is not available: the driver library could not be loaded (%s)",
             why ? why : "libcuda.so.1 not found");
    return FL_ENODEV;
  }
  for (size_t i = 0; i < sizeof cu_symbols / sizeof cu_symbols[0]; i++) {
    void *p = dlsym(cu.lib, cu_symbols[i].name);
    if (!p) {
      snprintf(cu.reason, sizeof cu.reason,
               "CUDA is not available: libcuda.so.1 has no symbol %s (driver too old?)",
               cu_symbols[i].name);
      return FL_ENODEV;
    }
    memcpy((char *)&cu + cu_symbols[i].offset, &p, sizeof p);
  }
  void *tm = dlsym(cu.lib, "cuTensorMapEncodeTiled");
  memcpy(&cu.TensorMapEncodeTiled, &tm, sizeof tm);
  return FL_OK;
}

static fl_status start_driver(void) {
  fl_status s = load_driver();
  if (s != FL_OK) return s;
  CUresult r = cu.Init(0);
  if (r == 0) r = cu.DeviceGetCount(&cu.count);
  if (r != 0 || cu.count == 0) {
    const char *name = "no device";
    if (r != 0) cu.GetErrorName(r, &name);
    snprintf(cu.reason, sizeof cu.reason,
             "CUDA is not available: the driver found no usable GPU (%s)", name);
    return FL_ENODEV;
  }
  if (cu.count > FL_CUDA_MAX_DEVICES) cu.count = FL_CUDA_MAX_DEVICES;
  return FL_OK;
}

fl_status fl_cuda_init(fl_err *e) {
  if (!cu.tried) {
    cu.tried = 1;
    cu.status = start_driver();
  }
  if (cu.status != FL_OK) return fl_fail(e, cu.status, "%s", cu.reason);
  return FL_OK;
}

int fl_cuda_available(void) { return fl_cuda_init(NULL) == FL_OK; }

fl_status fl_cuda_device_count(int *n, fl_err *e) {
  fl_status s = fl_cuda_init(e);
  *n = s == FL_OK ? cu.count : 0;
  return s;
}

static fl_status check_ordinal(int ordinal, fl_err *e) {
  fl_status s = fl_cuda_init(e);
  if (s != FL_OK) return s;
  if (ordinal < 0 || ordinal >= cu.count)
    return fl_fail(e, FL_EINVAL, "no CUDA device cuda:%d (this machine has %d)", ordinal,
                   cu.count);
  return FL_OK;
}

fl_status fl_cuda_device_info(int ordinal, fl_cuda_info *info, fl_err *e) {
  fl_status s = check_ordinal(ordinal, e);
  if (s != FL_OK) return s;
  CUdevice dev;
  CUresult r = cu.DeviceGet(&dev, ordinal);
  if (r) return cu_fail(e, r, "cuDeviceGet");
  memset(info, 0, sizeof *info);
  if ((r = cu.DeviceGetName(info->name, sizeof info->name, dev))) return cu_fail(e, r, "cuDeviceGetName");
  if ((r = cu.DeviceTotalMem(&info->total_memory, dev))) return cu_fail(e, r, "cuDeviceTotalMem");
  if ((r = cu.DriverGetVersion(&info->driver_version))) return cu_fail(e, r, "cuDriverGetVersion");
  const struct { int attr; int *dst; } attrs[] = {
    {75, &info->major}, {76, &info->minor}, {16, &info->multiprocessors},
    {97, &info->max_shared_per_block}, {38, &info->l2_bytes},
  };
  for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
    if ((r = cu.DeviceGetAttribute(attrs[i].dst, attrs[i].attr, dev)))
      return cu_fail(e, r, "cuDeviceGetAttribute");
  return FL_OK;
}

fl_status fl_cuda_use(int ordinal, fl_err *e) {
  fl_status s = check_ordinal(ordinal, e);
  if (s != FL_OK) return s;
  CUresult r;
  if (!cu.ctx[ordinal]) {
    CUdevice dev;
    if ((r = cu.DeviceGet(&dev, ordinal))) return cu_fail(e, r, "cuDeviceGet");
    if ((r = cu.DevicePrimaryCtxRetain(&cu.ctx[ordinal], dev)))
      return cu_fail(e, r, "cuDevicePrimaryCtxRetain");
  }
  if ((r = cu.CtxSetCurrent(cu.ctx[ordinal]))) return cu_fail(e, r, "cuCtxSetCurrent");
  return FL_OK;
}

fl_status fl_cuda_alloc(int ordinal, size_t bytes, uint64_t *dptr, fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK) return s;
  CUdeviceptr p = 0;
  CUresult r = cu.MemAlloc(&p, bytes ? bytes : 1);
  if (r) {
    const char *name = "CUDA_ERROR_UNKNOWN";
    cu.GetErrorName(r, &name);
    return fl_fail(e, FL_ECUDA, "cannot allocate %zu bytes on cuda:%d: cuMemAlloc failed: %s",
                   bytes, ordinal, name);
  }
  *dptr = p;
  return FL_OK;
}

void fl_cuda_free(int ordinal, uint64_t dptr) {
  if (dptr && fl_cuda_use(ordinal, NULL) == FL_OK) cu.MemFree(dptr);
}

fl_status fl_cuda_to_device(int ordinal, uint64_t dst, const void *src, size_t n, fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK || n == 0) return s;
  CUresult r = cu.MemcpyHtoD(dst, src, n);
  return r ? cu_fail(e, r, "cuMemcpyHtoD") : FL_OK;
}

fl_status fl_cuda_to_host(int ordinal, void *dst, uint64_t src, size_t n, fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK || n == 0) return s;
  CUresult r = cu.MemcpyDtoH(dst, src, n);
  return r ? cu_fail(e, r, "cuMemcpyDtoH") : FL_OK;
}

fl_status fl_cuda_device_copy(int ordinal, uint64_t dst, uint64_t src, size_t n, fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK || n == 0) return s;
  CUresult r = cu.MemcpyDtoD(dst, src, n);
  return r ? cu_fail(e, r, "cuMemcpyDtoD") : FL_OK;
}

fl_status fl_cuda_memset(int ordinal, uint64_t dst, uint32_t pattern, size_t width, size_t count,
                         fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK || count == 0) return s;
  CUresult r = width == 1   ? cu.MemsetD8(dst, (unsigned char)pattern, count)
               : width == 2 ? cu.MemsetD16(dst, (unsigned short)pattern, count)
                            : cu.MemsetD32(dst, pattern, count);
  return r ? cu_fail(e, r, "cuMemset") : FL_OK;
}

/* ---------------------------------------------------------------- kernels */

fl_status fl_cuda_module_load(int ordinal, const void *image, fl_cuda_module *m, fl_err *e) {
  m->handle = NULL;
  m->ordinal = ordinal;
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK) return s;
  if (!image) return fl_fail(e, FL_EINVAL, "no module image to load");
  char log[400] = "";
  int opts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *vals[] = {log, (void *)(size_t)sizeof log};
  CUmodule mod = NULL;
  CUresult r = cu.ModuleLoadDataEx(&mod, image, 2, opts, vals);
  if (r) {
    const char *name = "CUDA_ERROR_UNKNOWN";
    cu.GetErrorName(r, &name);
    log[sizeof log - 1] = '\0';
    return fl_fail(e, FL_ECUDA, "cannot load the compiled module on cuda:%d: cuModuleLoadData "
                   "failed: %s%s%s", ordinal, name, log[0] ? "\n" : "", log);
  }
  m->handle = mod;
  return FL_OK;
}

void fl_cuda_module_unload(fl_cuda_module *m) {
  if (m->handle && fl_cuda_use(m->ordinal, NULL) == FL_OK) cu.ModuleUnload(m->handle);
  m->handle = NULL;
}

fl_status fl_cuda_function_get(const fl_cuda_module *m, const char *name, fl_cuda_function *f,
                               fl_err *e) {
  memset(f, 0, sizeof *f);
  fl_status s = fl_cuda_init(e);
  if (s != FL_OK) return s;
  if (!m->handle) return fl_fail(e, FL_EINVAL, "the module is not loaded");
  CUfunction fn = NULL;
  CUresult r = cu.ModuleGetFunction(&fn, m->handle, name);
  if (r == 500) /* CUDA_ERROR_NOT_FOUND */
    return fl_fail(e, FL_EINVAL, "the module has no kernel '%s' (a C++ name is mangled unless "
                   "declared extern \"C\")", name);
  if (r) return cu_fail(e, r, "cuModuleGetFunction");
  f->handle = fn;
  f->ordinal = m->ordinal;
  snprintf(f->name, sizeof f->name, "%s", name);
  return FL_OK;
}

static fl_status check_function(const fl_cuda_function *f, fl_err *e) {
  fl_status s = fl_cuda_use(f->ordinal, e);
  if (s == FL_OK && !f->handle) s = fl_fail(e, FL_EINVAL, "no kernel to launch");
  return s;
}

fl_status fl_cuda_function_set_shared(const fl_cuda_function *f, int bytes, fl_err *e) {
  fl_status s = check_function(f, e);
  if (s != FL_OK) return s;
  CUresult r = cu.FuncSetAttribute(f->handle, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                   bytes);
  if (r) {
    const char *name = "CUDA_ERROR_UNKNOWN";
    cu.GetErrorName(r, &name);
    return fl_fail(e, FL_ECUDA, "kernel %s cannot have %d bytes of dynamic shared memory on "
                   "cuda:%d: %s", f->name, bytes, f->ordinal, name);
  }
  return FL_OK;
}

/* Fails naming the kernel, what went wrong and the driver's words for r. */
static fl_status launch_fail(const fl_cuda_function *f, CUresult r, const char *when,
                             fl_err *e) {
  const char *name = "CUDA_ERROR_UNKNOWN", *text = "unknown error";
  cu.GetErrorName(r, &name);
  cu.GetErrorString(r, &text);
  return fl_fail(e, FL_ECUDA, "kernel %s on cuda:%d %s: %s (%d): %s", f->name, f->ordinal, when,
                 name, r, text);
}

fl_status fl_cuda_launch(const fl_cuda_function *f, const unsigned grid[3],
                         const unsigned block[3], unsigned shared_bytes, void *stream,
                         void **params, fl_err *e) {
  fl_status s = fl_cuda_launch_async(f, grid, block, shared_bytes, stream, params, e);
  return s == FL_OK ? fl_cuda_launch_wait(f, stream, e) : s;
}

fl_status fl_cuda_launch_wait(const fl_cuda_function *f, void *stream, fl_err *e) {
  fl_status s = check_function(f, e);
  if (s != FL_OK) return s;
  CUresult r = cu.StreamSynchronize(stream);
  return r ? launch_fail(f, r, "failed while running", e) : FL_OK;
}

fl_status fl_cuda_launch_async(const fl_cuda_function *f, const unsigned grid[3], const unsigned block[3],
                               unsigned shared_bytes, void *stream, void **params, fl_err *e) {
  fl_status s = check_function(f, e);
  if (s != FL_OK) return s;
  CUresult r = cu.LaunchKernel(f->handle, grid[0], grid[1], grid[2], block[0], block[1],
                               block[2], shared_bytes, stream, params, NULL);
  return r ? launch_fail(f, r, "could not be launched", e) : FL_OK;
}

fl_status fl_cuda_synchronize(int ordinal, fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK) return s;
  CUresult r = cu.CtxSynchronize();
  return r ? cu_fail(e, r, "cuCtxSynchronize") : FL_OK;
}

/* ----------------------------------------------------------------- timing */

fl_status fl_cuda_timer_start(int ordinal, fl_cuda_timer *t, fl_err *e) {
  fl_status s = fl_cuda_use(ordinal, e);
  if (s != FL_OK) return s;
  CUresult r = 0;
  if (!t->start) {
    t->ordinal = ordinal;
    if (!(r = cu.EventCreate((CUevent *)&t->start, 0))) r = cu.EventCreate((CUevent *)&t->stop, 0);
  }
  if (!r) r = cu.EventRecord(t->start, NULL);
  return r ? cu_fail(e, r, "cuEventRecord") : FL_OK;
}

fl_status fl_cuda_timer_mark(fl_cuda_timer *t, fl_err *e) {
  fl_status s = fl_cuda_use(t->ordinal, e);
  if (s != FL_OK) return s;
  CUresult r = cu.EventRecord(t->stop, NULL);
  return r ? cu_fail(e, r, "cuEventRecord") : FL_OK;
}

fl_status fl_cuda_timer_stop(fl_cuda_timer *t, float *ms, fl_err *e) {
  fl_status s = fl_cuda_use(t->ordinal, e);
  if (s != FL_OK) return s;
  CUresult r = cu.EventSynchronize(t->stop);
  if (!r) r = cu.EventElapsedTime(ms, t->start, t->stop);
  return r ? cu_fail(e, r, "cuEventElapsedTime") : FL_OK;
}

void fl_cuda_timer_free(fl_cuda_timer *t) {
  if (t->start && fl_cuda_use(t->ordinal, NULL) == FL_OK) {
    cu.EventDestroy(t->start);
    if (t->stop) cu.EventDestroy(t->stop);
  }
  t->start = t->stop = NULL;
}

/* The driver's enum values (cuda.h) for what the kernels' tiles need. */
enum { TMAP_FLOAT16 = 6, TMAP_BFLOAT16 = 9, TMAP_SWIZZLE_128B = 3, TMAP_L2_256B = 3 };

fl_status fl_cuda_tensor_map_encode(fl_cuda_tensor_map *m, int f16, uint64_t base, int rank, const uint64_t *dims,
                                    const uint64_t *strides, const unsigned *box, fl_err *e) {
  if (!cu.TensorMapEncodeTiled)
    return fl_fail(e, FL_ECUDA, "the CUDA driver has no cuTensorMapEncodeTiled (CUDA 12 or later is needed)");
  unsigned ones[5] = {1, 1, 1, 1, 1};
  CUresult r = cu.TensorMapEncodeTiled(m, f16 ? TMAP_FLOAT16 : TMAP_BFLOAT16, (unsigned)rank, (void *)(uintptr_t)base,
                                       dims, strides, box, ones, 0, TMAP_SWIZZLE_128B, TMAP_L2_256B, 0);
  if (r) return cu_fail(e, r, "cuTensorMapEncodeTiled");
  return FL_OK;
}
