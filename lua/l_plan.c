/* The kernel plan: a userdata with metatable "flashlight.plan", made by
 * g:plan([tile]) from a graph it keeps alive (its user value). It runs on
 * the CPU executor, prints as the plan's listing, and lists its kernels. A
 * plan belongs to the graph as it was: after a pass changes the graph, the
 * plan refuses to run. */
#include <stdlib.h>
#include <string.h>

#include "fl_cuda_gen.h"
#include "fl_cuda_run.h"
#include "fl_plan.h"
#include "l_plan.h"
#include "l_tensor.h"

#define L_PLAN_MT "flashlight.plan"

typedef struct l_plan {
  fl_plan p;
  int nvals, nexprs; /* the graph's, when planned */
  int built;
  fl_cuda_exec exec; /* its CUDA kernels, once launched */
  int has_exec;
  fl_dtype exec_dtype;
  int exec_ordinal;
  fl_cuda_path exec_path; /* as asked for */
  unsigned exec_flags;    /* FL_GEN_... */
} l_plan;

static l_plan *check_plan(lua_State *L, int arg) {
  l_plan *u = luaL_checkudata(L, arg, L_PLAN_MT);
  if (!u->built) luaL_argerror(L, arg, "the plan is closed");
  const fl_graph *g = u->p.g;
  if (g->nvals != u->nvals || g->nexprs != u->nexprs)
    luaL_error(L, "the graph changed since this plan was made; plan it again");
  return u;
}

/* Called by g:plan: the graph is at index 1. */
int l_plan_new(lua_State *L, const fl_graph *g, lua_Integer tile) {
  l_plan *u = lua_newuserdatauv(L, sizeof *u, 1);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, L_PLAN_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  fl_err e;
  if (fl_plan_build(g, (int64_t)tile, &u->p, &e) != FL_OK) return l_raise(L, &e);
  u->built = 1;
  u->nvals = g->nvals;
  u->nexprs = g->nexprs;
  return 1;
}

/* The optional output dtype at arg: FL_DTYPE_COUNT (each its own) when absent. */
static fl_dtype opt_out_dtype(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? FL_DTYPE_COUNT : l_check_dtype(L, arg, lua_tostring(L, arg));
}

static int p_gc(lua_State *L) {
  l_plan *u = luaL_checkudata(L, 1, L_PLAN_MT);
  if (u->has_exec) fl_cuda_exec_free(&u->exec);
  u->has_exec = 0;
  if (u->built) fl_plan_free(&u->p);
  u->built = 0;
  return 0;
}

/* p:run({tensors...} [, dtype]) -> {tensors...} */
static int p_run(lua_State *L) {
  l_plan *u = check_plan(L, 1);
  const fl_graph *g = u->p.g;
  fl_dtype out_dt = opt_out_dtype(L, 3);
  fl_tensor *ins = l_tensor_list(L, 2, g->ninputs, "run");
  fl_tensor outs[FL_MAX_DIMS];
  fl_err e;
  if (fl_plan_run(&u->p, ins, out_dt, outs, &e) != FL_OK) return l_raise(L, &e);
  l_tensor_push_list(L, outs, g->noutputs);
  return 1;
}

