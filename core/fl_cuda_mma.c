/* Printing a fused attention group as a tensor-core kernel (see
 * core/fl_cuda_mma.h). The fixed parts (shared-memory tiles, the two
 * products, the pipeline) are printed around the group's own expressions,
 * which fl_cuda_expr prints in float. Each thread holds two query rows
 * (lane / 4 and lane / 4 + 8 of its warp's 16) and, of every 8 keys or
 * head-dim positions, two neighbours ((lane % 4) * 2 and + 1): the layout
 * of the m16n8k16 accumulator, element h of an 8-wide tile nt being row
 * h / 2, position nt * 8 + (lane % 4) * 2 + h % 2. */
#include "fl_cuda_mma_printer.h"
#include "fl_cuda_sched.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Device helpers of the tensor-core kernels, printed once a program. */
static const char MMA_PRELUDE[] =
  "__device__ __forceinline__ unsigned fl_smem(const void *p) {\n"
  "  unsigned r; asm(\"{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }\" : \"=r\"(r) : \"l\"(p)); return r;\n}\n"
  "__device__ __forceinline__ void fl_cp16(unsigned dst, const void *src, int bytes) {\n"
  "  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16, %2;\" :: \"r\"(dst), \"l\"(src), \"r\"(bytes));\n}\n"
  "__device__ __forceinline__ unsigned short fl_lds16(unsigned a) {\n"
  "  unsigned short x; asm volatile(\"ld.shared.u16 %0, [%1];\" : \"=h\"(x) : \"r\"(a)); return x;\n}\n"
  "__device__ __forceinline__ void fl_cp_commit() { asm volatile(\"cp.async.commit_group;\"); }\n"
  "__device__ __forceinline__ void fl_cp_wait() { asm volatile(\"cp.async.wait_group 0;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_cp_wait1() { asm volatile(\"cp.async.wait_group 1;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_ldm4(unsigned *r, unsigned a) {\n"
  "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\"\n"
  "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(a));\n}\n"
  "__device__ __forceinline__ void fl_ldm4t(unsigned *r, unsigned a) {\n"
  "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\"\n"
  "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(a));\n}\n"
  "#define FL_MMA(T) \\\n"
  "__device__ __forceinline__ void fl_mma_##T(float *c, const unsigned *a, unsigned b0, unsigned b1) { \\\n"
  "  asm(\"mma.sync.aligned.m16n8k16.row.col.f32.\" #T \".\" #T \".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\" \\\n"
  "               : \"+f\"(c[0]), \"+f\"(c[1]), \"+f\"(c[2]), \"+f\"(c[3]) \\\n"
  "               : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b0), \"r\"(b1)); \\\n"
  "}\n"
  "FL_MMA(bf16)\nFL_MMA(f16)\n"
  "__device__ __forceinline__ unsigned fl_pack_bf16(float lo, float hi) {\n"
  "  unsigned r; asm(\"cvt.rn.bf16x2.f32 %0, %1, %2;\" : \"=r\"(r) : \"f\"(hi), \"f\"(lo)); return r;\n}\n"
  "__device__ __forceinline__ unsigned fl_pack_f16(float lo, float hi) {\n"
  "  unsigned r; asm(\"cvt.rn.f16x2.f32 %0, %1, %2;\" : \"=r\"(r) : \"f\"(hi), \"f\"(lo)); return r;\n}\n"
  "/* max and min that keep NaNs, as the executor's do, in one instruction */\n"
  "__device__ __forceinline__ float fl_maxn(float a, float b) { float r; asm(\"max.NaN.f32 %0, %1, %2;\" : \"=f\"(r) : \"f\"(a), \"f\"(b)); return r; }\n"
  "__device__ __forceinline__ float fl_minn(float a, float b) { float r; asm(\"min.NaN.f32 %0, %1, %2;\" : \"=f\"(r) : \"f\"(a), \"f\"(b)); return r; }\n"
  "__device__ __forceinline__ float fl_quad_max(float v) {\n"
  "  v = fl_maxn(v, __shfl_xor_sync(0xffffffffu, v, 1)); return fl_maxn(v, __shfl_xor_sync(0xffffffffu, v, 2));\n}\n"
  "__device__ __forceinline__ float fl_quad_min(float v) {\n"
  "  v = fl_minn(v, __shfl_xor_sync(0xffffffffu, v, 1)); return fl_minn(v, __shfl_xor_sync(0xffffffffu, v, 2));\n}\n"
  "__device__ __forceinline__ float fl_quad_sum(float v) {\n"
  "  v += __shfl_xor_sync(0xffffffffu, v, 1); return v + __shfl_xor_sync(0xffffffffu, v, 2);\n}\n"
  "/* step s skipped? (tab: a block's classes of nt plan tiles, stride apart; a tile per spt steps, or tps tiles a step) */\n"
  "__device__ __forceinline__ bool fl_step_skipped(const signed char *tab, int s, int spt, int tps, int nt, int stride) {\n"
  "  const int t0 = s / spt * tps;\n"
  "  for (int t = 0; t < tps; ++t)\n"
  "    if (t0 + t < nt && tab[(long long)(t0 + t) * stride] != 0) return false;\n"
  "  return true;\n}\n"
  "/* the first step at or after s not skipped */\n"
  "__device__ __forceinline__ int fl_next_step(const signed char *tab, int s, int hi, int spt, int tps, int nt, int stride) {\n"
  "  while (tab && s < hi && fl_step_skipped(tab, s, spt, tps, nt, stride)) ++s;\n"
  "  return s;\n}\n\n";

/* Only with FL_PAIR_STORES (on by default; 0 leaves it out). */
static const char PAIR_PRELUDE[] =
  "/* elements i (even) and i + 1 in one store; cvt puts its first source in the upper half */\n"
  "__device__ __forceinline__ void fl_st2(float *p, long long i, float a, float b) { *(float2 *)(p + i) = make_float2(a, b); }\n"
  "__device__ __forceinline__ void fl_st2(fl_bf16 *p, long long i, float a, float b) {\n"
  "  unsigned u; asm(\"cvt.rn.bf16x2.f32 %0, %1, %2;\" : \"=r\"(u) : \"f\"(b), \"f\"(a)); *(unsigned *)(p + i) = u;\n}\n"
  "__device__ __forceinline__ void fl_st2(fl_f16 *p, long long i, float a, float b) {\n"
  "  unsigned u; asm(\"cvt.rn.f16x2.f32 %0, %1, %2;\" : \"=r\"(u) : \"f\"(b), \"f\"(a)); *(unsigned *)(p + i) = u;\n}\n";

const char *fl_cuda_mma_prelude(void) { return MMA_PRELUDE; }
/* Only with FL_QUAD_STORES (on by default). */
static const char QUAD_PRELUDE[] =
  "/* a quad's 4x4 words transposed: lane q's word p becomes lane p's word q (w[p] of lane q:\n"
  "   columns 8p + 2q, + 1 of a row; after: 8q + 2p, + 1, eight neighbours a lane) */\n"
  "__device__ __forceinline__ void fl_quad_transpose(unsigned *w) {\n"
  "  const bool o = threadIdx.x & 1u, t = threadIdx.x & 2u;\n"
  "  unsigned x = __shfl_xor_sync(0xffffffffu, o ? w[0] : w[1], 1); if (o) w[0] = x; else w[1] = x;\n"
  "  x = __shfl_xor_sync(0xffffffffu, o ? w[2] : w[3], 1); if (o) w[2] = x; else w[3] = x;\n"
  "  x = __shfl_xor_sync(0xffffffffu, t ? w[0] : w[2], 2); if (t) w[0] = x; else w[2] = x;\n"
  "  x = __shfl_xor_sync(0xffffffffu, t ? w[1] : w[3], 2); if (t) w[1] = x; else w[3] = x;\n}\n"
  "/* elements i (a multiple of 8) to i + 7 in one 16-byte store */\n"
  "template <typename T> __device__ __forceinline__ void fl_st8(T *p, long long i, const unsigned *w) {\n"
  "  *(uint4 *)(p + i) = make_uint4(w[0], w[1], w[2], w[3]);\n}\n";

const char *fl_cuda_mma_pair_prelude(void) { return FL_PAIR_STORES ? PAIR_PRELUDE : ""; }
const char *fl_cuda_mma_quad_prelude(void) { return FL_QUAD_STORES ? QUAD_PRELUDE : ""; }




static int index_in(const int *list, int n, int v) {
  for (int i = 0; i < n; i++)
    if (list[i] == v) return i;
  return -1;
}

/* ---- hooks for the expression printer ---- */


/* Register epilogue v at the current element, in a scope of its own. */
static int register_epilogue(printer *P, int v) {
  int scope = P->c.scope, t = P->c.tmp++;
  line(P, "float t%d;", t);
  line(P, "{");
  P->c.depth++;
  mma_put_vars(P, v, "ra[h >> 1]", "0", "e", 0);
  int x = fl_cx_emit(&P->c, v, P->g->vals[v].body);
  line(P, "t%d = t%d;", t, x);
  P->c.depth--;
  line(P, "}");
  P->c.scope = scope;
  return t;
}

static void put_tile_input_read(printer *P, int i, int t);

/* Score i's bias at the thread's first column of row `row` (see fold). */
static const char *bias_term(const printer *P, int i, const char *row) {
  static char b[48];
  snprintf(b, sizeof b, "%s(hv%d * dkr[%s])", P->bias_sign[i] < 0 ? "-" : "", P->bias[i], row);
  return b;
}

static int hook_member(fl_cx *c, const fl_expr *ex, const int *idx) {
  printer *P = c->user;
  const fl_mma_group *m = P->m;
  (void)idx;
  int i, t = c->tmp;
  if ((i = index_in(m->tv, m->ntv, ex->src)) >= 0 && P->elem && P->fold[i] && !P->raw) {
    if (P->bias[i] >= 0)
      line(P, "const float t%d = fmaf(s%d[nt][h], %.9ef, %s);", t, i, P->fold[i], bias_term(P, i, "h >> 1"));
    else
      line(P, "const float t%d = s%d[nt][h] * %.9ef;", t, i, P->fold[i]);
  } else if (i >= 0 && P->elem)
    line(P, "const float t%d = s%d[nt][h];", t, i);
  else if ((i = index_in(m->x, m->nx, ex->src)) >= 0)
    line(P, "const float t%d = %smx%d[%s]%s;", t, P->safe ? "fl_safe(" : "", i, P->row, P->safe ? ")" : "");
  else if ((i = index_in(m->s, m->ns, ex->src)) >= 0)
    line(P, "const float t%d = ls%d[%s];", t, i, P->row);
  else if ((i = index_in(m->a, m->na, ex->src)) >= 0 && P->elem)
    line(P, "const float t%d = oa%d[et][h];", t, i);
  else if ((i = index_in(m->e, m->ne, ex->src)) >= 0 && !m->e_reg[i])
    line(P, "const float t%d = ep%d[%s];", t, i, P->row);
  else if (i >= 0 && P->elem)
    return register_epilogue(P, ex->src);
  else if (P->at_key && (i = fl_cuda_mma_tile_input(m, ex->src)) >= 0)
    put_tile_input_read(P, i, t);
  else if (!P->hoisting && (i = index_in(P->inv, P->ninv, (int)(ex - P->g->exprs))) >= 0)
    line(P, "const float t%d = hv%d;", t, i);
  else if (ex->src >= m->k->first && ex->src < m->k->first + m->k->n) {
    c->err = "a member read where the tensor-core kernel does not hold it";
    return -1;
  } else {
    return -1;
  }
  return c->tmp++;
}

static int hook_reduce(fl_cx *c, int x) {
  printer *P = c->user;
  if (P->cur < 0 || x != P->m->tv_reduce[P->cur]) return -1;
  line(P, "const float t%d = s%d[nt][h];", c->tmp, P->cur);
  return c->tmp++;
}

static int hook_scaled(fl_cx *c, const fl_expr *ex, double *k, int *off) {
  printer *P = c->user;
  int i = index_in(P->m->tv, P->m->ntv, ex->src);
  if (i < 0 || !P->elem || !P->fold[i]) return -1;
  *off = -1;
  if (P->bias[i] >= 0) line(P, "const float t%d = %s;", *off = c->tmp++, bias_term(P, i, "h >> 1"));
  line(P, "const float t%d = s%d[nt][h];", c->tmp, i);
  *k = P->fold[i];
  return c->tmp++;
}

