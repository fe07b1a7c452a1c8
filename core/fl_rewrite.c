/* Copying expressions between nodes' variables, and compacting a graph
 * after a pass. */
#include "fl_rewrite.h"

#include <stdlib.h>
#include <string.h>

#include "fl_group.h"

/* ---- building expressions ---- */

int fl_x_var(fl_graph *g, int var, fl_err *e) {
  fl_expr x = {.op = FL_X_VAR, .var = var};
  return fl_graph_expr(g, &x, e);
}

int fl_x_const(fl_graph *g, double v, fl_err *e) {
  fl_expr x = {.op = FL_X_CONST, .value = v};
  return fl_graph_expr(g, &x, e);
}

int fl_x_op(fl_graph *g, fl_xop op, int a, int b, fl_err *e) {
  if (a < 0 || (b < 0 && fl_xop_arity(op) == 2)) return -1;
  fl_expr x = {.op = op, .nargs = fl_xop_arity(op), .args = {a, b}};
  return fl_graph_expr(g, &x, e);
}

int fl_x_load_own(fl_graph *g, const fl_value *node, int src, fl_err *e) {
  const fl_value *s = &g->vals[src];
  fl_expr x = {.op = FL_X_LOAD, .src = src, .nargs = s->ndim};
  for (int d = 0; d < s->ndim; d++) {
    int k = 0;
    while (k < node->ndim && node->dims[k] != s->dims[d]) k++;
    /* a dim the node lacks is a kept size-1 dim: index 0 */
    x.args[d] = k < node->ndim ? fl_x_var(g, k, e) : fl_x_const(g, 0, e);
    if (x.args[d] < 0) return -1;
  }
  return fl_graph_expr(g, &x, e);
}

/* ---- reading expressions ---- */

int fl_x_uses_vars(const fl_graph *g, int x, int lo, int hi) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_VAR) return ex->var >= lo && ex->var < hi;
  for (int i = 0; i < ex->nargs; i++)
    if (fl_x_uses_vars(g, ex->args[i], lo, hi)) return 1;
  return 0;
}

int fl_x_loads(const fl_graph *g, int x, const char *srcs) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD && srcs[ex->src]) return 1;
  for (int i = 0; i < ex->nargs; i++)
    if (fl_x_loads(g, ex->args[i], srcs)) return 1;
  return 0;
}

/* ---- copying ---- */

static int new_local(fl_copier *cp, int sym) {
  fl_value *v = cp->into;
  if (v->nloc == FL_MAX_LOCALS) {
    fl_fail(cp->e, FL_EINVAL, "node '%s' would need more than %d nested reduction variables",
            v->name, FL_MAX_LOCALS);
    return -1;
  }
  v->loc[v->nloc] = sym;
  return v->ndim + v->nred + v->nloc++;
}

int fl_copier_init(fl_copier *cp, fl_graph *g, fl_value *into, const fl_value *from,
                   const int *idx, int bind_red, int *first_local, fl_err *e) {
  memset(cp, 0, sizeof *cp);
  cp->g = g;
  cp->into = into;
  cp->from = from;
  cp->e = e;
  cp->nmemo = g->nexprs;
  cp->memo = malloc((size_t)(cp->nmemo ? cp->nmemo : 1) * sizeof *cp->memo);
  if (!cp->memo) return fl_fail(e, FL_ENOMEM, "out of memory rewriting the graph"), -1;
  for (int i = 0; i < cp->nmemo; i++) cp->memo[i] = -1;
  int nvars = from->ndim + from->nred + from->nloc;
  for (int k = 0; k < nvars; k++) cp->vars[k] = -1;
  for (int k = 0; k < from->ndim; k++) {
    cp->vars[k] = idx ? idx[k] : fl_x_var(g, k, e);
    if (cp->vars[k] < 0) return -1;
  }
  if (first_local) *first_local = into->ndim + into->nred + into->nloc;
  for (int r = 0; r < from->nred; r++) {
    int var = bind_red ? new_local(cp, from->red[r]) : from->ndim + r;
    if (var < 0 || (cp->vars[from->ndim + r] = fl_x_var(g, var, e)) < 0) return -1;
  }
  /* locals keep their numbers when a node is copied into itself */
  cp->same_vars = idx == NULL && !bind_red;
  for (int k = from->ndim + from->nred; cp->same_vars && k < nvars; k++)
    if ((cp->vars[k] = fl_x_var(g, k, e)) < 0) return -1;
  return 0;
}

void fl_copier_free(fl_copier *cp) {
  free(cp->memo);
  cp->memo = NULL;
}

