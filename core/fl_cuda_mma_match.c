/* Which fused groups get a tensor-core kernel: the shape of attention,
 * read off the group's members (see core/fl_cuda_mma.h). */
#include "fl_cuda_mma.h"

#include <string.h>

typedef struct matcher {
  const fl_graph *g;
  const fl_kernel *k;
  fl_mma_group *m;
  const char *why;
} matcher;

static int fail(matcher *M, const char *why) {
  if (!M->why) M->why = why;
  return 0;
}

int fl_cuda_mma_var_role(const fl_graph *g, const fl_group *gr, int m, int var) {
  const fl_value *v = &g->vals[m];
  if (var < v->ndim) {
    int s = fl_group_slot(g, gr, m, var);
    return s >= 0 ? s : v->tile_local ? -1 : -2;
  }
  return var < v->ndim + v->nred ? -1 : -3;
}

static int uses_var(const fl_graph *g, int x, int var) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_VAR) return ex->var == var;
  for (int i = 0; i < ex->nargs; i++)
    if (uses_var(g, ex->args[i], var)) return 1;
  return 0;
}

static int is_var(const fl_graph *g, int x, int var) {
  return g->exprs[x].op == FL_X_VAR && g->exprs[x].var == var;
}

static int count_reduce(const fl_graph *g, int x, int *found) {
  const fl_expr *ex = &g->exprs[x];
  int n = ex->op == FL_X_REDUCE;
  if (n) *found = x;
  for (int i = 0; i < ex->nargs; i++) n += count_reduce(g, ex->args[i], found);
  return n;
}

/* What kind member `src` is: 'T'ile, 'X' (row max/min), 'S' (row sum),
 * 'A' (weighted sum), 'E' (row epilogue), 'R' (register epilogue), 0 for
 * not classified yet. */
static char kind_of(const fl_mma_group *m, int src) {
  for (int i = 0; i < m->ntv; i++) if (m->tv[i] == src) return 'T';
  for (int i = 0; i < m->nx; i++) if (m->x[i] == src) return 'X';
  for (int i = 0; i < m->ns; i++) if (m->s[i] == src) return 'S';
  for (int i = 0; i < m->na; i++) if (m->a[i] == src) return 'A';
  for (int i = 0; i < m->ne; i++) if (m->e[i] == src) return m->e_reg[i] ? 'R' : 'E';
  return 0;
}

/* Do the loads of group members in x read only kinds in `allowed`? */
static int reads_only(const matcher *M, int x, const char *allowed) {
  const fl_expr *ex = &M->g->exprs[x];
  if (ex->op == FL_X_LOAD && ex->src >= M->k->first && ex->src < M->k->first + M->k->n) {
    char c = kind_of(M->m, ex->src);
    if (!c || !strchr(allowed, c)) return 0;
  }
  for (int i = 0; i < ex->nargs; i++)
    if (!reads_only(M, ex->args[i], allowed)) return 0;
  return 1;
}

int fl_cuda_mma_same_expr(const fl_graph *g, const fl_group *gr, int ma, int a, int mb, int b) {
  const fl_expr *x = &g->exprs[a], *y = &g->exprs[b];
  if (x->op != y->op || x->nargs != y->nargs) return 0;
  if (x->op == FL_X_CONST) return x->value == y->value;
  if (x->op == FL_X_VAR) return fl_cuda_mma_var_role(g, gr, ma, x->var) == fl_cuda_mma_var_role(g, gr, mb, y->var);
  if (x->op == FL_X_LOAD && x->src != y->src) return 0;
  if (x->op == FL_X_REDUCE) return 0;
  for (int i = 0; i < x->nargs; i++)
    if (!fl_cuda_mma_same_expr(g, gr, ma, x->args[i], mb, y->args[i])) return 0;
  return 1;
}

static int same_expr(const matcher *M, int ma, int a, int mb, int b) {
  return fl_cuda_mma_same_expr(M->g, &M->k->tiles.gr, ma, a, mb, b);
}

static int mma_dtype(fl_dtype d) { return d == FL_BF16 || d == FL_F16; }

/* The operand loaded by `load` in member `member`, rows along `row_var`,
 * the last index variable `last`: its index in m->op, or -1. */
static int operand(matcher *M, int member, int load, fl_mma_role role, int row_var, int last) {
  const fl_graph *g = M->g;
  fl_mma_group *m = M->m;
  const fl_expr *ld = &g->exprs[load];
  const fl_value *src = &g->vals[ld->src];
  if (ld->op != FL_X_LOAD || ld->src >= g->ninputs) return fail(M, "an operand of a product is not an input"), -1;
  if (!mma_dtype(src->dtype)) return fail(M, "the inputs are not bf16 or f16"), -1;
  if (m->dt == FL_DTYPE_COUNT) m->dt = src->dtype;
  if (src->dtype != m->dt) return fail(M, "the inputs of the products differ in dtype"), -1;
  int n = ld->nargs;
  if (!is_var(g, ld->args[n - 1], last)) return fail(M, "a product's operand is not contiguous along its dim"), -1;
  fl_mma_operand op = {.member = member, .load = load, .role = role, .row_var = row_var, .affine = 1};
  op.width = (int)g->syms[src->dims[n - 1]].size;
  if (op.width % 16 || op.width > 256) return fail(M, "a head dim is not a multiple of 16 up to 256"), -1;
  int64_t st[FL_MAX_DIMS];
  fl_cx_strides(g, src, st);
  int seen = 0;
  for (int d = 0; d < n - 1; d++) {
    if (uses_var(g, ld->args[d], last)) return fail(M, "a product's operand reads its dim twice"), -1;
    if (row_var < 0 || !uses_var(g, ld->args[d], row_var)) continue;
    if (is_var(g, ld->args[d], row_var) && !seen++) op.stride = st[d];
    else op.affine = 0;
  }
  if (n >= 2 && is_var(g, ld->args[n - 2], row_var) && op.stride == op.width) {
    op.plane_rows = g->syms[src->dims[n - 2]].size;
    op.planes = fl_value_numel(g, ld->src) / (op.plane_rows * op.width);
  }
  for (int i = 0; i < m->nops; i++) {
    const fl_mma_operand *o = &m->op[i];
    if (o->role == role && g->exprs[o->load].src == ld->src && same_expr(M, o->member, o->load, member, load))
      return i;
  }
  if (m->nops == 3 * FL_MMA_MAX) return fail(M, "too many operands"), -1;
  m->op[m->nops] = op;
  return m->nops++;
}

