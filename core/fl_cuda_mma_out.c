/* The tensor-core kernel after its loop (see core/fl_cuda_mma.h): rows
 * flagged for the fixup, the row statistics and the weighted sums
 * normalized and stored from the accumulator layout. */
#include "fl_cuda_mma_printer.h"

#include <stdio.h>

int mma_needed(const printer *P, int v) { return fl_cuda_mma_needed(P->g, P->m, v); }

/* The C-order position in the grid of the row `row` (for the fixup flags). */
static void put_flat(printer *P, const char *dst, const char *row) {
  const fl_group *gr = &P->m->k->tiles.gr;
  fl_text_put(P->c.b, "%*sconst long long %s = 0", 2 * P->c.depth, "", dst);
  for (int s = 0; s < gr->ngrid; s++) {
    int64_t stride = 1;
    for (int u = s + 1; u < gr->ngrid; u++) stride *= sym_size(P, gr->grid[u]);
    if (s == P->m->row_slot) fl_text_put(P->c.b, " + (%s) * %lldLL", row, (long long)stride);
    else fl_text_put(P->c.b, " + gp%d * %lldLL", s, (long long)stride);
  }
  fl_text_put(P->c.b, ";\n");
}

static void put_fixup(printer *P) {
  char kind;
  int i, v;
  if (!P->m->fixup || FL_DBG_STEPS >= 0) return;
  for (int j = 0; (v = mma_rescaled(P, j, &kind, &i)) >= 0; j++) {
    char dst[16];
    snprintf(dst, sizeof dst, "mf%d", j);
    line(P, "float %s[2];", dst);
    mma_put_row_expr(P, v, val(P, v)->resc_arg, dst, "rc[r]");
    line(P, "#pragma unroll");
    line(P, "for (int r = 0; r < 2; ++r) if (!fl_finite(mf%d[r]) && (lane & 3) == 0 && (unsigned long long)ra[r] < %lluULL) {", j,
         (unsigned long long)P->m->rows);
    P->c.depth++;
    put_flat(P, "fp", "ra[r]");
    line(P, "fix[fp] = 1;");
    line(P, "fix[%lld] = 1; /* any */", (long long)P->positions);
    P->c.depth--;
    line(P, "}");
  }
}

/* A line: head, v's offset at the variables in scope, tail. */
static void put_offset_line(printer *P, int v, const char *head, const char *tail) {
  const fl_value *x = val(P, v);
  int64_t st[FL_MAX_DIMS];
  fl_cx_strides(P->g, x, st);
  fl_text_put(P->c.b, "%*s%s0", 2 * P->c.depth, "", head);
  for (int d = 0; d < x->ndim; d++) fl_text_put(P->c.b, " + x%d * %lldLL", d, (long long)st[d]);
  fl_text_put(P->c.b, "%s\n", tail);
}

/* Stores value v's element (variables in scope) from expression `what`. */
static void put_store(printer *P, int v, const char *what) {
  char head[48], tail[48];
  snprintf(head, sizeof head, "%sfl_st(v%d, ", FL_DBG_NOSTORE ? "if (ra[0] < 0) " : "", v);
  snprintf(tail, sizeof tail, ", %s);", what);
  put_offset_line(P, v, head, tail);
}

static void put_row_store(printer *P, int v, const char *arr) {
  line(P, "#pragma unroll");
  line(P, "for (int r = 0; r < 2; ++r) if ((lane & 3) == 0 && (unsigned long long)ra[r] < %lluULL) {",
       (unsigned long long)P->m->rows);
  P->c.depth++;
  mma_put_vars(P, v, "ra[r]", "0", "0", 0);
  char what[32];
  snprintf(what, sizeof what, "%s[r]", arr);
  put_store(P, v, what);
  P->c.depth--;
  line(P, "}");
}

/* v's dim held in the accumulator layout (a weighted sum's columns), or -1. */
static int register_dim(const printer *P, int v) {
  for (int d = 0; d < val(P, v)->ndim; d++)
    if (fl_cuda_mma_var_role(P->g, &P->m->k->tiles.gr, v, d) == -2) return d;
  return -1;
}

static int64_t register_size(const printer *P, int v) {
  int d = register_dim(P, v);
  return d < 0 ? 1 : sym_size(P, val(P, v)->dims[d]);
}

