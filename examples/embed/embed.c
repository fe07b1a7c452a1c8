/* A C program that hosts Lua, opens flashlight and runs a script:
 *   build/embed examples/embed/hello.lua [args...]
 * The script sees its arguments as `...`. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include "flashlight.h"

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  luaL_requiref(L, "flashlight", luaopen_flashlight, 0); /* also sets package.loaded */
  lua_pop(L, 1);
  int status = report(L, luaL_loadfile(L, argv[1]));
  if (status == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = report(L, lua_pcall(L, argc - 2, 0, 0));
  }
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
