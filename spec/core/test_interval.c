#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fl_interval.h"
#include "fl_ir.h"
#include "fl_test.h"
#include "fl_test_graph.h"

enum { PARTIAL, EMPTY, FULL }; /* fl_interval_truth + 1 */

static int reduce(fl_graph *g, fl_combiner comb, int v, int body) {
  return expr(g, (fl_expr){.op = FL_X_REDUCE, .comb = comb, .var = v, .nbind = 1, .nargs = 1,
                           .args = {body}});
}

/* A pointwise node over dims, with locals for nested reductions. */
static int node(fl_graph *g, const char *name, int ndim, const int *dims, int nloc,
                const int *loc, int body) {
  fl_value v = {.dtype = FL_F32, .ndim = ndim, .comb = FL_COMB_NONE, .body = body, .nloc = nloc};
  snprintf(v.name, sizeof v.name, "%s", name);
  if (ndim) memcpy(v.dims, dims, (size_t)ndim * sizeof *dims);
  if (nloc) memcpy(v.loc, loc, (size_t)nloc * sizeof *loc);
  fl_err e;
  return built(fl_graph_node(g, &v, &e), &e);
}

static fl_interval iv(double lo, double hi) { return (fl_interval){lo, hi, 0}; }

/* ---- tiles of a mask over (i, j) = variables 0 and 1 ---- */

/* The interval of node v's body when i in [i0, i1], j in [j0, j1]. */
static fl_interval over_tile(const fl_graph *g, int v, int i0, int i1, int j0, int j1,
                             fl_range_fn range, void *ctx) {
  fl_interval vars[FL_MAX_VARS];
  vars[0] = iv(i0, i1);
  vars[1] = iv(j0, j1);
  return fl_interval_of(g, v, g->vals[v].body, vars, range, ctx);
}

static int tile_class(const fl_graph *g, int v, int i0, int i1, int j0, int j1,
                      fl_range_fn range, void *ctx) {
  return fl_interval_truth(over_tile(g, v, i0, i1, j0, j1, range, ctx)) + 1;
}

/* Classifies every tile of the n x n mask `mask` (g's only output), checks
 * each class against the mask fl_graph_eval computes (full tiles all
 * nonzero, empty ones all zero) and counts the classes. */
static void check_grid(int *fl_failed_, const fl_graph *g, int mask, const fl_tensor *inputs,
                       int n, int tile, fl_range_fn range, void *ctx, int counts[3]) {
  fl_tensor out;
  fl_err e;
  memset(counts, 0, 3 * sizeof *counts);
  CHECK(g->noutputs == 1 && g->outputs[0] == mask);
  if (fl_graph_eval(g, inputs, FL_F32, &out, &e) != FL_OK) {
    fprintf(stderr, "  eval failed: %s\n", e.msg);
    *fl_failed_ = 1;
    return;
  }
  const float *m = out.host;
  for (int i0 = 0; i0 < n; i0 += tile)
    for (int j0 = 0; j0 < n; j0 += tile) {
      int c = tile_class(g, mask, i0, i0 + tile - 1, j0, j0 + tile - 1, range, ctx);
      counts[c]++;
      int ones = 0;
      for (int i = i0; i < i0 + tile; i++)
        for (int j = j0; j < j0 + tile; j++) ones += m[i * n + j] != 0;
      if (c == FULL) CHECK(ones == tile * tile);
      if (c == EMPTY) CHECK(ones == 0);
    }
  fl_tensor_free(&out);
}

/* ---- causal, sliding window, prefix LM ---- */

FL_TEST(interval_causal_tiles) {
  enum { N = 256, T = 64 };
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", N), j = sym(&g, "j", N);
  int mask = node(&g, "causal", 2, (int[]){i, j}, 0, NULL, op2(&g, FL_X_GE, var(&g, 0), var(&g, 1)));
  output(&g, mask);
  CHECK(tile_class(&g, mask, 64, 127, 0, 63, NULL, NULL) == FULL);
  CHECK(tile_class(&g, mask, 0, 63, 64, 127, NULL, NULL) == EMPTY);
  CHECK(tile_class(&g, mask, 128, 191, 128, 191, NULL, NULL) == PARTIAL);
  fl_interval below = over_tile(&g, mask, 64, 127, 0, 63, NULL, NULL);
  CHECK(below.lo == 1 && below.hi == 1 && !below.nan);
  int counts[3];
  check_grid(fl_failed_, &g, mask, NULL, N, T, NULL, NULL, counts);
  CHECK(counts[PARTIAL] == 4 && counts[FULL] == 6 && counts[EMPTY] == 6);
  fl_graph_free(&g);
}

