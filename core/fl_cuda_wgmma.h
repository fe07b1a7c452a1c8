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

/* The wrapper of wgmma m64nNk16 for dtype dt: A from shared memory (rs 0,
 * `fl_wgmma_ss_<T>_<n>(float *d, desc a, desc b)`, both K-major) or from
 * registers (rs 1, `fl_wgmma_rs_<T>_<n>(float *d, const unsigned *a, desc b)`,
 * B MN-major). Guarded, so printing it twice is harmless. */
void fl_cuda_wgmma_put_fn(fl_text *b, int rs, fl_dtype dt, int n);

/* The byte offset in a tile of `rows` rows of 16-byte chunk `ch` of row
 * `r` (C expressions), as a C expression into buf. */
void fl_cuda_wgmma_chunk_at(char *buf, size_t n, int64_t rows, const char *r, const char *ch);

/* acc[step / 8][4] = q · kᵀ over the head dim: q's tile at so<q> (q_rows
 * rows, the warpgroup `wg` taking 64 of them), k's at so<k> (step rows),
 * both `width` wide. */
void fl_cuda_wgmma_put_scores(fl_cx *c, fl_dtype dt, const char *acc, int q, int q_rows, int k, int width,
                              int64_t step);

/* acc[width / 8][4] += p · v: p the weights (float p[step / 8][4], the
 * accumulator layout), v's tile at so<v> (step rows, `width` wide). */
void fl_cuda_wgmma_put_product(fl_cx *c, fl_dtype dt, const char *acc, const char *p, int v, int width,
                               int64_t step);

#endif
