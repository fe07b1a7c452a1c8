/* The warp-specialized wgmma kernel (see core/fl_cuda_mma.h): a loader
 * warpgroup, computing warpgroups, their barriers and register budgets,
 * and the tensor maps; the steps themselves are fl_cuda_mma.c's. */
#include "fl_cuda_mma_printer.h"
#include "fl_cuda_sched.h"

#include <stdio.h>
#include <string.h>

/* ---- warp-specialized wgmma kernels ----
 *
 * Warpgroups 0 .. wgs-1 compute (64 query rows each, as in the plain
 * kernel); warpgroup wgs loads: one of its threads walks the same steps
 * and has the tensor memory accelerator copy each step's keys and values
 * into one of `stages` tiles. Each tile has two barriers: full (the
 * copy's bytes have landed) and empty (every computing thread is done
 * reading it). Fresh barriers count as having completed a phase of
 * parity 1, so the first pass over the tiles waits on nothing. The
 * loader keeps few registers (setmaxnreg) and hands the rest to the
 * computing warpgroups. */

/* Registers a thread of each warpgroup, multiples of 8, at most 240. The
 * block holds what it was launched with, 64K / threads rounded down to 8 a
 * thread (168 at 384 threads, 128 at 512); setmaxnreg only moves registers
 * between its warpgroups, and an increase the pool cannot give waits
 * forever. Taking tiles from a counter, the loader computes each tile's
 * rows and offsets from a number in a register (not the block's, which
 * ptxas keeps in uniform registers). Beside two computing warpgroups it
 * keeps 24 all the same and spills 20 bytes, once a tile: at 32 the
 * others would get 232 and spill in their loop. Beside three it gets 40
 * (at 32 it still spilled 8-16 bytes), and they 152. */
int mma_ws_loader_regs(const fl_mma_group *m, int persistent) {
  int dynamic = FL_WS_DYNAMIC && persistent && m->wgs == 3;
  return dynamic && FL_WS_LOADER_REGS < 40 ? 40 : FL_WS_LOADER_REGS;
}

/* Do the computing warpgroups of a pipelined step take turns to issue
 * (FL_WS_PINGPONG)? */
int mma_ws_pingpong(const fl_mma_group *m) {
  return m->ws && m->pipe && (FL_WS_PINGPONG > 1 || (FL_WS_PINGPONG == 1 && m->wgs == 2));
}

int mma_ws_compute_regs(const fl_mma_group *m, int persistent) {
  int threads = 128 * (m->wgs + 1), launched = 65536 / threads / 8 * 8;
  int r = (launched * (m->wgs + 1) - mma_ws_loader_regs(m, persistent)) / m->wgs / 8 * 8;
  return r > 240 ? 240 : r;
}

/* Barriers: Q's, then a stage each of keys full, values full, keys empty,
 * values empty; persistent, Q's empty, two words for tiles' numbers and
 * their two barriers. */
static int ws_barriers(const fl_mma_group *m) { return 5 + 4 * m->stages; }

/* Does m load operand o? Every one, but for a chain of its own in a
 * block (FL_WS_CHAINS): the ones its members read. */
static int loads_op(const fl_mma_group *m, int o) {
  if (m->chains < 2) return 1;
  for (int i = 0; i < m->ntv; i++)
    if (m->tv_q[i] == o || m->tv_k[i] == o) return 1;
  for (int i = 0; i < m->na; i++)
    if (m->a_v[i] == o) return 1;
  return 0;
}

/* Does only chain `only` of the two (c) load operand o? */
static int loads_alone(const fl_mma_group *c, int only, int o) {
  return loads_op(&c[only], o) && !loads_op(&c[!only], o);
}

/* A chain a block: an operand only the second chain loads takes the
 * tiles of an earlier one of the same role and size only the first
 * loads (in order: its keys the first's keys); -1 where it has its own. */
int mma_shared_tiles(const fl_mma_group *m, int o) {
  if (m->chains < 2) return -1;
  fl_mma_group c[2];
  for (int i = 0; i < 2; i++) fl_cuda_mma_chain(m, i, &c[i]);
  if (!loads_alone(c, 1, o)) return -1;
  int rank = 0;
  for (int p = 0; p < o; p++) rank += m->op[p].role == m->op[o].role && loads_alone(c, 1, p);
  for (int p = 0; p < o; p++)
    if (m->op[p].role == m->op[o].role && loads_alone(c, 0, p) && rank-- == 0)
      return mma_smem_bytes(m, p) == mma_smem_bytes(m, o) ? p : -1;
  return -1;
}

static int64_t tiles_bytes(const fl_mma_group *m) {
  int64_t n = 0;
  for (int o = 0; o < m->nops; o++)
    if (mma_shared_tiles(m, o) < 0) n += mma_smem_bytes(m, o) * mma_buffers(m, o);
  return n + m->nb * m->stages * mma_tile_input_bytes(m) + mma_ones_bytes(m);
}

