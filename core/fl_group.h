/* A contiguous online group of a compacted graph, as the passes after
 * `online`, the plan and the executor see it: its members, its loop dims,
 * and its grid (the dims it runs in parallel). */
#ifndef FL_GROUP_H
#define FL_GROUP_H

#include "fl_ir.h"

typedef struct fl_group {
  int first, n; /* members: values [first, first + n) */
  int loop;     /* a loop member (it reduces over the loop dims), or -1 */
  /* The grid: the tiling's grid symbols once the group is tiled, otherwise
   * the symbols every member has. A member's other dims are register dims,
   * walked inside one grid position. */
  int ngrid, grid[FL_MAX_DIMS];
  int nloop, loop_sym[FL_MAX_DIMS];
} fl_group;

/* The group whose first member is value `first`. */
void fl_group_at(const fl_graph *g, int first, fl_group *gr);
/* The place of value v's dim d in the grid, or -1 for a register dim (a
 * grid symbol the value has twice is a grid dim the first time only). */
int fl_group_slot(const fl_graph *g, const fl_group *gr, int v, int d);
/* Is v a loop member: it takes in loop positions (not an epilogue, not a tile)? */
int fl_group_is_loop(const fl_value *v);
/* Is v a max or min member (its running value rescales the others)? */
int fl_group_is_extreme(const fl_value *v);

#endif
