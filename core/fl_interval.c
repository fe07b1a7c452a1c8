/* Interval analysis of IR expressions (see fl_interval.h).
 *
 * Each operator maps the intervals of its operands to an interval holding
 * every value fl_eval.c's double arithmetic can produce from them. Bounds are
 * computed with the very operations fl_eval uses; rounding to nearest is
 * monotone, so the endpoints of a monotone operation bound its interior.
 * libm functions need not round correctly, nor so be exactly monotone (glibc
 * allows exp, exp2, log, pow 1 ulp of error, tanh 2): their endpoints are
 * widened by 8 ulps (unless the operand is a single point).
 * A value that can only be NaN is the empty [inf, -inf] with nan set; the
 * operators proper never see one, compute() answers for them. */
#include "fl_interval.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* ---- sets ---- */

static fl_interval span(double lo, double hi, int nan) { return (fl_interval){lo, hi, nan}; }
static fl_interval unknown(void) { return span(-INFINITY, INFINITY, 1); }
static fl_interval nan_only(void) { return span(INFINITY, -INFINITY, 1); }
static int is_nan_only(fl_interval a) { return a.lo > a.hi; }
static fl_interval point(double x) { return isnan(x) ? nan_only() : span(x, x, 0); }

static fl_interval hull(fl_interval a, fl_interval b) {
  return span(fmin(a.lo, b.lo), fmax(a.hi, b.hi), a.nan || b.nan);
}

static int is_point(fl_interval a) { return a.lo == a.hi; }
static int has_zero(fl_interval a) { return a.lo <= 0 && a.hi >= 0; }
static int has_inf(fl_interval a) { return a.lo == -INFINITY || a.hi == INFINITY; }

/* fl_eval tests conditions with != 0, so NaN counts as true. */
static int may_be_true(fl_interval a) { return a.lo != 0 || a.hi != 0 || a.nan; }
static int may_be_false(fl_interval a) { return has_zero(a); }

/* The outcomes of a comparison or logical operator, 0 and/or 1. */
static fl_interval outcomes(int can_be_false, int can_be_true) {
  return span(can_be_false ? 0 : 1, can_be_true ? 1 : 0, 0);
}

#define LIBM_SLACK 8 /* ulps */

static double down(double x) {
  for (int k = 0; k < LIBM_SLACK; k++) x = nextafter(x, -INFINITY);
  return x;
}

static double up(double x) {
  for (int k = 0; k < LIBM_SLACK; k++) x = nextafter(x, INFINITY);
  return x;
}

/* ---- unary operators ---- */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* An increasing libm function whose values lie in [least, most]. */
static fl_interval increasing(double (*f)(double), fl_interval a, double least, double most) {
  if (is_point(a)) return span(f(a.lo), f(a.lo), a.nan);
  return span(fmax(down(f(a.lo)), least), fmin(up(f(a.hi)), most), a.nan);
}

static fl_interval neg(fl_interval a) { return span(-a.hi, -a.lo, a.nan); }

static fl_interval log_of(fl_interval a) {
  if (a.hi < 0) return nan_only();
  fl_interval r = increasing(log, span(fmax(a.lo, 0), a.hi, a.nan), -INFINITY, INFINITY);
  r.nan |= a.lo < 0;
  return r;
}

/* sqrt rounds correctly, so needs no widening; sqrt(-0) is -0, which is 0. */
static fl_interval sqrt_of(fl_interval a) {
  if (a.hi < 0) return nan_only();
  return span(sqrt(fmax(a.lo, 0)), sqrt(a.hi), a.nan || a.lo < 0);
}

static fl_interval rsqrt_of(fl_interval a) {
  if (a.hi < 0) return nan_only();
  if (a.lo > 0) return span(1.0 / sqrt(a.hi), 1.0 / sqrt(a.lo), a.nan);
  /* rsqrt(+0) is inf but rsqrt(-0) is -inf, and intervals hold both zeros */
  return span(-INFINITY, INFINITY, a.nan || a.lo < 0);
}

static fl_interval abs_of(fl_interval a) {
  if (a.lo >= 0) return a;
  if (a.hi <= 0) return neg(a);
  return span(0, fmax(-a.lo, a.hi), a.nan);
}