FL_TEST(interval_sliding_window) {
  enum { N = 512, T = 32 };
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", N), j = sym(&g, "j", N);
  int vi = var(&g, 0), vj = var(&g, 1);
  int body = op2(&g, FL_X_AND, op2(&g, FL_X_GE, vi, vj),
                 op2(&g, FL_X_LT, op2(&g, FL_X_SUB, vi, vj), cst(&g, 100)));
  int mask = node(&g, "window", 2, (int[]){i, j}, 0, NULL, body);
  output(&g, mask);
  CHECK(tile_class(&g, mask, 64, 95, 32, 63, NULL, NULL) == FULL);    /* i - j in [1, 63] */
  CHECK(tile_class(&g, mask, 256, 287, 0, 31, NULL, NULL) == EMPTY); /* too far left */
  CHECK(tile_class(&g, mask, 0, 31, 32, 63, NULL, NULL) == EMPTY);   /* above the diagonal */
  CHECK(tile_class(&g, mask, 128, 159, 32, 63, NULL, NULL) == PARTIAL); /* i - j in [65, 127] */
  CHECK(tile_class(&g, mask, 96, 127, 96, 127, NULL, NULL) == PARTIAL);
  /* tile rows below the diagonal by d: i - j in [32d - 31, 32d + 31], full for
   * d = 1, 2 (15 + 14 tiles), partial for d = 0, 3, 4 (16 + 13 + 12) */
  int counts[3];
  check_grid(fl_failed_, &g, mask, NULL, N, T, NULL, NULL, counts);
  CHECK(counts[FULL] == 29 && counts[PARTIAL] == 41 && counts[EMPTY] == 256 - 70);
  fl_graph_free(&g);
}

FL_TEST(interval_prefix_lm) {
  enum { N = 256, T = 32 };
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", N), j = sym(&g, "j", N);
  int vi = var(&g, 0), vj = var(&g, 1);
  int body = op2(&g, FL_X_OR, op2(&g, FL_X_LT, vj, cst(&g, 64)), op2(&g, FL_X_LE, vj, vi));
  int mask = node(&g, "prefix_lm", 2, (int[]){i, j}, 0, NULL, body);
  output(&g, mask);
  CHECK(tile_class(&g, mask, 0, 31, 32, 63, NULL, NULL) == FULL); /* the prefix, above the diagonal */
  CHECK(tile_class(&g, mask, 0, 31, 64, 95, NULL, NULL) == EMPTY);
  CHECK(tile_class(&g, mask, 128, 159, 64, 95, NULL, NULL) == FULL);
  CHECK(tile_class(&g, mask, 96, 127, 96, 127, NULL, NULL) == PARTIAL);
  /* columns 0, 1 full (16); past them, 15 full below the diagonal, 6 partial on it */
  int counts[3];
  check_grid(fl_failed_, &g, mask, NULL, N, T, NULL, NULL, counts);
  CHECK(counts[FULL] == 31 && counts[PARTIAL] == 6 && counts[EMPTY] == 27);
  fl_graph_free(&g);
}

/* ---- a document mask through a range callback ---- */

typedef struct docs {
  const double *doc;
  int n, src, calls, bad;
} docs;

/* min and max of doc over the index box, clipped to the array. */
static int doc_range(void *ctx, int src, const fl_interval *idx, fl_interval *out) {
  docs *d = ctx;
  d->calls++;
  if (src != d->src || idx[0].nan) d->bad++;
  double lo = fmax(ceil(idx[0].lo), 0), hi = fmin(floor(idx[0].hi), d->n - 1);
  if (lo > hi) return -1;
  *out = iv(INFINITY, -INFINITY);
  for (int k = (int)lo; k <= (int)hi; k++) {
    out->lo = fmin(out->lo, d->doc[k]);
    out->hi = fmax(out->hi, d->doc[k]);
  }
  return 0;
}

