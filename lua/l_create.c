/* Tensor constructors: fl.tensor, fl.zeros, fl.ones, fl.full, fl.arange,
 * fl.randn, fl.rand, fl.load, and the default random seed. */
#include <string.h>

#include "fl_npy.h"
#include "fl_rng.h"
#include "l_tensor.h"

static const char *const create_keys[] = {"dtype", "device", NULL};
static const char *const random_keys[] = {"dtype", "device", "seed", NULL};

/* Reads a shape from a sequence of sizes or a single size at arg. */
static int check_shape(lua_State *L, int arg, int64_t *shape) {
  if (lua_isinteger(L, arg)) {
    shape[0] = lua_tointeger(L, arg);
    if (shape[0] < 0) luaL_argerror(L, arg, "size must not be negative");
    return 1;
  }
  if (!lua_istable(L, arg))
    luaL_argerror(L, arg, lua_pushfstring(L, "shape must be a table of sizes, got %s",
                                          luaL_typename(L, arg)));
  lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
  if (n > FL_MAX_DIMS)
    luaL_argerror(L, arg, lua_pushfstring(L, "shape has %d dimensions, at most %d are supported",
                                          (int)n, FL_MAX_DIMS));
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, arg, i + 1);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0)
      luaL_argerror(L, arg, lua_pushfstring(L, "size %d must be a non-negative integer, got %s",
                                            i + 1, ok ? lua_tostring(L, -1) : luaL_typename(L, -1)));
    shape[i] = v;
    lua_pop(L, 1);
  }
  return (int)n;
}

static int filled(lua_State *L, int shape_arg, int opts_arg, double v) {
  int64_t shape[FL_MAX_DIMS];
  int ndim = check_shape(L, shape_arg, shape);
  l_opts_check(L, opts_arg, create_keys);
  fl_tensor *t = l_tensor_alloc(L, l_opts_dtype(L, opts_arg, FL_F32),
                            l_opts_device(L, opts_arg, (fl_device){FL_CPU, 0}), ndim, shape);
  fl_err e;
  if (fl_tensor_fill(t, v, &e) != FL_OK) return l_raise(L, &e);
  return 1;
}

static int f_zeros(lua_State *L) { return filled(L, 1, 2, 0.0); }
static int f_ones(lua_State *L) { return filled(L, 1, 2, 1.0); }

static int f_full(lua_State *L) {
  double v = lua_isboolean(L, 2) ? (double)lua_toboolean(L, 2) : luaL_checknumber(L, 2);
  return filled(L, 1, 3, v);
}

/* Inside a traced function some constructors are symbolic: the front end
 * registers hooks (flashlight.trace_hooks[name]) that return a result while a
 * trace is running and nothing otherwise. Returns 1 with the result pushed
 * when the hook answered. */
static int trace_hook(lua_State *L, const char *name) {
  int nargs = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "flashlight.trace_hooks") != LUA_TTABLE ||
      lua_getfield(L, -1, name) != LUA_TFUNCTION) {
    lua_settop(L, nargs);
    return 0;
  }
  for (int i = 1; i <= nargs; i++) lua_pushvalue(L, i);
  lua_call(L, nargs, 1);
  if (lua_isnil(L, -1)) {
    lua_settop(L, nargs);
    return 0;
  }
  return 1;
}

static int f_arange(lua_State *L) {
  if (trace_hook(L, "arange")) return 1;
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0) return luaL_argerror(L, 1, "length must not be negative");
  l_opts_check(L, 2, create_keys);
  int64_t shape[1] = {n};
  fl_tensor *t = l_tensor_alloc(L, l_opts_dtype(L, 2, FL_I64),
                            l_opts_device(L, 2, (fl_device){FL_CPU, 0}), 1, shape);
  fl_err e;
  if (fl_tensor_arange(t, &e) != FL_OK) return l_raise(L, &e);
  return 1;
}

/* The default generator: unseeded calls draw seeds from (base, counter). */
#define SEED_KEY "flashlight.seed"

