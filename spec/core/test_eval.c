#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fl_ir.h"
#include "fl_test.h"
#include "fl_test_graph.h"

static const fl_device cpu = {FL_CPU, 0};

/* A node computing in f32; dims and red may be NULL when empty. */
static int node(fl_graph *g, const char *name, int ndim, const int *dims, fl_combiner comb,
                int nred, const int *red, int body) {
  fl_value v = {.dtype = FL_F32, .ndim = ndim, .nred = nred, .comb = comb, .body = body};
  snprintf(v.name, sizeof v.name, "%s", name);
  if (ndim) memcpy(v.dims, dims, (size_t)ndim * sizeof *dims);
  if (nred) memcpy(v.red, red, (size_t)nred * sizeof *red);
  fl_err e;
  return built(fl_graph_node(g, &v, &e), &e);
}


/* ---- tensor shorthands ---- */

static void tensor_of(fl_tensor *t, fl_dtype dt, int ndim, const int64_t *shape,
                      const double *vals) {
  fl_err e;
  if (fl_tensor_alloc(t, dt, cpu, ndim, shape, &e) != FL_OK) {
    fprintf(stderr, "  alloc failed: %s\n", e.msg);
    return;
  }
  for (int64_t i = 0; i < t->numel; i++) fl_elem_set_f64(t->host, dt, (size_t)i, vals[i]);
}

static double at(const fl_tensor *t, int64_t i) {
  return fl_elem_get_f64(t->host, t->dtype, (size_t)i);
}

static void free_all(fl_tensor *t, int n) {
  for (int i = 0; i < n; i++) fl_tensor_free(&t[i]);
}

/* Equal, both NaN, or within f32 rounding of each other. */
static int same(double got, double want) {
  if (isnan(want)) return isnan(got);
  return got == want || fabs(got - want) <= 1e-6 * fabs(want);
}

/* ---- matmul, reductions to a scalar ---- */

FL_TEST(eval_matmul) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 2), d = sym(&g, "d", 3), j = sym(&g, "j", 2);
  int A = input(&g, "A", FL_F32, 2, (int[]){i, d});
  int B = input(&g, "B", FL_F32, 2, (int[]){d, j});
  /* C[i,j] = sum_d A[i,d] * B[d,j]: vars 0 = i, 1 = j, 2 = d */
  int vi = var(&g, 0), vj = var(&g, 1), vd = var(&g, 2);
  int body = op2(&g, FL_X_MUL, load(&g, A, 2, (int[]){vi, vd}), load(&g, B, 2, (int[]){vd, vj}));
  int C = node(&g, "C", 2, (int[]){i, j}, FL_COMB_SUM, 1, (int[]){d}, body);
  /* total = sum over i, d of A[i,d], a scalar: vars 0 = i, 1 = d */
  int total = node(&g, "total", 0, NULL, FL_COMB_SUM, 2, (int[]){i, d},
                   load(&g, A, 2, (int[]){var(&g, 0), var(&g, 1)}));
  output(&g, C);
  output(&g, total);

  fl_tensor in[2], out[2];
  tensor_of(&in[0], FL_F32, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
  tensor_of(&in[1], FL_I32, 2, (int64_t[]){3, 2}, (double[]){7, 8, 9, 10, 11, 12});
  fl_err e;
  CHECK(fl_graph_eval(&g, in, FL_DTYPE_COUNT, out, &e) == FL_OK);
  CHECK(out[0].dtype == FL_F32 && out[0].ndim == 2 && out[0].shape[0] == 2 && out[0].shape[1] == 2);
  double want[] = {58, 64, 139, 154};
  for (int k = 0; k < 4; k++) CHECK(at(&out[0], k) == want[k]);
  CHECK(out[1].ndim == 0 && out[1].numel == 1 && at(&out[1], 0) == 21);
  free_all(out, 2);
  free_all(in, 2);
  fl_graph_free(&g);
}

/* ---- softmax as four nodes ---- */