static fl_interval unary_of(fl_xop op, fl_interval a) {
  switch (op) {
  case FL_X_NEG: return neg(a);
  case FL_X_EXP: return increasing(exp, a, 0, INFINITY);
  case FL_X_EXP2: return increasing(exp2, a, 0, INFINITY);
  case FL_X_LOG: return log_of(a);
  case FL_X_TANH: return increasing(tanh, a, -1, 1);
  case FL_X_SIGMOID: return increasing(sigmoid, a, 0, 1);
  case FL_X_SQRT: return sqrt_of(a);
  case FL_X_RSQRT: return rsqrt_of(a);
  case FL_X_ABS: return abs_of(a);
  case FL_X_RELU: return span(fmax(a.lo, 0), fmax(a.hi, 0), a.nan);
  case FL_X_NOT: return outcomes(may_be_true(a), may_be_false(a));
  case FL_X_FLOOR: return span(floor(a.lo), floor(a.hi), a.nan);
  case FL_X_TRUNC: return span(trunc(a.lo), trunc(a.hi), a.nan);
  default: return unknown();
  }
}

/* ---- arithmetic ---- */

static fl_interval add(fl_interval a, fl_interval b) {
  int nan = a.nan || b.nan || (a.lo == -INFINITY && b.hi == INFINITY) ||
            (a.hi == INFINITY && b.lo == -INFINITY);
  double lo = a.lo + b.lo, hi = a.hi + b.hi; /* NaN only where -inf meets inf, flagged above */
  return span(isnan(lo) ? -INFINITY : lo, isnan(hi) ? INFINITY : hi, nan);
}

/* The smallest and largest of f at the four corners of a box: the bounds of
 * f over the box when f is monotone in each operand (in a direction that may
 * depend on the other). */
static fl_interval corners(double (*f)(double, double), fl_interval a, fl_interval b, int nan) {
  double c[4] = {f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)};
  fl_interval r = span(c[0], c[0], nan);
  for (int k = 1; k < 4; k++) {
    r.lo = fmin(r.lo, c[k]);
    r.hi = fmax(r.hi, c[k]);
  }
  return r;
}

/* x * y with 0 * inf taken as 0, which keeps the product monotone in each
 * operand; the NaN that 0 * inf really gives is flagged apart. */
static double times(double x, double y) { return x == 0 || y == 0 ? 0 : x * y; }

static fl_interval mul(fl_interval a, fl_interval b) {
  int nan = a.nan || b.nan || (has_zero(a) && has_inf(b)) || (has_zero(b) && has_inf(a));
  return corners(times, a, b, nan);
}

/* x / y for y of one sign, with inf / inf taken as 0, which keeps the
 * quotient monotone in each operand; its NaN is flagged apart. */
static double over(double x, double y) { return isinf(x) && isinf(y) ? 0 : x / y; }

static fl_interval divide(fl_interval a, fl_interval b) {
  int nan = a.nan || b.nan || (has_inf(a) && has_inf(b));
  /* x / ±0 is ±inf by the sign of the zero, which intervals do not keep */
  if (has_zero(b)) return span(-INFINITY, INFINITY, nan || has_zero(a));
  return corners(over, a, b, nan);
}

static fl_interval floor_of(fl_interval a) { return unary_of(FL_X_FLOOR, a); }

/* a - b * floor(a / b), for b of one sign and everything finite. Mathematically
 * in [0, b) or (b, 0]; in doubles the quotient's rounding can step floor by one
 * and the two products round too, errors below 3 ulps of max(|a|) + max(|b|).
 * Within one period (b a point and the same floor at both ends of a) the floor
 * is a constant q, and the result a - b*q is exact at the endpoints. */
static fl_interval modulo(fl_interval a, fl_interval b) {
  double amax = fmax(fabs(a.lo), fabs(a.hi)), bmax = fmax(fabs(b.lo), fabs(b.hi));
  double bmin = fmin(fabs(b.lo), fabs(b.hi));
  if (has_zero(b) || amax + bmax > 0x1p1000 || !isfinite(amax / bmin)) return unknown();
  int nan = a.nan || b.nan;
  if (is_point(b) && floor(a.lo / b.lo) == floor(a.hi / b.lo)) {
    double p = b.lo * floor(a.lo / b.lo);
    return span(a.lo - p, a.hi - p, nan);
  }
  double err = 8 * DBL_EPSILON * (amax + bmax) + 4 * DBL_TRUE_MIN;
  return span(fmin(b.lo, 0) - err, fmax(b.hi, 0) + err, nan);
}

