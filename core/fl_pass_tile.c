/* tile (tiling-aware dimension elimination): for each online group, and
 * each lone reduction with a contraction inside its loop,
 *
 *   - the scores: every maximal subexpression of a loop member's body that
 *     holds a contraction (a nested reduction), depends on the loop
 *     position and on the group's common dims only, and reads no running
 *     value, becomes a tile member: computed once for a tile of loop
 *     positions and read by every member that had a copy of it. So QKᵀ is
 *     computed once per (query, key) pair, not once per output column, and
 *     exists only as a tile: the (i, j) intermediate is never stored;
 *   - the grid: the common dims the tile members use (batch, head, query),
 *     the query dim (the largest) in blocks of BLOCK_ROWS positions; the
 *     members' other dims (the head dim of the output) are register dims;
 *   - the loop: the reduction dims, walked in tiles of BLOCK_COLS (fewer
 *     when the register dims are wide).
 *
 * A lone reduction tiled this way (sigmoid attention) becomes a group of
 * one. The numbers do not change: a tile member is the same expression,
 * evaluated where it was, once. */
#include "fl_group.h"
#include "fl_pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_ROWS 64
#define BLOCK_COLS 64
#define WIDE_REGISTERS 128 /* register dims wider than this halve the key tile */
#define MAX_SCORES 8

/* How one member's variables relate to the group. */
typedef struct member_vars {
  int v;
  int grid_sym[FL_MAX_VARS]; /* per variable: its grid symbol, or -1 */
  int loop[FL_MAX_VARS];     /* per variable: its place among the loop dims, or -1 */
} member_vars;

typedef struct score {
  char key[2048]; /* the expression in group terms: equal keys, one tile member */
  int value;     /* the tile member, once made */
} score;

typedef struct tiler {
  fl_graph *g;
  fl_group gr;
  int common[FL_MAX_DIMS], ncommon;
  int nscore;
  score sc[MAX_SCORES];
  int uses[FL_MAX_DIMS]; /* per common symbol: some score uses it */
  fl_err *e;
} tiler;

/* ---- finding the scores ---- */

static void member_vars_of(const tiler *t, int v, member_vars *mv) {
  const fl_value *val = &t->g->vals[v];
  mv->v = v;
  for (int k = 0; k < FL_MAX_VARS; k++) mv->grid_sym[k] = mv->loop[k] = -1;
  for (int d = 0; d < val->ndim; d++) {
    int first = 1;
    for (int e = 0; e < d; e++) first &= val->dims[e] != val->dims[d];
    for (int s = 0; first && s < t->ncommon; s++)
      if (val->dims[d] == t->common[s]) mv->grid_sym[d] = val->dims[d];
  }
  for (int r = 0; r < val->nred; r++) mv->loop[val->ndim + r] = r;
}

/* What keying an expression found out. */
typedef struct keystate {
  fl_text key;
  int loop_dep, contraction, in_reduce;
  char used[FL_MAX_DIMS], reduce_used[FL_MAX_DIMS]; /* per common symbol */
} keystate;

static void note_grid(const tiler *t, keystate *ks, int sym) {
  for (int s = 0; s < t->ncommon; s++)
    if (t->common[s] == sym) {
      ks->used[s] = 1;
      if (ks->in_reduce) ks->reduce_used[s] = 1;
    }
}

/* Keys x in group terms (bound locals allowed); 0 if x uses a register
 * dim, a local bound outside it, or reads a member of the group. `bound`
 * marks the locals bound inside x so far. */
static int keyed(const tiler *t, const member_vars *mv, int x, char *bound, keystate *ks) {
  const fl_graph *g = t->g;
  const fl_expr *ex = &g->exprs[x];
  switch (ex->op) {
  case FL_X_VAR:
    if (mv->grid_sym[ex->var] >= 0) fl_text_put(&ks->key, "g%d", mv->grid_sym[ex->var]), note_grid(t, ks, mv->grid_sym[ex->var]);
    else if (mv->loop[ex->var] >= 0) fl_text_put(&ks->key, "r%d", mv->loop[ex->var]), ks->loop_dep = 1;
    else if (bound[ex->var]) fl_text_put(&ks->key, "l%d", bound[ex->var]);
    else return 0;
    return 1;
  case FL_X_CONST: fl_text_put(&ks->key, "%.17g", ex->value); return 1;
  case FL_X_LOAD:
    if (g->vals[mv->v].group && g->vals[ex->src].group == g->vals[mv->v].group) return 0;
    fl_text_put(&ks->key, "v%d", ex->src);
    break;
  case FL_X_REDUCE: {
    ks->contraction = 1;
    int depth = 1;
    for (int k = 0; k < FL_MAX_VARS; k++) depth += bound[k] > 0;
    for (int k = 0; k < ex->nbind; k++) bound[ex->var + k] = (char)(depth + k);
    fl_text_put(&ks->key, "R%d.%d", (int)ex->comb, ex->nbind);
    break;
  }
  default: fl_text_put(&ks->key, "o%d", (int)ex->op); break;
  }
  ks->in_reduce += ex->op == FL_X_REDUCE;
  fl_text_put(&ks->key, "(");
  int ok = 1;
  for (int i = 0; i < ex->nargs && ok; i++) {
    ok = keyed(t, mv, ex->args[i], bound, ks);
    fl_text_put(&ks->key, ",");
  }
  fl_text_put(&ks->key, ")");
  ks->in_reduce -= ex->op == FL_X_REDUCE;
  return ok;
}