int64_t fl_cuda_mma_smem(const fl_mma_group *m) {
  int64_t n = tiles_bytes(m);
  if (m->hopper) n += 1024; /* room to align the panels */
  if (m->ws) n += ws_barriers(m) * 8;
  return n;
}

static int64_t role_bytes(const fl_mma_group *m, fl_mma_role role) {
  int64_t n = 0;
  for (int o = 0; o < m->nops; o++)
    if (m->op[o].role == role && loads_op(m, o)) n += mma_smem_bytes(m, o);
  return n;
}

/* A box of 64 positions of the last dim by the tile's rows, a box a panel. */
void mma_put_tmaps(const fl_graph *g, const fl_mma_group *m, fl_cuda_kernel *kd) {
  kd->ntmaps = 0;
  for (int o = 0; m->ws && o < m->nops; o++) {
    const fl_mma_operand *op = &m->op[o];
    fl_cuda_tmap *t = &kd->tmap[kd->ntmaps++];
    t->value = g->exprs[op->load].src;
    t->f16 = m->dt == FL_F16;
    t->dims[0] = (uint64_t)op->width, t->dims[1] = (uint64_t)op->plane_rows, t->dims[2] = (uint64_t)op->planes;
    t->strides[0] = (uint64_t)op->width * 2, t->strides[1] = (uint64_t)(op->plane_rows * op->width * 2);
    t->box[0] = 64, t->box[1] = (unsigned)mma_op_rows(m, op), t->box[2] = 1;
  }
  for (int i = 0; i < m->nb; i++) {
    fl_cuda_tmap *t = &kd->tmap[kd->ntmaps++];
    t->value = m->b[i].src;
    t->f16 = m->dt == FL_F16;
    t->dims[0] = (uint64_t)m->keys, t->dims[1] = (uint64_t)m->rows, t->dims[2] = (uint64_t)m->b[i].planes;
    t->strides[0] = (uint64_t)m->keys * 2, t->strides[1] = (uint64_t)(m->rows * m->keys * 2);
    t->box[0] = 64, t->box[1] = (unsigned)mma_block_rows(m), t->box[2] = 1;
  }
}

/* The copies of every operand of `role`: rows from `r0` into tile
 * `base`<o> (+ `stage` tiles), completing on barrier `bar`. A stage's
 * tiles in a cluster: each block copies every other panel into both. */
static void put_tma(printer *P, fl_mma_role role, const char *base, const char *stage, const char *r0,
                    const char *bar) {
  const fl_mma_group *m = P->m;
  int panel = 0;
  for (int o = 0; o < m->nops; o++) {
    const fl_mma_operand *op = &m->op[o];
    if (op->role != role || !loads_op(m, o)) continue;
    char tile[64];
    if (stage) snprintf(tile, sizeof tile, "%s%d + %s * %lldu", base, o, stage, (long long)mma_smem_bytes(m, o));
    else snprintf(tile, sizeof tile, "%s%d", base, o);
    for (int p = 0; p < op->width / 64; p++, panel++) {
      if (stage && m->cluster > 1)
        line(P, "if (cr == %du) fl_tma3_mc(%s + %lldu, &tm%d, %d, (int)(%s), pl%d, %s, 3);", panel % 2, tile,
             (long long)(p * mma_op_rows(m, op) * 128), o, p * 64, r0, o, bar);
      else
        line(P, "fl_tma3(%s + %lldu, &tm%d, %d, (int)(%s), pl%d, %s);", tile, (long long)(p * mma_op_rows(m, op) * 128),
             o, p * 64, r0, o, bar);
    }
  }
}

/* A computing thread done with a stage's tile (empty barrier `bar`),
 * under `cond`; in a cluster the other block's loader waits for it too. */
static void put_release(printer *P, const char *cond, const char *bar) {
  if (P->m->cluster > 1) /* a warp at a time: the other block's barrier is remote */
    line(P, "%s{ __syncwarp(); if (lane == 0) fl_bar_arrive(%s), fl_bar_arrive_peer(%s, cr ^ 1u); }", cond, bar, bar);
  else
    line(P, "%sfl_bar_arrive(%s);", cond, bar);
}

/* Q's tile; persistent, once the previous tile's is done with. */
static void put_ws_q_load(printer *P) {
  if (FL_DBG_NOQ) return;
  if (P->persistent) line(P, "if (it) fl_bar_wait(bqe, (it - 1u) & 1u);");
  line(P, "fl_bar_expect(bq, %lldu);", (long long)role_bytes(P->m, FL_MMA_Q));
  put_tma(P, FL_MMA_Q, "so", NULL, "row0", "bq");
}

