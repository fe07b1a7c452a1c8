/* The reduction-IR graph: a userdata with metatable "flashlight.graph",
 * built from Lua by the tracer (lua/flashlight/trace.lua) and evaluated by
 * the reference executor. Ids are 1-based on the Lua side. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_ir.h"
#include "fl_pass.h"
#include "fl_plan.h"
#include "l_plan.h"
#include "l_tensor.h"

#define L_GRAPH_MT "flashlight.graph"

static fl_graph *check_graph(lua_State *L, int arg) {
  return luaL_checkudata(L, arg, L_GRAPH_MT);
}

static int g_new(lua_State *L) {
  fl_graph *g = lua_newuserdatauv(L, sizeof *g, 0);
  fl_graph_init(g);
  luaL_setmetatable(L, L_GRAPH_MT);
  return 1;
}

static int g_gc(lua_State *L) {
  fl_graph_free(check_graph(L, 1));
  return 0;
}

static int check_id(lua_State *L, lua_Integer v, int n, const char *what) {
  if (v < 1 || v > n) return luaL_error(L, "bad %s id %I (this graph has %d)", what, v, n);
  return (int)v - 1;
}

/* The 1-based id at idx as a 0-based expression id, or an error. */
static int expr_ref(lua_State *L, const fl_graph *g, int idx) {
  int isint;
  lua_Integer id = lua_tointegerx(L, idx, &isint);
  if (!isint) return luaL_error(L, "expression id expected, got %s", luaL_typename(L, idx));
  return check_id(L, id, g->nexprs, "expression");
}

/* The 1-based symbol ids in the sequence at idx (none when it is nil). */
static int read_syms(lua_State *L, int idx, int *dims) {
  if (lua_isnil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  if (n > FL_MAX_DIMS) return luaL_error(L, "more than %d dimensions", FL_MAX_DIMS);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    dims[i] = (int)luaL_checkinteger(L, -1) - 1;
    lua_pop(L, 1);
  }
  return n;
}

static int g_sym(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  fl_err e;
  int id = fl_graph_sym(g, luaL_checkstring(L, 2), luaL_checkinteger(L, 3), &e);
  if (id < 0) return l_raise(L, &e);
  lua_pushinteger(L, id + 1);
  return 1;
}

/* g:input(name, dtype, {syms}) */
static int g_input(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  const char *name = luaL_checkstring(L, 2);
  fl_dtype dt = l_check_dtype(L, 3, luaL_checkstring(L, 3));
  int dims[FL_MAX_DIMS];
  luaL_checktype(L, 4, LUA_TTABLE);
  int n = read_syms(L, 4, dims);
  fl_err e;
  int id = fl_graph_input(g, name, dt, n, dims, &e);
  if (id < 0) return l_raise(L, &e);
  lua_pushinteger(L, id + 1);
  return 1;
}

/* An expression table comes in two forms: the array {op, fields...,
 * operands...} and the record g:expr returns, {op =, args = {...}, ...}.
 * Pushes the field called `name` in the record form, at `pos` in the array. */
static void push_field(lua_State *L, int t, int record, const char *name, int pos) {
  if (record) lua_getfield(L, t, name);
  else lua_rawgeti(L, t, pos);
}

/* An integer field (an id or a count: an int). */
static int int_field(lua_State *L, int t, int record, const char *name, int pos) {
  push_field(L, t, record, name, pos);
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < -INT_MAX || v > INT_MAX)
    return luaL_error(L, "%s: an integer expected, got %s", name,
                      isint ? "one out of range" : luaL_typename(L, -1));
  lua_pop(L, 1);
  return (int)v;
}

/* Reads the fields of x->op's kind into x; returns the array position of
 * the first operand. */
