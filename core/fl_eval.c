/* The unfused reference evaluator: materializes every value of a graph as an
 * array of doubles in C order, one node at a time, by plain loops over its
 * output and reduction positions. Fused kernels are checked against it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_eval_impl.h"
#include "fl_plan.h"

/* ---- checking the graph ---- */

static void format_shape(char *buf, size_t n, int ndim, const int64_t *size) {
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int d = 0; d < ndim && len < n; d++)
    len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)size[d]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

/* Looks up the sizes of n dims given by symbol and their checked product. */
static fl_status sym_sizes(const eval_ctx *c, const char *name, int n, const int *syms,
                           int64_t *size, int64_t *numel) {
  const fl_graph *g = c->g;
  if (n < 0 || n > FL_MAX_DIMS)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: '%s' has %d dims", name, n);
  int64_t p = 1;
  for (int d = 0; d < n; d++) {
    int s = syms[d];
    if (s < 0 || s >= g->nsyms)
      return fl_fail(c->e, FL_EINVAL, "malformed graph: '%s' uses symbol %d of %d", name, s,
                     g->nsyms);
    size[d] = g->syms[s].size;
    if (size[d] < 0)
      return fl_fail(c->e, FL_EINVAL, "symbol '%s' of '%s' has a negative size (%lld)",
                     g->syms[s].name, name, (long long)size[d]);
    if (size[d] > 0 && p > MAX_NUMEL / size[d])
      return fl_fail(c->e, FL_EINVAL, "'%s' is too large to evaluate (more than 2^59 elements)",
                     name);
    p *= size[d];
  }
  *numel = p;
  return FL_OK;
}

static fl_status check_value(eval_ctx *c, int v) {
  const fl_value *val = &c->g->vals[v];
  value_info *in = &c->info[v];
  fl_status s = sym_sizes(c, val->name, val->ndim, val->dims, in->size, &in->numel);
  if (s != FL_OK) return s;
  int64_t stride = 1;
  for (int d = val->ndim - 1; d >= 0; d--) {
    in->stride[d] = stride;
    stride *= in->size[d];
  }
  if (v < c->g->ninputs) return FL_OK;
  if ((int)val->comb < FL_COMB_NONE || val->comb > FL_COMB_MIN)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: node '%s' has combiner %d", val->name,
                   (int)val->comb);
  if (val->comb == FL_COMB_NONE && val->nred != 0 && !val->epilogue)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: node '%s' reduces with no combiner",
                   val->name);
  if (val->nloc < 0 || val->nloc > FL_MAX_LOCALS)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: node '%s' has %d locals", val->name,
                   val->nloc);
  for (int k = 0; k < val->nloc; k++)
    if (val->loc[k] < 0 || val->loc[k] >= c->g->nsyms)
      return fl_fail(c->e, FL_EINVAL, "malformed graph: '%s' binds symbol %d of %d", val->name,
                     val->loc[k], c->g->nsyms);
  return sym_sizes(c, val->name, val->nred, val->red, in->red_size, &in->red_numel);
}

/* Checks the expression tree of node v's body, so that evaluation can index
 * without checks; operands must be earlier expressions, which rules out cycles. */