/* The loader's tile: Q's tile and the steps' keys and values. Persistent,
 * the first step's keys go before Q (the last tile may still be reading
 * its Q), and a tile of no steps still gets its Q. */
static void put_ws_loads(printer *P) {
  const fl_mma_group *m = P->m;
  char r0[48];
  if (!P->persistent) put_ws_q_load(P);
  else line(P, "bool qd = false; /* Q's tile issued */");
  mma_put_next(P, "st", "clo");
  line(P, "for (; st < chi; ++i) {");
  P->c.depth++;
  line(P, "const unsigned s = i %% %du, ph = (i / %du) & 1u;", m->stages, m->stages);
  snprintf(r0, sizeof r0, "st * %lldLL", (long long)m->step);
  line(P, "fl_bar_wait(bke + s * 8u, ph ^ 1u);");
  line(P, "fl_bar_expect(bkf + s * 8u, %lldu);", (long long)role_bytes(m, FL_MMA_K));
  put_tma(P, FL_MMA_K, "sb", "s", r0, "bkf + s * 8u");
  if (P->persistent) {
    mma_open_if(P, "!qd");
    put_ws_q_load(P);
    line(P, "qd = true;");
    mma_close_if(P);
  }
  line(P, "fl_bar_wait(bve + s * 8u, ph ^ 1u);");
  line(P, "fl_bar_expect(bvf + s * 8u, %lldu);", (long long)(role_bytes(m, FL_MMA_V) + m->nb * mma_tile_input_bytes(m)));
  put_tma(P, FL_MMA_V, "sb", "s", r0, "bvf + s * 8u");
  for (int i = 0; i < m->nb; i++)
    for (int p = 0; p < m->step / 64; p++)
      line(P, "fl_tma3(sbb%d + s * %lldu + %lldu, &tm%d, (int)(%s) + %d, (int)(row0), plb%d, bvf + s * 8u);", i,
           (long long)mma_tile_input_bytes(m), (long long)(p * mma_block_rows(m) * 128), m->nops + i, r0, p * 64, i);
  mma_put_next(P, "nx", "st + 1");
  line(P, "st = nx;");
  P->c.depth--;
  line(P, "}");
  if (P->persistent) {
    mma_open_if(P, "!qd");
    put_ws_q_load(P);
    mma_close_if(P);
  }
}

/* Dynamic (FL_WS_DYNAMIC): a block's first tile is its number; the k-th
 * after it (k = it - 1) comes from a counter after the fixup flags, taken
 * by a computing thread once the tile before has its Q, through word
 * k % 2 at bts and barrier k % 2 at btn. Q's barrier is why no reader is
 * a phase behind when the word and barrier are used again, two tiles on:
 * it completes only after every computing thread has released the last
 * tile's Q (having read its number) and after the loader has read the
 * number of the tile it loads. The thread takes it, not the loader:
 * taken by the loader, ptxas spilled. */
static void put_dynamic_tile(printer *P) {
  line(P, "unsigned tile = blockIdx.x;");
  mma_open_if(P, "it");
  line(P, "const unsigned k = it - 1u;");
  line(P, "fl_bar_wait(btn + (k & 1u) * 8u, (k >> 1) & 1u);");
  line(P, "tile = fl_lds32(bts + (k & 1u) * 4u);");
  mma_close_if(P);
}

static void put_take_next(printer *P) {
  mma_open_if(P, "tid == 0");
  line(P, "fl_sts32(bts + (it & 1u) * 4u, gridDim.x + fl_take(fix + %lld));", (long long)P->positions + 1);
  line(P, "fl_bar_arrive(btn + (it & 1u) * 8u); /* the next tile's number */");
  mma_close_if(P);
}

/* Persistent: `for` each of the block's tiles (it counts them), its
 * rows, grid position and schedule; closed by mma_close_if. The blocks take a
 * wave of tiles at a time, every other wave in reverse order: tiles come
 * longest first (see put_block_order), so a block that took a long one in
 * one wave takes a short one in the next. */
static void open_tiles(printer *P) {
  line(P, "for (unsigned it = 0;; ++it) {");
  P->c.depth++;
  if (FL_WS_DYNAMIC) put_dynamic_tile(P);
  else line(P, "const unsigned tile = it * gridDim.x + (it & 1u ? gridDim.x - 1u - blockIdx.x : blockIdx.x);");
  line(P, "if (tile >= %lluu) break;", (unsigned long long)mma_tiles_count(P->g, P->m));
  mma_put_block(P);
  mma_put_schedule(P);
}

/* A chain a block: `put` for the block's chain, P->m its members. */
static void put_each_chain(printer *P, void (*put)(printer *)) {
  const fl_mma_group *m = P->m;
  fl_mma_group c[2];
  for (int i = 0; i < 2; i++) fl_cuda_mma_chain(m, i, &c[i]);
  for (int i = 0; i < 2; i++) {
    line(P, i ? "} else {" : "if (ch == 0u) {");
    P->c.depth++;
    P->m = &c[i];
    put(P);
    P->c.depth--;
  }
  line(P, "}");
  P->m = m;
}