/* A score: loop-dependent, with a contraction, over no grid dim its
 * contractions do not have (so sigmoid(s)·v is not a score of sigmoid
 * attention, its sigmoid(s) is). */
static int is_score(const tiler *t, const keystate *ks) {
  if (!ks->loop_dep || !ks->contraction) return 0;
  for (int s = 0; s < t->ncommon; s++)
    if (ks->used[s] && !ks->reduce_used[s]) return 0;
  return 1;
}

/* The score x is, or -1 if x is not one; with `add`, a new score is
 * registered (unless there are too many). */
static int score_of(tiler *t, const member_vars *mv, int x, int add) {
  char bound[FL_MAX_VARS] = {0};
  keystate ks;
  memset(&ks, 0, sizeof ks);
  int ok = keyed(t, mv, x, bound, &ks) && is_score(t, &ks);
  char *k = fl_text_take(&ks.key);
  int found = -1;
  if (ok && k && strlen(k) < sizeof t->sc[0].key) {
    for (int s = 0; s < t->nscore && found < 0; s++)
      if (strcmp(t->sc[s].key, k) == 0) found = s;
    if (found < 0 && add && t->nscore < MAX_SCORES) {
      found = t->nscore++;
      snprintf(t->sc[found].key, sizeof t->sc[found].key, "%s", k);
      t->sc[found].value = -1;
    }
  }
  free(k);
  return found;
}

/* The grid symbols x uses. */
static void mark_uses(tiler *t, const member_vars *mv, int x) {
  const fl_expr *ex = &t->g->exprs[x];
  if (ex->op == FL_X_VAR && mv->grid_sym[ex->var] >= 0)
    for (int s = 0; s < t->ncommon; s++) t->uses[s] |= t->common[s] == mv->grid_sym[ex->var];
  for (int i = 0; i < ex->nargs; i++) mark_uses(t, mv, ex->args[i]);
}

/* Finds the scores in x (outermost first); with `rewrite`, returns x with
 * each replaced by a load of its tile member, else x. */
static int scan(tiler *t, const member_vars *mv, int x, int rewrite) {
  int s = score_of(t, mv, x, !rewrite);
  if (s >= 0) {
    mark_uses(t, mv, x);
    if (!rewrite) return x;
    const fl_value *tv = &t->g->vals[t->sc[s].value];
    const fl_value *m = &t->g->vals[mv->v];
    fl_expr ld = {.op = FL_X_LOAD, .src = t->sc[s].value, .nargs = tv->ndim};
    int ngrid = tv->ndim - m->nred; /* a tile member's dims: the grid's, then the loop's */
    for (int d = 0; d < tv->ndim; d++) {
      int var = d < ngrid ? -1 : m->ndim + d - ngrid;
      for (int k = 0; k < m->ndim && var < 0; k++)
        if (mv->grid_sym[k] == tv->dims[d]) var = k;
      if ((ld.args[d] = fl_x_var(t->g, var, t->e)) < 0) return -1;
    }
    return fl_graph_expr(t->g, &ld, t->e);
  }
  fl_expr ex = t->g->exprs[x];
  int changed = 0;
  for (int i = 0; i < ex.nargs; i++) {
    int a = scan(t, mv, ex.args[i], rewrite);
    if (a < 0) return -1;
    changed |= a != ex.args[i];
    ex.args[i] = a;
  }
  return changed ? fl_graph_expr(t->g, &ex, t->e) : x;
}

/* ---- making the tile members ---- */