static fl_status check_expr(eval_ctx *c, int v, int id) {
  const fl_graph *g = c->g;
  const fl_value *val = &g->vals[v];
  if (id < 0 || id >= g->nexprs)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: node '%s' uses expression %d of %d",
                   val->name, id, g->nexprs);
  if (c->checked[id] == v + 1) return FL_OK;
  c->checked[id] = v + 1;
  const fl_expr *x = &g->exprs[id];
  if ((int)x->op < 0 || x->op >= FL_X_COUNT)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: expression %d has op %d", id, (int)x->op);
  int nvars = val->ndim + val->nred + val->nloc;
  if (x->op == FL_X_VAR && (x->var < 0 || x->var >= nvars))
    return fl_fail(c->e, FL_EINVAL, "malformed graph: node '%s' uses variable %d, it has %d",
                   val->name, x->var, nvars);
  if (x->op == FL_X_REDUCE &&
      (x->nbind < 1 || x->var < val->ndim + val->nred || x->var + x->nbind > nvars ||
       x->comb < FL_COMB_SUM || x->comb > FL_COMB_MIN))
    return fl_fail(c->e, FL_EINVAL, "malformed graph: a nested reduction in node '%s' binds "
                   "variables %d..%d with combiner %d", val->name, x->var, x->var + x->nbind - 1,
                   (int)x->comb);
  int n = fl_xop_arity(x->op);
  if (x->op == FL_X_LOAD) {
    if (x->src < 0 || x->src >= v)
      return fl_fail(c->e, FL_EINVAL, "malformed graph: node '%s' loads value %d, not an earlier one",
                     val->name, x->src);
    n = g->vals[x->src].ndim;
  }
  if (x->nargs != n)
    return fl_fail(c->e, FL_EINVAL, "malformed graph: expression %d (%s) in node '%s' has %d operands, not %d",
                   id, fl_xop_name(x->op), val->name, x->nargs, n);
  for (int k = 0; k < n; k++) {
    if (x->args[k] < 0 || x->args[k] >= id)
      return fl_fail(c->e, FL_EINVAL, "malformed graph: expression %d refers to expression %d, not an earlier one",
                     id, x->args[k]);
    fl_status s = check_expr(c, v, x->args[k]);
    if (s != FL_OK) return s;
  }
  return FL_OK;
}

/* What can be checked before the per-value tables exist. */
static fl_status check_counts(const fl_graph *g, const fl_tensor *inputs, fl_dtype out_dtype,
                              const fl_tensor *outs, fl_err *e) {
  if (g->nvals < 0 || g->ninputs < 0 || g->ninputs > g->nvals || g->nexprs < 0 ||
      g->noutputs < 0 || g->noutputs > FL_MAX_DIMS)
    return fl_fail(e, FL_EINVAL, "malformed graph: bad value, input or output counts");
  if ((g->ninputs > 0 && !inputs) || (g->noutputs > 0 && !outs))
    return fl_fail(e, FL_EINVAL, "eval: missing input or output array");
  if ((int)out_dtype < 0 || out_dtype > FL_DTYPE_COUNT)
    return fl_fail(e, FL_EINVAL, "eval: unknown output dtype %d", (int)out_dtype);
  for (int k = 0; k < g->noutputs; k++) {
    int id = g->outputs[k];
    if (id < 0 || id >= g->nvals)
      return fl_fail(e, FL_EINVAL, "malformed graph: output %d is value %d of %d", k, id,
                     g->nvals);
    fl_dtype dt = out_dtype == FL_DTYPE_COUNT ? g->vals[id].dtype : out_dtype;
    if ((int)dt < 0 || dt >= FL_DTYPE_COUNT)
      return fl_fail(e, FL_EINVAL, "malformed graph: output '%s' has dtype %d",
                     g->vals[id].name, (int)dt);
  }
  return FL_OK;
}

static fl_status check_values(eval_ctx *c) {
  for (int v = 0; v < c->g->nvals; v++) {
    const fl_value *val = &c->g->vals[v];
    fl_status s = check_value(c, v);
    if (s == FL_OK && v >= c->g->ninputs) s = check_expr(c, v, val->body);
    if (s == FL_OK && v >= c->g->ninputs && val->resc != FL_RESCALE_NONE)
      s = check_expr(c, v, val->resc_arg);
    if (s != FL_OK) return s;
  }
  return FL_OK;
}

/* ---- inputs ---- */

double *fl_eval_alloc(eval_ctx *c, int v) {
  int64_t n = c->info[v].numel;
  if ((uint64_t)n > SIZE_MAX / sizeof(double)) n = -1; /* only on 32-bit hosts */
  double *d = n < 0 ? NULL : malloc(n ? (size_t)n * sizeof(double) : 1);
  if (!d)
    fl_fail(c->e, FL_ENOMEM, "out of host memory evaluating '%s' (%lld elements)",
            c->g->vals[v].name, (long long)c->info[v].numel);
  c->data[v] = d;
  return d;
}

