#include "fl_cuda_sched.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static fl_status upload(int ordinal, const void *src, size_t n, uint64_t *dst, fl_err *e) {
  fl_status s = fl_cuda_alloc(ordinal, n ? n : 8, dst, e);
  if (s == FL_OK && n) s = fl_cuda_to_device(ordinal, *dst, src, n, e);
  return s;
}

/* Is tile ti of a block's table entries full with every mask condition
 * true (the kernels' mask code left out)? */
static int known_full(int nmask, const signed char *row, int64_t ti) {
  const signed char *e = row + ti * (1 + nmask);
  int full = e[0] == FL_TILE_FULL;
  for (int k = 0; k < nmask; k++) full = full && e[1 + k] > 0;
  return full;
}

int64_t *fl_cuda_sched_runs(int nmask, int64_t nb, int64_t ntiles, const signed char *table, const int64_t *bounds) {
  int64_t *out = malloc((size_t)nb * 4 * sizeof *out + 1); /* + 1: not NULL for no blocks */
  for (int64_t b = 0; out && b < nb; b++) {
    const signed char *row = table + b * ntiles * (1 + nmask);
    int64_t lo = bounds[2 * b], hi = bounds[2 * b + 1], best = lo, len = 0;
    for (int64_t ti = lo, run = 0; ti < hi; ti++) {
      run = known_full(nmask, row, ti) ? run + 1 : 0;
      if (run > len) len = run, best = ti + 1 - run;
    }
    out[4 * b] = lo, out[4 * b + 1] = hi, out[4 * b + 2] = best, out[4 * b + 3] = best + len;
  }
  return out;
}

int64_t *fl_cuda_sched_spans(const fl_cuda_block_order *o, const int64_t *first, int64_t stride, int64_t nrow,
                             int64_t tb, const int64_t *bounds) {
  int64_t n = o->count, jobs = n * o->others;
  int64_t *span = malloc((size_t)jobs * sizeof *span + 1);
  for (int64_t j = 0; span && j < jobs; j++) {
    int64_t p = j / n, a = j % n * o->rows - o->pad, z = a + o->rows - 1;
    a = a < 0 ? 0 : a;
    int64_t last = z / tb < nrow - 1 ? z / tb : nrow - 1, lo = INT64_MAX, hi = INT64_MIN;
    for (int64_t i = a / tb; i <= last; i++) {
      const int64_t *b = bounds + 2 * (first[p] + i * stride);
      if (b[0] >= b[1]) continue;
      lo = b[0] < lo ? b[0] : lo, hi = b[1] > hi ? b[1] : hi;
    }
    span[j] = hi > lo ? hi - lo : 0;
  }
  return span;
}

#ifndef FL_SCHED_TAIL
/* The shortest blocks, this many times the work that keeps every slot busy
 * while the longest block runs, go last (0: none, the chunks' order only;
 * large: longest first over all chunks). H100, bf16, TFLOP/s, medians of
 * two rounds, 1 / 0 / 3 / 1000: causal D=128 B4 H16 N4096 522 / 513 /
 * 488 / 483 (a long tail reads every head's keys at once: L2), B1 N16384
 * 633 / 612 / 614 / 621; document D=128 B1 N16384 384 / 316 / 405 / 406,
 * B4 232 / 226 / 228 / 229; D=64 within 2% but document (no tail 20%
 * slower) and causal B4 (382 at 1000). */
#define FL_SCHED_TAIL 1
#endif

typedef struct job {
  int64_t span, chunk, rows, other;
} job;

static int cmp(int64_t x, int64_t y) { return x < y ? -1 : x > y; }

/* Chunk by chunk, longest first, ties the last rows first. */
static int in_chunks(const void *a, const void *b) {
  const job *x = a, *y = b;
  int c = cmp(x->chunk, y->chunk);
  c = c ? c : cmp(y->span, x->span);
  c = c ? c : cmp(y->rows, x->rows);
  return c ? c : cmp(x->other, y->other);
}

/* Longest first, then as in_chunks. */
static int longest(const void *a, const void *b) {
  const job *x = a, *y = b;
  int c = cmp(y->span, x->span);
  return c ? c : in_chunks(a, b);
}

static int shortest(const void *a, const void *b) { return longest(b, a); }

uint32_t *fl_cuda_sched_order(const fl_cuda_block_order *o, const int64_t *span, int64_t slots) {
  int64_t n = o->count * o->others, chunk = o->chunk > 0 ? o->chunk : 1, most = 0, k = 0, work = 0;
  job *j = malloc((size_t)n * sizeof *j + 1);
  uint32_t *out = malloc((size_t)n * sizeof *out + 1);
  if (!j || !out) {
    free(j);
    free(out);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) {
    j[i] = (job){span[i], i / o->count / chunk, i % o->count, i / o->count};
    most = span[i] > most ? span[i] : most;
  }
  /* a block costs about a step more than its steps (its queries, its outputs) */
  qsort(j, (size_t)n, sizeof *j, shortest);
  while (k < n && work < FL_SCHED_TAIL * slots * (most + 1)) work += j[k++].span + 1;
  qsort(j + k, (size_t)(n - k), sizeof *j, in_chunks);
  qsort(j, (size_t)k, sizeof *j, longest);
  for (int64_t i = 0; i < n; i++) { /* the chunks' blocks, then the tail */
    const job *b = &j[(i + k) % n];
    out[i] = (uint32_t)(b->other * o->count + b->rows);
  }
  free(j);
  return out;
}

