/* The Hopper (sm_90a) pieces of the tensor-core kernels: warpgroup matrix
 * instructions (wgmma m64nNk16, f32 accumulate) reading their operands
 * from shared-memory tiles laid out as wgmma wants them.
 *
 * A tile of `rows` rows and a last dim of width w (a multiple of 64) is
 * kept as w / 64 panels of rows x 64 elements, each row 128 bytes, the
 * 16-byte chunks of a row permuted by the 128-byte swizzle (chunk c of
 * row r at chunk c ^ (r % 8)), every panel 1024-byte aligned. The same
 * tile serves as a K-major operand (Q and K: rows are M or N, the head dim
 * is K) and as an MN-major one (V: rows are K, the head dim is N).
 *
 * The warpgroup's accumulator layout is the m16n8 one of mma.sync per warp
 * (warp w holds rows 16w..16w+15), so everything between the products is
 * printed the same on both paths. */
#ifndef FL_CUDA_WGMMA_H
#define FL_CUDA_WGMMA_H

#include <stdint.h>

#include "fl_cuda_expr.h"
#include "fl_dtype.h"
#include "fl_text.h"

/* Fences, commit/wait, descriptors: once a program. */
const char *fl_cuda_wgmma_prelude(void);

typedef enum fl_wgmma_kind {
  FL_WGMMA_SS,  /* A and B from shared memory, both K-major */
  FL_WGMMA_RS,  /* A from registers, B K-major */
  FL_WGMMA_RST  /* A from registers, B MN-major (transposed) */
} fl_wgmma_kind;

/* The wrapper of wgmma m64nNk16 for dtype dt:
 * `fl_wgmma_<ss|rs|rst>_<T>_<n>(float *d, <desc a | const unsigned *a>, desc b)`.
 * Guarded, so printing it twice is harmless. */
void fl_cuda_wgmma_put_fn(fl_text *b, fl_wgmma_kind kind, fl_dtype dt, int n);

/* The byte offset in a tile of `rows` rows of 16-byte chunk `ch` of row
 * `r` (C expressions), as a C expression into buf. */
void fl_cuda_wgmma_chunk_at(char *buf, size_t n, int64_t rows, const char *r, const char *ch);

/* `unsigned qf[width / 16][4]`: the warp's rows of the tile at `tile`
 * (rows x width) as A fragments, for scores with q in registers. */
void fl_cuda_wgmma_put_q_fragments(fl_cx *c, const char *qf, const char *tile, int64_t rows, int width);

/* Issues acc[step / 8][4] (declared) = q · kᵀ over the head dim, one committed group
 * not waited for: q the A fragments (q_regs) or the tile at address q
 * (q_rows rows, the warpgroup `wg` taking 64 of them), k's tile at address
 * k (step rows), both `width` wide. */
void fl_cuda_wgmma_put_scores(fl_cx *c, fl_dtype dt, const char *acc, const char *q, int q_regs, int q_rows,
                              const char *k, int width, int64_t step);

/* Waits until at most `pending` groups are in flight, then pins
 * the n floats of acc (their values are the products' from here on). */
void fl_cuda_wgmma_put_wait(fl_cx *c, int pending, const char *acc, int64_t n);

/* Inside a loop over nt (the accumulator layout's 8-key tiles): packs
 * p[nt] (float p[step / 8][4]) into its half of the A fragment
 * pk[nt >> 1] (unsigned pk[step / 16][4]). */
void fl_cuda_wgmma_put_pack_tile(fl_cx *c, fl_dtype dt, const char *pk, const char *p);

/* Issues acc[width / 8][4] += pk · v, one committed group not waited for:
 * v's tile at address v (step rows, `width` wide). With `ones` (the
 * address of a tile of step rows of 128 bytes of ones; width 64 only),
 * acc[width / 8 + 1][4]: its last 8 columns the sums of pk's rows. */
void fl_cuda_wgmma_put_product(fl_cx *c, fl_dtype dt, const char *acc, const char *pk, const char *v, int width,
                               int64_t step, const char *ones);

/* Pins the packed weights after the product reading them is waited for:
 * until then their registers must not be reused. */
void fl_cuda_wgmma_put_keep_weights(fl_cx *c, const char *pk, int64_t step);

#endif