static void put_ws_loader(printer *P) {
  const fl_mma_group *m = P->m;
  char cond[32];
  if (FL_WS_SETMAXNREG) line(P, "fl_regs_dec<%d>();", mma_ws_loader_regs(m, P->persistent));
  snprintf(cond, sizeof cond, "tid == %d", FL_MMA_THREADS * m->wgs);
  mma_open_if(P, cond);
  line(P, "unsigned i = 0; /* steps loaded, over every tile */");
  if (P->persistent) open_tiles(P);
  if (m->chains > 1) put_each_chain(P, put_ws_loads);
  else put_ws_loads(P);
  if (P->persistent) mma_close_if(P);
  mma_close_if(P);
}

/* FL_DBG_STAMPS (timing only): thread 0 of each computing warpgroup notes
 * the global timer (ns) at the block's start (t0), once Q is in (tq), after
 * the tile's first step (t1, pipelined steps only), after its last (t2) and
 * after its outputs (t3); the last warpgroup to finish prints a line each,
 * the first 65536 (bench/stamps.py reads them): where a block's time goes,
 * beside the steps. */
static void put_stamp(printer *P, const char *t) {
  if (FL_DBG_STAMPS) line(P, "asm volatile(\"mov.u64 %%0, %%%%globaltimer;\" : \"=l\"(%s));", t);
}

static void put_stamps_print(printer *P) {
  if (!FL_DBG_STAMPS) return;
  int w = P->m->wgs;
  put_stamp(P, "fl_t3");
  line(P, "static __device__ unsigned long long fl_st[65536][6];");
  line(P, "static __device__ unsigned fl_stn;");
  mma_open_if(P, "(tid & 127) == 0");
  line(P, "unsigned smid; asm volatile(\"mov.u32 %%0, %%%%smid;\" : \"=r\"(smid));");
  if (P->persistent)
    line(P, "const unsigned e = tile * %du + wg, n = %lluu * %du;", w, (unsigned long long)mma_tiles_count(P->g, P->m), w);
  else line(P, "const unsigned e = (blockIdx.x + gridDim.x * blockIdx.y) * %du + wg, n = gridDim.x * gridDim.y * %du;", w, w);
  mma_open_if(P, "e < 65536u");
  line(P, "fl_st[e][0] = fl_t0, fl_st[e][1] = fl_tq, fl_st[e][2] = fl_t1, fl_st[e][3] = fl_t2, fl_st[e][4] = fl_t3;");
  line(P, "fl_st[e][5] = (unsigned long long)smid << 32 | (lo < hi ? 1u << 31 : 0u) | i;");
  mma_close_if(P);
  line(P, "__threadfence();");
  mma_open_if(P, "atomicAdd(&fl_stn, 1u) == n - 1u");
  line(P, "__threadfence();");
  line(P, "for (unsigned b = 0; b < n && b < 65536u; ++b)");
  line(P, "  printf(\"ST %%u %%u %%u %%llu %%llu %%llu %%llu %%llu %%u\\n\", b / %du, b %% %du, (unsigned)(fl_st[b][5] >> 32),", w, w);
  line(P, "         fl_st[b][0], fl_st[b][1], fl_st[b][2], fl_st[b][3], fl_st[b][4], (unsigned)fl_st[b][5]);");
  line(P, "fl_stn = 0;");
  mma_close_if(P);
  mma_close_if(P);
}

/* Pipelined: the previous step's values' tile of operand o (stage ps). */
static void put_previous_values(printer *P, int o) {
  line(P, "const unsigned sp%d = sb%d + ps * %lldu;", o, o, (long long)mma_smem_bytes(P->m, o));
}

/* The start of a step of the computing warpgroups: its stage and phase,
 * keys, the stage's tiles (and, pipelined, the previous step's values at
 * sp<o>), the next step, whether it is this warpgroup's. */
static void put_ws_step_head(printer *P) {
  const fl_mma_group *m = P->m;
  line(P, "const unsigned s = i %% %du, ph = (i / %du) & 1u;", m->stages, m->stages);
  mma_put_step_keys(P);
  for (int o = 0; o < m->nops; o++) {
    if (mma_buffers(m, o) == 1) continue;
    line(P, "const unsigned so%d = sb%d + s * %lldu;", o, o, (long long)mma_smem_bytes(m, o));
    if (m->pipe && m->op[o].role == FL_MMA_V) put_previous_values(P, o);
  }
  mma_put_next(P, "nx", "st + 1");
  mma_put_mine(P);
}

/* A step of the computing warpgroups: they wait for every step's tiles
 * (the barriers' phases must be followed) and release them, whether the
 * step is theirs or not. */
