local fl = require "flashlight"

-- The error raised by f(...), which must name this file's line.
local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("tensor constructors", function()
  it("fl.tensor infers shape and dtype from nested tables", function()
    local t = fl.tensor({{1, 2, 3}, {4, 5, 6}})
    assert.same({2, 3}, t:shape())
    assert.equal("i64", t:dtype())
    assert.equal("cpu", t:device())
    assert.equal(6, t:numel())
    assert.equal(2, t:dim())
    assert.equal(6, t:get(2, 3))
    assert.equal("f32", fl.tensor({1, 2.5}):dtype())
    assert.equal("bool", fl.tensor({true, false}):dtype())
    assert.same({0}, fl.tensor({}):shape())
    local s = fl.tensor(2.5)
    assert.same({}, s:shape())
    assert.equal(1, s:numel())
    assert.equal(2.5, s:get())
  end)

  it("honours dtype and keeps int64 exact", function()
    local big = math.maxinteger - 1
    local t = fl.tensor({big, -big}, {dtype = "i64"})
    assert.equal(big, t:get(1))
    assert.equal(math.type(t:get(1)), "integer")
    assert.equal(2147483647, fl.tensor({3e9}, {dtype = "i32"}):get(1)) -- saturates
    assert.equal(1.5, fl.tensor({1.5}, {dtype = "f16"}):get(1))
  end)

  it("zeros, ones, full, arange", function()
    assert.same({{0, 0}, {0, 0}}, fl.zeros({2, 2}):totable())
    assert.same({1, 1, 1}, fl.ones(3):totable())
    assert.same({{7, 7}}, fl.full({1, 2}, 7, {dtype = "i32"}):totable())
    assert.same({true, true}, fl.full({2}, true, {dtype = "bool"}):totable())
    assert.same({0, 1, 2, 3}, fl.arange(4):totable())
    assert.equal("i64", fl.arange(4):dtype())
    assert.same({0, 1, 2}, fl.arange(3, {dtype = "bf16"}):totable())
    assert.same({}, fl.arange(0):totable())
    assert.same({2, 0, 3}, fl.zeros({2, 0, 3}):shape())
  end)

  it("size and get take 1-based and negative positions", function()
    local u = fl.zeros({2, 3, 4})
    assert.equal(4, u:size(-1))
    assert.equal(2, u:size(1))
    assert.same({2, 3, 4}, u:size())
    local m = fl.tensor({{1, 2}, {3, 4}})
    assert.equal(4, m:get(-1, -1))
    assert.equal(2, m:get(1, 2))
    assert.equal(3, m:get(-1, 1))
  end)
end)

describe("random tensors", function()
  it("are the same for the same seed and shape-independent by position", function()
    local a = fl.randn({4, 8}, {seed = 3})
    local b = fl.randn({32}, {seed = 3})
    assert.equal(a:get(2, 1), b:get(9))
    assert.same(a:totable(), fl.randn({4, 8}, {seed = 3}):totable())
    assert.are_not.same(a:totable(), fl.randn({4, 8}, {seed = 4}):totable())
  end)

  it("round each dtype from the same underlying sample", function()
    local f32 = fl.randn({64}, {seed = 9})
    local bf = fl.randn({64}, {seed = 9, dtype = "bf16"})
    assert.same(f32:to("bf16"):totable(), bf:totable())
  end)

  it("unseeded calls differ, and fl.seed makes them repeat", function()
    fl.seed(11)
    local a = fl.randn({8}):totable()
    local b = fl.randn({8}):totable()
    assert.are_not.same(a, b)
    fl.seed(11)
    assert.same(a, fl.randn({8}):totable())
  end)

  it("rand stays in [0, 1) and randn looks standard", function()
    for _, dt in ipairs({"f32", "f16", "bf16"}) do
      for _, v in ipairs(fl.rand({4096}, {seed = 1, dtype = dt}):totable()) do
        assert.is_true(v >= 0 and v < 1)
      end
    end
    local sum, sq, n = 0, 0, 20000
    for _, v in ipairs(fl.randn({n}, {seed = 5}):totable()) do sum, sq = sum + v, sq + v * v end
    assert.is_true(math.abs(sum / n) < 0.03)
    assert.is_true(math.abs(sq / n - 1) < 0.05)
  end)
end)