static int read_fields(lua_State *L, fl_graph *g, int t, int record, fl_expr *x) {
  switch (x->op) {
  case FL_X_CONST: {
    push_field(L, t, record, "value", 2);
    int isnum;
    x->value = lua_tonumberx(L, -1, &isnum);
    if (!isnum) return luaL_error(L, "const: a number expected, got %s", luaL_typename(L, -1));
    lua_pop(L, 1);
    return 3;
  }
  case FL_X_VAR:
    x->var = int_field(L, t, record, "var", 2) - 1;
    return 3;
  case FL_X_LOAD:
    x->src = check_id(L, int_field(L, t, record, "src", 2), g->nvals, "value");
    return 3;
  case FL_X_REDUCE: {
    push_field(L, t, record, "comb", 2);
    const char *comb = lua_tostring(L, -1);
    if (!comb || fl_combiner_parse(comb, &x->comb) != 0 || x->comb == FL_COMB_NONE)
      return luaL_error(L, "reduce: unknown combiner '%s' (sum, max or min)", comb ? comb : "?");
    lua_pop(L, 1);
    x->var = int_field(L, t, record, "var", 3) - 1;
    x->nbind = int_field(L, t, record, "nbind", 4);
    return 5;
  }
  default:
    return 2;
  }
}

static int build_expr(lua_State *L, fl_graph *g, int depth);

/* Builds (or looks up) the operands in t[first..], into x->args. */
static void read_operands(lua_State *L, fl_graph *g, int t, int first, fl_expr *x, int depth) {
  int n = (int)lua_rawlen(L, t);
  if (n - first + 1 > FL_MAX_ARGS)
    luaL_error(L, "%s: too many operands (%d)", fl_xop_name(x->op), n - first + 1);
  for (int i = first; i <= n; i++) {
    lua_rawgeti(L, t, i);
    x->args[x->nargs++] = build_expr(L, g, depth + 1);
    lua_pop(L, 1);
  }
}

/* Expressions arrive as arrays: {"const", v}, {"var", k}, {"load", value,
 * index...}, {"reduce", comb, k, n, body}, {op, operand...}, with variables
 * and values numbered from 1; or as the records g:expr returns. An operand
 * (or the whole) may be an existing expression: its id, or {"ref", id}.
 * Returns the expression's id. */
static int build_expr(lua_State *L, fl_graph *g, int depth) {
  if (depth > 200) return luaL_error(L, "expression nested too deeply");
  luaL_checkstack(L, 4, "expression");
  int t = lua_gettop(L);
  if (lua_type(L, t) == LUA_TNUMBER) return expr_ref(L, g, t);
  if (!lua_istable(L, t)) return luaL_error(L, "expression expected, got %s", luaL_typename(L, t));
  lua_getfield(L, t, "op");
  int record = !lua_isnil(L, -1);
  if (!record) {
    lua_pop(L, 1);
    lua_rawgeti(L, t, 1);
  }
  const char *name = lua_tostring(L, -1);
  if (!record && name && strcmp(name, "ref") == 0) {
    lua_rawgeti(L, t, 2);
    int id = expr_ref(L, g, -1);
    lua_pop(L, 2);
    return id;
  }
  fl_expr x;
  memset(&x, 0, sizeof x);
  if (!name || fl_xop_parse(name, &x.op) != 0)
    return luaL_error(L, "unknown expression operator '%s'", name ? name : "?");
  lua_pop(L, 1);
  int first = read_fields(L, g, t, record, &x);
  if (record) {
    lua_getfield(L, t, "args");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1))
        return luaL_error(L, "%s: 'args' must be a table of operands, got %s", name,
                          luaL_typename(L, -1));
      read_operands(L, g, lua_gettop(L), 1, &x, depth);
    }
    lua_pop(L, 1);
  } else if (x.op != FL_X_CONST && x.op != FL_X_VAR) {
    read_operands(L, g, t, first, &x, depth);
  }
  fl_err e;
  int id = fl_graph_expr(g, &x, &e);
  if (id < 0) return l_raise(L, &e);
  return id;
}