/* key - row (or row - key) at an element of a step whose keys are all
 * inside: the step's dkr[r] (its first key less the row) plus the
 * column's constant, one add instead of two. Exact, as the others are:
 * whole numbers below 2^24. */
static int hook_difference(fl_cx *c, int a, int b) {
  printer *P = c->user;
  if (!P->at_key || P->edge) return -1;
  const fl_group *gr = &P->m->k->tiles.gr;
  int ra = fl_cuda_mma_var_role(P->g, gr, c->scope, a), rb = fl_cuda_mma_var_role(P->g, gr, c->scope, b);
  int row = P->m->row_slot;
  if (ra == -1 && rb == row)
    line(P, "const float t%d = dkr[h >> 1] + (float)(nt * 8 + (h & 1));", c->tmp);
  else if (ra == row && rb == -1)
    line(P, "const float t%d = -dkr[h >> 1] - (float)(nt * 8 + (h & 1));", c->tmp);
  else
    return -1;
  return c->tmp++;
}

/* Is x a mask condition of the score being printed, on a tile where every
 * condition is known true? */
static int is_known_mask(const printer *P, int tv, int x) {
  if (!P->known) return 0;
  for (int k = 0; k < P->t->nmask; k++)
    if (P->t->mask_tv[k] == tv && P->t->mask[k] == x) return 1;
  return 0;
}

static int hook_known(fl_cx *c, int x) {
  printer *P = c->user;
  return P->cur >= 0 && is_known_mask(P, P->m->tv[P->cur], x);
}

/* ---- variables ---- */

/* A variable's value as a float: the element's row and key have theirs
 * (exact below 2^24, and an add an element rather than a conversion from
 * 64 bits); others are converted. */
static const char *float_of(const char *x, int d) {
  static char buf[24];
  if (strcmp(x, "rw") == 0) return "rwf";
  if (strcmp(x, "kc") == 0) return "kcf";
  snprintf(buf, sizeof buf, "(float)x%d", d);
  return buf;
}

/* Declares member v's variables: grid dims from the block, the query dim
 * `row`, loop dims `key`, the register dim `reg`; locals 0 if `locals`. */
void mma_put_vars(printer *P, int v, const char *row, const char *key, const char *reg, int locals) {
  const fl_value *val = &P->g->vals[v];
  int n = val->ndim + val->nred + (locals ? val->nloc : 0);
  for (int d = 0; d < n; d++) {
    int role = fl_cuda_mma_var_role(P->g, &P->m->k->tiles.gr, v, d);
    char gp[16];
    snprintf(gp, sizeof gp, "gp%d", role);
    int wide = d < val->ndim && sym_size(P, val->dims[d]) > 1;
    const char *x = role == P->m->row_slot ? row : role >= 0 ? gp : role == -1 ? key : role == -2 && wide ? reg : "0";
    line(P, "const long long x%d = %s;", d, x);
    line(P, "const float xf%d = %s;", d, float_of(x, d));
  }
}

/* Prints `dst += offset of load ld of member v` (variables in scope). */
static void put_offset(printer *P, int v, int ld, const char *dst) {
  const fl_expr *ex = &P->g->exprs[ld];
  const fl_value *src = &P->g->vals[ex->src];
  int64_t st[FL_MAX_DIMS];
  fl_cx_strides(P->g, src, st);
  for (int d = 0; d < ex->nargs; d++) {
    int t = fl_cx_emit(&P->c, v, ex->args[d]);
    line(P, "%s += fl_index(t%d, %lldLL, err) * %lldLL;", dst, t, (long long)sym_size(P, src->dims[d]),
         (long long)st[d]);
  }
}

/* ---- shared-memory tiles ---- */

int mma_block_rows(const fl_mma_group *m) { return FL_MMA_ROWS * m->wgs; }
/* The schedule's warpgroups of rows: the block's, or its cluster's. */
static int sched_wgs(const fl_mma_group *m) { return m->wgs * m->cluster; }
/* The warpgroup's rows among the schedule's: as it is numbered, or after
 * the other block's in its cluster. */
static const char *rows_wg(const fl_mma_group *m) {
  static char b[40];
  if (m->cluster < 2) return "wg";
  snprintf(b, sizeof b, "(int)cr * %d + wg", m->wgs);
  return b;
}
static int block_threads(const fl_mma_group *m) { return FL_MMA_THREADS * (m->wgs + m->ws); }
static int64_t row_blocks(const fl_mma_group *m) { return (m->rows + mma_block_rows(m) - 1) / mma_block_rows(m); }

/* Grid positions other than the query rows' (heads, batches). */
static int64_t grid_rest(const fl_graph *g, const fl_mma_group *m) {
  int64_t rest = 1;
  for (int s = 0; s < m->k->tiles.gr.ngrid; s++)
    if (s != m->row_slot) rest *= g->syms[m->k->tiles.gr.grid[s]].size;
  return rest;
}

/* The blocks of a block a tile; a persistent kernel's tiles. */
int64_t mma_tiles_count(const fl_graph *g, const fl_mma_group *m) { return row_blocks(m) * grid_rest(g, m); }

int64_t mma_op_rows(const fl_mma_group *m, const fl_mma_operand *o) {
  return o->role == FL_MMA_Q ? mma_block_rows(m) : m->step;
}

static int64_t op_limit(const fl_mma_group *m, const fl_mma_operand *o) {
  return o->role == FL_MMA_Q ? m->rows : m->keys;
}

/* Padded rows (mma.sync), or swizzled panels (wgmma: no padding). */
int64_t mma_smem_bytes(const fl_mma_group *m, int o) {
  return mma_op_rows(m, &m->op[o]) * (m->op[o].width + (m->hopper ? 0 : 8)) * 2;
}

/* The tile of ones (FL_WS_ONES): a panel of a step's rows where some row
 * sum comes from the products, else none. */
int64_t mma_ones_bytes(const fl_mma_group *m) {
  for (int i = 0; i < m->ns; i++)
    if (m->s_ones[i] >= 0) return m->step * 128;
  return 0;
}

/* Does weighted sum i's product carry the column of ones? */
static int carries_ones(const fl_mma_group *m, int i) {
  for (int j = 0; j < m->ns; j++)
    if (m->s_ones[j] == i) return 1;
  return 0;
}

/* The accumulator tiles of weighted sum i: 8 columns each. */
int mma_acc_tiles(const fl_mma_group *m, int i) { return m->op[m->a_v[i]].width / 8 + carries_ones(m, i); }

/* A tile input's tile (a step's keys by the block's rows), a stage. */
int64_t mma_tile_input_bytes(const fl_mma_group *m) { return mma_block_rows(m) * m->step * 2; }

/* Tile input i at the current score element: its row in the block, its
 * key in the step, from the stage's tile (panels of 64 keys, 128-byte swizzle). */
static void put_tile_input_read(printer *P, int i, int t) {
  char at[200];
  fl_cuda_wgmma_chunk_at(at, sizeof at, mma_block_rows(P->m), "(int)(ra[h >> 1] - row0)", "kj >> 3");
  line(P, "const float t%d = %s(fl_lds16(sbb%d + s * %lldu + (unsigned)(%s) + (kj & 7) * 2));", t,
       P->m->dt == FL_F16 ? "fl_f16_f" : "fl_bf16_f", i, (long long)mma_tile_input_bytes(P->m), at);
}

/* wgmma kernels keep two tiles of keys: the next step's load while this
 * one computes. Values take one, loaded while the scores are computed, or
 * two when pipelined (the previous step's are read while this step's load). */
int mma_buffers(const fl_mma_group *m, int o) {
  fl_mma_role r = m->op[o].role;
  if (m->ws) return r == FL_MMA_Q ? 1 : m->stages;
  return m->hopper && (r == FL_MMA_K || (r == FL_MMA_V && m->pipe)) ? 2 : 1;
}

/* The shared-memory address of operand o's tile: the one in use (so<o>),
 * or, where it has two, the other one. */
static void tile_at(const printer *P, int o, int next, char *buf, size_t n) {
  if (next && mma_buffers(P->m, o) == 2) snprintf(buf, n, "(sb%d + (cur ^ 1) * %lldu)", o, (long long)mma_smem_bytes(P->m, o));
  else snprintf(buf, n, "so%d", o);
}

/* The shared-memory offset of chunk `ch` of row `r` in operand o's tile. */
static void chunk_at(const printer *P, int o, const char *r, const char *ch, char *buf, size_t n) {
  const fl_mma_operand *op = &P->m->op[o];
  if (P->m->hopper) fl_cuda_wgmma_chunk_at(buf, n, mma_op_rows(P->m, op), r, ch);
  else snprintf(buf, n, "((%s) * %d + (%s) * 8) * 2", r, op->width + 8, ch);
}

/* An affine operand whose chunks fall evenly on the threads: each thread
 * takes one chunk column and every rpi-th row, so its addresses (global
 * and shared) step by constants, folded into the copies' offsets. A row
 * past the end copies no bytes (its address is never read) and zero-fills. */
static int put_even_load(printer *P, int o, const char *r0, int next) {
  const fl_mma_group *m = P->m;
  const fl_mma_operand *op = &m->op[o];
  int64_t rows = mma_op_rows(m, op), chunks = op->width / 8, threads = block_threads(m), rpi = threads / chunks;
  if (!op->affine || threads % chunks || (rows * chunks) % threads || (m->hopper && rpi % 8))
    return 0;
  char at[200], base[64];
  chunk_at(P, o, "rt", "ch", at, sizeof at);
  tile_at(P, o, next, base, sizeof base);
  int src = P->g->exprs[op->load].src;
  line(P, "{");
  P->c.depth++;
  line(P, "const int rt = tid / %lld, ch = tid %% %lld;", (long long)chunks, (long long)chunks);
  line(P, "const long long p0 = (%s) + rt;", r0);
  line(P, "const int left = (int)(%lldLL - p0 < %lldLL ? %lldLL - p0 : %lldLL); /* rows inside */",
       (long long)op_limit(m, op), (long long)rows, (long long)op_limit(m, op), (long long)rows);
  line(P, "const auto *src = v%d + ob%d + p0 * %lldLL + ch * 8;", src, o, (long long)op->stride);
  line(P, "const unsigned dst = %s + (unsigned)(%s);", base, at);
  line(P, "#pragma unroll");
  line(P, "for (int it = 0; it < %lld; ++it)", (long long)(rows / rpi));
  line(P, "  fl_cp16(dst + it * %lldu, src + it * %lldLL, it * %lld < left ? 16 : 0);",
       (long long)(m->hopper ? rpi * 128 : rpi * (op->width + 8) * 2), (long long)(rpi * op->stride), (long long)rpi);
  P->c.depth--;
  line(P, "}");
  return 1;
}

/* Loads operand o's rows [r0, r0 + rows) into its tile (cp.async, rows
 * past the end zero-filled), the other one if `next`. */
static void put_load(printer *P, int o, const char *r0, int next) {
  const fl_mma_group *m = P->m;
  const fl_mma_operand *op = &m->op[o];
  int64_t rows = mma_op_rows(m, op), chunks = op->width / 8, total = rows * chunks;
  if (put_even_load(P, o, r0, next)) return;
  line(P, "#pragma unroll");
  int threads = block_threads(m);
  line(P, "for (int it = 0; it < %lld; ++it) {", (long long)((total + threads - 1) / threads));
  P->c.depth++;
  line(P, "const int c = tid + it * %d;", threads);
  if (total % threads) line(P, "if (c < %lld) {", (long long)total);
  line(P, "const int r = c / %lld, ch = c %% %lld;", (long long)chunks, (long long)chunks);
  line(P, "const long long pos = (%s) + r;", r0);
  line(P, "const bool ok = pos < %lldLL;", (long long)op_limit(m, op));
  if (op->affine) {
    line(P, "const long long off = ob%d + (ok ? pos : 0) * %lldLL + ch * 8;", o, (long long)op->stride);
  } else {
    line(P, "long long off = ch * 8;");
    line(P, "{");
    P->c.depth++;
    line(P, "const long long rp = ok ? pos : 0;");
    mma_put_vars(P, op->member, op->role == FL_MMA_Q ? "rp" : "0", "rp", "0", 1);
    put_offset(P, op->member, op->load, "off");
    P->c.depth--;
    line(P, "}");
  }
  char at[200];
  chunk_at(P, o, "r", "ch", at, sizeof at);
  char base[64];
  tile_at(P, o, next, base, sizeof base);
  line(P, "fl_cp16(%s + (unsigned)(%s), v%d + off, ok ? 16 : 0);", base, at, P->g->exprs[op->load].src);
  if (total % threads) line(P, "}");
  P->c.depth--;
  line(P, "}");
}

