#include "fl_cuda_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "fl_cuda_expr.h"
#include "fl_cuda_mma.h"
#include "fl_cuda_wgmma.h"
#include "fl_text.h"

#define LOOP_TILE 16 /* loop positions a thread takes in at a time */

typedef struct gen {
  const fl_plan *p;
  const fl_graph *g;
  fl_dtype out_dtype;
  unsigned flags; /* FL_GEN_... */
  int sms;        /* multiprocessors of the device (FL_GEN_PERSISTENT_AUTO) */
  fl_cx c;
  const fl_kernel *k; /* the group being emitted, or NULL */
  int safe;           /* reads of running max/min members read non-finite as 0 */
} gen;

#define line(G, ...) fl_cx_line(&(G)->c, __VA_ARGS__)

fl_dtype fl_cuda_storage(const fl_graph *g, int v, fl_dtype out_dtype) {
  if (v < g->ninputs) return g->vals[v].dtype;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o] == v) return out_dtype == FL_DTYPE_COUNT ? g->vals[v].dtype : out_dtype;
  return FL_DTYPE_COUNT;
}

static int64_t sym_size(const fl_graph *g, int s) { return g->syms[s].size; }

static int64_t red_numel(const fl_graph *g, const fl_value *v) {
  int64_t n = 1;
  for (int r = 0; r < v->nred; r++) n *= sym_size(g, v->red[r]);
  return n;
}

/* ---- group members in registers ---- */

/* A group member's offset among its register dims, from load indices. */
static void member_offset(gen *G, int v, const int *idx_tmp, char *buf, size_t n) {
  const fl_value *val = &G->g->vals[v];
  size_t len = (size_t)snprintf(buf, n, "0");
  int64_t stride = 1;
  for (int d = val->ndim - 1; d >= 0 && len < n; d--) {
    if (fl_group_slot(G->g, &G->k->tiles.gr, v, d) >= 0) continue;
    len += (size_t)snprintf(buf + len, n - len, " + (long long)t%d * %lldLL", idx_tmp[d], (long long)stride);
    stride *= sym_size(G->g, val->dims[d]);
  }
}

static int load_member(fl_cx *c, const fl_expr *ex, const int *idx) {
  gen *G = c->user;
  if (!G->k || ex->src < G->k->first || ex->src >= G->k->first + G->k->n) return -1;
  const fl_value *src = &G->g->vals[ex->src];
  int t = c->tmp++;
  if (src->tile_local) {
    line(G, "const double t%d = tl%d[rr];", t, ex->src);
    return t;
  }
  char off[512];
  member_offset(G, ex->src, idx, off, sizeof off);
  int safe = G->safe && fl_group_is_extreme(src);
  line(G, "const double t%d = %sa%d[%s]%s;", t, safe ? "fl_safe(" : "", ex->src, off, safe ? ")" : "");
  return t;
}

static void combine(gen *G, const char *acc, fl_combiner c, int t) {
  if (c == FL_COMB_SUM) line(G, "%s += t%d;", acc, t);
  else line(G, "%s = %s(%s, t%d);", acc, fl_cx_comb_fn(c), acc, t);
}

static int emit_body(gen *G, int v, int x) { return fl_cx_emit(&G->c, v, x); }

/* ---- parameters ---- */

static void add_param(fl_cuda_kernel *k, int v, int writes) {
  for (int i = 0; i < k->nparams; i++)
    if (k->param[i] == v) {
      k->writes[i] |= (char)writes;
      return;
    }
  if (k->nparams < FL_CUDA_MAX_PARAMS) {
    k->param[k->nparams] = v;
    k->writes[k->nparams++] = (char)writes;
  }
}

static void collect_loads(const fl_graph *g, int x, int first, int n, fl_cuda_kernel *k) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD && (ex->src < first || ex->src >= first + n)) add_param(k, ex->src, 0);
  for (int i = 0; i < ex->nargs; i++) collect_loads(g, ex->args[i], first, n, k);
}

/* Group kernels take `fix` before err: NULL, or the positions to compute. */
static void put_signature(gen *G, const fl_cuda_kernel *k) {
  fl_text_put(G->c.b, "extern \"C\" __global__ void %s(", k->name);
  for (int i = 0; i < k->nparams; i++) {
    int v = k->param[i];
    fl_text_put(G->c.b, "%s%s *__restrict__ v%d, ", k->writes[i] ? "" : "const ",
                fl_cuda_ctype(fl_cuda_storage(G->g, v, G->out_dtype)), v);
  }
  fl_text_put(G->c.b, "%sint *err) {\n", k->fix ? "const int *fix, " : "");
  G->c.depth = 1;
  line(G, "const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;");
  line(G, "if (tid >= %lldLL) return;", (long long)k->threads);
  if (k->fix) line(G, "if (fix && !fix[tid]) return;");
}