/* The first occurrence of score s in member v's body, or -1. */
static int find_score(tiler *t, const member_vars *mv, int x, int s) {
  if (score_of(t, mv, x, 0) == s) return x;
  const fl_expr *ex = &t->g->exprs[x];
  for (int i = 0; i < ex->nargs; i++) {
    int f = find_score(t, mv, ex->args[i], s);
    if (f >= 0) return f;
  }
  return -1;
}

static fl_status make_tile_member(tiler *t, int s, int grid_n, const int *grid) {
  fl_graph *g = t->g;
  const fl_value *lead = &g->vals[t->gr.loop];
  int from = -1, x = -1;
  member_vars mv;
  for (int k = 0; k < t->gr.n && x < 0; k++) {
    from = t->gr.first + k;
    if (!fl_group_is_loop(&g->vals[from])) continue;
    member_vars_of(t, from, &mv);
    x = find_score(t, &mv, g->vals[from].body, s);
  }
  fl_value tv;
  memset(&tv, 0, sizeof tv);
  snprintf(tv.name, sizeof tv.name, "%.20s.tile%d", lead->name, s + 1);
  snprintf(tv.op, sizeof tv.op, "%s", g->vals[from].op);
  snprintf(tv.origin, sizeof tv.origin, "%s", g->vals[from].origin);
  tv.dtype = g->vals[from].dtype;
  tv.comb = FL_COMB_NONE;
  tv.group = lead->group;
  tv.tile_local = 1;
  for (int d = 0; d < grid_n; d++) tv.dims[tv.ndim++] = grid[d];
  for (int r = 0; r < lead->nred; r++) tv.dims[tv.ndim++] = lead->red[r];
  fl_copier cp;
  fl_status st = FL_EINVAL;
  const fl_value *m = &g->vals[from];
  /* the member's grid and loop variables become the tile member's own */
  int vars[FL_MAX_VARS];
  for (int k = 0; k < m->ndim + m->nred; k++) {
    int var = mv.loop[k] >= 0 ? grid_n + mv.loop[k] : -1;
    for (int d = 0; d < grid_n && var < 0; d++)
      if (grid[d] == mv.grid_sym[k]) var = d;
    vars[k] = var >= 0 ? fl_x_var(g, var, t->e) : fl_x_const(g, 0, t->e); /* unused by x */
  }
  if (fl_copier_init(&cp, g, &tv, m, vars, 0, NULL, t->e) == 0) {
    for (int r = 0; r < m->nred; r++) cp.vars[m->ndim + r] = vars[m->ndim + r];
    tv.body = fl_copy_expr(&cp, x);
    if (tv.body >= 0 && (t->sc[s].value = fl_graph_node(g, &tv, t->e)) >= 0) st = FL_OK;
  }
  fl_copier_free(&cp);
  return st;
}

/* ---- tiling a group ---- */

static int64_t register_width(const fl_graph *g, const fl_group *gr) {
  int64_t widest = 1;
  for (int k = 0; k < gr->n; k++) {
    int64_t w = 1;
    for (int d = 0; d < g->vals[gr->first + k].ndim; d++)
      if (fl_group_slot(g, gr, gr->first + k, d) < 0) w *= g->syms[g->vals[gr->first + k].dims[d]].size;
    if (w > widest) widest = w;
  }
  return widest;
}

/* Sets the tiling on every member: the grid with the largest dim in blocks. */
static void set_tiling(fl_graph *g, const fl_group *gr, int grid_n, const int *grid) {
  int row = -1;
  for (int s = 0; s < grid_n; s++)
    if (row < 0 || g->syms[grid[s]].size >= g->syms[grid[row]].size) row = s;
  fl_group view = *gr;
  view.ngrid = grid_n;
  memcpy(view.grid, grid, sizeof view.grid);
  int64_t cols = register_width(g, &view) > WIDE_REGISTERS ? BLOCK_COLS / 2 : BLOCK_COLS;
  int64_t loop_numel = 1;
  const fl_value *l = &g->vals[gr->loop];
  for (int r = 0; r < l->nred; r++) loop_numel *= g->syms[l->red[r]].size;
  for (int k = 0; k < gr->n; k++) {
    fl_value *v = &g->vals[gr->first + k];
    v->ntile = grid_n;
    for (int s = 0; s < grid_n; s++) {
      v->tile_sym[s] = grid[s];
      int64_t size = g->syms[grid[s]].size;
      v->tile_size[s] = s == row ? (size < BLOCK_ROWS ? size : BLOCK_ROWS) : 1;
    }
    v->loop_tile = loop_numel < cols ? loop_numel : cols;
  }
}

