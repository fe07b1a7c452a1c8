/* Building, checking and printing the reduction IR. */
#include "fl_ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; int arity; } xops[FL_X_COUNT] = {
  [FL_X_CONST] = {"const", 0}, [FL_X_VAR] = {"var", 0}, [FL_X_LOAD] = {"load", -1},
  [FL_X_NEG] = {"neg", 1}, [FL_X_EXP] = {"exp", 1}, [FL_X_EXP2] = {"exp2", 1},
  [FL_X_LOG] = {"log", 1},
  [FL_X_TANH] = {"tanh", 1}, [FL_X_SIGMOID] = {"sigmoid", 1}, [FL_X_SQRT] = {"sqrt", 1},
  [FL_X_RSQRT] = {"rsqrt", 1}, [FL_X_ABS] = {"abs", 1}, [FL_X_RELU] = {"relu", 1},
  [FL_X_NOT] = {"not", 1}, [FL_X_FLOOR] = {"floor", 1}, [FL_X_TRUNC] = {"trunc", 1},
  [FL_X_ADD] = {"add", 2}, [FL_X_SUB] = {"sub", 2}, [FL_X_MUL] = {"mul", 2},
  [FL_X_DIV] = {"div", 2}, [FL_X_POW] = {"pow", 2}, [FL_X_MAX] = {"max", 2},
  [FL_X_MIN] = {"min", 2}, [FL_X_LT] = {"lt", 2}, [FL_X_LE] = {"le", 2},
  [FL_X_GT] = {"gt", 2}, [FL_X_GE] = {"ge", 2}, [FL_X_EQ] = {"eq", 2}, [FL_X_NE] = {"ne", 2},
  [FL_X_AND] = {"and", 2}, [FL_X_OR] = {"or", 2}, [FL_X_IDIV] = {"idiv", 2},
  [FL_X_MOD] = {"mod", 2}, [FL_X_WHERE] = {"where", 3}, [FL_X_REDUCE] = {"reduce", 1},
};

static const char *const combiners[] = {"none", "sum", "max", "min"};

int fl_xop_arity(fl_xop op) { return xops[op].arity; }
const char *fl_xop_name(fl_xop op) { return xops[op].name; }
const char *fl_combiner_name(fl_combiner c) { return combiners[c]; }

int fl_xop_parse(const char *name, fl_xop *out) {
  for (int i = 0; i < FL_X_COUNT; i++)
    if (strcmp(name, xops[i].name) == 0) {
      *out = (fl_xop)i;
      return 0;
    }
  return -1;
}

int fl_combiner_parse(const char *name, fl_combiner *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, combiners[i]) == 0) {
      *out = (fl_combiner)i;
      return 0;
    }
  return -1;
}

void fl_graph_init(fl_graph *g) { memset(g, 0, sizeof *g); }

void fl_graph_free(fl_graph *g) {
  free(g->syms);
  free(g->vals);
  free(g->exprs);
  fl_graph_init(g);
}

/* Grows *arr (of `size`-byte items) to hold n + 1 items. */
static int grow(void **arr, int *cap, int n, size_t size, fl_err *e) {
  if (n < *cap) return 0;
  int ncap = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, (size_t)ncap * size);
  if (!p) {
    fl_fail(e, FL_ENOMEM, "out of memory growing the graph");
    return -1;
  }
  *arr = p;
  *cap = ncap;
  return 0;
}

int fl_graph_sym(fl_graph *g, const char *name, int64_t size, fl_err *e) {
  if (size < 0) return fl_fail(e, FL_EINVAL, "dimension '%s' has negative size", name), -1;
  if (grow((void **)&g->syms, &g->cap_syms, g->nsyms, sizeof *g->syms, e)) return -1;
  fl_sym *s = &g->syms[g->nsyms];
  snprintf(s->name, sizeof s->name, "%s", name);
  s->size = size;
  return g->nsyms++;
}