/* Declares x<first_var + d> for dims `dims` from a flat C-order position. */
static void unflatten(gen *G, const char *pos, int first_var, int ndim, const int *dims) {
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    int64_t size = sym_size(G->g, dims[d]);
    line(G, "const long long x%d = (%s / %lldLL) %% %lldLL;", first_var + d, pos, (long long)stride,
         (long long)size);
    stride *= size;
  }
}

/* ---- a lone node ---- */

static void gen_node(gen *G, int v, fl_cuda_kernel *k) {
  const fl_graph *g = G->g;
  const fl_value *val = &g->vals[v];
  snprintf(k->name, sizeof k->name, "fl_node%d", v);
  k->threads = fl_value_numel(g, v);
  collect_loads(g, val->body, v, 1, k);
  add_param(k, v, 1);
  G->k = NULL;
  G->safe = 0;
  put_signature(G, k);
  unflatten(G, "tid", 0, val->ndim, val->dims);
  line(G, "double acc = %s;", val->comb == FL_COMB_NONE ? "0.0" : fl_cx_comb_start(val->comb));
  line(G, "for (long long r = 0; r < %lldLL; ++r) {", (long long)red_numel(g, val));
  G->c.depth++;
  unflatten(G, "r", val->ndim, val->nred, val->red);
  int t = emit_body(G, v, val->body);
  if (val->comb == FL_COMB_NONE) line(G, "acc = t%d;", t);
  else combine(G, "acc", val->comb, t);
  G->c.depth--;
  line(G, "}");
  line(G, "fl_st(v%d, tid, acc);", v);
  fl_text_put(G->c.b, "}\n\n");
}

/* ---- a group ---- */

/* Declares member m's variables for register position `x` and loop position `r`. */
static void member_vars(gen *G, int m, const char *x, const char *r) {
  const fl_graph *g = G->g;
  const fl_value *val = &g->vals[m];
  const fl_group *gr = &G->k->tiles.gr;
  int64_t stride = 1;
  for (int d = val->ndim - 1; d >= 0; d--) {
    int s = fl_group_slot(g, gr, m, d);
    if (s >= 0) {
      line(G, "const long long x%d = g%d;", d, s);
      continue;
    }
    int64_t size = sym_size(g, val->dims[d]);
    const char *pos = val->tile_local ? r : x; /* a tile member's other dims are the loop's */
    line(G, "const long long x%d = (%s / %lldLL) %% %lldLL;", d, pos, (long long)stride, (long long)size);
    stride *= size;
  }
  if (!val->tile_local) unflatten(G, r, val->ndim, val->nred, val->red);
}

static int64_t extra_numel(const gen *G, int m) {
  const fl_value *val = &G->g->vals[m];
  int64_t n = 1;
  for (int d = 0; d < val->ndim; d++)
    if (fl_group_slot(G->g, &G->k->tiles.gr, m, d) < 0) n *= sym_size(G->g, val->dims[d]);
  return n;
}

/* Fills the tile members for loop positions [r0, r1) at rr = r - r0. */
static void fill_tiles(gen *G, const char *r0, const char *r1) {
  const fl_kernel *k = G->k;
  for (int m = k->first; m < k->first + k->n; m++) {
    if (!G->g->vals[m].tile_local) continue;
    line(G, "for (long long r = %s; r < %s; ++r) {", r0, r1);
    G->c.depth++;
    line(G, "const long long rr = r - (%s);", r0);
    member_vars(G, m, "0", "r");
    int t = emit_body(G, m, G->g->vals[m].body);
    line(G, "tl%d[rr] = t%d;", m, t);
    G->c.depth--;
    line(G, "}");
  }
}

static const char *rescale_expr(const fl_value *v, char *buf, size_t n, const char *before,
                                const char *after) {
  if (v->resc == FL_RESCALE_EXP) snprintf(buf, n, "exp(%s - %s)", before, after);
  else if (v->resc == FL_RESCALE_EXP2) snprintf(buf, n, "exp2(%s - %s)", before, after);
  else snprintf(buf, n, "pow(%s / %s, %.17g)", after, before, v->resc_pow);
  return buf;
}

