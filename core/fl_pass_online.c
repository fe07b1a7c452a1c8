/* online (algebraic transformation of reductions): sibling reductions over
 * the same loop dims, where one reads another, become one online group
 * with a single loop (evaluated by core/fl_eval_group.c).
 *
 * The rule, on the algebra rather than on the name "softmax". Let M be a
 * max (or min) member, read by a sum member S = Σ_j body_j. Write body_j as
 * a sum of terms, each a product of factors. A term may depend on the
 * running M only through a factor φ(M) for which some ψ gives
 *
 *     φ(a) · ψ(a, b) = φ(b)      for all a, b,
 *
 * so that a partial sum accumulated while M was a becomes the partial sum
 * for M = b by one multiplication. Two families are recognized, the
 * exponential one in base e and in base 2 (φ = 2^x: a pass that folds
 * log2(e) into the scores leaves exp2 for the kernel's fast instruction):
 *   exp(g_j − μ(M))   (any j-free μ)   ψ = exp(μ(a) − μ(b))   FL_RESCALE_EXP
 *   exp2(g_j − μ(M))  (any j-free μ)   ψ = 2^(μ(a) − μ(b))    FL_RESCALE_EXP2
 *   μ(M)^p             (any j-free μ)   ψ = (μ(b) / μ(a))^p   FL_RESCALE_POW
 * (a plain product by μ(M) is the power 1). Factors that read the final
 * value of another sum member Z of the group must be free of j: they are
 * hoisted out of the sum and applied after the loop (the 1/Σ of a softmax).
 * A term with such factors, or terms with different μ, get accumulators of
 * their own, combined after the loop.
 *
 * So softmax·V, two softmaxes over one loop (differential attention), a
 * log-sum-exp output, attention sinks (μ = max(M, sink)) and any other
 * max-subtracted normalizer follow from one rule; sigmoid weights read no
 * other reduction and need no group at all.
 *
 * Preconditions, each checked; where one fails the reductions stay
 * separate nodes (more kernels, same numbers) and the log says why:
 *   - members reduce over the same symbols, and read each other at their
 *     own positions of the dims they share;
 *   - a max/min member reads no other member;
 *   - every dependence of a sum member on a max/min member has one of the
 *     forms above; reads of sum members are free of the loop variables.
 * Pointwise nodes that read the group's results at their own positions
 * (a gate, the log-sum-exp) join it as epilogue members. */
#include "fl_pass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TERMS 16
#define MAX_FACTORS 16

typedef struct factor {
  int x;     /* expression */
  int recip; /* divides rather than multiplies */
} factor;

typedef struct term {
  int sign;
  int n;
  factor f[MAX_FACTORS];
} term;

typedef struct terms {
  int n;
  term t[MAX_TERMS];
} terms;

typedef struct online {
  fl_graph *g;
  fl_text *log;
  fl_err *e;
  char *member;  /* per value: in the group being built */
  char *extreme; /* per value: a max/min member of it */
  char *summed;  /* per value: a sum member of it */
  char *probe;   /* per value: scratch for one-value load tests */
  int cap;       /* the arrays' length */
  const char *why; /* why the group was refused */
  char whybuf[200];
} online;

/* ---- expressions ---- */

static int equal_x(const fl_graph *g, int a, int b) {
  if (a == b) return 1;
  const fl_expr *x = &g->exprs[a], *y = &g->exprs[b];
  if (x->op != y->op || x->nargs != y->nargs) return 0;
  if (x->op == FL_X_CONST) return x->value == y->value;
  if (x->op == FL_X_VAR) return x->var == y->var;
  if (x->op == FL_X_LOAD && x->src != y->src) return 0;
  if (x->op == FL_X_REDUCE && (x->comb != y->comb || x->var != y->var || x->nbind != y->nbind))
    return 0;
  for (int i = 0; i < x->nargs; i++)
    if (!equal_x(g, x->args[i], y->args[i])) return 0;
  return 1;
}

