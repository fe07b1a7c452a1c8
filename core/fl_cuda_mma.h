/* Tensor-core kernels for fused attention groups (FlashAttention-class).
 *
 * A group qualifies when its scores are products of two bf16/f16 inputs
 * over a contiguous head dim (`sum(d) q[.., i, d] * k[.., j, d]`), its
 * loop members are row maxima/minima, row sums, or sums of a weight times
 * a third input over a register dim (`sum(j) p * v[.., j, e]`), and its
 * epilogue reads those. Then one CUDA block takes 64 query rows (16 a
 * warp): mma.sync m16n8k16 with f32 accumulation for both products,
 * ldmatrix from padded shared-memory tiles (or, on Hopper, wgmma from
 * swizzled tiles: core/fl_cuda_wgmma.h), cp.async with the next tile's
 * keys loaded while the current weights multiply the values, the variant's
 * body in float between the products (exp through ex2.approx), row state
 * reduced across the four threads that share a row with warp shuffles,
 * and the plan's tile classes: skipped tiles never loaded, full tiles with
 * their mask conditions known.
 *
 * On Hopper, where TMA can load every tile and a row has enough key
 * tiles, the kernel is warp-specialized instead (fl_mma_group.ws): one
 * more warpgroup loads Q, K and V with the tensor memory accelerator into
 * `stages` tiles on mbarriers, two or three computing warpgroups share
 * them, 128 keys a step (a step may span several of the plan's key tiles:
 * its class is then theirs together), and where registers allow each
 * step's scores are issued with the previous step's product (the
 * pipelined step; printed by fl_cuda_ws.c around fl_cuda_mma.c's steps).
 * The choices and their measurements are in fl_cuda_mma_match.c
 * (choose_ws).
 *
 * Rows whose final rescale argument is not finite (a row every key
 * masked) are flagged; the group's scalar kernel then recomputes exactly
 * those rows, with the executor's semantics. */
#ifndef FL_CUDA_MMA_H
#define FL_CUDA_MMA_H

#include "fl_cuda_expr.h"
#include "fl_cuda_gen.h"
#include "fl_plan.h"

#define FL_MMA_ROWS 64   /* query rows a warpgroup */
#define FL_MMA_THREADS 128 /* a warpgroup */
#define FL_MMA_MAX 8     /* members of each kind */
#ifndef FL_WGMMA_GROUPS
/* warpgroups a wgmma block. Measured on the H100 (B4 H16 N4096 D128, full):
 * 1 (three independent blocks a multiprocessor) 447 TFLOP/s, 2 (one block,
 * 166 registers) 318, 3 (one block, an earlier build) 307. Those
 * builds had every wgmma serialized by ptxas (the warpgroup index was not
 * warp-uniform to it); the warp-specialized kernel (FL_WGMMA_WS) is where
 * several warpgroups a block now go. */
#define FL_WGMMA_GROUPS 1
#endif
#ifndef FL_WGMMA_MIN_BLOCKS
/* Blocks a multiprocessor the one-warpgroup wgmma kernel is built for
 * (its launch bounds cap the registers). 0: from its register estimate
 * with 16 for each other input it reads: 4 up to 120 without any (t5_bias
 * and evoformer_row spilled at 4), 3 up to 152, else 2. H100, bf16, TFLOP/s (B4 H16 N4096 /
 * B1 N16384), 2 against 3: document D=128 (196 registers, 168 and 16 B
 * spilled) 155 / 231 against 162 / 249; sliding window D=64 (135
 * registers, 122) 116 / 112 against 119 / 124. */
#define FL_WGMMA_MIN_BLOCKS 0
#endif
#ifndef FL_WGMMA_PIPE
/* 1: each step issues its scores together with the previous step's
 * product and runs the body while that product is in flight (values
 * double-buffered, Q's fragments in registers). Correct, but the extra
 * registers (190-250) leave two blocks a multiprocessor where the plain
 * step keeps three, and that loses more than the overlap wins. Measured
 * on the H100 (B4 H16 N4096, full): D=128 340 TFLOP/s against 447, D=64
 * 285 against 320; causal D=128 255 against 311. Again with the weights
 * written over the scores (B4 N4096 / B1 N16384, the groups that keep
 * this kernel): sliding window D=64 135 / 136 against 141 / 133, D=128
 * 176 / 177 against 194 / 194; document D=64 128 / 180 against 129 / 189,
 * D=128 177 / 262 against 197 / 287. */