static uint64_t next_seed(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, SEED_KEY);
  uint64_t *st = lua_touserdata(L, -1); /* {base, counter} */
  lua_pop(L, 1);
  uint32_t w[4];
  fl_philox4x32(st[0], st[1]++, 2, w);
  return ((uint64_t)w[0] << 32) | w[1];
}

static int f_seed(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, SEED_KEY);
  uint64_t *st = lua_touserdata(L, -1);
  st[0] = (uint64_t)luaL_checkinteger(L, 1);
  st[1] = 0;
  return 0;
}

static int random_tensor(lua_State *L, int normal) {
  int64_t shape[FL_MAX_DIMS];
  int ndim = check_shape(L, 1, shape);
  l_opts_check(L, 2, random_keys);
  uint64_t seed = 0;
  int seeded = lua_istable(L, 2) && lua_getfield(L, 2, "seed") != LUA_TNIL;
  if (seeded) {
    int ok;
    seed = (uint64_t)lua_tointegerx(L, -1, &ok);
    if (!ok) return luaL_argerror(L, 2, "option 'seed' must be an integer");
  }
  lua_settop(L, 2);
  if (!seeded) seed = next_seed(L);
  fl_tensor *t = l_tensor_alloc(L, l_opts_dtype(L, 2, FL_F32),
                            l_opts_device(L, 2, (fl_device){FL_CPU, 0}), ndim, shape);
  fl_err e;
  fl_status s = normal ? fl_tensor_randn(t, seed, &e) : fl_tensor_rand(t, seed, &e);
  return s != FL_OK ? luaL_argerror(L, 2, e.msg) : 1;
}

static int f_randn(lua_State *L) { return random_tensor(L, 1); }
static int f_rand(lua_State *L) { return random_tensor(L, 0); }

static int f_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  l_opts_check(L, 2, create_keys);
  fl_dtype want = l_opts_dtype(L, 2, FL_DTYPE_COUNT);
  fl_device dev = l_opts_device(L, 2, (fl_device){FL_CPU, 0});
  fl_npy_load_opts o = {want == FL_BF16 ? FL_BF16 : FL_DTYPE_COUNT};
  l_tensor *u = l_tensor_new(L);
  fl_err e;
  if (fl_npy_load(path, &o, &u->t, &e) != FL_OK) return l_raise(L, &e);
  u->closed = 0;
  if (want == FL_DTYPE_COUNT) want = u->t.dtype;
  if (want == u->t.dtype && dev.kind == FL_CPU) return 1;
  fl_tensor *v = l_tensor_alloc(L, want, dev, u->t.ndim, u->t.shape);
  if (fl_tensor_convert(v, &u->t, &e) != FL_OK) return l_raise(L, &e);
  return 1;
}

/* fl.tensor: nested Lua tables of numbers or booleans. */

typedef struct table_walk {
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t at[FL_MAX_DIMS]; /* position being visited, for messages */
  int any_float, any_number, any_bool;
} table_walk;