static void put_ws_step(printer *P) {
  line(P, "for (; st < chi; ++i) {");
  P->c.depth++;
  put_ws_step_head(P);
  line(P, "fl_bar_wait(bkf + s * 8u, ph);");
  mma_open_if(P, "mine");
  mma_put_scores(P);
  put_release(P, "", "bke + s * 8u");
  if (P->m->nb) line(P, "fl_bar_wait(bvf + s * 8u, ph); /* the tile inputs came with the values */");
  mma_put_bodies(P);
  P->c.depth--;
  line(P, "} else {");
  P->c.depth++;
  put_release(P, "", "bke + s * 8u");
  P->c.depth--;
  line(P, "}");
  line(P, "fl_bar_wait(bvf + s * 8u, ph);");
  mma_open_if(P, "mine");
  mma_put_products(P);
  mma_close_if(P);
  put_release(P, "", "bve + s * 8u");
  line(P, "st = nx;");
  P->c.depth--;
  line(P, "}");
}

/* A pipelined step of the computing warpgroups: this step's scores are
 * issued with the previous step's product (from its values' tile, still
 * held), the body runs while both are in flight, the weighted sums are
 * rescaled once the product has landed, and only then is the previous
 * values' tile released. */
static void put_ws_step_pipe(printer *P) {
  const fl_mma_group *m = P->m;
  const int pingpong = mma_ws_pingpong(m);
  line(P, "bool pm = false; /* the previous step's product is still to be issued */");
  line(P, "unsigned ps = 0, pph = 0; /* the previous step's stage and phase */");
  for (int i = 0; i < m->na; i++) line(P, "unsigned pk%d[%lld][4];", i, (long long)(m->step / 16));
  line(P, "const unsigned i0 = i; /* the tile's first step */");
  if (pingpong) {
    line(P, "const int next_turn = 1 + (wg + 1) %% %d; /* the next warpgroup's barrier */", m->wgs);
    line(P, "if (wg == %d) fl_named_arrive(1, %d); /* the first turn is warpgroup 0's */", m->wgs - 1,
         2 * FL_MMA_THREADS);
  }
  line(P, "for (; st < chi; ++i) {");
  P->c.depth++;
  put_ws_step_head(P);
  if (!m->split) mma_put_deferred_factors(P);
  line(P, "fl_bar_wait(bkf + s * 8u, ph);");
  line(P, "if (i > i0) fl_bar_wait(bvf + ps * 8u, pph);");
  char turn[96];
  snprintf(turn, sizeof turn, "fl_named_arrive(next_turn, %d);", 2 * FL_MMA_THREADS);
  if (pingpong) line(P, "fl_named_sync(1 + wg, %d); /* this warpgroup's turn to issue */", 2 * FL_MMA_THREADS);
  mma_put_pipe_issue(P, pingpong ? turn : NULL);
  put_release(P, "", "bke + s * 8u");
  if (m->nb) line(P, "fl_bar_wait(bvf + s * 8u, ph); /* the tile inputs came with the values */");
  mma_put_pipe_body(P);
  mma_put_pipe_rescale(P);
  put_release(P, "if (i > i0) ", "bve + ps * 8u");
  if (FL_DBG_STAMPS) {
    mma_open_if(P, "i == i0");
    put_stamp(P, "fl_t1");
    mma_close_if(P);
  }
  line(P, "pm = mine, ps = s, pph = ph;");
  line(P, "st = nx;");
  P->c.depth--;
  line(P, "}");
  if (pingpong) line(P, "if (wg == 0) fl_named_sync(1, %d); /* the last turn handed on */", 2 * FL_MMA_THREADS);
  /* the last step's product */
  put_stamp(P, "fl_t2");
  mma_open_if(P, "i > i0");
  line(P, "fl_bar_wait(bvf + ps * 8u, pph);");
  mma_open_if(P, "pm");
  for (int o = 0; o < m->nops; o++)
    if (m->op[o].role == FL_MMA_V) put_previous_values(P, o);
  mma_put_wgmma_products(P, "sp", 1);
  mma_close_if(P);
  if (P->persistent) line(P, "fl_bar_arrive(bve + ps * 8u); /* the next tile's steps reuse the stage */");
  mma_close_if(P);
}

/* The computing warpgroups' steps over the tile, once Q is in. */
static void put_ws_steps(printer *P) {
  if (!FL_DBG_NOQ) line(P, "fl_bar_wait(bq, %s);", P->persistent ? "it & 1u" : "0");
  if (FL_DBG_STAMPS) line(P, "unsigned long long fl_tq, fl_t1 = 0, fl_t2, fl_t3;");
  put_stamp(P, "fl_tq");
  if (P->persistent && FL_WS_DYNAMIC) put_take_next(P);
  mma_put_q_fragments(P);
  mma_put_next(P, "st", "clo");
  if (P->m->pipe) put_ws_step_pipe(P);
  else put_ws_step(P);
  if (P->persistent) line(P, "fl_bar_arrive(bqe); /* done with Q's tile */");
}