/* The terms of x, products distributed over sums: x = Σ sign·Π factors. */
static int split_terms(const fl_graph *g, int x, int sign, terms *out) {
  const fl_expr *ex = &g->exprs[x];
  switch (ex->op) {
  case FL_X_ADD:
  case FL_X_SUB:
    return split_terms(g, ex->args[0], sign, out) ||
           split_terms(g, ex->args[1], ex->op == FL_X_SUB ? -sign : sign, out);
  case FL_X_NEG: return split_terms(g, ex->args[0], -sign, out);
  case FL_X_MUL:
  case FL_X_DIV: {
    terms a = {0}, b = {0};
    if (split_terms(g, ex->args[0], sign, &a)) return -1;
    if (ex->op == FL_X_DIV) {
      b.n = 1;
      b.t[0] = (term){.sign = 1, .n = 1, .f = {{ex->args[1], 1}}};
    } else if (split_terms(g, ex->args[1], 1, &b)) {
      return -1;
    }
    for (int i = 0; i < a.n; i++)
      for (int j = 0; j < b.n; j++) {
        if (out->n == MAX_TERMS || a.t[i].n + b.t[j].n > MAX_FACTORS) return -1;
        term *t = &out->t[out->n++];
        *t = a.t[i];
        t->sign *= b.t[j].sign;
        memcpy(t->f + t->n, b.t[j].f, (size_t)b.t[j].n * sizeof *t->f);
        t->n += b.t[j].n;
      }
    return 0;
  }
  default:
    if (out->n == MAX_TERMS) return -1;
    out->t[out->n++] = (term){.sign = sign, .n = 1, .f = {{x, 0}}};
    return 0;
  }
}

static int product(fl_graph *g, const factor *f, int n, fl_err *e) {
  int r = -1;
  for (int k = 0; k < n; k++) {
    if (r < 0 && !f[k].recip) r = f[k].x;
    else if (r < 0) r = fl_x_op(g, FL_X_DIV, fl_x_const(g, 1, e), f[k].x, e);
    else r = fl_x_op(g, f[k].recip ? FL_X_DIV : FL_X_MUL, r, f[k].x, e);
    if (r < 0) return -1;
  }
  return r < 0 ? fl_x_const(g, 1, e) : r;
}

/* ---- the rule ---- */

typedef struct rescale {
  fl_rescale kind;
  int mu;       /* expression, or -1 */
  double power;
} rescale;

/* Adds −sign·t to μ (an exp argument g − μ contributes μ). */
static int add_mu(fl_graph *g, int mu, int t, int sign, fl_err *e) {
  if (mu < 0) return sign < 0 ? t : fl_x_op(g, FL_X_NEG, t, -1, e);
  return fl_x_op(g, sign < 0 ? FL_X_ADD : FL_X_SUB, mu, t, e);
}

/* exp(u) or exp2(u) (kind says which): u's additive terms that read
 * running max/min values must be free of the loop; they make μ. */
static int exp_rule(online *on, const fl_value *s, int u, fl_rescale kind, rescale *r) {
  terms ts = {0};
  if (split_terms(on->g, u, 1, &ts)) return -1;
  int lo = s->ndim, hi = s->ndim + s->nred;
  for (int k = 0; k < ts.n; k++) {
    int reads = 0, loops = 0;
    for (int i = 0; i < ts.t[k].n; i++) {
      reads |= fl_x_loads(on->g, ts.t[k].f[i].x, on->extreme);
      loops |= fl_x_uses_vars(on->g, ts.t[k].f[i].x, lo, hi);
    }
    if (!reads) continue;
    if (loops) return -1;
    int xk = product(on->g, ts.t[k].f, ts.t[k].n, on->e);
    if (xk < 0) return -1;
    r->mu = add_mu(on->g, r->mu, xk, ts.t[k].sign, on->e);
    if (r->mu < 0) return -1;
  }
  r->kind = kind;
  return 0;
}

/* Classifies one factor of a sum member's term. Returns 0 when it goes in
 * the loop body (possibly adding to the rescale), 1 when it is hoisted
 * after the loop, -1 when no rule applies (on->why says why). */
static int classify(online *on, const fl_value *s, const factor *f, rescale *r) {
  fl_graph *g = on->g;
  int lo = s->ndim, hi = s->ndim + s->nred;
  int loops = fl_x_uses_vars(g, f->x, lo, hi);
  if (fl_x_loads(g, f->x, on->summed)) {
    if (!loops) return 1;
    on->why = "it reads the final value of a sum of the group inside the loop";
    return -1;
  }
  if (!fl_x_loads(g, f->x, on->extreme)) return 0;
  const fl_expr *x = &g->exprs[f->x];
  fl_rescale kind = x->op == FL_X_EXP ? FL_RESCALE_EXP : FL_RESCALE_EXP2;
  if ((x->op == FL_X_EXP || x->op == FL_X_EXP2) && !f->recip &&
      (r->kind == FL_RESCALE_NONE || r->kind == kind)) {
    if (exp_rule(on, s, x->args[0], kind, r) == 0) return 0;
    on->why = x->op == FL_X_EXP ? "its exp() argument is not a loop term minus a loop-free one"
                                : "its exp2() argument is not a loop term minus a loop-free one";
    return -1;
  }
  if (!loops && r->kind == FL_RESCALE_NONE) {
    int base = f->x;
    double p = f->recip ? -1 : 1;
    if (x->op == FL_X_POW && g->exprs[x->args[1]].op == FL_X_CONST) {
      base = x->args[0];
      p *= g->exprs[x->args[1]].value;
    }
    *r = (rescale){FL_RESCALE_POW, base, p};
    return 0;
  }
  on->why = "it depends on a running max through a function with no rescaling rule "
            "(exp or exp2 of a difference, a power or a product)";
  return -1;
}

