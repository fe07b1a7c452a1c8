-- Runs a few variants' generated kernels on the GPU through the default path
-- (tensor-core kernels for fused attention groups), for compute-sanitizer:
--
--   compute-sanitizer --tool memcheck  --error-exitcode 1 dist/flua spec/gpu/sanitize.lua
--   compute-sanitizer --tool racecheck --error-exitcode 1 dist/flua spec/gpu/sanitize.lua
--
-- Plain (full), causal, document and differential attention at N = 100 and
-- 200 (neither divides the tiles: the last query and key tiles are partial)
-- and D = 64 and 128, B = 1, H = 2, bf16. Each output is poisoned (NaN)
-- first and compared with the CPU executor (double inside); a wrong result,
-- or a position no kernel wrote, raises an error: exit status 1. Above
-- N = 256 (FL_SANITIZE_N=1000 reaches the warp-specialized kernels) the CPU
-- executor takes minutes, so four query rows are compared with plain Lua in
-- double precision and every position is checked to have been written.
--
-- FL_SANITIZE_VARIANTS, FL_SANITIZE_N, FL_SANITIZE_D and FL_SANITIZE_DTYPES
-- (comma-separated) change the lists; FL_SANITIZE_BH the batch and heads
-- (default 1,2; more tiles than multiprocessors, e.g. 4,16 at N = 1000,
-- has persistent blocks take several tiles each, with FL_GPU_PERSISTENT=1);
-- FL_GPU_PATH ("auto", "hopper" or "mma") picks the tensor-core kernels;
-- FL_SANITIZE_REPEAT (default 1) launches each case that many times, each
-- into fresh poisoned outputs and each checked (kernels that keep words
-- across launches, as chain blocks' tickets).
package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"
local A = require "variants.common"

io.stdout:setvbuf("line")
local TOL = {bf16 = 1e-2, f16 = 2e-3, f32 = 1e-4}

local function list(name, default)
  local out = {}
  for w in (os.getenv(name) or default):gmatch("[^,%s]+") do out[#out + 1] = tonumber(w) or w end
  return out
end

local NAMES = os.getenv("FL_SANITIZE_VARIANTS") or "full,causal,document,differential"
local LENGTHS = list("FL_SANITIZE_N", "100,200")
local DIMS = list("FL_SANITIZE_D", "64,128")
local DTYPES = list("FL_SANITIZE_DTYPES", "bf16")
local BH = list("FL_SANITIZE_BH", "1,2")
local B, H = BH[1] or 1, BH[2] or 2
local CPU_MAX_N = 256
local PATH = os.getenv("FL_GPU_PATH") or "auto"
local PERSISTENT = assert(A.persistent(os.getenv("FL_GPU_PERSISTENT")))
local REPEAT = math.tointeger(tonumber(os.getenv("FL_SANITIZE_REPEAT") or "1")) or 1

assert(fl.cuda_available(), "sanitize: no GPU here")

-- Every position of the poisoned (NaN) outputs was written, and with a
-- finite value.
local function assert_written(outs)
  for _, t in ipairs(outs) do
    local zero = fl.full(t:shape(), 0, {dtype = "f32"})
    if not (t:max_diff(zero) < math.huge) then error("an output position unwritten (NaN) or infinite", 0) end
  end
end

local failures, cases = {}, 0
for _, V in ipairs(variants.all(NAMES)) do
  for _, N in ipairs(LENGTHS) do
    for _, D in ipairs(DIMS) do
      for _, dt in ipairs(DTYPES) do
        cases = cases + 1
        local what = ("%s N=%d D=%d %s"):format(V.name, N, D, dt)
        local ok, err = pcall(function()
          local cpu = V.inputs(B, H, N, D, {dtype = dt, seed = N * 131 + D}, V.small)
          local gpu = {}
          for k, t in ipairs(cpu) do gpu[k] = t:to("cuda") end
          local g = fl.trace(V.make(V.small), table.unpack(cpu))
          for _, p in ipairs(fl.passes) do g:run(p) end
          local plan = g:plan()
          for rep = 1, REPEAT do
            local out = {}
            for k, id in ipairs(g:outputs()) do
              local v = g:value(id)
              out[k] = fl.full(v.shape, 0 / 0, {dtype = v.dtype, device = "cuda"})
            end
            local t0 = fl.clock()
            local res = plan:launch(gpu, nil, {out = out, kernels = "auto", path = PATH, persistent = PERSISTENT})
            local ms = (fl.clock() - t0) * 1e3
            local got, want = {}, nil
            for k, t in ipairs(res) do
              assert(rawequal(t, out[k]), "launch did not return the tensors given as opts.out")
              got[k] = t:to("cpu")
            end
            if N <= CPU_MAX_N then
              want = g:eval(cpu, "f32")
            else
              assert_written(got)
              local rows = {1, N, N // 2, N // 3 + 1, heads = {H}, batches = {B}}
              local x = {}
              for k, t in ipairs(cpu) do x[k] = R.lazy(t) end
              want = R.with_rows(rows, V.reference, x, V.small)
              for k, t in ipairs(got) do got[k] = R.lazy(t) end
            end
            local e = R.rel_error(got, want)
            local names = {}
            for _, kern in ipairs((plan:compiled() or {kernels = {}}).kernels) do
              names[#names + 1] = kern.name .. "(" .. (kern.path or "?") .. ")"
            end
            print(("%-30s error %.1e  %7.0f ms  %s%s"):format(what, e, ms, table.concat(names, "+"),
              REPEAT > 1 and (" (launch %d)"):format(rep) or ""))
            if not (e < TOL[dt]) then error(("error %.3g (tolerance %g)"):format(e, TOL[dt]), 0) end
          end
        end)
        if not ok then
          failures[#failures + 1] = what .. ": " .. tostring(err)
          print(what .. ": FAILED: " .. tostring(err))
        end
        collectgarbage()
      end
    end
  end
end

if #failures > 0 then
  error(("sanitize: %d of %d cases failed:\n%s"):format(#failures, cases, table.concat(failures, "\n")), 0)
end
print(("sanitize: %d cases, all equal the CPU executor"):format(cases))
