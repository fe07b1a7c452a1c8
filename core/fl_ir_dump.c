/* The reduction IR as text: one line per value,
 *   s[b,h,i,j] = sum(d) q[b,h,i,d] * k[b,h,j,d]          # matmul  attn.lua:3 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_ir.h"
#include "fl_text.h"

/* Names of a node's variables: its symbols' names, primed where one name
 * would stand for two variables. */
typedef struct var_names {
  char name[FL_MAX_VARS][24];
} var_names;

static int var_sym(const fl_value *v, int i) {
  if (i < v->ndim) return v->dims[i];
  if (i < v->ndim + v->nred) return v->red[i - v->ndim];
  return v->loc[i - v->ndim - v->nred];
}

static void name_vars(const fl_graph *g, const fl_value *v, var_names *vn) {
  int n = 0;
  for (int i = 0; i < v->ndim + v->nred + v->nloc; i++, n++) {
    int sym = var_sym(v, i);
    snprintf(vn->name[n], sizeof vn->name[n], "%s", g->syms[sym].name);
    for (int k = 0; k < n; k++)
      if (strcmp(vn->name[k], vn->name[n]) == 0) {
        size_t len = strlen(vn->name[n]);
        if (len + 1 < sizeof vn->name[n]) memcpy(vn->name[n] + len, "'", 2);
        k = -1; /* check again with the prime */
      }
  }
}

static int precedence(fl_xop op) {
  switch (op) {
  case FL_X_OR: return 1;
  case FL_X_AND: return 2;
  case FL_X_LT: case FL_X_LE: case FL_X_GT: case FL_X_GE: case FL_X_EQ: case FL_X_NE: return 3;
  case FL_X_ADD: case FL_X_SUB: return 4;
  case FL_X_MUL: case FL_X_DIV: case FL_X_IDIV: case FL_X_MOD: return 5;
  case FL_X_NEG: return 6;
  case FL_X_POW: return 7;
  case FL_X_REDUCE: return 0; /* extends as far right as it can: parenthesized inside others */
  default: return 8; /* atoms and calls */
  }
}

static const char *infix(fl_xop op) {
  switch (op) {
  case FL_X_ADD: return " + "; case FL_X_SUB: return " - "; case FL_X_MUL: return " * ";
  case FL_X_DIV: return " / "; case FL_X_POW: return "^"; case FL_X_IDIV: return " // ";
  case FL_X_MOD: return " % "; case FL_X_LT: return " < "; case FL_X_LE: return " <= ";
  case FL_X_GT: return " > "; case FL_X_GE: return " >= "; case FL_X_EQ: return " == ";
  case FL_X_NE: return " ~= "; case FL_X_AND: return " and "; case FL_X_OR: return " or ";
  default: return NULL;
  }
}

static void put_expr(fl_text *b, const fl_graph *g, const var_names *vn, int x, int outer);

static void put_const(fl_text *b, double v) {
  if (isinf(v)) fl_text_put(b, v < 0 ? "-inf" : "inf");
  else if (v == floor(v) && fabs(v) < 1e15) fl_text_put(b, "%.0f", v);
  else fl_text_put(b, "%.9g", v);
}

static void put_args(fl_text *b, const fl_graph *g, const var_names *vn, const fl_expr *ex,
                     const char *sep) {
  for (int i = 0; i < ex->nargs; i++) {
    if (i) fl_text_put(b, "%s", sep);
    put_expr(b, g, vn, ex->args[i], 0);
  }
}

static void put_expr(fl_text *b, const fl_graph *g, const var_names *vn, int x, int outer) {
  const fl_expr *ex = &g->exprs[x];
  int prec = precedence(ex->op);
  const char *op = infix(ex->op);
  if (prec < outer || (prec == 0 && outer > 0)) fl_text_put(b, "(");
  if (ex->op == FL_X_CONST) {
    put_const(b, ex->value);
  } else if (ex->op == FL_X_VAR) {
    fl_text_put(b, "%s", vn->name[ex->var]);
  } else if (ex->op == FL_X_LOAD) {
    fl_text_put(b, "%s[", g->vals[ex->src].name);
    put_args(b, g, vn, ex, ",");
    fl_text_put(b, "]");
  } else if (ex->op == FL_X_REDUCE) {
    fl_text_put(b, "%s(", fl_combiner_name(ex->comb));
    for (int k = 0; k < ex->nbind; k++) fl_text_put(b, "%s%s", k ? "," : "", vn->name[ex->var + k]);
    fl_text_put(b, ") ");
    put_expr(b, g, vn, ex->args[0], 0);
  } else if (ex->op == FL_X_NEG) {
    fl_text_put(b, "-");
    put_expr(b, g, vn, ex->args[0], prec + 1);
  } else if (op) {
    /* left-associative: the right operand needs parentheses at equal rank */
    put_expr(b, g, vn, ex->args[0], ex->op == FL_X_POW ? prec + 1 : prec);
    fl_text_put(b, "%s", op);
    put_expr(b, g, vn, ex->args[1], ex->op == FL_X_POW ? prec : prec + 1);
  } else {
    fl_text_put(b, "%s(", fl_xop_name(ex->op));
    put_args(b, g, vn, ex, ", ");
    fl_text_put(b, ")");
  }
  if (prec < outer || (prec == 0 && outer > 0)) fl_text_put(b, ")");
}