/* ---- pow ---- */

static fl_interval widened(fl_interval r, double least) {
  return span(fmax(down(r.lo), least), up(r.hi), r.nan);
}

/* pow(x, k) for an integer k > 0: increasing in x when k is odd (all the way
 * to pow(-inf, k) = -inf), a function of |x| when k is even. */
static fl_interval integer_power(fl_interval a, double k) {
  int odd = fmod(k, 2) != 0;
  fl_interval base = odd ? a : abs_of(a);
  return widened(span(pow(base.lo, k), pow(base.hi, k), 0), odd ? -INFINITY : 0);
}

static double power_of(double x, double y) { return pow(x, y); }

/* The numbers pow can give for numbers in a and b. */
static fl_interval power_numbers(fl_interval a, fl_interval b) {
  if (is_point(a) && is_point(b)) {
    /* a zero may be +0 or -0 whatever its sign here: pow(±0, y) is ±inf for an odd y < 0 */
    if (a.lo == 0) return hull(point(pow(0.0, b.lo)), point(pow(-0.0, b.lo)));
    return point(pow(a.lo, b.lo));
  }
  double k = b.lo;
  if (is_point(b) && k == floor(k) && fabs(k) < 0x1p53) {
    if (k == 0) return span(1, 1, 0);
    if (k > 0) return integer_power(a, k);
  }
  /* For x >= 0 (x > 0 when y may be negative, where pow(-0, y) is -inf),
   * pow is monotone in each operand, through pow(1, inf) = pow(inf, 0) = 1. */
  if (a.lo > 0 || (a.lo >= 0 && b.lo >= 0)) return widened(corners(power_of, a, b, 0), 0);
  return unknown();
}

/* pow(NaN, 0) and pow(1, NaN) are 1: a NaN operand gives NaN or 1. */
static fl_interval power(fl_interval a, fl_interval b) {
  fl_interval r = power_numbers(a, b);
  if (a.nan || b.nan) r = hull(r, span(1, 1, 1));
  return r;
}

/* ---- comparisons and logic ---- */

/* a < b, or a <= b; false whenever either is NaN. */
static fl_interval less(fl_interval a, fl_interval b, int or_equal) {
  int nan = a.nan || b.nan;
  if (or_equal) return outcomes(a.hi > b.lo || nan, a.lo <= b.hi);
  return outcomes(a.hi >= b.lo || nan, a.lo < b.hi);
}

static int overlap(fl_interval a, fl_interval b) { return a.lo <= b.hi && b.lo <= a.hi; }
static int same_point(fl_interval a, fl_interval b) {
  return is_point(a) && is_point(b) && a.lo == b.lo;
}

static fl_interval equal(fl_interval a, fl_interval b) {
  return outcomes(!same_point(a, b) || a.nan || b.nan, overlap(a, b));
}

static fl_interval not_equal(fl_interval a, fl_interval b) {
  return outcomes(overlap(a, b), !same_point(a, b) || a.nan || b.nan);
}

static fl_interval and_of(fl_interval a, fl_interval b) {
  return outcomes(may_be_false(a) || may_be_false(b), may_be_true(a) && may_be_true(b));
}

static fl_interval or_of(fl_interval a, fl_interval b) {
  return outcomes(may_be_false(a) && may_be_false(b), may_be_true(a) || may_be_true(b));
}

/* max and min propagate NaN from either side (fl_eval's max_nan, min_nan). */
static fl_interval binary_of(fl_xop op, fl_interval a, fl_interval b) {
  int nan = a.nan || b.nan;
  switch (op) {
  case FL_X_ADD: return add(a, b);
  case FL_X_SUB: return add(a, neg(b));
  case FL_X_MUL: return mul(a, b);
  case FL_X_DIV: return divide(a, b);
  case FL_X_POW: return power(a, b);
  case FL_X_MAX: return span(fmax(a.lo, b.lo), fmax(a.hi, b.hi), nan);
  case FL_X_MIN: return span(fmin(a.lo, b.lo), fmin(a.hi, b.hi), nan);
  case FL_X_LT: return less(a, b, 0);
  case FL_X_LE: return less(a, b, 1);
  case FL_X_GT: return less(b, a, 0);
  case FL_X_GE: return less(b, a, 1);
  case FL_X_EQ: return equal(a, b);
  case FL_X_NE: return not_equal(a, b);
  case FL_X_AND: return and_of(a, b);
  case FL_X_OR: return or_of(a, b);
  case FL_X_IDIV: return floor_of(divide(a, b));
  case FL_X_MOD: return modulo(a, b);
  default: return unknown();
  }
}

