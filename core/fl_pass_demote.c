/* demote (dimension demotion): a reduction P that a node C loads with one
 * index running over a dimension C reduces (or a nested reduction of C
 * binds) and another over one of C's output dimensions is an intermediate
 * over (output, reduced) pairs, such as the N×N scores. It is recomputed
 * inside C's loop as a nested reduction instead of being materialized:
 * C's load of P[.., i, j] becomes sum(d) of P's body at (i, j).
 * A reduction loaded only along C's output dims (a per-row statistic) or
 * only along reduced dims (a per-key one, such as a cumulative sum over
 * keys) stays materialized: recomputing it per use would multiply its cost
 * and save no N×N memory. */
#include "fl_pass.h"

#include <stdlib.h>

typedef struct demoter {
  int count;
  char *done;
} demoter;

static int is_reduction(const fl_graph *g, int v) {
  const fl_value *p = &g->vals[v];
  return v >= g->ninputs && p->nred > 0 && p->comb != FL_COMB_NONE && !p->group;
}

/* Does some index run over an output variable of C and another over a loop one? */
static int crosses(const fl_graph *g, const fl_value *c, const fl_expr *load, const int *idx) {
  int out = 0, loop = 0;
  for (int k = 0; k < load->nargs; k++) {
    const fl_expr *x = &g->exprs[idx[k]];
    if (x->op != FL_X_VAR) continue;
    if (x->var < c->ndim) out = 1;
    else loop = 1;
  }
  return out && loop;
}

static int demote_load(fl_copier *cp, const fl_expr *load, const int *idx) {
  fl_graph *g = cp->g;
  if (!is_reduction(g, load->src) || !crosses(g, cp->into, load, idx)) return -2;
  const fl_value *p = &g->vals[load->src];
  demoter *dm = cp->ctx;
  fl_copier sub;
  int first = 0, body = -1;
  if (fl_copier_init(&sub, g, cp->into, p, idx, 1, &first, cp->e) == 0) {
    sub.on_load = demote_load;
    sub.ctx = dm;
    body = fl_copy_expr(&sub, p->body);
  }
  fl_copier_free(&sub);
  if (body < 0) return -1;
  fl_expr red = {.op = FL_X_REDUCE, .comb = p->comb, .var = first, .nbind = p->nred,
                 .nargs = 1, .args = {body}};
  if (!dm->done[load->src]) {
    dm->done[load->src] = 1;
    dm->count++;
  }
  return fl_graph_expr(g, &red, cp->e);
}

fl_status fl_pass_demote(fl_graph *g, fl_text *log, fl_err *e) {
  demoter dm = {0, calloc((size_t)g->nvals + 1, 1)};
  if (!dm.done) return fl_fail(e, FL_ENOMEM, "out of memory demoting");
  fl_status s = fl_rewrite_loads(g, demote_load, &dm, e);
  if (s == FL_OK) {
    fl_text_put(log, "demote: %d reduction%s recomputed inside the loops that read them", dm.count,
                dm.count == 1 ? "" : "s");
    const char *sep = ": ";
    for (int v = g->ninputs; v < g->nvals; v++)
      if (dm.done[v]) {
        fl_text_put(log, "%s%s", sep, g->vals[v].name);
        sep = ", ";
      }
    fl_text_put(log, "\n");
    s = fl_graph_compact(g, e);
  }
  free(dm.done);
  return s;
}
