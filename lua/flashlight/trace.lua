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

-- Runs one pass on the graph, in place; returns its log. The dump after it
-- is kept as the stage of that name.
function Graph:run(name)
  if type(name) ~= "string" then rec.fail("run: expected a pass name, got %s", type(name)) end
  local ok, log = pcall(self.core.run, self.core, name)
  if not ok then rec.fail("run: %s", tostring(log):gsub("^[^:]*:%d+: ", "")) end
  self.stages[#self.stages + 1] = {name = name, dump = tostring(self.core), log = log}
  return log
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

-- What the passes did, a line each.
function Graph:explain()
  local lines = {}
  for _, st in ipairs(self.stages) do lines[#lines + 1] = st.log end
  return table.concat(lines)
end

-- Every value of the graph, inputs first, as tables (see g:value in
-- lua/l_graph.c): name, kind, dtype, dims, shape, and for nodes red, comb,
-- op and origin.
function Graph:values()
  local ninputs, nnodes = self.core:counts()
  local out = {}
  for id = 1, ninputs + nnodes do
    out[id] = self.core:value(id)
    out[id].id = id
  end
  return out
end

-- The kernels that run the graph: one per online group (its members share
-- one loop) and one per node outside a group.
function Graph:kernels()
  local ninputs = self.core:counts()
  local out, of_group = {}, {}
  for id, v in ipairs(self:values()) do
    if id > ninputs then
      local k = v.group > 0 and of_group[v.group]
      if not k then
        k = {name = v.name, op = v.op, origin = v.origin, dims = v.dims, red = v.red,
             comb = v.comb, nodes = {}, group = v.group > 0 and v.group or nil}
        out[#out + 1] = k
        if v.group > 0 then of_group[v.group] = k end
      end
      k.nodes[#k.nodes + 1] = v.name
    end
  end
  return out
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

-- The unfused double-precision reference: returns the outputs in their own
-- dtypes, or all in `dtype`.
function Graph:eval(args, dtype, tile)
  self:check_inputs(args, "eval")
  local ok, outs = pcall(self.core.eval, self.core, args, dtype, tile)
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
