/* fl.jit: NVRTC from Lua. fl.jit.compile(source, opts) compiles CUDA C++ to
 * a cubin (no GPU needed) and reports each kernel's registers and spills;
 * fl.jit.available() says whether NVRTC loaded.
 *
 * fl.jit.load(image) and module:launch(...) put a cubin on a GPU and run a
 * kernel. They are a minimal, low-level door for experiments and GPU specs:
 * written against the driver API but never run on a machine with a GPU in
 * CI (where they only fail with "CUDA is not available"). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl_cuda.h"
#include "fl_nvrtc.h"
#include "l_tensor.h"

#define L_JIT_MODULE_MT "flashlight.jit_module"
#define L_JIT_MAX_ARGS 64

static int f_available(lua_State *L) {
  char what[512];
  fl_err e;
  int ok = fl_nvrtc_describe(what, sizeof what, &e) == FL_OK;
  lua_pushboolean(L, ok);
  lua_pushstring(L, ok ? what : e.msg);
  return 2;
}

static int f_cache_dir(lua_State *L) {
  char dir[4096];
  if (fl_nvrtc_cache_dir(dir, sizeof dir)) lua_pushstring(L, dir);
  else lua_pushnil(L);
  return 1;
}

/* The string option `key` of the table at arg, or dflt. */
static const char *opt_string(lua_State *L, int arg, const char *key, const char *dflt) {
  if (lua_isnoneornil(L, arg)) return dflt;
  int t = lua_getfield(L, arg, key);
  const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : dflt;
  if (t != LUA_TNIL && t != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a string, got %s", key,
                                          luaL_typename(L, -1)));
  lua_pop(L, 1); /* the option table still holds the string */
  return s;
}

/* opts.options: a sequence of strings, as an array that lives on the stack. */
static const char **opt_list(lua_State *L, int arg, int *n) {
  *n = 0;
  if (lua_isnoneornil(L, arg)) return NULL;
  if (lua_getfield(L, arg, "options") == LUA_TNIL) return NULL;
  if (!lua_istable(L, -1)) luaL_argerror(L, arg, "option 'options' must be a list of strings");
  int len = (int)luaL_len(L, -1);
  const char **v = lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *v, 0);
  for (int i = 0; i < len; i++) {
    if (lua_geti(L, -2, i + 1) != LUA_TSTRING)
      luaL_argerror(L, arg, lua_pushfstring(L, "options[%d] must be a string", i + 1));
    v[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* the list still holds it */
  }
  *n = len;
  return v;
}

static void set_integer(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void push_kernels(lua_State *L, const fl_module_image *img) {
  lua_createtable(L, img->nkernels, 0);
  for (int i = 0; i < img->nkernels; i++) {
    const fl_kernel_report *k = &img->kernels[i];
    lua_createtable(L, 0, 6);
    lua_pushstring(L, k->name);
    lua_setfield(L, -2, "name");
    set_integer(L, "registers", k->registers);
    set_integer(L, "spill_stores", k->spill_stores);
    set_integer(L, "spill_loads", k->spill_loads);
    set_integer(L, "stack", k->stack);
    set_integer(L, "shared", k->shared);
    lua_rawseti(L, -2, i + 1);
  }
}

static void push_image(lua_State *L, const fl_module_image *img) {
  static const char *const hits[] = {"miss", "memory", "disk"};
  lua_createtable(L, 0, 10);
  lua_pushlstring(L, img->data, img->size);
  lua_setfield(L, -2, "image");
  lua_pushstring(L, img->kind == FL_IMAGE_CUBIN ? "cubin" : "ptx");
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, img->arch);
  lua_setfield(L, -2, "arch");
  lua_pushstring(L, img->log);
  lua_setfield(L, -2, "log");
  lua_pushboolean(L, img->cache != FL_CACHE_MISS);
  lua_setfield(L, -2, "cached");
  lua_pushstring(L, hits[img->cache]);
  lua_setfield(L, -2, "cache");
  lua_pushnumber(L, img->ms);
  lua_setfield(L, -2, "ms");
  push_kernels(L, img);
  lua_setfield(L, -2, "kernels");
}

/* The message for a failed compile: the core's, with more of the log than
 * its fixed-size message holds. Left on the stack. */