/* doc[i] == doc[j], and i >= j when causal; documents 0..99, 100..163, 164..255. */
static int doc_mask(fl_graph *g, int causal, int *doc_input) {
  int n = sym(g, "n", 256), i = sym(g, "i", 256), j = sym(g, "j", 256);
  int doc = input(g, "doc", FL_I32, 1, (int[]){n});
  int vi = var(g, 0), vj = var(g, 1);
  int body = op2(g, FL_X_EQ, load(g, doc, 1, (int[]){vi}), load(g, doc, 1, (int[]){vj}));
  if (causal) body = op2(g, FL_X_AND, body, op2(g, FL_X_GE, vi, vj));
  int mask = node(g, "same_doc", 2, (int[]){i, j}, 0, NULL, body);
  output(g, mask);
  *doc_input = doc;
  return mask;
}

FL_TEST(interval_document_mask) {
  enum { N = 256, T = 32 };
  double ids[N];
  for (int p = 0; p < N; p++) ids[p] = p < 100 ? 0 : p < 164 ? 1 : 2;
  fl_tensor in;
  fl_err e;
  CHECK(fl_tensor_alloc(&in, FL_I32, (fl_device){FL_CPU, 0}, 1, (int64_t[]){N}, &e) == FL_OK);
  for (int p = 0; p < N; p++) fl_elem_set_f64(in.host, FL_I32, (size_t)p, ids[p]);

  fl_graph g;
  fl_graph_init(&g);
  docs d = {.doc = ids, .n = N};
  int mask = doc_mask(&g, 0, &d.src);
  CHECK(tile_class(&g, mask, 32, 63, 0, 31, doc_range, &d) == FULL);     /* both in document 0 */
  CHECK(tile_class(&g, mask, 128, 159, 128, 159, doc_range, &d) == FULL); /* both in document 1 */
  CHECK(tile_class(&g, mask, 192, 223, 0, 31, doc_range, &d) == EMPTY);   /* documents 2 and 0 */
  CHECK(tile_class(&g, mask, 128, 159, 0, 31, doc_range, &d) == EMPTY);   /* documents 1 and 0 */
  CHECK(tile_class(&g, mask, 96, 127, 0, 31, doc_range, &d) == PARTIAL);  /* i straddles 100 */
  CHECK(tile_class(&g, mask, 128, 159, 160, 191, doc_range, &d) == PARTIAL); /* j straddles 164 */
  fl_interval straddle = over_tile(&g, mask, 96, 127, 0, 31, doc_range, &d);
  CHECK(straddle.lo == 0 && straddle.hi == 1 && !straddle.nan);
  /* tiles hold documents {0} {0} {0} {0,1} {1} {1,2} {2} {2} */
  int counts[3];
  check_grid(fl_failed_, &g, mask, &in, N, T, doc_range, &d, counts);
  CHECK(counts[FULL] == 14 && counts[EMPTY] == 32 && counts[PARTIAL] == 18);
  CHECK(d.calls > 0 && d.bad == 0);
  /* no callback: every load is unknown, nothing is decided */
  CHECK(tile_class(&g, mask, 32, 63, 0, 31, NULL, NULL) == PARTIAL);
  fl_graph_free(&g);

  fl_graph_init(&g);
  mask = doc_mask(&g, 1, &d.src);
  CHECK(tile_class(&g, mask, 0, 31, 32, 63, doc_range, &d) == EMPTY); /* same document, i < j */
  CHECK(tile_class(&g, mask, 32, 63, 0, 31, doc_range, &d) == FULL);
  CHECK(tile_class(&g, mask, 0, 31, 32, 63, NULL, NULL) == EMPTY); /* i >= j decides it alone */
  CHECK(tile_class(&g, mask, 32, 63, 0, 31, NULL, NULL) == PARTIAL);
  check_grid(fl_failed_, &g, mask, &in, N, T, doc_range, &d, counts);
  CHECK(counts[FULL] == 4 && counts[EMPTY] == 44 && counts[PARTIAL] == 16);
  CHECK(d.bad == 0);
  fl_graph_free(&g);
  fl_tensor_free(&in);
}

/* ---- masked scores: where(i >= j, s, -inf) ---- */

