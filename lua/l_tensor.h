/* The tensor userdata shared by the binding's files. */
#ifndef L_TENSOR_H
#define L_TENSOR_H

#include <lauxlib.h>
#include <lua.h>

#include "fl_tensor.h"

#define L_TENSOR_MT "flashlight.tensor"

typedef struct l_tensor {
  fl_tensor t;
  int closed;
} l_tensor;

/* A new userdata with an empty tensor, on top of the stack; the caller
 * fills ->t (with fl_tensor_alloc and the like). */
l_tensor *l_tensor_new(lua_State *L);
/* A new userdata holding an allocated tensor, on top of the stack; raises on
 * failure. Device memory is invisible to Lua's collector, so when CUDA runs
 * out, a full collection frees unreachable tensors before one retry. */
fl_tensor *l_tensor_alloc(lua_State *L, fl_dtype dt, fl_device dev, int ndim,
                          const int64_t *shape);
/* The open tensor at arg, or an argument error. */
fl_tensor *l_tensor_check(lua_State *L, int arg);
void l_tensor_register(lua_State *L);
/* The n open tensors of the sequence at arg (an array kept on the stack);
 * raises naming `what` otherwise. */
fl_tensor *l_tensor_list(lua_State *L, int arg, int n, const char *what);
/* A new sequence of userdata taking over tensors ts[0..n). */
void l_tensor_push_list(lua_State *L, const fl_tensor *ts, int n);

/* Creates the metatable `name` with metamethods `meta` and an __index table
 * of `methods`, as Lua's own libraries do. */
void l_new_type(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

/* Raises e as a Lua error at the caller's line. */
int l_raise(lua_State *L, const fl_err *e);

/* Option tables: NULL-terminated lists of the keys a function accepts. */
void l_opts_check(lua_State *L, int arg, const char *const *allowed);
fl_dtype l_opts_dtype(lua_State *L, int arg, fl_dtype dflt);
fl_device l_opts_device(lua_State *L, int arg, fl_device dflt);
/* The string option `key` of the option table at arg, one of `names` (NULL
 * ended; absent: the first): its index. Anything else raises an argument
 * error listing them. */
int l_opts_choice(lua_State *L, int arg, const char *key, const char *const *names);
/* Boolean option `key` of the options table at arg (absent: 0); anything
 * else raises an argument error. */
int l_opts_flag(lua_State *L, int arg, const char *key);
fl_dtype l_check_dtype(lua_State *L, int arg, const char *name);
fl_device l_check_device(lua_State *L, int arg, const char *name);

#endif