static int copy_reduce(fl_copier *cp, const fl_expr *x) {
  const fl_value *from = cp->from;
  fl_expr n = *x;
  if (!cp->same_vars) {
    for (int k = 0; k < x->nbind; k++) {
      int var = new_local(cp, from->loc[x->var - from->ndim - from->nred + k]);
      if (var < 0) return -1;
      if (k == 0) n.var = var;
      if ((cp->vars[x->var + k] = fl_x_var(cp->g, var, cp->e)) < 0) return -1;
    }
  }
  n.args[0] = fl_copy_expr(cp, x->args[0]);
  if (n.args[0] < 0) return -1;
  return fl_graph_expr(cp->g, &n, cp->e);
}

static int copy_node(fl_copier *cp, int id) {
  fl_expr x = cp->g->exprs[id]; /* by value: the array may move as it grows */
  if (x.op == FL_X_VAR) return cp->vars[x.var];
  if (x.op == FL_X_REDUCE) return copy_reduce(cp, &x);
  for (int i = 0; i < x.nargs; i++)
    if ((x.args[i] = fl_copy_expr(cp, x.args[i])) < 0) return -1;
  if (x.op == FL_X_LOAD && cp->on_load) {
    int r = cp->on_load(cp, &x, x.args);
    if (r != -2) return r;
  }
  return fl_graph_expr(cp->g, &x, cp->e);
}

int fl_copy_expr(fl_copier *cp, int x) {
  if (x < cp->nmemo && cp->memo[x] >= 0) return cp->memo[x];
  int r = copy_node(cp, x);
  if (r >= 0 && x < cp->nmemo) cp->memo[x] = r;
  return r;
}

/* ---- compacting ---- */

static void mark_loads(const fl_graph *g, int x, char *live, int *stack, int *top) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD && !live[ex->src]) {
    live[ex->src] = 1;
    stack[(*top)++] = ex->src;
  }
  for (int i = 0; i < ex->nargs; i++) mark_loads(g, ex->args[i], live, stack, top);
}

static void mark_live(const fl_graph *g, char *live, int *stack) {
  int top = 0;
  for (int v = 0; v < g->ninputs; v++) live[v] = 1;
  for (int k = 0; k < g->noutputs; k++)
    if (!live[g->outputs[k]]) live[stack[top++] = g->outputs[k]] = 1;
  while (top > 0) {
    const fl_value *v = &g->vals[stack[--top]];
    if (v - g->vals < g->ninputs) continue;
    mark_loads(g, v->body, live, stack, &top);
    if (v->resc != FL_RESCALE_NONE) mark_loads(g, v->resc_arg, live, stack, &top);
    /* a group runs as one: its members live together */
    for (int u = g->ninputs; v->group && u < g->nvals; u++)
      if (g->vals[u].group == v->group && !live[u]) live[stack[top++] = u] = 1;
  }
}

/* Can value v be emitted now: are all it loads emitted, or members of its group? */
static int ready_expr(const fl_graph *g, int x, const char *done, int group) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD && !done[ex->src] && !(group && g->vals[ex->src].group == group))
    return 0;
  for (int i = 0; i < ex->nargs; i++)
    if (!ready_expr(g, ex->args[i], done, group)) return 0;
  return 1;
}

static int ready(const fl_graph *g, int v, const char *done) {
  const fl_value *val = &g->vals[v];
  return ready_expr(g, val->body, done, val->group) &&
         (val->resc == FL_RESCALE_NONE || ready_expr(g, val->resc_arg, done, val->group));
}

/* Is every live member of v's group ready? */
static int group_ready(const fl_graph *g, int v, const char *live, const char *done) {
  for (int u = g->ninputs; u < g->nvals; u++)
    if (live[u] && g->vals[u].group == g->vals[v].group && !ready(g, u, done)) return 0;
  return 1;
}

/* The order of a group's loop members: tile members (which read no other
 * member), max/min members, then sums (which read the former's running
 * values). */
static int loop_phase(const fl_value *m) {
  if (m->tile_local) return 0;
  return fl_group_is_extreme(m) ? 1 : 2;
}

/* Appends v's group to order: its loop members by phase, then the epilogue
 * in an order where each reads only members before it. */
static int emit_group(const fl_graph *g, int v, const char *live, char *done, int *order, int n) {
  int group = g->vals[v].group;
  for (int phase = 0; phase < 3; phase++)
    for (int u = g->ninputs; u < g->nvals; u++) {
      const fl_value *m = &g->vals[u];
      if (!live[u] || m->group != group || m->epilogue) continue;
      if (loop_phase(m) == phase) done[order[n++] = u] = 1;
    }
  for (int progress = 1; progress;) {
    progress = 0;
    for (int u = g->ninputs; u < g->nvals; u++) {
      if (!live[u] || done[u] || g->vals[u].group != group) continue;
      if (!ready_expr(g, g->vals[u].body, done, 0)) continue;
      done[order[n++] = u] = 1;
      progress = 1;
    }
  }
  return n;
}