static fl_status read_input(eval_ctx *c, int k, const fl_tensor *t) {
  const fl_value *val = &c->g->vals[k];
  const value_info *in = &c->info[k];
  if (t->device.kind != FL_CPU) {
    char dev[32];
    fl_device_format(t->device, dev, sizeof dev);
    return fl_fail(c->e, FL_EINVAL, "eval runs on the CPU; input '%s' is on %s", val->name, dev);
  }
  int same = t->ndim == val->ndim;
  for (int d = 0; same && d < val->ndim; d++) same = t->shape[d] == in->size[d];
  if (!same) {
    char have[200], want[200];
    format_shape(have, sizeof have, t->ndim < 0 || t->ndim > FL_MAX_DIMS ? 0 : t->ndim, t->shape);
    format_shape(want, sizeof want, val->ndim, in->size);
    return fl_fail(c->e, FL_EINVAL, "input '%s' has shape %s, the program was traced for %s",
                   val->name, have, want);
  }
  if ((int)t->dtype < 0 || t->dtype >= FL_DTYPE_COUNT)
    return fl_fail(c->e, FL_EINVAL, "input '%s' has an unknown dtype %d", val->name, (int)t->dtype);
  double *d = fl_eval_alloc(c, k);
  if (!d) return FL_ENOMEM;
  for (int64_t i = 0; i < in->numel; i++) d[i] = fl_elem_get_f64(t->host, t->dtype, (size_t)i);
  return FL_OK;
}

/* ---- expressions ---- */

static double max_nan(double a, double b) { return (b > a || isnan(b)) && !isnan(a) ? b : a; }
static double min_nan(double a, double b) { return (b < a || isnan(b)) && !isnan(a) ? b : a; }

double fl_xop_unary(fl_xop op, double x) {
  switch (op) {
  case FL_X_NEG: return -x;
  case FL_X_EXP: return exp(x);
  case FL_X_EXP2: return exp2(x);
  case FL_X_LOG: return log(x);
  case FL_X_TANH: return tanh(x);
  case FL_X_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case FL_X_SQRT: return sqrt(x);
  case FL_X_RSQRT: return 1.0 / sqrt(x);
  case FL_X_ABS: return fabs(x);
  case FL_X_RELU: return x > 0 || isnan(x) ? x : 0.0;
  case FL_X_NOT: return x == 0 ? 1.0 : 0.0;
  case FL_X_FLOOR: return floor(x);
  case FL_X_TRUNC: return trunc(x);
  default: return NAN;
  }
}

double fl_xop_binary(fl_xop op, double a, double b) {
  switch (op) {
  case FL_X_ADD: return a + b;
  case FL_X_SUB: return a - b;
  case FL_X_MUL: return a * b;
  case FL_X_DIV: return a / b;
  case FL_X_POW: return pow(a, b);
  case FL_X_MAX: return max_nan(a, b);
  case FL_X_MIN: return min_nan(a, b);
  case FL_X_LT: return a < b;
  case FL_X_LE: return a <= b;
  case FL_X_GT: return a > b;
  case FL_X_GE: return a >= b;
  case FL_X_EQ: return a == b;
  case FL_X_NE: return a != b;
  case FL_X_AND: return a != 0 && b != 0;
  case FL_X_OR: return a != 0 || b != 0;
  case FL_X_IDIV: return floor(a / b);
  case FL_X_MOD: return a - b * floor(a / b);
  default: return NAN;
  }
}

/* Converts index d of a load to an integer within its dim, or records why not. */
static int to_index(eval_ctx *c, const fl_expr *x, int d, double v, int64_t *i) {
  int64_t size = c->info[x->src].size[d];
  if (v == floor(v) && v >= 0 && v < (double)size) {
    *i = (int64_t)v;
    return 0;
  }
  if (c->status != FL_OK) return -1;
  const char *src = c->g->vals[x->src].name, *node = c->g->vals[c->node].name;
  if (v != floor(v))
    c->status = fl_fail(c->e, FL_EINVAL, "index %g is not an integer, for dimension %d of '%s' in node '%s'",
                        v, d + 1, src, node);
  else
    c->status = fl_fail(c->e, FL_EINVAL, "index %.17g out of range for dimension %d (size %lld) of '%s' in node '%s'",
                        v, d + 1, (long long)size, src, node);
  return -1;
}