static void put_shape(fl_text *b, const fl_graph *g, const fl_value *v) {
  fl_text_put(b, "%s[", fl_dtype_name(v->dtype));
  for (int i = 0; i < v->ndim; i++)
    fl_text_put(b, "%s%s=%lld", i ? "," : "", g->syms[v->dims[i]].name, (long long)g->syms[v->dims[i]].size);
  fl_text_put(b, "]");
}

/* Online group members: how an accumulator follows its running values. */
static void put_rescale(fl_text *b, const fl_graph *g, const fl_value *v, const var_names *vn) {
  if (v->resc == FL_RESCALE_NONE) return;
  fl_text_put(b, "  rescaled by ");
  if (v->resc == FL_RESCALE_EXP) fl_text_put(b, "exp(before - after) of ");
  else if (v->resc == FL_RESCALE_EXP2) fl_text_put(b, "exp2(before - after) of ");
  else fl_text_put(b, "(after / before)^%g of ", v->resc_pow);
  put_expr(b, g, vn, v->resc_arg, 0);
}

static void put_node(fl_text *b, const fl_graph *g, const fl_value *v) {
  var_names vn;
  name_vars(g, v, &vn);
  size_t start = b->len;
  fl_text_put(b, v->group ? "    %s%s[" : "%s  %s[",
              v->epilogue ? "after the loop: " : v->tile_local ? "tile: " : "", v->name);
  for (int i = 0; i < v->ndim; i++) fl_text_put(b, "%s%s", i ? "," : "", vn.name[i]);
  fl_text_put(b, "] = ");
  if (v->comb != FL_COMB_NONE) {
    fl_text_put(b, "%s(", fl_combiner_name(v->comb));
    for (int r = 0; r < v->nred; r++) fl_text_put(b, "%s%s", r ? "," : "", vn.name[v->ndim + r]);
    fl_text_put(b, ") ");
  }
  put_expr(b, g, &vn, v->body, 0);
  put_rescale(b, g, v, &vn);
  if (v->op[0] || v->origin[0]) {
    size_t width = b->len - start;
    fl_text_put(b, "%*s# %s%s%s", width < 60 ? (int)(60 - width) : 2, "", v->op, v->op[0] ? "  " : "",
        v->origin);
  }
  fl_text_put(b, "\n");
}

/* The first loop member of the group that starts at value `first`. */
static const fl_value *group_loop(const fl_graph *g, int first) {
  for (int i = first; i < g->nvals && g->vals[i].group == g->vals[first].group; i++)
    if (!g->vals[i].tile_local && !g->vals[i].epilogue) return &g->vals[i];
  return &g->vals[first];
}

/* "online group 1, one loop over j (tiles of 64), blocks of i 64:" */
static void put_group_header(fl_text *b, const fl_graph *g, int first) {
  const fl_value *v = group_loop(g, first);
  var_names vn;
  name_vars(g, v, &vn);
  fl_text_put(b, "  online group %d, one loop over", v->group);
  for (int r = 0; r < v->nred; r++) fl_text_put(b, "%s%s", r ? "," : " ", vn.name[v->ndim + r]);
  if (v->loop_tile) fl_text_put(b, " (tiles of %lld)", (long long)v->loop_tile);
  for (int t = 0; t < v->ntile; t++)
    fl_text_put(b, "%s%s %lld", t ? ", " : ", blocks of ", g->syms[v->tile_sym[t]].name,
                (long long)v->tile_size[t]);
  fl_text_put(b, ":\n");
}

/* Under a tile member: the conditions its tiles are classified by. */
static void put_masks(fl_text *b, const fl_graph *g, const fl_value *v) {
  if (!v->nmask) return;
  var_names vn;
  name_vars(g, v, &vn);
  fl_text_put(b, "      tiles classified by ");
  for (int m = 0; m < v->nmask; m++) {
    if (m) fl_text_put(b, ", ");
    put_expr(b, g, &vn, v->mask[m], 0);
  }
  fl_text_put(b, v->mask_data ? " (reads data: at run time)\n" : " (indices only: when planned)\n");
}

char *fl_graph_dump(const fl_graph *g) {
  fl_text b = {0};
  for (int i = 0; i < g->ninputs; i++) {
    fl_text_put(&b, "  %s: ", g->vals[i].name);
    put_shape(&b, g, &g->vals[i]);
    fl_text_put(&b, "  (input)\n");
  }
  for (int i = g->ninputs; i < g->nvals; i++) {
    const fl_value *v = &g->vals[i];
    if (v->group && (i == g->ninputs || g->vals[i - 1].group != v->group))
      put_group_header(&b, g, i);
    put_node(&b, g, v);
    put_masks(&b, g, v);
  }
  fl_text_put(&b, "  return");
  for (int i = 0; i < g->noutputs; i++) {
    fl_text_put(&b, "%s %s: ", i ? "," : "", g->vals[g->outputs[i]].name);
    put_shape(&b, g, &g->vals[g->outputs[i]]);
  }
  fl_text_put(&b, "\n");
  return fl_text_take(&b);
}