static int p_tostring(lua_State *L) {
  l_plan *u = check_plan(L, 1);
  char *s = fl_plan_dump(&u->p);
  if (!s) return luaL_error(L, "out of memory printing the plan");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* {{name=, size=, block=}...} of the grid, or {{name=, size=}...} of the loop */
static void push_dims(lua_State *L, const fl_graph *g, int n, const int *syms, const int64_t *block) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, g->syms[syms[i]].name);
    lua_setfield(L, -2, "name");
    set_int(L, "size", g->syms[syms[i]].size);
    if (block) set_int(L, "block", block[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static void push_group(lua_State *L, const fl_graph *g, const fl_kernel *k) {
  const fl_tiles *t = &k->tiles;
  push_dims(L, g, t->gr.ngrid, t->gr.grid, t->block);
  lua_setfield(L, -2, "grid");
  push_dims(L, g, t->gr.nloop, t->gr.loop_sym, NULL);
  lua_setfield(L, -2, "loop");
  set_int(L, "tile", fl_tiles_loop_width(t));
  lua_createtable(L, t->ntv, 0);
  for (int m = 0; m < t->ntv; m++) {
    lua_pushstring(L, g->vals[t->tv[m]].name);
    lua_rawseti(L, -2, m + 1);
  }
  lua_setfield(L, -2, "tiles");
  set_int(L, "masks", t->nmask);
  lua_pushstring(L, t->nmask == 0 ? "none" : t->data || !k->table ? "run time" : "planned");
  lua_setfield(L, -2, "classified");
  lua_createtable(L, 0, 4);
  set_int(L, "total", k->counts.total);
  set_int(L, "skipped", k->counts.skipped);
  set_int(L, "partial", k->counts.partial);
  set_int(L, "full", k->counts.full);
  lua_setfield(L, -2, "counts");
}

/* p:kernels() -> {{name, op, origin, group, values = {names}, stores = {layout copies
 * folded into its stores}, grid, loop, tile, tiles, masks, classified,
 * counts}...}: one entry a launched kernel. */
static int p_kernels(lua_State *L) {
  l_plan *u = check_plan(L, 1);
  const fl_graph *g = u->p.g;
  lua_createtable(L, u->p.n, 0);
  for (int i = 0; i < u->p.n; i++) {
    const fl_kernel *k = &u->p.k[i];
    const fl_value *lead = &g->vals[k->is_group ? k->tiles.gr.loop : k->first];
    lua_createtable(L, 0, 12);
    lua_pushstring(L, lead->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, lead->op);
    lua_setfield(L, -2, "op");
    lua_pushstring(L, lead->origin);
    lua_setfield(L, -2, "origin");
    set_int(L, "group", g->vals[k->first].group);
    lua_createtable(L, k->n, 0);
    for (int m = 0; m < k->n; m++) {
      lua_pushstring(L, g->vals[k->first + m].name);
      lua_rawseti(L, -2, m + 1);
    }
    lua_setfield(L, -2, "values");
    lua_createtable(L, k->nfold, 0);
    for (int f = 0; f < k->nfold; f++) {
      lua_pushstring(L, g->vals[k->fold[f]].name);
      lua_rawseti(L, -2, f + 1);
    }
    lua_setfield(L, -2, "stores");
    if (k->is_group) push_group(L, g, k);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* The options `kernels` ("auto" or "scalar") and `path` ("auto", "hopper"
 * or "mma") of the table at arg: the kernels asked for. */
static fl_cuda_path opt_path(lua_State *L, int arg) {
  static const char *const kernels[] = {"auto", "scalar", NULL};
  static const char *const paths[] = {"auto", "hopper", "mma", NULL};
  static const fl_cuda_path path_of[] = {FL_PATH_AUTO, FL_PATH_HOPPER, FL_PATH_MMA};
  int scalar = l_opts_choice(L, arg, "kernels", kernels);
  fl_cuda_path path = path_of[l_opts_choice(L, arg, "path", paths)];
  return scalar ? FL_PATH_SCALAR : path;
}

/* opts.persistent at arg: FL_GEN_PERSISTENT (true), 0 (false) or
 * FL_GEN_PERSISTENT_AUTO ("auto", the default). */
static unsigned opt_persistent(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return FL_GEN_PERSISTENT_AUTO;
  lua_getfield(L, arg, "persistent");
  unsigned flags = FL_GEN_PERSISTENT_AUTO;
  int is_string = lua_type(L, -1) == LUA_TSTRING;
  if (lua_isboolean(L, -1)) flags = lua_toboolean(L, -1) ? FL_GEN_PERSISTENT : 0;
  else if (!lua_isnil(L, -1) && !(is_string && strcmp(lua_tostring(L, -1), "auto") == 0)) {
    const char *got = is_string ? lua_pushfstring(L, "'%s'", lua_tostring(L, -1)) : luaL_typename(L, -1);
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'persistent' must be true, false or \"auto\", got %s", got));
  }
  lua_pop(L, 1);
  return flags;
}

/* opts.sms at arg: the multiprocessors persistent = "auto" weighs; absent,
 * device 0's (none without a device: a block a tile). */
static int opt_sms(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) lua_pushnil(L);
  else lua_getfield(L, arg, "sms");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return fl_cuda_auto_sms(0);
  }
  int ok;
  lua_Integer n = lua_tointegerx(L, -1, &ok);
  if (!ok || n < 1 || n > 65535)
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'sms' must be a whole number of multiprocessors "
                                          "from 1 to 65535, got %s", luaL_tolstring(L, -1, NULL)));
  lua_pop(L, 1);
  return (int)n;
}

