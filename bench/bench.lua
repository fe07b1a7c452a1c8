-- Times variants' kernels on the GPU:
--
--   flua bench/bench.lua [--variants a,b] [--shapes B,H,N,D[;...]|anchors] [--dtype bf16|f16]
--                        [--json out.json] [--iters 50] [--budget 20] [--rest 0] [--path auto|hopper|mma]
--                        [--kernels auto|scalar] [--persistent auto|on|off] [--device cuda|cpu]
--                        [--save-inputs DIR] [--save-outputs DIR]
--
-- A bare first argument lists variants (as --variants). Defaults come from
-- FL_BENCH ("B,H,N,D", default 4,16,4096,128), FL_BENCH_VARIANTS (full,
-- causal, softcap, alibi, sliding_window, prefix_lm, document, differential,
-- evoformer_row, sigmoid), FL_BENCH_ITERS, FL_BENCH_BUDGET_S,
-- FL_BENCH_PATH, FL_BENCH_KERNELS. `--shapes anchors` runs the shapes of
-- ../shared/ANCHORS.md. Each variant runs at its benchmark constants
-- (V.params: window 256, prefix 512, cap 30, λ 0.3).
--
-- Timing: a warm-up call (trace, passes, NVRTC compile, first run), then
-- `--iters` calls (default 50; fewer only when they would pass `--budget`
-- seconds a case), each timed by CUDA events around the run's kernels
-- (plan:last_ms: from the first kernel's launch to the last one's end, as
-- PyTorch's do_bench times a call; the first kernel's host-side set-up,
-- such as the tile classes of a mask over data, comes before) and by the
-- wall clock around the synchronous plan:launch (everything).
-- `--rest S` idles S seconds before a case's timed calls: a GPU under load
-- for more than some 50 ms may lower its clock to stay in its power cap
-- (an H100: 10%), so few calls after a rest (`--iters 9 --rest 2`) time
-- the cool regime, repeatable to ~0.3% (for comparing builds: builds.sh),
-- many calls without one the sustained regime.
-- Reported: the medians. When a case's inputs are small enough for the L2
-- cache to keep them, calls rotate among several input sets (different
-- seeds), so that no call finds the last one's inputs in L2. Outputs are
-- allocated once and written in place (opts.out), poisoned with NaN first.
-- "first call" is the warm-up's wall time; "NVRTC cold" its compile
-- (a cache miss unless the disk cache had it), "cached" the compile of a
-- second plan of the same source (an in-memory hit).
--
-- --device cpu times the CPU executor instead (g:eval), for small shapes
-- and for a machine without a GPU. --save-inputs / --save-outputs write
-- each case's inputs and outputs as .npy files (DIR/<variant>/<B>x<H>x<N>x<D>/
-- in<k>_<name>.npy, bf16 as its bits in <u2, and out<k>.npy in f32), for
-- bench/compare.py.
--
-- TFLOP/s counts the work of all matrix products as ../shared/ANCHORS.md
-- does: 4·B·H·N²·D per attention (QKᵀ and PV), times the fraction of
-- (i, j) pairs the mask keeps (V.kept), times the number of attentions
-- (2 for differential: two softmax maps, as ANCHORS.md counts two SDPA
-- calls). Prints a markdown table as it goes; --json writes the results.
--
-- FL_BENCH_DOC_IDS=path saves the document variant's ids (.npy, i32) so
-- that torch_bench.py masks the same documents.
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"
local A = require "variants.common"

io.stdout:setvbuf("line")

local DEFAULT_VARIANTS = "full,causal,softcap,alibi,sliding_window,prefix_lm,document," ..
  "differential,evoformer_row,sigmoid"
local ANCHOR_SHAPES = "8,16,1024,64;4,16,4096,64;4,16,4096,128;1,16,16384,128"
-- Attentions a variant computes, in units of 4·B·H·N²·D (default 1).
local ATTENTIONS = {differential = 2}

