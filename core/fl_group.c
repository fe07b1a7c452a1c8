#include "fl_group.h"

int fl_group_is_loop(const fl_value *v) { return !v->epilogue && !v->tile_local; }

int fl_group_is_extreme(const fl_value *v) {
  return v->comb == FL_COMB_MAX || v->comb == FL_COMB_MIN;
}

static int has_sym(const fl_value *v, int sym) {
  for (int d = 0; d < v->ndim; d++)
    if (v->dims[d] == sym) return 1;
  return 0;
}

static void common_syms(const fl_graph *g, fl_group *gr) {
  const fl_value *lead = &g->vals[gr->loop >= 0 ? gr->loop : gr->first];
  for (int d = 0; d < lead->ndim; d++) {
    int sym = lead->dims[d], keep = 1;
    for (int s = 0; s < gr->ngrid; s++) keep &= gr->grid[s] != sym;
    for (int k = 0; keep && k < gr->n; k++) keep = has_sym(&g->vals[gr->first + k], sym);
    if (keep) gr->grid[gr->ngrid++] = sym;
  }
}

void fl_group_at(const fl_graph *g, int first, fl_group *gr) {
  gr->first = first;
  gr->n = 0;
  gr->loop = -1;
  while (first + gr->n < g->nvals && g->vals[first + gr->n].group == g->vals[first].group) {
    if (gr->loop < 0 && fl_group_is_loop(&g->vals[first + gr->n])) gr->loop = first + gr->n;
    gr->n++;
  }
  gr->ngrid = gr->nloop = 0;
  const fl_value *lead = &g->vals[first];
  if (lead->ntile > 0) {
    for (int t = 0; t < lead->ntile; t++) gr->grid[gr->ngrid++] = lead->tile_sym[t];
  } else {
    common_syms(g, gr);
  }
  if (gr->loop >= 0) {
    const fl_value *l = &g->vals[gr->loop];
    for (int r = 0; r < l->nred; r++) gr->loop_sym[gr->nloop++] = l->red[r];
  }
}

int fl_group_slot(const fl_graph *g, const fl_group *gr, int v, int d) {
  const fl_value *val = &g->vals[v];
  for (int s = 0; s < gr->ngrid; s++) {
    if (val->dims[d] != gr->grid[s]) continue;
    for (int e = 0; e < d; e++)
      if (val->dims[e] == gr->grid[s]) return -1;
    return s;
  }
  return -1;
}
