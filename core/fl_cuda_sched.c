#include "fl_cuda_sched.h"

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

static fl_status upload_table(const fl_tiles *t, int64_t ntiles, const signed char *table,
                              const int64_t *bounds, int ordinal, fl_cuda_sched *s, fl_err *e) {
  int64_t nb = fl_tiles_mask_blocks(t);
  int64_t *runs = fl_cuda_sched_runs(t->nmask, nb, ntiles, table, bounds);
  if (!runs) return fl_fail(e, FL_ENOMEM, "out of host memory uploading tile classes");
  fl_status st = upload(ordinal, table, (size_t)(nb * ntiles * (1 + t->nmask)), &s->tab, e);
  if (st == FL_OK) st = upload(ordinal, runs, (size_t)nb * 4 * sizeof *runs, &s->bnd, e);
  free(runs);
  return st;
}

fl_status fl_cuda_sched_build(const fl_kernel *k, int ordinal, fl_cuda_sched *s, fl_err *e) {
  memset(s, 0, sizeof *s);
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
  free_values(s->last, s->nvals);
  s->tab = s->bnd = 0;
  s->last = NULL;
  s->nvals = 0;
}
