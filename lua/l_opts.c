/* Shared binding helpers: option tables, dtype and device names (with errors
 * that name the argument), raising core errors, defining userdata types. */
#include <stdio.h>
#include <string.h>

#include "l_tensor.h"

void l_new_type(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int l_raise(lua_State *L, const fl_err *e) {
  return luaL_error(L, "%s", e->msg);
}

void l_opts_check(lua_State *L, int arg, const char *const *allowed) {
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      luaL_argerror(L, arg, "option keys must be strings");
    }
    const char *key = lua_tostring(L, -1);
    int known = 0;
    for (const char *const *a = allowed; *a && !known; a++) known = strcmp(*a, key) == 0;
    if (!known) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      luaL_addstring(&b, "unknown option '");
      luaL_addstring(&b, key);
      luaL_addstring(&b, "' (known:");
      for (const char *const *a = allowed; *a; a++) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, *a);
      }
      luaL_addchar(&b, ')');
      luaL_pushresult(&b);
      luaL_argerror(L, arg, lua_tostring(L, -1));
    }
  }
}

fl_dtype l_check_dtype(lua_State *L, int arg, const char *name) {
  fl_dtype d;
  if (name && fl_dtype_parse(name, &d) == 0) return d;
  luaL_argerror(L, arg, lua_pushfstring(L, "unknown dtype '%s' (expected f32, f16, bf16, i32, "
                                        "i64 or bool)", name ? name : "?"));
  return FL_F32;
}

fl_device l_check_device(lua_State *L, int arg, const char *name) {
  fl_device d;
  if (name && fl_device_parse(name, &d) == 0) return d;
  luaL_argerror(L, arg, lua_pushfstring(L, "unknown device '%s' (expected \"cpu\", \"cuda\" "
                                        "or \"cuda:N\")", name ? name : "?"));
  return (fl_device){FL_CPU, 0};
}

/* The string field `key` of the option table at arg, or NULL when absent. */
static const char *opt_string(lua_State *L, int arg, const char *key) {
  if (lua_isnoneornil(L, arg)) return NULL;
  lua_getfield(L, arg, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a string, got %s", key,
                                          luaL_typename(L, -1)));
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table still holds the string */
  return s;
}

fl_dtype l_opts_dtype(lua_State *L, int arg, fl_dtype dflt) {
  const char *s = opt_string(L, arg, "dtype");
  return s ? l_check_dtype(L, arg, s) : dflt;
}

fl_device l_opts_device(lua_State *L, int arg, fl_device dflt) {
  const char *s = opt_string(L, arg, "device");
  return s ? l_check_device(L, arg, s) : dflt;
}

/* Boolean option `key` of the options table at arg (absent: 0). */
int l_opts_flag(lua_State *L, int arg, const char *key) {
  if (lua_isnoneornil(L, arg)) return 0;
  lua_getfield(L, arg, key);
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a boolean, got %s", key, luaL_typename(L, -1)));
  int on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

/* The string option `key` of the table at arg, one of `names` (the first
 * the default): its index. */
int l_opts_choice(lua_State *L, int arg, const char *key, const char *const *names) {
  if (lua_isnoneornil(L, arg)) return 0;
  lua_getfield(L, arg, key);
  const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  int found = lua_isnil(L, -1) ? 0 : -1;
  for (int i = 0; k && names[i] && found < 0; i++)
    if (strcmp(k, names[i]) == 0) found = i;
  if (found < 0) {
    char want[160] = "";
    size_t len = 0;
    for (int i = 0; names[i] && len < sizeof want; i++)
      len += (size_t)snprintf(want + len, sizeof want - len, "%s\"%s\"", i == 0 ? "" : names[i + 1] ? ", " : " or ",
                              names[i]);
    const char *got = k ? lua_pushfstring(L, "'%s'", k) : luaL_typename(L, -1);
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be %s, got %s", key, want, got));
  }
  lua_pop(L, 1);
  return found;
}