/* One loop member takes loop positions [r0, r1) in, rescaled first. */
static void take_tile(gen *G, int m) {
  const fl_value *val = &G->g->vals[m];
  char acc[32], f[128];
  snprintf(acc, sizeof acc, "a%d[x]", m);
  line(G, "for (long long x = 0; x < %lldLL; ++x) {", (long long)extra_numel(G, m));
  G->c.depth++;
  if (val->resc != FL_RESCALE_NONE) {
    line(G, "{");
    G->c.depth++;
    member_vars(G, m, "x", "r0");
    int after = emit_body(G, m, val->resc_arg);
    char an[16];
    snprintf(an, sizeof an, "t%d", after);
    line(G, "if (%s != 0.0) %s *= %s;", acc, acc, rescale_expr(val, f, sizeof f, "mu[x]", an));
    G->c.depth--;
    line(G, "}");
  }
  line(G, "for (long long r = r0; r < r1; ++r) {");
  G->c.depth++;
  line(G, "const long long rr = r - r0;");
  member_vars(G, m, "x", "r");
  int t = emit_body(G, m, val->body);
  combine(G, acc, val->comb, t);
  G->c.depth--;
  line(G, "}");
  G->c.depth--;
  line(G, "}");
}

static void save_mu(gen *G, int m) {
  line(G, "for (long long x = 0; x < %lldLL; ++x) {", (long long)extra_numel(G, m));
  G->c.depth++;
  member_vars(G, m, "x", "r0");
  int t = emit_body(G, m, G->g->vals[m].resc_arg);
  line(G, "mu%d[x] = t%d;", m, t);
  G->c.depth--;
  line(G, "}");
}

static void gen_loop(gen *G, int64_t R) {
  const fl_kernel *k = G->k;
  line(G, "for (long long r0 = 0; r0 < %lldLL; r0 += %d) {", (long long)R, LOOP_TILE);
  G->c.depth++;
  line(G, "const long long r1 = r0 + %d < %lldLL ? r0 + %d : %lldLL;", LOOP_TILE, (long long)R, LOOP_TILE,
       (long long)R);
  G->safe = 1;
  fill_tiles(G, "r0", "r1");
  for (int m = k->first; m < k->first + k->n; m++) {
    const fl_value *v = &G->g->vals[m];
    if (fl_group_is_loop(v) && v->resc != FL_RESCALE_NONE) {
      line(G, "{ double *mu = mu%d;", m);
      G->c.depth++;
      save_mu(G, m);
      G->c.depth--;
      line(G, "}");
    }
  }
  for (int pass = 0; pass < 2; pass++)
    for (int m = k->first; m < k->first + k->n; m++) {
      const fl_value *v = &G->g->vals[m];
      if (!fl_group_is_loop(v) || fl_group_is_extreme(v) != (pass == 0)) continue;
      line(G, "{ double *mu = mu%d; (void)mu;", m);
      G->c.depth++;
      take_tile(G, m);
      G->c.depth--;
      line(G, "}");
    }
  G->safe = 0;
  G->c.depth--;
  line(G, "}");
}

/* The loop read non-finite running values as 0; see core/fl_eval_group.c. */
static void gen_settle(gen *G, int m, int64_t R) {
  const fl_value *val = &G->g->vals[m];
  char f[128];
  line(G, "for (long long x = 0; x < %lldLL; ++x) {", (long long)extra_numel(G, m));
  G->c.depth++;
  member_vars(G, m, "x", "0LL");
  G->safe = 1;
  int seen = emit_body(G, m, val->resc_arg);
  G->safe = 0;
  int final = emit_body(G, m, val->resc_arg);
  char sn[16], fn[16];
  snprintf(sn, sizeof sn, "t%d", seen);
  snprintf(fn, sizeof fn, "t%d", final);
  line(G, "if (fl_finite(t%d)) {", final);
  line(G, "  if (t%d != t%d && a%d[x] != 0.0) a%d[x] *= %s;", seen, final, m, m,
       rescale_expr(val, f, sizeof f, sn, fn));
  line(G, "} else {");
  G->c.depth++;
  line(G, "a%d[x] = %s;", m, fl_cx_comb_start(val->comb));
  line(G, "for (long long rp = 0; rp < %lldLL; ++rp) {", (long long)R);
  G->c.depth++;
  line(G, "const long long rq = rp + 1;");
  fill_tiles(G, "rp", "rq");
  line(G, "const long long rr = 0;");
  member_vars(G, m, "x", "rp");
  int t = emit_body(G, m, val->body);
  char acc[32];
  snprintf(acc, sizeof acc, "a%d[x]", m);
  combine(G, acc, val->comb, t);
  G->c.depth--;
  line(G, "}");
  G->c.depth--;
  line(G, "}");
  G->c.depth--;
  line(G, "}");
}