#define FL_WGMMA_PIPE 0
#endif

#ifndef FL_WGMMA_WS
/* 1: wgmma kernels are warp-specialized where the tensor memory
 * accelerator can load every tile: a producer warpgroup loads (TMA,
 * mbarriers), two or three warpgroups compute. */
#define FL_WGMMA_WS 1
#endif
#ifndef FL_WS_STAGES
/* Key and value tiles in flight. H100, bf16, D=64 (row sums from the
 * products), medians of three rounds, 2 / 3 stages: full B4 H16 N4096
 * 461 / 465, B1 N16384 526 / 519; causal 366 / 359, 484 / 469. */
#define FL_WS_STAGES 2
#endif
#ifndef FL_WS_PINGPONG
/* The computing warpgroups of a pipelined step take turns to issue their
 * products (named barriers, round robin), so that one's body runs while
 * another's products do: 0 never, 1 where two compute, 2 always. H100,
 * bf16, D=128 (two), TFLOP/s, B4 N4096 / B1 N16384, medians of three
 * rounds (bench/builds.sh, ROUNDS=3), on / off: ALiBi 430 / 418,
 * 491 / 492; softcap 322 / 315, 336 / 328; full 601 / 603, 651 / 650;
 * causal 502 / 499, 605 / 611; prefix_lm 501 / 496, 607 / 613. On three
 * (D=64, one round) full 446 / 443, 492 / 504, causal 352 / 362,
 * 458 / 460; earlier, three at D=128, full 477 / 496, causal 303 / 371
 * (a warpgroup whose rows skip a step still holds the others' turn). */
#define FL_WS_PINGPONG 1
#endif
#ifndef FL_WS_STEP
#define FL_WS_STEP 128 /* keys a step of the warp-specialized kernel, at most (64 or 128) */
#endif
#ifndef FL_WGMMA_MIN_STEP
/* The fewest keys a wgmma step may take. 32 lets groups with many
 * accumulators onto wgmma: differential attention at D=128 ran on the
 * warp-specialized kernel (two computing warpgroups, 32 keys a step, 0
 * bytes spilled for sm_90a) instead of mma.sync at 16 keys a step.
 * Measured on the H100 (bf16, TFLOP/s): B4 H16 N4096 335 against 182, B1
 * H16 N16384 370 against 194 (64 keys a step since, see FL_WS_EST_MAX). */
#define FL_WGMMA_MIN_STEP 32
#endif
#ifndef FL_WS_MIN_WIDTH
#define FL_WS_MIN_WIDTH 64 /* the warp-specialized kernel for head dims this wide and more */
#endif
#define FL_SMEM_MAX 232448 /* dynamic shared memory a block may have (sm_90) */
#ifndef FL_WS_WGS3_EST
#define FL_WS_WGS3_EST 136 /* three computing warpgroups up to this register estimate, else two */
#endif
#ifndef FL_WS_LOADER_REGS
#define FL_WS_LOADER_REGS 24 /* registers a loader thread keeps (setmaxnreg); the computing warpgroups share the rest */
#endif
#ifndef FL_WS_SETMAXNREG
#define FL_WS_SETMAXNREG 1 /* 0: warpgroups keep the registers of the launch (no setmaxnreg) */
#endif
#ifndef FL_WS_TILE_INPUTS
/* 1: an input the scores read at each (query row, key), contiguous along
 * the keys (a pair bias), comes into shared memory a step at a time with
 * the values' tile (TMA, on the values' barrier) instead of being read
 * from global memory element by element. Warp-specialized kernels that
 * are not pipelined; 128 keys a step where the tiles fit in shared memory.
 * H100, evoformer_row bf16, TFLOP/s: B4 H16 N4096 D128 341 (211 from
 * global memory, 324 in tiles of 64 keys); B1 N16384 D128 398 (234, 359);
 * B4 N4096 D64 264 (119 on one warpgroup, which the bias's registers forced). */