static int fixed_range(void *ctx, int src, const fl_interval *idx, fl_interval *out) {
  (void)src;
  (void)idx;
  *out = *(const fl_interval *)ctx;
  return 0;
}

FL_TEST(interval_masked_scores) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 256), j = sym(&g, "j", 256);
  int S = input(&g, "S", FL_F32, 2, (int[]){i, j});
  int vi = var(&g, 0), vj = var(&g, 1);
  int masked = op3(&g, FL_X_WHERE, op2(&g, FL_X_GE, vi, vj), load(&g, S, 2, (int[]){vi, vj}),
                   cst(&g, -INFINITY));
  int m = node(&g, "masked", 2, (int[]){i, j}, 0, NULL, masked);
  int p = node(&g, "p", 2, (int[]){i, j}, 0, NULL, op1(&g, FL_X_EXP, masked));

  fl_interval empty = over_tile(&g, m, 0, 63, 64, 127, NULL, NULL);
  CHECK(empty.lo == -INFINITY && empty.hi == -INFINITY && !empty.nan);
  fl_interval partial = over_tile(&g, m, 64, 127, 64, 127, NULL, NULL);
  CHECK(partial.lo == -INFINITY && partial.hi == INFINITY && partial.nan);
  fl_interval full = over_tile(&g, m, 64, 127, 0, 63, NULL, NULL);
  CHECK(full.lo == -INFINITY && full.hi == INFINITY && full.nan);
  fl_interval p_empty = over_tile(&g, p, 0, 63, 64, 127, NULL, NULL);
  CHECK(p_empty.lo == 0 && p_empty.hi == 0 && !p_empty.nan);

  fl_interval scores = iv(-3, 5);
  full = over_tile(&g, m, 64, 127, 0, 63, fixed_range, &scores);
  CHECK(full.lo == -3 && full.hi == 5 && !full.nan);
  partial = over_tile(&g, m, 64, 127, 64, 127, fixed_range, &scores);
  CHECK(partial.lo == -INFINITY && partial.hi == 5 && !partial.nan);
  fl_interval p_partial = over_tile(&g, p, 64, 127, 64, 127, fixed_range, &scores);
  CHECK(p_partial.lo == 0 && p_partial.hi >= exp(5) && p_partial.hi < exp(5) * (1 + 1e-14));
  fl_graph_free(&g);
}

/* ---- nested reductions ---- */

FL_TEST(interval_nested_reduce) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 16), l = sym(&g, "l", 8), none = sym(&g, "none", 0);
  /* variables: 0 = i, 1 = l (size 8), 2 = none (size 0) */
  int vi = var(&g, 0), vl = var(&g, 1), ve = var(&g, 2);
  int count = reduce(&g, FL_COMB_SUM, 1, op2(&g, FL_X_GE, vi, vl)); /* #{l : l <= i} */
  int c = node(&g, "count", 1, (int[]){i}, 2, (int[]){l, none}, count);
  output(&g, c);

  fl_interval vars[FL_MAX_VARS];
  vars[0] = iv(0, 10);
  fl_interval r = fl_interval_of(&g, c, count, vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 8 && !r.nan);
  CHECK(vars[1].lo == 0 && vars[1].hi == 7); /* filled from the symbol */
  vars[0] = iv(7, 10);
  r = fl_interval_of(&g, c, count, vars, NULL, NULL);
  CHECK(r.lo == 8 && r.hi == 8);

  /* every value fl_graph_eval computes lies in the interval at its point */
  fl_tensor out;
  fl_err e;
  CHECK(fl_graph_eval(&g, NULL, FL_F32, &out, &e) == FL_OK);
  for (int k = 0; k < 16; k++) {
    vars[0] = iv(k, k);
    r = fl_interval_of(&g, c, count, vars, NULL, NULL);
    double got = ((const float *)out.host)[k];
    CHECK(got == (k < 7 ? k + 1 : 8) && r.lo <= got && got <= r.hi);
  }
  fl_tensor_free(&out);

  vars[0] = iv(10, 12);
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_MAX, 1, op2(&g, FL_X_SUB, vi, vl)), vars, NULL, NULL);
  CHECK(r.lo == 3 && r.hi == 12 && !r.nan);
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_MIN, 1, op2(&g, FL_X_SUB, vi, vl)), vars, NULL, NULL);
  CHECK(r.lo == 3 && r.hi == 12 && !r.nan);

  /* over no positions: the combiner's start */
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_SUM, 2, ve), vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 0 && !r.nan);
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_MAX, 2, ve), vars, NULL, NULL);
  CHECK(r.lo == -INFINITY && r.hi == -INFINITY && !r.nan);
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_MIN, 2, ve), vars, NULL, NULL);
  CHECK(r.lo == INFINITY && r.hi == INFINITY && !r.nan);

  /* a sum that rounds: 0.1 eight times is not 0.8 in doubles */
  double sum = 0;
  for (int k = 0; k < 8; k++) sum += 0.1;
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_SUM, 1, cst(&g, 0.1)), vars, NULL, NULL);
  CHECK(r.lo <= sum && sum <= r.hi && r.hi - r.lo < 1e-12);
  /* -inf and inf in one sum make NaN */
  r = fl_interval_of(&g, c, reduce(&g, FL_COMB_SUM, 1, op3(&g, FL_X_WHERE, vl, cst(&g, INFINITY),
                                                              cst(&g, -INFINITY))), vars, NULL, NULL);
  CHECK(r.nan);
  fl_graph_free(&g);
}