static const char *where(lua_State *L, const table_walk *w, int depth) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < depth; i++) {
    lua_pushfstring(L, "[%d]", (int)w->at[i] + 1);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* Shape from the first element at each level. */
static void infer_shape(lua_State *L, table_walk *w) {
  lua_pushvalue(L, 1);
  while (lua_istable(L, -1)) {
    if (w->ndim == FL_MAX_DIMS)
      luaL_argerror(L, 1, lua_pushfstring(L, "nested deeper than %d dimensions", FL_MAX_DIMS));
    int64_t n = (int64_t)lua_rawlen(L, -1);
    w->shape[w->ndim++] = n;
    if (n == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

/* Checks the value on top at `depth` against the shape and notes leaf kinds. */
static void check_value(lua_State *L, table_walk *w, int depth) {
  int type = lua_type(L, -1);
  if (depth < w->ndim) {
    if (type != LUA_TTABLE)
      luaL_argerror(L, 1, lua_pushfstring(L, "ragged nested table: element %s is a %s where a "
                                          "table of %d was expected", where(L, w, depth),
                                          lua_typename(L, type), (int)w->shape[depth]));
    int64_t n = (int64_t)lua_rawlen(L, -1);
    if (n != w->shape[depth])
      luaL_argerror(L, 1, lua_pushfstring(L, "ragged nested table: element %s has %d entries, "
                                          "expected %d", where(L, w, depth), (int)n,
                                          (int)w->shape[depth]));
    luaL_checkstack(L, 2, "nested table");
    for (int64_t i = 0; i < n; i++) {
      w->at[depth] = i;
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      check_value(L, w, depth + 1);
      lua_pop(L, 1);
    }
    return;
  }
  if (type == LUA_TNUMBER) {
    w->any_number = 1;
    if (!lua_isinteger(L, -1)) w->any_float = 1;
  } else if (type == LUA_TBOOLEAN) {
    w->any_bool = 1;
  } else {
    luaL_argerror(L, 1, lua_pushfstring(L, "element %s is a %s, expected a number or boolean",
                                        where(L, w, depth), lua_typename(L, type)));
  }
}

static void store_leaf(lua_State *L, table_walk *w, void *buf, fl_dtype dt, size_t i) {
  if (lua_isboolean(L, -1)) {
    fl_elem_set_i64(buf, dt, i, lua_toboolean(L, -1));
  } else if (fl_dtype_is_float(dt) || dt == FL_BOOL) {
    fl_elem_set_f64(buf, dt, i, lua_tonumber(L, -1));
  } else {
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
      luaL_argerror(L, 1, lua_pushfstring(L, "element %s = %f is not an integer (dtype %s)",
                                          where(L, w, w->ndim), lua_tonumber(L, -1),
                                          fl_dtype_name(dt)));
    fl_elem_set_i64(buf, dt, i, v);
  }
}

static void fill_values(lua_State *L, table_walk *w, int depth, void *buf, fl_dtype dt,
                        size_t *off) {
  if (depth == w->ndim) {
    store_leaf(L, w, buf, dt, (*off)++);
    return;
  }
  for (int64_t i = 0; i < w->shape[depth]; i++) {
    w->at[depth] = i;
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    fill_values(L, w, depth + 1, buf, dt, off);
    lua_pop(L, 1);
  }
}

static int f_tensor(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 2);
  l_opts_check(L, 2, create_keys);
  table_walk w;
  memset(&w, 0, sizeof w);
  infer_shape(L, &w);
  lua_pushvalue(L, 1);
  check_value(L, &w, 0);
  lua_pop(L, 1);
  fl_dtype dflt = w.any_float ? FL_F32 : w.any_number ? FL_I64 : w.any_bool ? FL_BOOL : FL_F32;
  fl_dtype dt = l_opts_dtype(L, 2, dflt);
  fl_device dev = l_opts_device(L, 2, (fl_device){FL_CPU, 0});
  int64_t numel;
  fl_err e;
  if (fl_shape_check(w.ndim, w.shape, &numel, &e) != FL_OK) return luaL_argerror(L, 1, e.msg);
  size_t bytes = (size_t)numel * fl_dtype_size(dt);
  void *stage = lua_newuserdatauv(L, bytes ? bytes : 1, 0);
  lua_pushvalue(L, 1);
  size_t off = 0;
  fill_values(L, &w, 0, stage, dt, &off);
  lua_pop(L, 1);
  fl_tensor *t = l_tensor_alloc(L, dt, dev, w.ndim, w.shape);
  if (fl_tensor_upload(t, stage, &e) != FL_OK) return l_raise(L, &e);
  return 1;
}

static const luaL_Reg create_funcs[] = {
  {"tensor", f_tensor}, {"zeros", f_zeros}, {"ones", f_ones}, {"full", f_full},
  {"arange", f_arange}, {"randn", f_randn}, {"rand", f_rand}, {"load", f_load},
  {"seed", f_seed}, {NULL, NULL},
};

/* Adds the constructors to the module table on top of the stack. */
void l_create_register(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "flashlight.trace_hooks");
  uint64_t *st = lua_newuserdatauv(L, 2 * sizeof(uint64_t), 0);
  st[0] = 0x5eed;
  st[1] = 0;
  lua_setfield(L, LUA_REGISTRYINDEX, SEED_KEY);
  luaL_setfuncs(L, create_funcs, 0);
}
