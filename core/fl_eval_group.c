/* Evaluating an online group (made by core/fl_pass_online.c): its members
 * share one loop over their reduction dims. At each position of the dims
 * all members share, the loop walks the reduction in tiles; per tile, the
 * max/min members take the tile in, then every sum member whose body
 * depends on them is rescaled to their new values and takes the tile in.
 * After the loop, the epilogue members compute from the final values.
 *
 * With one tile this is the two-pass algorithm (maxima first, then sums);
 * with smaller tiles it is the online one. Both give the reference's
 * numbers, to rounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fl_eval_impl.h"

typedef struct member {
  int v;
  int slot[FL_MAX_DIMS]; /* per output dim: its place among the shared dims, or -1 */
  int nx, xdim[FL_MAX_DIMS];
  int64_t nextra;        /* positions of the dims not shared */
  double *acc;           /* per such position: the running, then final, value */
  double *mu;            /* per such position: the rescale argument before the tile */
} member;

typedef struct group_run {
  int first, n;
  member *m;
  int nshared, shared_sym[FL_MAX_DIMS];
  int64_t shared_size[FL_MAX_DIMS], gpos[FL_MAX_DIMS];
  int64_t red_numel;
  int safe; /* reads of running max/min members: a non-finite one reads as 0 */
} group_run;

static int is_loop(const fl_value *v) { return !v->epilogue; }
static int is_extreme(const fl_value *v) {
  return v->comb == FL_COMB_MAX || v->comb == FL_COMB_MIN;
}

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
  int k = gr ? x->src - gr->first : -1;
  if (k < 0 || k >= gr->n) {
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
                            "position of a shared dimension", c->g->vals[c->node].name,
                            c->g->vals[m->v].name);
      return NAN;
    }
  }
  double v = m->acc[off];
  if (gr->safe && is_extreme(&c->g->vals[m->v]) && !isfinite(v)) return 0.0;
  return v;
}

static double rescale_factor(const fl_value *val, double before, double after) {
  if (val->resc == FL_RESCALE_EXP) return exp(before - after);
  return pow(after / before, val->resc_pow);
}

/* ---- setting up ---- */

static int shared_by_all(const fl_graph *g, int first, int n, int sym) {
  for (int k = 0; k < n; k++) {
    const fl_value *v = &g->vals[first + k];
    int found = 0;
    for (int d = 0; d < v->ndim; d++) found |= v->dims[d] == sym;
    if (!found) return 0;
  }
  return 1;
}

static fl_status setup_member(eval_ctx *c, group_run *gr, member *m, int v) {
  const fl_value *val = &c->g->vals[v];
  m->v = v;
  m->nextra = 1;
  for (int d = 0; d < val->ndim; d++) {
    m->slot[d] = -1;
    for (int s = 0; s < gr->nshared; s++)
      if (val->dims[d] == gr->shared_sym[s]) {
        int dup = 0;
        for (int e = 0; e < d; e++) dup |= m->slot[e] == s;
        if (!dup) m->slot[d] = s;
      }
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
  if (is_loop(val) && val->comb == FL_COMB_NONE)
    return fl_fail(c->e, FL_EINVAL, "malformed group: loop member '%s' has no combiner",
                   val->name);
  return FL_OK;
}

/* The loop members must reduce over the same symbols. */
static fl_status check_loops(eval_ctx *c, group_run *gr) {
  const fl_value *ref = NULL;
  for (int k = 0; k < gr->n; k++) {
    const fl_value *v = &c->g->vals[gr->m[k].v];
    if (!is_loop(v)) continue;
    if (!ref) {
      ref = v;
      gr->red_numel = c->info[gr->m[k].v].red_numel;
      continue;
    }
    int same = v->nred == ref->nred;
    for (int r = 0; same && r < v->nred; r++) same = v->red[r] == ref->red[r];
    if (!same)
      return fl_fail(c->e, FL_EINVAL, "malformed group: '%s' and '%s' reduce over different "
                     "dimensions", ref->name, v->name);
  }
  return FL_OK;
}

static fl_status setup(eval_ctx *c, group_run *gr, int first, int *end) {
  const fl_graph *g = c->g;
  int n = 0;
  while (first + n < g->nvals && g->vals[first + n].group == g->vals[first].group) n++;
  *end = first + n;
  gr->first = first;
  gr->n = n;
  gr->m = calloc((size_t)n, sizeof *gr->m);
  if (!gr->m) return fl_fail(c->e, FL_ENOMEM, "out of host memory evaluating a group");
  const fl_value *lead = &g->vals[first];
  for (int d = 0; d < lead->ndim; d++) {
    int sym = lead->dims[d], seen = 0;
    for (int s = 0; s < gr->nshared; s++) seen |= gr->shared_sym[s] == sym;
    if (seen || !shared_by_all(g, first, n, sym)) continue;
    gr->shared_size[gr->nshared] = g->syms[sym].size;
    gr->shared_sym[gr->nshared++] = sym;
  }
  for (int k = 0; k < n; k++) {
    fl_status s = setup_member(c, gr, &gr->m[k], first + k);
    if (s != FL_OK) return s;
  }
  return check_loops(c, gr);
}

static void teardown(group_run *gr) {
  for (int k = 0; gr->m && k < gr->n; k++) {
    free(gr->m[k].acc);
    free(gr->m[k].mu);
  }
  free(gr->m);
}

/* ---- the loop ---- */

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

static void run_loop(eval_ctx *c, group_run *gr) {
  int64_t tile = c->tile > 0 ? c->tile : gr->red_numel;
  gr->safe = 1;
  for (int64_t r0 = 0; r0 < gr->red_numel && c->status == FL_OK; r0 += tile) {
    int64_t r1 = r0 + tile < gr->red_numel ? r0 + tile : gr->red_numel;
    for (int k = 0; k < gr->n; k++) {
      const fl_value *v = &c->g->vals[gr->m[k].v];
      if (is_loop(v) && v->resc != FL_RESCALE_NONE) save_mu(c, gr, &gr->m[k], r0);
    }
    for (int k = 0; k < gr->n; k++)
      if (is_loop(&c->g->vals[gr->m[k].v]) && is_extreme(&c->g->vals[gr->m[k].v]))
        take_tile(c, gr, &gr->m[k], r0, r1);
    for (int k = 0; k < gr->n; k++)
      if (is_loop(&c->g->vals[gr->m[k].v]) && !is_extreme(&c->g->vals[gr->m[k].v]))
        take_tile(c, gr, &gr->m[k], r0, r1);
  }
  gr->safe = 0;
}

/* The loop read non-finite running values as 0 (a row that has seen only
 * masked positions so far). Where the final value is finite one more
 * rescale corrects for that; where it is not, the reference's own result
 * (usually NaN) is recomputed in a plain pass. */
static void settle(eval_ctx *c, group_run *gr, member *m) {
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
    m->acc[x] = fl_comb_start(val->comb);
    for (int64_t r = 0; r < gr->red_numel && c->status == FL_OK; r++) {
      place(c, gr, m, x, r);
      m->acc[x] = fl_combine(val->comb, m->acc[x], fl_eval_expr(c, val->body));
    }
  }
}