static void put_handover(printer *P, const fl_mma_group *c, const int *at, int out, const char *slot);

/* The running state (m's members) set to the one named from `other` on. */
static void put_state_copy(printer *P, const fl_mma_group *m, int other) {
  for (int k = 0; k < 3; k++) {
    int count = k == 0 ? m->nx : k == 1 ? m->ns : m->na;
    const char *name = k == 0 ? "mx" : k == 1 ? "ls" : "oa", *first = k < 2 ? "[0]" : "[0][0]";
    for (int i = 0; i < count; i++) {
      line(P, "#pragma unroll");
      line(P, "for (int j = 0; j < %d; ++j) (&%s%d%s)[j] = (&%s%d%s)[j];", k < 2 ? 2 : 4 * mma_acc_tiles(m, i), name, i,
           first, name, other + i, first);
    }
  }
}

/* A block in parts (fl_cuda_parts): each warp stores its state in its
 * piece and takes its rows' ticket; the last part to take it sets it
 * back to zero for the next launch and merges every part's state, in
 * the parts' order (a launch gives the same numbers as the last), before
 * the outputs. Stored, fenced, then counted: the last finds every piece
 * in, with no wait. */
static void put_parts_merge(printer *P) {
  const fl_mma_group *m = P->m;
  const long long F = (long long)mma_ws_state_floats(m), W = m->wgs * 4;
  const long long tk0 = (long long)fl_cuda_words_after_flags(P->positions);
  const int zero[3] = {0, 0, 0}, other[3] = {FL_MMA_MAX, FL_MMA_MAX, FL_MMA_MAX};
  char slot[64];
  line(P, "bool fin = true; /* the warp stores the outputs */");
  mma_open_if(P, "parted");
  line(P, "float sv[%lld]; /* this part's state */", F);
  put_handover(P, m, zero, 1, "sv[@]");
  line(P, "const unsigned cw = (lin + tl - nk) * %lldu + warp; /* the block's warp */", W);
  line(P, "const long long tk0 = %lldLL; /* the tickets, then the pieces */", tk0);
  line(P, "unsigned *const tk = (unsigned *)fix + tk0 + cw;");
  line(P, "float *const hp = (float *)fix + tk0 + (tl * %lldu + 31u) / 32u * 32u", W);
  line(P, "  + (long long)cw * tp * %lldLL + lane; /* the warp's pieces, this lane's floats */", F * 32);
  line(P, "#pragma unroll");
  line(P, "for (int j = 0; j < %lld; ++j) __stcg(hp + (part * %lldu + j) * 32u, sv[j]);", F, F);
  line(P, "__threadfence();");
  line(P, "__syncwarp();");
  line(P, "unsigned tn = 0u;");
  line(P, "if (lane == 0) tn = atomicAdd(tk, 1u);");
  line(P, "fin = __shfl_sync(0xffffffffu, tn, 0) == tp - 1u;");
  mma_open_if(P, "fin");
  line(P, "if (lane == 0) *tk = 0u; /* for the next launch */");
  line(P, "__threadfence();");
  line(P, "#pragma unroll 1");
  line(P, "for (unsigned q = 0; q < tp; ++q) { /* in the parts' order, whichever came last: the same sums */");
  P->c.depth++;
  snprintf(slot, sizeof slot, "__ldcg(hp + (q * %lldu + @) * 32u)", F);
  put_handover(P, m, other, 0, slot);
  line(P, "if (q == 0u) {");
  P->c.depth++;
  put_state_copy(P, m, FL_MMA_MAX);
  P->c.depth--;
  line(P, "} else {");
  P->c.depth++;
  mma_put_merge(P, FL_MMA_MAX);
  P->c.depth--;
  line(P, "}");
  P->c.depth--;
  line(P, "}");
  mma_close_if(P);
  mma_close_if(P);
}

/* The computing warpgroups' tile: Q, the steps, the outputs. */
static void put_ws_computes(printer *P) {
  put_ws_steps(P);
  if (P->parts) {
    put_parts_merge(P);
    mma_open_if(P, "fin");
  }
  mma_put_finish(P);
  if (P->parts) mma_close_if(P);
  put_stamps_print(P);
}

/* Template tpl with every '@' replaced by idx. */
static void fill_in(char *dst, size_t size, const char *tpl, const char *idx) {
  size_t n = 0, k = strlen(idx);
  for (; *tpl && n + k + 1 < size; tpl++)
    if (*tpl == '@') memcpy(dst + n, idx, k), n += k;
    else dst[n++] = *tpl;
  dst[n] = 0;
}

