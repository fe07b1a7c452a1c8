/* Printing the IR's scalar expressions as CUDA statements, one temporary a
 * subexpression (`const double t7 = ...;`), for the scalar kernels (double
 * precision, the CPU executor's semantics) and the tensor-core kernels
 * (float). What a kernel holds in registers or computes otherwise (group
 * members, the tensor-core products, mask conditions known for a tile)
 * comes in through hooks; everything else is printed here. */
#ifndef FL_CUDA_EXPR_H
#define FL_CUDA_EXPR_H

#include "fl_ir.h"
#include "fl_text.h"

typedef struct fl_cx fl_cx;
struct fl_cx {
  const fl_graph *g;
  fl_text *b;
  int tmp;    /* the next temporary */
  int depth;  /* indentation */
  int f32;    /* arithmetic in float, else double */
  int rolled; /* keep every loop rolled (`#pragma unroll 1`) */
  int fvars;  /* with f32: the variables are also in scope as floats xf0, xf1, ... */
  int scope;  /* the value whose variables x0, x1, ... are in scope */
  /* A load the kernel holds itself: prints it into a new temporary and
   * returns it, or returns -1 for a load from memory (pointer v<src>). */
  int (*member)(fl_cx *c, const fl_expr *ex, const int *idx);
  /* A nested reduction the kernel computes otherwise: its temporary, or -1. */
  int (*reduce)(fl_cx *c, int x);
  /* A where's condition known true (the where is its first branch): 1, else 0. */
  int (*known)(fl_cx *c, int x);
  /* A load the kernel holds as k times what it keeps (a score whose
   * constant scale is left for the exponential to fold in), plus a row's
   * offset where *off is set to a temporary (else -1): prints what it
   * keeps into a new temporary, sets *k and returns it, or returns -1. */
  int (*scaled)(fl_cx *c, const fl_expr *ex, double *k, int *off);
  /* Variable a minus variable b (f32 with fvars), where the kernel has a
   * cheaper way to the same float: prints it into a new temporary and
   * returns it, or returns -1. */
  int (*difference)(fl_cx *c, int a, int b);
  void *user;
  const char *err; /* why printing failed, or NULL */
};

/* The device helpers every program starts with. */
extern const char fl_cuda_prelude[];

/* One line at the current indentation. */
void fl_cx_line(fl_cx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The statements of expression x of value `scope`; returns its temporary. */
int fl_cx_emit(fl_cx *c, int scope, int x);
/* "double" or "float". */
const char *fl_cx_real(const fl_cx *c);
/* The C type a value of dtype d is stored as ("fl_bf16", "float", ...). */
const char *fl_cuda_ctype(fl_dtype d);
/* The identity of a combiner, and the function that combines (NULL: +=). */
const char *fl_cx_comb_start(fl_combiner c);
const char *fl_cx_comb_fn(fl_combiner c);
/* C-order strides of value v. */
void fl_cx_strides(const fl_graph *g, const fl_value *v, int64_t *st);

#endif
