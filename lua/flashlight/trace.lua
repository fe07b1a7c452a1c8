-- fl.trace(fn, specs...): runs fn on symbolic tensors and returns the graph
-- it computes, lowered to the reduction IR (one node per generalized
-- reduction; softmax and mean become several).
local rec = require "flashlight.recorder"
local sym = require "flashlight.sym"

local M = {}
local core -- the C half, set by install

-- An input spec: a runtime tensor, or {shape = {...}, dtype = "f32",
-- dims = {"b", "h", "i", "d"}, name = "q"}.
local function read_spec(spec, k, pname)
  if rec.is_tensor(spec) then
    return {shape = spec:shape(), dtype = spec:dtype(), name = pname}
  end
  if type(spec) ~= "table" or type(spec.shape) ~= "table" then
    rec.fail("trace: input %d must be a tensor or a table {shape = {...}, dtype = ...}, got %s",
      k, type(spec))
  end
  local s = {shape = spec.shape, dtype = spec.dtype or "f32", dims = spec.dims,
             name = spec.name or pname}
  for i, v in ipairs(s.shape) do
    if math.type(v) ~= "integer" or v < 0 then
      rec.fail("trace: input %d: size %d must be a non-negative integer, got %s", k, i, tostring(v))
    end
  end
  if #s.shape > 8 then rec.fail("trace: input %d has more than 8 dimensions", k) end
  return s
end

local function param_names(fn)
  local names = {}
  for i = 1, 64 do
    local n = debug.getlocal(fn, i)
    if not n then break end
    names[i] = n
  end
  return names
end

local function make_inputs(fn, specs)
  local pnames, inputs = param_names(fn), {}
  for k, spec in ipairs(specs) do
    local s = read_spec(spec, k, pnames[k] or ("in" .. k))
    local dims, tpl = {}, {"load", k}
    for i, size in ipairs(s.shape) do
      dims[i] = sym.new_dim(size, s.dims and s.dims[i])
      tpl[i + 2] = {"dim", i}
    end
    inputs[k] = {spec = s, sym = sym.make(dims, tpl, s.dtype, s.name)}
  end
  return inputs
end

-- Names for dimension classes, in order of first appearance, so that plain
-- attention reads q[b,h,i,d], k[b,h,j,d], v[b,h,j,e].
local letters = {"b", "h", "i", "d", "j", "e", "k", "l", "m", "n", "p", "r", "s", "t", "u",
                 "w", "x", "y", "z", "a", "c", "f", "g", "o", "q", "v"}

local function namer()
  local used, next_letter = {}, 1
  local function fresh()
    while true do
      local n = letters[next_letter] or ("n" .. next_letter)
      next_letter = next_letter + 1
      if not used[n] then return n end
    end
  end
  return function(d)
    local r = sym.root(d)
    if not r.final_name then
      r.final_name = r.name or fresh()
      used[r.final_name] = true
    end
    return r.final_name
  end
end

local function build_graph(inputs, t, results)
  local g = core.new_graph()
  local name_of = namer()
  -- user-given names are taken before any letter is handed out
  for _, inp in ipairs(inputs) do
    for _, d in ipairs(inp.sym.dims) do if sym.root(d).name then name_of(d) end end
  end
  local ids = {}
  local function syms(dims)
    local out = {}
    for i, d in ipairs(dims) do
      local r = sym.root(d) -- dims unified by broadcasting are one symbol
      if not ids[r] then ids[r] = g:sym(name_of(d), d.size) end
      out[i] = ids[r]
    end
    return out
  end
  for _, inp in ipairs(inputs) do g:input(inp.spec.name, inp.spec.dtype, syms(inp.sym.dims)) end
  for _, n in ipairs(t.nodes) do
    g:node({name = n.name, op = n.op, origin = n.origin, dtype = n.dtype, dims = syms(n.dims),
            red = syms(n.red), comb = n.comb, body = n.body})
  end
  for _, r in ipairs(results) do g:output(r.tpl[2]) end
  return g