#define FL_WS_TILE_INPUTS 1
#endif
/* Persistent kernels (FL_GEN_PERSISTENT, opts.persistent; by default where
 * the last wave would not run in parts, see FL_WS_PERSIST_STAGES; the
 * numbers below, from before, were within the GPU's power-capped clock's
 * noise): warp-specialized kernels
 * without masks run a block a multiprocessor that loops over the tiles
 * (rows of a grid position), the loader fetching the next tile's keys and
 * queries while the computing warpgroups finish this one. H100, bf16,
 * TFLOP/s, one-block-a-tile against persistent:
 * full B4 H16 N4096 D128 544 / 551, B1 N16384 D128 611 / 623, B4 N4096
 * D64 362 / 375, B1 N16384 D64 413 / 414. Masked kernels stay a block a
 * tile: the static assignment (even with every other wave reversed)
 * balanced causal worse than the hardware's block scheduler (B4 N4096
 * D128 340 against 386, B1 N16384 D128 410 against 487). */
#ifndef FL_WS_PERSIST_STAGES
/* Key tiles a persistent kernel keeps in flight, where they fit (its
 * loader runs ahead into the next tile while this one's last steps and
 * epilogue run). Measured on the H100 (bf16, full attention, ms, median
 * of launches 2-9 after 2 s idle: the clock falls ~10% under sustained
 * load, which blurs medians of long runs), a block a tile / persistent
 * with 2 stages / persistent with 3: B1 H16 N16384 D128 3.365 / 3.375 /
 * 3.335; B4 N4096 D128 0.901 / 0.894 / 0.885; B4 N4096 D64 0.566 / 0.555
 * / 0.548; B1 N16384 D64 1.985 / 2.081 / 2.043 (a block a tile runs its
 * last wave in halves there: FL_GEN_PERSISTENT_AUTO keeps it). Three
 * stages a block a tile: 0.4-1.5% slower than two. */
#define FL_WS_PERSIST_STAGES 3
#endif
#ifndef FL_WS_DYNAMIC
/* 1: persistent kernels, masked ones with two computing warpgroups too,
 * take their tiles one at a time from a counter (longest first) instead
 * of a fixed share each (loader registers: see mma_ws_loader_regs). Correct on
 * the H100, but no faster than a block a tile for causal (B4 N4096 D128
 * 384 against 380, B1 N16384 476 against 488): off. Again with pipelined
 * steps (persistent on, against persistent kernels that keep the masked
 * ones a block a tile): causal D=128 B4 N4096 456 against 452 (84 B
 * spilled), B1 N16384 575 against 579; full D=64 316 against 424. */
#define FL_WS_DYNAMIC 0
#endif
#ifndef FL_WS_FEW_KEYS
#define FL_WS_FEW_KEYS 1 /* 0: the warp-specialized kernel however few keys a row keeps (see few_keys) */
#endif
#ifndef FL_PAIR_STORES
/* Outputs in the accumulator layout stored two neighbours at a time (0:
 * one at a time). H100, bf16, TFLOP/s, B4 H16 N4096: D=128 full 542 -> 559,
 * causal 387 -> 413; D=64 full 367 -> 372, causal 296 -> 306. */
#define FL_PAIR_STORES 1
#endif
#ifndef FL_QUAD_STORES
/* Outputs of 2-byte elements in the accumulator layout, a dim of a multiple
 * of 32 innermost: a quad's words transposed with shuffles so that a lane
 * stores eight neighbours in one 16-byte store (0: pairs). */
#define FL_QUAD_STORES 1
#endif
#ifndef FL_L2_CHUNK_MB
/* Blocks run in chunks of heads whose keys and values take about this
 * much. Measured on the H100 (bf16, TFLOP/s, chunks made equal in heads,
 * 6 / 12 / 24 / 48 MB): causal B4 H16 N4096 D=128 455 / 461 / 457 / 459,
 * B1 N16384 D=128 603 / 589 / 584 / 601, full within 3% of each other
 * (the noise of one run): neither the size nor equal chunks pay. */
#define FL_L2_CHUNK_MB 24
#endif
#ifndef FL_WS_NARROW2
#define FL_WS_NARROW2 0 /* 1: head dims under 128 may take two computing warpgroups (with FL_WS_WGS3_EST=0) */
#endif
#ifndef FL_WS_PIPE_TILES
#define FL_WS_PIPE_TILES 0 /* 1: groups with tile inputs may pipeline their steps too */
#endif
#ifndef FL_WS_PIPE_OTHER
/* 1: other inputs count in the estimate for the pipelined step instead of
 * ruling it out. The estimate cannot tell ALiBi (552 B spilled pipelined)
 * from sinks, t5_bias and forgetting (0 spills, within noise on the H100). */