/* The one loop dim of a member (its variable), or -1. */
static int key_var(const matcher *M, int member) {
  const fl_value *v = &M->g->vals[member];
  int var = -1;
  for (int d = 0; d < v->ndim + v->nred; d++)
    if (fl_cuda_mma_var_role(M->g, &M->k->tiles.gr, member, d) == -1) {
      if (var >= 0) return -1;
      var = d;
    }
  return var;
}

static int row_var_of(const matcher *M, int member) {
  const fl_value *v = &M->g->vals[member];
  for (int d = 0; d < v->ndim; d++)
    if (fl_cuda_mma_var_role(M->g, &M->k->tiles.gr, member, d) == M->m->row_slot) return d;
  return -1;
}

/* The query rows' slot: a grid dim the first score's Q reads and its K
 * does not (with grouped heads, the head in its group is another): the
 * one the plan blocks, else the last. */
static int find_row_slot(matcher *M, int member, int qload, int kload) {
  const fl_graph *g = M->g;
  const fl_value *v = &g->vals[member];
  int slot = -1;
  for (int d = 0; d < v->ndim; d++) {
    int r = fl_cuda_mma_var_role(g, &M->k->tiles.gr, member, d);
    if (r < 0 || !uses_var(g, qload, d) || uses_var(g, kload, d)) continue;
    if (slot < 0 || M->k->tiles.block[r] >= M->k->tiles.block[slot]) slot = r;
  }
  if (slot < 0) return fail(M, "no query dim");
  M->m->row_slot = slot;
  return 1;
}

static int match_score(matcher *M, int t) {
  const fl_graph *g = M->g;
  fl_mma_group *m = M->m;
  int rx = -1;
  if (count_reduce(g, g->vals[t].body, &rx) != 1) return fail(M, "a score is not one product");
  const fl_expr *red = &g->exprs[rx];
  const fl_expr *mul = &g->exprs[red->args[0]];
  if (red->comb != FL_COMB_SUM || red->nbind != 1 || mul->op != FL_X_MUL)
    return fail(M, "a score's reduction is not a product over one dim");
  int kv = key_var(M, t);
  if (kv < 0) return fail(M, "a score is not over one loop dim");
  int a = mul->args[0], b = mul->args[1];
  if (g->exprs[a].op != FL_X_LOAD || g->exprs[b].op != FL_X_LOAD) return fail(M, "a score's product is not of two loads");
  if (uses_var(g, a, kv)) { int x = a; a = b; b = x; }
  if (uses_var(g, a, kv) || !uses_var(g, b, kv)) return fail(M, "a score's operands are not one query and one key");
  if (m->ntv == 0 && !find_row_slot(M, t, a, b)) return 0;
  int rv = row_var_of(M, t);
  if (rv < 0 || uses_var(g, b, rv)) return fail(M, "a score's key operand reads the query dim");
  int q = operand(M, t, a, FL_MMA_Q, rv, red->var);
  int k = q < 0 ? -1 : operand(M, t, b, FL_MMA_K, kv, red->var);
  if (k < 0) return 0;
  if (m->op[q].width != m->op[k].width) return fail(M, "a score's operands differ in width");
  m->tv[m->ntv] = t;
  m->tv_reduce[m->ntv] = rx;
  m->tv_q[m->ntv] = q;
  m->tv_k[m->ntv++] = k;
  return 1;
}

/* The register dims of member v (of more than one position; a kept dim
 * of size 1 is index 0): how many, and the last one's variable. */
static int register_dims(const matcher *M, int v, int *var) {
  const fl_value *val = &M->g->vals[v];
  int n = 0;
  for (int d = 0; d < val->ndim; d++)
    if (fl_cuda_mma_var_role(M->g, &M->k->tiles.gr, v, d) == -2 && M->g->syms[val->dims[d]].size > 1)
      n++, *var = d;
  return n;
}

static int rescale_ok(const matcher *M, const fl_value *v) {
  return v->resc == FL_RESCALE_NONE || reads_only(M, v->resc_arg, "X");
}

static int match_weighted(matcher *M, int v) {
  const fl_graph *g = M->g;
  fl_mma_group *m = M->m;
  int rv = -1;
  register_dims(M, v, &rv);
  const fl_expr *mul = &g->exprs[g->vals[v].body];
  if (mul->op != FL_X_MUL) return fail(M, "a sum over a head dim is not a weight times values");
  int p = mul->args[0], ld = mul->args[1];
  if (g->exprs[ld].op != FL_X_LOAD || !is_var(g, g->exprs[ld].args[g->exprs[ld].nargs - 1], rv)) {
    int x = p; p = ld; ld = x;
  }
  if (uses_var(g, p, rv) || !reads_only(M, p, "TX")) return fail(M, "a weight reads the head dim or running sums");
  int kv = key_var(M, v), row = row_var_of(M, v);
  if (kv < 0 || (row >= 0 && uses_var(g, ld, row))) return fail(M, "the values read the query dim");
  int o = operand(M, v, ld, FL_MMA_V, kv, rv);
  if (o < 0) return 0;
  m->a[m->na] = v;
  m->a_p[m->na] = p;
  m->a_v[m->na++] = o;
  return 1;
}

