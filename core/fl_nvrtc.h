/* Run-time compilation of CUDA C++ with NVRTC, opened with dlopen so that
 * the library builds and runs where there is no CUDA toolkit; the
 * per-kernel register report ptxas prints; and a cache of compiled images,
 * in memory for the process's lifetime and in files on disk.
 *
 * Like fl_cuda, this keeps process-wide state without locks: call it from
 * one thread at a time. */
#ifndef FL_NVRTC_H
#define FL_NVRTC_H

#include <stddef.h>

#include "fl_error.h"

typedef enum fl_image_kind { FL_IMAGE_CUBIN, FL_IMAGE_PTX } fl_image_kind;

typedef enum fl_cache_hit { FL_CACHE_MISS, FL_CACHE_MEMORY, FL_CACHE_DISK } fl_cache_hit;

/* What ptxas reports for one entry function (sizes in bytes). */
typedef struct fl_kernel_report {
  char *name; /* as ptxas names it: mangled unless declared extern "C" */
  int registers;
  int spill_stores, spill_loads;
  int stack;  /* stack frame */
  int shared; /* static shared memory */
} fl_kernel_report;

typedef struct fl_module_image {
  fl_image_kind kind;
  void *data;  /* a cubin, or PTX text ending in '\0' (counted in size) */
  size_t size;
  char *log;   /* the NVRTC program log, ptxas report included */
  char arch[24];
  fl_kernel_report *kernels; /* one per entry function, none for PTX */
  int nkernels;
  fl_cache_hit cache;
  double ms;   /* the whole call: compiling, or finding it in the cache */
} fl_module_image;

/* Opens libnvrtc, once: FLASHLIGHT_NVRTC (a path) when set, else
 * libnvrtc.so.13, .so.12 or .so on the loader's path, under $CUDA_HOME and
 * under /usr/local/cuda. FL_ENODEV naming what was tried when none loads. */
fl_status fl_nvrtc_init(fl_err *e);
int fl_nvrtc_available(void);
/* "NVRTC 13.0 (libnvrtc.so.13)": the version and the library that loaded. */
fl_status fl_nvrtc_describe(char *buf, size_t n, fl_err *e);

/* Compiles `source` for `arch` ("sm_90" gives a cubin; "compute_90" gives
 * PTX, as does an NVRTC too old for cubins) with -Xptxas=-v and the extra
 * options, and reports each kernel's registers and spills. `name` (the file
 * name in messages) defaults to "kernel.cu", `arch` to "sm_90". The result
 * comes from the cache when the same source, name, arch, options and NVRTC
 * version were compiled before; a broken or unwritable cache only costs a
 * compile. FL_ECOMPILE with the first errors of the log when the source does
 * not compile (out->log then holds the whole log), FL_EINVAL for an arch
 * NVRTC does not know. Free *out with fl_module_image_free on success and on
 * failure alike. */
fl_status fl_nvrtc_compile(const char *source, const char *name, const char *arch,
                           const char *const *extra_opts, int nextra, fl_module_image *out,
                           fl_err *e);
void fl_module_image_free(fl_module_image *img);

/* The per-kernel report in a log compiled with -Xptxas=-v; *out is NULL
 * when the log names no entry function. Free with fl_kernel_reports_free. */
fl_status fl_nvrtc_parse_report(const char *log, fl_kernel_report **out, int *n, fl_err *e);
void fl_kernel_reports_free(fl_kernel_report *k, int n);
/* Writes into buf (n > 0) the lines of `log` a reader needs first, errors
 * and warnings without ptxas's info lines, cut at a line with a note when
 * they do not fit. Returns the length written. */
size_t fl_nvrtc_log_excerpt(const char *log, char *buf, size_t n);

/* The directory compiled images are kept in: $FLASHLIGHT_CACHE, else
 * $XDG_CACHE_HOME/flashlight, else ~/.cache/flashlight, each with /jit
 * appended. Returns 0 and writes nothing when FLASHLIGHT_CACHE is "off" or
 * no directory is known. */
int fl_nvrtc_cache_dir(char *buf, size_t n);
/* Forgets the images kept in memory (files on disk stay). */
void fl_nvrtc_cache_clear(void);

#endif