static void put_loads(printer *P, fl_mma_role role, const char *r0, int next) {
  for (int o = 0; o < P->m->nops; o++)
    if (P->m->op[o].role == role) put_load(P, o, r0, next);
}

/* ---- the element loop: h over a thread's 4 of a 16 x 8 tile, nt over tiles ---- */

static void open_elements(printer *P) {
  const fl_mma_group *m = P->m;
  line(P, "#pragma unroll");
  line(P, "for (int nt = 0; nt < %lld; ++nt) {", (long long)(m->step / 8));
  line(P, "#pragma unroll");
  line(P, "for (int h = 0; h < 4; ++h) {");
  P->c.depth++;
  line(P, "const int kj = nt * 8 + (lane & 3) * 2 + (h & 1);");
  line(P, "const bool valid = %s;", P->edge ? "kj < kv" : "true");
  line(P, "const long long kr = key0 + kj;");
  line(P, "const long long kc = valid ? kr : %lldLL, rw = rc[h >> 1];", (long long)m->keys - 1);
  line(P, "const float kcf = valid ? kf0 + (float)(nt * 8 + (h & 1)) : %.1ff, rwf = rcf[h >> 1];",
       (double)(m->keys - 1));
  line(P, "(void)kc; (void)rw; (void)kcf; (void)rwf;");
  P->elem = 1;
  P->at_key = 1;
  P->row = "h >> 1";
}

/* wgmma, inside a loop over nt: p<i>[nt] packed into <pk><i>. */
static void put_wgmma_pack_tiles(printer *P, const char *pk) {
  for (int i = 0; i < P->m->na; i++) {
    char p[16], k[16];
    snprintf(p, sizeof p, "p%d", i);
    snprintf(k, sizeof k, "%s%d", pk, i);
    fl_cuda_wgmma_put_pack_tile(&P->c, P->m->dt, k, p);
  }
}

/* Closes open_elements' loops; with `pk` (wgmma), each 8-key tile's
 * weights packed into <pk><i> once its four elements are computed. */
static void close_elements_packing(printer *P, const char *pk) {
  P->c.depth--;
  line(P, "}");
  if (pk) {
    P->c.depth++;
    put_wgmma_pack_tiles(P, pk);
    P->c.depth--;
  }
  line(P, "}");
  P->elem = 0;
  P->at_key = 0;
}

static void close_elements(printer *P) { close_elements_packing(P, NULL); }

/* Member v's expression x for the current element, in a scope of its own:
 * prints `pre t<...> post` with the temporary. */
static void put_member_expr(printer *P, int v, int x, const char *fmt) {
  line(P, "{");
  P->c.depth++;
  mma_put_vars(P, v, "rw", "kc", "0", 0);
  int t = fl_cx_emit(&P->c, v, x);
  char tn[16];
  snprintf(tn, sizeof tn, "t%d", t);
  line(P, fmt, tn);
  P->c.depth--;
  line(P, "}");
}

/* ---- one step: the scores ---- */

/* For n over [0, count): B fragments of two 8-wide tiles from operand o's
 * tile (ldmatrix `ldm`, the element offset `at` of the lane's row, with
 * the padded row width printed in), then acc[2n] and acc[2n + 1] += a · b. */
static void put_mma_pairs(printer *P, const char *n, int64_t count, const char *a, const char *acc,
                          const char *ldm, int o, int width, const char *at) {
  const char *T = P->m->dt == FL_BF16 ? "bf16" : "f16";
  char off[160];
  snprintf(off, sizeof off, at, width + 8);
  line(P, "#pragma unroll");
  line(P, "for (int %s = 0; %s < %lld; ++%s) {", n, n, (long long)count, n);
  line(P, "  unsigned b[4];");
  line(P, "  %s(b, so%d + (unsigned)(%s) * 2u);", ldm, o, off);
  line(P, "  fl_mma_%s(%s[2 * %s], %s, b[0], b[1]);", T, acc, n, a);
  line(P, "  fl_mma_%s(%s[2 * %s + 1], %s, b[2], b[3]);", T, acc, n, a);
  line(P, "}");
}

/* wgmma: issues the scores, each one group, and (`wait`) waits for each. */
static void put_wgmma_scores(printer *P, int wait) {
  const fl_mma_group *m = P->m;
  for (int i = 0; i < m->ntv; i++) {
    char acc[16], q[16], k[16];
    snprintf(acc, sizeof acc, "s%d", i);
    snprintf(q, sizeof q, "%s%d", m->q_regs ? "qf" : "so", m->tv_q[i]);
    snprintf(k, sizeof k, "so%d", m->tv_k[i]);
    if (wait) line(P, "float %s[%lld][4];", acc, (long long)(m->step / 8));
    fl_cuda_wgmma_put_scores(&P->c, m->dt, acc, q, m->q_regs, mma_block_rows(m), k, m->op[m->tv_q[i]].width, m->step);
    if (wait) fl_cuda_wgmma_put_wait(&P->c, 0, acc, m->step / 2);
  }
}

/* wgmma, pipelined: waits for the scores, `pending` products still in flight. */
static void put_wgmma_scores_wait(printer *P, int pending) {
  for (int i = 0; i < P->m->ntv; i++) {
    char acc[16];
    snprintf(acc, sizeof acc, "s%d", i);
    fl_cuda_wgmma_put_wait(&P->c, pending, acc, P->m->step / 2);
  }
}

void mma_put_scores(printer *P) {
  const fl_mma_group *m = P->m;
  if (m->hopper) {
    put_wgmma_scores(P, 1);
    return;
  }
  for (int i = 0; i < m->ntv; i++) {
    const fl_mma_operand *q = &m->op[m->tv_q[i]], *k = &m->op[m->tv_k[i]];
    char acc[16];
    snprintf(acc, sizeof acc, "s%d", i);
    line(P, "float s%d[%lld][4];", i, (long long)(m->step / 8));
    line(P, "#pragma unroll");
    line(P, "for (int nt = 0; nt < %lld; ++nt) s%d[nt][0] = s%d[nt][1] = s%d[nt][2] = s%d[nt][3] = 0.0f;",
         (long long)(m->step / 8), i, i, i, i);
    line(P, "#pragma unroll");
    line(P, "for (int kk = 0; kk < %d; ++kk) {", q->width / 16);
    P->c.depth++;
    if (m->q_regs) {
      line(P, "const unsigned *qa = qf%d[kk];", m->tv_q[i]);
    } else {
      line(P, "unsigned qa[4];");
      line(P, "fl_ldm4(qa, so%d + (unsigned)((warp * 16 + (lane & 15)) * %d + kk * 16 + (lane >> 4) * 8) * 2u);",
           m->tv_q[i], q->width + 8);
    }
    put_mma_pairs(P, "np", m->step / 16, "qa", acc, "fl_ldm4", m->tv_k[i], k->width,
                  "(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * %d + kk * 16 + ((lane >> 3) & 1) * 8");
    P->c.depth--;
    line(P, "}");
  }
}

static void put_score_bodies(printer *P) {
  const fl_mma_group *m = P->m;
  open_elements(P);
  for (int i = 0; i < m->ntv; i++) {
    if (P->fold[i] && P->bias[i] >= 0)
      line(P, "s%d[nt][h] = fmaf(hv%d * %.9ef, %s(float)(nt * 8 + (h & 1)), s%d[nt][h]);", i, P->bias[i],
           1.0 / P->fold[i], P->bias_sign[i] < 0 ? "-" : "", i);
    if (P->fold[i]) continue;
    P->cur = i;
    char fmt[48];
    snprintf(fmt, sizeof fmt, "s%d[nt][h] = %%s;", i);
    put_member_expr(P, m->tv[i], P->g->vals[m->tv[i]].body, fmt);
  }
  P->cur = -1;
  close_elements(P);
}

/* ---- one step: the running state ---- */


/* Prints, per row r of the thread, `dst[r] = ` member v's expression x. */
void mma_put_row_expr(printer *P, int v, int x, const char *dst, const char *row) {
  line(P, "#pragma unroll");
  line(P, "for (int r = 0; r < 2; ++r) {");
  P->c.depth++;
  P->row = "r";
  mma_put_vars(P, v, row, "0", "0", 0);
  int t = fl_cx_emit(&P->c, v, x);
  line(P, "%s[r] = t%d;", dst, t);
  P->c.depth--;
  line(P, "}");
}

/* The score kept unscaled that expression x is just a read of, else -1. */
static int folded_read(const printer *P, int x) {
  const fl_expr *ex = &P->g->exprs[x];
  int i = ex->op == FL_X_LOAD ? index_in(P->m->tv, P->m->ntv, ex->src) : -1;
  return i >= 0 && P->fold[i] ? i : -1;
}

/* A row's maximum (minimum) over the step, NaNs kept (max.NaN), keys past
 * the end left out, then across the four threads of the row, then into
 * the running value. A score kept unscaled (by k > 0) takes its extreme
 * first and the scale after: rounding is monotonic, so that is exact.
 * (Four partial maxima and sums a row, for shorter dependent chains,
 * measured slower on the H100: full D=64 B4 H16 N4096 362 TFLOP/s against
 * 393, causal D=128 444 against 462. Again with persistent kernels, cool
 * A/B, full D=128 B1 H16 N16384: 4 or 8 partial maxima 3.371 / 3.393 ms
 * against 3.335; 4 partial sums alone within 0.3%: the step is bound by
 * the instructions it issues, not by their latency.) */
static void put_extremes(printer *P) {
  const fl_mma_group *m = P->m;
  for (int i = 0; i < m->nx; i++) {
    int max = val(P, m->x[i])->comb == FL_COMB_MAX;
    const char *id = max ? "-FL_INFF" : "FL_INFF", *fn = max ? "max" : "min";
    line(P, "{");
    P->c.depth++;
    line(P, "float xm[2] = {%s, %s};", id, id);
    int f = folded_read(P, val(P, m->x[i])->body);
    open_elements(P);
    char fmt[128];
    snprintf(fmt, sizeof fmt, "xm[h >> 1] = fl_%sn(xm[h >> 1], valid ? %%s : %s);", fn, id);
    P->raw = f >= 0;
    put_member_expr(P, m->x[i], val(P, m->x[i])->body, fmt);
    P->raw = 0;
    close_elements(P);
    char x[96];
    if (f >= 0 && P->bias[f] >= 0) /* dkr is the thread's: its extreme's bias before the row's */
      snprintf(x, sizeof x, "fl_quad_%s(fmaf(xm[r], %.9ef, %s))", fn, P->fold[f], bias_term(P, f, "r"));
    else if (f >= 0)
      snprintf(x, sizeof x, "fl_quad_%s(xm[r]) * %.9ef", fn, P->fold[f]);
    else
      snprintf(x, sizeof x, "fl_quad_%s(xm[r])", fn);
    line(P, "#pragma unroll");
    line(P, "for (int r = 0; r < 2; ++r) mx%d[r] = fl_%sn(mx%d[r], %s);", i, fn, i, x);
    P->c.depth--;
    line(P, "}");
  }
}

/* The members that rescale: row sums then weighted sums, as one list. A
 * row sum from the products (FL_WS_ONES) rescales with its weighted sum. */
int mma_rescaled(const printer *P, int j, char *kind, int *i) {
  const fl_mma_group *m = P->m;
  int n = 0;
  for (int a = 0; a < m->ns; a++)
    if (val(P, m->s[a])->resc != FL_RESCALE_NONE && m->s_ones[a] < 0 && n++ == j) return *kind = 'S', *i = a, m->s[a];
  for (int a = 0; a < m->na; a++)
    if (val(P, m->a[a])->resc != FL_RESCALE_NONE && n++ == j) return *kind = 'A', *i = a, m->a[a];
  return -1;
}

