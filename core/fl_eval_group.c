/* Evaluating an online group (made by core/fl_pass_online.c, tiled by
 * core/fl_pass_tile.c) as its kernel plan says: at each grid position, the
 * loop walks the reduction in tiles; per tile, the tile members (scores)
 * are computed once for the tile's positions, the max/min members take the
 * tile in, then every sum member whose body depends on them is rescaled to
 * their new values and takes the tile in. After the loop, the epilogue
 * members compute from the final values.
 *
 * With a plan, tiles its schedule skips are not run, and tiles it marks
 * full run with their masks resolved (no mask code); grid positions are
 * visited block by block. Without one (the reference), every tile runs
 * masked. With one tile this is the two-pass algorithm (maxima first, then
 * sums); with smaller tiles it is the online one. Both give the
 * reference's numbers, to rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fl_eval_impl.h"
#include "fl_plan.h"

typedef struct member {
  int v;
  int slot[FL_MAX_DIMS]; /* per output dim: its place in the grid, or -1 */
  int nx, xdim[FL_MAX_DIMS];
  int64_t nextra;        /* positions of the other dims (a tile member's: the loop's) */
  double *acc;           /* per such position: the running, then final, value */
  double *mu;            /* per such position: the rescale argument before the tile */
} member;

typedef struct group_run {
  fl_group gr;
  member *m;
  int64_t grid_size[FL_MAX_DIMS], gpos[FL_MAX_DIMS];
  int64_t red_numel, width, ntiles;
  int safe; /* reads of running max/min members: a non-finite one reads as 0 */
  /* the plan's kernel, or NULL; classes of the current block's tiles when
   * they are classified at run time */
  fl_kernel *k;
  signed char *cls;
  int64_t block[FL_MAX_DIMS];
  int have_block;
} group_run;

/* Sets the variables of member m for its extra position x and loop position r. */
static void place(eval_ctx *c, group_run *gr, member *m, int64_t x, int64_t r) {
  const fl_value *val = &c->g->vals[m->v];
  const value_info *in = &c->info[m->v];
  c->node = m->v;
  for (int k = m->nx - 1; k >= 0; k--) {
    int d = m->xdim[k];
    c->pos[d] = x % in->size[d];
    x /= in->size[d];
  }
  for (int d = 0; d < val->ndim; d++)
    if (m->slot[d] >= 0) c->pos[d] = gr->gpos[m->slot[d]];
  for (int k = val->nred - 1; k >= 0; k--) {
    c->pos[val->ndim + k] = r % in->red_size[k];
    r /= in->red_size[k];
  }
}

double fl_eval_group_load(eval_ctx *c, const fl_expr *x, const int64_t *idx) {
  group_run *gr = c->group;
  int k = gr ? x->src - gr->gr.first : -1;
  if (k < 0 || k >= gr->gr.n) {
    if (c->status == FL_OK)
      c->status = fl_fail(c->e, FL_EINVAL, "malformed graph: '%s' is read before it is computed",
                          c->g->vals[x->src].name);
    return NAN;
  }
  member *m = &gr->m[k];
  const value_info *in = &c->info[m->v];
  int64_t off = 0;
  for (int d = 0; d < c->g->vals[m->v].ndim; d++) {
    if (m->slot[d] < 0) {
      off = off * in->size[d] + idx[d];
    } else if (idx[d] != gr->gpos[m->slot[d]]) {
      if (c->status == FL_OK)
        c->status = fl_fail(c->e, FL_EINVAL, "malformed group: '%s' reads '%s' at another "
                            "position of a grid dimension", c->g->vals[c->node].name,
                            c->g->vals[m->v].name);
      return NAN;
    }
  }
  double v = m->acc[off];
  if (gr->safe && fl_group_is_extreme(&c->g->vals[m->v]) && !isfinite(v)) return 0.0;
  return v;
}

static double rescale_factor(const fl_value *val, double before, double after) {
  if (val->resc == FL_RESCALE_EXP) return exp(before - after);
  if (val->resc == FL_RESCALE_EXP2) return exp2(before - after);
  return pow(after / before, val->resc_pow);
}

/* ---- setting up ---- */

