-- On a machine without a GPU or driver, asking for CUDA is one clear error.
local fl = require "flashlight"

if fl.cuda_available() then return end -- spec/gpu covers machines with a GPU

describe("without CUDA", function()
  it("cuda_available says no, and why", function()
    local ok, why = fl.cuda_available()
    assert.is_false(ok)
    assert.matches("CUDA is not available", why)
    assert.equal(0, fl.device_count())
  end)

  local asks = {
    {"randn on cuda", function() return fl.randn({2}, {device = "cuda"}) end},
    {"zeros on cuda:1", function() return fl.zeros({2}, {device = "cuda:1"}) end},
    {"to cuda", function() return fl.zeros({2}):to("cuda") end},
    {"tensor on cuda", function() return fl.tensor({1}, {device = "cuda"}) end},
    {"device_info", function() return fl.device_info() end},
  }
  for _, a in ipairs(asks) do
    it(a[1] .. " raises one clear error at the caller's line", function()
      local ok, err = pcall(a[2])
      assert.is_false(ok)
      assert.matches("cuda_absent_spec%.lua:%d+: CUDA is not available", err)
    end)
  end
end)