/* ---- building the group ---- */

typedef struct plan_term {
  int body;   /* in the loop */
  int coef;   /* after the loop, or -1 */
  rescale r;
} plan_term;

static int plan_member(online *on, int v, plan_term *pt, int *n) {
  const fl_value *s = &on->g->vals[v];
  terms ts = {0};
  if (split_terms(on->g, s->body, 1, &ts)) {
    on->why = "its body has too many terms";
    return -1;
  }
  for (int k = 0; k < ts.n; k++) {
    factor loop[MAX_FACTORS], after[MAX_FACTORS];
    int nl = 0, na = 0;
    rescale r = {FL_RESCALE_NONE, -1, 1};
    for (int i = 0; i < ts.t[k].n; i++) {
      int c = classify(on, s, &ts.t[k].f[i], &r);
      if (c < 0) return -1;
      if (c == 0) loop[nl++] = ts.t[k].f[i];
      else after[na++] = ts.t[k].f[i];
    }
    if (ts.t[k].sign < 0) {
      after[na++] = (factor){fl_x_const(on->g, -1, on->e), 0};
      if (after[na - 1].x < 0) return -1;
    }
    pt[k].body = product(on->g, loop, nl, on->e);
    pt[k].coef = na ? product(on->g, after, na, on->e) : -1;
    pt[k].r = r;
    if (pt[k].body < 0 || (na && pt[k].coef < 0)) return -1;
  }
  *n = ts.n;
  return 0;
}

/* One term, nothing after the loop: the member keeps its body. Several
 * terms with one rescale and nothing after the loop: the same. */
static int single_accumulator(const fl_graph *g, const plan_term *pt, int n) {
  for (int k = 0; k < n; k++) {
    if (pt[k].coef >= 0 || pt[k].r.kind != pt[0].r.kind || pt[k].r.power != pt[0].r.power)
      return 0;
    if ((pt[k].r.mu < 0) != (pt[0].r.mu < 0)) return 0;
    if (pt[k].r.mu >= 0 && !equal_x(g, pt[k].r.mu, pt[0].r.mu)) return 0;
  }
  return 1;
}

static void set_rescale(fl_value *v, const rescale *r) {
  v->resc = r->kind;
  v->resc_arg = r->mu;
  v->resc_pow = r->power;
}

/* S becomes an epilogue member summing coef_k · acc_k over new accumulators. */
static fl_status split_member(online *on, int v, const plan_term *pt, int n, int group) {
  fl_graph *g = on->g;
  int sum = -1;
  for (int k = 0; k < n; k++) {
    fl_value acc = g->vals[v];
    snprintf(acc.name, sizeof acc.name, "%.20s.acc%d", g->vals[v].name, (k + 1) % 100);
    acc.body = pt[k].body;
    set_rescale(&acc, &pt[k].r);
    acc.group = group;
    int id = fl_graph_node(g, &acc, on->e);
    if (id < 0) return FL_ENOMEM;
    int x = fl_x_load_own(g, &g->vals[v], id, on->e);
    if (x >= 0 && pt[k].coef >= 0) x = fl_x_op(g, FL_X_MUL, pt[k].coef, x, on->e);
    sum = sum < 0 ? x : fl_x_op(g, FL_X_ADD, sum, x, on->e);
    if (sum < 0) return FL_ENOMEM;
  }
  fl_value *s = &g->vals[v];
  s->body = sum;
  s->comb = FL_COMB_NONE;
  s->epilogue = 1;
  s->resc = FL_RESCALE_NONE;
  return FL_OK;
}

/* ---- finding groups ---- */

static int same_loop(const fl_value *a, const fl_value *b) {
  if (a->nred != b->nred) return 0;
  for (int r = 0; r < a->nred; r++)
    if (a->red[r] != b->red[r]) return 0;
  return 1;
}