/* A group kernel's name, grid positions and parameters: what it reads
 * from outside the group, then its members (written). */
static void group_params(const fl_graph *g, const fl_kernel *pk, const char *suffix, fl_cuda_kernel *k) {
  const fl_group *gr = &pk->tiles.gr;
  snprintf(k->name, sizeof k->name, "fl_group%d%s", g->vals[pk->first].group, suffix);
  k->threads = 1;
  for (int s = 0; s < gr->ngrid; s++) k->threads *= sym_size(g, gr->grid[s]);
  for (int m = pk->first; m < pk->first + pk->n; m++) {
    const fl_value *v = &g->vals[m];
    collect_loads(g, v->body, pk->first, pk->n, k);
    if (v->resc != FL_RESCALE_NONE) collect_loads(g, v->resc_arg, pk->first, pk->n, k);
  }
  for (int m = pk->first; m < pk->first + pk->n; m++)
    if (!g->vals[m].tile_local) add_param(k, m, 1);
}

static void gen_group(gen *G, const fl_kernel *pk, fl_cuda_kernel *k) {
  const fl_graph *g = G->g;
  const fl_group *gr = &pk->tiles.gr;
  G->k = pk;
  group_params(g, pk, "", k);
  k->fix = 2;
  put_signature(G, k);
  unflatten(G, "tid", 0, gr->ngrid, gr->grid);
  for (int s = 0; s < gr->ngrid; s++) line(G, "const long long g%d = x%d;", s, s);
  int64_t R = red_numel(g, &g->vals[gr->loop]);
  for (int m = pk->first; m < pk->first + pk->n; m++) {
    const fl_value *v = &g->vals[m];
    if (v->tile_local) {
      line(G, "double tl%d[%d];", m, LOOP_TILE);
      continue;
    }
    int64_t n = extra_numel(G, m);
    line(G, "double a%d[%lld], mu%d[%lld];", m, (long long)n, m, (long long)n);
    line(G, "for (long long x = 0; x < %lldLL; ++x) a%d[x] = %s, mu%d[x] = 0.0;", (long long)n, m,
         v->epilogue ? "0.0" : fl_cx_comb_start(v->comb), m);
  }
  gen_loop(G, R);
  for (int m = pk->first; m < pk->first + pk->n; m++) {
    const fl_value *v = &g->vals[m];
    if (fl_group_is_loop(v) && v->resc != FL_RESCALE_NONE) gen_settle(G, m, R);
  }
  for (int m = pk->first; m < pk->first + pk->n; m++) {
    const fl_value *v = &g->vals[m];
    if (!v->epilogue) continue;
    line(G, "for (long long x = 0; x < %lldLL; ++x) {", (long long)extra_numel(G, m));
    G->c.depth++;
    member_vars(G, m, "x", "0LL");
    int t = emit_body(G, m, v->body);
    line(G, "a%d[x] = t%d;", m, t);
    G->c.depth--;
    line(G, "}");
  }
  for (int m = pk->first; m < pk->first + pk->n; m++) {
    const fl_value *v = &g->vals[m];
    if (v->tile_local) continue;
    line(G, "for (long long x = 0; x < %lldLL; ++x) {", (long long)extra_numel(G, m));
    G->c.depth++;
    member_vars(G, m, "x", "0LL");
    int64_t st[FL_MAX_DIMS];
    fl_cx_strides(g, v, st);
    fl_text_put(G->c.b, "%*sfl_st(v%d, 0", 2 * G->c.depth, "", m);
    for (int d = 0; d < v->ndim; d++) fl_text_put(G->c.b, " + x%d * %lldLL", d, (long long)st[d]);
    fl_text_put(G->c.b, ", a%d[x]);\n", m);
    G->c.depth--;
    line(G, "}");
  }
  fl_text_put(G->c.b, "}\n\n");
  G->k = NULL;
}

/* ---- the program ---- */

enum { HELP_MMA = 1, HELP_WGMMA = 2 };

/* A group as a tensor-core kernel (and its scalar kernel for the rows
 * it flags), or as its scalar kernel, saying why in `why`. */