static fl_status setup_member(eval_ctx *c, group_run *gr, member *m, int v) {
  const fl_value *val = &c->g->vals[v];
  m->v = v;
  m->nextra = 1;
  for (int d = 0; d < val->ndim; d++) {
    m->slot[d] = fl_group_slot(c->g, &gr->gr, v, d);
    if (m->slot[d] < 0) {
      m->xdim[m->nx++] = d;
      m->nextra *= c->info[v].size[d];
    }
  }
  size_t n = (size_t)(m->nextra ? m->nextra : 1);
  m->acc = calloc(n, sizeof *m->acc);
  m->mu = calloc(n, sizeof *m->mu);
  if (!m->acc || !m->mu)
    return fl_fail(c->e, FL_ENOMEM, "out of host memory evaluating '%s'", val->name);
  if (fl_group_is_loop(val) && val->comb == FL_COMB_NONE)
    return fl_fail(c->e, FL_EINVAL, "malformed group: loop member '%s' has no combiner",
                   val->name);
  if (val->tile_local && m->nextra != gr->red_numel)
    return fl_fail(c->e, FL_EINVAL, "malformed group: tile member '%s' is not over the grid "
                   "and the loop", val->name);
  return FL_OK;
}

/* The loop members must reduce over the same symbols; every member has the grid's. */
static fl_status check_members(eval_ctx *c, group_run *gr) {
  const fl_value *ref = &c->g->vals[gr->gr.loop];
  for (int k = 0; k < gr->gr.n; k++) {
    const fl_value *v = &c->g->vals[gr->gr.first + k];
    int seen[FL_MAX_DIMS] = {0};
    for (int d = 0; d < v->ndim; d++) {
      int slot = fl_group_slot(c->g, &gr->gr, gr->gr.first + k, d);
      if (slot >= 0) seen[slot] = 1;
    }
    for (int s = 0; s < gr->gr.ngrid; s++)
      if (!seen[s])
        return fl_fail(c->e, FL_EINVAL, "malformed group: '%s' lacks grid dimension %s", v->name,
                       c->g->syms[gr->gr.grid[s]].name);
    if (!fl_group_is_loop(v)) continue;
    int same = v->nred == ref->nred;
    for (int r = 0; same && r < v->nred; r++) same = v->red[r] == ref->red[r];
    if (!same)
      return fl_fail(c->e, FL_EINVAL, "malformed group: '%s' and '%s' reduce over different "
                     "dimensions", ref->name, v->name);
  }
  return FL_OK;
}

static fl_status setup(eval_ctx *c, group_run *gr, int first) {
  fl_group_at(c->g, first, &gr->gr);
  if (gr->gr.loop < 0)
    return fl_fail(c->e, FL_EINVAL, "malformed group: '%s' has no loop member",
                   c->g->vals[first].name);
  gr->m = calloc((size_t)gr->gr.n, sizeof *gr->m);
  if (!gr->m) return fl_fail(c->e, FL_ENOMEM, "out of host memory evaluating a group");
  for (int s = 0; s < gr->gr.ngrid; s++) gr->grid_size[s] = c->g->syms[gr->gr.grid[s]].size;
  gr->red_numel = c->info[gr->gr.loop].red_numel;
  fl_status s = check_members(c, gr);
  for (int k = 0; s == FL_OK && k < gr->gr.n; k++) s = setup_member(c, gr, &gr->m[k], first + k);
  if (s != FL_OK) return s;
  gr->k = c->plan ? fl_plan_kernel_of(c->plan, first) : NULL;
  int64_t tile = gr->k ? fl_tiles_loop_width(&gr->k->tiles) : c->tile;
  gr->width = tile > 0 && tile < gr->red_numel ? tile : gr->red_numel;
  gr->ntiles = gr->width ? (gr->red_numel + gr->width - 1) / gr->width : 0;
  if (gr->k && gr->k->tiles.nmask > 0 && !gr->k->table) {
    gr->cls = malloc((size_t)(gr->ntiles * (1 + gr->k->tiles.nmask)) + 1);
    if (!gr->cls) return fl_fail(c->e, FL_ENOMEM, "out of host memory classifying tiles");
  }
  return FL_OK;
}

static void teardown(group_run *gr) {
  for (int k = 0; gr->m && k < gr->gr.n; k++) {
    free(gr->m[k].acc);
    free(gr->m[k].mu);
  }
  free(gr->m);
  free(gr->cls);
}

/* ---- which tiles run ---- */

/* Classifies the current block's tiles from the data (masks over data). */
static void classify_block(eval_ctx *c, group_run *gr) {
  fl_tiles *t = &gr->k->tiles;
  int64_t block[FL_MAX_DIMS];
  int same = gr->have_block;
  for (int s = 0; s < gr->gr.ngrid; s++) {
    block[s] = gr->gpos[s] / t->block[s];
    same &= block[s] == gr->block[s];
  }
  if (same) return;
  memcpy(gr->block, block, sizeof block);
  gr->have_block = 1;
  t->values = c->data;
  int64_t lo, hi;
  fl_tiles_classify_block(t, block, gr->cls, &gr->k->counts, &lo, &hi);
  t->values = NULL;
}

