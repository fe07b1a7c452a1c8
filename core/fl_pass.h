/* The passes: each rewrites a graph in place, keeps its values (the
 * evaluator gives the same numbers before and after), and writes what it
 * did, and what it left alone and why, to a log, a line each. */
#ifndef FL_PASS_H
#define FL_PASS_H

#include "fl_ir.h"
#include "fl_rewrite.h"
#include "fl_text.h"

typedef fl_status (*fl_pass_fn)(fl_graph *g, fl_text *log, fl_err *e);

typedef struct fl_pass {
  const char *name;
  fl_pass_fn run;
} fl_pass;

fl_status fl_pass_inline(fl_graph *g, fl_text *log, fl_err *e);
fl_status fl_pass_demote(fl_graph *g, fl_text *log, fl_err *e);
fl_status fl_pass_online(fl_graph *g, fl_text *log, fl_err *e);
fl_status fl_pass_tile(fl_graph *g, fl_text *log, fl_err *e);
fl_status fl_pass_blocksparse(fl_graph *g, fl_text *log, fl_err *e);

/* The passes in pipeline order; *n gets their count. */
const fl_pass *fl_passes(int *n);
const fl_pass *fl_pass_find(const char *name);

/* Rewrites every node's body (and rescale argument) through a load hook. */
fl_status fl_rewrite_loads(fl_graph *g, fl_load_hook hook, void *ctx, fl_err *e);

/* What inline and demote share: a hook substituting loads of some values,
 * run over every node (the hook's ctx is an fl_substitution), then a log
 * line "pass: N things what: names" and compaction. */
typedef struct fl_substitution {
  int count;
  char *done; /* per value: substituted at least once */
} fl_substitution;

void fl_substitution_mark(fl_substitution *sub, int v);
fl_status fl_substitute(fl_graph *g, fl_load_hook hook, const char *pass, const char *thing,
                        const char *what, fl_text *log, fl_err *e);

#endif
