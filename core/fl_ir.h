/* The reduction IR: every node is a generalized reduction
 *
 *   node[out vars] = combine over (red vars) of body(out vars, red vars)
 *
 * with a combiner (none, sum, max, min) and a scalar body: an expression
 * tree of constants, index variables, loads of inputs or other nodes at index
 * expressions, and pointwise operators. A node's variables are numbered: its
 * output dims first, then its reduction dims. Dims are symbols with a name and
 * a size, shared between nodes only for printing. */
#ifndef FL_IR_H
#define FL_IR_H

#include <stdint.h>

#include "fl_dtype.h"
#include "fl_error.h"
#include "fl_tensor.h"

typedef enum fl_xop {
  FL_X_CONST, FL_X_VAR, FL_X_LOAD,
  /* unary */
  FL_X_NEG, FL_X_EXP, FL_X_EXP2, FL_X_LOG, FL_X_TANH, FL_X_SIGMOID, FL_X_SQRT, FL_X_RSQRT,
  FL_X_ABS, FL_X_RELU, FL_X_NOT, FL_X_FLOOR,
  FL_X_TRUNC, /* toward zero: what a float-to-integer conversion does */
  /* binary */
  FL_X_ADD, FL_X_SUB, FL_X_MUL, FL_X_DIV, FL_X_POW, FL_X_MAX, FL_X_MIN,
  FL_X_LT, FL_X_LE, FL_X_GT, FL_X_GE, FL_X_EQ, FL_X_NE, FL_X_AND, FL_X_OR,
  FL_X_IDIV, FL_X_MOD, /* integer division (floor) and modulo, for indices */
  /* ternary */
  FL_X_WHERE,
  /* a reduction nested in a body: comb over variables [var, var + nbind) of
   * args[0]. Demotion makes these, from a reduction it recomputes in place. */
  FL_X_REDUCE,
  FL_X_COUNT
} fl_xop;

typedef enum fl_combiner { FL_COMB_NONE, FL_COMB_SUM, FL_COMB_MAX, FL_COMB_MIN } fl_combiner;

#define FL_MAX_ARGS FL_MAX_DIMS
#define FL_MAX_LOCALS 16
#define FL_MAX_MASKS 8
/* A node's variables: output dims, reduction dims, then locals. */
#define FL_MAX_VARS (2 * FL_MAX_DIMS + FL_MAX_LOCALS)

typedef struct fl_expr {
  fl_xop op;
  double value; /* FL_X_CONST */
  int var;      /* FL_X_VAR: the node's variable number; FL_X_REDUCE: the first it binds */
  int src;      /* FL_X_LOAD: the value loaded (an input or a node) */
  int nargs;
  int args[FL_MAX_ARGS]; /* operands, or for a load one index per dim of src */
  fl_combiner comb;      /* FL_X_REDUCE */
  int nbind;             /* FL_X_REDUCE: how many variables it binds */
} fl_expr;

/* How an online accumulator follows a change of the running values it
 * depends on (see core/fl_pass_online.c): with μ its rescale argument
 * evaluated before (a) and after (b) the change, multiply by exp(a − b)
 * (FL_RESCALE_EXP), 2^(a − b) (FL_RESCALE_EXP2) or (b / a)^p (FL_RESCALE_POW). */
typedef enum fl_rescale {
  FL_RESCALE_NONE, FL_RESCALE_EXP, FL_RESCALE_EXP2, FL_RESCALE_POW
} fl_rescale;

typedef struct fl_sym {
  char name[16];
  int64_t size;
} fl_sym;

#define FL_NAME_MAX 32
#define FL_ORIGIN_MAX 96

/* Inputs and nodes share one numbering: the first ninputs values are the
 * program's inputs. */
