/* blocksparse: in each tiled group, the conditions of the `where`s in its
 * tile members (the mask: j <= i, a window, doc[i] == doc[j]) become what
 * its tiles are classified by (core/fl_tiles.h: skipped, full with no mask
 * code, or partial). A condition over indices only is classified when the
 * kernel is planned, so it becomes loop bounds; one that reads data is
 * classified at run time, from the data's range over each tile. The graph's
 * numbers do not change: the executor runs every tile it does not skip, and
 * a skipped tile contributes nothing. Conditions inside a contraction, or
 * on no index at all, are not masks and are left alone. */
#include "fl_pass.h"
#include "fl_tiles.h"

#include <stdlib.h>

/* Does expression x hold an `op` node? */
static int holds(const fl_graph *g, int x, fl_xop op) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == op) return 1;
  for (int i = 0; i < ex->nargs; i++)
    if (holds(g, ex->args[i], op)) return 1;
  return 0;
}

/* Collects the mask conditions of tile member v's body below x. */
static void find_masks(fl_graph *g, fl_value *v, int x) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_REDUCE) return; /* inside a contraction: not a mask */
  if (ex->op == FL_X_WHERE) {
    int c = ex->args[0], nvars = v->ndim, seen = 0;
    for (int m = 0; m < v->nmask; m++) seen |= v->mask[m] == c;
    if (!seen && v->nmask < FL_MAX_MASKS && !holds(g, c, FL_X_REDUCE) && fl_x_uses_vars(g, c, 0, nvars) &&
        !fl_x_uses_vars(g, c, nvars, FL_MAX_VARS)) {
      v->mask[v->nmask++] = c;
      v->mask_data |= holds(g, c, FL_X_LOAD);
    }
  }
  for (int i = 0; i < ex->nargs; i++) find_masks(g, v, ex->args[i]);
}

static void log_group(fl_text *log, const fl_graph *g, const fl_tiles *t) {
  const fl_value *l = &g->vals[t->gr.loop];
  fl_text_put(log, "blocksparse: group %d (%s): ", l->group, l->name);
  if (t->nmask == 0) {
    fl_text_put(log, "no mask, every tile runs\n");
    return;
  }
  fl_text_put(log, "%d mask condition%s", t->nmask, t->nmask == 1 ? "" : "s");
  if (t->data) {
    fl_text_put(log, " reading data (");
    for (int v = 0, n = 0; v < g->nvals; v++)
      if (t->reads[v]) fl_text_put(log, "%s%s", n++ ? ", " : "", g->vals[v].name);
    fl_text_put(log, "): tiles classified at run time, from the data's range over each tile\n");
    return;
  }
  fl_tile_counts c = {0};
  fl_tiles_schedule(t, NULL, NULL, &c); /* what a plan of this graph will fix */
  fl_text_put(log, " over indices: loop bounds from %lld tiles", (long long)c.total);
  fl_text_put(log, " (per block of the dims the mask reads): %lld skipped, %lld partial, %lld full\n",
              (long long)c.skipped, (long long)c.partial, (long long)c.full);
}

static fl_status classify_group(fl_graph *g, int first, fl_text *log, fl_err *e) {
  int group = g->vals[first].group;
  for (int v = first; v < g->nvals && g->vals[v].group == group; v++) {
    fl_value *val = &g->vals[v];
    if (!val->tile_local) continue;
    val->nmask = 0;
    val->mask_data = 0;
    find_masks(g, val, val->body);
  }
  fl_tiles t;
  fl_status s = fl_tiles_init(&t, g, first, e);
  if (s == FL_OK && t.gr.loop >= 0) log_group(log, g, &t);
  fl_tiles_free(&t);
  return s;
}

fl_status fl_pass_blocksparse(fl_graph *g, fl_text *log, fl_err *e) {
  int tiled = 0;
  for (int v = g->ninputs; v < g->nvals; v++) {
    const fl_value *val = &g->vals[v];
    if (!val->group || (v > g->ninputs && g->vals[v - 1].group == val->group)) continue;
    if (val->ntile == 0) continue;
    tiled++;
    if (classify_group(g, v, log, e) != FL_OK) return FL_EINVAL;
  }
  if (!tiled) fl_text_put(log, "blocksparse: nothing tiled (run `tile` first): nothing to classify\n");
  return FL_OK;
}
