/* Tools the passes rewrite graphs with: copying an expression from one
 * node's variables into another's, and compacting a graph after a pass
 * (dropping dead values, restoring an order where every load reads an
 * earlier value and each online group is contiguous). */
#ifndef FL_REWRITE_H
#define FL_REWRITE_H

#include "fl_ir.h"

typedef struct fl_copier fl_copier;

/* Replaces a load while copying: returns the new expression's id, -2 to
 * copy the load as it is, or -1 on failure (with cp->e set). idx holds the
 * copied index expressions. */
typedef int (*fl_load_hook)(fl_copier *cp, const fl_expr *load, const int *idx);

struct fl_copier {
  fl_graph *g;
  fl_value *into;          /* the node receiving the copy: gains locals for nested reductions */
  const fl_value *from;    /* the node whose variables the source expression uses */
  int vars[FL_MAX_VARS];   /* from's variable k becomes expression vars[k] */
  fl_load_hook on_load;    /* may be NULL */
  void *ctx;
  int same_vars;           /* into has from's variables: locals keep their numbers */
  int *memo;               /* per source expression: its copy, or -1 */
  int nmemo;
  fl_err *e;
};

/* A copier from `from`'s variables into `into`'s: from's output variable k
 * becomes index expression idx[k] (or, with idx NULL, into's own variable
 * k); from's reduction variables become new locals of `into` when
 * `bind_red` (the caller wraps the copy in a nested reduction over them,
 * starting at *first_local). */
int fl_copier_init(fl_copier *cp, fl_graph *g, fl_value *into, const fl_value *from,
                   const int *idx, int bind_red, int *first_local, fl_err *e);
void fl_copier_free(fl_copier *cp);
/* Copies expression x; returns the new id or -1. */
int fl_copy_expr(fl_copier *cp, int x);

/* A new expression; -1 on failure. */
int fl_x_var(fl_graph *g, int var, fl_err *e);
int fl_x_const(fl_graph *g, double v, fl_err *e);
int fl_x_op(fl_graph *g, fl_xop op, int a, int b, fl_err *e);
/* A load of value src at the node's own output variables (loads of group
 * members read them where they stand). */
int fl_x_load_own(fl_graph *g, const fl_value *node, int src, fl_err *e);

/* Does expression x use any variable in [lo, hi), or load value `src` (-1:
 * any value whose flag in `srcs` is set)? */
int fl_x_uses_vars(const fl_graph *g, int x, int lo, int hi);
int fl_x_loads(const fl_graph *g, int x, const char *srcs);

/* Drops values no output needs and orders the rest so that loads read
 * earlier values and group members stand together, otherwise keeping the
 * order they had. */
fl_status fl_graph_compact(fl_graph *g, fl_err *e);

#endif
