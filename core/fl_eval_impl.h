/* Inside the reference evaluator: shared by fl_eval.c (values, nodes,
 * expressions) and fl_eval_group.c (online groups). Not a public header. */
#ifndef FL_EVAL_IMPL_H
#define FL_EVAL_IMPL_H

#include <stdint.h>

#include "fl_ir.h"

/* As for tensors: values stay below 2^59 elements, so that byte counts of
 * their double arrays fit in int64_t. */
#define MAX_NUMEL ((int64_t)1 << 59)

typedef struct value_info {
  int64_t numel, size[FL_MAX_DIMS], stride[FL_MAX_DIMS]; /* output dims */
  int64_t red_numel, red_size[FL_MAX_DIMS];              /* reduction dims */
} value_info;

struct group_run;

typedef struct eval_ctx {
  const fl_graph *g;
  value_info *info; /* per value */
  double **data;    /* per value, once materialized */
  int *checked;     /* per expression: 1 + the last node whose check went through it */
  int node;         /* the node being evaluated */
  int64_t pos[FL_MAX_VARS]; /* its variables: output dims, reduction dims, locals */
  struct group_run *group;  /* the online group being evaluated, or NULL */
  int64_t tile;             /* without a plan: an online group's loop tile */
  struct fl_plan *plan;     /* the plan being run, or NULL (the reference) */
  signed char *resolved;    /* per expression: a `where` condition resolved for a full
                               tile (1 false, 2 true), or 0 */
  fl_status status; /* the first failure inside an expression */
  fl_err *e;
} eval_ctx;

double fl_eval_expr(eval_ctx *c, int id);
double *fl_eval_alloc(eval_ctx *c, int v);
double fl_comb_start(fl_combiner k);
double fl_combine(fl_combiner k, double acc, double x);
void fl_eval_step(int64_t *pos, int n, const int64_t *size);

/* Evaluates the online group whose first member is value `first`; returns
 * the value after its last member in *end. */
fl_status fl_eval_group(eval_ctx *c, int first, int *end);
/* A load of a member of the group being evaluated: its running or final
 * value, at the load's index. */
double fl_eval_group_load(eval_ctx *c, const fl_expr *x, const int64_t *idx);

#endif