static void put_mu(printer *P, const char *prefix) {
  char kind, dst[16];
  int i, v;
  P->safe = 1;
  for (int j = 0; (v = mma_rescaled(P, j, &kind, &i)) >= 0; j++) {
    snprintf(dst, sizeof dst, "%s%d", prefix, j);
    line(P, "float %s[2];", dst);
    mma_put_row_expr(P, v, val(P, v)->resc_arg, dst, "rc[r]");
  }
  P->safe = 0;
}

/* oa<i> *= f<j> element by element, or (`keep_zeros`) only where nonzero. */
static void put_scale_sums(printer *P, int et, int i, int j, int keep_zeros) {
  char guard[48] = "";
  if (keep_zeros) snprintf(guard, sizeof guard, "if (oa%d[et][h] != 0.0f) ", i);
  line(P, "  #pragma unroll");
  line(P, "  for (int et = 0; et < %d; ++et)", et);
  line(P, "    #pragma unroll");
  line(P, "    for (int h = 0; h < 4; ++h) %soa%d[et][h] *= f%d[h >> 1];", guard, i, j);
}

/* oa<i> *= f<j>, skipped where the warp's factors are all 1 (its rows'
 * maxima did not move: most steps). Zeros stay zeros (0 · inf would be
 * NaN); with every factor finite a plain multiply does that. */
static void put_scale_weighted(printer *P, int i, int j) {
  int et = mma_acc_tiles(P->m, i);
  line(P, "if (!__all_sync(0xffffffffu, f%d[0] == 1.0f && f%d[1] == 1.0f)) {", j, j);
  P->c.depth++;
  line(P, "if (__all_sync(0xffffffffu, fl_finite(f%d[0]) && fl_finite(f%d[1]))) {", j, j);
  put_scale_sums(P, et, i, j, 0);
  line(P, "} else {");
  put_scale_sums(P, et, i, j, 1);
  line(P, "}");
  P->c.depth--;
  line(P, "}");
}

/* A running maximum that may lag (FL_STALE_MAX): its value before the
 * step's extremes ... */
static void put_lag_keep(printer *P) {
  for (int i = 0; i < P->m->nx; i++)
    if (P->m->x_lag[i] > 0.0) line(P, "const float xo%d[2] = {mx%d[0], mx%d[1]};", i, i, i);
}

/* ... kept where the new one is finite and at most the lag past it:
 * the rescales reading it (their argument is the maximum) then find
 * nothing changed. Selects, not branches: this sits between the row's
 * maximum and its exponentials. (Branches with short-circuit tests took
 * some 40 instructions a step of full attention D=128 on the H100.) */
static void put_lag_revert(printer *P) {
  for (int i = 0; i < P->m->nx; i++) {
    if (P->m->x_lag[i] <= 0.0) continue;
    char kind, set[2 * FL_MMA_MAX * 40] = ""; /* every rescaled member's argument put back */
    int a, v, first = -1;
    for (int j = 0; (v = mma_rescaled(P, j, &kind, &a)) >= 0; j++) {
      if (!fl_expr_reads(P->g, val(P, v)->resc_arg, P->m->x[i])) continue;
      if (first < 0) first = j;
      size_t n = strlen(set);
      snprintf(set + n, sizeof set - n, " ma%d[r] = keep ? mb%d[r] : ma%d[r];", j, j, j);
    }
    if (first < 0) continue;
    line(P, "#pragma unroll");
    line(P, "for (int r = 0; r < 2; ++r) {");
    line(P, "  const bool keep = fl_finite(xo%d[r]) & fl_finite(mx%d[r]) & (ma%d[r] - mb%d[r] <= %.9ef);", i, i, first,
         first, P->m->x_lag[i]);
    line(P, "  mx%d[r] = keep ? xo%d[r] : mx%d[r];%s", i, i, i, set);
    line(P, "}");
  }
}

/* `dst`[r] = rescaled member x's factor for a change of its argument from
 * a<j>[r] to b<j>[r] (arrays named by prefixes a and b): 1 where equal. */
static void put_factor(printer *P, const fl_value *x, int j, const char *dst, const char *a, const char *b) {
  char f[96];
  if (x->resc == FL_RESCALE_EXP) snprintf(f, sizeof f, "fl_exp(%s%d[r] - %s%d[r])", a, j, b, j);
  else if (x->resc == FL_RESCALE_EXP2) snprintf(f, sizeof f, "fl_exp2(%s%d[r] - %s%d[r])", a, j, b, j);
  else snprintf(f, sizeof f, "fl_pow(%s%d[r] / %s%d[r], (float)%.17g)", b, j, a, j, x->resc_pow);
  line(P, "#pragma unroll");
  line(P, "for (int r = 0; r < 2; ++r) %s[r] = %s%d[r] == %s%d[r] ? 1.0f : %s;", dst, a, j, b, j, f);
}

/* Three computing warpgroups (D=64) run at 128 registers a thread, where
 * any change to the step's code moves ptxas's spills around: the shorter
 * step bookkeeping (mma_put_next, mma_put_step_keys) took ALiBi D=64 from 0
 * to 104 spilled bytes, sinks 0 to 24 (causal 8 to 4, softcap 14 to 0).
 * Those kernels keep the code they were measured with. */
static int tight_registers(const fl_mma_group *m) { return m->ws && m->wgs == 3; }

/* An earlier rescaled member whose factor is member j's (value v): the
 * same rescale of the same argument (a softmax's sum and weighted sum
 * both rescale by exp of its maximum), else -1. Only warp-specialized
 * kernels of two computing warpgroups, which have registers to keep the
 * factor: elsewhere ptxas computed it again anyway, and keeping it took
 * the one-warpgroup kernels from 116 to 127 registers (sliding window
 * D=64) or 8 spilled bytes (document D=128). */
static int same_factor(const printer *P, int j, int v) {
  const fl_value *x = val(P, v);
  char kind;
  int i, u;
  if (!P->m->ws || tight_registers(P->m)) return -1;
  for (int e = 0; e < j && (u = mma_rescaled(P, e, &kind, &i)) >= 0; e++) {
    const fl_value *y = val(P, u);
    if (y->resc == x->resc && (x->resc != FL_RESCALE_POW || y->resc_pow == x->resc_pow) &&
        fl_cuda_mma_same_expr(P->g, &P->m->k->tiles.gr, u, y->resc_arg, v, x->resc_arg))
      return e;
  }
  return -1;
}

static void put_rescale(printer *P) {
  char kind;
  int i, v;
  for (int j = 0; (v = mma_rescaled(P, j, &kind, &i)) >= 0; j++) {
    char f[16];
    snprintf(f, sizeof f, "f%d", j);
    if (!P->defer || kind == 'S') line(P, "float f%d[2];", j);
    int e = same_factor(P, j, v);
    if (e >= 0) line(P, "f%d[0] = f%d[0], f%d[1] = f%d[1]; /* the same factor */", j, e, j, e);
    else put_factor(P, val(P, v), j, f, "mb", "ma");
    if (kind == 'S') {
      line(P, "#pragma unroll");
      line(P, "for (int r = 0; r < 2; ++r) if (ls%d[r] != 0.0f) ls%d[r] *= f%d[r];", i, i, j);
    } else if (!P->defer) {
      put_scale_weighted(P, i, j);
    }
  }
}

/* Member i of kind k ('S' row sums, 'A' weighted sums) merged with the
 * other state's (index o): each side times its factor (f, g; none: plain
 * sum), zeros kept zeros (a side that saw no key has an infinite one). */
static void put_merge_sums(printer *P, char k, int i, int o, const char *f, const char *g) {
  char a[24], b[24], fa[48] = "", gb[48] = "";
  const char *at = k == 'S' ? "[r]" : "[et][h]", *row = k == 'S' ? "r" : "h >> 1";
  snprintf(a, sizeof a, "%s%d%s", k == 'S' ? "ls" : "oa", i, at);
  snprintf(b, sizeof b, "%s%d%s", k == 'S' ? "ls" : "oa", o, at);
  if (f) snprintf(fa, sizeof fa, " * %s[%s]", f, row), snprintf(gb, sizeof gb, " * %s[%s]", g, row);
  line(P, "#pragma unroll");
  if (k == 'S') {
    line(P, "for (int r = 0; r < 2; ++r)");
  } else {
    line(P, "for (int et = 0; et < %d; ++et)", mma_acc_tiles(P->m, i));
    line(P, "  #pragma unroll");
    line(P, "  for (int h = 0; h < 4; ++h)");
  }
  if (f) line(P, "    %s = (%s == 0.0f ? 0.0f : %s%s) + (%s == 0.0f ? 0.0f : %s%s);", a, a, a, fa, b, b, gb);
  else line(P, "    %s += %s;", a, b);
}

/* Merges another state of the same rows into the running one (a block's
 * parts, fl_cuda_parts), its members named from `other` on (mx<other + i>,
 * ls.., oa..): the extremes combined, each sum rescaled to them from both
 * sides and added. Row sums from the products come with their weighted sums. */
void mma_put_merge(printer *P, int other) {
  const fl_mma_group *m = P->m;
  char kind, f[16], g[16];
  int i, v;
  line(P, "{");
  P->c.depth++;
  for (int x = 0; x < m->nx; x++) {
    line(P, "const float xs%d[2] = {mx%d[0], mx%d[1]}; /* this part's */", x, x, x);
    line(P, "mx%d[0] = mx%d[0], mx%d[1] = mx%d[1];", x, other + x, x, other + x);
  }
  put_mu(P, "mo");
  for (int x = 0; x < m->nx; x++) line(P, "mx%d[0] = xs%d[0], mx%d[1] = xs%d[1];", x, x, x, x);
  put_mu(P, "mb");
  for (int x = 0; x < m->nx; x++) {
    const char *fn = val(P, m->x[x])->comb == FL_COMB_MAX ? "max" : "min";
    line(P, "mx%d[0] = fl_%sn(xs%d[0], mx%d[0]), mx%d[1] = fl_%sn(xs%d[1], mx%d[1]);", x, fn, x, other + x, x, fn, x,
         other + x);
  }
  put_mu(P, "ma");
  for (int j = 0; (v = mma_rescaled(P, j, &kind, &i)) >= 0; j++) {
    snprintf(f, sizeof f, "f%d", j), snprintf(g, sizeof g, "g%d", j);
    line(P, "float f%d[2], g%d[2];", j, j);
    put_factor(P, val(P, v), j, f, "mb", "ma");
    put_factor(P, val(P, v), j, g, "mo", "ma");
    put_merge_sums(P, kind, i, other + i, f, g);
  }
  for (int a = 0; a < m->ns; a++)
    if (val(P, m->s[a])->resc == FL_RESCALE_NONE && m->s_ones[a] < 0) put_merge_sums(P, 'S', a, other + a, NULL, NULL);
  for (int a = 0; a < m->na; a++)
    if (val(P, m->a[a])->resc == FL_RESCALE_NONE) put_merge_sums(P, 'A', a, other + a, NULL, NULL);
  P->c.depth--;
  line(P, "}");
}

/* Pipelined wgmma: the weighted sums' factors, declared before the body
 * (1 where it does not run) ... */
void mma_put_deferred_factors(printer *P) {
  char kind;
  int i, v;
  for (int j = 0; (v = mma_rescaled(P, j, &kind, &i)) >= 0; j++)
    if (kind == 'A') line(P, "float f%d[2] = {1.0f, 1.0f};", j);
}

/* ... and their rescale, once the product adding to them has landed. */
static void put_deferred_rescale(printer *P) {
  char kind;
  int i, v;
  for (int j = 0; (v = mma_rescaled(P, j, &kind, &i)) >= 0; j++)
    if (kind == 'A') put_scale_weighted(P, i, j);
}

