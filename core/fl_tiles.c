#include "fl_tiles.h"

#include "fl_rewrite.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const fl_interval FINITE = {-DBL_MAX, DBL_MAX, 0};

static void mark_reads(const fl_graph *g, int x, char *reads, int *any) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD) reads[ex->src] = 1, *any = 1;
  for (int i = 0; i < ex->nargs; i++) mark_reads(g, ex->args[i], reads, any);
}

fl_status fl_tiles_init(fl_tiles *t, const fl_graph *g, int first, fl_err *e) {
  memset(t, 0, sizeof *t);
  t->g = g;
  fl_group_at(g, first, &t->gr);
  const fl_value *lead = &g->vals[first];
  for (int s = 0; s < t->gr.ngrid; s++) t->block[s] = s < lead->ntile ? lead->tile_size[s] : 1;
  t->tile = lead->loop_tile;
  t->reads = calloc((size_t)g->nvals + 1, 1);
  if (!t->reads) return fl_fail(e, FL_ENOMEM, "out of memory classifying tiles");
  for (int k = 0; k < t->gr.n; k++) {
    const fl_value *v = &g->vals[first + k];
    if (!v->tile_local || t->ntv == FL_MAX_TILE_MEMBERS) continue;
    t->tv[t->ntv++] = first + k;
    for (int m = 0; m < v->nmask; m++) {
      t->mask_tv[t->nmask] = first + k;
      t->mask[t->nmask++] = v->mask[m];
      mark_reads(g, v->mask[m], t->reads, &t->data);
      /* a tile member's dims: the grid slots, then the loop dims */
      for (int s = 0; s < t->gr.ngrid; s++) t->uses[s] |= fl_x_uses_vars(g, v->mask[m], s, s + 1);
    }
  }
  return FL_OK;
}

void fl_tiles_free(fl_tiles *t) {
  free(t->reads);
  t->reads = NULL;
}

/* ---- ranges of loads ---- */

static fl_interval of_tile_member(const fl_tiles *t, int v, const fl_interval *idx);

/* The range of a value's numbers over a box of indices, read from them. */
static int data_range(const fl_tiles *t, int src, const fl_interval *idx, fl_interval *out) {
  const fl_graph *g = t->g;
  const fl_value *v = &g->vals[src];
  int64_t lo[FL_MAX_DIMS], hi[FL_MAX_DIMS], pos[FL_MAX_DIMS], size[FL_MAX_DIMS];
  for (int d = 0; d < v->ndim; d++) {
    size[d] = g->syms[v->dims[d]].size;
    lo[d] = idx[d].lo < 0 ? 0 : (int64_t)idx[d].lo;
    hi[d] = idx[d].hi > (double)(size[d] - 1) ? size[d] - 1 : (int64_t)idx[d].hi;
    if (lo[d] > hi[d]) return -1; /* outside: the evaluator fails there; unknown */
    pos[d] = lo[d];
  }
  *out = (fl_interval){INFINITY, -INFINITY, 0};
  for (;;) {
    int64_t off = 0;
    for (int d = 0; d < v->ndim; d++) off = off * size[d] + pos[d];
    double x = t->values[src][off];
    if (isnan(x)) out->nan = 1;
    else {
      if (x < out->lo) out->lo = x;
      if (x > out->hi) out->hi = x;
    }
    int d = v->ndim - 1;
    while (d >= 0 && pos[d] == hi[d]) pos[d] = lo[d], d--;
    if (d < 0) break;
    pos[d]++;
  }
  return 0;
}

static int range(void *ctx, int src, const fl_interval *idx, fl_interval *out) {
  const fl_tiles *t = ctx;
  const fl_value *v = &t->g->vals[src];
  if (v->group && v->group == t->g->vals[t->gr.first].group) {
    if (v->tile_local) *out = of_tile_member(t, src, idx);
    else *out = FINITE; /* a running value */
    return 0;
  }
  if (t->reads[src] && t->values && t->values[src]) return data_range(t, src, idx, out);
  *out = FINITE;
  return 0;
}

static fl_interval of_tile_member(const fl_tiles *t, int v, const fl_interval *idx) {
  fl_interval vars[FL_MAX_VARS];
  for (int d = 0; d < t->g->vals[v].ndim; d++) vars[d] = idx[d];
  return fl_interval_of(t->g, v, t->g->vals[v].body, vars, range, (void *)t);
}

/* ---- classifying ---- */

/* The variables of member v over the box. */
static void member_box(const fl_tiles *t, int v, const fl_tile_box *box, fl_interval *vars) {
  const fl_graph *g = t->g;
  const fl_value *val = &g->vals[v];
  for (int d = 0; d < val->ndim; d++) {
    int s = fl_group_slot(g, &t->gr, v, d);
    vars[d] = s >= 0 ? box->grid[s] : (fl_interval){0, (double)(g->syms[val->dims[d]].size - 1), 0};
  }
  if (val->tile_local)
    for (int r = 0; r < t->gr.nloop; r++) vars[t->gr.ngrid + r] = box->loop[r];
  for (int r = 0; r < val->nred; r++) vars[val->ndim + r] = box->loop[r];
}

static int is_identity(fl_combiner k, fl_interval x) {
  double id = k == FL_COMB_MAX ? -INFINITY : k == FL_COMB_MIN ? INFINITY : 0.0;
  return !x.nan && x.lo == id && x.hi == id;
}

