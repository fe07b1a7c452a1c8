#include "fl_nvrtc.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fl_nvrtc_cache.h"

/* NVRTC's types and entry points, declared here so that no CUDA header is
 * needed to build. */
typedef int nvrtcResult;
typedef void *nvrtcProgram;

enum { NVRTC_SUCCESS = 0, NVRTC_ERROR_INVALID_OPTION = 5, NVRTC_ERROR_COMPILATION = 6 };

#if defined(__aarch64__)
#define FL_CUDA_TARGET "sbsa-linux"
#else
#define FL_CUDA_TARGET "x86_64-linux"
#endif

static struct nvrtc_lib {
  int tried;
  fl_status status;
  char reason[480];
  char loaded[256]; /* the name or path that dlopen took */
  void *lib;
  int major, minor;
  nvrtcResult (*Version)(int *, int *);
  nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int,
                               const char *const *, const char *const *);
  nvrtcResult (*DestroyProgram)(nvrtcProgram *);
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetPTX)(nvrtcProgram, char *);
  const char *(*GetErrorString)(nvrtcResult);
  /* Optional: cubins since NVRTC 11.1, the list of archs since 11.2. */
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
  nvrtcResult (*GetNumSupportedArchs)(int *);
  nvrtcResult (*GetSupportedArchs)(int *);
} nv;

static const struct { const char *name; size_t offset; int optional; } nv_symbols[] = {
#define SYM(field, name, optional) {name, offsetof(struct nvrtc_lib, field), optional}
  SYM(Version, "nvrtcVersion", 0), SYM(CreateProgram, "nvrtcCreateProgram", 0),
  SYM(DestroyProgram, "nvrtcDestroyProgram", 0), SYM(CompileProgram, "nvrtcCompileProgram", 0),
  SYM(GetProgramLogSize, "nvrtcGetProgramLogSize", 0),
  SYM(GetProgramLog, "nvrtcGetProgramLog", 0), SYM(GetPTXSize, "nvrtcGetPTXSize", 0),
  SYM(GetPTX, "nvrtcGetPTX", 0), SYM(GetErrorString, "nvrtcGetErrorString", 0),
  SYM(GetCUBINSize, "nvrtcGetCUBINSize", 1), SYM(GetCUBIN, "nvrtcGetCUBIN", 1),
  SYM(GetNumSupportedArchs, "nvrtcGetNumSupportedArchs", 1),
  SYM(GetSupportedArchs, "nvrtcGetSupportedArchs", 1),
#undef SYM
};

static const char *const lib_names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};

/* Tries each library name in dir ("" for the loader's own search). */
static void *open_in(const char *dir, char *loaded, size_t n) {
  for (size_t i = 0; i < sizeof lib_names / sizeof lib_names[0]; i++) {
    snprintf(loaded, n, "%s%s%s", dir, *dir ? "/" : "", lib_names[i]);
    void *lib = dlopen(loaded, RTLD_NOW | RTLD_LOCAL);
    if (lib) return lib;
  }
  return NULL;
}

static void *open_library(void) {
  const char *home = getenv("CUDA_HOME");
  char dirs[4][300];
  int nd = 0;
  if (home && *home) {
    snprintf(dirs[nd++], sizeof dirs[0], "%s/lib64", home);
    snprintf(dirs[nd++], sizeof dirs[0], "%s/targets/" FL_CUDA_TARGET "/lib", home);
  }
  snprintf(dirs[nd++], sizeof dirs[0], "/usr/local/cuda/lib64");
  snprintf(dirs[nd++], sizeof dirs[0], "/usr/local/cuda/targets/" FL_CUDA_TARGET "/lib");
  void *lib = open_in("", nv.loaded, sizeof nv.loaded);
  for (int i = 0; i < nd && !lib; i++) lib = open_in(dirs[i], nv.loaded, sizeof nv.loaded);
  if (!lib)
    snprintf(nv.reason, sizeof nv.reason,
             "NVRTC is not available: no libnvrtc.so.13, .so.12 or .so on the library path, "
             "in $CUDA_HOME/lib64 (CUDA_HOME %s) or in /usr/local/cuda/lib64 (set CUDA_HOME, "
             "or FLASHLIGHT_NVRTC to the library's path)",
             home && *home ? home : "unset");
  return lib;
}