static void copy_string_field(lua_State *L, int idx, const char *field, char *dst, size_t n) {
  lua_getfield(L, idx, field);
  const char *s = lua_tostring(L, -1);
  snprintf(dst, n, "%s", s ? s : "");
  lua_pop(L, 1);
}

/* g:node{name=, op=, origin=, dtype=, dims={}, red={}, comb=, body=} */
static int g_node(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  fl_value v;
  memset(&v, 0, sizeof v);
  copy_string_field(L, 2, "name", v.name, sizeof v.name);
  copy_string_field(L, 2, "op", v.op, sizeof v.op);
  copy_string_field(L, 2, "origin", v.origin, sizeof v.origin);
  lua_getfield(L, 2, "dtype");
  v.dtype = l_check_dtype(L, 2, lua_tostring(L, -1));
  lua_getfield(L, 2, "comb");
  const char *comb = lua_tostring(L, -1);
  if (fl_combiner_parse(comb ? comb : "none", &v.comb) != 0)
    return luaL_error(L, "unknown combiner '%s'", comb);
  lua_pop(L, 2);
  lua_getfield(L, 2, "dims");
  v.ndim = read_syms(L, lua_gettop(L), v.dims);
  lua_getfield(L, 2, "red");
  v.nred = read_syms(L, lua_gettop(L), v.red);
  lua_pop(L, 2);
  lua_getfield(L, 2, "body");
  v.body = build_expr(L, g, 0);
  lua_pop(L, 1);
  fl_err e;
  int id = fl_graph_node(g, &v, &e);
  if (id < 0) return l_raise(L, &e);
  lua_pushinteger(L, id + 1);
  return 1;
}

static int g_output(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  fl_err e;
  int v = check_id(L, (int)luaL_checkinteger(L, 2), g->nvals, "value");
  if (fl_graph_output(g, v, &e) != FL_OK) return l_raise(L, &e);
  return 0;
}

static int g_tostring(lua_State *L) {
  char *s = fl_graph_dump(check_graph(L, 1));
  if (!s) return luaL_error(L, "out of memory printing the graph");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

/* g:eval({tensors...} [, dtype [, tile]]) -> {tensors...}: the CPU
 * executor on the graph's kernel plan; tile > 0 cuts every group's loop
 * and row blocks in tiles of `tile` positions instead of the tiling's. */
static int g_eval(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  fl_dtype out_dt = lua_isnoneornil(L, 3) ? FL_DTYPE_COUNT : l_check_dtype(L, 3, lua_tostring(L, 3));
  lua_Integer tile = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, tile >= 0, 4, "the tile must be a non-negative integer");
  fl_tensor *ins = l_tensor_list(L, 2, g->ninputs, "eval");
  fl_tensor outs[FL_MAX_DIMS];
  fl_plan plan;
  fl_err e;
  fl_status s = fl_plan_build(g, (int64_t)tile, &plan, &e);
  if (s == FL_OK) {
    s = fl_plan_run(&plan, ins, out_dt, outs, &e);
    fl_plan_free(&plan);
  }
  if (s != FL_OK) return l_raise(L, &e);
  l_tensor_push_list(L, outs, g->noutputs);
  return 1;
}

/* g:plan([tile]) -> the kernel plan of the graph as it is now; tile > 0
 * as for g:eval. */
static int g_plan(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  lua_Integer tile = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, tile >= 0, 2, "the tile must be a non-negative integer");
  lua_settop(L, 1);
  return l_plan_new(L, g, tile);
}

static int g_counts(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  lua_pushinteger(L, g->ninputs);
  lua_pushinteger(L, g->nvals - g->ninputs);
  lua_pushinteger(L, g->noutputs);
  return 3;
}

/* The names of syms ids[0..n), as a new sequence on the stack. */
static void push_sym_names(lua_State *L, const fl_graph *g, int n, const int *ids) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, g->syms[ids[i]].name);
    lua_rawseti(L, -2, i + 1);
  }
}

