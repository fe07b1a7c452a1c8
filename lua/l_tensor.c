/* The tensor type: a userdata with metatable "flashlight.tensor". */
#include <string.h>

#include "fl_npy.h"
#include "l_tensor.h"

l_tensor *l_tensor_new(lua_State *L) {
  l_tensor *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  u->closed = 1; /* nothing to free until the caller has allocated */
  luaL_setmetatable(L, L_TENSOR_MT);
  return u;
}

fl_tensor *l_tensor_alloc(lua_State *L, fl_dtype dt, fl_device dev, int ndim,
                          const int64_t *shape) {
  l_tensor *u = l_tensor_new(L);
  fl_err e;
  fl_status s = fl_tensor_alloc(&u->t, dt, dev, ndim, shape, &e);
  if (s == FL_ECUDA) {
    lua_gc(L, LUA_GCCOLLECT);
    s = fl_tensor_alloc(&u->t, dt, dev, ndim, shape, &e);
  }
  if (s != FL_OK) l_raise(L, &e);
  u->closed = 0;
  return &u->t;
}

fl_tensor *l_tensor_check(lua_State *L, int arg) {
  l_tensor *u = luaL_checkudata(L, arg, L_TENSOR_MT);
  if (u->closed) luaL_argerror(L, arg, "tensor is closed");
  return &u->t;
}

/* Dimension argument: 1-based, or negative from the end. Returns 0-based. */
static int check_dim(lua_State *L, int arg, const fl_tensor *t) {
  lua_Integer d = luaL_checkinteger(L, arg);
  lua_Integer n = t->ndim;
  if (d < 0) d += n + 1;
  if (d < 1 || d > n)
    luaL_argerror(L, arg, lua_pushfstring(L, "dimension %d out of range for a %d-d tensor",
                                          (int)luaL_checkinteger(L, arg), (int)n));
  return (int)d - 1;
}

static void push_shape(lua_State *L, const fl_tensor *t) {
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static int t_shape(lua_State *L) {
  push_shape(L, l_tensor_check(L, 1));
  return 1;
}

static int t_size(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  if (lua_isnoneornil(L, 2)) push_shape(L, t);
  else lua_pushinteger(L, t->shape[check_dim(L, 2, t)]);
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, l_tensor_check(L, 1)->ndim);
  return 1;
}

static int t_numel(lua_State *L) {
  lua_pushinteger(L, l_tensor_check(L, 1)->numel);
  return 1;
}

static int t_dtype(lua_State *L) {
  lua_pushstring(L, fl_dtype_name(l_tensor_check(L, 1)->dtype));
  return 1;
}

static int t_device(lua_State *L) {
  char buf[32];
  fl_tensor *t = l_tensor_check(L, 1);
  fl_device_format(t->device, buf, sizeof buf);
  lua_pushstring(L, t->device.kind == FL_CUDA && t->device.index == 0 ? "cuda" : buf);
  return 1;
}

/* Pushes element `off` of host buffer buf as the Lua type matching dt. */
static void push_elem(lua_State *L, const void *buf, fl_dtype dt, size_t off) {
  if (dt == FL_BOOL) lua_pushboolean(L, fl_elem_get_i64(buf, dt, off) != 0);
  else if (fl_dtype_is_float(dt)) lua_pushnumber(L, fl_elem_get_f64(buf, dt, off));
  else lua_pushinteger(L, fl_elem_get_i64(buf, dt, off));
}