/* ---- single operators at their edges ---- */

/* The interval of op(a, b) for constants a, b, in a node with no variables. */
static fl_interval of_consts(fl_xop op, double a, double b) {
  fl_graph g;
  fl_graph_init(&g);
  int x = op2(&g, op, cst(&g, a), cst(&g, b));
  int v = node(&g, "v", 0, NULL, 0, NULL, x);
  fl_interval vars[FL_MAX_VARS];
  fl_interval r = fl_interval_of(&g, v, x, vars, NULL, NULL);
  fl_graph_free(&g);
  return r;
}

/* The interval of op(i, c) for i in [lo, hi]. */
static fl_interval of_index(fl_xop op, double lo, double hi, double c) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 1024);
  int x = op2(&g, op, var(&g, 0), cst(&g, c));
  int v = node(&g, "v", 1, (int[]){i}, 0, NULL, x);
  fl_interval vars[FL_MAX_VARS] = {iv(lo, hi)};
  fl_interval r = fl_interval_of(&g, v, x, vars, NULL, NULL);
  fl_graph_free(&g);
  return r;
}

FL_TEST(interval_operator_edges) {
  fl_interval r = of_consts(FL_X_MUL, 0, INFINITY); /* NaN, with bounds that are not */
  CHECK(r.nan && !isnan(r.lo) && !isnan(r.hi));
  r = of_consts(FL_X_MUL, -INFINITY, 0.5);
  CHECK(r.lo == -INFINITY && r.hi == -INFINITY && !r.nan);
  r = of_consts(FL_X_ADD, INFINITY, -INFINITY);
  CHECK(r.nan && !isnan(r.lo) && !isnan(r.hi));
  r = of_consts(FL_X_LT, NAN, 1); /* comparisons with NaN are false, != is true */
  CHECK(r.lo == 0 && r.hi == 0 && !r.nan);
  r = of_consts(FL_X_NE, NAN, NAN);
  CHECK(r.lo == 1 && r.hi == 1 && !r.nan);
  r = of_consts(FL_X_AND, NAN, 2); /* NaN != 0 is true */
  CHECK(r.lo == 1 && r.hi == 1);
  r = of_consts(FL_X_POW, NAN, 0); /* pow(NaN, 0) = 1 */
  CHECK(r.lo <= 1 && 1 <= r.hi);
  r = of_consts(FL_X_POW, 0, -1); /* the zero may be -0: inf or -inf */
  CHECK(r.lo == -INFINITY && r.hi == INFINITY);
  r = of_consts(FL_X_POW, -0.0, -1);
  CHECK(r.lo == -INFINITY && r.hi == INFINITY);
  {
    /* pow(0, 1) is +0 (the hull of the zeros may write it -0), so pow(it, -1) is +inf */
    fl_graph g;
    fl_graph_init(&g);
    int zero = op2(&g, FL_X_POW, cst(&g, 0), cst(&g, 1));
    int x = op2(&g, FL_X_POW, zero, cst(&g, -1));
    int v = node(&g, "v", 0, NULL, 0, NULL, x);
    fl_interval vars[FL_MAX_VARS];
    r = fl_interval_of(&g, v, x, vars, NULL, NULL);
    CHECK(r.hi == INFINITY);
    fl_graph_free(&g);
  }
  r = of_consts(FL_X_MAX, NAN, 3);
  CHECK(r.nan);
  r = of_consts(FL_X_DIV, 1, 0);
  CHECK(r.lo == -INFINITY && r.hi == INFINITY && !r.nan);

  r = of_index(FL_X_MOD, 64, 127, 64); /* one period: exact */
  CHECK(r.lo == 0 && r.hi == 63 && !r.nan);
  r = of_index(FL_X_MOD, 0, 255, 64);
  CHECK(r.lo <= 0 && r.lo > -1e-9 && r.hi >= 63 && r.hi < 64 + 1e-9);
  r = of_index(FL_X_IDIV, 64, 127, 64);
  CHECK(r.lo == 1 && r.hi == 1 && !r.nan);
  r = of_index(FL_X_DIV, 0, 3, 0); /* 0 / 0 */
  CHECK(r.nan);
  r = of_index(FL_X_POW, 2, 3, 2);
  CHECK(r.lo <= 4 && r.lo > 3.99 && r.hi >= 9 && r.hi < 9.01);

  CHECK(fl_interval_truth(iv(1, 1)) == 1);
  CHECK(fl_interval_truth(iv(-3, -1)) == 1);
  CHECK(fl_interval_truth(iv(0, 0)) == 0);
  CHECK(fl_interval_truth(iv(0, 1)) == -1);
  CHECK(fl_interval_truth((fl_interval){1, 2, 1}) == -1);
  CHECK(fl_interval_truth((fl_interval){0, 0, 1}) == -1);
}

