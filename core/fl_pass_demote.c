/* demote (dimension demotion): a reduction P that a node C loads with one
 * index running over a dimension C reduces (or a nested reduction of C
 * binds) and another over one of C's output dimensions is an intermediate
 * over (output, reduced) pairs, such as the N×N scores. It is recomputed
 * inside C's loop as a nested reduction instead of being materialized:
 * C's load of P[.., i, j] becomes sum(d) of P's body at (i, j).
 * A reduction loaded only along C's output dims (a per-row statistic) or
 * only along reduced dims stays materialized. So does one whose own
 * reduction is at least as long as C's loop (a prefix sum over the keys):
 * recomputing it at every position of the loop would multiply the work by
 * the loop's length, where recomputing q·k costs only the head dim. So
 * does one whose nested reductions would not fit in C's locals. */
#include "fl_pass.h"

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

static int64_t numel(const fl_graph *g, int n, const int *syms) {
  int64_t p = 1;
  for (int k = 0; k < n; k++) p *= g->syms[syms[k]].size;
  return p;
}

/* Nested reduction variables a copy of expression x would bind. */
static int binds(const fl_graph *g, int x) {
  const fl_expr *ex = &g->exprs[x];
  int n = ex->op == FL_X_REDUCE ? ex->nbind : 0;
  for (int i = 0; i < ex->nargs; i++) n += binds(g, ex->args[i]);
  return n;
}

static int worth_it(const fl_graph *g, const fl_value *c, const fl_value *p) {
  return numel(g, p->nred, p->red) < numel(g, c->nred, c->red) &&
         c->nloc + p->nred + binds(g, p->body) <= FL_MAX_LOCALS;
}

static int demote_load(fl_copier *cp, const fl_expr *load, const int *idx) {
  fl_graph *g = cp->g;
  if (!is_reduction(g, load->src) || !crosses(g, cp->into, load, idx)) return -2;
  const fl_value *p = &g->vals[load->src];
  if (!worth_it(g, cp->into, p)) return -2;
  fl_copier sub;
  int first = 0, body = -1;
  if (fl_copier_init(&sub, g, cp->into, p, idx, 1, &first, cp->e) == 0) {
    sub.on_load = demote_load;
    sub.ctx = cp->ctx;
    body = fl_copy_expr(&sub, p->body);
  }
  fl_copier_free(&sub);
  if (body < 0) return -1;
  fl_expr red = {.op = FL_X_REDUCE, .comb = p->comb, .var = first, .nbind = p->nred,
                 .nargs = 1, .args = {body}};
  fl_substitution_mark(cp->ctx, load->src);
  return fl_graph_expr(g, &red, cp->e);
}

fl_status fl_pass_demote(fl_graph *g, fl_text *log, fl_err *e) {
  return fl_substitute(g, demote_load, "demote", "reduction",
                       "recomputed inside the loops that read them", log, e);
}