/* p:cuda([dtype [, {path =, kernels =, persistent =, sms =}]]) -> source, {{name,
 * threads, kind, path, why, params = {value names}, writes = {booleans};
 * tensor-core kernels also design (in words), block (threads), smem
 * (bytes), grid, persistent, scratch (bytes of global memory it keeps
 * across its blocks and launches), parts (where its last blocks may run
 * in parts: {most, warps, floats, steps})}...}: the plan's CUDA kernels, outputs in
 * `dtype` (default: each its own). Needs no GPU; path "auto" is the one
 * p:launch takes on device 0, or "mma" with none. persistent = true lets
 * warp-specialized kernels without masks loop over their tiles; "auto"
 * (the default) lets them where that pays on a device of `sms`
 * multiprocessors (default device 0's; none without a device). */
static int p_cuda(lua_State *L) {
  static const char *const keys[] = {"path", "kernels", "persistent", "sms", NULL};
  l_plan *u = check_plan(L, 1);
  const fl_graph *g = u->p.g;
  fl_dtype out_dt = opt_out_dtype(L, 2);
  l_opts_check(L, 3, keys);
  fl_cuda_path path = opt_path(L, 3);
  if (path == FL_PATH_AUTO) path = fl_cuda_auto_path(0);
  unsigned flags = opt_persistent(L, 3);
  int sms = opt_sms(L, 3);
  fl_cuda_program prog;
  fl_err e;
  if (fl_cuda_generate(&u->p, out_dt, path, flags, sms, &prog, &e) != FL_OK) return l_raise(L, &e);
  lua_pushstring(L, prog.source);
  lua_createtable(L, prog.nkernels, 0);
  for (int i = 0; i < prog.nkernels; i++) {
    const fl_cuda_kernel *k = &prog.k[i];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, k->name);
    lua_setfield(L, -2, "name");
    set_int(L, "threads", k->threads);
    lua_pushstring(L, k->block[0] ? "tensor cores" : "scalar");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, fl_cuda_path_name(k->path));
    lua_setfield(L, -2, "path");
    if (k->why[0]) {
      lua_pushstring(L, k->why);
      lua_setfield(L, -2, "why");
    }
    if (k->block[0]) {
      lua_pushstring(L, k->design);
      lua_setfield(L, -2, "design");
      set_int(L, "block", k->block[0]);
      set_int(L, "smem", k->smem);
      lua_createtable(L, 3, 0);
      for (int d = 0; d < 3; d++) {
        lua_pushinteger(L, k->grid[d]);
        lua_rawseti(L, -2, d + 1);
      }
      lua_setfield(L, -2, "grid");
      lua_pushboolean(L, k->persistent);
      lua_setfield(L, -2, "persistent");
      set_int(L, "scratch", k->scratch * (int64_t)sizeof(int));
      if (k->parts.most) {
        lua_createtable(L, 0, 4);
        set_int(L, "most", k->parts.most);
        set_int(L, "warps", k->parts.warps);
        set_int(L, "floats", k->parts.floats);
        set_int(L, "steps", k->parts.steps);
        lua_setfield(L, -2, "parts");
      }
    }
    lua_createtable(L, k->nparams, 0);
    lua_createtable(L, k->nparams, 0);
    for (int a = 0; a < k->nparams; a++) {
      lua_pushstring(L, g->vals[k->param[a]].name);
      lua_rawseti(L, -3, a + 1);
      lua_pushboolean(L, k->writes[a]);
      lua_rawseti(L, -2, a + 1);
    }
    lua_setfield(L, -3, "writes");
    lua_setfield(L, -2, "params");
    lua_rawseti(L, -2, i + 1);
  }
  fl_cuda_program_free(&prog);
  return 2;
}


