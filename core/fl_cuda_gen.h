/* CUDA source from a kernel plan: one self-contained translation unit (no
 * toolkit headers) with one __global__ function a kernel of the plan, plus
 * one for each layout copy the plan folds (run after its group for now).
 *
 * These are the plan's scalar kernels: correct for every plan, one thread
 * a grid position, double precision like the CPU executor, the loop walked
 * in tiles with the same online state. Fused contraction chains get
 * tensor-core kernels of their own (to come); these remain the fallback.
 *
 * Storage: inputs in their dtypes, graph outputs in the output dtype,
 * every other value materialized in double. Each kernel takes one pointer
 * a value it reads or writes (in `param` order) and a last `int *err`,
 * set to 1 when a load's index falls outside its dim (the CPU executor's
 * error; the load then reads element 0). */
#ifndef FL_CUDA_GEN_H
#define FL_CUDA_GEN_H

#include "fl_plan.h"

#define FL_CUDA_MAX_PARAMS 64

/* The kernels a fused group gets: its scalar kernel only, mma.sync
 * tensor-core kernels (sm_80 and up), or wgmma ones (sm_90a; a group
 * wgmma cannot take gets mma.sync). */
typedef enum fl_cuda_path { FL_PATH_SCALAR, FL_PATH_MMA, FL_PATH_HOPPER, FL_PATH_AUTO } fl_cuda_path;

#define FL_CUDA_MAX_TMAPS 8

/* How a tensor-core kernel numbers its blocks, for the order they run in
 * (see fl_cuda_sched_order): `count` blocks of `rows` query rows, the
 * first starting `pad` rows before row 0, at each of `others` other grid
 * positions (heads, batches; C order over the other slots), which run in
 * chunks of `chunk`; `slot`: the rows' grid slot; `per_sm`: blocks a
 * multiprocessor holds at once. */
typedef struct fl_cuda_block_order {
  int slot, per_sm;
  int64_t count, rows, pad, others, chunk;
} fl_cuda_block_order;

/* A tensor-core kernel whose last blocks may each run in parts, the
 * block's keys split among them (see fl_cuda_parts_choose): `most` parts
 * at most (0: never), each part's `warps` computing warps leaving `floats`
 * floats a thread for the last part of the block to merge. The kernel
 * then takes `tail | parts << 24` after its fixup flags, and its scratch
 * (fl_cuda_parts_words) holds after the flags (positions and two words,
 * from the next multiple of 32) a ticket a warp of each of the `tail`
 * blocks, then (from the next multiple of 32) the pieces' states, piece
 * ((block * warps + warp) * parts + part) 32 * floats words, a float of
 * every lane after another. */
typedef struct fl_cuda_parts {
  int most, warps;
  int64_t floats, steps; /* and a block's steps */
} fl_cuda_parts;

/* A tensor map a kernel takes (after its other arguments): over input
 * `value`, 3 dims innermost first, byte strides of dims 1 and 2, the box. */
typedef struct fl_cuda_tmap {
  int value;
  int f16;
  uint64_t dims[3], strides[2];
  unsigned box[3];
} fl_cuda_tmap;

typedef struct fl_cuda_kernel {
  char name[32];
  int64_t threads;           /* scalar kernels: one a position, in blocks of 128 */
  unsigned grid[3], block[3]; /* tensor-core kernels (block[0] > 0): their launch shape */
  int smem;                  /* dynamic shared memory, bytes */
  int persistent;            /* 1: grid[0] tiles, looped over by at most a block a multiprocessor */
  int plan_kernel;           /* the plan's kernel it runs */
  int schedule;              /* takes the tile classes, loop bounds and block order after its values */
  fl_cuda_block_order order; /* schedule: how it numbers its blocks */
  fl_cuda_path path;         /* the kind of kernel: scalar, mma.sync or wgmma */
  char why[96];              /* a group's kernel: why not a faster kind */
  char design[256];          /* a tensor-core kernel: its warpgroups, keys a step, loads */
  int fix;                   /* 1: sets an int a grid position for rows to recompute,
                                and the int after them when it sets any;
                                2: takes them (NULL: every position) */
  int64_t scratch;           /* fix == 1: words after the flags the kernel keeps
                                across its blocks (zero when first made) */
  fl_cuda_parts parts;       /* its last blocks in parts (parts.most > 0) */
  int nparams;
  int param[FL_CUDA_MAX_PARAMS]; /* value ids, in the kernel's parameter order */
  char writes[FL_CUDA_MAX_PARAMS];
  int ntmaps;
  fl_cuda_tmap tmap[FL_CUDA_MAX_TMAPS];
} fl_cuda_kernel;

typedef struct fl_cuda_program {
  char *source;
  int nkernels;
  fl_cuda_kernel *k; /* in launch order */
} fl_cuda_program;

/* out_dtype: the graph outputs' dtype, or FL_DTYPE_COUNT for each its own.
 * path: the fastest kind of kernel a group may get. */
/* Flags of fl_cuda_generate. FL_GEN_PERSISTENT: warp-specialized kernels
 * without masks (with FL_WS_DYNAMIC, masked ones of two computing
 * warpgroups too) run a block a multiprocessor that loops over the tiles.
 * FL_GEN_PERSISTENT_AUTO: they do where a device of `sms` multiprocessors
 * would not run the last blocks of a block a tile in parts (0 sms: never). */
enum { FL_GEN_PERSISTENT = 1, FL_GEN_PERSISTENT_AUTO = 2 };
fl_status fl_cuda_generate(const fl_plan *p, fl_dtype out_dtype, fl_cuda_path path, unsigned flags, int sms,
                           fl_cuda_program *out, fl_err *e);
/* "scalar", "mma" or "hopper". */
const char *fl_cuda_path_name(fl_cuda_path path);
void fl_cuda_program_free(fl_cuda_program *p);

/* The storage of value v in this program: its dtype, or FL_DTYPE_COUNT for
 * double (an intermediate). */
fl_dtype fl_cuda_storage(const fl_graph *g, int v, fl_dtype out_dtype);

#endif