/* wgmma: packs weights as the body computes them (FL_WGMMA_PACK_EARLY):
 * their floats die a tile at a time, not at the step's end. Split,
 * always: the previous product has landed before the weights are
 * computed, and nothing packs them after the body. A pipelined step packs
 * after the body, once the previous product (reading pk<i>) has landed:
 * with three computing warpgroups that once packed early into a second
 * set instead (pn<i>), which spilled past FL_WS_PIPE3_EST = 152 (full
 * D=64 split instead). Packed late, in place, full D=64 pipelines with 0
 * spills; H100, bf16, TFLOP/s, B4 H16 N4096 / B1 N16384: 449 / 493
 * against 426 / 468 split (the body's exponentials now run while the
 * previous product is in flight; split, only its maxima did). */
static int packs_early(const fl_mma_group *m) {
  return m->split || (m->hopper && FL_WGMMA_PACK_EARLY && !m->pipe);
}

/* A pipelined step of one score and one weighted sum
 * (FL_WS_PIPE_IN_PLACE): the weights overwrite the scores, each
 * element's last reader, so that they take the scores' registers. */
static int weights_in_scores(const fl_mma_group *m) {
  return FL_WS_PIPE_IN_PLACE && m->pipe && !packs_early(m) && m->ntv == 1 && m->na == 1;
}

static void put_sums_and_weights(printer *P) {
  const fl_mma_group *m = P->m;
  if (m->ns + m->na == 0) return;
  P->safe = 1;
  open_elements(P);
  char fmt[64];
  for (int i = 0; i < m->ns; i++) {
    if (m->s_ones[i] >= 0) continue; /* the products sum it */
    snprintf(fmt, sizeof fmt, "ls%d[h >> 1] += valid ? %%s : 0.0f;", i);
    put_member_expr(P, m->s[i], val(P, m->s[i])->body, fmt);
  }
  for (int i = 0; i < m->na; i++) {
    snprintf(fmt, sizeof fmt, "p%d[nt][h] = valid ? %%s : 0.0f;", i);
    put_member_expr(P, m->a[i], m->a_p[i], fmt);
  }
  close_elements_packing(P, packs_early(m) ? "pk" : NULL);
  P->safe = 0;
}

/* wgmma: waits for every product, then pins the sums and the weights. */
static void put_wgmma_products_wait(printer *P) {
  const fl_mma_group *m = P->m;
  for (int i = 0; i < m->na; i++) {
    char acc[16], pk[16];
    snprintf(acc, sizeof acc, "oa%d", i);
    snprintf(pk, sizeof pk, "pk%d", i);
    fl_cuda_wgmma_put_wait(&P->c, 0, acc, mma_acc_tiles(m, i) * 4);
    fl_cuda_wgmma_put_keep_weights(&P->c, pk, m->step);
  }
}

/* wgmma: the weights p<i> packed into pk<i>, after the body (see
 * packs_early). */
static void put_wgmma_pack(printer *P) {
  const fl_mma_group *m = P->m;
  if (packs_early(m)) return;
  line(P, "#pragma unroll");
  line(P, "for (int nt = 0; nt < %lld; ++nt) {", (long long)(m->step / 8));
  P->c.depth++;
  put_wgmma_pack_tiles(P, "pk");
  P->c.depth--;
  line(P, "}");
}

/* wgmma: issues the products pk<i> · v from the values' tiles at
 * <tile><o>, and (`wait`) waits for them. */
void mma_put_wgmma_products(printer *P, const char *tile, int wait) {
  const fl_mma_group *m = P->m;
  for (int i = 0; i < m->na; i++) {
    char acc[16], pk[16], v[32];
    snprintf(acc, sizeof acc, "oa%d", i);
    snprintf(pk, sizeof pk, "pk%d", i);
    snprintf(v, sizeof v, "%s%d", tile, m->a_v[i]);
    fl_cuda_wgmma_put_product(&P->c, m->dt, acc, pk, v, m->op[m->a_v[i]].width, m->step,
                              carries_ones(m, i) ? "sone" : NULL);
  }
  if (wait) put_wgmma_products_wait(P);
}

void mma_put_products(printer *P) {
  const fl_mma_group *m = P->m;
  const char *T = m->dt == FL_BF16 ? "bf16" : "f16";
  if (m->hopper) {
    line(P, "{");
    P->c.depth++;
    for (int i = 0; !packs_early(m) && i < m->na; i++) line(P, "unsigned pk%d[%lld][4];", i, (long long)(m->step / 16));
    put_wgmma_pack(P);
    mma_put_wgmma_products(P, "so", 1);
    P->c.depth--;
    line(P, "}");
    return;
  }
  for (int i = 0; i < m->na; i++) {
    const fl_mma_operand *v = &m->op[m->a_v[i]];
    char acc[16];
    snprintf(acc, sizeof acc, "oa%d", i);
    line(P, "#pragma unroll");
    line(P, "for (int kk = 0; kk < %lld; ++kk) {", (long long)(m->step / 16));
    P->c.depth++;
    line(P, "const unsigned pa[4] = {fl_pack_%s(p%d[2 * kk][0], p%d[2 * kk][1]), fl_pack_%s(p%d[2 * kk][2], p%d[2 * kk][3]),",
         T, i, i, T, i, i);
    line(P, "  fl_pack_%s(p%d[2 * kk + 1][0], p%d[2 * kk + 1][1]), fl_pack_%s(p%d[2 * kk + 1][2], p%d[2 * kk + 1][3])};",
         T, i, i, T, i, i);
    put_mma_pairs(P, "ep", v->width / 16, "pa", acc, "fl_ldm4t", m->a_v[i], v->width,
                  "(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * %d + ep * 16 + (lane >> 4) * 8");
    P->c.depth--;
    line(P, "}");
  }
}

/* ---- the kernel ---- */

/* Tiles have landed (and, for wgmma, are visible to the async proxy) in
 * every thread: all of them, or (`but_last`) all but the last group. */
static void put_landed_but(printer *P, int but_last) {
  line(P, but_last ? "fl_cp_wait1();" : "fl_cp_wait();");
  if (P->m->hopper) line(P, "fl_proxy_fence();");
  line(P, "__syncthreads();");
}

static void put_landed(printer *P) { put_landed_but(P, 0); }

/* Key and value bytes one grid position (a head) streams. */
static int64_t head_bytes(const fl_mma_group *m) {
  int64_t w = 0;
  for (int o = 0; o < m->nops; o++)
    if (m->op[o].role != FL_MMA_Q) w += m->op[o].width;
  return m->keys * w * 2;
}

/* Grid positions (heads) whose blocks run together: their keys and values
 * fill about FL_L2_CHUNK_MB. */
static int64_t chunk_heads(const fl_mma_group *m) {
  int64_t g = ((int64_t)FL_L2_CHUNK_MB << 20) / (head_bytes(m) ? head_bytes(m) : 1);
  return g < 1 ? 1 : g > 64 ? 64 : g;
}

/* Rows a block of several warpgroups starts before the first (TMA reads
 * zeros there), in whole tiles of 64: the block short of rows is then
 * the first rows' one, which is also the shortest under a causal mask,
 * not the last rows' (the longest). */
static int64_t row_pad(const fl_mma_group *m) {
  int64_t blocks = (m->rows + mma_block_rows(m) - 1) / mma_block_rows(m);
  return m->ws ? (blocks * mma_block_rows(m) - m->rows) / FL_MMA_ROWS * FL_MMA_ROWS : 0;
}

/* A kernel whose last blocks run in parts (fl_cuda_parts): the block's
 * number, its part and whether it is one; the parts past the last exit. */
static void put_parts_lin(printer *P) {
  line(P, "const unsigned nb = %lluu, ny = %lluu, nk = nb * ny; /* the blocks, before any part */",
       (unsigned long long)row_blocks(P->m), (unsigned long long)grid_rest(P->g, P->m));
  line(P, "const unsigned tl = tail & 0xffffffu, tp = tail >> 24; /* the last tl blocks run in tp parts */");
  line(P, "unsigned lin = blockIdx.x + gridDim.x * blockIdx.y, part = 0u;");
  mma_open_if(P, "lin >= nk");
  line(P, "const unsigned e = lin - nk; /* a later part of one of the last blocks */");
  line(P, "if (e >= tl * (tp - 1u)) return;");
  line(P, "lin = nk - tl + e %% tl, part = 1u + e / tl;");
  mma_close_if(P);
  line(P, "const bool parted = lin + tl >= nk;");
}

/* The block's query rows (row0) and other grid position (rest). Blocks
 * run in chunks of g heads, and within a chunk the last rows first, heads
 * fastest: under causal masks the long blocks of every head start early
 * and the short ones fill the end, while the chunk's keys and values (a
 * few tens of MB) stay in L2 for all its blocks. Masked kernels take the
 * order from the schedule (ord, made from the tile table: see
 * fl_cuda_sched_order), where it has one. */
static void put_block_order(printer *P) {
  int64_t g = chunk_heads(P->m);
  char nb[24] = "gridDim.x", ny[24] = "gridDim.y";
  const char *lin = "blockIdx.x + nb * blockIdx.y";
  if (P->persistent) { /* the tile's number, of a grid the block does not have */
    snprintf(nb, sizeof nb, "%lluu", (unsigned long long)row_blocks(P->m));
    snprintf(ny, sizeof ny, "%lluu", (unsigned long long)grid_rest(P->g, P->m));
    lin = "tile";
  }
  char cl[64] = "";
  if (P->m->cluster > 1 || P->m->chains > 1) { /* numbered by pairs: a cluster's blocks, or a tile's chains */
    snprintf(nb, sizeof nb, "gridDim.x / 2u");
    lin = "(blockIdx.x + gridDim.x * blockIdx.y) >> 1";
  }
  if (P->m->cluster > 1) snprintf(cl, sizeof cl, " + cr * %dLL", mma_block_rows(P->m)); /* one head's rows */
  if (P->parts) put_parts_lin(P);
  else line(P, "const unsigned nb = %s, ny = %s, lin = %s;", nb, ny, lin);
  line(P, "unsigned rb, hd; /* the block's rows (in blocks) and other grid position */");
  if (P->t->nmask) line(P, "if (ord) rb = ord[lin] %% nb, hd = ord[lin] / nb;");
  line(P, "%s{", P->t->nmask ? "else " : "");
  line(P, "  const unsigned first = lin / (%uu * nb) * %uu, g = ny - first < %uu ? ny - first : %uu;", (unsigned)g,
       (unsigned)g, (unsigned)g, (unsigned)g);
  line(P, "  const unsigned in = lin - first * nb;");
  line(P, "  rb = nb - 1 - in / g, hd = first + in %% g;");
  line(P, "}");
  line(P, "const long long row0 = (long long)rb * %d%s - %lldLL;", mma_block_rows(P->m) * P->m->cluster, cl,
       (long long)row_pad(P->m));
  line(P, "long long rest = hd;");
}

/* ob<name>: where member's load starts at the block's grid position (its
 * other variables 0); and, given the elements of a plane (TMA's third
 * coordinate), pl<name>: the plane it starts in. */
static void put_block_offset(printer *P, int member, int load, const char *name, int64_t plane) {
  char dst[24];
  snprintf(dst, sizeof dst, "ob%s", name);
  line(P, "long long %s = 0;", dst);
  line(P, "{");
  P->c.depth++;
  mma_put_vars(P, member, "0", "0", "0", 1);
  put_offset(P, member, load, dst);
  P->c.depth--;
  line(P, "}");
  if (plane) line(P, "const int pl%s = (int)(%s / %lldLL); /* its plane */", name, dst, (long long)plane);
}

/* The thread's place and the shared memory's tiles. */
static void put_kernel_head(printer *P) {
  const fl_mma_group *m = P->m;
  line(P, "extern __shared__ __align__(16) unsigned char fl_sm[];");
  line(P, "const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;");
  line(P, "const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0); /* warp-uniform, as the compiler sees it */");
  if (m->cluster > 1) line(P, "const unsigned cr = blockIdx.x & 1u; /* the block's place in its cluster */");
  if (m->chains > 1) line(P, "const unsigned ch = blockIdx.x & 1u; /* the block's chain */");
  int64_t off = 0;
  line(P, "const unsigned sm0 = %s;", m->hopper ? "(fl_smem(fl_sm) + 1023u) & ~1023u" : "fl_smem(fl_sm)");
  for (int o = 0; o < m->nops; o++) {
    const int home = mma_shared_tiles(m, o);
    if (home >= 0) line(P, "const unsigned sb%d = sb%d; /* the other chain's */", o, home);
    else line(P, "const unsigned sb%d = sm0 + %lldu;", o, (long long)off);
    if (mma_buffers(m, o) == 1) line(P, "const unsigned so%d = sb%d;", o, o);
    if (home < 0) off += mma_smem_bytes(m, o) * mma_buffers(m, o);
  }
  for (int i = 0; i < m->nb; i++) {
    line(P, "const unsigned sbb%d = sm0 + %lldu;", i, (long long)off);
    off += m->stages * mma_tile_input_bytes(m);
  }
  if (mma_ones_bytes(m)) line(P, "const unsigned sone = sm0 + %lldu; /* a tile of ones */", (long long)off);
}

