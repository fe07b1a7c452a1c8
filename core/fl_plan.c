#include "fl_plan.h"

#include <stdlib.h>
#include <string.h>

#include "fl_text.h"

#define MAX_TABLE ((int64_t)1 << 24) /* entries; a larger schedule is made at run time */

/* ---- the schedule of masks over indices ---- */

static int64_t table_block(const fl_kernel *k, const int64_t *gpos) {
  const fl_tiles *t = &k->tiles;
  int64_t b = 0;
  for (int s = 0; s < t->gr.ngrid; s++)
    if (t->uses[s]) b = b * k->nblocks[s] + gpos[s] / t->block[s];
  return b;
}

fl_tile_class fl_plan_table_class(const fl_kernel *k, const int64_t *gpos, int64_t j,
                                  const signed char **truth) {
  const signed char *e = k->table + (table_block(k, gpos) * k->ntiles + j) * (1 + k->tiles.nmask);
  *truth = e + 1;
  return (fl_tile_class)e[0];
}

void fl_plan_bounds(const fl_kernel *k, const int64_t *gpos, int64_t *lo, int64_t *hi) {
  if (!k->bounds) {
    *lo = 0;
    *hi = k->ntiles;
    return;
  }
  int64_t b = table_block(k, gpos);
  *lo = k->bounds[2 * b];
  *hi = k->bounds[2 * b + 1];
}

static fl_status schedule(fl_kernel *k, fl_err *e) {
  const fl_tiles *t = &k->tiles;
  for (int s = 0; s < t->gr.ngrid; s++) k->nblocks[s] = t->uses[s] ? fl_tiles_blocks(t, s) : 1;
  k->table_blocks = fl_tiles_mask_blocks(t);
  if (k->table_blocks * k->ntiles > MAX_TABLE) return FL_OK; /* classified at run time */
  k->table = malloc((size_t)(k->table_blocks * k->ntiles * (1 + t->nmask)) + 1);
  k->bounds = malloc((size_t)k->table_blocks * 2 * sizeof *k->bounds);
  if (!k->table || !k->bounds) return fl_fail(e, FL_ENOMEM, "out of memory planning tiles");
  fl_tiles_schedule(t, k->table, k->bounds, &k->counts);
  return FL_OK;
}

/* ---- building ---- */

/* tile > 0: the loop in tiles of `tile`, the largest blocked grid dim in blocks of it. */
static void override_sizes(fl_tiles *t, int64_t tile) {
  if (tile <= 0) return;
  t->tile = tile;
  int row = -1;
  for (int s = 0; s < t->gr.ngrid; s++)
    if (t->block[s] > 1 && (row < 0 || t->block[s] >= t->block[row])) row = s;
  if (row >= 0) {
    int64_t size = t->g->syms[t->gr.grid[row]].size;
    t->block[row] = tile < size ? tile : size;
  }
}

static fl_status plan_group(const fl_graph *g, int first, int64_t tile, fl_kernel *k, fl_err *e) {
  k->is_group = 1;
  fl_status s = fl_tiles_init(&k->tiles, g, first, e);
  if (s != FL_OK) return s;
  k->first = first;
  k->n = k->tiles.gr.n;
  override_sizes(&k->tiles, tile);
  k->ntiles = fl_tiles_loop_tiles(&k->tiles);
  if (k->tiles.nmask > 0 && !k->tiles.data) s = schedule(k, e);
  return s;
}

/* ---- folding layout copies into a group's stores ---- */

static int index_only(const fl_graph *g, int x) {
  const fl_expr *ex = &g->exprs[x];
  switch (ex->op) {
  case FL_X_VAR: case FL_X_CONST: return 1;
  case FL_X_ADD: case FL_X_SUB: case FL_X_MUL: case FL_X_IDIV: case FL_X_MOD:
    return index_only(g, ex->args[0]) && index_only(g, ex->args[1]);
  default: return 0;
  }
}

