/* The kernel plan (IR level 3): the kernels a graph runs as, after the
 * passes. A kernel is an online group (one loop over its reduction dims,
 * tiled or not) or one node outside a group. A group's kernel has
 *
 *   a grid      the dims run in parallel, in blocks (a thread block's rows);
 *   a loop      the reduction dims, walked in tiles, carrying the members'
 *               running values (online state) from tile to tile;
 *   registers   the members' other dims (the output's head dim);
 *   tiles       its tile members (the scores), computed once per tile;
 *   a schedule  with masks over indices: per block, the loop's bounds and
 *               each tile's class (skip, partial, full), fixed here; with
 *               masks over data: classified at run time.
 *
 * The CPU executor (fl_plan_run) runs the plan as planned: the same tiles,
 * loop order, online state and skipped tiles. The scalar code is the
 * graph's expressions. */
#ifndef FL_PLAN_H
#define FL_PLAN_H

#include "fl_tiles.h"

typedef struct fl_kernel {
  int first, n;  /* the graph's values [first, first + n) */
  int is_group;
  fl_tiles tiles; /* groups: members, grid, loop, sizes, masks */
  /* Masks over indices: per block of the grid dims they read (the others
   * count as one block) and loop tile, its class then one truth per mask;
   * and per such block the loop's bounds [lo, hi) in tiles. */
  int64_t nblocks[FL_MAX_DIMS]; /* per grid slot: blocks in the table */
  int64_t table_blocks, ntiles;
  signed char *table;
  int64_t *bounds;
  /* masks over indices: the schedule's; over data: the last run's */
  fl_tile_counts counts;
  /* Layout copies of its results (heads merged back, a transpose) that
   * its stores write directly: values of the graph run by no kernel of
   * their own. */
  int nfold, fold[FL_MAX_DIMS];
} fl_kernel;

typedef struct fl_plan {
  const fl_graph *g;
  int n;
  fl_kernel *k;
} fl_plan;

/* Plans graph g (kept, not copied: it must outlive the plan). tile > 0
 * overrides the loop tile and the grid block of every group (for tests:
 * small shapes in many tiles). */
fl_status fl_plan_build(const fl_graph *g, int64_t tile, fl_plan *p, fl_err *e);
void fl_plan_free(fl_plan *p);

/* The kernel that runs value v. */
fl_kernel *fl_plan_kernel_of(fl_plan *p, int v);
/* The class of loop tile j in the table, for the block of grid position
 * gpos, and a pointer to its mask truths. */
fl_tile_class fl_plan_table_class(const fl_kernel *k, const int64_t *gpos, int64_t j,
                                  const signed char **truth);
/* The loop's bounds [lo, hi) in tiles for the block of grid position gpos. */
void fl_plan_bounds(const fl_kernel *k, const int64_t *gpos, int64_t *lo, int64_t *hi);

/* A readable listing: one paragraph a kernel; the caller frees it. */
char *fl_plan_dump(const fl_plan *p);

/* Runs the plan on the CPU: inputs and outputs as for fl_graph_eval. With
 * data-dependent masks, the kernels' counts become this run's. */
fl_status fl_plan_run(fl_plan *p, const fl_tensor *inputs, fl_dtype out_dtype, fl_tensor *outs,
                      fl_err *e);

#endif