static fl_tile_class tile_class(group_run *gr, int64_t j, const signed char **truth) {
  *truth = NULL;
  if (!gr->k || gr->k->tiles.nmask == 0) return FL_TILE_PARTIAL;
  if (gr->k->table) return fl_plan_table_class(gr->k, gr->gpos, j, truth);
  const signed char *e = gr->cls + j * (1 + gr->k->tiles.nmask);
  *truth = e + 1;
  return (fl_tile_class)e[0];
}

/* ---- the loop ---- */

/* The tile members at loop positions [r0, r1); in a full tile, with the
 * masks resolved by their truths. */
static void fill_tiles(eval_ctx *c, group_run *gr, int64_t r0, int64_t r1, const signed char *truth) {
  const fl_tiles *t = gr->k ? &gr->k->tiles : NULL;
  for (int k = 0; k < gr->gr.n && c->status == FL_OK; k++) {
    member *m = &gr->m[k];
    const fl_value *val = &c->g->vals[m->v];
    if (!val->tile_local) continue;
    for (int q = 0; truth && q < t->nmask; q++)
      if (t->mask_tv[q] == m->v) c->resolved[t->mask[q]] = (signed char)(1 + truth[q]);
    for (int64_t r = r0; r < r1 && c->status == FL_OK; r++) {
      place(c, gr, m, r, 0);
      m->acc[r] = fl_eval_expr(c, val->body);
    }
    for (int q = 0; truth && q < t->nmask; q++) c->resolved[t->mask[q]] = 0;
  }
}

static void take_tile(eval_ctx *c, group_run *gr, member *m, int64_t r0, int64_t r1) {
  const fl_value *val = &c->g->vals[m->v];
  for (int64_t x = 0; x < m->nextra && c->status == FL_OK; x++) {
    if (val->resc != FL_RESCALE_NONE) {
      place(c, gr, m, x, r0);
      double after = fl_eval_expr(c, val->resc_arg);
      if (m->acc[x] != 0) m->acc[x] *= rescale_factor(val, m->mu[x], after);
    }
    for (int64_t r = r0; r < r1 && c->status == FL_OK; r++) {
      place(c, gr, m, x, r);
      m->acc[x] = fl_combine(val->comb, m->acc[x], fl_eval_expr(c, val->body));
    }
  }
}

static void save_mu(eval_ctx *c, group_run *gr, member *m, int64_t r0) {
  const fl_value *val = &c->g->vals[m->v];
  for (int64_t x = 0; x < m->nextra && c->status == FL_OK; x++) {
    place(c, gr, m, x, r0);
    m->mu[x] = fl_eval_expr(c, val->resc_arg);
  }
}

/* Members of one kind take the tile in: 0 max/min, 1 sums. */
static void take_all(eval_ctx *c, group_run *gr, int sums, int64_t r0, int64_t r1) {
  for (int k = 0; k < gr->gr.n; k++) {
    const fl_value *v = &c->g->vals[gr->m[k].v];
    if (fl_group_is_loop(v) && fl_group_is_extreme(v) != sums) take_tile(c, gr, &gr->m[k], r0, r1);
  }
}

static void run_loop(eval_ctx *c, group_run *gr) {
  int64_t lo = 0, hi = gr->ntiles;
  if (gr->k && gr->k->table) fl_plan_bounds(gr->k, gr->gpos, &lo, &hi);
  if (gr->cls) classify_block(c, gr);
  gr->safe = 1;
  for (int64_t j = lo; j < hi && c->status == FL_OK; j++) {
    const signed char *truth;
    fl_tile_class cls = tile_class(gr, j, &truth);
    if (cls == FL_TILE_SKIP) continue;
    int64_t r0 = j * gr->width, r1 = r0 + gr->width < gr->red_numel ? r0 + gr->width : gr->red_numel;
    fill_tiles(c, gr, r0, r1, cls == FL_TILE_FULL ? truth : NULL);
    for (int k = 0; k < gr->gr.n; k++) {
      const fl_value *v = &c->g->vals[gr->m[k].v];
      if (fl_group_is_loop(v) && v->resc != FL_RESCALE_NONE) save_mu(c, gr, &gr->m[k], r0);
    }
    take_all(c, gr, 0, r0, r1);
    take_all(c, gr, 1, r0, r1);
  }
  gr->safe = 0;
}

/* The loop read non-finite running values as 0 (a row that has seen only
 * masked positions so far). Where the final value is finite one more
 * rescale corrects for that; where it is not, the reference's own result
 * (usually NaN) is recomputed in a plain pass over every position. */