/* ---- operands that can only be NaN ---- */

static fl_interval unary_of_nan(fl_xop op) { return op == FL_X_NOT ? point(0) : nan_only(); }

/* Comparisons with NaN are false (!= is true), NaN is true to and, or, and
 * pow(NaN, 0) = pow(1, NaN) = 1; everything else gives NaN. */
static fl_interval binary_of_nan(fl_xop op, fl_interval a, fl_interval b) {
  fl_interval other = is_nan_only(a) ? b : a;
  switch (op) {
  case FL_X_LT: case FL_X_LE: case FL_X_GT: case FL_X_GE: case FL_X_EQ: return point(0);
  case FL_X_NE: case FL_X_OR: return point(1);
  case FL_X_AND: return outcomes(may_be_false(other), may_be_true(other));
  case FL_X_POW:
    if ((is_nan_only(a) && has_zero(b)) || (is_nan_only(b) && a.lo <= 1 && 1 <= a.hi))
      return span(1, 1, 1);
    return nan_only();
  default: return nan_only();
  }
}

/* ---- nested reductions ---- */

/* A bound on the double sum, term by term from 0, of n terms each at most x
 * (dir = 1) or at least x (dir = -1). Rounding is monotone, so the sum of n
 * copies of x bounds it; that is n * x exactly while integers stay exact,
 * else within (n - 1) ulps per term of n * x, widened here by twice that. */
static double sum_bound(double n, double x, int dir) {
  if (x == 0 || isinf(x)) return x;
  double s = n * x;
  if (x == floor(x) && fabs(s) < 0x1p53) return s;
  double slack = 2 * n * DBL_EPSILON;
  if (slack >= 0.25 || fabs(s) > 0x1p1000) return dir > 0 ? INFINITY : -INFINITY;
  return s + dir * slack * fabs(s);
}

static fl_interval sum_of(double n, fl_interval body) {
  double lo = sum_bound(n, body.lo, -1), hi = sum_bound(n, body.hi, 1);
  /* a running sum that can reach inf and then meet -inf (or the reverse) */
  int nan = body.nan || (n >= 2 && ((body.lo == -INFINITY && hi == INFINITY) ||
                                    (body.hi == INFINITY && lo == -INFINITY)));
  return span(lo, hi, nan);
}

/* ---- the walk over an expression DAG ---- */

typedef struct walker {
  const fl_graph *g;
  const fl_value *node;
  int nvars; /* output dims, reduction dims, locals */
  fl_interval *vars;
  fl_range_fn range;
  void *ctx;
  fl_interval *memo; /* per expression, once done[id]; NULL when out of memory */
  unsigned char *done;
} walker;

static fl_interval interval(walker *w, int id);

static fl_interval load_of(walker *w, const fl_expr *x) {
  if (!w->range || x->src < 0 || x->src >= w->g->nvals) return unknown();
  fl_interval idx[FL_MAX_ARGS];
  for (int d = 0; d < x->nargs; d++) idx[d] = interval(w, x->args[d]);
  fl_interval out = unknown();
  if (w->range(w->ctx, x->src, idx, &out) != 0) return unknown();
  if (isnan(out.lo) || isnan(out.hi) || out.lo > out.hi) return unknown();
  return out;
}

/* A decided condition picks one branch, and only that one is analysed. */
static fl_interval where_of(walker *w, const fl_expr *x) {
  fl_interval c = interval(w, x->args[0]);
  if (!may_be_false(c)) return interval(w, x->args[1]);
  if (!may_be_true(c)) return interval(w, x->args[2]);
  return hull(interval(w, x->args[1]), interval(w, x->args[2]));
}

/* How many positions a nested reduction walks (a double, so that no product
 * overflows), or -1 when it binds variables that are not locals. */
static double positions(const walker *w, const fl_expr *x) {
  int first = x->var - w->node->ndim - w->node->nred;
  if (x->nbind < 0 || first < 0 || first + x->nbind > w->node->nloc) return -1;
  double n = 1;
  for (int k = 0; k < x->nbind; k++) n *= (double)w->g->syms[w->node->loc[first + k]].size;
  return n;
}

