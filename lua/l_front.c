/* The Lua half of the module: lua/flashlight/NAME.lua, compiled into the
 * library, registered as package.preload["flashlight.NAME"], and started by
 * running flashlight.init with the C half. */
#include <stddef.h>

#include "l_tensor.h"

struct l_source { const char *name; const char *code; size_t len; };
extern const struct l_source l_sources[];

static int load_source(lua_State *L) {
  const struct l_source *s = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushfstring(L, "@flashlight/%s.lua", s->name);
  if (luaL_loadbuffer(L, s->code, s->len, lua_tostring(L, -1)) != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* With the C half on top of the stack, leaves the whole module there. */
void l_front_open(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const struct l_source *s = l_sources; s->name; s++) {
    lua_pushfstring(L, "flashlight.%s", s->name);
    lua_pushlightuserdata(L, (void *)s);
    lua_pushcclosure(L, load_source, 1);
    lua_settable(L, -3);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "flashlight.init");
  lua_call(L, 1, 1); /* init returns a function taking the C half */
  lua_insert(L, -2);
  lua_call(L, 1, 1);
}
