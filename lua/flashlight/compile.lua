-- fl.compile(fn, opts): a callable program, traced on its first call for
-- each signature (shapes and dtypes of the inputs) and cached.
local rec = require "flashlight.recorder"
local trace = require "flashlight.trace"

local M = {}
local Program = {}
Program.__index = Program

-- The passes this build has, in pipeline order; "default" runs them all.
local pipeline = {}

-- An entry is a built-in pass's name or a pass written in Lua, a
-- function(g, log) or {name = "...", run = function(g, log)} (see Graph:run
-- in lua/flashlight/trace.lua).
local function check_passes(passes)
  if passes == nil or passes == "default" then return end
  if type(passes) ~= "table" then
    rec.fail("compile: passes must be \"default\" or a list of passes, got %s", type(passes))
  end
  for n, p in ipairs(passes) do
    local name, why = trace.pass_entry(p)
    if not name and type(p) == "string" then rec.fail("compile: %s", why) end
    if not name then rec.fail("compile: pass %d: %s", n, why) end
  end
end

local function signature(args)
  local parts = {}
  for k, a in ipairs(args) do
    if not rec.is_tensor(a) then
      rec.fail("input %d must be a tensor, got %s", k, type(a))
    end
    parts[k] = a:dtype() .. rec.shape_str(a:shape())
  end
  return table.concat(parts, " ")
end

function Program:graph_for(args)
  local sig = signature(args)
  local g = self.cache[sig]
  if not g then
    g = trace.trace(self.fn, table.unpack(args))
    local passes = self.opts.passes
    if passes == nil or passes == "default" then passes = pipeline end
    for _, p in ipairs(passes) do g:run(p) end
    self.cache[sig] = g
  end
  self.last = g
  return g
end

-- `out` (the compile option, or a call's): a list of tensors.
local function check_out_list(out, what)
  if type(out) ~= "table" or rec.is_tensor(out) then
    rec.fail("%s: out must be a list of tensors, one per output, got %s", what, type(out))
  end
  for o, t in pairs(out) do
    if math.type(o) ~= "integer" or o < 1 or o > #out then
      rec.fail("%s: out must be a list of tensors, it has the key %s", what, tostring(o))
    end
    if not rec.is_tensor(t) then
      rec.fail("%s: out[%d] must be a tensor, got %s", what, o, type(t))
    end
  end
end

-- The out tensors against graph g's outputs for these inputs: one each, of
-- its shape and dtype, on the inputs' device, none an input or another's
-- (the kernels read the inputs while they write the outputs).
local function check_out(g, out, args, device)
  local ids = g:outputs()
  if #out ~= #ids then
    rec.fail("out: the program has %d output%s, got %d tensors", #ids, #ids == 1 and "" or "s", #out)
  end
  for o, id in ipairs(ids) do
    local t, v = out[o], g:value(id)
    if t:device() ~= device then
      rec.fail("out: output %d is on %s, the inputs on %s", o, t:device(), device)
    end
    if t:dtype() ~= v.dtype then rec.fail("out: output %d is %s, expected %s", o, t:dtype(), v.dtype) end
    local want, got = rec.shape_str(v.shape), rec.shape_str(t:shape())
    if want ~= got then rec.fail("out: output %d has shape %s, expected %s", o, got, want) end
    for k, a in ipairs(args) do
      if rawequal(a, t) then rec.fail("out: output %d is input %d; give it a tensor of its own", o, k) end
    end
    for p = 1, o - 1 do
      if rawequal(out[p], t) then rec.fail("out: outputs %d and %d are the same tensor", p, o) end
    end
  end
end

-- A call's options, a table after the inputs: prog(q, k, v, {out = {o}}).
local function call_out(args, dflt)
  local last = args[#args]
  if type(last) ~= "table" then return dflt end
  args[#args] = nil
  for k in pairs(last) do
    if k ~= "out" then rec.fail("unknown call option '%s' (known: out)", tostring(k)) end
  end
  if last.out == nil then return dflt end
  check_out_list(last.out, "call")
  return last.out
end

-- The CPU executor's results, copied into out.
local function eval_into(g, args, out)
  local res = g:eval(args)
  if not out then return res end
  for o, t in ipairs(out) do
    t:copy_(res[o])
    res[o]:free()
  end
  return out
end

function Program:__call(...)
  local args = table.pack(...)
  args.n = nil
  local out = call_out(args, self.opts.out)
  local g = self:graph_for(args)
  local device = args[1] and args[1]:device() or "cpu"
  for k, a in ipairs(args) do
    if a:device() ~= device then
      rec.fail("input %d is on %s, input 1 on %s: a program runs on one device", k, a:device(),
        device)
    end
  end
  if out then check_out(g, out, args, device) end
  if device == "cpu" then return table.unpack(eval_into(g, args, out)) end
  local plan = g:plan()
  local ok, outs = pcall(plan.launch, plan, args, nil, out and {out = out} or nil)
  if not ok then rec.fail("%s", tostring(outs):gsub("^[^:]*:%d+: ", "")) end
  return table.unpack(outs)
end

-- The graph for these inputs' signature, or the last one called.
function Program:graph_of(what, ...)
  if select("#", ...) > 0 then return self:graph_for({...}) end
  if not self.last then
    rec.fail("%s: the program has not been traced yet; call it, or pass example inputs: " ..
      "prog:%s(..., q, k, v)", what, what)
  end
  return self.last
end

-- attn:ir(stage [, inputs...]): the dump after a stage.
function Program:ir(stage, ...) return self:graph_of("ir", ...):ir(stage) end

-- attn:kernels([inputs...]): one entry a launched kernel.
function Program:kernels(...) return self:graph_of("kernels", ...):kernels() end

-- attn:source(inputs...): the CUDA source of the program's kernels for
-- these inputs' shapes and dtypes (outputs in the inputs' dtype); needs no GPU.
function Program:source(...)
  if select("#", ...) == 0 then
    rec.fail("source: pass example inputs (or their specs): prog:source(q, k, v)")
  end
  local args = {...}
  local g = self:graph_for(args)
  local plan = g:plan()
  local dtype = rec.is_tensor(args[1]) and args[1]:dtype() or nil
  local ok, src = pcall(plan.cuda, plan, dtype)
  if not ok then rec.fail("source: %s", tostring(src):gsub("^[^:]*:%d+: ", "")) end
  return src
end

-- attn:explain([inputs...]): what each pass did, and left alone and why.
function Program:explain(...) return self:graph_of("explain", ...):explain() end

function M.install(fl)
  for _, name in ipairs(fl.pass_names()) do
    pipeline[#pipeline + 1] = name
  end
  -- The stages whose IR attn:ir(stage) prints, in pipeline order.
  fl.stages = {"traced", "lowered", table.unpack(pipeline)}
  -- The pass names, in the default pipeline's order.
  fl.passes = pipeline
  function fl.compile(fn, opts)
    if type(fn) ~= "function" then rec.fail("compile: expected a function, got %s", type(fn)) end
    if opts ~= nil and type(opts) ~= "table" then
      rec.fail("compile: options must be a table, got %s", type(opts))
    end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "passes" and k ~= "arch" and k ~= "out" then
        rec.fail("compile: unknown option '%s' (known: passes, arch, out)", tostring(k))
      end
    end
    check_passes(opts.passes)
    if opts.out ~= nil then check_out_list(opts.out, "compile") end
    return setmetatable({fn = fn, opts = opts, cache = {}}, Program)
  end
end

return M