-- ---- options ----

local function fail(fmt, ...)
  io.stderr:write("bench: " .. fmt:format(...) .. "\n")
  os.exit(2)
end

local KNOWN = {variants = 1, shapes = 1, dtype = 1, json = 1, iters = 1, budget = 1, rest = 1, path = 1, kernels = 1,
  device = 1, persistent = 1, ["save-inputs"] = 1, ["save-outputs"] = 1}

local function parse(argv)
  local o = {}
  local i = 1
  if argv[1] and not argv[1]:match("^%-%-") then o.variants, i = argv[1], 2 end
  while argv[i] do
    local key, value = argv[i]:match("^%-%-([%w-]+)=(.*)$")
    if not key then
      key, value = argv[i]:match("^%-%-([%w-]+)$"), argv[i + 1]
      i = i + 1
    end
    if not key or not KNOWN[key] then fail("unknown argument '%s' (see the head of bench/bench.lua)", argv[i - 1]) end
    if value == nil then fail("--%s needs a value", key) end
    o[key] = value
    i = i + 1
  end
  return o
end

local O = parse(arg or {})
local function number_opt(name, env, default)
  local v = O[name] or os.getenv(env)
  local n = tonumber(v or default)
  if not n or n <= 0 then fail("--%s must be a positive number, got '%s'", name, tostring(v)) end
  return n
end
local ITERS = math.floor(number_opt("iters", "FL_BENCH_ITERS", 50))
local BUDGET = number_opt("budget", "FL_BENCH_BUDGET_S", 20)
local REST = tonumber(O.rest or "0")
if not REST or REST < 0 or REST > 60 then fail("--rest must be seconds from 0 to 60, got '%s'", tostring(O.rest)) end
local KERNELS = O.kernels or os.getenv("FL_BENCH_KERNELS") or "auto"
local PATH = O.path or os.getenv("FL_BENCH_PATH") or "auto"
local DTYPE = O.dtype or "bf16"
local PERSISTENT, why = A.persistent(O.persistent) -- opts.persistent of plan:launch
if PERSISTENT == nil then fail("--%s", why) end
local DEVICE = O.device or "cuda"
local ONLY = O.variants or os.getenv("FL_BENCH_VARIANTS") or DEFAULT_VARIANTS
if DTYPE ~= "bf16" and DTYPE ~= "f16" then fail("--dtype must be bf16 or f16, got '%s'", DTYPE) end
if DEVICE ~= "cuda" and DEVICE ~= "cpu" then fail("--device must be cuda or cpu, got '%s'", DEVICE) end

