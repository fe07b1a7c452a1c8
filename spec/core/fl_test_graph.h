/* Graph shorthands for the core tests: each builds one piece of a graph
 * and prints the builder's error, if any. */
#ifndef FL_TEST_GRAPH_H
#define FL_TEST_GRAPH_H

#include <stdio.h>
#include <string.h>

#include "fl_ir.h"

static inline int built(int id, const fl_err *e) {
  if (id < 0) fprintf(stderr, "  builder failed: %s\n", e->msg);
  return id;
}

static inline int sym(fl_graph *g, const char *name, int64_t size) {
  fl_err e;
  return built(fl_graph_sym(g, name, size, &e), &e);
}

static inline int input(fl_graph *g, const char *name, fl_dtype dt, int ndim, const int *dims) {
  fl_err e;
  return built(fl_graph_input(g, name, dt, ndim, dims, &e), &e);
}

static inline int expr(fl_graph *g, fl_expr x) {
  fl_err e;
  return built(fl_graph_expr(g, &x, &e), &e);
}

static inline int cst(fl_graph *g, double v) { return expr(g, (fl_expr){.op = FL_X_CONST, .value = v}); }
static inline int var(fl_graph *g, int k) { return expr(g, (fl_expr){.op = FL_X_VAR, .var = k}); }

static inline int load(fl_graph *g, int src, int n, const int *idx) {
  fl_expr x = {.op = FL_X_LOAD, .src = src, .nargs = n};
  if (n) memcpy(x.args, idx, (size_t)n * sizeof *idx);
  return expr(g, x);
}

static inline int op1(fl_graph *g, fl_xop op, int a) {
  return expr(g, (fl_expr){.op = op, .nargs = 1, .args = {a}});
}
static inline int op2(fl_graph *g, fl_xop op, int a, int b) {
  return expr(g, (fl_expr){.op = op, .nargs = 2, .args = {a, b}});
}
static inline int op3(fl_graph *g, fl_xop op, int a, int b, int c) {
  return expr(g, (fl_expr){.op = op, .nargs = 3, .args = {a, b, c}});
}

static inline void output(fl_graph *g, int v) {
  fl_err e;
  if (fl_graph_output(g, v, &e) != FL_OK) fprintf(stderr, "  output failed: %s\n", e.msg);
}

#endif