static fl_status load_symbols(void) {
  for (size_t i = 0; i < sizeof nv_symbols / sizeof nv_symbols[0]; i++) {
    void *p = dlsym(nv.lib, nv_symbols[i].name);
    if (!p && !nv_symbols[i].optional) {
      snprintf(nv.reason, sizeof nv.reason, "NVRTC is not available: %s has no symbol %s",
               nv.loaded, nv_symbols[i].name);
      return FL_ENODEV;
    }
    memcpy((char *)&nv + nv_symbols[i].offset, &p, sizeof p);
  }
  if (nv.Version(&nv.major, &nv.minor) != NVRTC_SUCCESS) {
    snprintf(nv.reason, sizeof nv.reason, "NVRTC is not available: nvrtcVersion failed in %s",
             nv.loaded);
    return FL_ENODEV;
  }
  return FL_OK;
}

static fl_status load_nvrtc(void) {
  const char *chosen = getenv("FLASHLIGHT_NVRTC");
  if (chosen && *chosen) {
    snprintf(nv.loaded, sizeof nv.loaded, "%s", chosen);
    nv.lib = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
    if (!nv.lib) {
      const char *why = dlerror();
      snprintf(nv.reason, sizeof nv.reason,
               "NVRTC is not available: FLASHLIGHT_NVRTC=%s could not be loaded (%s)", chosen,
               why ? why : "no reason given");
      return FL_ENODEV;
    }
  } else if (!(nv.lib = open_library())) {
    return FL_ENODEV;
  }
  return load_symbols();
}

fl_status fl_nvrtc_init(fl_err *e) {
  if (!nv.tried) {
    nv.tried = 1;
    nv.status = load_nvrtc();
  }
  if (nv.status != FL_OK) return fl_fail(e, nv.status, "%s", nv.reason);
  return FL_OK;
}

int fl_nvrtc_available(void) { return fl_nvrtc_init(NULL) == FL_OK; }

fl_status fl_nvrtc_describe(char *buf, size_t n, fl_err *e) {
  fl_status s = fl_nvrtc_init(e);
  if (s == FL_OK) snprintf(buf, n, "NVRTC %d.%d (%s)", nv.major, nv.minor, nv.loaded);
  return s;
}

/* ------------------------------------------------------------------ archs */

/* sm_90, sm_90a, compute_90: the number, or -1 when arch is not one. */
static int arch_number(const char *arch, int *is_ptx) {
  const char *p;
  if (strncmp(arch, "sm_", 3) == 0) {
    p = arch + 3;
    *is_ptx = 0;
  } else if (strncmp(arch, "compute_", 8) == 0) {
    p = arch + 8;
    *is_ptx = 1;
  } else {
    return -1;
  }
  int v = 0, digits = 0;
  for (; *p >= '0' && *p <= '9' && digits < 5; p++, digits++) v = v * 10 + (*p - '0');
  if (digits < 2 || (*p && !((*p == 'a' || *p == 'f') && !p[1]))) return -1;
  return v;
}

/* Writes NVRTC's own list of archs, "sm_75 sm_80 ...", into buf: 1 when it
 * lists `number`, 0 when not, -1 when this NVRTC cannot say. */
static int supported_archs(int number, char *buf, size_t n) {
  int count = 0, archs[128], listed = 0;
  buf[0] = '\0';
  if (!nv.GetNumSupportedArchs || !nv.GetSupportedArchs ||
      nv.GetNumSupportedArchs(&count) != NVRTC_SUCCESS || count <= 0 || count > 128 ||
      nv.GetSupportedArchs(archs) != NVRTC_SUCCESS)
    return -1;
  size_t len = 0;
  for (int i = 0; i < count; i++) {
    listed |= archs[i] == number;
    if (len < n) len += (size_t)snprintf(buf + len, n - len, "%ssm_%d", i ? " " : "", archs[i]);
  }
  return listed;
}

static fl_status check_arch(const char *arch, int *is_ptx, fl_err *e) {
  int number = arch_number(arch, is_ptx);
  if (number < 0)
    return fl_fail(e, FL_EINVAL, "unknown CUDA arch '%s' (expected sm_NN or compute_NN, like "
                   "sm_90)", arch);
  char list[400];
  if (supported_archs(number, list, sizeof list) == 0)
    return fl_fail(e, FL_EINVAL, "NVRTC %d.%d cannot compile for %s (it knows %s)", nv.major,
                   nv.minor, arch, list);
  return FL_OK;
}

