-- Every example runs with `flua examples/NAME.lua` and says what it checked.
local run = require "run"

local function flua(script)
  local out, rc = run.sh("build/flua " .. script)
  assert.equal(0, rc, script .. " failed:\n" .. out)
  return out
end

describe("examples", function()
  it("quickstart: causal attention, run and checked", function()
    local out = flua("examples/quickstart.lua")
    assert.matches("tensor%(f32%[1,2,64,32%], cpu%), first row error 0: ok", out)
  end)

  it("custom_variant: cosine attention against plain Lua, and its traced graph", function()
    local out = flua("examples/custom_variant.lua")
    assert.matches("max error against plain Lua [%d.e%-+]+: ok", out)
    assert.matches("%d+ kernels; the graph it traced:", out)
    assert.matches("sqrt%d+ = sqrt%(sum%d+%)", out)
    assert.matches("return matmul%d+", out)
  end)

  it("inspect_passes: the IR at every stage, for differential attention and a named one", function()
    local out = flua("examples/inspect_passes.lua")
    assert.matches("== 1%. traced", out)
    assert.matches("== 2%. lowered", out)
    assert.matches("matmul%d+%[b,h,i,k%] = sum%(j%) sub%d+%[b,h,i,j%] %* v%[b,h,j,k%]", out)
    assert.matches("%d+ kernels:", out)
    out = flua("examples/inspect_passes.lua causal")
    assert.matches("^causal: ", out)
  end)

  it("the demo runs the whole variant library, each within 1e-5 of its reference", function()
    local out = flua("examples/demo.lua")
    local variants = require "variants"
    for _, name in ipairs(variants.names) do
      local row = out:match("\n(" .. name .. " [^\n]*)")
      assert.is_not_nil(row, "no row for " .. name .. " in:\n" .. out)
      assert.is_nil(row:find("FAILED"), row)
      local err = tonumber(row:match("%%%s+%d+%s+([%d.e%-+]+)"))
      assert.is_true(err ~= nil and err < 1e-5, row)
    end
    assert.matches(#variants.names .. " variants, 0 failed", out)
  end)

  it("the demo runs a chosen subset and names an unknown variant", function()
    local out = flua("examples/demo.lua causal,lse")
    assert.matches("2 variants, 0 failed", out)
    local bad, rc = run.sh("build/flua examples/demo.lua causal,nope")
    assert.equal(1, rc)
    assert.matches("no variant 'nope'", bad)
  end)
end)
