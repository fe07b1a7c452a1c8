/* inline: a pointwise node (no reduction, not in an online group) is
 * substituted into every node that loads it, at the load's indices. It
 * stays in the graph only where an output needs it. After this pass,
 * attention is four nodes: the scores, their max, the sum of exponentials
 * and the output's sum over keys. */
#include "fl_pass.h"

#include <stdlib.h>

typedef struct inliner {
  int count;
  char *done; /* per value: substituted at least once */
} inliner;

static int is_pointwise(const fl_graph *g, int v) {
  const fl_value *p = &g->vals[v];
  return v >= g->ninputs && p->nred == 0 && p->comb == FL_COMB_NONE && !p->group;
}

static int inline_load(fl_copier *cp, const fl_expr *load, const int *idx) {
  if (!is_pointwise(cp->g, load->src)) return -2;
  inliner *in = cp->ctx;
  fl_copier sub;
  int r = -1;
  if (fl_copier_init(&sub, cp->g, cp->into, &cp->g->vals[load->src], idx, 0, NULL, cp->e) == 0) {
    sub.on_load = inline_load;
    sub.ctx = in;
    r = fl_copy_expr(&sub, cp->g->vals[load->src].body);
  }
  fl_copier_free(&sub);
  if (r >= 0 && !in->done[load->src]) {
    in->done[load->src] = 1;
    in->count++;
  }
  return r;
}

fl_status fl_pass_inline(fl_graph *g, fl_text *log, fl_err *e) {
  inliner in = {0, calloc((size_t)g->nvals + 1, 1)};
  if (!in.done) return fl_fail(e, FL_ENOMEM, "out of memory inlining");
  fl_status s = fl_rewrite_loads(g, inline_load, &in, e);
  if (s == FL_OK) {
    fl_text_put(log, "inline: %d pointwise node%s substituted into their consumers", in.count,
                in.count == 1 ? "" : "s");
    const char *sep = ": ";
    for (int v = g->ninputs; v < g->nvals; v++)
      if (in.done[v]) {
        fl_text_put(log, "%s%s", sep, g->vals[v].name);
        sep = ", ";
      }
    fl_text_put(log, "\n");
    s = fl_graph_compact(g, e);
  }
  free(in.done);
  return s;
}