/* p:launch's option `out` (option table at arg, its value at out): the n
 * open tensors it lists, in an array kept on the stack; NULL when absent. */
static fl_tensor *opt_given(lua_State *L, int arg, int out, int n) {
  if (lua_isnil(L, out)) return NULL;
  if (!lua_istable(L, out))
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'out' must be a table of tensors, got %s",
                                          luaL_typename(L, out)));
  int got = (int)lua_rawlen(L, out);
  if (got != n)
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'out' must list %d tensor%s, one per output, "
                                          "got %d", n, n == 1 ? "" : "s", got));
  fl_tensor *ts = lua_newuserdatauv(L, sizeof(fl_tensor) * (size_t)(n ? n : 1), 0);
  for (int o = 0; o < n; o++) {
    lua_rawgeti(L, out, o + 1);
    l_tensor *u = luaL_testudata(L, -1, L_TENSOR_MT);
    if (!u || u->closed)
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'out': entry %d is not an open tensor, "
                                            "got %s", o + 1, luaL_typename(L, -1)));
    ts[o] = u->t;
    lua_pop(L, 1);
  }
  return ts;
}

/* The plan's kernels for these settings, built (again) when they change. */
static fl_status plan_exec(l_plan *u, fl_dtype out_dt, fl_cuda_path path, unsigned flags, int ordinal, fl_err *e) {
  if (u->has_exec && (u->exec_dtype != out_dt || u->exec_ordinal != ordinal || u->exec_path != path ||
                      u->exec_flags != flags)) {
    fl_cuda_exec_free(&u->exec);
    u->has_exec = 0;
  }
  if (u->has_exec) return FL_OK;
  fl_status s = fl_cuda_exec_build(&u->p, out_dt, path, flags, ordinal, NULL, &u->exec, e);
  if (s != FL_OK) return s;
  u->has_exec = 1;
  u->exec_dtype = out_dt;
  u->exec_ordinal = ordinal;
  u->exec_path = path;
  u->exec_flags = flags;
  return FL_OK;
}

/* p:launch({cuda tensors...} [, dtype [, {out = {cuda tensors...}, kernels =
 * "auto"|"scalar", path = "auto"|"hopper"|"mma", persistent = "auto"|false|true}]])
 * -> {cuda tensors...}:
 * runs the plan's CUDA kernels on
 * the inputs' device, compiling them on the first call (NVRTC, cached in
 * memory and on disk). With `out`, the kernels write into those tensors
 * (one per output, checked first) and they are the results, the same
 * objects; "scalar" kernels skip the tensor-core ones; persistent = true
 * lets warp-specialized kernels without masks loop over their tiles, a
 * block a multiprocessor, "auto" (the default) where their last wave of
 * a block a tile would not run in parts on the device. */
static int p_launch(lua_State *L) {
  static const char *const keys[] = {"out", "kernels", "path", "persistent", NULL};
  l_plan *u = check_plan(L, 1);
  const fl_graph *g = u->p.g;
  fl_dtype out_dt = opt_out_dtype(L, 3);
  lua_settop(L, 4);
  l_opts_check(L, 4, keys);
  fl_cuda_path path = opt_path(L, 4);
  unsigned flags = opt_persistent(L, 4);
  if (lua_isnil(L, 4)) lua_pushnil(L);
  else lua_getfield(L, 4, "out"); /* index 5 */
  fl_tensor *given = opt_given(L, 4, 5, g->noutputs);
  fl_tensor *ins = l_tensor_list(L, 2, g->ninputs, "launch");
  int ordinal = g->ninputs > 0 ? ins[0].device.index
                : given && g->noutputs > 0 ? given[0].device.index : 0;
  fl_err e;
  if (plan_exec(u, out_dt, path, flags, ordinal, &e) != FL_OK) return l_raise(L, &e);
  fl_tensor outs[FL_MAX_DIMS];
  if (fl_cuda_exec_run(&u->exec, g, ins, given, outs, &e) != FL_OK) return l_raise(L, &e);
  if (!given) {
    l_tensor_push_list(L, outs, g->noutputs);
    return 1;
  }
  lua_createtable(L, g->noutputs, 0);
  for (int o = 0; o < g->noutputs; o++) {
    lua_rawgeti(L, 5, o + 1);
    lua_rawseti(L, -2, o + 1);
  }
  return 1;
}