#define FL_WS_PIPE_OTHER 0
#endif
#ifndef FL_WS_PIPE_MASK_REGS
/* What a mask adds to the estimate when choosing the pipelined step. 0:
 * causal and prefix_lm pipeline at D=128 (0 spills; H100 B4 H16 N4096 bf16
 * causal 413 -> 420 TFLOP/s with pair stores, 387 -> 392 without). */
#define FL_WS_PIPE_MASK_REGS 0
#endif
#ifndef FL_WGMMA_PACK_EARLY
/* wgmma weights packed to 16 bits as the body computes them, except on a
 * pipelined step (there after the body, once the previous product that
 * reads them has landed). 0: always after the body. H100 bf16 B4 H16
 * N4096, TFLOP/s early / after: D=64 causal (three warpgroups) 309 / 291,
 * sinks and ALiBi (one) 279 / 264, 248 / 240; D=128 pipelined full
 * 545 / 564, softcap 290 / 309. */
#define FL_WGMMA_PACK_EARLY 1
#endif
#ifndef FL_WS_PIPE3_EST
/* The most a pipelined step's estimate may be with three computing
 * warpgroups, for steps without masks or other inputs (see
 * FL_WS_PIPE3_MASKED; else split).
 * 200 pipelines full, gqa, mqa, softcap and scalable_softmax at D=64
 * (softcap and scalable_softmax spill 6 B): H100, bf16, TFLOP/s, B4 H16
 * N4096 / B1 N16384, against split: full 449 / 493 against 426 / 468,
 * softcap 195 / 204 against 196 / 203. */
#define FL_WS_PIPE3_EST 200
#endif
#ifndef FL_WS_PIPE_IN_PLACE
/* 1: a pipelined step's weights overwrite its scores (weights_in_scores,
 * fl_cuda_mma.c). H100, bf16, TFLOP/s, B4 H16 N4096 / B1 N16384, D=128
 * (two computing warpgroups) in place against apart: full 608 / 642
 * against 597 / 611, causal 494 / 613 against 464 / 590, ALiBi 416 / 490
 * against 403 / 481, softcap 311 / 330 against 315 / 334. */
#define FL_WS_PIPE_IN_PLACE 1
#endif
#ifndef FL_WS_PIPE3_MASKED
/* 1: three computing warpgroups take the whole pipelined step (below
 * FL_WS_PIPE3_EST) with masks too, where each score under them is its
 * product alone or times a constant (bare_scores): causal, prefix_lm,
 * sinks. H100, bf16, TFLOP/s, D=64, B4 H16 N4096 / B1 N16384, whole
 * against split: causal 350 / 464 against 346 / 438 (84 B spilled).
 * ALiBi (a bias on the scores) lost: 309 / 386 against 317 / 389. Since
 * the row sums come from the products (FL_WS_ONES; whole spills 116 B),
 * split wins, medians of three rounds, whole against split: causal
 * 358 / 471 against 373 / 485, prefix_lm 364 / 476 against 372 / 477,
 * sinks 338 / 456 against 352 / 473: off. */
#define FL_WS_PIPE3_MASKED 0
#endif
#ifndef FL_WS_PIPE3_ANY
/* 1: three computing warpgroups take the whole pipelined step (below
 * FL_WS_PIPE3_EST) whatever the scores' body and inputs. */
#define FL_WS_PIPE3_ANY 0
#endif
#ifndef FL_WS_PIPE_SPLIT
/* 1: three computing warpgroups that do not take the whole pipelined
 * step (see FL_WS_PIPE3_EST) pipeline it split: the previous step's
 * product is waited for once the body has its extremes, and the new weights go
 * straight into its registers (no second set). 0 spills at D=64. H100,
 * bf16, TFLOP/s, B4 H16 N4096 / B1 N16384 D=64, split against plain (both
 * with four partial maxima and sums a row, since dropped): full 403 / 450
 * against 362 / 429, ALiBi 291 / 361 against 265 / 309, softcap 192 / 199
 * against 177 / 191, sinks 319 / 420 against 300 / 388, causal 322 / 418
 * against 325 / 415. Groups with tile inputs stay unpipelined: split,
 * evoformer_row D=64 ran 227 / 260 against 266 / 303. Two computing
 * warpgroups keep the plain step (not measured split). */
#define FL_WS_PIPE_SPLIT 1
#endif
#ifndef FL_FULL_RUNS
/* 1: each block's longest run of tiles known full (every mask condition
 * true) comes with its loop bounds, and the steps there neither read the
 * tile table nor walk it for the next step. */