static int is_loop(const fl_graph *g, int v) {
  const fl_value *p = &g->vals[v];
  return v >= g->ninputs && p->nred > 0 && p->comb != FL_COMB_NONE && !p->group;
}

/* Does every load of a flagged value in x read it at the node's own
 * position (its shared dims by the node's own variables)? */
static int own_positions(const fl_graph *g, const fl_value *node, int x, const char *flag) {
  const fl_expr *ex = &g->exprs[x];
  if (ex->op == FL_X_LOAD && flag[ex->src]) {
    const fl_value *src = &g->vals[ex->src];
    for (int d = 0; d < src->ndim; d++) {
      const fl_expr *i = &g->exprs[ex->args[d]];
      if (i->op == FL_X_CONST && i->value == 0 && g->syms[src->dims[d]].size == 1) continue;
      int k = 0;
      while (k < node->ndim && node->dims[k] != src->dims[d]) k++;
      if (k == node->ndim || !(i->op == FL_X_VAR && i->var == k)) return 0;
    }
  }
  for (int i = 0; i < ex->nargs; i++)
    if (!own_positions(g, node, ex->args[i], flag)) return 0;
  return 1;
}

/* Grows the group from `seed`: loop nodes over the same dims that read a
 * member or are read by one. */
static int collect(online *on, int seed) {
  fl_graph *g = on->g;
  on->member[seed] = 1;
  int n = 1;
  for (int grew = 1; grew;) {
    grew = 0;
    for (int v = g->ninputs; v < g->nvals; v++) {
      if (on->member[v] || !is_loop(g, v) || !same_loop(&g->vals[v], &g->vals[seed])) continue;
      int linked = fl_x_loads(g, g->vals[v].body, on->member);
      on->probe[v] = 1;
      for (int u = g->ninputs; !linked && u < g->nvals; u++)
        linked = on->member[u] && fl_x_loads(g, g->vals[u].body, on->probe);
      on->probe[v] = 0;
      if (linked) {
        on->member[v] = 1;
        n++;
        grew = 1;
      }
    }
  }
  return n;
}

static int check_members(online *on) {
  fl_graph *g = on->g;
  for (int v = g->ninputs; v < g->nvals; v++) {
    if (!on->member[v]) continue;
    const fl_value *m = &g->vals[v];
    on->extreme[v] = m->comb == FL_COMB_MAX || m->comb == FL_COMB_MIN;
    on->summed[v] = m->comb == FL_COMB_SUM;
  }
  for (int v = g->ninputs; v < g->nvals; v++) {
    if (!on->member[v]) continue;
    const fl_value *m = &g->vals[v];
    if (!own_positions(g, m, m->body, on->member)) {
      snprintf(on->whybuf, sizeof on->whybuf, "'%s' reads a member at another position", m->name);
      return -1;
    }
    if (on->extreme[v] && fl_x_loads(g, m->body, on->member)) {
      snprintf(on->whybuf, sizeof on->whybuf, "the %s '%s' reads another member",
               fl_combiner_name(m->comb), m->name);
      return -1;
    }
  }
  return 0;
}

typedef struct member_plan {
  int n;
  plan_term pt[MAX_TERMS];
} member_plan;

/* Plans every sum member that reads the group before changing any, so that
 * a refusal leaves the graph as it was. Returns FL_EINVAL with on->whybuf
 * set when a member has no rule, another status on failure. */
static fl_status form_group(online *on, int group) {
  fl_graph *g = on->g;
  int nv = g->nvals;
  member_plan *plan = calloc((size_t)nv, sizeof *plan);
  if (!plan) return fl_fail(on->e, FL_ENOMEM, "out of memory in the online pass");
  fl_status s = FL_OK;
  for (int v = g->ninputs; s == FL_OK && v < nv; v++) {
    if (!on->summed[v] || !fl_x_loads(g, g->vals[v].body, on->member)) continue;
    if (plan_member(on, v, plan[v].pt, &plan[v].n) != 0) {
      snprintf(on->whybuf, sizeof on->whybuf, "'%s': %s", g->vals[v].name,
               on->why ? on->why : "out of memory");
      s = FL_EINVAL;
    }
  }
  for (int v = g->ninputs; s == FL_OK && v < nv; v++) {
    if (plan[v].n == 0) continue;
    if (single_accumulator(g, plan[v].pt, plan[v].n)) set_rescale(&g->vals[v], &plan[v].pt[0].r);
    else s = split_member(on, v, plan[v].pt, plan[v].n, group);
  }
  for (int v = g->ninputs; s == FL_OK && v < nv; v++)
    if (on->member[v]) g->vals[v].group = group;
  free(plan);
  return s;
}