FL_TEST(eval_softmax_rows) {
  enum { R = 3, L = 5 };
  fl_graph g;
  fl_graph_init(&g);
  int r = sym(&g, "r", R), l = sym(&g, "l", L);
  int X = input(&g, "X", FL_F32, 2, (int[]){r, l});
  int v0 = var(&g, 0), v1 = var(&g, 1);
  int m = node(&g, "m", 1, (int[]){r}, FL_COMB_MAX, 1, (int[]){l}, load(&g, X, 2, (int[]){v0, v1}));
  int shifted = op2(&g, FL_X_SUB, load(&g, X, 2, (int[]){v0, v1}), load(&g, m, 1, (int[]){v0}));
  int ex = node(&g, "ex", 2, (int[]){r, l}, FL_COMB_NONE, 0, NULL, op1(&g, FL_X_EXP, shifted));
  int s = node(&g, "s", 1, (int[]){r}, FL_COMB_SUM, 1, (int[]){l}, load(&g, ex, 2, (int[]){v0, v1}));
  int p = node(&g, "p", 2, (int[]){r, l}, FL_COMB_NONE, 0, NULL,
               op2(&g, FL_X_DIV, load(&g, ex, 2, (int[]){v0, v1}), load(&g, s, 1, (int[]){v0})));
  output(&g, p);

  double x[R * L];
  for (int k = 0; k < R * L; k++) x[k] = 4 * sin(0.7 * k + 1);
  fl_tensor in, out;
  tensor_of(&in, FL_F32, 2, (int64_t[]){R, L}, x);
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_F32, &out, &e) == FL_OK);
  for (int row = 0; row < R; row++) {
    double sum = 0, want_sum = 0;
    for (int c = 0; c < L; c++) want_sum += exp(at(&in, row * L + c));
    for (int c = 0; c < L; c++) {
      double got = at(&out, row * L + c);
      sum += got;
      CHECK(same(got, exp(at(&in, row * L + c)) / want_sum));
    }
    CHECK_NEAR(sum, 1.0, 1e-6);
  }
  fl_tensor_free(&out);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

/* ---- index arithmetic: masks, views, broadcasts ---- */

FL_TEST(eval_causal_mask_with_where) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 4), j = sym(&g, "j", 4);
  int S = input(&g, "S", FL_F32, 2, (int[]){i, j});
  int vi = var(&g, 0), vj = var(&g, 1);
  int masked = op3(&g, FL_X_WHERE, op2(&g, FL_X_LE, vj, vi), load(&g, S, 2, (int[]){vi, vj}),
                   cst(&g, -INFINITY));
  int M = node(&g, "M", 2, (int[]){i, j}, FL_COMB_NONE, 0, NULL, masked);
  /* exp(-inf) is 0, so row i sums exp(S[i,j]) over j <= i */
  int rs = node(&g, "rs", 1, (int[]){i}, FL_COMB_SUM, 1, (int[]){j},
                op1(&g, FL_X_EXP, load(&g, M, 2, (int[]){vi, vj})));
  output(&g, M);
  output(&g, rs);

  double s[16];
  for (int k = 0; k < 16; k++) s[k] = 0.25 * k;
  fl_tensor in, out[2];
  tensor_of(&in, FL_F32, 2, (int64_t[]){4, 4}, s);
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_F32, out, &e) == FL_OK);
  for (int a = 0; a < 4; a++) {
    double want = 0;
    for (int b = 0; b < 4; b++) {
      double got = at(&out[0], a * 4 + b);
      CHECK(b <= a ? got == s[a * 4 + b] : isinf(got) && got < 0);
      if (b <= a) want += exp(s[a * 4 + b]);
    }
    CHECK(same(at(&out[1], a), want));
  }
  free_all(out, 2);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

FL_TEST(eval_transpose_view) {
  fl_graph g;
  fl_graph_init(&g);
  int i = sym(&g, "i", 2), j = sym(&g, "j", 3);
  int A = input(&g, "A", FL_F32, 2, (int[]){i, j});
  /* T[j,i] = A[i,j]: var 0 is j, var 1 is i */
  int T = node(&g, "T", 2, (int[]){j, i}, FL_COMB_NONE, 0, NULL,
               load(&g, A, 2, (int[]){var(&g, 1), var(&g, 0)}));
  output(&g, T);
  fl_tensor in, out;
  tensor_of(&in, FL_F32, 2, (int64_t[]){2, 3}, (double[]){0, 1, 2, 3, 4, 5});
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_F32, &out, &e) == FL_OK);
  CHECK(out.shape[0] == 3 && out.shape[1] == 2);
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++) CHECK(at(&out, a * 2 + b) == b * 3 + a);
  fl_tensor_free(&out);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