#define FL_FULL_RUNS 1
#endif
#ifndef FL_WS_PIPE2_EST
#define FL_WS_PIPE2_EST 200 /* the most a pipelined step's estimate may be with two computing warpgroups */
#endif
#define FL_WGMMA_EST_MAX 200 /* the most a step's register estimate may be on the one-warpgroup kernel */
#ifndef FL_WS_EST_MAX
/* The most a step's register estimate may be on the warp-specialized
 * kernel (two computing warpgroups, 240 registers); the one-warpgroup
 * kernel stops at FL_WGMMA_EST_MAX. 240 takes differential attention (two score sets,
 * two accumulators) to 64 keys a step at D=128 (was 32) and onto the
 * warp-specialized kernel at D=64 (128 keys; was one warpgroup, 64 keys).
 * H100, bf16, TFLOP/s, B4 H16 N4096 / B1 N16384, 240 against 200: D=128
 * 451 / 482 against 348 / 379, D=64 355 / 390 against 315 / 343 (12 B
 * spilled at D=64). No other variant's kernel changes. */
#define FL_WS_EST_MAX 240
#endif
#ifndef FL_WS_ONES
/* 1: on warp-specialized kernels, a row sum whose summand is a weighted
 * sum's weight (the softmax's denominator) comes from the tensor cores:
 * the weighted sum's product reads 8 more columns, all ones, from a tile
 * of its own (64-wide values only: columns 64-71 are the descriptor's
 * next panel), and any of them is the row's sum. No adds a key on the
 * CUDA cores, 12.5% more of the second product. H100, bf16, D=64,
 * TFLOP/s, medians of three rounds (bench/builds.sh), on / off: B4 H16
 * N4096 full 469 / 446, causal 358 / 357, ALiBi 322 / 316, softcap
 * 195 / 194, prefix_lm 361 / 356, gqa 471 / 451, sinks 331 / 333,
 * differential 358 / 365, evoformer_row 271 / 271, scalable_softmax
 * 402 / 386, lse 464 / 446; B1 N16384 full 524 / 499, causal 471 / 461,
 * ALiBi 406 / 391, softcap 204 / 207, differential 396 / 393. */
#define FL_WS_ONES 1
#endif
#ifndef FL_WS_CHAINS
/* 1: a warp-specialized group of two independent chains (scores, their
 * extremes, sums and weighted sums: differential attention's two
 * softmaxes) whose whole step is too large for a warpgroup to pipeline
 * runs each chain in blocks of its own, every computing warpgroup on it
 * (two or three, as full attention at that head dim: the estimate of a
 * chain is full attention's), the second chain's queries and keys in the
 * first's tiles, the two blocks of a tile numbered side by side. A warp
 * of either, done with its steps, takes a ticket (an atomic on the word
 * of its rows): the first leaves its state in global memory and then
 * marks it there, the second waits for the mark, reads it and stores the
 * outputs from both states. H200, differential bf16, TFLOP/s (two
 * attentions), medians of two rounds, B4 H16 N4096 / B1 N16384: D128
 * 603 / 591, D64 449 / 507. Earlier, each chain on a computing
 * warpgroup of its own over 64 rows a block, the second handing its
 * state over in shared memory (at D128 in clusters of two blocks sharing
 * keys and values by multicast): 594 / 584, 399 / 427; before chains,
 * both softmaxes on each warpgroup (H100): 457 / 492, 366 / 393.
 * Timing-only, without the ticket or the wait (FL_DBG_NOCOMBINE=1): 444
 * / 499 at D64 against 446 / 500; nor reading the other's state (=2, H100,
 * medians of two rounds): 456 / 497 against 443 / 511; two computing
 * warpgroups at D64 instead of three: 362 / 403. */
#define FL_WS_CHAINS 1
#endif
#ifndef FL_WS_CLUSTER_ALL
/* 1: kernels of two pipelined computing warpgroups (128 rows a block) at
 * D >= 128 in clusters of two blocks whose loaders each copy every other
 * panel of a step's keys and values into both (TMA multicast): half the
 * bytes from L2 a FLOP. A stage is refilled once both blocks' warps have
 * released it (a warp arrives on its block's barrier and, through mapa,
 * on the other's); a cluster barrier after the barriers' init and before
 * exit. The remote arrival must be a plain one (release at the block's
 * scope): with .release.cluster, differential's chains (then on 64-row
 * blocks) ran 377 against 554 TFLOP/s; with the plain one 587 / 555.
 * Correct on the H100 (sanitize.lua, racecheck) but slower here, where
 * each block's keys and values already serve two warpgroups: bf16
 * TFLOP/s, one round, clusters against none, B4 H16 N4096 / B1 N16384
 * D128: full 575 / 627 against 604 / 658, causal 437 / 567 against
 * 502 / 612, ALiBi 378 / 474 against 422 / 494: off. */
