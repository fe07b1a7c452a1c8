/* The pass registry, and the loop that rewrites every node's loads. */
#include "fl_pass.h"

#include <stdlib.h>
#include <string.h>

static const fl_pass pipeline[] = {
  {"inline", fl_pass_inline},
  {"demote", fl_pass_demote},
  {"online", fl_pass_online},
  {"tile", fl_pass_tile},
  {"blocksparse", fl_pass_blocksparse},
};

const fl_pass *fl_passes(int *n) {
  *n = (int)(sizeof pipeline / sizeof *pipeline);
  return pipeline;
}

const fl_pass *fl_pass_find(const char *name) {
  int n;
  const fl_pass *p = fl_passes(&n);
  for (int i = 0; i < n; i++)
    if (strcmp(p[i].name, name) == 0) return &p[i];
  return NULL;
}

static int rewrite_expr(fl_graph *g, fl_value *into, int node, int x, fl_load_hook hook,
                        void *ctx, fl_err *e) {
  fl_copier cp;
  int r = -1;
  if (fl_copier_init(&cp, g, into, &g->vals[node], NULL, 0, NULL, e) == 0) {
    cp.on_load = hook;
    cp.ctx = ctx;
    r = fl_copy_expr(&cp, x);
  }
  fl_copier_free(&cp);
  return r;
}

fl_status fl_rewrite_loads(fl_graph *g, fl_load_hook hook, void *ctx, fl_err *e) {
  for (int v = g->ninputs; v < g->nvals; v++) {
    fl_value nv = g->vals[v];
    nv.body = rewrite_expr(g, &nv, v, g->vals[v].body, hook, ctx, e);
    if (nv.body < 0) return FL_EINVAL;
    if (nv.resc != FL_RESCALE_NONE) {
      nv.resc_arg = rewrite_expr(g, &nv, v, g->vals[v].resc_arg, hook, ctx, e);
      if (nv.resc_arg < 0) return FL_EINVAL;
    }
    g->vals[v] = nv;
  }
  return FL_OK;
}

void fl_substitution_mark(fl_substitution *sub, int v) {
  if (sub->done[v]) return;
  sub->done[v] = 1;
  sub->count++;
}

fl_status fl_substitute(fl_graph *g, fl_load_hook hook, const char *pass, const char *thing,
                        const char *what, fl_text *log, fl_err *e) {
  fl_substitution sub = {0, calloc((size_t)g->nvals + 1, 1)};
  if (!sub.done) return fl_fail(e, FL_ENOMEM, "out of memory in the %s pass", pass);
  fl_status s = fl_rewrite_loads(g, hook, &sub, e);
  if (s == FL_OK) {
    fl_text_put(log, "%s: %d %s%s %s", pass, sub.count, thing, sub.count == 1 ? "" : "s", what);
    const char *sep = ": ";
    for (int v = g->ninputs; v < g->nvals; v++)
      if (sub.done[v]) {
        fl_text_put(log, "%s%s", sep, g->vals[v].name);
        sep = ", ";
      }
    fl_text_put(log, "\n");
    s = fl_graph_compact(g, e);
  }
  free(sub.done);
  return s;
}