/* Values whose numbers are exactly [0, 0] but that may be NaN (0 * inf),
 * used as conditions: fl_eval takes NaN as true. And a modulo that rounds
 * below zero. Random expressions rarely reach either. */
FL_TEST(interval_nan_conditions_and_rounding) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 4);
  int nan0 = op2(&g, FL_X_MUL, cst(&g, 0), cst(&g, INFINITY));
  int v = node(&g, "v", 1, (int[]){i}, 0, NULL, nan0);
  fl_interval vars[FL_MAX_VARS] = {iv(0, 1)};
  fl_interval r = fl_interval_of(&g, v, nan0, vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 0 && r.nan);
  r = fl_interval_of(&g, v, op3(&g, FL_X_WHERE, nan0, cst(&g, 1), cst(&g, 2)), vars, NULL, NULL);
  CHECK(r.lo == 1 && r.hi == 2); /* NaN picks 1 */
  r = fl_interval_of(&g, v, op1(&g, FL_X_NOT, nan0), vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 1); /* not NaN is 0 */
  r = fl_interval_of(&g, v, op2(&g, FL_X_EQ, nan0, cst(&g, 0)), vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 1); /* NaN == 0 is 0 */
  r = fl_interval_of(&g, v, op2(&g, FL_X_NE, nan0, cst(&g, 0)), vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 1);
  r = fl_interval_of(&g, v, op2(&g, FL_X_AND, nan0, cst(&g, 1)), vars, NULL, NULL);
  CHECK(r.lo == 0 && r.hi == 1);
  CHECK(fl_interval_truth(r) == -1);

  /* 1.7 - 0.1 * floor(1.7 / 0.1) is -2.2e-16: 1.7 / 0.1 rounds up to 17 */
  double below = 1.7 - 0.1 * floor(1.7 / 0.1);
  CHECK(below < 0);
  int a = op3(&g, FL_X_WHERE, op2(&g, FL_X_GE, var(&g, 0), cst(&g, 1)), cst(&g, 1.7), cst(&g, 1.0));
  r = fl_interval_of(&g, v, op2(&g, FL_X_MOD, a, cst(&g, 0.1)), vars, NULL, NULL);
  CHECK(r.lo <= below && r.hi >= 0.1 && r.hi < 0.1 + 1e-12 && !r.nan);
  fl_graph_free(&g);
}

/* ---- soundness on random expressions ---- */

/* The oracle uses fl_eval's own operators (fl_xop_unary/binary), checked
 * against fl_graph_eval (at f32) and then used in double precision. */