static int match_loop_member(matcher *M, int v) {
  const fl_value *val = &M->g->vals[v];
  fl_mma_group *m = M->m;
  int rv = -1, nreg = register_dims(M, v, &rv);
  if (m->nx == FL_MMA_MAX || m->ns == FL_MMA_MAX || m->na == FL_MMA_MAX) return fail(M, "too many members");
  if (fl_group_is_extreme(val) && nreg == 0 && val->resc == FL_RESCALE_NONE && reads_only(M, val->body, "T")) {
    m->x[m->nx++] = v;
    return 1;
  }
  if (val->comb != FL_COMB_SUM || !rescale_ok(M, val)) return fail(M, "a loop member is not a max, a sum or a weighted sum");
  if (val->resc != FL_RESCALE_NONE) m->fixup = 1;
  if (nreg == 0) {
    if (!reads_only(M, val->body, "TX")) return fail(M, "a row sum reads other sums");
    m->s[m->ns++] = v;
    return 1;
  }
  if (nreg > 1) return fail(M, "a sum has two register dims");
  return match_weighted(M, v);
}

/* An epilogue over register dim `rv` reads the weighted sums at that dim. */
static int reads_at_register(const matcher *M, int v, int x, int rv) {
  const fl_graph *g = M->g;
  const fl_expr *ex = &g->exprs[x];
  char kind = ex->op == FL_X_LOAD ? kind_of(M->m, ex->src) : 0;
  if (kind == 'A' || kind == 'R') {
    int arv = -1;
    register_dims(M, ex->src, &arv);
    if (!is_var(g, ex->args[arv], rv)) return 0;
    if (g->syms[g->vals[ex->src].dims[arv]].size != g->syms[g->vals[v].dims[rv]].size) return 0;
  }
  for (int i = 0; i < ex->nargs; i++)
    if (!reads_at_register(M, v, ex->args[i], rv)) return 0;
  return 1;
}

/* Row epilogues are kept in registers for later ones; a register
 * epilogue is computed where it is read (at the same register position). */
static int match_epilogue(matcher *M, int v) {
  fl_mma_group *m = M->m;
  int rv = -1, nreg = register_dims(M, v, &rv);
  int body = M->g->vals[v].body;
  if (m->ne == FL_MMA_MAX) return fail(M, "too many epilogue members");
  if (nreg > 1) return fail(M, "an epilogue has two register dims");
  if (nreg == 0 && !reads_only(M, body, "XSE")) return fail(M, "a row epilogue reads a head dim");
  if (nreg == 1 && (!reads_only(M, body, "XSAER") || !reads_at_register(M, v, body, rv)))
    return fail(M, "an epilogue reads the sums elsewhere than at its own head dim");
  m->e_reg[m->ne] = nreg;
  m->e[m->ne++] = v;
  return 1;
}

static int64_t regs_estimate(const fl_mma_group *m, int64_t step, int q_regs) {
  int64_t r = 40 + m->ntv * step / 2;
  for (int i = 0; i < m->na; i++) r += m->op[m->a_v[i]].width / 2;
  for (int i = 0; q_regs && i < m->ntv; i++) r += m->op[m->tv_q[i]].width / 4;
  return r;
}

/* Can the tensor memory accelerator load every tile? Each source is
 * whole planes of its rows (a row past the end then reads as zeros). */
static int tma_loads(const fl_mma_group *m) {
  if (!FL_WGMMA_WS || m->nops > FL_CUDA_MAX_TMAPS) return 0;
  for (int o = 0; o < m->nops; o++) {
    const fl_mma_operand *op = &m->op[o];
    int64_t limit = op->role == FL_MMA_Q ? m->rows : m->keys;
    if (!op->affine || op->plane_rows != limit || op->planes > 0x7fffffff) return 0;
  }
  return 1;
}

static int in_kernel(const fl_mma_group *m, int v) { return v >= m->k->first && v < m->k->first + m->k->n; }

/* Is value `src` what one of the group's tiles is loaded from? */
static int tile_source(const fl_graph *g, const fl_mma_group *m, int src) {
  for (int o = 0; o < m->nops; o++)
    if (g->exprs[m->op[o].load].src == src) return 1;
  return 0;
}

/* Does member's expression x read src other than at the block's grid
 * position only (such loads are read once, before the steps)? */
static int reads_per_row_or_key(const matcher *M, int member, int x, int src) {
  const fl_expr *ex = &M->g->exprs[x];
  if (ex->op == FL_X_LOAD && ex->src == src && !fl_cuda_mma_grid_only(M->g, M->m, member, x)) return 1;
  for (int i = 0; i < ex->nargs; i++)
    if (reads_per_row_or_key(M, member, ex->args[i], src)) return 1;
  return 0;
}

/* Values the steps read besides their tiles (a bias, document ids, an
 * earlier kernel's output): each holds addresses and values the estimate
 * does not count. Read only once the steps are done (a gate), from shared
 * memory (tile inputs), or once at the block's grid position (ALiBi's
 * slope: put_invariant_loads), they hold none. */
int fl_cuda_mma_other_input(const fl_graph *g, const fl_mma_group *m, int src) {
  return !in_kernel(m, src) && !tile_source(g, m, src) && fl_cuda_mma_tile_input(m, src) < 0;
}