static const char *compile_message(lua_State *L, const fl_err *e, const fl_module_image *img) {
  const char *eol = strchr(e->msg, '\n');
  if (e->status != FL_ECOMPILE || !img->log || !eol) return lua_pushstring(L, e->msg);
  char excerpt[4096];
  fl_nvrtc_log_excerpt(img->log, excerpt, sizeof excerpt);
  lua_pushlstring(L, e->msg, (size_t)(eol - e->msg) + 1);
  lua_pushstring(L, excerpt);
  lua_concat(L, 2);
  return lua_tostring(L, -1);
}

/* fl.jit.compile(source [, {arch=, name=, options={...}}]) */
static int f_compile(lua_State *L) {
  static const char *const known[] = {"arch", "name", "options", NULL};
  lua_settop(L, 2);
  size_t len;
  const char *source = luaL_checklstring(L, 1, &len);
  if (strlen(source) != len) luaL_argerror(L, 1, "source contains a zero byte");
  l_opts_check(L, 2, known);
  const char *arch = opt_string(L, 2, "arch", "sm_90");
  const char *name = opt_string(L, 2, "name", "kernel.cu");
  int nopts;
  const char **opts = opt_list(L, 2, &nopts);
  fl_module_image img;
  fl_err e;
  if (fl_nvrtc_compile(source, name, arch, opts, nopts, &img, &e) != FL_OK) {
    const char *msg = compile_message(L, &e, &img);
    fl_module_image_free(&img);
    return luaL_error(L, "%s", msg);
  }
  push_image(L, &img);
  fl_module_image_free(&img);
  return 1;
}

/* ------------------------------------------------ modules on a GPU (minimal) */

typedef struct l_jit_module {
  fl_cuda_module m;
} l_jit_module;

/* fl.jit.load(compiled or image [, {device = "cuda:N"}]): a module on the GPU. */
static int f_load(lua_State *L) {
  static const char *const known[] = {"device", NULL};
  lua_settop(L, 2);
  if (lua_istable(L, 1)) lua_getfield(L, 1, "image");
  else lua_pushvalue(L, 1);
  size_t n;
  const char *image = lua_tolstring(L, -1, &n);
  if (!image || n == 0) luaL_argerror(L, 1, "expected a compiled result or its image");
  l_opts_check(L, 2, known);
  const char *dev = opt_string(L, 2, "device", "cuda");
  fl_device d = l_check_device(L, 2, dev);
  if (d.kind != FL_CUDA) luaL_argerror(L, 2, "a module loads onto a CUDA device");
  l_jit_module *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, L_JIT_MODULE_MT);
  fl_err e;
  if (fl_cuda_module_load(d.index, image, &u->m, &e) != FL_OK) return l_raise(L, &e);
  return 1;
}

static l_jit_module *check_module(lua_State *L, int arg) {
  l_jit_module *u = luaL_checkudata(L, arg, L_JIT_MODULE_MT);
  if (!u->m.handle) luaL_argerror(L, arg, "the module is closed");
  return u;
}

/* A grid or block size: a number, or a list of up to three. */
static void check_dim3(lua_State *L, int arg, unsigned out[3]) {
  out[0] = out[1] = out[2] = 1;
  if (lua_isinteger(L, arg)) {
    lua_Integer v = lua_tointeger(L, arg);
    luaL_argcheck(L, v > 0 && v <= UINT32_MAX, arg, "size out of range");
    out[0] = (unsigned)v;
    return;
  }
  luaL_checktype(L, arg, LUA_TTABLE);
  int n = (int)luaL_len(L, arg);
  luaL_argcheck(L, n >= 1 && n <= 3, arg, "expected 1 to 3 sizes");
  for (int i = 0; i < n; i++) {
    lua_geti(L, arg, i + 1);
    lua_Integer v = lua_tointeger(L, -1);
    luaL_argcheck(L, lua_isinteger(L, -1) && v > 0 && v <= UINT32_MAX, arg,
                  "sizes must be positive integers");
    out[i] = (unsigned)v;
    lua_pop(L, 1);
  }
}

typedef union arg_slot {
  uint64_t ptr;
  int32_t i32;
  float f32;
} arg_slot;

/* args: tensors on the module's device pass their device pointer, integers
 * pass as int32, other numbers as float. */
