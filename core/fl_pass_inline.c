/* inline: a pointwise node (no reduction, not in an online group) is
 * substituted into every node that loads it, at the load's indices. It
 * stays in the graph only where an output needs it. After this pass,
 * attention is four nodes: the scores, their max, the sum of exponentials
 * and the output's sum over keys. */
#include "fl_pass.h"

static int is_pointwise(const fl_graph *g, int v) {
  const fl_value *p = &g->vals[v];
  return v >= g->ninputs && p->nred == 0 && p->comb == FL_COMB_NONE && !p->group;
}

static int inline_load(fl_copier *cp, const fl_expr *load, const int *idx) {
  if (!is_pointwise(cp->g, load->src)) return -2;
  fl_copier sub;
  int r = -1;
  if (fl_copier_init(&sub, cp->g, cp->into, &cp->g->vals[load->src], idx, 0, NULL, cp->e) == 0) {
    sub.on_load = inline_load;
    sub.ctx = cp->ctx;
    r = fl_copy_expr(&sub, cp->g->vals[load->src].body);
  }
  fl_copier_free(&sub);
  if (r >= 0) fl_substitution_mark(cp->ctx, load->src);
  return r;
}

fl_status fl_pass_inline(fl_graph *g, fl_text *log, fl_err *e) {
  return fl_substitute(g, inline_load, "inline", "pointwise node",
                       "substituted into their consumers", log, e);
}