static const char *const rescale_names[] = {
  [FL_RESCALE_NONE] = NULL, [FL_RESCALE_EXP] = "exp", [FL_RESCALE_EXP2] = "exp2",
  [FL_RESCALE_POW] = "pow",
};

/* An online group member's rescale (see fl_rescale in core/fl_ir.h). */
static void set_rescale_fields(lua_State *L, const fl_value *val) {
  if (val->resc == FL_RESCALE_NONE) return;
  lua_pushstring(L, rescale_names[val->resc]);
  lua_setfield(L, -2, "resc");
  lua_pushinteger(L, val->resc_arg + 1);
  lua_setfield(L, -2, "resc_arg");
  lua_pushnumber(L, val->resc_pow);
  lua_setfield(L, -2, "resc_pow");
}

/* g:value(id) -> {id, name, kind = "input"|"node", dtype, dims = {names},
 * shape = {sizes}, and for nodes red = {names}, locals = {names}, comb, op,
 * origin, body (an expression id), group, epilogue, and for online group
 * members with a rescale resc ("exp", "exp2" or "pow"), resc_arg (an
 * expression id) and resc_pow}. A node's variables are numbered 1.. in the
 * order dims, red, locals (what {"var", k} in an expression names). */
static int g_value(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  int v = check_id(L, (int)luaL_checkinteger(L, 2), g->nvals, "value");
  const fl_value *val = &g->vals[v];
  lua_createtable(L, 0, 16);
  lua_pushinteger(L, v + 1);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, val->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, v < g->ninputs ? "input" : "node");
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, fl_dtype_name(val->dtype));
  lua_setfield(L, -2, "dtype");
  push_sym_names(L, g, val->ndim, val->dims);
  lua_setfield(L, -2, "dims");
  lua_createtable(L, val->ndim, 0);
  for (int i = 0; i < val->ndim; i++) {
    lua_pushinteger(L, g->syms[val->dims[i]].size);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "shape");
  if (v >= g->ninputs) {
    push_sym_names(L, g, val->nred, val->red);
    lua_setfield(L, -2, "red");
    lua_pushstring(L, fl_combiner_name(val->comb));
    lua_setfield(L, -2, "comb");
    lua_pushstring(L, val->op);
    lua_setfield(L, -2, "op");
    lua_pushstring(L, val->origin);
    lua_setfield(L, -2, "origin");
    lua_pushinteger(L, val->group);
    lua_setfield(L, -2, "group");
    lua_pushboolean(L, val->epilogue);
    lua_setfield(L, -2, "epilogue");
    push_sym_names(L, g, val->nloc, val->loc);
    lua_setfield(L, -2, "locals");
    lua_pushinteger(L, val->body + 1);
    lua_setfield(L, -2, "body");
    set_rescale_fields(L, val);
  }
  return 1;
}

/* g:expr(id) -> {id, op, args = {expression ids}, and by op: value (const),
 * var (var; for reduce the first variable it binds), src (load: the value
 * id), comb and nbind (reduce)}. A load's args are its indices. */