/* The value of weighted sum `acc` (or, acc < 0, of register epilogue v) at
 * the element (et, h) in scope, after its variables; returns its name. */
static const char *register_value(printer *P, int v, int acc, char *buf, size_t n) {
  P->elem = 1;
  P->row = "h >> 1";
  mma_put_vars(P, v, "ra[h >> 1]", "0", "e", 0);
  if (acc >= 0) snprintf(buf, n, "oa%d[et][h]", acc);
  else snprintf(buf, n, "t%d", fl_cx_emit(&P->c, v, val(P, v)->body));
  P->elem = 0;
  return buf;
}

/* Neighbouring elements of a thread (h, h + 1) are neighbours in memory:
 * the accumulator's dim is the output's innermost, of even size, and the
 * output is f32, bf16 or f16. */
static int pairs_stored(const printer *P, int v, int64_t E) {
  fl_dtype dt = fl_cuda_storage(P->g, v, P->out_dtype);
  int d = register_dim(P, v);
  if (!FL_PAIR_STORES || E % 2 || d < 0 || (dt != FL_F32 && dt != FL_BF16 && dt != FL_F16)) return 0;
  int64_t st[FL_MAX_DIMS];
  fl_cx_strides(P->g, val(P, v), st);
  return st[d] == 1;
}

/* The loop putting a thread's neighbouring pair of v's elements (h from
 * `first`, column et) into pv[0], pv[1] and, with `offset`, the first's
 * offset into po. */
static void put_pair_values(printer *P, int v, int acc, const char *first, int offset) {
  char what[32];
  line(P, "#pragma unroll");
  line(P, "for (int h = %s; h < %s + 2; ++h) {", first, first);
  P->c.depth++;
  line(P, "const long long e = et * 8 + (lane & 3) * 2 + (h & 1);");
  int scope = P->c.scope;
  register_value(P, v, acc, what, sizeof what);
  line(P, "pv[h & 1] = %s;", what);
  if (offset) put_offset_line(P, v, "if ((h & 1) == 0) po = ", ";");
  P->c.scope = scope;
  P->c.depth--;
  line(P, "}");
}

/* Eight neighbours a lane (see fl_quad_transpose): pairs stored, 2-byte
 * elements, E a multiple of 32 and every other stride a multiple of 8, so
 * that each store is 16 bytes, aligned. */
static int quads_stored(const printer *P, int v, int64_t E) {
  fl_dtype dt = fl_cuda_storage(P->g, v, P->out_dtype);
  if (!FL_QUAD_STORES || E % 32 || (dt != FL_BF16 && dt != FL_F16) || !pairs_stored(P, v, E)) return 0;
  const fl_value *x = val(P, v);
  int64_t st[FL_MAX_DIMS];
  fl_cx_strides(P->g, x, st);
  int rd = register_dim(P, v);
  for (int d = 0; d < x->ndim; d++)
    if (st[d] % 8 && sym_size(P, x->dims[d]) > 1 && d != rd) return 0;
  return 1;
}

/* A row's group of 32 columns: each thread's 4 x 2 elements packed in words
 * qw[et], transposed in the quad, stored 16 bytes a lane. */
static void put_quad_store(printer *P, int v, int acc, int64_t E) {
  fl_dtype dt = fl_cuda_storage(P->g, v, P->out_dtype);
  line(P, "#pragma unroll");
  line(P, "for (int eg = 0; eg < %lld; ++eg)", (long long)(E / 32));
  line(P, "#pragma unroll");
  line(P, "for (int r = 0; r < 2; ++r) {");
  P->c.depth++;
  line(P, "unsigned qw[4];");
  line(P, "#pragma unroll");
  line(P, "for (int k = 0; k < 4; ++k) {");
  P->c.depth++;
  line(P, "const int et = eg * 4 + k;");
  line(P, "float pv[2];");
  put_pair_values(P, v, acc, "r * 2", 0);
  line(P, "qw[k] = %s(pv[0], pv[1]);", dt == FL_BF16 ? "fl_pack_bf16" : "fl_pack_f16");
  P->c.depth--;
  line(P, "}");
  line(P, "fl_quad_transpose(qw);");
  line(P, "if ((unsigned long long)ra[r] < %lluULL) {", (unsigned long long)P->m->rows);
  P->c.depth++;
  line(P, "const long long e = eg * 32 + (lane & 3) * 8;");
  int scope = P->c.scope;
  mma_put_vars(P, v, "ra[r]", "0", "e", 0);
  char head[64];
  snprintf(head, sizeof head, "%sfl_st8(v%d, ", FL_DBG_NOSTORE ? "if (qw[0] == 0x7fc00001u) " : "", v);
  put_offset_line(P, v, head, ", qw);");
  P->c.scope = scope;
  P->c.depth--;
  line(P, "}");
  P->c.depth--;
  line(P, "}");
}

