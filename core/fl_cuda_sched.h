/* The tile classes and loop bounds a tensor-core kernel reads (see
 * core/fl_plan.h): with masks over indices, the plan's table, uploaded
 * once; with masks over data (document ids), classified before each run
 * from the data, read back from the device; without a table (no masks,
 * or one too large to keep) none: every tile runs, masked. */
#ifndef FL_CUDA_SCHED_H
#define FL_CUDA_SCHED_H

#include "fl_cuda.h"
#include "fl_cuda_gen.h"
#include "fl_plan.h"

typedef struct fl_cuda_sched {
  /* device memory, or 0: the table, and per block its loop bounds [lo, hi)
   * and longest run of known full tiles [flo, fhi), in tiles */
  uint64_t tab, bnd;
  uint64_t ord;      /* device memory, or 0: the blocks in the order they run (fl_cuda_sched_order) */
  fl_cuda_block_order order;
  int64_t slots;     /* blocks the device holds at once */
  int per_run;       /* classified before each run */
  int nvals;
  double **last;     /* per run: the values it was classified from (NULL: not read) */
} fl_cuda_sched;

/* Uploads kernel k's table if it has one ahead of the run; order: how its
 * tensor-core kernel numbers its blocks, sms: the device's multiprocessors. */
fl_status fl_cuda_sched_build(const fl_kernel *k, const fl_cuda_block_order *order, int sms, int ordinal,
                              fl_cuda_sched *s, fl_err *e);
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

/* Per block of a kernel (at [other * count + rows], o's numbering), its
 * length: the union of the loop bounds of the table blocks over its rows
 * (malloc'd, NULL when out of memory). The table's blocks: at other grid
 * position p, its first row block is first[p]; row blocks of tb rows, nrow
 * of them, stride apart. */
int64_t *fl_cuda_sched_spans(const fl_cuda_block_order *o, const int64_t *first, int64_t stride, int64_t nrow,
                             int64_t tb, const int64_t *bounds);
/* The order the blocks run in (malloc'd, NULL when out of memory), each
 * as other * count + rows: chunk by chunk of other positions, the longest
 * first, ties the last rows first (under a causal mask, the last rows
 * first); but the shortest blocks of all, as many as keep `slots` blocks
 * busy for as long as the longest takes, at the end, longest first. So a
 * long block (the end of a long document) never starts last: the tail is
 * short blocks, of every chunk. */
uint32_t *fl_cuda_sched_order(const fl_cuda_block_order *o, const int64_t *span, int64_t slots);

/* Where a kernel of `blocks` equal blocks of `steps` steps, `slots` of
 * them at once, runs its last ones in parts (fl_cuda_parts): the last
 * `*tail` blocks (those of the short last wave) each as `*parts` blocks
 * of a part of its keys, so that the last wave ends sooner: the count p
 * (2 up to `most`) whose rounds take least, ceil(tail * p / slots) rounds
 * of a part (1/p of the steps and a block's fixed cost, FL_PARTS_FIXED);
 * none (tail 0, parts 1) where that saves less than FL_PARTS_GAIN of a
 * block. */
void fl_cuda_parts_choose(int64_t blocks, int64_t slots, int most, int64_t steps, unsigned *tail, unsigned *parts);
/* Where a kernel's words after its `positions` fixup flags and two start:
 * the next multiple of 32 (a warp's words on one line). */
int64_t fl_cuda_words_after_flags(int64_t positions);
/* The words such a kernel keeps after its `positions` flags and two
 * (fl_cuda_parts' layout). */
int64_t fl_cuda_parts_words(const fl_cuda_parts *pt, int64_t positions, unsigned tail, unsigned parts);

#endif