/* The order of t's kernel's blocks from the table's bounds. */
static uint32_t *order_of(const fl_tiles *t, const fl_cuda_block_order *o, int64_t slots, const int64_t *bounds) {
  const fl_graph *g = t->g;
  int64_t stride[FL_MAX_DIMS], nrow = 1, tb = o->count * o->rows + o->pad, inner = 1;
  for (int s = t->gr.ngrid - 1; s >= 0; s--) {
    stride[s] = t->uses[s] ? inner : 0;
    if (t->uses[s]) inner *= fl_tiles_blocks(t, s);
  }
  if (t->uses[o->slot]) nrow = fl_tiles_blocks(t, o->slot), tb = t->block[o->slot];
  int64_t *first = malloc((size_t)o->others * sizeof *first + 1);
  for (int64_t p = 0; first && p < o->others; p++) { /* p in C order over the slots but the rows' */
    int64_t rest = p;
    first[p] = 0;
    for (int s = t->gr.ngrid - 1; s >= 0; s--) {
      if (s == o->slot) continue;
      int64_t size = g->syms[t->gr.grid[s]].size;
      first[p] += rest % size / t->block[s] * stride[s];
      rest /= size;
    }
  }
  int64_t *span = first ? fl_cuda_sched_spans(o, first, stride[o->slot], nrow, tb, bounds) : NULL;
  uint32_t *out = span ? fl_cuda_sched_order(o, span, slots) : NULL;
  free(first);
  free(span);
  return out;
}

static fl_status upload_table(const fl_tiles *t, int64_t ntiles, const signed char *table,
                              const int64_t *bounds, int ordinal, fl_cuda_sched *s, fl_err *e) {
  int64_t nb = fl_tiles_mask_blocks(t);
  int64_t *runs = fl_cuda_sched_runs(t->nmask, nb, ntiles, table, bounds);
  int ordered = s->order.count > 0 && s->order.others > 0;
  uint32_t *ord = ordered ? order_of(t, &s->order, s->slots, bounds) : NULL;
  fl_status st = FL_OK;
  if (!runs || (ordered && !ord)) st = fl_fail(e, FL_ENOMEM, "out of host memory uploading tile classes");
  if (st == FL_OK) st = upload(ordinal, table, (size_t)(nb * ntiles * (1 + t->nmask)), &s->tab, e);
  if (st == FL_OK) st = upload(ordinal, runs, (size_t)nb * 4 * sizeof *runs, &s->bnd, e);
  if (st == FL_OK && ord)
    st = upload(ordinal, ord, (size_t)(s->order.count * s->order.others) * sizeof *ord, &s->ord, e);
  free(runs);
  free(ord);
  return st;
}

fl_status fl_cuda_sched_build(const fl_kernel *k, const fl_cuda_block_order *order, int sms, int ordinal,
                              fl_cuda_sched *s, fl_err *e) {
  memset(s, 0, sizeof *s);
  s->order = *order;
  s->slots = (int64_t)sms * (order->per_sm > 0 ? order->per_sm : 1);
  if (!k->is_group || k->tiles.nmask == 0) return FL_OK;
  if (k->tiles.data) {
    s->per_run = 1;
    return FL_OK;
  }
  if (!k->table) return FL_OK;
  return upload_table(&k->tiles, k->ntiles, k->table, k->bounds, ordinal, s, e);
}

/* Value v's numbers, read back as double. */
static fl_status read_back(const fl_graph *g, int v, int ordinal, uint64_t src, fl_dtype dt, double **out,
                           fl_err *e) {
  size_t n = (size_t)fl_value_numel(g, v), size = dt == FL_DTYPE_COUNT ? sizeof(double) : fl_dtype_size(dt);
  void *raw = malloc(n * size + 1);
  *out = malloc(n * sizeof(double) + 1);
  if (!raw || !*out) {
    free(raw);
    return fl_fail(e, FL_ENOMEM, "out of host memory classifying tiles");
  }
  fl_status s = fl_cuda_to_host(ordinal, raw, src, n * size, e);
  if (s == FL_OK && dt == FL_DTYPE_COUNT) memcpy(*out, raw, n * sizeof(double));
  else if (s == FL_OK)
    for (size_t i = 0; i < n; i++) (*out)[i] = fl_elem_get_f64(raw, dt, i);
  free(raw);
  return s;
}