describe("conversions", function()
  it("round to nearest even", function()
    -- 1 + 2^-8 is halfway between the bf16 neighbours 1 and 1 + 2^-7
    assert.equal(1.0, fl.tensor({1 + 2 ^ -8}, {dtype = "bf16"}):get(1))
    assert.equal(1 + 2 ^ -6, fl.tensor({1 + 3 * 2 ^ -8}, {dtype = "bf16"}):get(1))
    assert.equal(1.0, fl.tensor({1 + 2 ^ -11}, {dtype = "f16"}):get(1))
    assert.equal(math.huge, fl.tensor({70000}, {dtype = "f16"}):get(1))
    local t = fl.tensor({1 + 2 ^ -11, 65519, 70000, 1 + 3 * 2 ^ -11})
    assert.same({1, 65504, math.huge, 1 + 2 ^ -9}, t:to("f16"):totable())
    assert.same({1 + 2 ^ -6}, fl.tensor({1 + 3 * 2 ^ -8}):to("bf16"):totable())
  end)

  it("to() goes between all dtypes and returns self when nothing changes", function()
    local t = fl.tensor({{0, 1}, {2, -3}}, {dtype = "f32"})
    for _, dt in ipairs({"f16", "bf16", "i32", "i64", "f32"}) do
      local u = t:to(dt)
      assert.equal(dt, u:dtype())
      assert.same({{0, 1}, {2, -3}}, u:totable())
    end
    assert.same({{false, true}, {true, true}}, t:to("bool"):totable())
    assert.equal(t, t:to("f32"))
    assert.equal(t, t:to("cpu"))
    assert.equal("f16", t:to({dtype = "f16", device = "cpu"}):dtype())
    assert.same({1, -2}, fl.tensor({1.9, -2.7}):to("i32"):totable())
  end)
end)

describe("t:max_diff", function()
  local R = require "variants.reference"

  it("gives max |t - want| and max |want|, across dtypes", function()
    local t = fl.tensor({{1, 2}, {3, 4.5}}, {dtype = "bf16"})
    local e, s = t:max_diff(fl.tensor({{1, 2.25}, {3, -5}}))
    assert.equal(9.5, e)
    assert.equal(5, s)
    assert.same({0, 4.5}, {t:max_diff(t)})
  end)

  it("matches NaN only with NaN and leaves infinite wants out of the scale", function()
    local nan, inf = 0 / 0, math.huge
    local function f(x) return fl.tensor(x, {dtype = "f32"}) end
    assert.same({0, 1}, {f({nan, 1}):max_diff(f({nan, 1}))})
    assert.same({inf, 1}, {f({0, 1}):max_diff(f({nan, 1}))})
    assert.same({inf, 1}, {f({nan, 1}):max_diff(f({0, 1}))})
    assert.same({0, 2}, {f({inf, 2}):max_diff(f({inf, 2}))})
    assert.same({inf, 2}, {f({3, 2}):max_diff(f({inf, 2}))})
  end)

  it("agrees with the reference's rel_error on tables", function()
    local a = fl.randn({3, 5, 7}, {seed = 4})
    local b = fl.randn({3, 5, 7}, {seed = 5, dtype = "f16"})
    local fast = R.rel_error({a, a}, {b, a})
    assert.is_true(fast > 0)
    assert.equal(fast, R.rel_error({a:totable(), a:totable()}, {b:totable(), a:totable()}))
  end)

  it("rejects other shapes and integer tensors, naming the line", function()
    local t = fl.zeros({2, 2})
    assert.matches("tensor_spec.lua:%d+: bad argument #1 to 'max_diff' %(the reference has shape %[4%], the tensor %[2,2%]%)",
      error_of(function() return t:max_diff(fl.zeros({4})) end))
    assert.matches("tensor_spec.lua:%d+: .*float tensors only",
      error_of(function() return t:max_diff(fl.zeros({2, 2}, {dtype = "i32"})) end))
  end)
end)