/* A chain's state (c: its members, names from its first of each kind
 * `at`) written to (`out`) or read from `slot`, a float at a time, in one
 * order: `slot` is the float's place with '@' for its index. Plain
 * stores: an accumulator passed to an asm store (fl_sts32) made ptxas
 * serialize every wgmma of the kernel (C7514; differential D=128 453
 * TFLOP/s against 462 for the kernel without chains). */
static void put_handover(printer *P, const fl_mma_group *c, const int *at, int out, const char *slot) {
  int n = 0;
  char name[16], idx[24], place[160];
  for (int k = 0; k < 3; k++) {
    int count = k == 0 ? c->nx : k == 1 ? c->ns : c->na;
    for (int i = 0; i < count; i++) {
      int floats = k < 2 ? 2 : 4 * mma_acc_tiles(c, i);
      const char *first = k < 2 ? "[0]" : "[0][0]";
      snprintf(name, sizeof name, "%s%d", k == 0 ? "mx" : k == 1 ? "ls" : "oa", at[k] + i);
      if (!out && k < 2) line(P, "float %s[2];", name);
      if (!out && k == 2) line(P, "float %s[%d][4];", name, floats / 4);
      snprintf(idx, sizeof idx, "%d + j", n);
      fill_in(place, sizeof place, slot, idx);
      line(P, "#pragma unroll");
      if (out) line(P, "for (int j = 0; j < %d; ++j) %s = (&%s%s)[j];", floats, place, name, first);
      else line(P, "for (int j = 0; j < %d; ++j) (&%s%s)[j] = %s;", floats, name, first, place);
      n += floats;
    }
  }
}

int64_t mma_ws_state_floats(const fl_mma_group *c) {
  int64_t n = 2 * (c->nx + c->ns);
  for (int i = 0; i < c->na; i++) n += 4 * mma_acc_tiles(c, i);
  return n;
}

/* A chain a block (FL_WS_CHAINS): after the fixup flags (positions
 * and two words), a ticket a warp of a tile, then the state a warp of a
 * tile leaves for the other chain's warp, 32 floats a float of a thread's
 * state (a warp's stores whole lines); both from 128-byte boundaries. */
typedef struct pair_words {
  int64_t tickets, states, floats, total; /* offsets from fix; floats a thread; words after the flags */
} pair_words;

static pair_words chain_words(const fl_graph *g, const fl_mma_group *m, int64_t positions) {
  pair_words w = {0};
  if (m->chains < 2) return w;
  fl_mma_group c[2];
  for (int i = 0; i < 2; i++) fl_cuda_mma_chain(m, i, &c[i]);
  int64_t f0 = mma_ws_state_floats(&c[0]), f1 = mma_ws_state_floats(&c[1]), warps = mma_tiles_count(g, m) * m->wgs * 4;
  w.floats = f0 > f1 ? f0 : f1;
  w.tickets = fl_cuda_words_after_flags(positions);
  w.states = w.tickets + (warps + 31) / 32 * 32;
  w.total = w.states + warps * w.floats * 32 - (positions + 2);
  return w;
}

int64_t mma_ws_scratch_words(const fl_graph *g, const fl_mma_group *m, int64_t positions) {
  return chain_words(g, m, positions).total;
}

/* A chain's steps on its own state, then the state packed into sv. */
static void put_chain_steps(printer *P) {
  const int zero[3] = {0, 0, 0};
  mma_put_state(P);
  put_ws_steps(P);
  put_handover(P, P->m, zero, 1, "sv[@]");
}

/* A chain a block (FL_WS_CHAINS): every computing warpgroup runs the block's
 * chain, each warp then packs its state (sv) and takes its rows' ticket.
 * The first of the two chains' warps stores its state and marks it in
 * (+2); the second waits for the mark, sets the ticket back to zero for
 * the next launch (the first has done with it) and stores the outputs
 * from both states. The wait is short: the first is running, past its
 * steps. */