static void free_values(double **values, int n) {
  for (int v = 0; values && v < n; v++) free(values[v]);
  free(values);
}

/* Are the values read this run the last run's? */
static int same_values(const fl_graph *g, const fl_tiles *t, double **values, double **last) {
  if (!last) return 0;
  for (int v = 0; v < g->nvals; v++)
    if (t->reads[v] && memcmp(values[v], last[v], (size_t)fl_value_numel(g, v) * sizeof(double))) return 0;
  return 1;
}

fl_status fl_cuda_sched_run(const fl_kernel *k, int ordinal, const uint64_t *ptr,
                            fl_dtype (*storage)(const fl_graph *g, int v, void *ctx), void *ctx,
                            fl_cuda_sched *s, fl_err *e) {
  s->per_run = 1;
  fl_tiles t = k->tiles; /* a copy, its values this run's */
  const fl_graph *g = t.g;
  double **values = calloc((size_t)g->nvals + 1, sizeof *values);
  int64_t nb = fl_tiles_mask_blocks(&t), ntiles = fl_tiles_loop_tiles(&t);
  signed char *table = malloc((size_t)(nb * ntiles * (1 + t.nmask)) + 1);
  int64_t *bounds = malloc((size_t)nb * 2 * sizeof *bounds + 1);
  fl_status st = values && table && bounds ? FL_OK : fl_fail(e, FL_ENOMEM, "out of host memory classifying tiles");
  for (int v = 0; st == FL_OK && v < g->nvals; v++)
    if (t.reads[v]) st = read_back(g, v, ordinal, ptr[v], storage(g, v, ctx), &values[v], e);
  int again = st == FL_OK && s->tab && same_values(g, &t, values, s->last);
  if (st == FL_OK && !again) {
    fl_tile_counts counts = {0};
    t.values = values;
    fl_tiles_schedule(&t, table, bounds, &counts);
    fl_cuda_sched_free(s, ordinal);
    st = upload_table(&t, ntiles, table, bounds, ordinal, s, e);
    if (st == FL_OK) {
      s->last = values, s->nvals = g->nvals;
      values = NULL;
    }
  }
  free_values(values, g->nvals);
  free(table);
  free(bounds);
  return st;
}

void fl_cuda_sched_free(fl_cuda_sched *s, int ordinal) {
  if (s->tab) fl_cuda_free(ordinal, s->tab);
  if (s->bnd) fl_cuda_free(ordinal, s->bnd);
  if (s->ord) fl_cuda_free(ordinal, s->ord);
  free_values(s->last, s->nvals);
  s->tab = s->bnd = s->ord = 0;
  s->last = NULL;
  s->nvals = 0;
}

#ifndef FL_PARTS_FIXED
/* A block's fixed cost beside its steps (Q, the first step's fill, the
 * last product, the outputs), in steps: about 4 at D=64
 * (2026-11-24-h100-pipelined-d64.md); each part pays it. */
#define FL_PARTS_FIXED 4.0
#endif
#ifndef FL_PARTS_GAIN
/* The least share of a block's time the parts must save. On the H100
 * (bf16, TFLOP/s, parts against none, two rounds): thirds of 32 steps
 * (8% saved in the model) full D=64 B4 N4096 483 against 491-494;
 * halves of 128 steps (47%) at B1 N16384 D=64 full 548 / 553 against
 * 536 / 535, softcap 218 / 219 against 209 / 211, gqa 550 / 554 against
 * 533 / 536, evoformer_row 331 / 324 against 320 / 315; thirds of 128
 * steps (27%) at D=128 full 656 / 651 against 672 / 653, gqa 652 / 664
 * against 667 / 668, softcap 346 / 347 against 344 / 347: no gain. */
#define FL_PARTS_GAIN 0.3
#endif

void fl_cuda_parts_choose(int64_t blocks, int64_t slots, int most, int64_t steps, unsigned *tail, unsigned *parts) {
  int64_t r = slots > 0 ? blocks % slots : 0;
  double best = 1.0 - FL_PARTS_GAIN;
  *tail = 0, *parts = 1;
  for (int p = 2; r > 0 && steps > 0 && p <= most; p++) {
    double rounds = (double)((r * p + slots - 1) / slots) * (1.0 / p + FL_PARTS_FIXED / (double)steps);
    if (rounds < best - 1e-9) best = rounds, *tail = (unsigned)r, *parts = (unsigned)p;
  }
}

static int64_t up32(int64_t n) { return (n + 31) / 32 * 32; }

int64_t fl_cuda_words_after_flags(int64_t positions) { return up32(positions + 2); }

int64_t fl_cuda_parts_words(const fl_cuda_parts *pt, int64_t positions, unsigned tail, unsigned parts) {
  if (!tail) return 0;
  int64_t tickets = fl_cuda_words_after_flags(positions), states = tickets + up32((int64_t)tail * pt->warps);
  return states + (int64_t)tail * pt->warps * parts * pt->floats * 32 - (positions + 2);
}