describe("lifetime", function()
  it("a closed tensor is freed and refuses use", function()
    local err
    do
      local t <close> = fl.zeros({4})
      assert.equal(4, t:numel())
      err = t
    end
    assert.matches("tensor is closed", error_of(err.numel, err))
    assert.equal("tensor(closed)", tostring(err))
    local u = fl.zeros(2)
    u:free()
    u:free()
    assert.matches("closed", error_of(function() return u:get(1) end))
  end)

  it("garbage collection frees many tensors", function()
    for _ = 1, 2000 do fl.zeros({256, 256}) end
    collectgarbage()
    assert.is_true(collectgarbage("count") < 100000)
  end)
end)

describe("bad input gets a clear error naming the argument and line", function()
  local cases = {
    {"ragged", function() return fl.tensor({{1, 2}, {3}}) end, "ragged nested table: element %[2%] has 1 entries, expected 2"},
    {"ragged deeper", function() return fl.tensor({{1, 2}, 3}) end, "element %[2%] is a number where a table of 2"},
    {"non-numeric", function() return fl.tensor({1, "x"}) end, "element %[2%] is a string"},
    {"non-numeric table leaf", function() return fl.tensor({{1}, {{}}}) end, "element %[2%]%[1%] is a table"},
    {"non-integer for int dtype", function() return fl.tensor({1.5}, {dtype = "i32"}) end, "is not an integer"},
    {"unknown dtype", function() return fl.zeros({2}, {dtype = "float32"}) end, "bad argument #2 to .*unknown dtype 'float32'"},
    {"unknown device", function() return fl.zeros({2}, {device = "gpu"}) end, "unknown device 'gpu'"},
    {"unknown option", function() return fl.zeros({2}, {dtpye = "f32"}) end, "unknown option 'dtpye'"},
    {"negative size", function() return fl.zeros({2, -3}) end, "bad argument #1 .*size 2 must be a non%-negative integer"},
    {"fractional size", function() return fl.zeros({2.5}) end, "size 1 must be a non%-negative integer"},
    {"shape not a table", function() return fl.zeros("x") end, "shape must be a table"},
    {"too many dims", function() return fl.zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}) end, "at most 8"},
    {"too deep", function() return fl.tensor({{{{{{{{{1}}}}}}}}}) end, "deeper than 8"},
    {"negative arange", function() return fl.arange(-1) end, "must not be negative"},
    {"randn int", function() return fl.randn({2}, {dtype = "i32"}) end, "floating dtype"},
    {"bad seed", function() return fl.randn({2}, {seed = "x"}) end, "'seed' must be an integer"},
    {"get out of range", function() return fl.zeros({2, 3}):get(1, 4) end, "index 4 out of range for dimension 2 of size 3"},
    {"get too few", function() return fl.zeros({2, 3}):get(1) end, "needs 2 indices, got 1"},
    {"get non-integer", function() return fl.zeros({2}):get(1.5) end, "number has no integer representation"},
    {"size dim", function() return fl.zeros({2}):size(3) end, "dimension 3 out of range"},
    {"to nonsense", function() return fl.zeros({2}):to("f65") end, "neither a dtype"},
    {"method on non-tensor", function() return fl.zeros({2}).numel({}) end, "tensor expected"},
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local err = error_of(c[2])
      assert.matches(c[3], err)
      assert.matches("tensor_spec%.lua:%d+:", err)
    end)
  end
end)
