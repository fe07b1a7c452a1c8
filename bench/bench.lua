-- Times variants' kernels on the GPU: `flua bench/bench.lua [variant,...]`.
--
-- Shape: FL_BENCH="B,H,N,D" (default 4,16,4096,128), bf16. Variants: the
-- argument, else FL_BENCH_VARIANTS, else full, causal, softcap, alibi,
-- sliding_window, prefix_lm, document, differential, evoformer_row,
-- sigmoid; each at its benchmark constants (V.params: window 256, prefix
-- 512, cap 30, λ 0.3). FL_BENCH_KERNELS = auto (default) | scalar picks the
-- plan's kernels (plan:launch's opts.kernels), FL_BENCH_PATH = auto
-- (default: wgmma on an H100) | hopper | mma the tensor-core ones (opts.path).
--
-- Timing: a warm-up call (trace, passes, NVRTC compile, first run), then
-- FL_BENCH_ITERS calls (default 20; fewer when a call is so slow that they
-- would pass FL_BENCH_BUDGET_S seconds, default 10), each timed by the
-- monotonic wall clock (fl.clock) around plan:launch, which returns only
-- after the kernels finished (it reads the kernels' error flag back), so
-- launch overhead is included. Outputs are allocated once and written in
-- place (opts.out). Reported: the median.
--
-- TFLOP/s counts the work of all matrix products as ../shared/ANCHORS.md
-- does: 4·B·H·N²·D per attention (QKᵀ and PV), times the fraction of
-- (i, j) pairs the mask keeps (V.kept), times the number of attentions
-- (2 for differential: two softmax maps, as ANCHORS.md counts two SDPA
-- calls). Prints a markdown table; bench/torch_bench.py prints the same
-- table for FlexAttention and SDPA.
--
-- FL_BENCH_DOC_IDS=path saves the document variant's ids (.npy, i32) so
-- that torch_bench.py masks the same documents.
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"

io.stdout:setvbuf("line")

local DEFAULT_VARIANTS = "full,causal,softcap,alibi,sliding_window,prefix_lm,document," ..
  "differential,evoformer_row,sigmoid"
-- Attentions a variant computes, in units of 4·B·H·N²·D (default 1).
local ATTENTIONS = {differential = 2}

local shape = {}
for w in (os.getenv("FL_BENCH") or "4,16,4096,128"):gmatch("%d+") do shape[#shape + 1] = tonumber(w) end
local B, H, N, D = table.unpack(shape)
assert(B and H and N and D, "FL_BENCH must be B,H,N,D")
local ITERS = math.max(1, tonumber(os.getenv("FL_BENCH_ITERS") or "20"))
local BUDGET = tonumber(os.getenv("FL_BENCH_BUDGET_S") or "10")
local KERNELS = os.getenv("FL_BENCH_KERNELS") or "auto"
local PATH = os.getenv("FL_BENCH_PATH") or "auto"
local ONLY = (arg and arg[1]) or os.getenv("FL_BENCH_VARIANTS") or DEFAULT_VARIANTS

if not fl.cuda_available() then
  print("bench: no GPU here; the benchmark times CUDA kernels")
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

-- Output tensors of the graph (its shapes and dtypes) on the GPU, NaN, so
-- that a position the kernels never write shows.
local function outputs_of(g)
  local outs = {}
  for k, id in ipairs(g:outputs()) do
    local v = g:value(id)
    outs[k] = fl.full(v.shape, 0 / 0, {dtype = v.dtype, device = "cuda"})
  end
  return outs
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

local function bench(V)
  local t0 = fl.clock()
  local inputs = V.inputs(B, H, N, D, {dtype = "bf16", seed = 1, device = "cuda"}, V.params)
  local input_s = fl.clock() - t0
  local doc_path = os.getenv("FL_BENCH_DOC_IDS")
  if V.name == "document" and doc_path and doc_path ~= "" then inputs[4]:to("cpu"):save(doc_path) end

  t0 = fl.clock()
  local g = fl.trace(V.make(V.params), table.unpack(inputs))
  for _, p in ipairs(fl.passes) do g:run(p) end
  local plan = g:plan()
  local front_ms = (fl.clock() - t0) * 1e3

  local opts = {out = outputs_of(g), kernels = KERNELS, path = PATH}
  t0 = fl.clock()
  plan:launch(inputs, nil, opts)
  local first_ms = (fl.clock() - t0) * 1e3
  local nan = has_nan(opts.out)
  -- one more call, timed, sizes the loop
  t0 = fl.clock()
  plan:launch(inputs, nil, opts)
  local one = fl.clock() - t0
  local n = math.max(1, math.min(ITERS, math.floor(BUDGET / math.max(one, 1e-6))))
  local times = {}
  for i = 1, n do
    t0 = fl.clock()
    plan:launch(inputs, nil, opts)
    times[i] = (fl.clock() - t0) * 1e3
  end
  local ms = median(times)
  local kept = V.kept(N, V.params, inputs)
  local flops = 4 * B * H * N * N * D * kept * (ATTENTIONS[V.name] or 1)
  local c = plan:compiled() or {kernels = {}}
  local names = {}
  for _, k in ipairs(c.kernels) do
    local kind = k.path == "hopper" and "wgmma, " or k.path == "mma" and "mma.sync, " or ""
    names[#names + 1] = ("%s (%s%d regs%s)"):format(k.name, kind, k.registers,
      (k.spill_stores or 0) > 0 and (", %d B spilled"):format(k.spill_stores) or "")
  end
  return {
    ms = ms, tflops = flops / ms / 1e9, kept = kept, n = n,
    first_ms = front_ms + first_ms, compile_ms = c.ms, cache = c.cache,
    kernels = table.concat(names, " + "), nan = nan, input_s = input_s,
  }
end

local function cell(s) return (tostring(s):gsub("[\r\n]+", " "):gsub("|", "\\|")) end

local info = fl.device_info()
print(("Flashlight on %s (%s, %d SMs), B=%d H=%d N=%d D=%d bf16, kernels = %s, path = %s; median of up to %d calls " ..
  "(wall clock around plan:launch, synchronous) after a warm-up call; TFLOP/s = 4·B·H·N²·D × kept " ..
  "× attentions / time."):format(info.name, info.arch, info.multiprocessors, B, H, N, D, KERNELS, PATH, ITERS))
print("")
print("| variant | ms | TFLOP/s | kept | calls | first call ms (NVRTC ms, cache) | kernels compiled (registers) |")
print("|---|---:|---:|---:|---:|---:|---|")
local ok_list, list = pcall(variants.all, ONLY)
if not ok_list then
  print("| (variants) | error: " .. cell(list) .. " | | | | | |")
  list = {}
end
for _, V in ipairs(list) do
  local ok, r = pcall(bench, V)
  if ok then
    print(("| %s | %.3f | %.1f | %.3f | %d | %.0f (%.0f, %s) | %s%s |"):format(V.name, r.ms, r.tflops,
      r.kept, r.n, r.first_ms, r.compile_ms or 0 / 0, r.cache or "?", cell(r.kernels),
      r.nan and " **NaN in output**" or ""))
  else
    print(("| %s | error: %s | | | | | |"):format(V.name, cell(r)))
  end
  collectgarbage()
end
if #notes > 0 then
  print("")
  for _, s in ipairs(notes) do print("Note: " .. s) end
end