static int other_inputs(const matcher *M) {
  int n = 0;
  for (int i = 0; i < M->g->nvals; i++) {
    if (!fl_cuda_mma_other_input(M->g, M->m, i)) continue;
    int read = 0;
    for (int v = M->k->first; !read && v < M->k->first + M->k->n; v++)
      read = !M->g->vals[v].epilogue && reads_per_row_or_key(M, v, M->g->vals[v].body, i);
    n += read;
  }
  return n;
}

/* Does x use a variable of member's that walks the keys? */
static int uses_key(const matcher *M, int member, int x) {
  const fl_expr *ex = &M->g->exprs[x];
  if (ex->op == FL_X_VAR) return fl_cuda_mma_var_role(M->g, &M->k->tiles.gr, member, ex->var) == -1;
  for (int i = 0; i < ex->nargs; i++)
    if (uses_key(M, member, ex->args[i])) return 1;
  return 0;
}

/* Does x load a value other than the group's members and tiles at a
 * position that moves with the keys (a pair bias, a per-key gate)? */
static int loads_by_key(const matcher *M, int member, int x) {
  const fl_expr *ex = &M->g->exprs[x];
  if (ex->op == FL_X_LOAD && fl_cuda_mma_other_input(M->g, M->m, ex->src))
    for (int i = 0; i < ex->nargs; i++)
      if (uses_key(M, member, ex->args[i])) return 1;
  for (int i = 0; i < ex->nargs; i++)
    if (loads_by_key(M, member, ex->args[i])) return 1;
  return 0;
}

static int any_loads_by_key(const matcher *M) {
  for (int v = M->k->first; v < M->k->first + M->k->n; v++)
    if (!M->g->vals[v].epilogue && loads_by_key(M, v, M->g->vals[v].body)) return 1;
  return 0;
}

/* Does x use only the block's grid variables of member's (no row, key,
 * register or local one)? */
int fl_cuda_mma_grid_only(const fl_graph *g, const fl_mma_group *m, int member, int x) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_VAR) {
    int role = fl_cuda_mma_var_role(g, &m->k->tiles.gr, member, ex->var);
    return role >= 0 && role != m->row_slot;
  }
  for (int i = 0; i < ex->nargs; i++)
    if (!fl_cuda_mma_grid_only(g, m, member, ex->args[i])) return 0;
  return 1;
}

/* Is load ld (in member's body) of an input at (the block's grid
 * position, the query row, the key), whole planes of rows x keys, each
 * row on 16 bytes (as TMA copies them)? */
static int tile_form(const matcher *M, int member, const fl_expr *ld) {
  const fl_graph *g = M->g;
  const fl_mma_group *m = M->m;
  const fl_value *src = &g->vals[ld->src];
  int n = ld->nargs, row = row_var_of(M, member), key = key_var(M, member);
  if (ld->src >= g->ninputs || src->dtype != m->dt || n < 2 || row < 0 || key < 0 || m->keys % 8) return 0;
  if (!is_var(g, ld->args[n - 1], key) || !is_var(g, ld->args[n - 2], row)) return 0;
  if (g->syms[src->dims[n - 1]].size != m->keys || g->syms[src->dims[n - 2]].size != m->rows) return 0;
  for (int d = 0; d < n - 2; d++)
    if (!fl_cuda_mma_grid_only(M->g, M->m, member, ld->args[d])) return 0;
  return fl_value_numel(g, ld->src) / (m->rows * m->keys) <= 0x7fffffff;
}

int fl_cuda_mma_tile_input(const fl_mma_group *m, int src) {
  for (int i = 0; i < m->nb; i++)
    if (m->b[i].src == src) return i;
  return -1;
}

/* Adds the inputs member's expression x reads by key in tile form. */
static void find_tile_loads(matcher *M, int member, int x) {
  const fl_expr *ex = &M->g->exprs[x];
  fl_mma_group *m = M->m;
  if (ex->op == FL_X_LOAD && !tile_source(M->g, M->m, ex->src) && tile_form(M, member, ex) &&
      fl_cuda_mma_tile_input(m, ex->src) < 0 && m->nb < FL_MMA_MAX && m->nops + m->nb < FL_CUDA_MAX_TMAPS) {
    const int64_t planes = fl_value_numel(M->g, ex->src) / (m->rows * m->keys);
    m->b[m->nb++] = (fl_mma_tile_input){.src = ex->src, .member = member, .load = x, .planes = planes};
  }
  for (int i = 0; i < ex->nargs; i++) find_tile_loads(M, member, ex->args[i]);
}

/* Does member's expression x read src only in tile form? */
static int only_tile_loads(const matcher *M, int member, int x, int src) {
  const fl_expr *ex = &M->g->exprs[x];
  if (ex->op == FL_X_LOAD && ex->src == src && !tile_form(M, member, ex)) return 0;
  for (int i = 0; i < ex->nargs; i++)
    if (!only_tile_loads(M, member, ex->args[i], src)) return 0;
  return 1;
}

/* The inputs the scores read at each (row, key), loaded a step into tiles
 * of their own (FL_WS_TILE_INPUTS); an input also read another way
 * stays in global memory. */
static void find_tile_inputs(matcher *M) {
  fl_mma_group *m = M->m;
  const fl_kernel *k = M->k;
  m->nb = 0;
  if (!FL_WS_TILE_INPUTS || m->step % 64) return;
  for (int v = k->first; v < k->first + k->n; v++)
    if (!M->g->vals[v].epilogue) find_tile_loads(M, v, M->g->vals[v].body);
  int kept = 0;
  for (int i = 0; i < m->nb; i++) {
    int ok = 1;
    for (int v = k->first; ok && v < k->first + k->n; v++)
      ok = only_tile_loads(M, v, M->g->vals[v].body, m->b[i].src);
    if (ok) m->b[kept++] = m->b[i];
  }
  m->nb = kept;
}