/* ------------------------------------------------------------- compiling */

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* The options NVRTC gets: ours first, then the caller's. */
typedef struct compile_opts {
  const char **v;
  int n;
  char arch_flag[40];
} compile_opts;

static const char report_flag[] = "-Xptxas=-v";

/* From 12.9, NVRTC keeps compiled code in the driver's cache when a driver
 * is loaded, and a hit there prints no ptxas report; ours keeps the report. */
static int has_own_cache(void) { return nv.major > 12 || (nv.major == 12 && nv.minor >= 9); }

static fl_status make_opts(const char *arch, const char *const *extra, int nextra,
                           compile_opts *o, fl_err *e) {
  if (nextra < 0 || (nextra > 0 && !extra))
    return fl_fail(e, FL_EINVAL, "bad NVRTC option list (%d options)", nextra);
  o->v = malloc((size_t)(nextra + 3) * sizeof *o->v);
  if (!o->v) return fl_fail(e, FL_ENOMEM, "out of memory for NVRTC options");
  snprintf(o->arch_flag, sizeof o->arch_flag, "-arch=%s", arch);
  o->n = 0;
  o->v[o->n++] = o->arch_flag;
  o->v[o->n++] = report_flag; /* second: log_without_report drops it */
  if (has_own_cache()) o->v[o->n++] = "--no-cache";
  for (int i = 0; i < nextra; i++) {
    if (!extra[i]) {
      free(o->v);
      return fl_fail(e, FL_EINVAL, "NVRTC option %d is missing", i + 1);
    }
    o->v[o->n++] = extra[i];
  }
  return FL_OK;
}

/* Everything the image depends on, as one text: the cache key. */
static char *make_key(const char *source, const char *name, const compile_opts *o, size_t *len) {
  size_t n = strlen(source) + strlen(name) + 64;
  for (int i = 0; i < o->n; i++) n += strlen(o->v[i]) + 1;
  char *key = malloc(n);
  if (!key) return NULL;
  size_t at = (size_t)snprintf(key, n, "flashlight-jit 1\nnvrtc %d.%d\nname %s\n", nv.major,
                               nv.minor, name);
  for (int i = 0; i < o->n; i++) at += (size_t)snprintf(key + at, n - at, "%s\n", o->v[i]);
  at += (size_t)snprintf(key + at, n - at, "\n%s", source);
  *len = at;
  return key;
}

static char *program_log(nvrtcProgram prog) {
  size_t n = 0;
  if (nv.GetProgramLogSize(prog, &n) != NVRTC_SUCCESS) n = 0;
  char *log = calloc(n + 1, 1);
  if (log && n > 0 && nv.GetProgramLog(prog, log) != NVRTC_SUCCESS) log[0] = '\0';
  return log;
}

/* Runs NVRTC once; *log (always set when memory allows) is the program's. */
static nvrtcResult run_nvrtc(const char *source, const char *name, const compile_opts *o,
                             nvrtcProgram *prog, char **log) {
  *log = NULL;
  nvrtcResult r = nv.CreateProgram(prog, source, name, 0, NULL, NULL);
  if (r != NVRTC_SUCCESS) return r;
  r = nv.CompileProgram(*prog, o->n, o->v);
  *log = program_log(*prog);
  return r;
}

/* Whether the log says why it failed, in its lines other than ptxas's info. */
static int has_error_line(const char *log) {
  char excerpt[400];
  fl_nvrtc_log_excerpt(log, excerpt, sizeof excerpt);
  return strstr(excerpt, "error") != NULL;
}

/* NVRTC 13 drops ptxas's error line from the log when ptxas runs with -v,
 * so a ptxas failure (too much shared memory, say) is compiled again without
 * the report to learn why. */
static char *log_without_report(const char *source, const char *name, compile_opts *o) {
  for (int i = 1; i + 1 < o->n; i++) o->v[i] = o->v[i + 1];
  o->n--;
  nvrtcProgram prog = NULL;
  char *log = NULL;
  run_nvrtc(source, name, o, &prog, &log);
  if (prog) nv.DestroyProgram(&prog);
  return log;
}

