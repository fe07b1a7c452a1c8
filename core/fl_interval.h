/* Interval analysis of IR expressions: a sound enclosure of the values an
 * expression takes when each of its node's variables ranges over an interval
 * of integers. Block sparsity asks it whether a mask predicate is always
 * true, always false or mixed over a tile of an attention score matrix.
 *
 * Sound means: every value fl_graph_eval could compute at an integer point
 * of the box lies in [lo, hi], or is NaN and then nan is set. Operators follow
 * fl_eval.c exactly, including how NaN behaves: comparisons with NaN are 0
 * (ne: 1), and `where`, `and`, `or`, `not` test != 0, so NaN counts as true
 * there. Bounds are never NaN. */
#ifndef FL_INTERVAL_H
#define FL_INTERVAL_H

#include "fl_ir.h"

/* The doubles in [lo, hi] (either may be infinite), and NaN if nan is set.
 * lo <= hi, but for a value that can only be NaN: [inf, -inf] with nan set. */
typedef struct fl_interval {
  double lo, hi;
  int nan; /* the value may be NaN */
} fl_interval;

/* The range of value `src` over the box of index intervals idx[0..ndim) (one
 * per dim of src, possibly reaching outside the value's dims or, for an index
 * that can only be NaN, empty: the callback clips), written to *out; returns
 * 0, or -1 when unknown (then the load is taken as [-inf, inf] with nan = 1). */
typedef int (*fl_range_fn)(void *ctx, int src, const fl_interval *idx, fl_interval *out);

/* A sound enclosure of expression `expr`, in the body of value `node` of g,
 * when the node's variable k takes integer values in vars[k]. Variables are
 * numbered as in the IR: output dims, reduction dims, then locals; vars needs
 * room for all of them (FL_MAX_VARS is always enough). The caller fills the
 * output and reduction dims; this fills the locals, which nested FL_X_REDUCE
 * expressions bind, with [0, size - 1] of their symbols. range may be NULL:
 * then every load is unknown. A malformed expression gives [-inf, inf], nan. */
fl_interval fl_interval_of(const fl_graph *g, int node, int expr, fl_interval *vars,
                           fl_range_fn range, void *ctx);

/* Classifies a condition over the box: 1 when always nonzero and never NaN,
 * 0 when exactly [0, 0] and never NaN, -1 otherwise. fl_eval takes NaN as
 * true; this still answers -1 for a condition that may be NaN, the answer a
 * caller can never go wrong with (a tile it cannot decide). */
int fl_interval_truth(fl_interval x);

#endif