FL_TEST(eval_broadcast_load) {
  fl_graph g;
  fl_graph_init(&g);
  int one = sym(&g, "one", 1), i = sym(&g, "i", 4), j = sym(&g, "j", 3);
  int A = input(&g, "A", FL_F32, 2, (int[]){one, j});
  int bias = input(&g, "bias", FL_F32, 1, (int[]){one});
  int zero = cst(&g, 0);
  int body = op2(&g, FL_X_ADD, load(&g, A, 2, (int[]){zero, var(&g, 1)}),
                 load(&g, bias, 1, (int[]){zero}));
  int O = node(&g, "O", 2, (int[]){i, j}, FL_COMB_NONE, 0, NULL, body);
  output(&g, O);
  fl_tensor in[2], out;
  tensor_of(&in[0], FL_F32, 2, (int64_t[]){1, 3}, (double[]){10, 20, 30});
  tensor_of(&in[1], FL_F32, 1, (int64_t[]){1}, (double[]){0.5});
  fl_err e;
  CHECK(fl_graph_eval(&g, in, FL_F32, &out, &e) == FL_OK);
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 3; b++) CHECK(at(&out, a * 3 + b) == 10 * (b + 1) + 0.5);
  fl_tensor_free(&out);
  free_all(in, 2);
  fl_graph_free(&g);
}

FL_TEST(eval_reshape_with_idiv_mod) {
  fl_graph g;
  fl_graph_init(&g);
  int r = sym(&g, "r", 2), c = sym(&g, "c", 3), n = sym(&g, "n", 6);
  int A = input(&g, "A", FL_F32, 2, (int[]){r, c});
  int vn = var(&g, 0), three = cst(&g, 3);
  int flat = node(&g, "flat", 1, (int[]){n}, FL_COMB_NONE, 0, NULL,
                  load(&g, A, 2, (int[]){op2(&g, FL_X_IDIV, vn, three), op2(&g, FL_X_MOD, vn, three)}));
  output(&g, flat);
  fl_tensor in, out;
  tensor_of(&in, FL_F32, 2, (int64_t[]){2, 3}, (double[]){0, 1, 2, 3, 4, 5});
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_I32, &out, &e) == FL_OK);
  CHECK(out.dtype == FL_I32 && out.ndim == 1 && out.shape[0] == 6);
  for (int k = 0; k < 6; k++) CHECK(((int32_t *)out.host)[k] == k);
  fl_tensor_free(&out);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

/* ---- gathers: indices from tensor data ---- */

/* G[i,k] = E[I[i], k] for a table E of 5 rows and 3 indices I. */
static void gather_graph(fl_graph *g) {
  fl_graph_init(g);
  int rows = sym(g, "rows", 5), k = sym(g, "k", 2), i = sym(g, "i", 3);
  int E = input(g, "E", FL_F32, 2, (int[]){rows, k});
  int I = input(g, "I", FL_I32, 1, (int[]){i});
  int vi = var(g, 0), vk = var(g, 1);
  int row = load(g, I, 1, (int[]){vi});
  int G = node(g, "G", 2, (int[]){i, k}, FL_COMB_NONE, 0, NULL, load(g, E, 2, (int[]){row, vk}));
  output(g, I);
  output(g, G);
}