typedef struct oracle {
  const fl_graph *g;
  double pos[3];     /* i, j, the local */
  int64_t local_size;
} oracle;

static double ref_eval(oracle *o, int id) {
  const fl_expr *x = &o->g->exprs[id];
  switch (x->op) {
  case FL_X_CONST: return x->value;
  case FL_X_VAR: return o->pos[x->var];
  case FL_X_WHERE:
    return ref_eval(o, x->args[0]) != 0 ? ref_eval(o, x->args[1]) : ref_eval(o, x->args[2]);
  case FL_X_REDUCE: {
    double acc = x->comb == FL_COMB_MAX ? -INFINITY : x->comb == FL_COMB_MIN ? INFINITY : 0.0;
    for (int64_t k = 0; k < o->local_size; k++) {
      o->pos[x->var] = (double)k;
      double v = ref_eval(o, x->args[0]);
      acc = x->comb == FL_COMB_SUM ? acc + v : x->comb == FL_COMB_MAX ? fl_xop_binary(FL_X_MAX, acc, v) : fl_xop_binary(FL_X_MIN, acc, v);
    }
    return acc;
  }
  default: break;
  }
  double a = ref_eval(o, x->args[0]);
  return x->nargs == 1 ? fl_xop_unary(x->op, a) : fl_xop_binary(x->op, a, ref_eval(o, x->args[1]));
}

static unsigned next_random(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)(*s >> 33);
}
static int pick(uint64_t *s, int n) { return (int)(next_random(s) % (unsigned)n); }

static const double consts[] = {0, 1, -1, 2, -3, 0.5, -0.25, 3.7, 64, 1e308, -1e-310,
                                INFINITY, -INFINITY, NAN};
static const fl_xop unaries[] = {FL_X_NEG, FL_X_EXP, FL_X_EXP2, FL_X_LOG, FL_X_TANH,
                                 FL_X_SIGMOID, FL_X_SQRT, FL_X_RSQRT, FL_X_ABS, FL_X_RELU,
                                 FL_X_NOT, FL_X_FLOOR, FL_X_TRUNC};
static const fl_xop binaries[] = {FL_X_ADD, FL_X_SUB, FL_X_MUL, FL_X_DIV, FL_X_POW, FL_X_MAX,
                                  FL_X_MIN, FL_X_LT, FL_X_LE, FL_X_GT, FL_X_GE, FL_X_EQ,
                                  FL_X_NE, FL_X_AND, FL_X_OR, FL_X_IDIV, FL_X_MOD};
#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))

/* A random expression over variables 0 .. nvars-1; when local >= 0 it may
 * hold one nested reduction binding variable `local`, whose body may use it. */
static int random_expr(fl_graph *g, uint64_t *s, int depth, int nvars, int *local) {
  if (depth == 0 || pick(s, 5) == 0)
    return pick(s, 2) ? var(g, pick(s, nvars)) : cst(g, consts[pick(s, COUNT(consts))]);
  int kind = pick(s, 10);
  if (kind == 9 && *local >= 0) {
    int v = *local;
    *local = -1; /* one reduction per expression: no nesting over the same local */
    int body = random_expr(g, s, depth - 1, v + 1, local);
    return reduce(g, (fl_combiner)(FL_COMB_SUM + pick(s, 3)), v, body);
  }
  if (kind < 3) return op1(g, unaries[pick(s, COUNT(unaries))], random_expr(g, s, depth - 1, nvars, local));
  if (kind == 8) {
    int c = random_expr(g, s, depth - 1, nvars, local);
    int a = random_expr(g, s, depth - 1, nvars, local);
    return op3(g, FL_X_WHERE, c, a, random_expr(g, s, depth - 1, nvars, local));
  }
  int a = random_expr(g, s, depth - 1, nvars, local);
  return op2(g, binaries[pick(s, COUNT(binaries))], a, random_expr(g, s, depth - 1, nvars, local));
}

static void put(char *buf, size_t n, size_t *at, const char *fmt, ...) {
  if (*at >= n) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf + *at, n - *at, fmt, ap);
  va_end(ap);
  *at += k > 0 ? (size_t)k : 0;
}

