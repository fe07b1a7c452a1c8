-- On a machine with a GPU: tensor-core kernels whose running maxima lag
-- (kept while a step's new maximum is at most 2^8 past them) give the
-- scalar kernels' numbers (f64 inside) where the scores climb along the
-- keys: slowly (a maximum kept for steps), in jumps past 2^8 (replaced),
-- or fall (kept from the first step). The keys are scaled a position at a
-- time; head dims 64 and 128, bf16 and f16, both tensor-core paths.
-- FL_GPU_VARIANTS picks among the variants below.
local fl = require "flashlight"
local variants = require "variants"
local paths_agree = require "paths_agree"

local B, H, N = 1, 2, 1024
local TOL = {bf16 = 1e-2, f16 = 2e-3}
local KEYS = {full = {2}, causal = {2}, softcap = {2}, alibi = {2}, differential = {2, 4}} -- the key inputs

local PROFILES = {
  {"rising", function(j) return 1 + 4 * (j - 1) / N end},
  {"jumps", function(j) return 1 + 2 * ((j - 1) // 128) end},
  {"falling", function(j) return 1 + 4 * (N - j) / N end},
}

-- t [B, H, N, D] with key position j scaled by f(j), as dtype.
local function scaled(t, f, dtype)
  local x = t:to("f32"):totable()
  for b = 1, #x do
    for h = 1, #x[b] do
      for j = 1, #x[b][h] do
        local row, s = x[b][h][j], f(j)
        for d = 1, #row do row[d] = row[d] * s end
      end
    end
  end
  return fl.tensor(x, {dtype = dtype})
end

local function chosen()
  local wanted = os.getenv("FL_GPU_VARIANTS")
  local out = {}
  for _, V in ipairs(variants.all(wanted)) do
    if KEYS[V.name] then out[#out + 1] = V end
  end
  return out
end

describe("running maxima that lag, on scores that climb #gpu", function()
  for _, V in ipairs(chosen()) do
    it(V.name .. ": the tensor-core kernels agree with the scalar ones", function()
      for _, D in ipairs({64, 128}) do
        for _, dt in ipairs({"bf16", "f16"}) do
          for _, prof in ipairs(PROFILES) do
            local cpu = V.inputs(B, H, N, D, {dtype = dt, seed = 7}, V.params)
            for _, k in ipairs(KEYS[V.name]) do cpu[k] = scaled(cpu[k], prof[2], dt) end
            local gpu = {}
            for n, t in ipairs(cpu) do gpu[n] = t:to("cuda") end
            local g = fl.trace(V.make(V.params), table.unpack(cpu))
            for _, p in ipairs(fl.passes) do g:run(p) end
            paths_agree(g, gpu, ("%s D=%d %s %s"):format(V.name, D, dt, prof[1]), TOL[dt])
          end
        end
      end
    end)
  end
end)
