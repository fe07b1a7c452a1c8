-- .npy files move between Flashlight and NumPy/PyTorch (python3 with numpy
-- is on the GPU machine).
local fl = require "flashlight"
local run = require "run"

describe("NumPy interop #gpu", function()
  it("numpy reads what we write and we read what numpy writes", function()
    local a, b = run.tmpname(".npy"), run.tmpname(".npy")
    local t = fl.randn({3, 4, 5}, {seed = 5})
    t:save(a)
    local py = ([[python3 -c "
import numpy as np
x = np.load('%s')
assert x.dtype == np.float32 and x.shape == (3, 4, 5), (x.dtype, x.shape)
np.save('%s', (x.astype(np.float64) * 2).T)
print('sum', float(x.astype(np.float64).sum()))
"]]):format(a, b)
    local out, rc = run.sh(py)
    assert.equal(0, rc, out)
    local u = fl.load(b) -- float64, Fortran-ordered transpose
    os.remove(a)
    os.remove(b)
    assert.same({5, 4, 3}, u:shape())
    assert.equal("f32", u:dtype())
    assert.equal(2 * t:get(2, 3, 4), u:get(4, 3, 2))
    local sum = 0
    for _, m in ipairs(t:totable()) do for _, r in ipairs(m) do for _, v in ipairs(r) do sum = sum + v end end end
    assert.near(sum, tonumber(out:match("sum (%S+)")), 1e-9)
  end)
end)