/* The warp-specialized kernel given up: the one-warpgroup kernel's fields. */
static int no_ws(fl_mma_group *m) {
  m->ws = 0, m->cluster = 1, m->wgs = FL_WGMMA_GROUPS, m->stages = 0, m->pipe = 0, m->split = 0, m->nb = 0;
  return 0;
}

/* Too few keys a row for a block a multiprocessor to make up its fixed
 * work (barriers, Q's load, the pipeline's fill): masks over data
 * (document ids; unknown ahead), or fewer kept keys a row on average
 * than min_keys (short sequences, sliding windows). Measured on the H100
 * (bf16, TFLOP/s, warp-specialized against one warpgroup a block): D=128
 * B4 H16 N4096 sliding window 121 against 138, document 88 against 107;
 * D=64 B8 H16 N1024 full 227 against 246, causal 132 against 146.
 * Nor do they pay on a warp-specialized kernel of one computing
 * warpgroup (232 registers), two blocks a multiprocessor (B4 H16 N4096 /
 * B1 N16384, TFLOP/s, against the one-warpgroup kernel): sliding window
 * D=64 95 / 100 against 127 / 131, D=128 159 / 164 against 166 / 170;
 * document D=64 108 / 177 against 114 / 166, D=128 168 / 268 against
 * 175 / 270. The same kernel for every group lost 10-25% (full D=128
 * 461 / 491 against 583 / 650). Again with the quad stores, the
 * warp-specialized kernel for every group against this choice (B4 N4096 /
 * B1 N16384): document D=64 140 / 196 against 140 / 193, D=128 189 / 280
 * against 211 / 302; sliding window D=64 107 / 109 against 160 / 157,
 * D=128 163 / 162 against 216 / 220. */
static int few_keys(const fl_kernel *k, double min_keys) {
  const fl_tiles *t = &k->tiles;
  if (t->data) return 1;
  const fl_tile_counts *c = &k->counts;
  double kept = t->nmask && c->total > 0 ? (double)(c->total - c->skipped) / (double)c->total : 1.0;
  return kept * (double)(fl_tiles_loop_tiles(t) * fl_tiles_loop_width(t)) < min_keys;
}

double fl_cuda_mma_product_factor(const fl_graph *g, const fl_expr *ex, int r) {
  if (ex->nargs != 2 || (ex->op != FL_X_MUL && ex->op != FL_X_DIV)) return 0.0;
  const fl_expr *a = &g->exprs[ex->args[0]], *b = &g->exprs[ex->args[1]];
  if (ex->args[0] == r && b->op == FL_X_CONST) return ex->op == FL_X_MUL ? b->value : 1.0 / b->value;
  if (ex->op == FL_X_MUL && ex->args[1] == r && a->op == FL_X_CONST) return a->value;
  return 0.0;
}

/* Is each score, under its masks, its product alone or times a constant?
 * (A mask: a where with a constant on one side.) */
static int bare_scores(const matcher *M) {
  const fl_graph *g = M->g;
  for (int i = 0; i < M->m->ntv; i++) {
    int x = g->vals[M->m->tv[i]].body, r = M->m->tv_reduce[i];
    while (g->exprs[x].op == FL_X_WHERE) {
      const int *a = g->exprs[x].args;
      if (g->exprs[a[2]].op == FL_X_CONST) x = a[1];
      else if (g->exprs[a[1]].op == FL_X_CONST) x = a[2];
      else return 0;
    }
    if (x != r && fl_cuda_mma_product_factor(g, &g->exprs[x], r) == 0.0) return 0;
  }
  return 1;
}

/* ---- chains (FL_WS_CHAINS) ---- */

/* The scores (a bit each) that expression x reads, through extremes. */
static unsigned scores_read(const matcher *M, int x) {
  const fl_expr *ex = &M->g->exprs[x];
  unsigned r = 0;
  if (ex->op == FL_X_LOAD) {
    const fl_mma_group *m = M->m;
    for (int i = 0; i < m->ntv; i++)
      if (m->tv[i] == ex->src) return 1u << i;
    for (int i = 0; i < m->nx; i++)
      if (m->x[i] == ex->src) return scores_read(M, M->g->vals[ex->src].body);
  }
  for (int i = 0; i < ex->nargs; i++) r |= scores_read(M, ex->args[i]);
  return r;
}

static unsigned member_scores(const matcher *M, int v, int body) {
  const fl_value *x = &M->g->vals[v];
  return scores_read(M, body) | (x->resc != FL_RESCALE_NONE ? scores_read(M, x->resc_arg) : 0u);
}

/* Of a kind's n members, how many read score 0 only, all of them first,
 * the rest score 1 only; else -1. */
static int chain_prefix(const matcher *M, const int *v, const int *body, int n) {
  int first = 0;
  for (int i = 0; i < n; i++) {
    unsigned r = member_scores(M, v[i], body ? body[i] : M->g->vals[v[i]].body);
    if (r != 1u && r != 2u) return -1;
    if (r == 1u && first < i) return -1;
    first += r == 1u;
  }
  return first;
}

