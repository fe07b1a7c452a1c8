/* Running a plan's CUDA program (core/fl_cuda_gen.h) on a device: compiled
 * once with NVRTC (cached), loaded, then launched kernel by kernel on
 * device tensors, intermediates in device memory allocated for the run. */
#ifndef FL_CUDA_RUN_H
#define FL_CUDA_RUN_H

#include "fl_cuda.h"
#include "fl_cuda_gen.h"
#include "fl_cuda_sched.h"
#include "fl_nvrtc.h"

typedef struct fl_cuda_exec {
  fl_cuda_program prog;
  fl_module_image image;
  fl_cuda_module module;
  fl_cuda_function *fn; /* one per kernel of prog */
  int ordinal;
  int sms;              /* the device's multiprocessors: persistent kernels' blocks */
  fl_dtype out_dtype;
  fl_cuda_path path; /* as resolved */
  int loaded;
  const fl_plan *plan;
  fl_cuda_sched *sched; /* per plan kernel */
  /* device memory kept from run to run: */
  uint64_t *keep;       /* per value: an intermediate's */
  uint64_t *fix;        /* per plan kernel: rows its tensor-core kernel flagged, then a word "any" */
  unsigned char *fix_dirty; /* per plan kernel: the last run flagged some (to be zeroed) */
  uint64_t err;         /* the kernels' error flag */
  fl_cuda_timer timer;
  double last_ms;       /* device time of the last run's kernels (events), or -1 */
} fl_cuda_exec;

/* Generates (path as fl_cuda_generate; FL_PATH_AUTO: hopper on an sm_90
 * device, else mma), compiles for `arch` (NULL: the device's, sm_90a for
 * the hopper path) and loads plan p's kernels on device `ordinal`. */
fl_status fl_cuda_exec_build(const fl_plan *p, fl_dtype out_dtype, fl_cuda_path path, unsigned flags, int ordinal,
                             const char *arch, fl_cuda_exec *x, fl_err *e);
/* Runs them: inputs are device tensors on x's device matching the graph.
 * given NULL: outs receive new device tensors, one per graph output. Else
 * given holds one tensor per output, each on x's device, of the output's
 * storage dtype (fl_cuda_storage) and shape, sharing memory with no input
 * and no other output (checked before anything runs): the kernels write
 * into them, outs is left alone (it may be NULL) and the caller keeps
 * owning given's tensors. A run that fails after the checks may leave them
 * partly written. */
fl_status fl_cuda_exec_run(fl_cuda_exec *x, const fl_graph *g, const fl_tensor *inputs,
                           const fl_tensor *given, fl_tensor *outs, fl_err *e);
void fl_cuda_exec_free(fl_cuda_exec *x);

/* The path FL_PATH_AUTO takes on device `ordinal`: hopper on sm_90, mma
 * on others and when there is no device. */
fl_cuda_path fl_cuda_auto_path(int ordinal);
/* Device `ordinal`'s multiprocessors, 0 when there is no device. */
int fl_cuda_auto_sms(int ordinal);

#endif