fl_tile_class fl_tiles_classify(const fl_tiles *t, const fl_tile_box *box, signed char *truth) {
  const fl_graph *g = t->g;
  void *rc = (void *)t;
  fl_interval vars[FL_MAX_VARS];
  int resolved = 1;
  for (int m = 0; m < t->nmask; m++) {
    member_box(t, t->mask_tv[m], box, vars);
    truth[m] = (signed char)fl_interval_truth(fl_interval_of(g, t->mask_tv[m], t->mask[m], vars, range, rc));
    resolved &= truth[m] >= 0;
  }
  int empty = 1;
  for (int k = 0; k < t->gr.n && empty; k++) {
    int v = t->gr.first + k;
    if (!fl_group_is_loop(&g->vals[v])) continue;
    member_box(t, v, box, vars);
    empty = is_identity(g->vals[v].comb, fl_interval_of(g, v, g->vals[v].body, vars, range, rc));
  }
  if (empty) return FL_TILE_SKIP;
  return resolved && t->nmask ? FL_TILE_FULL : FL_TILE_PARTIAL;
}

/* ---- boxes ---- */

int64_t fl_tiles_blocks(const fl_tiles *t, int s) {
  int64_t size = t->g->syms[t->gr.grid[s]].size;
  return (size + t->block[s] - 1) / t->block[s];
}

static int64_t loop_numel(const fl_tiles *t) {
  int64_t n = 1;
  for (int r = 0; r < t->gr.nloop; r++) n *= t->g->syms[t->gr.loop_sym[r]].size;
  return n;
}

int64_t fl_tiles_loop_width(const fl_tiles *t) {
  int64_t n = loop_numel(t);
  return t->tile > 0 && t->tile < n ? t->tile : n;
}

int64_t fl_tiles_loop_tiles(const fl_tiles *t) {
  int64_t n = loop_numel(t), tile = fl_tiles_loop_width(t);
  return n == 0 ? 0 : (n + tile - 1) / tile;
}

/* The loop dims' positions of flattened loop position r. */
static void unflatten(const fl_tiles *t, int64_t r, int64_t *pos) {
  for (int k = t->gr.nloop - 1; k >= 0; k--) {
    int64_t size = t->g->syms[t->gr.loop_sym[k]].size;
    pos[k] = r % size;
    r /= size;
  }
}

void fl_tiles_box(const fl_tiles *t, const int64_t *block, int64_t tile, fl_tile_box *box) {
  for (int s = 0; s < t->gr.ngrid; s++) {
    int64_t size = t->g->syms[t->gr.grid[s]].size;
    int64_t b = t->block[s];
    int64_t lo = block[s] < 0 ? 0 : block[s] * b;
    int64_t hi = block[s] < 0 ? size - 1 : lo + b - 1;
    box->grid[s] = (fl_interval){(double)lo, (double)(hi < size ? hi : size - 1), 0};
  }
  int64_t n = loop_numel(t), w = fl_tiles_loop_width(t);
  int64_t r1 = (tile + 1) * w < n ? (tile + 1) * w : n;
  int64_t a[FL_MAX_DIMS], z[FL_MAX_DIMS];
  unflatten(t, tile * w, a);
  unflatten(t, r1 - 1, z);
  /* a dim keeps its range while the dims outside it agree; inside, all of it */
  int agree = 1;
  for (int k = 0; k < t->gr.nloop; k++) {
    int64_t size = t->g->syms[t->gr.loop_sym[k]].size;
    box->loop[k] = agree ? (fl_interval){(double)a[k], (double)z[k], 0}
                         : (fl_interval){0, (double)(size - 1), 0};
    agree &= a[k] == z[k];
  }
}

/* ---- schedules ---- */

void fl_tiles_classify_block(const fl_tiles *t, const int64_t *block, signed char *out,
                             fl_tile_counts *counts, int64_t *lo, int64_t *hi) {
  signed char scratch[1 + FL_MAX_GROUP_MASKS];
  int64_t ntiles = fl_tiles_loop_tiles(t), stride = 1 + t->nmask;
  *lo = -1;
  *hi = 0;
  for (int64_t j = 0; j < ntiles; j++) {
    fl_tile_box box;
    fl_tiles_box(t, block, j, &box);
    signed char *e = out ? out + j * stride : scratch;
    e[0] = (signed char)fl_tiles_classify(t, &box, e + 1);
    counts->total++;
    counts->skipped += e[0] == FL_TILE_SKIP;
    counts->partial += e[0] == FL_TILE_PARTIAL;
    counts->full += e[0] == FL_TILE_FULL;
    if (e[0] != FL_TILE_SKIP) {
      if (*lo < 0) *lo = j;
      *hi = j + 1;
    }
  }
  if (*lo < 0) *lo = 0;
}

int64_t fl_tiles_mask_blocks(const fl_tiles *t) {
  int64_t n = 1;
  for (int s = 0; s < t->gr.ngrid; s++)
    if (t->uses[s]) n *= fl_tiles_blocks(t, s);
  return n;
}

void fl_tiles_schedule(const fl_tiles *t, signed char *table, int64_t *bounds,
                       fl_tile_counts *counts) {
  int64_t block[FL_MAX_DIMS], nb = fl_tiles_mask_blocks(t);
  int64_t per_block = fl_tiles_loop_tiles(t) * (1 + t->nmask);
  for (int s = 0; s < t->gr.ngrid; s++) block[s] = t->uses[s] ? 0 : -1;
  for (int64_t b = 0; b < nb; b++) {
    int64_t lo, hi;
    fl_tiles_classify_block(t, block, table ? table + b * per_block : NULL, counts, &lo, &hi);
    if (bounds) bounds[2 * b] = lo, bounds[2 * b + 1] = hi;
    for (int s = t->gr.ngrid - 1; s >= 0; s--) { /* the next block, C order */
      if (!t->uses[s]) continue;
      if (++block[s] < fl_tiles_blocks(t, s)) break;
      block[s] = 0;
    }
  }
}