static void show(const fl_graph *g, int id, char *buf, size_t n, size_t *at) {
  const fl_expr *x = &g->exprs[id];
  if (x->op == FL_X_CONST) {
    put(buf, n, at, "%g", x->value);
    return;
  }
  if (x->op == FL_X_VAR) {
    put(buf, n, at, "v%d", x->var);
    return;
  }
  put(buf, n, at, "%s(", fl_xop_name(x->op));
  if (x->op == FL_X_REDUCE) put(buf, n, at, "%s v%d, ", fl_combiner_name(x->comb), x->var);
  for (int k = 0; k < x->nargs; k++) {
    if (k) put(buf, n, at, ", ");
    show(g, x->args[k], buf, n, at);
  }
  put(buf, n, at, ")");
}

/* One random case: an expression over i in [lo0, hi0], j in [lo1, hi1]
 * (and, with reductions, a local of size 0..3), checked at every point of
 * the box. Returns 0 when sound, else prints the case and returns -1. */
static int random_case(uint64_t seed, int with_reduce) {
  uint64_t s = seed;
  double lo[2], hi[2];
  for (int k = 0; k < 2; k++) {
    lo[k] = pick(&s, 9);
    hi[k] = lo[k] + pick(&s, 5);
  }
  int64_t local_size = pick(&s, 4);
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", (int64_t)hi[0] + 1), j = sym(&g, "j", (int64_t)hi[1] + 1);
  int l = sym(&g, "l", local_size);
  int local = with_reduce ? 2 : -1;
  int body = random_expr(&g, &s, 1 + pick(&s, 5), 2, &local);
  int v = node(&g, "v", 2, (int[]){i, j}, with_reduce, (int[]){l}, body);
  output(&g, v);
  fl_interval vars[FL_MAX_VARS] = {iv(lo[0], hi[0]), iv(lo[1], hi[1])};
  fl_interval r = fl_interval_of(&g, v, body, vars, NULL, NULL);

  fl_tensor out;
  fl_err e;
  int evaluated = fl_graph_eval(&g, NULL, FL_F32, &out, &e) == FL_OK, bad = !evaluated;
  const char *why = bad ? e.msg : NULL;
  double at_i = 0, at_j = 0, got = 0;
  int nan_only = r.lo == INFINITY && r.hi == -INFINITY && r.nan;
  if (isnan(r.lo) || isnan(r.hi) || (r.lo > r.hi && !nan_only)) bad = 1, why = "malformed interval";
  oracle o = {.g = &g, .local_size = local_size};
  for (int a = (int)lo[0]; !bad && a <= hi[0]; a++)
    for (int b = (int)lo[1]; !bad && b <= hi[1]; b++) {
      o.pos[0] = a, o.pos[1] = b;
      got = ref_eval(&o, body);
      float f = ((const float *)out.host)[a * ((int)hi[1] + 1) + b];
      at_i = a, at_j = b;
      if (!((float)got == f || (isnan(got) && isnan(f)))) bad = 1, why = "oracle differs from fl_graph_eval";
      else if (isnan(got) ? !r.nan : !(r.lo <= got && got <= r.hi)) bad = 1, why = "value outside";
    }
  if (bad) {
    char text[4096];
    size_t at = 0;
    show(&g, body, text, sizeof text, &at);
    fprintf(stderr, "  seed %llu: %s\n  %s\n  i in [%g, %g], j in [%g, %g], local size %lld: "
            "[%.17g, %.17g] nan %d; at i = %g, j = %g: %.17g\n",
            (unsigned long long)seed, why, text, lo[0], hi[0], lo[1], hi[1], (long long)local_size,
            r.lo, r.hi, r.nan, at_i, at_j, got);
  }
  if (evaluated) fl_tensor_free(&out);
  fl_graph_free(&g);
  return bad ? -1 : 0;
}

FL_TEST(interval_random_expressions_sound) {
  for (uint64_t seed = 1; seed <= 4000; seed++)
    if (random_case(seed, 0) != 0) {
      CHECK(!"interval unsound on a random expression");
      return;
    }
}

FL_TEST(interval_random_reductions_sound) {
  for (uint64_t seed = 100001; seed <= 102000; seed++)
    if (random_case(seed, 1) != 0) {
      CHECK(!"interval unsound on a random expression with a nested reduction");
      return;
    }
}