static fl_status compile_error(nvrtcResult r, const char *name, const char *arch,
                               const char *log, fl_err *e) {
  char excerpt[400];
  fl_nvrtc_log_excerpt(log, excerpt, sizeof excerpt);
  if (r == NVRTC_ERROR_COMPILATION)
    return fl_fail(e, FL_ECOMPILE, "%s did not compile for %s:\n%s", name, arch, excerpt);
  return fl_fail(e, r == NVRTC_ERROR_INVALID_OPTION ? FL_EINVAL : FL_ECOMPILE,
                 "NVRTC failed on %s for %s: %s%s%s", name, arch, nv.GetErrorString(r),
                 excerpt[0] ? "\n" : "", excerpt);
}

/* Takes the cubin (or, for compute_NN or an old NVRTC, the PTX) out of prog. */
static fl_status take_image(nvrtcProgram prog, int want_ptx, fl_module_image *out, fl_err *e) {
  size_t n = 0;
  int cubin = !want_ptx && nv.GetCUBINSize && nv.GetCUBIN &&
              nv.GetCUBINSize(prog, &n) == NVRTC_SUCCESS && n > 0;
  if (!cubin && nv.GetPTXSize(prog, &n) != NVRTC_SUCCESS)
    return fl_fail(e, FL_ECOMPILE, "NVRTC produced neither a cubin nor PTX");
  out->data = malloc(n ? n : 1);
  if (!out->data) return fl_fail(e, FL_ENOMEM, "out of memory for a %zu-byte image", n);
  nvrtcResult r = cubin ? nv.GetCUBIN(prog, out->data) : nv.GetPTX(prog, out->data);
  if (r != NVRTC_SUCCESS)
    return fl_fail(e, FL_ECOMPILE, "NVRTC could not hand over the image: %s",
                   nv.GetErrorString(r));
  out->kind = cubin ? FL_IMAGE_CUBIN : FL_IMAGE_PTX;
  out->size = n;
  return FL_OK;
}

static fl_status compile_fresh(const char *source, const char *name, const char *arch,
                               int want_ptx, compile_opts *o, fl_module_image *out, fl_err *e) {
  nvrtcProgram prog = NULL;
  nvrtcResult r = run_nvrtc(source, name, o, &prog, &out->log);
  fl_status s = FL_OK;
  if (r == NVRTC_SUCCESS && out->log) {
    s = take_image(prog, want_ptx, out, e);
  } else if (!out->log) {
    s = fl_fail(e, FL_ENOMEM, "out of memory for the NVRTC log");
  } else {
    if (r == NVRTC_ERROR_COMPILATION && !has_error_line(out->log)) {
      char *why = log_without_report(source, name, o);
      if (why && has_error_line(why)) {
        free(out->log);
        out->log = why;
      } else {
        free(why);
      }
    }
    s = compile_error(r, name, arch, out->log, e);
  }
  if (prog) nv.DestroyProgram(&prog);
  return s;
}

fl_status fl_nvrtc_compile(const char *source, const char *name, const char *arch,
                           const char *const *extra_opts, int nextra, fl_module_image *out,
                           fl_err *e) {
  double start = now_ms();
  memset(out, 0, sizeof *out);
  if (!source) return fl_fail(e, FL_EINVAL, "no source to compile");
  name = name && *name ? name : "kernel.cu";
  arch = arch && *arch ? arch : "sm_90";
  int want_ptx = 0;
  fl_status s = fl_nvrtc_init(e);
  if (s == FL_OK) s = check_arch(arch, &want_ptx, e);
  compile_opts o = {0};
  if (s == FL_OK) s = make_opts(arch, extra_opts, nextra, &o, e);
  if (s != FL_OK) return s;
  snprintf(out->arch, sizeof out->arch, "%s", arch);
  size_t keylen = 0;
  char *key = make_key(source, name, &o, &keylen);
  out->cache = key ? fl_nvrtc_cache_get(key, keylen, out) : FL_CACHE_MISS;
  if (out->cache == FL_CACHE_MISS) {
    s = compile_fresh(source, name, arch, want_ptx, &o, out, e);
    if (s == FL_OK && key) fl_nvrtc_cache_put(key, keylen, out);
  }
  free(key);
  free(o.v);
  if (s == FL_OK) s = fl_nvrtc_parse_report(out->log, &out->kernels, &out->nkernels, e);
  out->ms = now_ms() - start;
  return s;
}

void fl_module_image_free(fl_module_image *img) {
  free(img->data);
  free(img->log);
  fl_kernel_reports_free(img->kernels, img->nkernels);
  img->data = NULL;
  img->log = NULL;
  img->kernels = NULL;
  img->nkernels = 0;
  img->size = 0;
}