static double eval_load(eval_ctx *c, const fl_expr *x) {
  const int64_t *stride = c->info[x->src].stride;
  int64_t off = 0, idx[FL_MAX_DIMS];
  for (int d = 0; d < x->nargs; d++) {
    if (to_index(c, x, d, fl_eval_expr(c, x->args[d]), &idx[d]) != 0) return NAN;
    off += idx[d] * stride[d];
  }
  if (!c->data[x->src]) return fl_eval_group_load(c, x, idx);
  return c->data[x->src][off];
}

/* A nested reduction: its variables walk their symbols' ranges. */
static double eval_reduce(eval_ctx *c, const fl_expr *x) {
  const fl_value *val = &c->g->vals[c->node];
  int64_t size[FL_MAX_LOCALS], total = 1;
  for (int k = 0; k < x->nbind; k++) {
    size[k] = c->g->syms[val->loc[x->var - val->ndim - val->nred + k]].size;
    total *= size[k];
    c->pos[x->var + k] = 0;
  }
  double acc = fl_comb_start(x->comb);
  for (int64_t r = 0; r < total && c->status == FL_OK; r++) {
    acc = fl_combine(x->comb, acc, fl_eval_expr(c, x->args[0]));
    fl_eval_step(c->pos + x->var, x->nbind, size);
  }
  return acc;
}

double fl_eval_expr(eval_ctx *c, int id) {
  const fl_expr *x = &c->g->exprs[id];
  switch (x->op) {
  case FL_X_CONST: return x->value;
  case FL_X_VAR: return (double)c->pos[x->var];
  case FL_X_LOAD: return eval_load(c, x);
  case FL_X_REDUCE: return eval_reduce(c, x);
  case FL_X_WHERE:
    if (c->resolved && c->resolved[x->args[0]])
      return fl_eval_expr(c, x->args[c->resolved[x->args[0]] == 2 ? 1 : 2]);
    return fl_eval_expr(c, x->args[0]) != 0 ? fl_eval_expr(c, x->args[1]) : fl_eval_expr(c, x->args[2]);
  default: break;
  }
  double a = fl_eval_expr(c, x->args[0]);
  return x->nargs == 1 ? fl_xop_unary(x->op, a) : fl_xop_binary(x->op, a, fl_eval_expr(c, x->args[1]));
}

/* ---- nodes ---- */

double fl_comb_start(fl_combiner k) {
  return k == FL_COMB_MAX ? -INFINITY : k == FL_COMB_MIN ? INFINITY : 0.0;
}

double fl_combine(fl_combiner k, double acc, double x) {
  switch (k) {
  case FL_COMB_SUM: return acc + x;
  case FL_COMB_MAX: return max_nan(acc, x);
  case FL_COMB_MIN: return min_nan(acc, x);
  default: return x;
  }
}

/* Advances a C-order position over n dims; wraps to zeros at the end. */
void fl_eval_step(int64_t *pos, int n, const int64_t *size) {
  for (int d = n - 1; d >= 0; d--) {
    if (++pos[d] < size[d]) return;
    pos[d] = 0;
  }
}

/* Combines the body over every reduction position, at the current output position. */
static double reduce(eval_ctx *c, const fl_value *val, const value_info *in) {
  int64_t *rpos = c->pos + val->ndim;
  for (int r = 0; r < val->nred; r++) rpos[r] = 0;
  double acc = fl_comb_start(val->comb);
  for (int64_t r = 0; r < in->red_numel && c->status == FL_OK; r++) {
    acc = fl_combine(val->comb, acc, fl_eval_expr(c, val->body));
    fl_eval_step(rpos, val->nred, in->red_size);
  }
  return acc;
}

static fl_status eval_node(eval_ctx *c, int v) {
  const fl_value *val = &c->g->vals[v];
  const value_info *in = &c->info[v];
  double *out = fl_eval_alloc(c, v);
  if (!out) return FL_ENOMEM;
  c->node = v;
  memset(c->pos, 0, sizeof c->pos);
  for (int64_t o = 0; o < in->numel; o++) {
    out[o] = reduce(c, val, in);
    if (c->status != FL_OK) return c->status;
    fl_eval_step(c->pos, val->ndim, in->size);
  }
  return FL_OK;
}