static int topo_order(const fl_graph *g, const char *live, int *order) {
  char *done = calloc((size_t)g->nvals, 1);
  if (!done) return -1;
  int n = 0;
  for (int v = 0; v < g->ninputs; v++) done[order[n++] = v] = 1;
  for (int progress = 1; progress;) {
    progress = 0;
    for (int v = g->ninputs; v < g->nvals && n >= 0; v++) {
      if (!live[v] || done[v]) continue;
      if (g->vals[v].group) {
        if (!group_ready(g, v, live, done)) continue;
        n = emit_group(g, v, live, done, order, n);
      } else {
        if (!ready(g, v, done)) continue;
        done[order[n++] = v] = 1;
      }
      progress = 1;
      break; /* restart: keep the earliest ready value first */
    }
  }
  free(done);
  return n;
}

typedef struct remap {
  const fl_graph *g;
  fl_graph *out;
  int *newid; /* per old value */
  int *memo;  /* per old expression */
  fl_err *e;
} remap;

static int remap_expr(remap *r, int x) {
  if (r->memo[x] >= 0) return r->memo[x];
  fl_expr ex = r->g->exprs[x];
  for (int i = 0; i < ex.nargs; i++)
    if ((ex.args[i] = remap_expr(r, ex.args[i])) < 0) return -1;
  if (ex.op == FL_X_LOAD) ex.src = r->newid[ex.src];
  return r->memo[x] = fl_graph_expr(r->out, &ex, r->e);
}

static fl_status rebuild(const fl_graph *g, const int *order, int n, fl_graph *out, fl_err *e) {
  remap r = {.g = g, .out = out, .e = e};
  r.newid = malloc((size_t)(g->nvals ? g->nvals : 1) * sizeof *r.newid);
  r.memo = malloc((size_t)(g->nexprs ? g->nexprs : 1) * sizeof *r.memo);
  fl_status s = r.newid && r.memo ? FL_OK : fl_fail(e, FL_ENOMEM, "out of memory compacting");
  for (int i = 0; s == FL_OK && i < g->nexprs; i++) r.memo[i] = -1;
  for (int i = 0; s == FL_OK && i < g->nvals; i++) r.newid[i] = -1;
  for (int i = 0; s == FL_OK && i < g->nsyms; i++)
    if (fl_graph_sym(out, g->syms[i].name, g->syms[i].size, e) < 0) s = FL_EINVAL;
  for (int k = 0; s == FL_OK && k < n; k++) {
    fl_value v = g->vals[order[k]];
    if (order[k] < g->ninputs) {
      r.newid[order[k]] = fl_graph_input(out, v.name, v.dtype, v.ndim, v.dims, e);
    } else {
      v.body = remap_expr(&r, v.body);
      if (v.resc != FL_RESCALE_NONE) v.resc_arg = remap_expr(&r, v.resc_arg);
      int bad = v.body < 0 || (v.resc != FL_RESCALE_NONE && v.resc_arg < 0);
      for (int m = 0; m < v.nmask; m++) bad |= (v.mask[m] = remap_expr(&r, v.mask[m])) < 0;
      r.newid[order[k]] = bad ? -1 : fl_graph_node(out, &v, e);
    }
    if (r.newid[order[k]] < 0) s = FL_EINVAL;
  }
  for (int k = 0; s == FL_OK && k < g->noutputs; k++)
    s = fl_graph_output(out, r.newid[g->outputs[k]], e);
  free(r.newid);
  free(r.memo);
  return s;
}

fl_status fl_graph_compact(fl_graph *g, fl_err *e) {
  char *live = calloc((size_t)g->nvals + 1, 1);
  int *stack = malloc(((size_t)g->nvals + 1) * sizeof *stack); /* each value goes on once */
  int *order = malloc(((size_t)g->nvals + 1) * sizeof *order);
  fl_status s = live && stack && order ? FL_OK : fl_fail(e, FL_ENOMEM, "out of memory compacting");
  int n = -1;
  if (s == FL_OK) {
    mark_live(g, live, stack);
    n = topo_order(g, live, order);
    if (n < 0) s = fl_fail(e, FL_ENOMEM, "out of memory compacting");
  }
  int nlive = 0;
  for (int v = 0; s == FL_OK && v < g->nvals; v++) nlive += live[v];
  if (s == FL_OK && n != nlive)
    s = fl_fail(e, FL_EINVAL, "the graph has a cycle: %d of %d values could be ordered", n, nlive);
  fl_graph out;
  fl_graph_init(&out);
  if (s == FL_OK) s = rebuild(g, order, n, &out, e);
  if (s == FL_OK) {
    fl_graph_free(g);
    *g = out;
  } else {
    fl_graph_free(&out);
  }
  free(live);
  free(stack);
  free(order);
  return s;
}