/* The block's (or, persistent, the tile's) rows, grid position and the
 * offsets of its operands. */
void mma_put_block(printer *P) {
  const fl_mma_group *m = P->m;
  const fl_group *gr = &m->k->tiles.gr;
  put_block_order(P);
  for (int s = gr->ngrid - 1; s >= 0; s--) {
    if (s == m->row_slot) continue;
    int64_t n = sym_size(P, gr->grid[s]);
    line(P, "const long long gp%d = rest %% %lldLL;", s, (long long)n);
    line(P, "rest /= %lldLL;", (long long)n);
  }
  line(P, "const long long ra[2] = {row0 + warp * 16 + (lane >> 2), row0 + warp * 16 + (lane >> 2) + 8};");
  line(P, "const long long rc[2] = {ra[0] < 0 ? 0 : ra[0] < %lldLL ? ra[0] : %lldLL, ra[1] < 0 ? 0 : ra[1] < %lldLL ? ra[1] : %lldLL};",
       (long long)m->rows, (long long)m->rows - 1, (long long)m->rows, (long long)m->rows - 1);
  line(P, "const float rcf[2] = {(float)rc[0], (float)rc[1]};");
  char name[16];
  for (int o = 0; o < m->nops; o++) {
    if (!m->op[o].affine) continue;
    snprintf(name, sizeof name, "%d", o);
    put_block_offset(P, m->op[o].member, m->op[o].load, name, m->ws ? m->op[o].plane_rows * m->op[o].width : 0);
  }
  for (int i = 0; i < m->nb; i++) {
    snprintf(name, sizeof name, "b%d", i);
    put_block_offset(P, m->b[i].member, m->b[i].load, name, m->rows * m->keys);
  }
}

/* How steps and the plan's key tiles relate: several steps a tile, one,
 * or (a step wider than a tile) several tiles a step. */
static void steps_and_tiles(printer *P) {
  int64_t pt = fl_tiles_loop_width(P->t), step = P->m->step, keys = P->m->keys;
  P->spt = pt >= keys ? (keys + step - 1) / step : pt >= step ? pt / step : 1;
  P->tps = pt >= keys || pt >= step ? 1 : step / pt;
}

/* Do the kernel's steps know where their rows' tiles are all full
 * (FL_FULL_RUNS)? */
static int has_runs(const printer *P) { return FL_FULL_RUNS && P->t->nmask; }

/* Each warpgroup's tile classes (tb), loop bounds (lo, hi) and longest run
 * of known full steps (ka, kb), in steps, from its own 64 rows' entries;
 * the block runs the union (clo, chi), and every warpgroup's run holds
 * (ca, cb). */
void mma_put_schedule(printer *P) {
  const fl_mma_group *m = P->m;
  const fl_tiles *t = P->t;
  int64_t nsteps = fl_cuda_mma_steps(m), spt = P->spt;
  const int rw = sched_wgs(m);
  line(P, "const signed char *tbw[%d];", rw);
  line(P, "int low[%d], hiw[%d]; /* in steps */", rw, rw);
  if (has_runs(P)) line(P, "int ka = 0, kb = 0, ca = 0, cb = %lld; /* known full: ka <= st < kb */", (long long)nsteps);
  line(P, "#pragma unroll");
  line(P, "for (int w = 0; w < %d; ++w) {", rw);
  P->c.depth++;
  char first[32] = ""; /* the cluster's first row */
  if (m->cluster > 1) snprintf(first, sizeof first, " - cr * %dLL", mma_block_rows(m));
  line(P, "const long long wr = row0%s + w * %d;", first, FL_MMA_ROWS);
  fl_text_put(P->c.b, "%*slong long blk = 0", 2 * P->c.depth, "");
  for (int s = 0; s < t->gr.ngrid; s++) {
    if (!t->uses[s]) continue;
    char gp[16];
    snprintf(gp, sizeof gp, "gp%d", s);
    fl_text_put(P->c.b, "; blk = blk * %lldLL + (%s) / %lldLL", (long long)fl_tiles_blocks(t, s),
                s == m->row_slot ? "wr" : gp, (long long)t->block[s]);
  }
  fl_text_put(P->c.b, ";\n");
  line(P, "const bool inside = (unsigned long long)wr < %lluULL;", (unsigned long long)m->rows);
  if (t->nmask) /* else no table (core/fl_cuda_sched.h): the compiler drops the table's code */
    line(P, "tbw[w] = tab && inside ? tab + blk * %lldLL : 0;", (long long)(fl_tiles_loop_tiles(t) * (1 + t->nmask)));
  else
    line(P, "tbw[w] = 0; (void)blk;");
  line(P, "low[w] = 0, hiw[w] = inside ? %lldLL : 0;", (long long)nsteps);
  if (P->parts)
    line(P, "if (parted) low[w] = (int)(part * %lldu / tp), hiw[w] = inside ? (int)((part + 1u) * %lldu / tp) : 0;",
         (long long)nsteps, (long long)nsteps);
  line(P, "if (tbw[w]) {");
  line(P, "  low[w] = bnd[4 * blk] * %lldLL / %lldLL;", (long long)spt, (long long)P->tps);
  line(P, "  const long long h = (bnd[4 * blk + 1] * %lldLL + %lldLL) / %lldLL; /* rounded out */", (long long)spt,
       (long long)P->tps - 1, (long long)P->tps);
  line(P, "  hiw[w] = h < %lldLL ? h : %lldLL;", (long long)nsteps, (long long)nsteps);
  line(P, "}");
  if (has_runs(P)) { /* rounded in */
    line(P, "const int fa = tbw[w] ? (int)((bnd[4 * blk + 2] * %lldLL + %lldLL) / %lldLL) : 0;", (long long)spt,
         (long long)P->tps - 1, (long long)P->tps);
    line(P, "const int fb = tbw[w] ? (int)(bnd[4 * blk + 3] * %lldLL / %lldLL) : 0;", (long long)spt,
         (long long)P->tps);
    line(P, "if (w == %s) ka = fa, kb = fb;", rows_wg(m));
    line(P, "ca = fa > ca ? fa : ca, cb = fb < cb ? fb : cb;");
  }
  P->c.depth--;
  line(P, "}");
  line(P, "const signed char *tb = tbw[0];");
  line(P, "int lo = low[0], hi = hiw[0], clo = %lld, chi = 0;", (long long)nsteps);
  line(P, "#pragma unroll");
  line(P, "for (int w = 0; w < %d; ++w) {", rw);
  line(P, "  if (w == %s) tb = tbw[w], lo = low[w], hi = hiw[w];", rows_wg(m));
  line(P, "  if (low[w] < hiw[w]) clo = low[w] < clo ? low[w] : clo, chi = hiw[w] > chi ? hiw[w] : chi;");
  line(P, "}");
  if (FL_DBG_STEPS >= 0) line(P, "chi = clo + %d < chi ? clo + %d : chi; /* FL_DBG_STEPS */", FL_DBG_STEPS, FL_DBG_STEPS);
}

/* `dst` = the first step at or after `from` some warpgroup runs, or chi
 * (or, without tables, `from` itself: chi or past it ends the loop). */
void mma_put_next(printer *P, const char *dst, const char *from) {
  if (!P->t->nmask && !tight_registers(P->m)) { /* no tables: every warpgroup inside runs the same steps */
    line(P, "int %s = %s; /* the loop ends at chi */", dst, from);
    return;
  }
  line(P, "int %s = chi;", dst);
  if (has_runs(P)) {
    line(P, "if (%s >= ca && %s < cb) %s = %s;", from, from, dst, from);
    line(P, "else");
  }
  line(P, "#pragma unroll");
  line(P, "for (int w = 0; w < %d; ++w) {", sched_wgs(P->m));
  line(P, "  const int x = fl_next_step(tbw[w], %s > low[w] ? %s : low[w], hiw[w], %lld, %lld, %lld, %d);",
       from, from, (long long)P->spt, (long long)P->tps, (long long)fl_tiles_loop_tiles(P->t), 1 + P->t->nmask);
  line(P, "  if (x < hiw[w] && x < %s) %s = x;", dst, dst);
  line(P, "}");
}

/* Is x a load of an input, not a tile's, at the block's grid position only? */
static int invariant_load(const printer *P, int member, int x) {
  const fl_expr *ex = &P->g->exprs[x];
  return ex->op == FL_X_LOAD && fl_cuda_mma_other_input(P->g, P->m, ex->src) &&
         fl_cuda_mma_grid_only(P->g, P->m, member, x);
}

static void find_invariant_loads(printer *P, int member, int x) {
  if (invariant_load(P, member, x)) {
    if (P->ninv < FL_MMA_MAX && index_in(P->inv, P->ninv, x) < 0) {
      P->inv[P->ninv++] = x;
      line(P, "float hv%d;", P->ninv - 1);
      line(P, "{");
      P->c.depth++;
      mma_put_vars(P, member, "0", "0", "0", 1);
      P->hoisting = 1;
      line(P, "hv%d = t%d;", P->ninv - 1, fl_cx_emit(&P->c, member, x));
      P->hoisting = 0;
      P->c.depth--;
      line(P, "}");
    }
    return;
  }
  for (int i = 0; i < P->g->exprs[x].nargs; i++) find_invariant_loads(P, member, P->g->exprs[x].args[i]);
}

/* Loads of inputs at the block's grid position only (ALiBi's slope a
 * head, a sink's logit), read once before the steps into registers
 * hv<i>. Inside the steps the wgmma asm statements' memory clobbers keep
 * the compiler from hoisting them itself: a pipelined ALiBi step then held
 * a register a score element for them and spilled 552 bytes. */
static void put_invariant_loads(printer *P) {
  const fl_kernel *k = P->m->k;
  const int scope = P->c.scope; /* fl_cx_emit moves it */
  P->ninv = 0;
  for (int v = k->first; v < k->first + k->n; v++)
    if (!P->g->vals[v].epilogue) find_invariant_loads(P, v, P->g->vals[v].body);
  P->c.scope = scope;
}

void mma_put_state(printer *P) {
  const fl_mma_group *m = P->m;
  put_invariant_loads(P);
  for (int i = 0; i < m->nx; i++) {
    const char *id = val(P, m->x[i])->comb == FL_COMB_MAX ? "-FL_INFF" : "FL_INFF";
    line(P, "float mx%d[2] = {%s, %s};", i, id, id);
  }
  for (int i = 0; i < m->ns; i++) line(P, "float ls%d[2] = {0.0f, 0.0f};", i);
  for (int i = 0; i < m->na; i++) {
    int et = mma_acc_tiles(m, i);
    line(P, "float oa%d[%d][4];", i, et);
    line(P, "#pragma unroll");
    line(P, "for (int et = 0; et < %d; ++et) oa%d[et][0] = oa%d[et][1] = oa%d[et][2] = oa%d[et][3] = 0.0f;", et,
         i, i, i, i);
  }
}

void mma_put_q_fragments(printer *P) {
  const fl_mma_group *m = P->m;
  if (!m->q_regs) return;
  for (int o = 0; o < m->nops; o++) {
    if (m->op[o].role != FL_MMA_Q) continue;
    int w = m->op[o].width;
    if (m->hopper) {
      char qf[16], tile[16];
      snprintf(qf, sizeof qf, "qf%d", o);
      snprintf(tile, sizeof tile, "so%d", o);
      fl_cuda_wgmma_put_q_fragments(&P->c, qf, tile, mma_op_rows(m, &m->op[o]), w);
      continue;
    }
    line(P, "unsigned qf%d[%d][4];", o, w / 16);
    line(P, "#pragma unroll");
    line(P, "for (int kk = 0; kk < %d; ++kk)", w / 16);
    line(P, "  fl_ldm4(qf%d[kk], so%d + (unsigned)((warp * 16 + (lane & 15)) * %d + kk * 16 + (lane >> 4) * 8) * 2u);",
         o, o, w + 8);
  }
}

