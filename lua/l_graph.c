/* The reduction-IR graph: a userdata with metatable "flashlight.graph",
 * built from Lua by the tracer (lua/flashlight/trace.lua) and evaluated by
 * the reference executor. Ids are 1-based on the Lua side. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_ir.h"
#include "fl_pass.h"
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

static int check_id(lua_State *L, int v, int n, const char *what) {
  if (v < 1 || v > n) return luaL_error(L, "bad %s id %d", what, v);
  return v - 1;
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

/* Expressions arrive as arrays: {"const", v}, {"var", k}, {"load", value,
 * index...}, {op, operand...}. Returns the new expression's id. */
static int build_expr(lua_State *L, fl_graph *g, int depth) {
  if (depth > 200) return luaL_error(L, "expression nested too deeply");
  luaL_checkstack(L, 4, "expression");
  int t = lua_gettop(L);
  if (!lua_istable(L, t)) return luaL_error(L, "expression expected, got %s", luaL_typename(L, t));
  lua_rawgeti(L, t, 1);
  const char *name = lua_tostring(L, -1);
  fl_expr x;
  memset(&x, 0, sizeof x);
  if (!name || fl_xop_parse(name, &x.op) != 0)
    return luaL_error(L, "unknown expression operator '%s'", name ? name : "?");
  lua_pop(L, 1);
  int n = (int)lua_rawlen(L, t), first = 2;
  if (x.op == FL_X_CONST || x.op == FL_X_VAR) {
    lua_rawgeti(L, t, 2);
    if (x.op == FL_X_CONST) x.value = luaL_checknumber(L, -1);
    else x.var = (int)luaL_checkinteger(L, -1) - 1;
    lua_pop(L, 1);
    first = n + 1;
  } else if (x.op == FL_X_LOAD) {
    lua_rawgeti(L, t, 2);
    x.src = check_id(L, (int)luaL_checkinteger(L, -1), g->nvals, "value");
    lua_pop(L, 1);
    first = 3;
  }
  if (n - first + 1 > FL_MAX_ARGS) return luaL_error(L, "too many operands for %s", name);
  for (int i = first; i <= n; i++) {
    lua_rawgeti(L, t, i);
    x.args[x.nargs++] = build_expr(L, g, depth + 1);
    lua_pop(L, 1);
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

/* g:eval({tensors...} [, dtype [, tile]]) -> {tensors...}: the reference
 * executor; online groups walk their loops in tiles of `tile` positions. */
static int g_eval(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  fl_dtype out_dt = lua_isnoneornil(L, 3) ? FL_DTYPE_COUNT : l_check_dtype(L, 3, lua_tostring(L, 3));
  lua_Integer tile = luaL_optinteger(L, 4, 0);
  luaL_argcheck(L, tile >= 0, 4, "the tile must be a non-negative integer");
  int n = (int)lua_rawlen(L, 2);
  if (n != g->ninputs)
    return luaL_error(L, "eval: the program takes %d inputs, got %d", g->ninputs, n);
  fl_tensor *ins = lua_newuserdatauv(L, sizeof(fl_tensor) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    l_tensor *u = luaL_testudata(L, -1, L_TENSOR_MT);
    if (!u || u->closed)
      return luaL_error(L, "eval: input %d is not an open tensor", i + 1);
    ins[i] = u->t;
    lua_pop(L, 1);
  }
  fl_tensor outs[FL_MAX_DIMS];
  fl_err e;
  if (fl_graph_eval_tiled(g, ins, out_dt, outs, (int64_t)tile, &e) != FL_OK)
    return l_raise(L, &e);
  lua_createtable(L, g->noutputs, 0);
  for (int i = 0; i < g->noutputs; i++) {
    l_tensor *u = l_tensor_new(L); /* cannot fail after the first: tensors are small */
    u->t = outs[i];
    u->closed = 0;
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
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

/* g:value(id) -> {name, kind = "input"|"node", dtype, dims = {names},
 * shape = {sizes}, and for nodes red = {names}, comb, op, origin}. */
static int g_value(lua_State *L) {
  fl_graph *g = check_graph(L, 1);
  int v = check_id(L, (int)luaL_checkinteger(L, 2), g->nvals, "value");
  const fl_value *val = &g->vals[v];
  lua_createtable(L, 0, 9);
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
  }
  return 1;
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
  {"eval", g_eval}, {"counts", g_counts}, {"value", g_value}, {"outputs", g_outputs},
  {"run", g_run},
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