static void settle(eval_ctx *c, group_run *gr, member *m, int *filled) {
  const fl_value *val = &c->g->vals[m->v];
  for (int64_t x = 0; x < m->nextra && c->status == FL_OK; x++) {
    place(c, gr, m, x, 0);
    gr->safe = 1;
    double seen = fl_eval_expr(c, val->resc_arg);
    gr->safe = 0;
    double final = fl_eval_expr(c, val->resc_arg);
    if (isfinite(final)) {
      if (seen != final && m->acc[x] != 0) m->acc[x] *= rescale_factor(val, seen, final);
      continue;
    }
    if (!*filled) fill_tiles(c, gr, 0, gr->red_numel, NULL); /* skipped tiles too */
    *filled = 1;
    m->acc[x] = fl_comb_start(val->comb);
    for (int64_t r = 0; r < gr->red_numel && c->status == FL_OK; r++) {
      place(c, gr, m, x, r);
      m->acc[x] = fl_combine(val->comb, m->acc[x], fl_eval_expr(c, val->body));
    }
  }
}

static void run_position(eval_ctx *c, group_run *gr) {
  for (int k = 0; k < gr->gr.n; k++) {
    member *m = &gr->m[k];
    double start = fl_comb_start(c->g->vals[m->v].comb);
    for (int64_t x = 0; x < m->nextra; x++) m->acc[x] = start;
  }
  run_loop(c, gr);
  int filled = 0;
  for (int k = 0; k < gr->gr.n; k++) {
    const fl_value *v = &c->g->vals[gr->m[k].v];
    if (fl_group_is_loop(v) && v->resc != FL_RESCALE_NONE) settle(c, gr, &gr->m[k], &filled);
  }
  for (int k = 0; k < gr->gr.n && c->status == FL_OK; k++) {
    member *m = &gr->m[k];
    const fl_value *val = &c->g->vals[m->v];
    if (!val->epilogue) continue;
    for (int64_t x = 0; x < m->nextra && c->status == FL_OK; x++) {
      place(c, gr, m, x, 0);
      m->acc[x] = fl_eval_expr(c, val->body);
    }
  }
}

/* Copies each stored member's values at the current grid position to its array. */
static void store(eval_ctx *c, group_run *gr, double **out) {
  for (int k = 0; k < gr->gr.n; k++) {
    member *m = &gr->m[k];
    const value_info *in = &c->info[m->v];
    if (c->g->vals[m->v].tile_local) continue;
    for (int64_t x = 0; x < m->nextra; x++) {
      place(c, gr, m, x, 0);
      int64_t off = 0;
      for (int d = 0; d < c->g->vals[m->v].ndim; d++) off += c->pos[d] * in->stride[d];
      out[k][off] = m->acc[x];
    }
  }
}

/* Visits the grid block by block (in the plan's blocks), each block's
 * positions in order. */
static int next_position(group_run *gr) {
  const int64_t *b = gr->k ? gr->k->tiles.block : NULL;
  int n = gr->gr.ngrid;
  for (int s = n - 1; s >= 0; s--) { /* within the block */
    int64_t size = b ? b[s] : 1, start = gr->gpos[s] / size * size;
    if (++gr->gpos[s] < start + size && gr->gpos[s] < gr->grid_size[s]) return 1;
    gr->gpos[s] = start;
  }
  for (int s = n - 1; s >= 0; s--) { /* the next block */
    int64_t size = b ? b[s] : 1, start = gr->gpos[s] / size * size;
    if (start + size < gr->grid_size[s]) {
      gr->gpos[s] = start + size;
      return 1;
    }
    gr->gpos[s] = 0;
  }
  return 0;
}

fl_status fl_eval_group(eval_ctx *c, int first, int *end) {
  group_run gr = {0};
  double **out = NULL;
  fl_status s = setup(c, &gr, first);
  *end = first + gr.gr.n;
  if (s == FL_OK) {
    out = calloc((size_t)gr.gr.n, sizeof *out);
    if (!out) s = fl_fail(c->e, FL_ENOMEM, "out of host memory evaluating a group");
  }
  for (int k = 0; s == FL_OK && k < gr.gr.n; k++) {
    if (c->g->vals[first + k].tile_local) continue;
    out[k] = fl_eval_alloc(c, first + k);
    c->data[first + k] = NULL; /* loads go to the group until it is done */
    if (!out[k]) s = FL_ENOMEM;
  }
  int64_t total = 1;
  for (int d = 0; d < gr.gr.ngrid; d++) total *= gr.grid_size[d];
  c->group = &gr;
  for (int more = total > 0; s == FL_OK && more; more = next_position(&gr)) {
    run_position(c, &gr);
    s = c->status;
    if (s == FL_OK) store(c, &gr, out);
  }
  c->group = NULL;
  for (int k = 0; out && k < gr.gr.n; k++) {
    if (s == FL_OK) c->data[first + k] = out[k];
    else free(out[k]);
  }
  free(out);
  teardown(&gr);
  return s;
}