/* Score i's body, through the wheres whose condition is known true. */
static const fl_expr *score_body(const printer *P, int i) {
  const fl_expr *ex = &P->g->exprs[val(P, P->m->tv[i])->body];
  while (ex->op == FL_X_WHERE && is_known_mask(P, P->m->tv[i], ex->args[0])) ex = &P->g->exprs[ex->args[1]];
  return ex;
}

/* Expression ex as score product r times a positive constant (or over
 * one): the constant, left for the row extremes and the exponentials to
 * take (one multiply an element fewer). Else 0. */
static double score_scale(const printer *P, const fl_expr *ex, int r) {
  double k = fl_cuda_mma_product_factor(P->g, ex, r);
  return k > 0.0 && isfinite(k) && isfinite(1.0 / k) ? k : 0.0;
}

/* Expression x of score i as slope · (key − row), or · (row − key), the
 * slope held in register hv<j>: j, the sign in *sign; else -1. */
static int key_row_bias(const printer *P, int i, int x, int *sign) {
  const fl_expr *ex = &P->g->exprs[x];
  const fl_group *gr = &P->m->k->tiles.gr;
  for (int s = 0; ex->op == FL_X_MUL && s < 2; s++) {
    const fl_expr *d = &P->g->exprs[ex->args[s]];
    int j = index_in(P->inv, P->ninv, ex->args[1 - s]);
    if (j < 0 || d->op != FL_X_SUB) continue;
    const fl_expr *a = &P->g->exprs[d->args[0]], *b = &P->g->exprs[d->args[1]];
    if (a->op != FL_X_VAR || b->op != FL_X_VAR) continue;
    int ra = fl_cuda_mma_var_role(P->g, gr, P->m->tv[i], a->var);
    int rb = fl_cuda_mma_var_role(P->g, gr, P->m->tv[i], b->var), row = P->m->row_slot;
    if (ra == -1 && rb == row) return *sign = 1, j;
    if (ra == row && rb == -1) return *sign = -1, j;
  }
  return -1;
}

/* Score i kept as its product (fold[i]: the product's constant factor,
 * left for the row extremes and the exponentials), on a step with every
 * key inside: a body k·product, or k·product + slope·(key − row) (ALiBi),
 * whose part slope·dkr[r] (the thread's first column less the row) goes
 * to the thread's extremes and the exponentials' row terms, leaving one
 * fused multiply-add an element. */
static void fold_score(printer *P, int i) {
  const fl_expr *ex = score_body(P, i);
  int r = P->m->tv_reduce[i];
  P->bias[i] = -1;
  P->fold[i] = 0.0;
  if (P->edge || (P->fold[i] = score_scale(P, ex, r)) || ex->op != FL_X_ADD) return;
  for (int s = 0; !P->fold[i] && s < 2; s++) {
    double k = ex->args[s] == r ? 1.0 : score_scale(P, &P->g->exprs[ex->args[s]], r);
    int sign, j = k ? key_row_bias(P, i, ex->args[1 - s], &sign) : -1;
    if (j >= 0) P->fold[i] = k, P->bias[i] = j, P->bias_sign[i] = sign;
  }
}

/* Between the products: the variant's body on the scores (every mask
 * condition `known` true on a full tile), the row state, the weights. */
static void put_between(printer *P, int known) {
  P->known = known;
  for (int i = 0; i < P->m->ntv; i++) fold_score(P, i);
  put_score_bodies(P);
  P->known = 0;
  put_mu(P, "mb");
  put_lag_keep(P);
  put_extremes(P);
  if (P->mid_wait) put_wgmma_products_wait(P);
  put_mu(P, "ma");
  put_lag_revert(P);
  put_rescale(P);
  put_sums_and_weights(P);
}

/* `if (cond) {` and its closing brace, the body indented between. */
void mma_open_if(printer *P, const char *cond) {
  line(P, "if (%s) {", cond);
  P->c.depth++;
}

void mma_close_if(printer *P) {
  P->c.depth--;
  line(P, "}");
}

/* The step's tile class: full (mask code left out) when each plan tile it
 * covers is full with every mask condition true on the whole tile. A full
 * tile with a condition false (not skipped: its other branch is not the
 * identity) takes the general body. */
static void put_classes(printer *P) {
  const fl_tiles *t = P->t;
  if (!t->nmask) return;
  if (has_runs(P)) {
    line(P, "bool full = st >= ka && st < kb;");
    mma_open_if(P, "!full");
    line(P, "full = tb != 0;");
  } else {
    line(P, "bool full = tb != 0;");
  }
  line(P, "#pragma unroll");
  line(P, "for (int t = 0; t < %lld; ++t) {", (long long)P->tps);
  line(P, "  const long long ti = st / %lldLL * %lldLL + t, te = ti * %d;", (long long)P->spt, (long long)P->tps,
       1 + t->nmask);
  fl_text_put(P->c.b, "%*sfull = full && ti < %lldLL && tb[te] == %d", 2 * (P->c.depth + 1), "",
              (long long)fl_tiles_loop_tiles(t), FL_TILE_FULL);
  for (int k = 0; k < t->nmask; k++) fl_text_put(P->c.b, " && tb[te + %d] > 0", 1 + k);
  fl_text_put(P->c.b, ";\n");
  line(P, "}");
  if (has_runs(P)) mma_close_if(P);
}

/* The next step's keys, into the other tile where there are two. */
static void put_next_keys(printer *P) {
  char r0[64];
  mma_put_next(P, "nx", "st + 1");
  snprintf(r0, sizeof r0, "nx * %lldLL", (long long)P->m->step);
  line(P, "if (nx < chi) {");
  P->c.depth++;
  put_loads(P, FL_MMA_K, r0, 1);
  P->c.depth--;
  line(P, "}");
  line(P, "fl_cp_commit();");
}

/* The step's first key, keys inside, and the float key of the thread's first column. */
void mma_put_step_keys(printer *P) {
  const fl_mma_group *m = P->m;
  line(P, "const long long key0 = st * %lldLL;", (long long)m->step);
  if (m->keys < 0x7fffffff - m->step && !tight_registers(m)) /* in 32 bits: fewer instructions a step */
    line(P, "const int kv = %lld - st * %lld < %lld ? %lld - st * %lld : %lld; /* keys of the step inside */",
         (long long)m->keys, (long long)m->step, (long long)m->step, (long long)m->keys, (long long)m->step,
         (long long)m->step);
  else
    line(P, "const int kv = %lldLL - key0 < %lldLL ? (int)(%lldLL - key0) : %lld; /* keys of the step inside */",
         (long long)m->keys, (long long)m->step, (long long)m->keys, (long long)m->step);
  line(P, "const float kf0 = (float)(key0 + (lane & 3) * 2);");
  line(P, "const float dkr[2] = {kf0 - rcf[0], kf0 - rcf[1]}; /* key less row, at the thread's first column */");
}

/* A warpgroup's own step? (its rows' tile not skipped) */
void mma_put_mine(printer *P) {
  line(P, "const bool mine = %sst >= lo && st < hi && (!tb || !fl_step_skipped(tb, st, %lld, %lld, %lld, %d))%s;",
       has_runs(P) ? "(st >= ka && st < kb) || (" : "", (long long)P->spt, (long long)P->tps,
       (long long)fl_tiles_loop_tiles(P->t), 1 + P->t->nmask, has_runs(P) ? ")" : "");
  for (int i = 0; !weights_in_scores(P->m) && i < P->m->na; i++)
    line(P, "float p%d[%lld][4];", i, (long long)(P->m->step / 8));
  /* split, pk lives across steps (declared before them) */
  for (int i = 0; packs_early(P->m) && !P->m->split && i < P->m->na; i++)
    line(P, "unsigned pk%d[%lld][4];", i, (long long)(P->m->step / 16));
}

/* The body between the products, twice: a full tile inside the keys, and
 * any other step. */
void mma_put_bodies(printer *P) {
  put_classes(P);
  line(P, "if (kv == %lld%s) {", (long long)P->m->step, P->t->nmask ? " && full" : "");
  P->c.depth++;
  put_between(P, P->t->nmask > 0);
  P->c.depth--;
  line(P, "} else {");
  P->c.depth++;
  P->edge = 1;
  put_between(P, 0);
  P->edge = 0;
  P->c.depth--;
  line(P, "}");
}

/* The step's scores and body, then, once the values have landed (wgmma:
 * the next keys' copy still in flight; mma.sync: the next keys' copy
 * issued after), the weights times the values. */
static void put_scores_then_products(printer *P) {
  mma_open_if(P, "mine");
  mma_put_scores(P);
  mma_put_bodies(P);
  mma_close_if(P);
  put_landed_but(P, P->m->hopper);
  if (!P->m->hopper) put_next_keys(P);
  mma_open_if(P, "mine");
  mma_put_products(P);
  mma_close_if(P);
}

/* One step of keys (mma.sync): the values load while the scores are
 * computed, the next keys while the weights multiply the values. */
static void put_step(printer *P) {
  line(P, "while (st < chi) {");
  P->c.depth++;
  mma_put_step_keys(P);
  put_landed(P);
  put_loads(P, FL_MMA_V, "key0", 0);
  line(P, "fl_cp_commit();");
  mma_put_mine(P);
  put_scores_then_products(P);
  line(P, "st = nx;");
  P->c.depth--;
  line(P, "}");
}

/* Pipelined wgmma: issues this step's scores (if `mine`) with the previous
 * step's product (if `pm`, from the values' tiles sp<o>) and waits for the
 * scores only. Straight-line code for each case: the compiler tracks what
 * is in flight along each path but not that two branches on one flag go
 * the same way, and where it cannot prove that nothing reads an
 * accumulator while a wgmma adds to it, it serializes every wgmma. */
void mma_put_pipe_issue(printer *P, const char *issued) {
  const fl_mma_group *m = P->m;
  for (int i = 0; i < m->ntv; i++) line(P, "float s%d[%lld][4];", i, (long long)(m->step / 8));
  if (weights_in_scores(m)) line(P, "float (&p0)[%lld][4] = s0; /* the weights in place */", (long long)(m->step / 8));
  mma_open_if(P, "mine && pm");
  put_wgmma_scores(P, 0);
  mma_put_wgmma_products(P, "sp", 0);
  if (issued) line(P, "%s", issued);
  put_wgmma_scores_wait(P, m->na);
  P->c.depth--;
  line(P, "} else if (pm) {");
  P->c.depth++;
  mma_put_wgmma_products(P, "sp", 0);
  if (issued) line(P, "%s", issued);
  P->c.depth--;
  line(P, "} else if (mine) {");
  P->c.depth++;
  put_wgmma_scores(P, 0);
  if (issued) line(P, "%s", issued);
  put_wgmma_scores_wait(P, 0);
  if (issued) {
    P->c.depth--;
    line(P, "} else {");
    P->c.depth++;
    line(P, "%s", issued);
  }
  mma_close_if(P);
}

/* ... then the body, the weighted sums' rescale deferred ... */
void mma_put_pipe_body(printer *P) {
  int split = P->m->split;
  mma_open_if(P, "mine");
  P->defer = !split, P->mid_wait = split;
  mma_put_bodies(P);
  P->defer = 0, P->mid_wait = 0;
  if (split) {
    P->c.depth--;
    line(P, "} else {");
    P->c.depth++;
    put_wgmma_products_wait(P);
  }
  mma_close_if(P);
}

/* ... then, after the body: waits for the product whether or not one was
 * issued (same reason), rescales the sums and packs the new weights. The
 * packing stays under `mine`, though on other steps it would only pack
 * weights the next step does not issue: made unconditional (three
 * computing warpgroups, packed early), the body overwrote the registers
 * of the weights still in flight (wrong results on the H100). */
