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

  it("lua_pass: a Lua pass turns exp into exp2 before online, same numbers", function()
    local out = flua("examples/lua_pass.lua")
    assert.matches("^causal: [^\n]*passes: inline, demote, exp2, online", out)
    local after = out:match("== after the Lua pass 'exp2'\n(.-)\n== after online")
    assert.is_not_nil(after, out)
    local score = "where%(i >= j, %(sum%(d%) q%[b,h,i,d%] %* k%[b,h,j,d%]%) %* 0%.36067376, %-inf%)"
    assert.matches("softmax5%[b,h,i,_%] = max%(j%) " .. score, after)
    assert.matches("sum%(j%) exp2%(" .. score .. " %- softmax5%[b,h,i,0%]%)", after)
    assert.is_nil(after:find("exp(", 1, true))
    assert.matches("rescaled by exp2%(before %- after%) of softmax5%[b,h,i,0%]  ", out)
    assert.matches("\nexp2: 2 nodes compute exp%(%) as exp2%(%)[^\n]*\nexp2: [^\n]*\nonline: group 1",
      out)
    local vs_plain, vs_ref = out:match("error against the default pipeline ([%d.e%-+]+), " ..
      "against the plain%-Lua reference ([%d.e%-+]+): ok")
    assert.is_true(tonumber(vs_plain) < 1e-5 and tonumber(vs_ref) < 1e-5, out)
    out = flua("examples/lua_pass.lua differential")
    assert.matches("^differential: ", out)
    assert.matches(": ok\n$", out)
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