/* Evaluates the gather with index tensor I of dtype dt; returns the status. */
static fl_status gather(fl_dtype dt, const double *idx, fl_tensor *out, fl_err *e) {
  fl_graph g;
  gather_graph(&g);
  fl_tensor in[2];
  tensor_of(&in[0], FL_F32, 2, (int64_t[]){5, 2}, (double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  tensor_of(&in[1], dt, 1, (int64_t[]){3}, idx);
  fl_status s = fl_graph_eval(&g, in, FL_F32, out, e);
  free_all(in, 2);
  fl_graph_free(&g);
  return s;
}

FL_TEST(eval_gather_from_index_tensor) {
  fl_tensor out[2];
  fl_err e;
  CHECK(gather(FL_I32, (double[]){4, 0, 2}, out, &e) == FL_OK);
  double want[] = {8, 9, 0, 1, 4, 5};
  for (int k = 0; k < 6; k++) CHECK(at(&out[1], k) == want[k]);
  CHECK(at(&out[0], 0) == 4 && at(&out[0], 2) == 2); /* an input as an output */
  free_all(out, 2);
}

FL_TEST(eval_gather_out_of_range_is_an_error) {
  fl_tensor out[2];
  fl_err e;
  CHECK(gather(FL_I32, (double[]){4, 7, 0}, out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "index 7 out of range for dimension 1 (size 5) of 'E' in node 'G'") == 0);
  CHECK(out[0].host == NULL && out[1].host == NULL);
  CHECK(gather(FL_I64, (double[]){0, 1, -1}, out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "index -1 out of range for dimension 1 (size 5) of 'E' in node 'G'") == 0);
  CHECK(gather(FL_F32, (double[]){1.5, 0, 0}, out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "index 1.5 is not an integer, for dimension 1 of 'E' in node 'G'") == 0);
  CHECK(gather(FL_F32, (double[]){0, NAN, 0}, out, &e) == FL_EINVAL);
  CHECK(strstr(e.msg, "is not an integer") != NULL);
}

/* ---- pointwise operators ---- */

enum { NPTS = 6 };

/* z[i] = op(x[i]) or op(x[i], y[i]) over NPTS points, read back as f32. */
static fl_status pointwise(fl_xop op, const double *x, const double *y, double *z, fl_err *e) {
  fl_graph g;
  fl_graph_init(&g);
  int n = sym(&g, "n", NPTS);
  int X = input(&g, "x", FL_F32, 1, (int[]){n}), Y = input(&g, "y", FL_F32, 1, (int[]){n});
  int vi = var(&g, 0), a = load(&g, X, 1, (int[]){vi}), b = load(&g, Y, 1, (int[]){vi});
  int body = y ? op2(&g, op, a, b) : op1(&g, op, a);
  output(&g, node(&g, "z", 1, (int[]){n}, FL_COMB_NONE, 0, NULL, body));
  fl_tensor in[2], out;
  tensor_of(&in[0], FL_F32, 1, (int64_t[]){NPTS}, x);
  tensor_of(&in[1], FL_F32, 1, (int64_t[]){NPTS}, y ? y : x);
  fl_status s = fl_graph_eval(&g, in, FL_F32, &out, e);
  for (int i = 0; s == FL_OK && i < NPTS; i++) z[i] = at(&out, i);
  if (s == FL_OK) fl_tensor_free(&out);
  free_all(in, 2);
  fl_graph_free(&g);
  return s;
}

FL_TEST(eval_unary_ops) {
  const double x[NPTS] = {-1, 0, 0.5, 4, NAN, -INFINITY};
  static const struct { fl_xop op; double want[NPTS]; } cases[] = {
    {FL_X_NEG, {1, 0, -0.5, -4, NAN, INFINITY}},
    {FL_X_EXP, {0.36787944117144233, 1, 1.6487212707001282, 54.598150033144236, NAN, 0}},
    {FL_X_EXP2, {0.5, 1, 1.4142135623730951, 16, NAN, 0}},
    {FL_X_LOG, {NAN, -INFINITY, -0.6931471805599453, 1.3862943611198906, NAN, NAN}},
    {FL_X_TANH, {-0.7615941559557649, 0, 0.46211715726000974, 0.999329299739067, NAN, -1}},
    {FL_X_SIGMOID, {0.2689414213699951, 0.5, 0.6224593312018546, 0.9820137900379085, NAN, 0}},
    {FL_X_SQRT, {NAN, 0, 0.7071067811865476, 2, NAN, NAN}},
    {FL_X_RSQRT, {NAN, INFINITY, 1.4142135623730951, 0.5, NAN, NAN}},
    {FL_X_ABS, {1, 0, 0.5, 4, NAN, INFINITY}},
    {FL_X_RELU, {0, 0, 0.5, 4, NAN, 0}},
    {FL_X_NOT, {0, 1, 0, 0, 0, 0}},
    {FL_X_FLOOR, {-1, 0, 0, 4, NAN, -INFINITY}},
    {FL_X_TRUNC, {-1, 0, 0, 4, NAN, -INFINITY}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    double z[NPTS];
    fl_err e;
    CHECK(pointwise(cases[c].op, x, NULL, z, &e) == FL_OK);
    for (int i = 0; i < NPTS; i++) {
      if (same(z[i], cases[c].want[i])) continue;
      fprintf(stderr, "  %s(%g) = %g, want %g\n", fl_xop_name(cases[c].op), x[i], z[i],
              cases[c].want[i]);
      CHECK(same(z[i], cases[c].want[i]));
    }
  }
}

FL_TEST(eval_binary_ops) {
  const double a[NPTS] = {1, -3, 2, NAN, 0, 1};
  const double b[NPTS] = {2, 2, -0.5, 1, 0, NAN};
  static const struct { fl_xop op; double want[NPTS]; } cases[] = {
    {FL_X_ADD, {3, -1, 1.5, NAN, 0, NAN}},
    {FL_X_SUB, {-1, -5, 2.5, NAN, 0, NAN}},
    {FL_X_MUL, {2, -6, -1, NAN, 0, NAN}},
    {FL_X_DIV, {0.5, -1.5, -4, NAN, NAN, NAN}},
    {FL_X_POW, {1, 9, 0.7071067811865476, NAN, 1, 1}}, /* C's pow(1, NaN) is 1 */
    {FL_X_MAX, {2, 2, 2, NAN, 0, NAN}},
    {FL_X_MIN, {1, -3, -0.5, NAN, 0, NAN}},
    {FL_X_LT, {1, 1, 0, 0, 0, 0}},
    {FL_X_LE, {1, 1, 0, 0, 1, 0}},
    {FL_X_GT, {0, 0, 1, 0, 0, 0}},
    {FL_X_GE, {0, 0, 1, 0, 1, 0}},
    {FL_X_EQ, {0, 0, 0, 0, 1, 0}},
    {FL_X_NE, {1, 1, 1, 1, 0, 1}},
    {FL_X_AND, {1, 1, 1, 1, 0, 1}}, /* NaN is nonzero */
    {FL_X_OR, {1, 1, 1, 1, 0, 1}},
    {FL_X_IDIV, {0, -2, -4, NAN, NAN, NAN}},
    {FL_X_MOD, {1, 1, 0, NAN, NAN, NAN}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    double z[NPTS];
    fl_err e;
    CHECK(pointwise(cases[c].op, a, b, z, &e) == FL_OK);
    for (int i = 0; i < NPTS; i++) {
      if (same(z[i], cases[c].want[i])) continue;
      fprintf(stderr, "  %s(%g, %g) = %g, want %g\n", fl_xop_name(cases[c].op), a[i], b[i],
              z[i], cases[c].want[i]);
      CHECK(same(z[i], cases[c].want[i]));
    }
  }
}

FL_TEST(eval_idiv_mod_floor_negatives) {
  const double a[NPTS] = {7, -7, 7, -7, 6, -6};
  const double b[NPTS] = {2, 2, -2, -2, 3, 4};
  const double quot[NPTS] = {3, -4, -4, 3, 2, -2}, rem[NPTS] = {1, 1, -1, -1, 0, 2};
  double z[NPTS];
  fl_err e;
  CHECK(pointwise(FL_X_IDIV, a, b, z, &e) == FL_OK);
  for (int i = 0; i < NPTS; i++) CHECK(z[i] == quot[i]);
  CHECK(pointwise(FL_X_MOD, a, b, z, &e) == FL_OK);
  for (int i = 0; i < NPTS; i++) CHECK(z[i] == rem[i]);
}

/* ---- combiners ---- */

FL_TEST(eval_max_min_combiners_propagate_nan) {
  fl_graph g;
  fl_graph_init(&g);
  int r = sym(&g, "r", 4), c = sym(&g, "c", 3);
  int X = input(&g, "X", FL_F32, 2, (int[]){r, c});
  int x = load(&g, X, 2, (int[]){var(&g, 0), var(&g, 1)});
  output(&g, node(&g, "mx", 1, (int[]){r}, FL_COMB_MAX, 1, (int[]){c}, x));
  output(&g, node(&g, "mn", 1, (int[]){r}, FL_COMB_MIN, 1, (int[]){c}, x));
  output(&g, node(&g, "sm", 1, (int[]){r}, FL_COMB_SUM, 1, (int[]){c}, x));
  fl_tensor in, out[3];
  tensor_of(&in, FL_F32, 2, (int64_t[]){4, 3},
            (double[]){NAN, 1, 2, 1, NAN, 2, 1, 2, NAN, 3, -1, 2});
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_F32, out, &e) == FL_OK);
  for (int row = 0; row < 3; row++)
    for (int k = 0; k < 3; k++) CHECK(isnan(at(&out[k], row)));
  CHECK(at(&out[0], 3) == 3 && at(&out[1], 3) == -1 && at(&out[2], 3) == 4);
  free_all(out, 3);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

FL_TEST(eval_empty_reduction) {
  fl_graph g;
  fl_graph_init(&g);
  int r = sym(&g, "r", 2), c = sym(&g, "c", 0);
  int X = input(&g, "X", FL_F32, 2, (int[]){r, c});
  int x = load(&g, X, 2, (int[]){var(&g, 0), var(&g, 1)});
  output(&g, node(&g, "sm", 1, (int[]){r}, FL_COMB_SUM, 1, (int[]){c}, x));
  output(&g, node(&g, "mx", 1, (int[]){r}, FL_COMB_MAX, 1, (int[]){c}, x));
  output(&g, node(&g, "mn", 1, (int[]){r}, FL_COMB_MIN, 1, (int[]){c}, x));
  output(&g, node(&g, "view", 2, (int[]){r, c}, FL_COMB_NONE, 0, NULL, x));
  fl_tensor in, out[4];
  tensor_of(&in, FL_F32, 2, (int64_t[]){2, 0}, NULL);
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_F32, out, &e) == FL_OK);
  for (int row = 0; row < 2; row++) {
    CHECK(at(&out[0], row) == 0);
    CHECK(at(&out[1], row) == -INFINITY);
    CHECK(at(&out[2], row) == INFINITY);
  }
  CHECK(out[3].numel == 0 && out[3].shape[1] == 0);
  free_all(out, 4);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

/* ---- attention, against a direct computation ---- */

enum { AB = 1, AH = 2, AN = 64, AD = 16 };

/* Causal attention as six nodes over q, k, v of shape [AB, AH, AN, AD]. */
static void attention_graph(fl_graph *g) {
  fl_graph_init(g);
  int b = sym(g, "b", AB), h = sym(g, "h", AH), i = sym(g, "i", AN), j = sym(g, "j", AN),
      d = sym(g, "d", AD);
  int qkv_dims[] = {b, h, i, d}, kv_dims[] = {b, h, j, d};
  int Q = input(g, "q", FL_F32, 4, qkv_dims);
  int K = input(g, "k", FL_F32, 4, kv_dims);
  int V = input(g, "v", FL_F32, 4, kv_dims);
  int v0 = var(g, 0), v1 = var(g, 1), v2 = var(g, 2), v3 = var(g, 3), v4 = var(g, 4);
  /* s[b,h,i,j] = sum_d q[b,h,i,d] k[b,h,j,d] / sqrt(D), masked above the diagonal */
  int dot = op2(g, FL_X_MUL, load(g, Q, 4, (int[]){v0, v1, v2, v4}),
                load(g, K, 4, (int[]){v0, v1, v3, v4}));
  int s = node(g, "s", 4, (int[]){b, h, i, j}, FL_COMB_SUM, 1, (int[]){d},
               op2(g, FL_X_MUL, dot, cst(g, 1 / sqrt(AD))));
  int sij = load(g, s, 4, (int[]){v0, v1, v2, v3});
  int sm = node(g, "sm", 4, (int[]){b, h, i, j}, FL_COMB_NONE, 0, NULL,
                op3(g, FL_X_WHERE, op2(g, FL_X_LE, v3, v2), sij, cst(g, -INFINITY)));
  /* rows: vars 0..2 are b, h, i and var 3 is the reduced j */
  int smij = load(g, sm, 4, (int[]){v0, v1, v2, v3});
  int m = node(g, "m", 3, (int[]){b, h, i}, FL_COMB_MAX, 1, (int[]){j}, smij);
  int p = node(g, "p", 4, (int[]){b, h, i, j}, FL_COMB_NONE, 0, NULL,
               op1(g, FL_X_EXP, op2(g, FL_X_SUB, smij, load(g, m, 3, (int[]){v0, v1, v2}))));
  int l = node(g, "l", 3, (int[]){b, h, i}, FL_COMB_SUM, 1, (int[]){j},
               load(g, p, 4, (int[]){v0, v1, v2, v3}));
  /* o[b,h,i,d] = sum_j p[b,h,i,j] v[b,h,j,d] / l[b,h,i]: var 3 is d, var 4 is j */
  int pv = op2(g, FL_X_MUL, load(g, p, 4, (int[]){v0, v1, v2, v4}),
               load(g, V, 4, (int[]){v0, v1, v4, v3}));
  int o = node(g, "o", 4, qkv_dims, FL_COMB_SUM, 1, (int[]){j},
               op2(g, FL_X_DIV, pv, load(g, l, 3, (int[]){v0, v1, v2})));
  output(g, o);
}

/* The same attention by direct loops, at row (bh, i). */
static void attention_row(const float *q, const float *k, const float *v, int bh, int i,
                          double *o) {
  const float *qi = q + ((size_t)bh * AN + i) * AD;
  double s[AN], m = -INFINITY, l = 0;
  for (int j = 0; j <= i; j++) {
    const float *kj = k + ((size_t)bh * AN + j) * AD;
    s[j] = 0;
    for (int d = 0; d < AD; d++) s[j] += (double)qi[d] * kj[d];
    s[j] /= sqrt(AD);
    if (s[j] > m) m = s[j];
  }
  for (int j = 0; j <= i; j++) l += exp(s[j] - m);
  for (int d = 0; d < AD; d++) {
    o[d] = 0;
    for (int j = 0; j <= i; j++) o[d] += exp(s[j] - m) / l * v[((size_t)bh * AN + j) * AD + d];
  }
}

FL_TEST(eval_causal_attention) {
  fl_graph g;
  attention_graph(&g);
  int64_t shape[] = {AB, AH, AN, AD};
  fl_tensor in[3], out;
  fl_err e;
  for (int k = 0; k < 3; k++) {
    CHECK(fl_tensor_alloc(&in[k], FL_F32, cpu, 4, shape, &e) == FL_OK);
    CHECK(fl_tensor_randn(&in[k], 10 + k, &e) == FL_OK);
  }
  CHECK(fl_graph_eval(&g, in, FL_F32, &out, &e) == FL_OK);
  CHECK(out.ndim == 4 && out.shape[2] == AN && out.shape[3] == AD);
  double worst = 0, o[AD];
  for (int bh = 0; bh < AB * AH; bh++)
    for (int i = 0; i < AN; i++) {
      attention_row(in[0].host, in[1].host, in[2].host, bh, i, o);
      for (int d = 0; d < AD; d++)
        worst = fmax(worst, fabs(at(&out, ((int64_t)bh * AN + i) * AD + d) - o[d]));
    }
  CHECK(worst < 1e-6);
  fl_tensor_free(&out);
  free_all(in, 3);
  fl_graph_free(&g);
}

/* ---- inputs, outputs and sizes ---- */

FL_TEST(eval_input_shape_and_device_errors) {
  fl_graph g;
  fl_graph_init(&g);
  int dims[] = {sym(&g, "b", 2), sym(&g, "h", 4), sym(&g, "n", 38), sym(&g, "d", 16)};
  int q = input(&g, "q", FL_F32, 4, dims);
  output(&g, node(&g, "y", 0, NULL, FL_COMB_SUM, 4, dims,
                  load(&g, q, 4, (int[]){var(&g, 0), var(&g, 1), var(&g, 2), var(&g, 3)})));
  fl_tensor in, out = {.host = (void *)&g};
  fl_err e;
  CHECK(fl_tensor_alloc(&in, FL_F32, cpu, 4, (int64_t[]){2, 4, 37, 16}, &e) == FL_OK);
  CHECK(fl_graph_eval(&g, &in, FL_F32, &out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "input 'q' has shape [2,4,37,16], the program was traced for [2,4,38,16]") == 0);
  CHECK(out.host == NULL); /* outputs are left empty on failure */
  fl_tensor_free(&in);

  CHECK(fl_tensor_alloc(&in, FL_F32, cpu, 2, (int64_t[]){8, 38}, &e) == FL_OK);
  CHECK(fl_graph_eval(&g, &in, FL_F32, &out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "input 'q' has shape [8,38], the program was traced for [2,4,38,16]") == 0);
  fl_tensor_free(&in);

  fl_tensor gpu = {.dtype = FL_F32, .device = {FL_CUDA, 0}, .ndim = 4,
                   .shape = {2, 4, 38, 16}, .numel = 2 * 4 * 38 * 16};
  CHECK(fl_graph_eval(&g, &gpu, FL_F32, &out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "eval runs on the CPU; input 'q' is on cuda:0") == 0);
  fl_graph_free(&g);
}

FL_TEST(eval_output_dtypes) {
  fl_graph g;
  fl_graph_init(&g);
  int n = sym(&g, "n", 3);
  int X = input(&g, "x", FL_F16, 1, (int[]){n});
  int third = node(&g, "third", 1, (int[]){n}, FL_COMB_NONE, 0, NULL,
                   op2(&g, FL_X_DIV, load(&g, X, 1, (int[]){var(&g, 0)}), cst(&g, 3)));
  output(&g, third);
  output(&g, X);
  fl_tensor in, out[2];
  tensor_of(&in, FL_F16, 1, (int64_t[]){3}, (double[]){1, 2, -8});
  fl_err e;
  CHECK(fl_graph_eval(&g, &in, FL_BF16, out, &e) == FL_OK);
  CHECK(out[0].dtype == FL_BF16 && out[1].dtype == FL_BF16 && out[0].shape[0] == 3);
  for (int i = 0; i < 3; i++) {
    double x = at(&in, i);
    CHECK(((uint16_t *)out[0].host)[i] == fl_f64_to_bf16(x / 3));
    CHECK(at(&out[1], i) == x);
  }
  free_all(out, 2);
  /* FL_DTYPE_COUNT keeps each value's own dtype: f32 for the node, f16 for the input */
  CHECK(fl_graph_eval(&g, &in, FL_DTYPE_COUNT, out, &e) == FL_OK);
  CHECK(out[0].dtype == FL_F32 && out[1].dtype == FL_F16);
  CHECK(((float *)out[0].host)[1] == (float)(2.0 / 3));
  CHECK(((uint16_t *)out[1].host)[2] == ((uint16_t *)in.host)[2]);
  free_all(out, 2);
  fl_tensor_free(&in);
  fl_graph_free(&g);
}

FL_TEST(eval_absurd_sizes_are_refused) {
  fl_graph g;
  fl_graph_init(&g);
  int big = sym(&g, "big", (int64_t)1 << 40);
  int body = cst(&g, 1);
  output(&g, node(&g, "huge", 2, (int[]){big, big}, FL_COMB_NONE, 0, NULL, body));
  fl_tensor out;
  fl_err e;
  CHECK(fl_graph_eval(&g, NULL, FL_F32, &out, &e) == FL_EINVAL);
  CHECK(strcmp(e.msg, "'huge' is too large to evaluate (more than 2^59 elements)") == 0);
  fl_graph_free(&g);

  fl_graph_init(&g);
  big = sym(&g, "big", (int64_t)1 << 40);
  body = cst(&g, 1);
  output(&g, node(&g, "wide", 0, NULL, FL_COMB_SUM, 2, (int[]){big, big}, body));
  CHECK(fl_graph_eval(&g, NULL, FL_F32, &out, &e) == FL_EINVAL);
  CHECK(strstr(e.msg, "'wide' is too large") != NULL);
  fl_graph_free(&g);
}

FL_TEST(eval_malformed_graph_is_refused) {
  fl_graph g;
  fl_graph_init(&g);
  int n = sym(&g, "n", 2);
  int X = input(&g, "x", FL_F32, 1, (int[]){n});
  int ld = load(&g, X, 1, (int[]){var(&g, 0)});
  int y = node(&g, "y", 1, (int[]){n}, FL_COMB_NONE, 0, NULL, ld);
  output(&g, y);
  fl_tensor in, out;
  tensor_of(&in, FL_F32, 1, (int64_t[]){2}, (double[]){1, 2});
  fl_err e;
  g.exprs[ld].src = y; /* a node loading itself */
  CHECK(fl_graph_eval(&g, &in, FL_F32, &out, &e) == FL_EINVAL);
  CHECK(strstr(e.msg, "malformed graph") && strstr(e.msg, "not an earlier one"));
  fl_tensor_free(&in);
  fl_graph_free(&g);
}