void fl_cuda_mma_chain(const fl_mma_group *m, int c, fl_mma_group *sub) {
  *sub = *m;
  if (m->chains < 2) return;
  const int *n0 = m->nc0;
  int t = c ? n0[0] : 0, x = c ? n0[1] : 0, s = c ? n0[2] : 0, a = c ? n0[3] : 0;
  sub->ntv = c ? m->ntv - t : n0[0], sub->nx = c ? m->nx - x : n0[1];
  sub->ns = c ? m->ns - s : n0[2], sub->na = c ? m->na - a : n0[3];
  for (int i = 0; i < sub->ntv; i++) {
    sub->tv[i] = m->tv[t + i], sub->tv_reduce[i] = m->tv_reduce[t + i];
    sub->tv_q[i] = m->tv_q[t + i], sub->tv_k[i] = m->tv_k[t + i];
  }
  for (int i = 0; i < sub->nx; i++) sub->x[i] = m->x[x + i], sub->x_lag[i] = m->x_lag[x + i];
  for (int i = 0; i < sub->ns; i++) {
    sub->s[i] = m->s[s + i];
    sub->s_ones[i] = m->s_ones[s + i] < 0 ? -1 : m->s_ones[s + i] - a;
    sub->s_ones_by[i] = m->s_ones_by[s + i];
  }
  for (int i = 0; i < sub->na; i++) sub->a[i] = m->a[a + i], sub->a_p[i] = m->a_p[a + i], sub->a_v[i] = m->a_v[a + i];
  sub->ne = 0;
}

/* The register estimate of a warpgroup's step: the larger chain's, or
 * the whole group's. */
static int64_t warpgroup_estimate(const fl_mma_group *m, int64_t step) {
  if (m->chains < 2) return regs_estimate(m, step, 0);
  fl_mma_group c0, c1;
  fl_cuda_mma_chain(m, 0, &c0);
  fl_cuda_mma_chain(m, 1, &c1);
  int64_t e0 = regs_estimate(&c0, step, 0), e1 = regs_estimate(&c1, step, 0);
  return e0 > e1 ? e0 : e1;
}

/* Warp-specialized, where TMA can load every tile: 128 keys a step; three
 * computing warpgroups (160 registers a thread) where the estimate
 * leaves room, else two (240); the pipelined step where the previous
 * step's packed weights fit beside it too (with two: other inputs too
 * many, ptxas spilled ALiBi's; see FL_WS_PIPE_MASK_REGS for masks; with
 * three, see FL_WS_PIPE3_EST).
 * Measured on the H100 (bf16, TFLOP/s, B4 N4096 / B1 N16384, full and
 * causal):
 *   D=128: 64 keys, three warpgroups, pipelined 487 / 546, 356 / 442;
 *          128 keys, two, plain 478 / 517, 372 / 471;
 *          128 keys, two, pipelined 508 / 556, 375 / 474 (masked ones spill);
 *   D=64:  the one-warpgroup kernel 339 / 377, 263 / 315;
 *          64 keys, three, pipelined 303 / 342, 235 / 280;
 *          128 keys, three, plain 359 / 409, 282 / 369;
 *          128 keys, two, pipelined 335 / 379, 241 / 299. */
static int choose_ws(matcher *M) {
  fl_mma_group *m = M->m;
  int widest = 0;
  for (int o = 0; o < m->nops; o++) widest = m->op[o].width > widest ? m->op[o].width : widest;
  if (widest < FL_WS_MIN_WIDTH || m->step > FL_WS_STEP || !tma_loads(m)) return 0;
  if (FL_WS_FEW_KEYS && few_keys(M->k, widest < 128 ? 2048.0 : 512.0)) return 0;
  find_tile_inputs(M);
  int other = other_inputs(M);
  int64_t own = warpgroup_estimate(m, m->step), est = own + 16 * other;
  int64_t piped = est + m->na / m->chains * m->step / 4; /* and the previous step's packed weights */
  int wgs = est <= FL_WS_WGS3_EST ? 3 : 2;
  int wide = own > FL_WGMMA_EST_MAX || m->chains > 1; /* past the one-warpgroup kernel's reach */
  if (widest < 128 && ((wgs < 3 && !FL_WS_NARROW2 && !wide) || m->step < 128)) return no_ws(m); /* narrow heads: measured only so */
  m->ws = 1;
  m->wgs = wgs;
  m->blocks = 1;
  m->stages = FL_WS_STAGES;
  int masks = M->k->tiles.nmask > 0;
  int whole3 = FL_WS_PIPE3_ANY || (!other && (!masks || (FL_WS_PIPE3_MASKED && bare_scores(M))));
  if (wgs == 3) m->pipe = whole3 && piped <= FL_WS_PIPE3_EST;
  else m->pipe = (FL_WS_PIPE_OTHER || !other) && piped + (masks ? FL_WS_PIPE_MASK_REGS : 0) <= FL_WS_PIPE2_EST;
  m->pipe &= FL_WS_PIPE && (FL_WS_PIPE_TILES || !m->nb);
  m->split = !m->pipe && FL_WS_PIPE && FL_WS_PIPE_SPLIT && wgs == 3 && !m->nb;
  m->pipe |= m->split;
  while (m->stages > 2 && fl_cuda_mma_smem(m) > FL_SMEM_MAX) m->stages--; /* FL_WS_STAGES > 2 where it fits */
  int64_t units = (m->rows + 64 * wgs - 1) / (64 * wgs);
  if (FL_WS_CLUSTER_ALL && m->chains < 2 && wgs == 2 && m->pipe && widest >= 128 && units % 2 == 0) m->cluster = 2;
  if (fl_cuda_mma_smem(m) > FL_SMEM_MAX) m->nb = 0;
  if (m->step > 64 && any_loads_by_key(M)) return no_ws(m); /* their addresses and values a key spill at 128 */
  return 1;
}