static void put_ws_chain_blocks(printer *P) {
  const fl_mma_group *m = P->m;
  fl_mma_group c[2];
  for (int i = 0; i < 2; i++) fl_cuda_mma_chain(m, i, &c[i]);
  const pair_words w = chain_words(P->g, m, P->positions);
  const int zero[3] = {0, 0, 0}, at[3] = {m->nc0[1], m->nc0[2], m->nc0[3]};
  line(P, "float sv[%lld]; /* the block's chain's state */", (long long)w.floats);
  put_each_chain(P, put_chain_steps);
  line(P, "const unsigned cw = lin * %du + warp; /* this warp's rows' word */", m->wgs * 4);
  line(P, "unsigned *const tk = (unsigned *)fix + %lldLL + cw; /* their ticket */", (long long)w.tickets);
  line(P, "float *const hp = (float *)fix + %lldLL + (long long)cw * %lldLL + lane; /* the first's state */",
       (long long)w.states, (long long)w.floats * 32);
  line(P, "__syncwarp();");
  line(P, "unsigned tn = 0; /* the warp's ticket: 0 first */");
  line(P, FL_DBG_NOCOMBINE ? "tn = 1u; /* timing only */" : "if (lane == 0) tn = atomicAdd(tk, 1u);");
  line(P, "tn = __shfl_sync(0xffffffffu, tn, 0);");
  mma_open_if(P, "tn == 0u");
  line(P, "#pragma unroll");
  line(P, "for (int j = 0; j < %lld; ++j) __stcg(hp + j * 32, sv[j]);", (long long)w.floats);
  line(P, "__threadfence();");
  line(P, "__syncwarp();");
  line(P, "if (lane == 0) atomicAdd(tk, 2u); /* the state is in */");
  P->c.depth--;
  line(P, "} else {");
  P->c.depth++;
  mma_open_if(P, "lane == 0");
  if (!FL_DBG_NOCOMBINE) line(P, "while (*(volatile unsigned *)tk != 4u) __nanosleep(32);");
  line(P, "*tk = 0u;");
  mma_close_if(P);
  line(P, "__syncwarp();");
  line(P, "__threadfence();");
  put_handover(P, &c[0], zero, 0, FL_DBG_NOCOMBINE > 1 ? "sv[@]" : "(ch == 0u ? sv[@] : __ldcg(hp + (@) * 32))");
  put_handover(P, &c[1], at, 0, FL_DBG_NOCOMBINE > 1 ? "sv[@]" : "(ch == 0u ? __ldcg(hp + (@) * 32) : sv[@])");
  mma_put_finish(P);
  mma_close_if(P);
}

/* The tile of ones (1.0 in the operands' dtype), written by every thread
 * before the block's barrier. */
static void put_ones(printer *P) {
  const fl_mma_group *m = P->m;
  if (!mma_ones_bytes(m)) return;
  line(P, "#pragma unroll");
  line(P, "for (int j = tid; j < %lld; j += %d) fl_sts32(sone + j * 4u, %s);", (long long)mma_ones_bytes(m) / 4,
       FL_MMA_THREADS * (m->wgs + 1), m->dt == FL_BF16 ? "0x3F803F80u" : "0x3C003C00u");
  line(P, "fl_proxy_fence();");
}

void mma_put_ws(printer *P) {
  const fl_mma_group *m = P->m;
  int S = m->stages, n = FL_MMA_THREADS * m->wgs;
  if (FL_DBG_STAMPS) line(P, "unsigned long long fl_t0;");
  put_stamp(P, "fl_t0");
  line(P, "const unsigned bq = sm0 + %lldu, bkf = bq + 8u, bvf = bkf + %du, bke = bvf + %du, bve = bke + %du;",
       (long long)tiles_bytes(m), 8 * S, 8 * S, 8 * S);
  if (P->persistent) line(P, "const unsigned bqe = bve + %du, bts = bqe + 8u, btn = bts + 8u;", 8 * S);
  mma_open_if(P, "tid == 0");
  line(P, "fl_bar_init(bq, 1);");
  if (P->persistent) line(P, "fl_bar_init(bqe, %d), fl_bar_init(btn, 1), fl_bar_init(btn + 8u, 1);", n);
  line(P, "#pragma unroll");
  line(P, "for (int s = 0; s < %d; ++s) {", S);
  line(P, "  fl_bar_init(bkf + s * 8u, 1), fl_bar_init(bvf + s * 8u, 1);");
  const int e = m->cluster > 1 ? 2 * n / 32 : n; /* in a cluster a warp arrives, on both blocks' */
  line(P, "  fl_bar_init(bke + s * 8u, %d), fl_bar_init(bve + s * 8u, %d);", e, e);
  line(P, "}");
  line(P, "fl_bar_init_done();");
  mma_close_if(P);
  put_ones(P);
  /* in a cluster, both blocks' barriers are ready before either copies or arrives */
  line(P, m->cluster > 1 ? "fl_cluster_sync();" : "__syncthreads();");
  line(P, "if (wg == %d) {", m->wgs);
  P->c.depth++;
  put_ws_loader(P);
  P->c.depth--;
  line(P, "} else {");
  P->c.depth++;
  if (FL_WS_SETMAXNREG) line(P, "fl_regs_inc<%d>();", mma_ws_compute_regs(m, P->persistent));
  line(P, "unsigned i = 0; /* steps computed, over every tile */");
  if (P->persistent) {
    open_tiles(P);
    mma_put_state(P);
  }
  if (m->chains > 1) put_ws_chain_blocks(P);
  else put_ws_computes(P);
  if (P->persistent) mma_close_if(P);
  mma_close_if(P);
  if (m->cluster > 1) line(P, "fl_cluster_sync(); /* no block leaves while the other may still arrive on its barriers */");
}
