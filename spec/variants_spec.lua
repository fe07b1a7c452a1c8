-- The variant library (scripts/variants): every variant, traced and run by
-- fl.compile, against its plain-Lua reference at small sizes; the fraction
-- of pairs its mask keeps against a count; the metadata the demo and the
-- benchmarks read.
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"
local close = require "close"

local function run_against_reference(V, B, H, N, D, dtype, rtol, seed)
  local p = V.small
  local inputs = V.inputs(B, H, N, D, {dtype = dtype, seed = seed}, p)
  local outs = table.pack(fl.compile(V.make(p))(table.unpack(inputs)))
  local want = V.reference(R.tables(inputs), p)
  assert.equal(#want, outs.n, V.name .. ": number of outputs")
  for n = 1, #want do
    -- outputs come in the inputs' dtype; a log-sum-exp in f32
    local out_dtype = (V.name == "lse" and n == 2) and "f32" or dtype
    close.assert_close(("%s output %d at B,H,N,D = %d,%d,%d,%d %s"):format(V.name, n, B, H, N, D,
      dtype), outs[n], want[n], rtol, rtol, out_dtype)
  end
  return inputs
end

describe("the variant library", function()
  it("lists each variant once, under its file's name, with what the tools read", function()
    local seen = {}
    assert.is_true(#variants.names >= 18)
    for _, V in ipairs(variants.all()) do
      assert.is_nil(seen[V.name], "listed twice: " .. V.name)
      seen[V.name] = true
      assert.equal(V, variants.load(V.name))
      assert.equal("string", type(V.summary), V.name)
      assert.equal("function", type(V.fn), V.name)
      assert.equal("function", type(V.make), V.name)
      assert.equal("function", type(V.inputs), V.name)
      assert.equal("function", type(V.reference), V.name)
      assert.equal("table", type(V.params), V.name)
    end
    local picked = variants.all("causal, gqa")
    assert.equal(2, #picked)
    assert.equal("causal", picked[1].name)
    assert.has_error(function() variants.all("causal,nope") end)
  end)

  for _, name in ipairs(variants.names) do
    describe(name, function()
      local V = variants.load(name)

      it("equals its reference (f32, two shapes, N odd and not a multiple of anything)", function()
        run_against_reference(V, 2, 4, 13, 8, "f32", 1e-5, 1)
        run_against_reference(V, 1, 2, 37, 16, "f32", 1e-5, 2)
      end)

      it("keeps its outputs' dtypes for bf16 inputs, within bf16 rounding", function()
        run_against_reference(V, 1, 2, 19, 8, "bf16", 1e-2, 3)
      end)

      it("reports the fraction of pairs its mask keeps", function()
        for _, N in ipairs({13, 37, 64}) do
          local inputs = V.inputs(1, 2, N, 4, {dtype = "f32", seed = 4}, V.small)
          local keep = V.mask and V.mask(R.tables(inputs), V.small)
          local kept = 0
          for i = 1, N do
            for j = 1, N do
              if not keep or keep(1, 1, i, j) then kept = kept + 1 end
            end
          end
          local want = kept / (N * N)
          local got = V.kept(N, V.small, inputs)
          assert.is_true(math.abs(got - want) < 1e-12,
            ("%s at N = %d: kept() says %.6f, the mask keeps %.6f"):format(name, N, got, want))
        end
      end)
    end)
  end

  it("full-size constants are the benchmark's: window 256, prefix 512, cap 30, λ 0.3", function()
    assert.equal(256, variants.load("sliding_window").params.window)
    assert.equal(512, variants.load("prefix_lm").params.prefix)
    assert.equal(30, variants.load("softcap").params.cap)
    assert.equal(0.3, variants.load("differential").params.lambda)
    local causal = variants.load("causal")
    assert.equal(0.5 + 0.5 / 1024, causal.kept(1024, causal.params))
  end)
end)
