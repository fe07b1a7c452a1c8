/* The kernel plan's userdata (lua/l_plan.c). */
#ifndef L_PLAN_H
#define L_PLAN_H

#include <lua.h>

#include "fl_ir.h"

/* Pushes a plan of g, whose userdata is at index 1 (kept alive by it). */
int l_plan_new(lua_State *L, const fl_graph *g, lua_Integer tile);
void l_plan_register(lua_State *L);

#endif
