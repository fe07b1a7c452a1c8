/* Block sparsity: classifying one tile of a tiled group (a block of grid
 * positions by a tile of loop positions) by interval analysis.
 *
 *   skip     every loop member's body takes only its combiner's identity
 *            over the tile (a max sees only -inf, a sum only 0): the tile
 *            changes nothing and is not run;
 *   full     every mask condition has one truth value over the tile: the
 *            tile runs with the `where`s resolved, no mask code;
 *   partial  the rest: the tile runs masked.
 *
 * Loads of running values read as finite (the executor reads a -inf
 * running max as 0), and loads of data as finite too unless the data is at
 * hand: skipping a tile assumes finite inputs, as every attention kernel
 * does. At run time the values a mask condition reads (document ids) are
 * at hand, and their range over the tile is read from them. */
#ifndef FL_TILES_H
#define FL_TILES_H

#include "fl_group.h"
#include "fl_interval.h"

typedef enum fl_tile_class { FL_TILE_SKIP, FL_TILE_PARTIAL, FL_TILE_FULL } fl_tile_class;

#define FL_MAX_TILE_MEMBERS 8
#define FL_MAX_GROUP_MASKS (FL_MAX_TILE_MEMBERS * FL_MAX_MASKS)

typedef struct fl_tiles {
  const fl_graph *g;
  fl_group gr;
  int ntv, tv[FL_MAX_TILE_MEMBERS];   /* tile members */
  int nmask;                          /* over all tile members, in order */
  int mask_tv[FL_MAX_GROUP_MASKS];    /* the tile member a condition is in */
  int mask[FL_MAX_GROUP_MASKS];       /* the condition */
  int data;                           /* some condition reads data */
  int uses[FL_MAX_DIMS];              /* per grid slot: some condition reads it */
  char *reads;                        /* per value: a condition loads it */
  /* The sizes tiles are cut in: per grid slot, positions a block (1: one
   * at a time), and loop positions a tile. From the graph's tiling; a plan
   * may change them. */
  int64_t block[FL_MAX_DIMS];
  int64_t tile;
  /* at run time: per value its numbers in C order, or NULL */
  double *const *values;
} fl_tiles;

/* The box of one tile: an interval per grid slot and per loop dim. */
typedef struct fl_tile_box {
  fl_interval grid[FL_MAX_DIMS];
  fl_interval loop[FL_MAX_DIMS];
} fl_tile_box;

/* The masks of the tiled group starting at `first`; t->nmask == 0 when it
 * has none (then every tile is partial: nothing to classify by). */
fl_status fl_tiles_init(fl_tiles *t, const fl_graph *g, int first, fl_err *e);
void fl_tiles_free(fl_tiles *t);

/* Classifies the tile; truth[k] gets mask k's truth over it (1, 0 or -1). */
fl_tile_class fl_tiles_classify(const fl_tiles *t, const fl_tile_box *box, signed char *truth);

/* The box of grid block `block[s]` (per slot, in the tiling's block sizes;
 * -1: the whole dim) and loop tile `tile` (the loop flattened). */
void fl_tiles_box(const fl_tiles *t, const int64_t *block, int64_t tile, fl_tile_box *box);

typedef struct fl_tile_counts {
  int64_t total, skipped, partial, full;
} fl_tile_counts;

/* Classifies loop tiles [0, ntiles) of grid block `block` (as for
 * fl_tiles_box), adding each to *counts; with `out`, writes per tile its
 * class then its mask truths (1 + nmask bytes a tile). *lo and *hi get the
 * first tile not skipped and one past the last (0, 0 when all are). */
void fl_tiles_classify_block(const fl_tiles *t, const int64_t *block, signed char *out,
                             fl_tile_counts *counts, int64_t *lo, int64_t *hi);

/* Classifies every tile, block by block over the grid slots the masks read
 * (the others whole), blocks in C order: what a plan fixes ahead. With
 * `table` and `bounds`, keeps each block's classes (as classify_block
 * writes them) and loop bounds (lo, hi pairs). The number of such blocks
 * is fl_tiles_mask_blocks. */
void fl_tiles_schedule(const fl_tiles *t, signed char *table, int64_t *bounds,
                       fl_tile_counts *counts);
int64_t fl_tiles_mask_blocks(const fl_tiles *t);

/* The number of blocks along grid slot s, and of tiles along the loop. */
int64_t fl_tiles_blocks(const fl_tiles *t, int s);
int64_t fl_tiles_loop_tiles(const fl_tiles *t);
/* Loop positions a tile (the whole loop when untiled). */
int64_t fl_tiles_loop_width(const fl_tiles *t);

#endif
