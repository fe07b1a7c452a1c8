/* The flashlight Lua module, for hosts that embed Lua:
 *   luaL_requiref(L, "flashlight", luaopen_flashlight, 0); */
#ifndef FLASHLIGHT_H
#define FLASHLIGHT_H

#include <lua.h>

int luaopen_flashlight(lua_State *L);

#endif
