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

function Program:__call(...)
  local args = table.pack(...)
  args.n = nil
  local g = self:graph_for(args)
  local device = args[1] and args[1]:device() or "cpu"
  for k, a in ipairs(args) do
    if a:device() ~= device then
      rec.fail("input %d is on %s, input 1 on %s: a program runs on one device", k, a:device(),
        device)
    end
  end
  if device == "cpu" then return table.unpack(g:eval(args)) end
  local plan = g:plan()
  local ok, outs = pcall(plan.launch, plan, args)
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
    return setmetatable({fn = fn, opts = opts, cache = {}}, Program)
  end
end

return M