#define FL_WS_CLUSTER_ALL 0
#endif
#ifndef FL_STALE_MAX
/* A running row maximum whose only readers are exp (exp2) rescales of
 * its own (and the exponentials that they rescale) keeps its old value
 * while the rows' new maximum is at most this far past it, in powers of
 * two of the exponentials: they then reach 2^FL_STALE_MAX (bf16 and fp32
 * hold that), but the sums need no rescale, and a warp whose rows all
 * keep theirs skips it (most steps once the first has run). Exact: the
 * sums and the maximum they are relative to stay one pair. 0: off. */
#define FL_STALE_MAX 8
#endif
#ifndef FL_WS_PARTS
/* The most parts a warp-specialized kernel without masks may split each
 * of its last blocks' keys in, so that the short last wave of equal
 * blocks ends sooner (fl_cuda_parts_choose picks how many, at launch);
 * the last part to finish merges the others' states. 0: never. */
#define FL_WS_PARTS 4
#endif
#ifndef FL_WS_PIPE
#define FL_WS_PIPE 1 /* warp-specialized kernels pipeline their steps (as FL_WGMMA_PIPE) */
#endif

typedef enum fl_mma_role { FL_MMA_Q, FL_MMA_K, FL_MMA_V } fl_mma_role;

/* A tile loaded into shared memory: rows (query rows, or keys) of a
 * contiguous last dim. */
typedef struct fl_mma_operand {
  int member, load; /* the load, in that member's body */
  fl_mma_role role;
  int row_var;      /* the member's variable along rows */
  int width;        /* positions along the last dim */
  int affine;       /* offset = base + row * stride (else computed a row) */
  int64_t stride;
  int64_t plane_rows; /* rows adjacent in the source's last two dims, of this many (0: not) */
  int64_t planes;     /* the source as planes of plane_rows x width */
} fl_mma_operand;

/* An input read at each (query row, key) of the scores (see
 * FL_WS_TILE_INPUTS): a step's tile is the block's rows by the step's keys. */
typedef struct fl_mma_tile_input {
  int src;          /* the input value */
  int member, load; /* a load of it, in that member's body (its plane) */
  int64_t planes;   /* the source as planes of rows x keys */
} fl_mma_tile_input;

typedef struct fl_mma_group {
  const fl_kernel *k;
  fl_dtype dt;      /* of every operand */
  int row_slot;     /* the grid slot of the query rows */
  int64_t rows;     /* query positions (the row slot's size) */
  int64_t keys;     /* loop positions */
  int64_t step;     /* keys a step: 64, 32 or 16 */
  int q_regs;       /* Q fragments kept in registers (wgmma: the scores' A from them) */
  int nops;
  fl_mma_operand op[3 * FL_MMA_MAX];
  int ntv, tv[FL_MMA_MAX], tv_reduce[FL_MMA_MAX], tv_q[FL_MMA_MAX], tv_k[FL_MMA_MAX];
  int nx, x[FL_MMA_MAX];   /* row max/min members */
  int ns, s[FL_MMA_MAX];   /* row sum members */
  int na, a[FL_MMA_MAX], a_p[FL_MMA_MAX], a_v[FL_MMA_MAX]; /* sums of weight · v */
  int ne, e[FL_MMA_MAX], e_reg[FL_MMA_MAX]; /* epilogue members; over the register dim? */
  double x_lag[FL_MMA_MAX]; /* row max i keeps its old value while the new one is at most this far past
                               it, in its rescale argument (FL_STALE_MAX), else 0 */
  int fixup;               /* some member rescales: rows may need the scalar kernel */
  int hopper;              /* wgmma from swizzled tiles (sm_90a), else mma.sync */
  int pipe;                /* wgmma: a step's scores issued with the previous step's product */
  int split;               /* pipelined ws: that product waited for after the body's extremes (see FL_WS_PIPE_SPLIT) */
  int wgs;                 /* warpgroups a block (FL_MMA_ROWS query rows each), sharing its key tiles */
  int blocks;              /* blocks a multiprocessor the kernel is built for (launch bounds) */
  int ws;                  /* warp-specialized: one more warpgroup loads every tile with TMA */
  int stages;              /* ws: key and value tiles in flight */
  int nb;                  /* ws: inputs loaded a step into tiles of their own */
  int chains;              /* ws: 2 when each of two chains runs in blocks of its own (FL_WS_CHAINS), else 1 */
  int parts;               /* ws: its last blocks may run in up to this many parts of their keys (FL_WS_PARTS), or 0 */
  int cluster;             /* ws: blocks a cluster, sharing their key and value tiles (FL_WS_CLUSTER_ALL), or 1 */
  int nc0[4];              /* chain 0's members, the first of each kind: scores, extremes, sums, weighted sums */
  int s_ones[FL_MMA_MAX];  /* ws: row sum i is weighted sum s_ones[i]'s column of ones (FL_WS_ONES), or -1 ... */
  double s_ones_by[FL_MMA_MAX]; /* ... over this (its weight is the row sum's summand times it) */
  fl_mma_tile_input b[FL_MMA_MAX];
} fl_mma_group;