/* The combination of the body over n >= 1 positions, or of none. */
static fl_interval reduce_of(walker *w, const fl_expr *x) {
  double n = positions(w, x);
  if (n < 0) return unknown();
  if (n == 0) {
    double start = x->comb == FL_COMB_MAX ? -INFINITY : x->comb == FL_COMB_MIN ? INFINITY : 0;
    return point(start);
  }
  fl_interval body = interval(w, x->args[0]);
  return x->comb == FL_COMB_SUM ? sum_of(n, body) : body;
}

/* Operands must be earlier expressions, which also rules out cycles. */
static int well_formed(const walker *w, int id, const fl_expr *x) {
  if ((int)x->op < 0 || x->op >= FL_X_COUNT || x->nargs < 0 || x->nargs > FL_MAX_ARGS) return 0;
  int arity = fl_xop_arity(x->op);
  if (x->op == FL_X_LOAD)
    arity = x->src >= 0 && x->src < w->g->nvals ? w->g->vals[x->src].ndim : -1;
  if (x->nargs != arity) return 0;
  for (int k = 0; k < x->nargs; k++)
    if (x->args[k] < 0 || x->args[k] >= id) return 0;
  return 1;
}

static fl_interval compute(walker *w, int id) {
  const fl_expr *x = &w->g->exprs[id];
  if (!well_formed(w, id, x)) return unknown();
  switch (x->op) {
  case FL_X_CONST: return point(x->value);
  case FL_X_VAR: return x->var >= 0 && x->var < w->nvars ? w->vars[x->var] : unknown();
  case FL_X_LOAD: return load_of(w, x);
  case FL_X_WHERE: return where_of(w, x);
  case FL_X_REDUCE: return reduce_of(w, x);
  default: break;
  }
  fl_interval a = interval(w, x->args[0]);
  if (x->nargs == 1) return is_nan_only(a) ? unary_of_nan(x->op) : unary_of(x->op, a);
  fl_interval b = interval(w, x->args[1]);
  if (is_nan_only(a) || is_nan_only(b)) return binary_of_nan(x->op, a, b);
  return binary_of(x->op, a, b);
}

/* Memoizing is sound because every variable keeps one interval for the whole
 * walk: a local's comes from its symbol, whichever reduction binds it. */
static fl_interval interval(walker *w, int id) {
  if (id < 0 || id >= w->g->nexprs) return unknown();
  if (w->memo && w->done[id]) return w->memo[id];
  fl_interval r = compute(w, id);
  if (w->memo) {
    w->memo[id] = r;
    w->done[id] = 1;
  }
  return r;
}

/* Gives each local the range of its symbol; -1 for a malformed node. */
static int bind_locals(walker *w) {
  const fl_value *v = w->node;
  if (v->ndim < 0 || v->nred < 0 || v->nloc < 0 || v->nloc > FL_MAX_LOCALS ||
      w->nvars > FL_MAX_VARS)
    return -1;
  for (int k = 0; k < v->nloc; k++) {
    int s = v->loc[k];
    if (s < 0 || s >= w->g->nsyms) return -1;
    w->vars[v->ndim + v->nred + k] = span(0, (double)w->g->syms[s].size - 1, 0);
  }
  return 0;
}

fl_interval fl_interval_of(const fl_graph *g, int node, int expr, fl_interval *vars,
                           fl_range_fn range, void *ctx) {
  if (!g || !vars || node < 0 || node >= g->nvals) return unknown();
  const fl_value *v = &g->vals[node];
  walker w = {.g = g, .node = v, .nvars = v->ndim + v->nred + v->nloc, .vars = vars,
              .range = range, .ctx = ctx};
  if (bind_locals(&w) != 0) return unknown();
  size_t n = (size_t)(g->nexprs > 0 ? g->nexprs : 1);
  w.memo = malloc(n * sizeof *w.memo);
  w.done = calloc(n, 1);
  if (!w.memo || !w.done) {
    free(w.memo);
    free(w.done);
    w.memo = NULL;
    w.done = NULL;
  }
  fl_interval r = interval(&w, expr);
  free(w.memo);
  free(w.done);
  return r;
}

int fl_interval_truth(fl_interval x) {
  if (x.nan) return -1;
  if (x.lo == 0 && x.hi == 0) return 0;
  if (x.lo > 0 || x.hi < 0) return 1;
  return -1;
}