/* Two chains, each in blocks of its own (FL_WS_CHAINS),
 * where the whole group's 128-key step would not pipeline on one. */
static int choose_chains(matcher *M) {
  fl_mma_group *m = M->m;
  int64_t pt = fl_tiles_loop_width(&M->k->tiles);
  if (!FL_WS_CHAINS || m->ntv != 2 || FL_WS_STEP < 128 || (pt < m->keys && pt % 128 && 128 % pt)) return 0;
  if (regs_estimate(m, 128, 0) + m->na * 128 / 4 <= FL_WS_PIPE2_EST) return 0;
  int nc[4] = {1, chain_prefix(M, m->x, NULL, m->nx),
               chain_prefix(M, m->s, NULL, m->ns), chain_prefix(M, m->a, m->a_p, m->na)};
  for (int i = 0; i < 4; i++)
    if (nc[i] < 0) return 0;
  memcpy(m->nc0, nc, sizeof nc);
  m->chains = 2;
  m->step = 128;
  if (choose_ws(M) && m->pipe && fl_cuda_mma_smem(m) <= FL_SMEM_MAX) return 1;
  no_ws(m);
  m->chains = 1, m->step = 0;
  return 0;
}

/* Blocks a multiprocessor for a one-warpgroup wgmma kernel of register
 * estimate est, reading `other` inputs besides its tiles
 * (FL_WGMMA_MIN_BLOCKS). */
static int one_warpgroup_blocks(int64_t est, int other) {
  if (FL_WGMMA_MIN_BLOCKS) return FL_WGMMA_MIN_BLOCKS;
  est += 16 * other;
  return est <= 120 && !other ? 4 : est <= 152 ? 3 : 2;
}

/* wgmma: every tile in 64-wide panels, keys a step 128 or 64 (or 32, see
 * FL_WGMMA_MIN_STEP; N of the first product), the accumulators few enough
 * for one warpgroup. A step
 * may span several of the plan's key tiles in the warp-specialized kernel
 * only (up to FL_WS_STEP keys); the others keep a step within a tile. */
static int choose_hopper_sizes(matcher *M) {
  fl_mma_group *m = M->m;
  int64_t pt = fl_tiles_loop_width(&M->k->tiles);
  for (int o = 0; o < m->nops; o++)
    if (m->op[o].width % 64 || m->op[o].width > 256) return fail(M, "a head dim is not a multiple of 64");
  static const int64_t steps[] = {128, 64, 32};
  if (choose_chains(M)) return 1;
  for (unsigned i = 0; i < sizeof steps / sizeof *steps; i++) {
    if (steps[i] < FL_WGMMA_MIN_STEP) continue;
    int within = pt >= m->keys || pt % steps[i] == 0;
    if (!within && steps[i] % pt) continue;
    int64_t est = regs_estimate(m, steps[i], 0);
    if (est > FL_WS_EST_MAX) continue;
    m->step = steps[i];
    if (choose_ws(M)) return 1;
    if (!within || est > FL_WGMMA_EST_MAX) continue;
    m->pipe = FL_WGMMA_PIPE;
    m->q_regs = FL_WGMMA_PIPE; /* measured with the pipeline: 319 TFLOP/s against 307 */
    m->blocks = m->wgs > 1 ? 1 : one_warpgroup_blocks(regs_estimate(m, m->step, m->q_regs), other_inputs(M));
    return 1;
  }
  return fail(M, "too many accumulators for one warpgroup");
}

/* Keys a step and whether Q stays in registers: an estimate of the live
 * registers, kept low enough that ptxas (which needs ~80 more) does not spill. */
static int choose_sizes(matcher *M) {
  fl_mma_group *m = M->m;
  if (m->hopper) return choose_hopper_sizes(M);
  int64_t limit = 150 - 16 * other_inputs(M);
  int64_t pt = fl_tiles_loop_width(&M->k->tiles);
  static const struct { int64_t step; int q; } opts[] = {{64, 1}, {64, 0}, {32, 0}, {16, 0}};
  for (unsigned i = 0; i < sizeof opts / sizeof *opts; i++) {
    if (pt < m->keys && pt % opts[i].step) continue;
    m->step = opts[i].step;
    m->q_regs = opts[i].q;
    if (regs_estimate(m, m->step, m->q_regs) <= limit) break;
  }
  if (!m->step) return fail(M, "the loop's tiles are not a multiple of 16 keys");
  return 1;
}

/* Row sum s (a member) is weighted sum a's weight p summed, rescaled
 * alike, over c (p its summand times a constant c): c, else 0. */
static double sums_weight(const matcher *M, int s, int a, int p) {
  const fl_graph *g = M->g;
  const fl_value *x = &g->vals[s], *y = &g->vals[a];
  if (x->resc != y->resc || x->resc_pow != y->resc_pow) return 0.0;
  if (x->resc != FL_RESCALE_NONE && !same_expr(M, s, x->resc_arg, a, y->resc_arg)) return 0.0;
  if (same_expr(M, s, x->body, a, p)) return 1.0;
  const fl_expr *ex = &g->exprs[p];
  for (int i = 0; i < ex->nargs && i < 2; i++)
    if (same_expr(M, s, x->body, a, ex->args[i])) return fl_cuda_mma_product_factor(g, ex, ex->args[i]);
  return 0.0;
}

int fl_cuda_mma_needed(const fl_graph *g, const fl_mma_group *m, int v) {
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o] == v) return 1;
  for (int u = g->ninputs; u < g->nvals; u++) {
    if (in_kernel(m, u)) continue;
    const fl_value *x = &g->vals[u];
    if (fl_expr_reads(g, x->body, v) || (x->resc != FL_RESCALE_NONE && fl_expr_reads(g, x->resc_arg, v))) return 1;
  }
  return 0;
}