/* Does kernel k of plan p qualify, for wgmma (hopper) or mma.sync? On no,
 * *why says what stops it. */
int fl_cuda_mma_match(const fl_plan *p, const fl_kernel *k, int hopper, fl_mma_group *m, const char **why);

/* Prints group m's kernel (kd holds its name and parameters, as the scalar
 * kernel's) and sets kd's launch shape; flags FL_GEN_PERSISTENT let it loop
 * over its tiles where it can, FL_GEN_PERSISTENT_AUTO where that pays on
 * a device of `sms` multiprocessors. The kernel takes, after the
 * parameters, the tile classes and loop bounds of its schedule (or NULL:
 * every tile, partial), the fixup flags and the error flag. */
fl_status fl_cuda_mma_print(const fl_plan *p, const fl_mma_group *m, fl_dtype out_dtype, unsigned flags, int sms,
                            fl_text *b, fl_cuda_kernel *kd, fl_err *e);
/* The device helpers the kernels need, once a program. */
const char *fl_cuda_mma_prelude(void);
/* fl_st2, for FL_PAIR_STORES ("" without). */
const char *fl_cuda_mma_pair_prelude(void);
/* fl_quad_transpose and fl_st8, for FL_QUAD_STORES ("" without). */
const char *fl_cuda_mma_quad_prelude(void);

/* The members a block of chain c holds: chain c's (FL_WS_CHAINS), or
 * all of them; the rest of m as it is. */
void fl_cuda_mma_chain(const fl_mma_group *m, int c, fl_mma_group *sub);

/* Is member v of group m's kernel an output, or read by another kernel? */
int fl_cuda_mma_needed(const fl_graph *g, const fl_mma_group *m, int v);

/* Which of m's tile inputs is value src (an index in m->b), or -1. */
int fl_cuda_mma_tile_input(const fl_mma_group *m, int src);

/* The dynamic shared memory the group's kernel uses, in bytes. */
int64_t fl_cuda_mma_smem(const fl_mma_group *m);

/* Is value src read by m besides its members, tiles and tile inputs (a
 * bias, document ids, ALiBi's slopes)? */
int fl_cuda_mma_other_input(const fl_graph *g, const fl_mma_group *m, int src);

/* Expression ex as the product r (an expression index) times a constant,
 * or over one: that factor; else 0. */
double fl_cuda_mma_product_factor(const fl_graph *g, const fl_expr *ex, int r);

/* Does member's expression x depend on the block's grid position only
 * (not on the query row, the keys or the register dim)? */
int fl_cuda_mma_grid_only(const fl_graph *g, const fl_mma_group *m, int member, int x);

/* The role of member m's variable `var`: grid slot (>= 0), or -1 loop,
 * -2 register dim, -3 local. */
int fl_cuda_mma_var_role(const fl_graph *g, const fl_group *gr, int m, int var);
/* The steps of group m's key loop: its keys over the keys a step, rounded up. */
int64_t fl_cuda_mma_steps(const fl_mma_group *m);
/* Are expressions a (in member ma) and b (in mb) the same, variables
 * compared by their roles in the group? */
int fl_cuda_mma_same_expr(const fl_graph *g, const fl_group *gr, int ma, int a, int mb, int b);

#endif