void mma_put_pipe_rescale(printer *P) {
  if (P->m->split) return; /* waited for, rescaled and packed in the body */
  put_wgmma_products_wait(P);
  mma_open_if(P, "mine");
  put_deferred_rescale(P);
  put_wgmma_pack(P);
  mma_close_if(P);
}

/* One step of keys (wgmma): the next keys load into the other tile during
 * the whole step. Unpipelined, the values load while the scores are
 * computed and the step waits for each product. Pipelined, the step's
 * scores and the previous step's product (pk, from the values' other tile)
 * are issued together, the body runs while that product is in flight, and
 * the weighted sums are rescaled once it has landed. */
static void put_step_hopper(printer *P) {
  const fl_mma_group *m = P->m;
  line(P, "while (st < chi) {");
  P->c.depth++;
  mma_put_step_keys(P);
  put_landed(P);
  for (int o = 0; o < m->nops; o++) {
    if (mma_buffers(m, o) != 2) continue;
    line(P, "const unsigned so%d = sb%d + cur * %lldu;", o, o, (long long)mma_smem_bytes(m, o));
    if (m->op[o].role == FL_MMA_V) line(P, "const unsigned sp%d = sb%d + (cur ^ 1) * %lldu;", o, o, (long long)mma_smem_bytes(m, o));
  }
  put_loads(P, FL_MMA_V, "key0", 0);
  line(P, "fl_cp_commit();");
  put_next_keys(P);
  mma_put_mine(P);
  if (!m->pipe) {
    put_scores_then_products(P);
  } else {
    mma_put_deferred_factors(P);
    mma_put_pipe_issue(P, NULL);
    mma_put_pipe_body(P);
    mma_put_pipe_rescale(P);
    line(P, "pm = mine;");
  }
  line(P, "st = nx;");
  line(P, "cur ^= 1;");
  P->c.depth--;
  line(P, "}");
  if (!m->pipe) return;
  /* the last step's product */
  mma_open_if(P, "pm");
  put_landed(P);
  for (int o = 0; o < m->nops; o++)
    if (m->op[o].role == FL_MMA_V)
      line(P, "const unsigned sp%d = sb%d + (cur ^ 1) * %lldu;", o, o, (long long)mma_smem_bytes(m, o));
  mma_put_wgmma_products(P, "sp", 1);
  mma_close_if(P);
}

static void put_signature(printer *P, const fl_cuda_kernel *kd) {
  fl_text_put(P->c.b, "extern \"C\" __global__ void __launch_bounds__(%d, %d) %s%s(", block_threads(P->m),
              P->m->blocks, P->m->cluster > 1 ? "__cluster_dims__(2, 1, 1) " : "", kd->name);
  for (int i = 0; i < kd->nparams; i++) {
    int v = kd->param[i];
    fl_text_put(P->c.b, "%s%s *__restrict__ v%d, ", kd->writes[i] ? "" : "const ",
                fl_cuda_ctype(fl_cuda_storage(P->g, v, P->out_dtype)), v);
  }
  fl_text_put(P->c.b, "const signed char *__restrict__ tab, const long long *__restrict__ bnd, "
                      "const unsigned *__restrict__ ord, int *fix, %sint *err",
              P->parts ? "const unsigned tail, " : "");
  for (int o = 0; P->m->ws && o < P->m->nops + P->m->nb; o++)
    fl_text_put(P->c.b, ", const __grid_constant__ fl_tmap tm%d", o);
  fl_text_put(P->c.b, ") {\n");
}

static void put_plain(printer *P);
static fl_status launch_shape(const fl_plan *p, const fl_mma_group *m, int persistent, fl_cuda_kernel *kd,
                              fl_err *e);

/* Persistent (FL_GEN_PERSISTENT): warp-specialized, without masks unless
 * tiles are taken from a counter (FL_WS_DYNAMIC: masked tiles' lengths
 * differ, which a fixed share balances worse than the hardware's block
 * scheduler) and two warpgroups compute (three, masked, spilled with the
 * loader's larger budget), storing no row statistics (lse's spilled). */
static int can_persist(const printer *P) {
  const fl_mma_group *m = P->m;
  if (!m->ws || m->chains > 1 || m->cluster > 1) return 0;
  if ((!FL_WS_DYNAMIC || m->wgs == 3) && (m->k->tiles.nmask || m->k->tiles.data)) return 0;
  for (int i = 0; i < m->nx; i++)
    if (mma_needed(P, m->x[i])) return 0;
  for (int i = 0; i < m->ns; i++)
    if (mma_needed(P, m->s[i])) return 0;
  for (int i = 0; i < m->ne; i++)
    if (!m->e_reg[i] && mma_needed(P, m->e[i])) return 0;
  return 1;
}

/* Asked for, or (FL_GEN_PERSISTENT_AUTO) where some block would take two
 * tiles or more (one overlaps the next's loads) and a block a tile would
 * end with a wave as short as the persistent kernel's last round: its
 * last blocks not run in parts on a device of `sms` multiprocessors. */
static int wants_persistent(const printer *P, unsigned flags, int sms) {
  const fl_mma_group *m = P->m;
  if (flags & FL_GEN_PERSISTENT) return 1;
  int64_t tiles = mma_tiles_count(P->g, m), slots = (int64_t)sms * m->blocks;
  if (!(flags & FL_GEN_PERSISTENT_AUTO) || sms <= 0 || tiles <= slots) return 0;
  unsigned tail, parts;
  fl_cuda_parts_choose(tiles, slots, m->parts, fl_cuda_mma_steps(m), &tail, &parts);
  return parts == 1;
}

/* A persistent kernel's stages: FL_WS_PERSIST_STAGES where they fit. */
static void deepen(fl_mma_group *m) {
  int was = m->stages;
  if (FL_WS_PERSIST_STAGES > was) m->stages = FL_WS_PERSIST_STAGES;
  while (m->stages > was && fl_cuda_mma_smem(m) > FL_SMEM_MAX) m->stages--;
}

fl_status fl_cuda_mma_print(const fl_plan *p, const fl_mma_group *m, fl_dtype out_dtype, unsigned flags, int sms,
                            fl_text *b, fl_cuda_kernel *kd, fl_err *e) {
  printer P = {.g = p->g, .m = m, .t = &m->k->tiles, .out_dtype = out_dtype, .positions = kd->threads, .cur = -1};
  P.c = (fl_cx){.g = p->g, .b = b, .f32 = 1, .fvars = 1, .member = hook_member, .reduce = hook_reduce,
                .known = hook_known, .scaled = hook_scaled, .difference = hook_difference, .user = &P, .depth = 1};
  if (m->hopper) {
    fl_cuda_wgmma_put_fn(b, m->q_regs ? FL_WGMMA_RS : FL_WGMMA_SS, m->dt, (int)m->step);
    for (int i = 0; i < m->na; i++) fl_cuda_wgmma_put_fn(b, FL_WGMMA_RST, m->dt, mma_acc_tiles(m, i) * 8);
  }
  P.persistent = wants_persistent(&P, flags, sms) && can_persist(&P);
  P.parts = m->parts && !P.persistent;
  fl_mma_group deep;
  if (P.persistent) {
    deep = *m;
    deepen(&deep);
    P.m = m = &deep;
  }
  put_signature(&P, kd);
  put_kernel_head(&P);
  steps_and_tiles(&P);
  if (!P.persistent) {
    mma_put_block(&P);
    mma_put_schedule(&P);
    if (m->chains < 2) mma_put_state(&P); /* with chains, each warpgroup its own */
  }
  if (m->ws) mma_put_ws(&P);
  else put_plain(&P);
  fl_text_put(b, "}\n\n");
  if (P.c.err) return fl_fail(e, FL_EINVAL, "cannot print the tensor-core kernel: %s", P.c.err);
  fl_status s = launch_shape(p, m, P.persistent, kd, e);
  if (s == FL_OK && P.parts)
    kd->parts = (fl_cuda_parts){.most = m->parts, .warps = m->wgs * 4, .floats = mma_ws_state_floats(m),
                                .steps = fl_cuda_mma_steps(m)};
  return s;
}

/* The kernel after its state (cp.async loads, every thread computes). */
static void put_plain(printer *P) {
  const fl_mma_group *m = P->m;
  mma_put_next(P, "st", "clo");
  char r0[64];
  snprintf(r0, sizeof r0, "st * %lldLL", (long long)m->step);
  put_loads(P, FL_MMA_Q, "row0", 0);
  line(P, "fl_cp_commit();");
  if (m->hopper) {
    line(P, "int cur = 0;");
    if (m->pipe) line(P, "bool pm = false; /* the previous step's product is still to be issued */");
    for (int i = 0; m->pipe && i < m->na; i++) line(P, "unsigned pk%d[%lld][4];", i, (long long)(m->step / 16));
    for (int o = 0; o < m->nops; o++)
      if (mma_buffers(m, o) == 2) line(P, "const unsigned so%d = sb%d;", o, o);
  }
  line(P, "if (st < chi) {");
  P->c.depth++;
  put_loads(P, FL_MMA_K, r0, 0);
  if (!m->hopper) line(P, "fl_cp_commit();");
  P->c.depth--;
  line(P, "}");
  if (m->hopper) line(P, "fl_cp_commit();");
  if (!m->hopper || m->q_regs) put_landed_but(P, m->hopper);
  mma_put_q_fragments(P);
  if (m->hopper) put_step_hopper(P);
  else put_step(P);
  mma_put_finish(P);
}

/* In words, for reports: how the kernel is laid out. */
static void put_design(const fl_mma_group *m, fl_cuda_kernel *kd) {
  const char *instr = m->hopper ? "wgmma" : "mma.sync";
  if (m->ws)
    snprintf(kd->design, sizeof kd->design,
             "%s; TMA loader (%d registers) + %d computing warpgroups (%d)%s, %lld keys a step, %d stages%s%s%s%s", instr,
             mma_ws_loader_regs(m, kd->persistent), m->wgs, mma_ws_compute_regs(m, kd->persistent),
             m->chains > 1 ? " on a chain a block" : "", (long long)m->step, m->stages,
             m->split ? ", pipelined (split)" : m->pipe ? (mma_ws_pingpong(m) ? ", pipelined, ping-pong" : ", pipelined") : "",
             m->nb ? ", row-by-key inputs in tiles" : "", mma_ones_bytes(m) ? ", row sums in the products" : "",
             m->cluster > 1 ? ", clusters of two (multicast)" : kd->persistent ? ", persistent"
             : m->chains > 1 ? ", pairs combined in global memory" : "");
  else
    snprintf(kd->design, sizeof kd->design, "%s; %d warpgroup%s, %lld keys a step, cp.async%s", instr, m->wgs,
             m->wgs == 1 ? "" : "s", (long long)m->step, m->pipe ? ", pipelined" : "");
}

static fl_status launch_shape(const fl_plan *p, const fl_mma_group *m, int persistent, fl_cuda_kernel *kd,
                              fl_err *e) {
  kd->persistent = persistent;
  put_design(m, kd);
  kd->block[0] = (unsigned)block_threads(m);
  kd->block[1] = kd->block[2] = 1;
  kd->grid[0] = (unsigned)(row_blocks(m) * m->chains);
  int64_t rest = grid_rest(p->g, m);
  if (rest > 65535 || (int64_t)kd->grid[0] * rest >= 0xffffffffll) /* blocks are numbered in 32 bits */
    return fl_fail(e, FL_EINVAL, "the tensor-core kernel's grid is too large");
  kd->grid[1] = (unsigned)rest;
  kd->grid[2] = 1;
  if (persistent) {
    kd->grid[0] = (unsigned)mma_tiles_count(p->g, m);
    kd->grid[1] = 1;
  }
  kd->smem = (int)fl_cuda_mma_smem(m);
  mma_put_tmaps(p->g, m, kd);
  kd->schedule = 1;
  kd->order = (fl_cuda_block_order){.slot = m->row_slot, .per_sm = m->blocks, .count = row_blocks(m) / m->cluster,
                                     .rows = mma_block_rows(m) * m->cluster, .pad = row_pad(m), .others = rest,
                                     .chunk = chunk_heads(m)};
  kd->fix = 1;
  kd->scratch = mma_ws_scratch_words(p->g, m, kd->threads);
  return FL_OK;
}