static int t_get(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  int nargs = lua_gettop(L) - 1;
  if (nargs != t->ndim)
    return luaL_error(L, "get: a %d-d tensor needs %d indices, got %d", t->ndim, t->ndim, nargs);
  int64_t off = 0;
  for (int d = 0; d < t->ndim; d++) {
    lua_Integer i = luaL_checkinteger(L, d + 2);
    lua_Integer n = t->shape[d];
    lua_Integer k = i < 0 ? i + n : i - 1;
    if (k < 0 || k >= n)
      return luaL_argerror(L, d + 2, lua_pushfstring(L, "index %d out of range for dimension %d "
                                                     "of size %d", (int)i, d + 1, (int)n));
    off = off * n + k;
  }
  fl_err e;
  if (fl_dtype_is_float(t->dtype)) {
    double v;
    if (fl_tensor_get_f64(t, off, &v, &e) != FL_OK) return l_raise(L, &e);
    lua_pushnumber(L, v);
  } else {
    int64_t v;
    if (fl_tensor_get_i64(t, off, &v, &e) != FL_OK) return l_raise(L, &e);
    if (t->dtype == FL_BOOL) lua_pushboolean(L, v != 0);
    else lua_pushinteger(L, v);
  }
  return 1;
}

/* Nested tables for dims d.. of buf starting at element *off. */
static void push_nested(lua_State *L, const fl_tensor *t, const void *buf, int d, size_t *off) {
  if (d == t->ndim) {
    push_elem(L, buf, t->dtype, (*off)++);
    return;
  }
  luaL_checkstack(L, 4, "tensor too deep");
  lua_createtable(L, (int)t->shape[d], 0);
  for (int64_t i = 0; i < t->shape[d]; i++) {
    push_nested(L, t, buf, d + 1, off);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static int t_totable(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  const void *buf = t->host;
  if (t->device.kind != FL_CPU) {
    /* staged in a userdata so that an error while building the tables
     * cannot leak it */
    size_t n = fl_tensor_nbytes(t);
    void *stage = lua_newuserdatauv(L, n ? n : 1, 0);
    fl_err e;
    if (fl_tensor_download(t, stage, &e) != FL_OK) return l_raise(L, &e);
    buf = stage;
  }
  size_t off = 0;
  push_nested(L, t, buf, 0, &off);
  return 1;
}

/* t:to("f16"), t:to("cuda"), t:to{dtype=..., device=...}. Returns t itself
 * when nothing changes. */
static int t_to(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  fl_dtype dt = t->dtype;
  fl_device dev = t->device;
  if (lua_type(L, 2) == LUA_TTABLE) {
    static const char *const keys[] = {"dtype", "device", NULL};
    l_opts_check(L, 2, keys);
    dt = l_opts_dtype(L, 2, dt);
    dev = l_opts_device(L, 2, dev);
  } else {
    const char *s = luaL_checkstring(L, 2);
    fl_device d;
    if (fl_device_parse(s, &d) == 0) dev = d;
    else if (fl_dtype_parse(s, &dt) != 0)
      return luaL_argerror(L, 2, lua_pushfstring(L, "'%s' is neither a dtype (f32, f16, bf16, "
                                                 "i32, i64, bool) nor a device (cpu, cuda)", s));
  }
  if (dt == t->dtype && dev.kind == t->device.kind && dev.index == t->device.index) {
    lua_settop(L, 1);
    return 1;
  }
  fl_tensor *u = l_tensor_alloc(L, dt, dev, t->ndim, t->shape);
  fl_err e;
  if (fl_tensor_convert(u, t, &e) != FL_OK) return l_raise(L, &e);
  return 1;
}

/* Raises an argument error unless the tensor at arg has t's shape. */
static void check_same_shape(lua_State *L, const fl_tensor *t, int arg, const char *what) {
  const fl_tensor *o = l_tensor_check(L, arg);
  int same = t->ndim == o->ndim;
  for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == o->shape[d];
  if (same) return;
  char want[200], got[200];
  fl_shape_format(want, sizeof want, t->ndim, t->shape);
  fl_shape_format(got, sizeof got, o->ndim, o->shape);
  luaL_argerror(L, arg, lua_pushfstring(L, "%s has shape %s, the tensor %s", what, got, want));
}

/* t:copy_(src): src's values into t, in place, converted to t's dtype; src
 * has t's shape and may be on any device. Returns t. */
static int t_copy_(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  check_same_shape(L, t, 2, "the source");
  fl_tensor *src = l_tensor_check(L, 2);
  fl_err e;
  if (t != src && fl_tensor_convert(t, src, &e) != FL_OK) return l_raise(L, &e);
  lua_settop(L, 1);
  return 1;
}

/* t:max_diff(want): max |t - want| and max |want| (finite wants), for float
 * tensors of one shape on any devices. NaN in want is matched only by NaN;
 * NaN in t elsewhere gives an infinite difference. */
static int t_max_diff(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  check_same_shape(L, t, 2, "the reference");
  fl_tensor *want = l_tensor_check(L, 2);
  double err, scale;
  fl_err e;
  if (fl_tensor_max_diff(t, want, &err, &scale, &e) != FL_OK) return l_raise(L, &e);
  lua_pushnumber(L, err);
  lua_pushnumber(L, scale);
  return 2;
}

static int t_save(lua_State *L) {
  fl_tensor *t = l_tensor_check(L, 1);
  const char *path = luaL_checkstring(L, 2);
  static const char *const keys[] = {"raw", NULL};
  l_opts_check(L, 3, keys);
  int raw = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "raw");
    raw = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  fl_err e;
  if (fl_npy_save(path, t, raw, &e) != FL_OK) return l_raise(L, &e);
  lua_settop(L, 1);
  return 1;
}

static int t_free(lua_State *L) {
  l_tensor *u = luaL_checkudata(L, 1, L_TENSOR_MT);
  if (!u->closed) fl_tensor_free(&u->t);
  u->closed = 1;
  return 0;
}

static int t_tostring(lua_State *L) {
  l_tensor *u = luaL_checkudata(L, 1, L_TENSOR_MT);
  if (u->closed) {
    lua_pushliteral(L, "tensor(closed)");
    return 1;
  }
  char dev[32];
  fl_device_format(u->t.device, dev, sizeof dev);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "tensor(");
  luaL_addstring(&b, fl_dtype_name(u->t.dtype));
  luaL_addchar(&b, '[');
  for (int i = 0; i < u->t.ndim; i++) {
    if (i) luaL_addchar(&b, ',');
    lua_pushinteger(L, u->t.shape[i]);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, "], ");
  luaL_addstring(&b, dev);
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

fl_tensor *l_tensor_list(lua_State *L, int arg, int n, const char *what) {
  luaL_checktype(L, arg, LUA_TTABLE);
  int got = (int)lua_rawlen(L, arg);
  if (got != n) luaL_error(L, "%s: the program takes %d inputs, got %d", what, n, got);
  fl_tensor *ts = lua_newuserdatauv(L, sizeof(fl_tensor) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, arg, i + 1);
    l_tensor *u = luaL_testudata(L, -1, L_TENSOR_MT);
    if (!u || u->closed) luaL_error(L, "%s: input %d is not an open tensor", what, i + 1);
    ts[i] = u->t;
    lua_pop(L, 1);
  }
  return ts;
}

void l_tensor_push_list(lua_State *L, const fl_tensor *ts, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    l_tensor *u = l_tensor_new(L); /* cannot fail after the first: tensors are small */
    u->t = ts[i];
    u->closed = 0;
    lua_rawseti(L, -2, i + 1);
  }
}

static const luaL_Reg tensor_methods[] = {
  {"shape", t_shape}, {"size", t_size}, {"dim", t_dim}, {"numel", t_numel},
  {"dtype", t_dtype}, {"device", t_device}, {"get", t_get}, {"totable", t_totable},
  {"to", t_to}, {"copy_", t_copy_}, {"max_diff", t_max_diff}, {"save", t_save}, {"free", t_free}, {NULL, NULL},
};

static const luaL_Reg tensor_meta[] = {
  {"__gc", t_free}, {"__close", t_free}, {"__tostring", t_tostring},
  {"__index", NULL}, {NULL, NULL},
};

void l_tensor_register(lua_State *L) {
  l_new_type(L, L_TENSOR_MT, tensor_meta, tensor_methods);
}
