-- On a machine with a GPU: every variant of scripts/variants runs as CUDA
-- kernels generated from its plan, at head dims 64 and 128, several
-- sequence lengths, bf16 and f16, and equals the CPU executor (double
-- precision inside, outputs in f32) on the same inputs. FL_GPU_N lists the
-- lengths (default 1,37,100); FL_GPU_VARIANTS picks variants.
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"

local TOL = {bf16 = 1e-2, f16 = 2e-3}

local function lengths()
  local s, out = os.getenv("FL_GPU_N") or "1,37,100", {}
  for w in s:gmatch("%d+") do out[#out + 1] = tonumber(w) end
  return out
end

describe("every variant as CUDA kernels #gpu", function()
  for _, V in ipairs(variants.all(os.getenv("FL_GPU_VARIANTS"))) do
    local name = V.name
    it(name, function()
      local lines = {}
      for _, D in ipairs({64, 128}) do
        for _, N in ipairs(lengths()) do
          for _, dt in ipairs({"bf16", "f16"}) do
            local seed = D * 7919 + N * 31 + #dt
            local cpu = V.inputs(1, 2, N, D, {dtype = dt, seed = seed}, V.small)
            local gpu = {}
            for k, t in ipairs(cpu) do gpu[k] = t:to("cuda") end
            local g = fl.trace(V.make(V.small), table.unpack(cpu))
            for _, p in ipairs(fl.passes) do g:run(p) end
            local want = {}
            for k, t in ipairs(g:eval(cpu, "f32")) do want[k] = t:totable() end
            local plan = g:plan()
            local t0 = os.clock()
            local outs = plan:launch(gpu)
            local ms = (os.clock() - t0) * 1e3
            local got = {}
            for k, t in ipairs(outs) do
              assert.matches("^cuda", t:device())
              got[k] = t:to("cpu"):to("f32"):totable()
            end
            assert.matches("cuda: compiled for sm_%d+ in [%d.]+ ms %(cache: %a+%): fl_", g:explain())
            local err = R.rel_error(got, want)
            lines[#lines + 1] = ("D=%d N=%d %s error %.1e (%.0f ms with compile)"):format(D, N, dt, err, ms)
            assert.is_true(err < TOL[dt], ("%s D=%d N=%d %s: error %.3g"):format(name, D, N, dt, err))
          end
        end
      end
      print("\n# " .. name .. ": " .. table.concat(lines, "; "))
    end)
  end
end)