local SHAPES = {}
local shape_text = O.shapes or os.getenv("FL_BENCH") or "4,16,4096,128"
if shape_text == "anchors" then shape_text = ANCHOR_SHAPES end
for one in shape_text:gmatch("[^;%s]+") do
  local sh = {}
  for w in one:gmatch("[^,]+") do sh[#sh + 1] = tonumber(w) end
  if #sh ~= 4 or not (sh[1] and sh[2] and sh[3] and sh[4]) then
    fail("a shape is B,H,N,D (four numbers), got '%s'", one)
  end
  SHAPES[#SHAPES + 1] = sh
end

if DEVICE == "cuda" and not fl.cuda_available() then
  print("bench: no GPU here; the benchmark times CUDA kernels (--device cpu times the CPU executor)")
  return
end

-- Inputs: the variants draw q, k, v (and more) with fl.randn; the same
-- draw (shape, dtype, device, seed) is made once and shared by every
-- variant, so that the host-side generator (tens of ns an element) runs a
-- few times, not ten. A draw too big for it (the [B, H, N, N] pair bias:
-- 2^30 elements at the default shape, a minute on the host) is made on the
-- GPU as a rank-one product u[i]·w[j] of two random vectors, by a
-- Flashlight program; the values do not change the kernels' time.
local BIG = tonumber(os.getenv("FL_BENCH_BIG_NUMEL") or "") or 64 * 1024 * 1024
local host_randn = fl.randn
local drawn, notes = {}, {}
local outer -- the program a ⊗ b
local function device_randn(sh, opts)
  if #sh < 2 or not tostring(opts.device):match("^cuda") then return nil end
  local u_shape, w_shape = table.move(sh, 1, #sh, 1, {}), table.move(sh, 1, #sh, 1, {})
  u_shape[#sh], w_shape[#sh - 1] = 1, 1
  local ok, t = pcall(function()
    local u = host_randn(u_shape, {dtype = opts.dtype, device = opts.device, seed = opts.seed})
    local w = host_randn(w_shape, {dtype = opts.dtype, device = opts.device, seed = opts.seed + 7})
    outer = outer or fl.compile(function(a, b) return a * b end)
    return outer(u, w)
  end)
  if not ok then
    notes[#notes + 1] = "rank-one input failed (" .. tostring(t) .. "); drawn on the host instead"
    return nil
  end
  notes[#notes + 1] = ("input [%s] %s: rank-one random u[i]·w[j], made on the GPU"):format(
    table.concat(sh, ","), opts.dtype)
  return t
end
fl.randn = function(sh, opts)
  opts = opts or {}
  local key = ("%s|%s|%s|%s"):format(table.concat(sh, ","), tostring(opts.dtype), tostring(opts.device),
    tostring(opts.seed))
  if drawn[key] then return drawn[key] end
  local numel = 1
  for _, s in ipairs(sh) do numel = numel * s end
  local t = numel > BIG and device_randn(sh, opts) or nil
  t = t or host_randn(sh, opts)
  drawn[key] = t
  return t
end


-- NaN at the first or last element of any output?
local function has_nan(outs)
  for _, t in ipairs(outs) do
    local sh = t:shape()
    local first, last = {}, {}
    for d = 1, #sh do first[d], last[d] = 1, sh[d] end
    if #sh > 0 and sh[1] > 0 then
      local a, b = t:get(table.unpack(first)), t:get(table.unpack(last))
      if a ~= a or b ~= b then return true end
    end
  end
  return false
end

local function median(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local function mkdir(path) os.execute(("mkdir -p '%s'"):format(path:gsub("'", "'\\''"))) end

local function case_dir(base, V, sh)
  local d = ("%s/%s/%dx%dx%dx%d"):format(base, V.name, sh[1], sh[2], sh[3], sh[4])
  mkdir(d)
  return d
end

-- Input sets for a case: one, or several (seeds 1, 2, ...) when the L2
-- cache could keep a set between calls. Integer inputs (document ids) stay
-- those of the first set: new ids would be a new mask, classified again.
local function input_sets(V, sh, device)
  local B, H, N, D = table.unpack(sh)
  local first = V.inputs(B, H, N, D, {dtype = DTYPE, seed = 1, device = device}, V.params)
  local bytes = 0
  for _, t in ipairs(first) do bytes = bytes + t:numel() * (t:dtype() == "f32" and 4 or 2) end
  local l2 = device == "cuda" and fl.device_info().l2_bytes or 0
  local n = bytes < 2 * l2 and math.min(8, math.ceil(4 * l2 / bytes)) or 1
  local sets = {first}
  for s = 2, n do
    sets[s] = V.inputs(B, H, N, D, {dtype = DTYPE, seed = s, device = device}, V.params)
    for k, t in ipairs(first) do
      if t:dtype():match("^i") or t:dtype() == "bool" then sets[s][k] = t end
    end
  end
  return sets
end

local function kernel_list(plan)
  local c = plan:compiled() or {kernels = {}}
  local ks = {}
  for _, k in ipairs(c.kernels) do
    ks[#ks + 1] = {name = k.name, path = k.path, registers = k.registers, spill_stores = k.spill_stores}
  end
  return ks, c
end

local function kernels_text(ks)
  local names = {}
  for _, k in ipairs(ks) do
    local kind = k.path == "hopper" and "wgmma, " or k.path == "mma" and "mma.sync, " or ""
    names[#names + 1] = ("%s (%s%d regs%s)"):format(k.name, kind, k.registers,
      (k.spill_stores or 0) > 0 and (", %d B spilled"):format(k.spill_stores) or "")
  end
  return table.concat(names, " + ")
end

local function save_case(V, sh, g, inputs, outs)
  if O["save-inputs"] then
    local d = case_dir(O["save-inputs"], V, sh)
    -- bf16 as its bits (<u2): half the bytes of f32, for a [B,H,N,N] bias
    for k = 1, #inputs do
      inputs[k]:to("cpu"):save(("%s/in%d_%s.npy"):format(d, k, g:value(k).name), {raw = inputs[k]:dtype() == "bf16"})
    end
  end
  if O["save-outputs"] then
    local d = case_dir(O["save-outputs"], V, sh)
    for k, t in ipairs(outs) do t:to("cpu"):to("f32"):save(("%s/out%d.npy"):format(d, k)) end
  end
end

local function bench(V, sh)
  local B, H, N, D = table.unpack(sh)
  local t0 = fl.clock()
  local sets = input_sets(V, sh, DEVICE)
  local inputs = sets[1]
  local input_s = fl.clock() - t0
  local doc_path = os.getenv("FL_BENCH_DOC_IDS")
  if V.name == "document" and doc_path and doc_path ~= "" then inputs[4]:to("cpu"):save(doc_path) end

  t0 = fl.clock()
  local g = fl.trace(V.make(V.params), table.unpack(inputs))
  for _, p in ipairs(fl.passes) do g:run(p) end
  local plan = g:plan()
  local front_ms = (fl.clock() - t0) * 1e3
  local r = {variant = V.name, shape = sh, dtype = DTYPE, device = DEVICE, sets = #sets, input_s = input_s}

  local run, outs
  if DEVICE == "cpu" then
    run = function(x)
      outs = g:eval(x)
      return nil
    end
  else
    local opts = {out = A.poisoned(g), kernels = KERNELS, path = PATH, persistent = PERSISTENT}
    outs = opts.out
    run = function(x)
      plan:launch(x, nil, opts)
      return plan:last_ms()
    end
  end
  t0 = fl.clock()
  run(inputs)
  r.first_call_ms = front_ms + (fl.clock() - t0) * 1e3
  r.nan = DEVICE == "cuda" and has_nan(outs) or false
  save_case(V, sh, g, inputs, outs)
  if DEVICE == "cuda" then
    local c
    r.kernels, c = kernel_list(plan)
    r.compile_ms, r.cache = c.ms, c.cache
    -- a second plan of the same source (g:plan() would return the first): the in-memory cache
    local again = g.core:plan(0)
    again:launch(inputs, nil, {out = A.poisoned(g), kernels = KERNELS, path = PATH, persistent = PERSISTENT})
    local c2 = again:compiled() or {}
    r.cached_compile_ms, r.cached_cache = c2.ms, c2.cache
    again:close()
  end

  t0 = fl.clock()
  run(sets[#sets > 1 and 2 or 1])
  local one = fl.clock() - t0
  r.calls = math.max(1, math.min(ITERS, math.floor(BUDGET / math.max(one, 1e-6))))
  if REST > 0 then os.execute(("sleep %g"):format(REST)) end
  r.rest_s = REST
  local dev, wall = {}, {}
  for i = 1, r.calls do
    local x = sets[(i - 1) % #sets + 1]
    t0 = fl.clock()
    dev[i] = run(x)
    wall[i] = (fl.clock() - t0) * 1e3
  end
  r.wall_ms = median(wall)
  r.ms = #dev == r.calls and median(dev) or r.wall_ms
  r.timer = #dev == r.calls and "events" or "wall clock"
  r.kept = V.kept(N, V.params, inputs)
  r.tflops = 4 * B * H * N * N * D * r.kept * (ATTENTIONS[V.name] or 1) / r.ms / 1e9
  return r
end

-- ---- JSON ----

local function json(v, out)
  local t = type(v)
  if t == "table" then
    if #v > 0 or next(v) == nil then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = "," end
        json(x, out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        json(k, out)
        out[#out + 1] = ":"
        json(v[k], out)
      end
      out[#out + 1] = "}"
    end
  elseif t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c) return ("\\u%04x"):format(c:byte()) end) .. '"'
  elseif t == "number" then
    out[#out + 1] = (v ~= v or v == math.huge or v == -math.huge) and "null"
      or math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  else
    out[#out + 1] = "null"
  end
  return out
end

-- ---- the run ----

local function cell(s) return (tostring(s):gsub("[\r\n]+", " "):gsub("|", "\\|")) end

local info = DEVICE == "cuda" and fl.device_info() or {name = "CPU executor", arch = "cpu", multiprocessors = 0}
local where = DEVICE == "cuda" and ("%s (%s, %d SMs)"):format(info.name, info.arch, info.multiprocessors)
  or "the CPU executor"
print(("Flashlight on %s, %s, kernels = %s, path = %s; median of up to %d calls after a warm-up call%s, " ..
  "timed by %s; TFLOP/s = 4·B·H·N²·D × kept × attentions / time."):format(where, DTYPE, KERNELS, PATH, ITERS,
  REST > 0 and (" and %g s of rest"):format(REST) or "",
  DEVICE == "cuda" and "CUDA events around the kernels (wall clock around the synchronous call beside it)"
  or "the wall clock"))
print("")
print("| variant | B,H,N,D | ms | TFLOP/s | kept | calls (input sets) | wall ms | first call ms | NVRTC cold / cached ms | kernels compiled (registers) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
local ok_list, list = pcall(variants.all, ONLY)
if not ok_list then
  print("| (variants) | | error: " .. cell(list) .. " | | | | | | | |")
  list = {}
end
local results = {}
for _, sh in ipairs(SHAPES) do
  for _, V in ipairs(list) do
    local shape = table.concat(sh, ",")
    local ok, r = pcall(bench, V, sh)
    if ok then
      results[#results + 1] = r
      print(("| %s | %s | %.3f | %.1f | %.3f | %d (%d) | %.3f | %.0f | %s | %s%s |"):format(V.name, shape, r.ms,
        r.tflops, r.kept, r.calls, r.sets, r.wall_ms, r.first_call_ms,
        r.compile_ms and ("%.0f (%s) / %.1f (%s)"):format(r.compile_ms, r.cache, r.cached_compile_ms or 0 / 0,
          r.cached_cache or "?") or "–",
        r.kernels and cell(kernels_text(r.kernels)) or "CPU executor", r.nan and " **NaN in output**" or ""))
    else
      results[#results + 1] = {variant = V.name, shape = sh, dtype = DTYPE, error = tostring(r)}
      print(("| %s | %s | error: %s | | | | | | | |"):format(V.name, shape, cell(r)))
    end
    collectgarbage()
  end
end
if #notes > 0 then
  print("")
  for _, s in ipairs(notes) do print("Note: " .. s) end
end
if O.json then
  local doc = {device = info.name, arch = info.arch, dtype = DTYPE, path = PATH, kernels = KERNELS,
    iters = ITERS, rest_s = REST, date = os.date("!%Y-%m-%d %H:%M UTC"), command = table.concat(arg or {}, " "),
    results = results, notes = notes}
  local f = assert(io.open(O.json, "w"))
  f:write(table.concat(json(doc, {})), "\n")
  f:close()
  print(("\nwrote %s"):format(O.json))
end