/* ---- outputs ---- */

static fl_status write_output(eval_ctx *c, int v, fl_dtype out_dtype, fl_tensor *t) {
  fl_dtype dt = out_dtype == FL_DTYPE_COUNT ? c->g->vals[v].dtype : out_dtype;
  const value_info *in = &c->info[v];
  fl_status s = fl_tensor_alloc(t, dt, (fl_device){FL_CPU, 0}, c->g->vals[v].ndim, in->size, c->e);
  if (s != FL_OK) return s;
  const double *d = c->data[v];
  for (int64_t i = 0; i < in->numel; i++) fl_elem_set_f64(t->host, dt, (size_t)i, d[i]);
  return FL_OK;
}

static fl_status alloc_tables(eval_ctx *c) {
  const fl_graph *g = c->g;
  c->info = calloc((size_t)g->nvals + 1, sizeof *c->info);
  c->data = calloc((size_t)g->nvals + 1, sizeof *c->data);
  c->checked = calloc((size_t)g->nexprs + 1, sizeof *c->checked);
  if (c->plan) c->resolved = calloc((size_t)g->nexprs + 1, 1);
  if (!c->info || !c->data || !c->checked || (c->plan && !c->resolved))
    return fl_fail(c->e, FL_ENOMEM, "out of host memory preparing to evaluate");
  return FL_OK;
}

static void free_tables(eval_ctx *c) {
  for (int v = 0; c->data && v < c->g->nvals; v++) free(c->data[v]);
  free(c->data);
  free(c->resolved);
  free(c->info);
  free(c->checked);
}

static fl_status run(const fl_graph *g, fl_plan *plan, int64_t tile, const fl_tensor *inputs,
                     fl_dtype out_dtype, fl_tensor *outs, fl_err *e) {
  eval_ctx c = {.g = g, .e = e, .tile = tile, .plan = plan};
  if (outs && g->noutputs > 0 && g->noutputs <= FL_MAX_DIMS)
    memset(outs, 0, (size_t)g->noutputs * sizeof *outs);
  fl_status s = check_counts(g, inputs, out_dtype, outs, e);
  if (s != FL_OK) return s;
  s = alloc_tables(&c);
  if (s == FL_OK) s = check_values(&c);
  for (int k = 0; s == FL_OK && k < g->ninputs; k++) s = read_input(&c, k, &inputs[k]);
  for (int v = g->ninputs; s == FL_OK && v < g->nvals;) {
    if (g->vals[v].group > 0) {
      s = fl_eval_group(&c, v, &v);
    } else {
      s = eval_node(&c, v);
      v++;
    }
  }
  for (int k = 0; s == FL_OK && k < g->noutputs; k++)
    s = write_output(&c, g->outputs[k], out_dtype, &outs[k]);
  if (s != FL_OK)
    for (int k = 0; k < g->noutputs; k++) fl_tensor_free(&outs[k]);
  free_tables(&c);
  return s;
}

fl_status fl_graph_eval(const fl_graph *g, const fl_tensor *inputs, fl_dtype out_dtype,
                        fl_tensor *outs, fl_err *e) {
  return run(g, NULL, 0, inputs, out_dtype, outs, e);
}

fl_status fl_graph_eval_tiled(const fl_graph *g, const fl_tensor *inputs, fl_dtype out_dtype,
                              fl_tensor *outs, int64_t tile, fl_err *e) {
  return run(g, NULL, tile, inputs, out_dtype, outs, e);
}

fl_status fl_plan_run(fl_plan *p, const fl_tensor *inputs, fl_dtype out_dtype, fl_tensor *outs,
                      fl_err *e) {
  for (int i = 0; i < p->n; i++)
    if (p->k[i].is_group && p->k[i].tiles.nmask > 0 && !p->k[i].table)
      memset(&p->k[i].counts, 0, sizeof p->k[i].counts);
  return run(p->g, p, 0, inputs, out_dtype, outs, e);
}