end

local function listing(inputs, t, results)
  local lines = {}
  for _, inp in ipairs(inputs) do
    lines[#lines + 1] = ("  %s: %s%s  (input)"):format(inp.spec.name, inp.spec.dtype,
      rec.shape_str(inp.spec.shape))
  end
  for _, l in ipairs(t.listing) do
    local left = ("  %s = %s"):format(l.result.desc, l.desc)
    lines[#lines + 1] = ("%-60s # %s%s  %s"):format(left, l.result.dt,
      rec.shape_str(l.result:shape()), l.origin)
  end
  local outs = {}
  for i, r in ipairs(results) do outs[i] = r.desc end
  lines[#lines + 1] = "  return " .. table.concat(outs, ", ")
  return table.concat(lines, "\n") .. "\n"
end

local Graph = {}
Graph.__index = Graph
Graph.__tostring = function(g) return tostring(g.core) end

-- An error message without the position a C function's error carries.
local function bare(msg) return (tostring(msg):gsub("^[^:]*:%d+: ", "")) end

-- A pipeline entry: the name of a built-in pass (fl.passes), or a pass
-- written in Lua, a function(g, log) or a table {name = "...", run =
-- function(g, log)}. Returns the pass's name and, for a Lua pass, its
-- function; or nil and why the entry is no pass.
function M.pass_entry(p)
  local builtin = {}
  for _, n in ipairs(core.pass_names()) do builtin[n] = true end
  if type(p) == "string" then
    if builtin[p] then return p end
    return nil, ("unknown pass '%s' (known: %s)"):format(p, table.concat(core.pass_names(), ", "))
  end
  if type(p) == "function" then return "lua", p end
  if type(p) ~= "table" then
    return nil, ("a pass is a name, a function or a table {name =, run =}, got %s"):format(type(p))
  end
  local name = p.name == nil and "lua" or p.name
  if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") then
    return nil, ("a Lua pass's name must be a word (letters, digits, _ - .), got %s")
      :format(type(name) == "string" and ("'" .. name .. "'") or type(name))
  end
  if builtin[name] or name == "traced" or name == "lowered" then
    return nil, ("the Lua pass '%s' has the name of a built-in stage"):format(name)
  end
  if type(p.run) ~= "function" then
    return nil, ("the Lua pass '%s' has no run function (run = function(g, log) ... end)")
      :format(name)
  end
  return name, p.run
end

-- Runs a pass written in Lua: fn(g, log) with g this graph and log(fmt,
-- ...) adding a line "name: ..." to what explain() shows; then compacts the
-- graph as every built-in pass does. An error in fn or in that check is a
-- Lua error naming the pass; the graph may be left partly rewritten.
local function run_lua(g, name, fn)
  local lines = {}
  local function log(fmt, ...)
    lines[#lines + 1] = name .. ": " .. tostring(fmt):format(...)
  end
  local ok, err = pcall(fn, g, log)
  if not ok then rec.fail("run: the Lua pass '%s' failed: %s", name, tostring(err)) end
  ok, err = pcall(g.core.compact, g.core)
  if not ok then rec.fail("run: after the Lua pass '%s': %s", name, bare(err)) end
  if #lines == 0 then lines[1] = name .. ": a Lua pass; it logged nothing" end
  return table.concat(lines, "\n") .. "\n"
end

-- Runs one pass on the graph, in place; returns its log. pass is an entry
-- as M.pass_entry takes: a built-in pass's name or a pass written in Lua.
-- The dump after it is kept as the stage of the pass's name, and its log
-- goes to explain().
function Graph:run(pass)
  local name, fn, log = pass, nil, nil
  if type(pass) ~= "string" then
    name, fn = M.pass_entry(pass)
    if not name then rec.fail("run: %s", fn) end
    log = run_lua(self, name, fn)
  else
    local ok, out = pcall(self.core.run, self.core, name)
    if not ok then rec.fail("run: %s", bare(out)) end
    log = out
  end
  self.stages[#self.stages + 1] = {name = name, dump = tostring(self.core), log = log}
  self.plans = nil
  return log
end

-- Reading and writing the graph, for passes written in Lua (the methods of
-- the core graph in lua/l_graph.c, their errors raised at the caller's
-- line). Ids count from 1; inputs are the first values.
--   g:value(id)          a value as a table: name, dims, red, comb, body, ...
--   g:expr(id)           an expression as a table: op, args, value, var, src, ...
--   g:expr_new(x)        a new expression from an array, e.g. {"exp2", {"sub",
--                        a, {"const", 1}}} with a an existing expression id,
--                        or from a record as g:expr gives; returns its id
--   g:nexprs()           the number of expressions
--   g:set_body(v, x)     node v computes expression x (checked)
--   g:compact()          drops unused values and reorders (ids change)
--   g:counts()           inputs, nodes, outputs
--   g:outputs()          the output value ids
for _, method in ipairs({"value", "expr", "expr_new", "nexprs", "set_body", "compact", "counts",
                         "outputs"}) do
  Graph[method] = function(self, ...)
    if method == "set_body" or method == "compact" or method == "expr_new" then self.plans = nil end
    local r = table.pack(pcall(self.core[method], self.core, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    local msg = bare(r[2])
    local n, why = msg:match("^bad argument #(%d+) to '%?' (.*)")
    if n then rec.fail("bad argument #%d to '%s' %s", n - 1, method, why) end
    rec.fail("%s: %s", method, msg)
  end
end

-- The dump of a stage: "traced" (the operations as written), "lowered",
-- or the name of a pass that has run (the graph after it).
function Graph:ir(stage)
  stage = stage or "lowered"
  if stage == "traced" then return self.traced end
  if stage == "lowered" then return self.lowered end
  for n = #self.stages, 1, -1 do
    if self.stages[n].name == stage then return self.stages[n].dump end
  end
  local known = {"traced", "lowered"}
  for _, st in ipairs(self.stages) do known[#known + 1] = st.name end
  rec.fail("ir: unknown stage '%s' (this graph has: %s)", tostring(stage), table.concat(known, ", "))
end

-- The kernel plan of the graph as it is (kept until a pass changes the
-- graph); tile > 0 cuts every loop and row block in tiles of that size.
function Graph:plan(tile)
  tile = tile or 0
  if math.type(tile) ~= "integer" or tile < 0 then
    rec.fail("plan: the tile must be a non-negative integer, got %s", tostring(tile))
  end
  self.plans = self.plans or {}
  local p = self.plans[tile]
  if not p then
    local ok, made = pcall(self.core.plan, self.core, tile)
    if not ok then rec.fail("plan: %s", bare(made)) end
    p = made
    self.plans[tile] = p
  end
  return p
end

-- What the passes did, a line each, then the plan: its kernels, and for
-- each the tiles it skips (counted when planned for masks over indices,
-- by the last run for masks over data).
function Graph:explain()
  local lines = {}
  for _, st in ipairs(self.stages) do lines[#lines + 1] = st.log end
  local plan = self:plan()
  lines[#lines + 1] = "plan:\n" .. tostring(plan)
  local c = plan:compiled()
  if c then
    local regs = {}
    for _, k in ipairs(c.kernels) do
      local kind = k.design or (k.path == "hopper" and "wgmma" or k.path == "mma" and "mma.sync" or "scalar")
      if k.why and k.why ~= "" then kind = kind .. ", " .. k.why end
      regs[#regs + 1] = ("%s (%s) %d registers, %d B spilled"):format(k.name, kind, k.registers,
        k.spill_stores)
    end
    lines[#lines + 1] = ("cuda: compiled for %s (%s path) in %.1f ms (cache: %s): %s\n"):format(c.arch,
      c.path, c.ms, c.cache, table.concat(regs, "; "))
  end
  return table.concat(lines)
end

-- Every value of the graph, inputs first, as tables (see g:value in
-- lua/l_graph.c): id, name, kind, dtype, dims, shape, and for nodes red,
-- locals, comb, op, origin, body, group, epilogue and any rescale.
function Graph:values()
  local ninputs, nnodes = self.core:counts()
  local out = {}
  for id = 1, ninputs + nnodes do
    out[id] = self.core:value(id)
    out[id].id = id
  end
  return out
end

-- The kernels that run the graph, as planned: one per online group (its
-- members share one loop) and one per node outside a group. Each entry
-- has name, op, origin, group, values, and for groups grid, loop, tile,
-- tiles, masks, classified and counts (see lua/l_plan.c).
function Graph:kernels()
  local ks = self:plan():kernels()
  for _, k in ipairs(ks) do k.group = k.group > 0 and k.group or nil end
  return ks
end

-- Checks runtime inputs against what the graph was traced for.
function Graph:check_inputs(args, what)
  if #args ~= #self.inputs then
    rec.fail("%s: the program takes %d inputs, got %d", what, #self.inputs, #args)
  end
  for k, inp in ipairs(self.inputs) do
    local a = args[k]
    if not rec.is_tensor(a) then
      rec.fail("%s: input %d ('%s') must be a tensor, got %s", what, k, inp.spec.name, type(a))
    end
    local want, got = rec.shape_str(inp.spec.shape), rec.shape_str(a:shape())
    if want ~= got then
      rec.fail("%s: input %d ('%s') has shape %s, the program was traced for %s", what, k,
        inp.spec.name, got, want)
    end
    if a:device() ~= "cpu" then
      rec.fail("%s: input %d ('%s') is on %s; the reference executor runs on the CPU", what, k,
        inp.spec.name, a:device())
    end
  end
end

-- The CPU executor on the graph's plan, in double precision: returns the
-- outputs in their own dtypes, or all in `dtype`; tile as for plan().
function Graph:eval(args, dtype, tile)
  self:check_inputs(args, "eval")
  local plan = self:plan(tile)
  local ok, outs = pcall(plan.run, plan, args, dtype)
  if not ok then rec.fail("%s", tostring(outs):gsub("^[^:]*:%d+: ", "")) end
  return outs
end

function M.trace(fn, ...)
  if type(fn) ~= "function" then rec.fail("trace: expected a function, got %s", type(fn)) end
  local info, nspecs = debug.getinfo(fn, "u"), select("#", ...)
  if nspecs ~= info.nparams and not (info.isvararg and nspecs > info.nparams) then
    rec.fail("the traced function takes %d inputs (%s), got %d", info.nparams,
      table.concat(param_names(fn), ", "), nspecs)
  end
  local inputs = make_inputs(fn, {...})
  local args = {}
  for k, inp in ipairs(inputs) do args[k] = inp.sym end
  local function driver() return table.pack(fn(table.unpack(args))) end
  rec.start(#inputs, fn, driver)
  local ok, res = pcall(driver)
  if not ok then
    rec.finish()
    error(res, 0)
  end
  if res.n == 0 then
    rec.finish()
    rec.fail("trace: the function returned nothing; it must return one or more tensors")
  end
  local results = {}
  for i = 1, res.n do
    if not sym.is_sym(res[i]) then
      rec.finish()
      rec.fail("trace: result %d is a %s, not a tensor computed from the inputs", i, type(res[i]))
    end
    results[i] = sym.materialize(res[i])
  end
  local t = rec.finish()
  local g = build_graph(inputs, t, results)
  return setmetatable({core = g, inputs = inputs, traced = listing(inputs, t, results),
                       lowered = tostring(g), stages = {}}, Graph)
end

function M.install(fl)
  core = fl
  fl.trace = M.trace
end

M.Graph = Graph
return M