static int g_expr(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  int id = check_id(L, luaL_checkinteger(L, 2), g->nexprs, "expression");
  const fl_expr *x = &g->exprs[id];
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, id + 1);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, fl_xop_name(x->op));
  lua_setfield(L, -2, "op");
  lua_createtable(L, x->nargs, 0);
  for (int i = 0; i < x->nargs; i++) {
    lua_pushinteger(L, x->args[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "args");
  if (x->op == FL_X_CONST) {
    lua_pushnumber(L, x->value);
    lua_setfield(L, -2, "value");
  } else if (x->op == FL_X_VAR || x->op == FL_X_REDUCE) {
    lua_pushinteger(L, x->var + 1);
    lua_setfield(L, -2, "var");
  } else if (x->op == FL_X_LOAD) {
    lua_pushinteger(L, x->src + 1);
    lua_setfield(L, -2, "src");
  }
  if (x->op == FL_X_REDUCE) {
    lua_pushstring(L, fl_combiner_name(x->comb));
    lua_setfield(L, -2, "comb");
    lua_pushinteger(L, x->nbind);
    lua_setfield(L, -2, "nbind");
  }
  return 1;
}

/* g:expr_new(expr) -> id: builds an expression from an array (the form
 * g:node's body takes) or a record (the form g:expr returns), operands
 * possibly existing ids (see build_expr). Nothing uses it until a body does
 * (g:set_body). */
static int g_expr_new(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  luaL_argexpected(L, lua_istable(L, 2) || lua_isinteger(L, 2), 2, "expression array or id");
  lua_settop(L, 2);
  lua_pushinteger(L, build_expr(L, g, 0) + 1);
  return 1;
}

/* g:nexprs() -> the number of expressions; ids run 1..nexprs. */
static int g_nexprs(lua_State *L) {
  lua_pushinteger(L, check_graph(L, 1)->nexprs);
  return 1;
}

/* g:set_body(value id, expression id): the node's body becomes the
 * expression, which must use only the node's variables (and its locals in
 * nested reductions) and load only values before it. */
static int g_set_body(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  int v = check_id(L, luaL_checkinteger(L, 2), g->nvals, "value");
  luaL_argcheck(L, v >= g->ninputs, 2, "an input has no body");
  int x = check_id(L, luaL_checkinteger(L, 3), g->nexprs, "expression");
  fl_err e;
  if (fl_graph_set_body(g, v, x, &e) != FL_OK) return l_raise(L, &e);
  return 0;
}

/* g:compact(): what every pass ends with: drops the values no output needs
 * and orders the rest so that loads read earlier values and each online
 * group stands together. Value and expression ids change. */
static int g_compact(lua_State *L) {
  fl_err e;
  if (fl_graph_compact(check_graph(L, 1), &e) != FL_OK) return l_raise(L, &e);
  return 0;
}

/* g:run(name) -> log: runs one pass on the graph, in place. */
static int g_run(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  const char *name = luaL_checkstring(L, 2);
  const fl_pass *p = fl_pass_find(name);
  if (!p) return luaL_argerror(L, 2, lua_pushfstring(L, "no pass named '%s'", name));
  fl_text log = {0};
  fl_err e;
  fl_status s = p->run(g, &log, &e);
  char *text = fl_text_take(&log);
  if (s != FL_OK) {
    free(text);
    return l_raise(L, &e);
  }
  lua_pushstring(L, text ? text : "");
  free(text);
  return 1;
}

/* core.pass_names() -> {names}, in pipeline order */
static int g_pass_names(lua_State *L) {
  int n;
  const fl_pass *p = fl_passes(&n);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, p[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* g:outputs() -> {value ids} */
static int g_outputs(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  lua_createtable(L, g->noutputs, 0);
  for (int i = 0; i < g->noutputs; i++) {
    lua_pushinteger(L, g->outputs[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const luaL_Reg graph_methods[] = {
  {"sym", g_sym}, {"input", g_input}, {"node", g_node}, {"output", g_output},
  {"eval", g_eval}, {"plan", g_plan}, {"counts", g_counts}, {"value", g_value}, {"outputs", g_outputs},
  {"run", g_run}, {"expr", g_expr}, {"expr_new", g_expr_new}, {"nexprs", g_nexprs},
  {"set_body", g_set_body}, {"compact", g_compact},
  {NULL, NULL},
};

static const luaL_Reg graph_meta[] = {
  {"__gc", g_gc}, {"__close", g_gc}, {"__tostring", g_tostring}, {"__index", NULL},
  {NULL, NULL},
};

/* Adds core.new_graph to the table on top of the stack. */
void l_graph_register(lua_State *L) {
  l_new_type(L, L_GRAPH_MT, graph_meta, graph_methods);
  lua_pushcfunction(L, g_new);
  lua_setfield(L, -2, "new_graph");
  lua_pushcfunction(L, g_pass_names);
  lua_setfield(L, -2, "pass_names");
}