static int check_syms(const fl_graph *g, int n, const int *dims, fl_err *e) {
  if (n < 0 || n > FL_MAX_DIMS)
    return fl_fail(e, FL_EINVAL, "%d dimensions (at most %d)", n, FL_MAX_DIMS), -1;
  for (int i = 0; i < n; i++)
    if (dims[i] < 0 || dims[i] >= g->nsyms)
      return fl_fail(e, FL_EINVAL, "unknown dimension symbol %d", dims[i]), -1;
  return 0;
}

int fl_graph_input(fl_graph *g, const char *name, fl_dtype dt, int ndim, const int *dims,
                   fl_err *e) {
  if (g->nvals != g->ninputs)
    return fl_fail(e, FL_EINVAL, "inputs must come before nodes"), -1;
  if (check_syms(g, ndim, dims, e)) return -1;
  if (grow((void **)&g->vals, &g->cap_vals, g->nvals, sizeof *g->vals, e)) return -1;
  fl_value *v = &g->vals[g->nvals];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  v->dtype = dt;
  v->ndim = ndim;
  if (ndim) memcpy(v->dims, dims, (size_t)ndim * sizeof *dims);
  v->body = -1;
  g->ninputs++;
  return g->nvals++;
}

int fl_graph_expr(fl_graph *g, const fl_expr *x, fl_err *e) {
  if ((int)x->op < 0 || x->op >= FL_X_COUNT) return fl_fail(e, FL_EINVAL, "bad operator"), -1;
  int arity = fl_xop_arity(x->op);
  if (arity >= 0 && x->nargs != arity)
    return fl_fail(e, FL_EINVAL, "%s takes %d operands, got %d", fl_xop_name(x->op), arity,
                   x->nargs), -1;
  if (x->nargs < 0 || x->nargs > FL_MAX_ARGS) return fl_fail(e, FL_EINVAL, "too many operands"), -1;
  for (int i = 0; i < x->nargs; i++)
    if (x->args[i] < 0 || x->args[i] >= g->nexprs)
      return fl_fail(e, FL_EINVAL, "operand %d of %s is not an expression", i + 1,
                     fl_xop_name(x->op)), -1;
  if (x->op == FL_X_LOAD) {
    if (x->src < 0 || x->src >= g->nvals)
      return fl_fail(e, FL_EINVAL, "load of an unknown value %d", x->src), -1;
    if (x->nargs != g->vals[x->src].ndim)
      return fl_fail(e, FL_EINVAL, "load of '%s' needs %d indices, got %d", g->vals[x->src].name,
                     g->vals[x->src].ndim, x->nargs), -1;
  }
  if (grow((void **)&g->exprs, &g->cap_exprs, g->nexprs, sizeof *g->exprs, e)) return -1;
  g->exprs[g->nexprs] = *x;
  return g->nexprs++;
}

/* Deep enough for any traced program; bounds the recursion of everything
 * that walks an expression (checks, the evaluator, the dump). */
#define MAX_DEPTH 10000

typedef struct body_check {
  const fl_graph *g;
  const fl_value *node;
  int before; /* loads read values before this one */
  fl_err *e;
} body_check;

static int check_var(const body_check *c, const fl_expr *ex) {
  const fl_value *v = c->node;
  int nvars = v->ndim + v->nred + v->nloc;
  if (ex->op == FL_X_VAR && (ex->var < 0 || ex->var >= nvars))
    return fl_fail(c->e, FL_EINVAL, "node '%s' uses variable %d but has %d", v->name, ex->var + 1,
                   nvars), -1;
  if (ex->op == FL_X_REDUCE && (ex->nbind < 1 || ex->var < v->ndim + v->nred ||
                                ex->var + ex->nbind > nvars || ex->comb == FL_COMB_NONE))
    return fl_fail(c->e, FL_EINVAL, "node '%s' has a nested reduction binding variables "
                   "%d..%d, not its locals", v->name, ex->var + 1, ex->var + ex->nbind), -1;
  return 0;
}

