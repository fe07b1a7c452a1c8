-- The CUDA printer, checked where there is no GPU: every variant's kernels,
-- printed from its plan, compile with NVRTC for sm_90 and sm_80, and the
-- source is self-contained, with no register spills. The fused groups are
-- tensor-core kernels (N = 200: the tiles do not divide the sequence); the
-- rest, and the rows they hand back, the plan's scalar kernels. The
-- register report is printed.
local fl = require "flashlight"
local variants = require "variants"

local have, why = fl.jit.available()

describe("CUDA source of every variant", function()
  if not have then
    io.stderr:write("cuda_source_spec: NVRTC is not available (" .. tostring(why) .. "): skipped\n")
    pending("NVRTC is not available: " .. tostring(why))
    return
  end
  for _, V in ipairs(variants.all()) do
    it(V.name .. " compiles for sm_90 and sm_80 at head dims 64 and 128", function()
      local report = {}
      for _, D in ipairs({64, 128}) do
        local inputs = V.inputs(1, 2, 200, D, {dtype = "bf16", seed = 1}, V.small)
        local attn = fl.compile(V.make(V.small))
        local src = attn:source(table.unpack(inputs))
        assert.is_nil(src:find("#include", 1, true), "the source includes a header")
        local _, kernels = attn:graph_of("source", table.unpack(inputs)):plan():cuda("bf16")
        -- the fused group runs on tensor cores (lse's scores are not a tile of their own yet)
        local mma = 0
        for _, k in ipairs(kernels) do
          if k.kind == "tensor cores" then mma = mma + 1 end
        end
        if V.name ~= "lse" then assert.equal(1, mma, V.name .. ": " .. tostring(kernels[#kernels].why)) end
        for _, arch in ipairs({"sm_90", "sm_80"}) do
          local r = fl.jit.compile(src, {arch = arch, name = V.name .. ".cu"})
          assert.equal(#kernels, #r.kernels, V.name .. " " .. arch)
          for _, k in ipairs(r.kernels) do
            assert.is_true(k.registers > 0)
            -- the target is sm_90; sm_80 must compile (it may spill a little)
            if arch == "sm_90" then
              assert.equal(0, k.spill_stores, ("%s %s D=%d: %s spills"):format(V.name, arch, D, k.name))
            end
            if arch == "sm_90" then
              report[#report + 1] = ("D=%d %s %d regs, %d B spilled"):format(D, k.name, k.registers,
                k.spill_stores)
            end
          end
        end
      end
      io.stderr:write(("# %s: %s\n"):format(V.name, table.concat(report, "; ")))
    end)
  end

  it("names the kernels after the plan's: groups and lone nodes", function()
    local V = variants.load("forgetting")
    local inputs = V.inputs(1, 2, 100, 64, {dtype = "bf16", seed = 1}, V.small)
    local g = fl.trace(V.make(V.small), table.unpack(inputs))
    for _, p in ipairs(fl.passes) do g:run(p) end
    local src, kernels = g:plan():cuda()
    -- the cumsum, the group on tensor cores, its scalar kernel for rows it hands back
    assert.equal(3, #kernels)
    assert.matches("^fl_node%d+$", kernels[1].name)
    assert.equal("fl_group1_mma", kernels[2].name)
    assert.equal("tensor cores", kernels[2].kind)
    assert.equal("fl_group1", kernels[3].name)
    assert.equal("scalar", kernels[3].kind)
    assert.matches('extern "C" __global__ void fl_group1%(', src)
    assert.matches('extern "C" __global__ void __launch_bounds__%(128, 2%) fl_group1_mma%(', src)
    assert.same({"f", "cumsum3"}, kernels[1].params)
  end)

  it("source needs example inputs", function()
    local attn = fl.compile(variants.load("full").fn)
    local ok, err = pcall(attn.source, attn)
    assert.is_false(ok)
    assert.matches("cuda_source_spec%.lua:%d+: source: pass example inputs", err)
  end)
end)