static fl_status gen_group_kernels(gen *G, const fl_kernel *pk, fl_cuda_path path, fl_cuda_program *out,
                                   int *helpers, fl_err *e) {
  fl_mma_group mg;
  const char *why = "scalar kernels asked for", *why_not_hopper = NULL;
  /* FL_PATH_AUTO, unsettled, is taken as mma */
  int ok = path == FL_PATH_HOPPER && fl_cuda_mma_match(G->p, pk, 1, &mg, &why_not_hopper);
  if (!ok && path != FL_PATH_SCALAR) ok = fl_cuda_mma_match(G->p, pk, 0, &mg, &why);
  if (ok) {
    fl_cuda_kernel *k = &out->k[out->nkernels++];
    group_params(G->g, pk, "_mma", k);
    fl_status s = fl_cuda_mma_print(G->p, &mg, G->out_dtype, G->flags, G->sms, G->c.b, k, e);
    if (s != FL_OK) return s;
    k->path = mg.hopper ? FL_PATH_HOPPER : FL_PATH_MMA;
    if (why_not_hopper) snprintf(k->why, sizeof k->why, "not wgmma: %s", why_not_hopper);
    *helpers |= mg.hopper ? HELP_MMA | HELP_WGMMA : HELP_MMA;
    if (!mg.fixup) return FL_OK;
    why = "";
  }
  fl_cuda_kernel *k = &out->k[out->nkernels++];
  snprintf(k->why, sizeof k->why, "%s", why);
  gen_group(G, pk, k);
  return FL_OK;
}

const char *fl_cuda_path_name(fl_cuda_path path) {
  return path == FL_PATH_HOPPER ? "hopper" : path == FL_PATH_MMA ? "mma" : "scalar";
}

fl_status fl_cuda_generate(const fl_plan *p, fl_dtype out_dtype, fl_cuda_path path, unsigned flags, int sms,
                           fl_cuda_program *out, fl_err *e) {
  const fl_graph *g = p->g;
  memset(out, 0, sizeof *out);
  int n = p->n;
  for (int i = 0; i < p->n; i++) n += p->k[i].nfold + p->k[i].is_group;
  out->k = calloc((size_t)n + 1, sizeof *out->k);
  if (!out->k) return fl_fail(e, FL_ENOMEM, "out of memory printing CUDA");
  fl_text b = {0};
  gen G = {.p = p, .g = g, .out_dtype = out_dtype, .flags = flags, .sms = sms};
  G.c = (fl_cx){.g = g, .b = &b, .rolled = 1, .member = load_member, .user = &G};
  fl_status s = FL_OK;
  int helpers = 0; /* the device helpers the tensor-core kernels need */
  for (int i = 0; i < p->n && s == FL_OK; i++) {
    const fl_kernel *pk = &p->k[i];
    int first = out->nkernels;
    if (pk->is_group) s = gen_group_kernels(&G, pk, path, out, &helpers, e);
    else gen_node(&G, pk->first, &out->k[out->nkernels++]);
    for (int f = 0; f < pk->nfold; f++) gen_node(&G, pk->fold[f], &out->k[out->nkernels++]);
    for (int k = first; k < out->nkernels; k++) out->k[k].plan_kernel = i;
  }
  for (int i = 0; i < out->nkernels && !G.c.err; i++)
    if (out->k[i].nparams >= FL_CUDA_MAX_PARAMS) G.c.err = "a kernel reads too many values";
  char *body = fl_text_take(&b);
  fl_text all = {0};
  fl_text_put(&all, "%s%s%s%s%s%s", fl_cuda_prelude, helpers & HELP_MMA ? fl_cuda_mma_prelude() : "",
              helpers & HELP_MMA ? fl_cuda_mma_pair_prelude() : "",
              helpers & HELP_MMA ? fl_cuda_mma_quad_prelude() : "",
              helpers & HELP_WGMMA ? fl_cuda_wgmma_prelude() : "", body ? body : "");
  free(body);
  out->source = fl_text_take(&all);
  if (s != FL_OK || G.c.err || !out->source) {
    fl_cuda_program_free(out);
    if (s != FL_OK) return s;
    return G.c.err ? fl_fail(e, FL_EINVAL, "cannot print CUDA: %s", G.c.err)
                   : fl_fail(e, FL_ENOMEM, "out of memory printing CUDA");
  }
  return FL_OK;
}

void fl_cuda_program_free(fl_cuda_program *p) {
  free(p->source);
  free(p->k);
  memset(p, 0, sizeof *p);
}