static void log_group(fl_text *log, const fl_graph *g, const fl_group *gr, int nscore) {
  const fl_value *l = &g->vals[gr->loop];
  fl_text_put(log, "tile: group %d (%s): grid", l->group, l->name);
  for (int s = 0; s < l->ntile; s++)
    fl_text_put(log, "%s%s", s ? ", " : " ", g->syms[l->tile_sym[s]].name);
  for (int s = 0; s < l->ntile; s++)
    if (l->tile_size[s] > 1)
      fl_text_put(log, " (%s in blocks of %lld)", g->syms[l->tile_sym[s]].name, (long long)l->tile_size[s]);
  fl_text_put(log, ", loop");
  for (int r = 0; r < l->nred; r++) fl_text_put(log, "%s%s", r ? "," : " ", g->syms[l->red[r]].name);
  fl_text_put(log, " in tiles of %lld, %d tile member%s", (long long)l->loop_tile, nscore,
              nscore == 1 ? "" : "s");
  fl_text_put(log, nscore ? " (computed once per tile, never stored)\n" : "\n");
}

static fl_status tile_group(fl_graph *g, int first, fl_text *log, fl_err *e) {
  tiler t = {.g = g, .e = e};
  fl_group_at(g, first, &t.gr);
  if (t.gr.loop < 0 || g->vals[first].ntile > 0) return FL_OK;
  t.ncommon = t.gr.ngrid;
  memcpy(t.common, t.gr.grid, sizeof t.common);
  member_vars mv;
  for (int k = 0; k < t.gr.n; k++)
    if (fl_group_is_loop(&g->vals[first + k])) {
      member_vars_of(&t, first + k, &mv);
      scan(&t, &mv, g->vals[first + k].body, 0);
    }
  int grid[FL_MAX_DIMS], ngrid = 0;
  for (int s = 0; s < t.ncommon; s++)
    if (t.uses[s] || t.nscore == 0) grid[ngrid++] = t.common[s];
  for (int s = 0; s < t.nscore; s++)
    if (make_tile_member(&t, s, ngrid, grid) != FL_OK) return FL_EINVAL;
  for (int k = 0; k < t.gr.n; k++) {
    if (!fl_group_is_loop(&g->vals[first + k])) continue;
    member_vars_of(&t, first + k, &mv);
    int body = scan(&t, &mv, g->vals[first + k].body, 1);
    if (body < 0) return FL_EINVAL;
    g->vals[first + k].body = body;
  }
  set_tiling(g, &t.gr, ngrid, grid);
  for (int s = 0; s < t.nscore; s++) {
    fl_value *tv = &g->vals[t.sc[s].value];
    const fl_value *l = &g->vals[t.gr.loop];
    tv->ntile = l->ntile;
    memcpy(tv->tile_sym, l->tile_sym, sizeof tv->tile_sym);
    memcpy(tv->tile_size, l->tile_size, sizeof tv->tile_size);
    tv->loop_tile = l->loop_tile;
  }
  log_group(log, g, &t.gr, t.nscore);
  return FL_OK;
}

/* A lone reduction with a score inside its loop becomes a group of one. */
static int lone_with_score(fl_graph *g, int v) {
  const fl_value *val = &g->vals[v];
  if (val->group || val->nred == 0 || val->comb == FL_COMB_NONE) return 0;
  tiler t = {.g = g};
  t.gr.first = v;
  t.gr.n = 1;
  t.ncommon = val->ndim;
  memcpy(t.common, val->dims, sizeof t.common);
  member_vars mv;
  member_vars_of(&t, v, &mv);
  scan(&t, &mv, val->body, 0);
  return t.nscore > 0;
}

fl_status fl_pass_tile(fl_graph *g, fl_text *log, fl_err *e) {
  int next_group = 1;
  for (int v = g->ninputs; v < g->nvals; v++)
    if (g->vals[v].group >= next_group) next_group = g->vals[v].group + 1;
  int nvals = g->nvals; /* tile members are appended: do not visit them */
  for (int v = g->ninputs; v < nvals; v++)
    if (lone_with_score(g, v)) g->vals[v].group = next_group++;
  for (int v = g->ninputs; v < nvals;) {
    if (!g->vals[v].group) {
      v++;
      continue;
    }
    int group = g->vals[v].group;
    if (tile_group(g, v, log, e) != FL_OK) return FL_EINVAL;
    while (v < nvals && g->vals[v].group == group) v++;
  }
  return fl_graph_compact(g, e);
}