/* Is node v a copy of a stored result of group kernel k, in another
 * layout, that nothing else reads? */
static int foldable(const fl_graph *g, const fl_kernel *k, int v) {
  const fl_value *val = &g->vals[v];
  const fl_expr *ld = &g->exprs[val->body];
  if (!k->is_group || val->group || val->nred || ld->op != FL_X_LOAD) return 0;
  int src = ld->src;
  if (src < k->first || src >= k->first + k->n || g->vals[src].tile_local) return 0;
  if (fl_value_numel(g, v) != fl_value_numel(g, src)) return 0;
  for (int d = 0; d < ld->nargs; d++)
    if (!index_only(g, ld->args[d])) return 0;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o] == src) return 0;
  for (int u = g->ninputs; u < g->nvals; u++)
    if (u != v && (fl_expr_reads(g, g->vals[u].body, src) ||
                   (g->vals[u].resc != FL_RESCALE_NONE && fl_expr_reads(g, g->vals[u].resc_arg, src))))
      if (u < k->first || u >= k->first + k->n) return 0;
  return k->nfold < FL_MAX_DIMS;
}

fl_status fl_plan_build(const fl_graph *g, int64_t tile, fl_plan *p, fl_err *e) {
  memset(p, 0, sizeof *p);
  p->g = g;
  p->k = calloc((size_t)(g->nvals - g->ninputs) + 1, sizeof *p->k);
  if (!p->k) return fl_fail(e, FL_ENOMEM, "out of memory planning kernels");
  for (int v = g->ninputs; v < g->nvals;) {
    if (p->n > 0 && foldable(g, &p->k[p->n - 1], v)) {
      fl_kernel *k = &p->k[p->n - 1];
      k->fold[k->nfold++] = v++;
      continue;
    }
    fl_kernel *k = &p->k[p->n++];
    if (g->vals[v].group) {
      fl_status s = plan_group(g, v, tile, k, e);
      if (s != FL_OK) {
        fl_plan_free(p);
        return s;
      }
    } else {
      k->first = v;
      k->n = 1;
    }
    v += k->n;
  }
  return FL_OK;
}

void fl_plan_free(fl_plan *p) {
  for (int i = 0; p->k && i < p->n; i++) {
    if (p->k[i].is_group) fl_tiles_free(&p->k[i].tiles);
    free(p->k[i].table);
    free(p->k[i].bounds);
  }
  free(p->k);
  memset(p, 0, sizeof *p);
}

fl_kernel *fl_plan_kernel_of(fl_plan *p, int v) {
  for (int i = 0; i < p->n; i++) {
    if (v >= p->k[i].first && v < p->k[i].first + p->k[i].n) return &p->k[i];
    for (int f = 0; f < p->k[i].nfold; f++)
      if (p->k[i].fold[f] == v) return &p->k[i];
  }
  return NULL;
}

/* ---- the listing ---- */

static void put_dims(fl_text *b, const fl_graph *g, const fl_value *v) {
  fl_text_put(b, "%s[", v->name);
  for (int d = 0; d < v->ndim; d++) fl_text_put(b, "%s%s", d ? "," : "", g->syms[v->dims[d]].name);
  fl_text_put(b, "]");
}

static void put_counts(fl_text *b, const fl_tile_counts *c) {
  fl_text_put(b, "%lld tiles: %lld skipped, %lld partial, %lld full", (long long)c->total,
              (long long)c->skipped, (long long)c->partial, (long long)c->full);
}