/* Pointwise nodes that read the group's values at their own positions run
 * after its loop, as epilogue members. */
static void absorb_epilogue(online *on, int group) {
  fl_graph *g = on->g;
  for (int grew = 1; grew;) {
    grew = 0;
    memset(on->member, 0, (size_t)g->nvals);
    for (int v = g->ninputs; v < g->nvals; v++) on->member[v] = g->vals[v].group == group;
    for (int v = g->ninputs; v < g->nvals; v++) {
      fl_value *p = &g->vals[v];
      if (p->group || p->nred || p->comb != FL_COMB_NONE) continue;
      if (!fl_x_loads(g, p->body, on->member) || !own_positions(g, p, p->body, on->member))
        continue;
      p->group = group;
      p->epilogue = 1;
      grew = 1;
    }
  }
}

static const char *rescaled_by(fl_rescale kind) {
  switch (kind) {
  case FL_RESCALE_EXP: return ", rescaled by exp";
  case FL_RESCALE_EXP2: return ", rescaled by exp2";
  case FL_RESCALE_POW: return ", rescaled by a power";
  default: return "";
  }
}

static void log_group(online *on, int group) {
  fl_graph *g = on->g;
  fl_text_put(on->log, "online: group %d, one loop:", group);
  for (int v = g->ninputs; v < g->nvals; v++) {
    const fl_value *m = &g->vals[v];
    if (m->group != group) continue;
    fl_text_put(on->log, " %s (%s%s)", m->name, m->epilogue ? "after the loop" :
                fl_combiner_name(m->comb), rescaled_by(m->resc));
  }
  fl_text_put(on->log, "\n");
}

/* Sizes the per-value arrays to the graph, which grows by accumulators,
 * and clears them. */
static fl_status fit_arrays(online *on) {
  int n = on->g->nvals;
  if (n > on->cap) {
    char **arr[] = {&on->member, &on->extreme, &on->summed, &on->probe};
    for (size_t k = 0; k < sizeof arr / sizeof *arr; k++) {
      char *p = realloc(*arr[k], (size_t)n);
      if (!p) return fl_fail(on->e, FL_ENOMEM, "out of memory in the online pass");
      *arr[k] = p;
    }
    on->cap = n;
  }
  memset(on->member, 0, (size_t)n);
  memset(on->extreme, 0, (size_t)n);
  memset(on->summed, 0, (size_t)n);
  memset(on->probe, 0, (size_t)n);
  return FL_OK;
}

/* Marks the members of a refused group so that no later seed retries it. */
static void refuse(online *on) {
  fl_text_put(on->log, "online: not merged, %s\n", on->whybuf);
  for (int v = on->g->ninputs; v < on->g->nvals; v++)
    if (on->member[v]) on->g->vals[v].group = -1;
}

fl_status fl_pass_online(fl_graph *g, fl_text *log, fl_err *e) {
  online on = {.g = g, .log = log, .e = e};
  fl_status s = FL_OK;
  int group = 0, formed = 0;
  for (int v = 0; v < g->nvals; v++) group = g->vals[v].group > group ? g->vals[v].group : group;
  for (int seed = g->ninputs; s == FL_OK && seed < g->nvals; seed++) {
    if (!is_loop(g, seed)) continue;
    s = fit_arrays(&on);
    if (s != FL_OK || collect(&on, seed) < 2) continue;
    on.why = NULL;
    on.whybuf[0] = 0;
    if (check_members(&on) != 0) {
      refuse(&on);
      continue;
    }
    s = form_group(&on, group + 1);
    if (s == FL_EINVAL) {
      refuse(&on);
      s = FL_OK;
      continue;
    }
    if (s != FL_OK) break;
    group++;
    if ((s = fit_arrays(&on)) != FL_OK) break; /* the group may have added accumulators */
    absorb_epilogue(&on, group);
    log_group(&on, group);
    formed++;
  }
  for (int v = g->ninputs; v < g->nvals; v++) if (g->vals[v].group < 0) g->vals[v].group = 0;
  if (s == FL_OK && formed == 0) fl_text_put(log, "online: no dependent reductions to merge\n");
  if (s == FL_OK) s = fl_graph_compact(g, e);
  free(on.member);
  free(on.extreme);
  free(on.summed);
  free(on.probe);
  return s;
}