static int read_args(lua_State *L, int arg, int ordinal, arg_slot *slots, void **params) {
  luaL_checktype(L, arg, LUA_TTABLE);
  int n = (int)luaL_len(L, arg);
  luaL_argcheck(L, n <= L_JIT_MAX_ARGS, arg, "too many kernel arguments");
  for (int i = 0; i < n; i++) {
    lua_geti(L, arg, i + 1);
    l_tensor *t = luaL_testudata(L, -1, L_TENSOR_MT);
    if (t) {
      if (t->closed || t->t.device.kind != FL_CUDA || t->t.device.index != ordinal)
        luaL_argerror(L, arg, lua_pushfstring(L, "argument %d must be an open tensor on "
                                              "cuda:%d", i + 1, ordinal));
      slots[i].ptr = t->t.dptr;
    } else if (lua_isinteger(L, -1)) {
      lua_Integer v = lua_tointeger(L, -1);
      luaL_argcheck(L, v >= INT32_MIN && v <= INT32_MAX, arg, "integer argument beyond int32");
      slots[i].i32 = (int32_t)v;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      slots[i].f32 = (float)lua_tonumber(L, -1);
    } else {
      luaL_argerror(L, arg, lua_pushfstring(L, "argument %d: expected a tensor or a number",
                                            i + 1));
    }
    params[i] = &slots[i];
    lua_pop(L, 1);
  }
  return n;
}

/* module:launch(kernel, grid, block, args [, {shared = bytes}]); waits for
 * the kernel and raises if it failed. */
static int m_launch(lua_State *L) {
  static const char *const known[] = {"shared", NULL};
  l_jit_module *u = check_module(L, 1);
  const char *name = luaL_checkstring(L, 2);
  unsigned grid[3], block[3];
  check_dim3(L, 3, grid);
  check_dim3(L, 4, block);
  arg_slot slots[L_JIT_MAX_ARGS];
  void *params[L_JIT_MAX_ARGS];
  read_args(L, 5, u->m.ordinal, slots, params);
  l_opts_check(L, 6, known);
  lua_Integer shared = 0;
  if (lua_istable(L, 6) && lua_getfield(L, 6, "shared") != LUA_TNIL) {
    shared = lua_tointeger(L, -1);
    luaL_argcheck(L, lua_isinteger(L, -1) && shared >= 0 && shared <= INT32_MAX, 6,
                  "option 'shared' must be a byte count");
  }
  fl_cuda_function f;
  fl_err e;
  fl_status s = fl_cuda_function_get(&u->m, name, &f, &e);
  if (s == FL_OK && shared > 48 * 1024) s = fl_cuda_function_set_shared(&f, (int)shared, &e);
  if (s == FL_OK) s = fl_cuda_launch(&f, grid, block, (unsigned)shared, NULL, params, &e);
  if (s != FL_OK) return l_raise(L, &e);
  return 0;
}

static int m_close(lua_State *L) {
  l_jit_module *u = luaL_checkudata(L, 1, L_JIT_MODULE_MT);
  fl_cuda_module_unload(&u->m);
  return 0;
}

static int m_tostring(lua_State *L) {
  l_jit_module *u = luaL_checkudata(L, 1, L_JIT_MODULE_MT);
  if (u->m.handle) lua_pushfstring(L, "jit module (cuda:%d)", u->m.ordinal);
  else lua_pushliteral(L, "jit module (closed)");
  return 1;
}

static const luaL_Reg module_methods[] = {
  {"launch", m_launch}, {"close", m_close}, {NULL, NULL},
};

static const luaL_Reg module_meta[] = {
  {"__gc", m_close}, {"__close", m_close}, {"__tostring", m_tostring}, {"__index", NULL},
  {NULL, NULL},
};

static const luaL_Reg jit_funcs[] = {
  {"compile", f_compile}, {"available", f_available}, {"cache_dir", f_cache_dir},
  {"load", f_load}, {NULL, NULL},
};

/* Sets fl.jit in the module table on top of the stack. */
void l_jit_register(lua_State *L) {
  l_new_type(L, L_JIT_MODULE_MT, module_meta, module_methods);
  luaL_newlib(L, jit_funcs);
  lua_setfield(L, -2, "jit");
}