/* How far running max x may lag (FL_STALE_MAX): only the kernel's sums
 * read it, each an exp or exp2 rescale whose argument is x itself (so
 * that it grows with x, and the sums' summands are exponentials less
 * it), none of its epilogues, no other kernel. In the argument's units:
 * FL_STALE_MAX powers of two. */
static double max_lag(const matcher *M, int x) {
  const fl_graph *g = M->g;
  const fl_mma_group *m = M->m;
  if (!FL_STALE_MAX || g->vals[x].comb != FL_COMB_MAX || fl_cuda_mma_needed(g, m, x)) return 0.0;
  for (int i = 0; i < m->ne; i++)
    if (fl_expr_reads(g, g->vals[m->e[i]].body, x)) return 0.0;
  double lag = 0.0;
  for (int v = m->k->first; v < m->k->first + m->k->n; v++) {
    const fl_value *u = &g->vals[v];
    if (kind_of(m, v) != 'S' && kind_of(m, v) != 'A') continue;
    int rescaled = u->resc != FL_RESCALE_NONE && fl_expr_reads(g, u->resc_arg, x);
    if (!rescaled && !fl_expr_reads(g, u->body, x)) continue;
    const fl_expr *arg = rescaled ? &g->exprs[u->resc_arg] : NULL;
    if (!arg || arg->op != FL_X_LOAD || arg->src != x || u->resc == FL_RESCALE_POW) return 0.0;
    double own = u->resc == FL_RESCALE_EXP ? FL_STALE_MAX * 0.69314718055994531 : FL_STALE_MAX;
    lag = lag == 0.0 || own < lag ? own : lag;
  }
  return lag;
}

/* Row sums from a column of ones beside 64-wide values (FL_WS_ONES),
 * where the tile of ones fits. */
static void choose_ones(matcher *M) {
  fl_mma_group *m = M->m;
  for (int i = 0; FL_WS_ONES && m->ws && i < m->ns; i++)
    for (int j = 0; j < m->na && m->s_ones[i] < 0; j++) {
      double c = m->op[m->a_v[j]].width == 64 ? sums_weight(M, m->s[i], m->a[j], m->a_p[j]) : 0.0;
      if (c != 0.0) m->s_ones[i] = j, m->s_ones_by[i] = c;
    }
  if (fl_cuda_mma_smem(m) > FL_SMEM_MAX)
    for (int i = 0; i < m->ns; i++) m->s_ones[i] = -1;
}

int64_t fl_cuda_mma_steps(const fl_mma_group *m) { return (m->keys + m->step - 1) / m->step; }

/* Parts of the last blocks' keys (FL_WS_PARTS): warp-specialized, one
 * chain, no cluster, no masks (its blocks are equal), a part a step at least. */
static void choose_parts(fl_mma_group *m) {
  int64_t steps = fl_cuda_mma_steps(m);
  int most = FL_WS_PARTS < steps ? FL_WS_PARTS : (int)steps;
  if (m->ws && m->chains == 1 && m->cluster == 1 && !m->k->tiles.nmask && !m->k->tiles.data && most >= 2)
    m->parts = most;
}

static int check_grid(matcher *M) {
  const fl_tiles *t = &M->k->tiles;
  fl_mma_group *m = M->m;
  m->rows = M->g->syms[t->gr.grid[m->row_slot]].size;
  for (int s = 0; s < t->gr.ngrid; s++) {
    if (s == m->row_slot) {
      if (t->block[s] != FL_MMA_ROWS && t->block[s] < m->rows) return fail(M, "query rows not in blocks of 64");
    } else if (t->block[s] != 1) {
      return fail(M, "a grid dim other than the query's is blocked");
    }
  }
  return 1;
}

int fl_cuda_mma_match(const fl_plan *p, const fl_kernel *k, int hopper, fl_mma_group *m, const char **why) {
  memset(m, 0, sizeof *m);
  m->k = k;
  m->hopper = hopper;
  m->wgs = hopper ? FL_WGMMA_GROUPS : 1;
  m->chains = 1;
  m->cluster = 1;
  m->blocks = 2;
  m->dt = FL_DTYPE_COUNT;
  m->row_slot = -1;
  for (int i = 0; i < FL_MMA_MAX; i++) m->s_ones[i] = -1;
  matcher M = {.g = p->g, .k = k, .m = m};
  const fl_graph *g = p->g;
  int ok = k->is_group && k->tiles.gr.nloop == 1 && k->tiles.gr.loop >= 0;
  if (!ok) fail(&M, "not a group with one loop dim");
  for (int v = k->first; ok && v < k->first + k->n; v++)
    if (g->vals[v].tile_local) ok = m->ntv < FL_MMA_MAX ? match_score(&M, v) : fail(&M, "too many scores");
  if (ok && m->ntv == 0) ok = fail(&M, "no scores (products over a head dim)");
  for (int v = k->first; ok && v < k->first + k->n; v++) {
    const fl_value *val = &g->vals[v];
    if (val->tile_local) continue;
    ok = val->epilogue ? match_epilogue(&M, v) : match_loop_member(&M, v);
  }
  if (ok) {
    m->keys = g->syms[k->tiles.gr.loop_sym[0]].size;
    ok = check_grid(&M) && choose_sizes(&M);
  }
  if (ok) choose_ones(&M);
  for (int i = 0; ok && i < m->nx; i++) m->x_lag[i] = max_lag(&M, m->x[i]);
  if (ok) choose_parts(m);
  *why = ok ? NULL : M.why;
  return ok;
}