static int check_body(const body_check *c, int x, int depth) {
  const fl_graph *g = c->g;
  if (depth > MAX_DEPTH)
    return fl_fail(c->e, FL_EINVAL, "node '%s' has an expression nested more than %d deep",
                   c->node->name, MAX_DEPTH), -1;
  const fl_expr *ex = &g->exprs[x];
  if (check_var(c, ex)) return -1;
  if (ex->op == FL_X_LOAD && ex->src >= c->before)
    return fl_fail(c->e, FL_EINVAL, "node '%s' loads '%s', which does not come before it",
                   c->node->name, g->vals[ex->src].name), -1;
  for (int i = 0; i < ex->nargs; i++)
    if (check_body(c, ex->args[i], depth + 1)) return -1;
  return 0;
}

fl_status fl_graph_check_expr(const fl_graph *g, const fl_value *v, int x, int before, fl_err *e) {
  if (x < 0 || x >= g->nexprs)
    return fl_fail(e, FL_EINVAL, "node '%s': %d is not an expression", v->name, x + 1);
  body_check c = {g, v, before, e};
  return check_body(&c, x, 0) ? FL_EINVAL : FL_OK;
}

int fl_graph_node(fl_graph *g, const fl_value *v, fl_err *e) {
  if (check_syms(g, v->ndim, v->dims, e) || check_syms(g, v->nred, v->red, e)) return -1;
  if (v->body < 0 || v->body >= g->nexprs)
    return fl_fail(e, FL_EINVAL, "node '%s' has no body", v->name), -1;
  if (v->comb == FL_COMB_NONE && v->nred && !v->epilogue)
    return fl_fail(e, FL_EINVAL, "node '%s' reduces with no combiner", v->name), -1;
  if (v->nloc < 0 || v->nloc > FL_MAX_LOCALS)
    return fl_fail(e, FL_EINVAL, "node '%s' has %d locals (at most %d)", v->name, v->nloc,
                   FL_MAX_LOCALS), -1;
  for (int k = 0; k < v->nloc; k++)
    if (v->loc[k] < 0 || v->loc[k] >= g->nsyms)
      return fl_fail(e, FL_EINVAL, "node '%s' binds an unknown symbol %d", v->name, v->loc[k]), -1;
  if (fl_graph_check_expr(g, v, v->body, g->nvals, e)) return -1;
  if (v->resc != FL_RESCALE_NONE && fl_graph_check_expr(g, v, v->resc_arg, g->nvals, e)) return -1;
  if (grow((void **)&g->vals, &g->cap_vals, g->nvals, sizeof *g->vals, e)) return -1;
  g->vals[g->nvals] = *v;
  return g->nvals++;
}

fl_status fl_graph_set_body(fl_graph *g, int v, int x, fl_err *e) {
  if (v < g->ninputs || v >= g->nvals)
    return fl_fail(e, FL_EINVAL, "value %d is not a node", v + 1);
  fl_status s = fl_graph_check_expr(g, &g->vals[v], x, v, e);
  if (s == FL_OK) g->vals[v].body = x;
  return s;
}

fl_status fl_graph_output(fl_graph *g, int value, fl_err *e) {
  if (value < 0 || value >= g->nvals) return fl_fail(e, FL_EINVAL, "output %d is not a value", value);
  if (g->noutputs == FL_MAX_DIMS) return fl_fail(e, FL_EINVAL, "at most %d outputs", FL_MAX_DIMS);
  g->outputs[g->noutputs++] = value;
  return FL_OK;
}

int64_t fl_value_numel(const fl_graph *g, int v) {
  int64_t n = 1;
  for (int d = 0; d < g->vals[v].ndim; d++) n *= g->syms[g->vals[v].dims[d]].size;
  return n;
}

int fl_expr_reads(const fl_graph *g, int x, int src) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD && ex->src == src) return 1;
  for (int i = 0; i < ex->nargs; i++)
    if (fl_expr_reads(g, ex->args[i], src)) return 1;
  return 0;
}
