-- Times variants' kernels on the GPU: `flua bench/bench.lua [variant,...]`.
-- Prints a table (ms a call, TFLOP/s counting 4·B·H·N²·D for the two
-- products, scaled by the fraction of pairs the mask keeps) at the shape in
-- FL_BENCH (default B=1,H=8,N=1024,D=64), bf16. The side-by-side
-- comparison with FlexAttention and SDPA is bench/torch_bench.py, run in
-- the same session on the same shape.
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"

local shape = {}
for w in (os.getenv("FL_BENCH") or "1,8,1024,64"):gmatch("%d+") do shape[#shape + 1] = tonumber(w) end
local B, H, N, D = table.unpack(shape)
local ITERS = tonumber(os.getenv("FL_BENCH_ITERS") or "5")

if not fl.cuda_available() then
  print("bench: no GPU here; the benchmark times CUDA kernels")
  return
end

local info = fl.device_info()
print(("%s (%s), B=%d H=%d N=%d D=%d bf16, median of %d calls after a warm-up call"):format(
  info.name, info.arch, B, H, N, D, ITERS))
print(("%-18s %9s %9s %10s"):format("variant", "ms", "TFLOP/s", "compile ms"))
for _, V in ipairs(variants.all(arg and arg[1])) do
  local inputs = V.inputs(B, H, N, D, {dtype = "bf16", seed = 1, device = "cuda"}, V.params)
  local attn = fl.compile(V.make(V.params))
  local t0 = fl.clock()
  attn(table.unpack(inputs))
  local first = (fl.clock() - t0) * 1e3
  local times = {}
  for i = 1, ITERS do
    t0 = fl.clock()
    attn(table.unpack(inputs))
    times[i] = (fl.clock() - t0) * 1e3
  end
  table.sort(times)
  local ms = times[(ITERS + 1) // 2]
  local flops = 4 * B * H * N * N * D * V.kept(N, V.params, inputs)
  print(("%-18s %9.2f %9.3f %10.0f"):format(V.name, ms, flops / ms / 1e9, first - ms))
end
