/* luaopen_flashlight: the module table, and the CUDA queries. */
#include <time.h>

#include "fl_cuda.h"
#include "flashlight.h"
#include "l_tensor.h"

void l_create_register(lua_State *L);
void l_graph_register(lua_State *L);
void l_plan_register(lua_State *L);
void l_jit_register(lua_State *L);
void l_front_open(lua_State *L);

/* fl.clock() -> seconds on a monotonic wall clock, for timing (os.clock
 * counts CPU time, not time spent waiting for a GPU). */
static int f_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

static int f_cuda_available(lua_State *L) {
  fl_err e;
  if (fl_cuda_init(&e) == FL_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, e.msg);
  return 2;
}

static int f_device_count(lua_State *L) {
  int n = 0;
  fl_cuda_device_count(&n, NULL);
  lua_pushinteger(L, n);
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* fl.device_info([ordinal]): a table describing CUDA device `ordinal` (0). */
static int f_device_info(lua_State *L) {
  int ordinal = (int)luaL_optinteger(L, 1, 0);
  fl_cuda_info info;
  fl_err e;
  if (fl_cuda_device_info(ordinal, &info, &e) != FL_OK) return l_raise(L, &e);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, info.name);
  lua_setfield(L, -2, "name");
  lua_pushfstring(L, "cuda:%d", ordinal);
  lua_setfield(L, -2, "device");
  lua_pushfstring(L, "sm_%d%d", info.major, info.minor);
  lua_setfield(L, -2, "arch");
  set_int(L, "major", info.major);
  set_int(L, "minor", info.minor);
  set_int(L, "multiprocessors", info.multiprocessors);
  set_int(L, "memory", (lua_Integer)info.total_memory);
  set_int(L, "driver_version", info.driver_version);
  set_int(L, "shared_per_block", info.max_shared_per_block);
  set_int(L, "l2_bytes", info.l2_bytes);
  return 1;
}

static const luaL_Reg module_funcs[] = {
  {"cuda_available", f_cuda_available}, {"device_count", f_device_count},
  {"device_info", f_device_info}, {"clock", f_clock}, {NULL, NULL},
};

int luaopen_flashlight(lua_State *L) {
  l_tensor_register(L);
  luaL_newlib(L, module_funcs);
  l_create_register(L);
  l_graph_register(L);
  l_plan_register(L);
  l_jit_register(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  l_front_open(L);
  return 1;
}