/* The program's kernel named `name`, or NULL. */
static const fl_cuda_kernel *kernel_named(const fl_cuda_program *p, const char *name) {
  for (int k = 0; k < p->nkernels; k++)
    if (strcmp(p->k[k].name, name) == 0) return &p->k[k];
  return NULL;
}

/* p:compiled() -> nil before the first launch, else {ms, cache = "miss"|
 * "memory"|"disk", arch, path = "hopper"|"mma"|"scalar", kernels = {{name,
 * path, why, design (tensor-core kernels: see p:cuda), registers,
 * spill_stores, spill_loads}...}}: how its CUDA
 * kernels were compiled. */
static int p_compiled(lua_State *L) {
  l_plan *u = check_plan(L, 1);
  if (!u->has_exec) return 0;
  const fl_module_image *im = &u->exec.image;
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, im->ms);
  lua_setfield(L, -2, "ms");
  lua_pushstring(L, im->cache == FL_CACHE_MISS ? "miss" : im->cache == FL_CACHE_MEMORY ? "memory" : "disk");
  lua_setfield(L, -2, "cache");
  lua_pushstring(L, im->arch);
  lua_setfield(L, -2, "arch");
  lua_pushstring(L, fl_cuda_path_name(u->exec.path));
  lua_setfield(L, -2, "path");
  lua_createtable(L, im->nkernels, 0);
  for (int k = 0; k < im->nkernels; k++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, im->kernels[k].name);
    lua_setfield(L, -2, "name");
    const fl_cuda_kernel *kd = kernel_named(&u->exec.prog, im->kernels[k].name);
    if (kd) {
      lua_pushstring(L, fl_cuda_path_name(kd->path));
      lua_setfield(L, -2, "path");
      lua_pushstring(L, kd->why);
      lua_setfield(L, -2, "why");
      if (kd->block[0]) {
        lua_pushstring(L, kd->design);
        lua_setfield(L, -2, "design");
      }
    }
    set_int(L, "registers", im->kernels[k].registers);
    set_int(L, "spill_stores", im->kernels[k].spill_stores);
    set_int(L, "spill_loads", im->kernels[k].spill_loads);
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "kernels");
  return 1;
}

/* p:last_ms() -> the device time (CUDA events) of the last p:launch's
 * kernels, from the first one's launch to the last one's end, in ms (the
 * first kernel's host-side set-up comes before: its tensor maps, the tile
 * classes of masks over data); nil before one ran. */
static int p_last_ms(lua_State *L) {
  l_plan *u = check_plan(L, 1);
  if (!u->has_exec || u->exec.last_ms < 0) return 0;
  lua_pushnumber(L, u->exec.last_ms);
  return 1;
}

static const luaL_Reg plan_methods[] = {
  {"run", p_run}, {"kernels", p_kernels}, {"cuda", p_cuda}, {"launch", p_launch},
  {"compiled", p_compiled}, {"last_ms", p_last_ms}, {"close", p_gc}, {NULL, NULL},
};

static const luaL_Reg plan_meta[] = {
  {"__gc", p_gc}, {"__close", p_gc}, {"__tostring", p_tostring}, {"__index", NULL},
  {NULL, NULL},
};

void l_plan_register(lua_State *L) {
  l_new_type(L, L_PLAN_MT, plan_meta, plan_methods);
}
