/* The tile classes and loop bounds a tensor-core kernel reads (see
 * core/fl_plan.h): with masks over indices, the plan's table, uploaded
 * once; with masks over data (document ids), classified before each run
 * from the data, read back from the device; without a table (no masks,
 * or one too large to keep) none: every tile runs, masked. */
#ifndef FL_CUDA_SCHED_H
#define FL_CUDA_SCHED_H

#include "fl_cuda.h"
#include "fl_plan.h"

typedef struct fl_cuda_sched {
  /* device memory, or 0: the table, and per block its loop bounds [lo, hi)
   * and longest run of known full tiles [flo, fhi), in tiles */
  uint64_t tab, bnd;
  int per_run;       /* classified before each run */
  int nvals;
  double **last;     /* per run: the values it was classified from (NULL: not read) */
} fl_cuda_sched;

/* Uploads kernel k's table if it has one ahead of the run. */
fl_status fl_cuda_sched_build(const fl_kernel *k, int ordinal, fl_cuda_sched *s, fl_err *e);
/* Classifies a data-dependent kernel's tiles from the values on the
 * device (ptr: per value its device memory, stored as storage(v)), unless
 * they are the ones of the last run. */
fl_status fl_cuda_sched_run(const fl_kernel *k, int ordinal, const uint64_t *ptr,
                            fl_dtype (*storage)(const fl_graph *g, int v, void *ctx), void *ctx,
                            fl_cuda_sched *s, fl_err *e);
void fl_cuda_sched_free(fl_cuda_sched *s, int ordinal);

/* What the kernels read as bounds (malloc'd, NULL when out of memory): per
 * block of a table with nmask mask truths a tile, its loop bounds [lo, hi)
 * in tiles, then the longest run of tiles in them known full (class full,
 * every mask condition true), which the kernels run without reading the
 * table (a causal row's tiles left of the diagonal, say). */
int64_t *fl_cuda_sched_runs(int nmask, int64_t nb, int64_t ntiles, const signed char *table, const int64_t *bounds);

#endif