typedef struct fl_value {
  char name[FL_NAME_MAX];
  fl_dtype dtype; /* inputs: their dtype; nodes: the dtype the program computes in */
  int ndim;
  int dims[FL_MAX_DIMS]; /* symbols of the output dims */
  /* nodes only */
  int nred;
  int red[FL_MAX_DIMS]; /* symbols of the reduction dims */
  fl_combiner comb;
  int body;                    /* expression id */
  char op[FL_NAME_MAX];        /* the traced operation it came from, e.g. "softmax" */
  char origin[FL_ORIGIN_MAX];  /* where in the user's script, e.g. "attn.lua:12" */
  int nloc;
  int loc[FL_MAX_LOCALS]; /* symbols of the variables nested reductions bind */
  /* Online groups (the online pass). Members share group > 0, the reduction
   * dims and one loop over them. In a member's body, a load of another
   * member reads its running value; an epilogue member (comb none) runs
   * after the loop and reads the others' final values. */
  int group;
  int epilogue;
  fl_rescale resc;
  int resc_arg; /* expression μ, over running values and loop invariants */
  double resc_pow;
  /* Tiling (core/fl_pass_tile.c), the same on every member of a group: the
   * grid symbols walked in blocks of tile_size positions (the group's other
   * shared dims one position at a time), and its loop walked in tiles of
   * loop_tile positions (0: not tiled). */
  int ntile;
  int tile_sym[FL_MAX_DIMS];
  int64_t tile_size[FL_MAX_DIMS];
  int64_t loop_tile;
  /* A tile member: over the group's shared dims and its loop dims, computed
   * for one tile of the loop at a time, read by the loop members, never
   * stored (the scores of attention). */
  int tile_local;
  /* Block sparsity (core/fl_pass_blocksparse.c), on tile members: the
   * conditions of `where`s in the body that tiles are classified by, and
   * whether they read data (then tiles are classified at run time). */
  int nmask;
  int mask[FL_MAX_MASKS];
  int mask_data;
} fl_value;

typedef struct fl_graph {
  fl_sym *syms;
  int nsyms, cap_syms;
  fl_value *vals;
  int nvals, cap_vals, ninputs;
  fl_expr *exprs;
  int nexprs, cap_exprs;
  int outputs[FL_MAX_DIMS];
  int noutputs;
} fl_graph;

void fl_graph_init(fl_graph *g);
void fl_graph_free(fl_graph *g);

/* Builders. Each returns the new id, or -1 with e set. */
int fl_graph_sym(fl_graph *g, const char *name, int64_t size, fl_err *e);
int fl_graph_input(fl_graph *g, const char *name, fl_dtype dt, int ndim, const int *dims, fl_err *e);
int fl_graph_expr(fl_graph *g, const fl_expr *x, fl_err *e);
/* v holds everything but its id; checks its body and rescale argument as
 * fl_graph_check_expr does, loads reading values before the new node. */
int fl_graph_node(fl_graph *g, const fl_value *v, fl_err *e);
/* Can expression x stand in node v's body: does it use only v's variables,
 * bind only v's locals in nested reductions, load only values before value
 * `before`, and nest no deeper than the walkers of expressions allow?
 * (Loads have one index per dim of what they read: fl_graph_expr checked.) */
fl_status fl_graph_check_expr(const fl_graph *g, const fl_value *v, int x, int before, fl_err *e);
/* Replaces node v's body by expression x, after the checks above (loads
 * reading values before v). Values no longer read stay until compaction. */
fl_status fl_graph_set_body(fl_graph *g, int v, int x, fl_err *e);
fl_status fl_graph_output(fl_graph *g, int value, fl_err *e);

/* Does expression x load value src? */
int fl_expr_reads(const fl_graph *g, int x, int src);
/* The number of positions of value v's output dims. */
int64_t fl_value_numel(const fl_graph *g, int v);

int fl_xop_arity(fl_xop op);
const char *fl_xop_name(fl_xop op);
int fl_xop_parse(const char *name, fl_xop *out);
const char *fl_combiner_name(fl_combiner c);
int fl_combiner_parse(const char *name, fl_combiner *out);

/* What the evaluator computes for one operator, in double precision (NaN
 * semantics included): the scalar meaning every executor matches. */
double fl_xop_unary(fl_xop op, double x);
double fl_xop_binary(fl_xop op, double a, double b);

/* A readable listing of the graph, one line per value; the caller frees it. */
char *fl_graph_dump(const fl_graph *g);

/* The unfused reference: evaluates every node in double precision. inputs
 * are host tensors matching the graph's inputs in shape (any dtype); outs
 * receive new host tensors of dtype out_dtype, one per graph output. */
fl_status fl_graph_eval(const fl_graph *g, const fl_tensor *inputs, fl_dtype out_dtype,
                        fl_tensor *outs, fl_err *e);
/* The same, with online groups walking their loop in tiles of `tile`
 * positions (0: one tile), rescaling their accumulators between tiles. */
fl_status fl_graph_eval_tiled(const fl_graph *g, const fl_tensor *inputs, fl_dtype out_dtype,
                              fl_tensor *outs, int64_t tile, fl_err *e);

#endif