/* A weighted sum or a register epilogue, element by element of the accumulator layout. */
static void put_register_store(printer *P, int v, int acc) {
  int64_t E = register_size(P, v);
  if (quads_stored(P, v, E)) {
    put_quad_store(P, v, acc, E);
    return;
  }
  int pair = pairs_stored(P, v, E);
  char what[32];
  line(P, "#pragma unroll");
  line(P, "for (int et = 0; et < %lld; ++et)", (long long)((E + 7) / 8));
  line(P, "#pragma unroll");
  line(P, pair ? "for (int hp = 0; hp < 4; hp += 2) {" : "for (int h = 0; h < 4; ++h) {");
  P->c.depth++;
  if (!pair) {
    line(P, "const long long e = et * 8 + (lane & 3) * 2 + (h & 1);");
    line(P, "if (e < %lldLL && (unsigned long long)ra[h >> 1] < %lluULL) {", (long long)E,
         (unsigned long long)P->m->rows);
    P->c.depth++;
    put_store(P, v, register_value(P, v, acc, what, sizeof what));
  } else {
    line(P, "if (et * 8 + (lane & 3) * 2 < %lld && (unsigned long long)ra[hp >> 1] < %lluULL) {", (long long)E,
         (unsigned long long)P->m->rows);
    P->c.depth++;
    line(P, "float pv[2];");
    line(P, "long long po = 0;");
    put_pair_values(P, v, acc, "hp", 1);
    line(P, "%sfl_st2(v%d, po, pv[0], pv[1]);", FL_DBG_NOSTORE ? "if (__float_as_uint(pv[0]) == 0x7fc00001u) " : "", v);
  }
  P->c.depth--;
  line(P, "}");
  P->c.depth--;
  line(P, "}");
}

void mma_put_finish(printer *P) {
  const fl_mma_group *m = P->m;
  for (int i = 0; i < m->ns; i++) {
    int a = m->s_ones[i];
    if (a < 0) {
      line(P, "ls%d[0] = fl_quad_sum(ls%d[0]), ls%d[1] = fl_quad_sum(ls%d[1]);", i, i, i, i);
      continue;
    }
    int w = mma_acc_tiles(m, a) - 1; /* every column of ones holds the row's sum */
    char by[32] = "";
    if (m->s_ones_by[i] != 1.0) snprintf(by, sizeof by, " / %.9ef", m->s_ones_by[i]);
    line(P, "ls%d[0] = oa%d[%d][0]%s, ls%d[1] = oa%d[%d][2]%s;", i, a, w, by, i, a, w, by);
  }
  put_fixup(P);
  for (int i = 0; i < m->ne; i++) {
    if (m->e_reg[i]) continue;
    char dst[16];
    snprintf(dst, sizeof dst, "ep%d", i);
    line(P, "float %s[2];", dst);
    mma_put_row_expr(P, m->e[i], val(P, m->e[i])->body, dst, "rc[r]");
  }
  char arr[16];
  for (int i = 0; i < m->nx; i++)
    if (mma_needed(P, m->x[i])) snprintf(arr, sizeof arr, "mx%d", i), put_row_store(P, m->x[i], arr);
  for (int i = 0; i < m->ns; i++)
    if (mma_needed(P, m->s[i])) snprintf(arr, sizeof arr, "ls%d", i), put_row_store(P, m->s[i], arr);
  for (int i = 0; i < m->na; i++)
    if (mma_needed(P, m->a[i])) put_register_store(P, m->a[i], i);
  for (int i = 0; i < m->ne; i++) {
    if (!mma_needed(P, m->e[i])) continue;
    if (m->e_reg[i]) put_register_store(P, m->e[i], -1);
    else snprintf(arr, sizeof arr, "ep%d", i), put_row_store(P, m->e[i], arr);
  }
}