static void run_position(eval_ctx *c, group_run *gr) {
  for (int k = 0; k < gr->n; k++) {
    member *m = &gr->m[k];
    double start = fl_comb_start(c->g->vals[m->v].comb);
    for (int64_t x = 0; x < m->nextra; x++) m->acc[x] = start;
  }
  run_loop(c, gr);
  for (int k = 0; k < gr->n; k++) {
    const fl_value *v = &c->g->vals[gr->m[k].v];
    if (is_loop(v) && v->resc != FL_RESCALE_NONE) settle(c, gr, &gr->m[k]);
  }
  for (int k = 0; k < gr->n && c->status == FL_OK; k++) {
    member *m = &gr->m[k];
    const fl_value *val = &c->g->vals[m->v];
    if (is_loop(val)) continue;
    for (int64_t x = 0; x < m->nextra && c->status == FL_OK; x++) {
      place(c, gr, m, x, 0);
      m->acc[x] = fl_eval_expr(c, val->body);
    }
  }
}

/* Copies each member's values at the current shared position to its array. */
static void store(eval_ctx *c, group_run *gr, double **out) {
  for (int k = 0; k < gr->n; k++) {
    member *m = &gr->m[k];
    const value_info *in = &c->info[m->v];
    for (int64_t x = 0; x < m->nextra; x++) {
      place(c, gr, m, x, 0);
      int64_t off = 0;
      for (int d = 0; d < c->g->vals[m->v].ndim; d++) off += c->pos[d] * in->stride[d];
      out[k][off] = m->acc[x];
    }
  }
}

fl_status fl_eval_group(eval_ctx *c, int first, int *end) {
  group_run gr = {0};
  double **out = NULL;
  fl_status s = setup(c, &gr, first, end);
  if (s == FL_OK) {
    out = calloc((size_t)gr.n, sizeof *out);
    if (!out) s = fl_fail(c->e, FL_ENOMEM, "out of host memory evaluating a group");
  }
  for (int k = 0; s == FL_OK && k < gr.n; k++) {
    out[k] = fl_eval_alloc(c, first + k);
    c->data[first + k] = NULL; /* loads go to the group until it is done */
    if (!out[k]) s = FL_ENOMEM;
  }
  int64_t total = 1;
  for (int d = 0; d < gr.nshared; d++) total *= gr.shared_size[d];
  c->group = &gr;
  memset(gr.gpos, 0, sizeof gr.gpos);
  for (int64_t p = 0; s == FL_OK && p < total; p++) {
    run_position(c, &gr);
    s = c->status;
    if (s == FL_OK) store(c, &gr, out);
    fl_eval_step(gr.gpos, gr.nshared, gr.shared_size);
  }
  c->group = NULL;
  for (int k = 0; out && k < gr.n; k++) {
    if (s == FL_OK) c->data[first + k] = out[k];
    else free(out[k]);
  }
  free(out);
  teardown(&gr);
  return s;
}