static void put_schedule(fl_text *b, const fl_graph *g, const fl_kernel *k) {
  const fl_tiles *t = &k->tiles;
  fl_text_put(b, "    schedule  ");
  if (t->nmask == 0) {
    fl_text_put(b, "every tile, unmasked\n");
  } else if (t->data) {
    fl_text_put(b, "masks read data (");
    for (int v = 0, n = 0; v < g->nvals; v++)
      if (t->reads[v]) fl_text_put(b, "%s%s", n++ ? ", " : "", g->vals[v].name);
    fl_text_put(b, "): tiles classified at run time");
    if (k->counts.total) fl_text_put(b, "; last run ");
    if (k->counts.total) put_counts(b, &k->counts);
    fl_text_put(b, "\n");
  } else if (!k->table) {
    fl_text_put(b, "masks over indices, too many tiles to fix ahead: classified at run time\n");
  } else {
    fl_text_put(b, "masks over indices: loop bounds per block of");
    for (int s = 0, n = 0; s < t->gr.ngrid; s++)
      if (t->uses[s]) fl_text_put(b, "%s%s", n++ ? ", " : " ", g->syms[t->gr.grid[s]].name);
    fl_text_put(b, "; ");
    put_counts(b, &k->counts);
    fl_text_put(b, "\n");
  }
}

static void put_group(fl_text *b, const fl_graph *g, const fl_kernel *k) {
  const fl_tiles *t = &k->tiles;
  fl_text_put(b, "    grid     ");
  for (int s = 0; s < t->gr.ngrid; s++) {
    const fl_sym *y = &g->syms[t->gr.grid[s]];
    fl_text_put(b, "%s %s %lld", s ? "," : "", y->name, (long long)y->size);
    if (t->block[s] > 1) fl_text_put(b, " in blocks of %lld", (long long)t->block[s]);
  }
  fl_text_put(b, "\n    loop     ");
  for (int r = 0; r < t->gr.nloop; r++)
    fl_text_put(b, "%s %s %lld", r ? "," : "", g->syms[t->gr.loop_sym[r]].name,
                (long long)g->syms[t->gr.loop_sym[r]].size);
  fl_text_put(b, " in tiles of %lld, carrying", (long long)fl_tiles_loop_width(t));
  for (int m = 0; m < k->n; m++) {
    const fl_value *v = &g->vals[k->first + m];
    if (!fl_group_is_loop(v)) continue;
    fl_text_put(b, " ");
    put_dims(b, g, v);
    fl_text_put(b, " (%s%s)", fl_combiner_name(v->comb), v->resc != FL_RESCALE_NONE ? ", rescaled" : "");
  }
  fl_text_put(b, "\n");
  for (int m = 0; m < t->ntv; m++) {
    fl_text_put(b, "    tile      ");
    put_dims(b, g, &g->vals[t->tv[m]]);
    fl_text_put(b, ", once per tile, never stored\n");
  }
  put_schedule(b, g, k);
  for (int m = 0; m < k->n; m++) {
    const fl_value *v = &g->vals[k->first + m];
    if (!v->epilogue) continue;
    fl_text_put(b, "    after     ");
    put_dims(b, g, v);
    fl_text_put(b, "\n");
  }
  for (int f = 0; f < k->nfold; f++) {
    const fl_value *v = &g->vals[k->fold[f]];
    fl_text_put(b, "    stores    %s as ", g->vals[g->exprs[v->body].src].name);
    put_dims(b, g, v);
    fl_text_put(b, " (a layout copy folded into the store)\n");
  }
}

char *fl_plan_dump(const fl_plan *p) {
  fl_text b = {0};
  const fl_graph *g = p->g;
  for (int i = 0; i < p->n; i++) {
    const fl_kernel *k = &p->k[i];
    const fl_value *v = &g->vals[k->first];
    if (k->is_group) {
      fl_text_put(&b, "kernel %d: online group %d, %d values\n", i + 1, v->group, k->n);
      put_group(&b, g, k);
    } else {
      fl_text_put(&b, "kernel %d: ", i + 1);
      put_dims(&b, g, v);
      if (v->nred) fl_text_put(&b, ", %s over %d dim%s", fl_combiner_name(v->comb), v->nred,
                               v->nred == 1 ? "" : "s");
      fl_text_put(&b, ", one thread an output position\n");
    }
  }
  return fl_text_take(&b);
}
