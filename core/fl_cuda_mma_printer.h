/* The tensor-core kernel printer's own state and the parts of it that its
 * files share: fl_cuda_mma.c (the plain kernel and the steps),
 * fl_cuda_mma_out.c (after the loop) and fl_cuda_ws.c (the
 * warp-specialized kernel around the steps). Private to those three. */
#ifndef FL_CUDA_MMA_PRINTER_H
#define FL_CUDA_MMA_PRINTER_H

#include "fl_cuda_mma.h"
#include "fl_cuda_wgmma.h"
#include "fl_text.h"

#define line(P, ...) fl_cx_line(&(P)->c, __VA_ARGS__)

#ifndef FL_DBG_STEPS
#define FL_DBG_STEPS -1 /* timing only: at most this many steps a block, no fixup (wrong results) */
#endif
#ifndef FL_DBG_STAMPS
/* timing only: global timer stamps a warpgroup, printed (see fl_cuda_ws.c). The printf is a call, and
 * ptxas serializes every wgmma of a kernel with one (C7510): the stamps time a slower kernel. */
#define FL_DBG_STAMPS 0
#endif
#ifndef FL_DBG_NOQ
#define FL_DBG_NOQ 0 /* timing only: no Q load (wrong results) */
#endif
#ifndef FL_DBG_NOSTORE
#define FL_DBG_NOSTORE 0 /* timing only: the weighted sums not stored (wrong results) */
#endif
#ifndef FL_DBG_NOCOMBINE
/* timing only (wrong results): chain blocks take no ticket and wait for nothing (1), nor read the other
 * chain's state (2) */
#define FL_DBG_NOCOMBINE 0
#endif

typedef struct printer {
  const fl_graph *g;
  const fl_mma_group *m;
  const fl_tiles *t;
  fl_dtype out_dtype;
  int64_t positions; /* the grid's positions: the fixup flags, then the word "any" */
  fl_cx c;
  int safe;         /* running maxima read non-finite as 0 */
  const char *row;  /* the row half of the context: "h >> 1" or "r" */
  int elem;         /* in an element context ([nt][h] or [et][h]) */
  int at_key;       /* at a score's element: its key kj of the step's stage s */
  int persistent;   /* a block a multiprocessor looping over the tiles (FL_GEN_PERSISTENT) */
  int parts;        /* its last blocks may run in parts of their keys (FL_WS_PARTS, fl_cuda_parts) */
  int known;        /* every mask condition known true (a full tile) */
  int edge;         /* the step may hold keys past the end */
  int64_t spt;      /* steps a plan key tile (all of them when one tile holds every key) */
  int64_t tps;      /* plan key tiles a step (> 1 when a step is wider than a tile) */
  int cur;          /* the score whose body is printed, or -1 */
  int defer;        /* the weighted sums rescale after the body (pipelined wgmma) */
  int mid_wait;     /* the previous step's product waited for after the extremes (split) */
  double fold[FL_MMA_MAX]; /* score i is kept unscaled: it is fold[i] times s<i> (0: as is) */
  /* ... plus bias_sign[i]·hv<bias[i]>·dkr[r] where bias[i] >= 0: a slope
   * times key less row, its part at the thread's first column (s<i> then
   * holds the rest, the slope times the column, over fold[i]) */
  int bias[FL_MMA_MAX], bias_sign[FL_MMA_MAX];
  int raw;          /* score reads give what is kept, unscaled */
  int ninv, inv[FL_MMA_MAX]; /* loads held in registers hv0, hv1, ... (see put_invariant_loads) */
  int hoisting;     /* printing those loads themselves */
} printer;

static inline int64_t sym_size(const printer *P, int s) { return P->g->syms[s].size; }
static inline const fl_value *val(const printer *P, int v) { return &P->g->vals[v]; }

/* fl_cuda_mma.c: variables and row expressions */
void mma_put_vars(printer *P, int v, const char *row, const char *key, const char *reg, int locals);
void mma_put_row_expr(printer *P, int v, int x, const char *dst, const char *row);
int mma_rescaled(const printer *P, int j, char *kind, int *i);
/* fl_cuda_mma.c: tiles and blocks */
int mma_block_rows(const fl_mma_group *m);
int mma_buffers(const fl_mma_group *m, int o);
int64_t mma_op_rows(const fl_mma_group *m, const fl_mma_operand *o);
int64_t mma_smem_bytes(const fl_mma_group *m, int o);
int64_t mma_tile_input_bytes(const fl_mma_group *m);
int64_t mma_ones_bytes(const fl_mma_group *m);
int mma_acc_tiles(const fl_mma_group *m, int i);
int64_t mma_tiles_count(const fl_graph *g, const fl_mma_group *m);
void mma_put_block(printer *P);
void mma_put_schedule(printer *P);
void mma_put_state(printer *P);
void mma_put_next(printer *P, const char *dst, const char *from);
void mma_open_if(printer *P, const char *cond);
void mma_close_if(printer *P);
/* fl_cuda_mma.c: a step */
void mma_put_q_fragments(printer *P);
void mma_put_step_keys(printer *P);
void mma_put_mine(printer *P);
void mma_put_scores(printer *P);
void mma_put_bodies(printer *P);
void mma_put_products(printer *P);
void mma_put_wgmma_products(printer *P, const char *tile, int wait);
void mma_put_deferred_factors(printer *P);
void mma_put_pipe_issue(printer *P, const char *issued);
void mma_put_pipe_body(printer *P);
void mma_put_pipe_rescale(printer *P);
void mma_put_merge(printer *P, int other);
/* fl_cuda_mma_out.c: after the loop */
int mma_needed(const printer *P, int v);
void mma_put_finish(printer *P);
/* fl_cuda_ws.c */
int mma_ws_loader_regs(const fl_mma_group *m, int persistent);
int mma_ws_compute_regs(const fl_mma_group *m, int persistent);
int mma_ws_pingpong(const fl_mma_group *m);
/* The floats of a thread's running state (put_handover's order). */
int64_t mma_ws_state_floats(const fl_mma_group *c);
/* The operand whose tiles operand o takes (a chain a block), or -1. */
int mma_shared_tiles(const fl_mma_group *m, int o);
/* The words a kernel keeps after its `positions` fixup flags and two (see fl_cuda_kernel.scratch). */
int64_t mma_ws_scratch_words(const fl_graph *g, const fl_mma_group *m, int64_t positions);
void mma_put_tmaps(const fl_graph *g, const fl_mma_group *m, fl_cuda_kernel *kd);
void mma_put_ws(printer *P);

#endif
