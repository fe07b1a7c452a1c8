-- On a machine with a GPU: CUDA tensors are real device memory, equal bit
-- for bit to the CPU ones for the same seed, and freed when collected.
local fl = require "flashlight"
local run = require "run"

local function bytes_of(t)
  local path = run.tmpname(".npy")
  t:save(path, {raw = true})
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

describe("CUDA tensors #gpu", function()
  it("a GPU is there", function()
    assert.is_true(fl.cuda_available())
    assert.is_true(fl.device_count() >= 1)
    local info = fl.device_info()
    assert.matches("^sm_%d+$", info.arch)
    assert.is_true(info.multiprocessors > 0 and info.memory > 2 ^ 30)
    print(("\n# %s %s, %d SMs, %.1f GiB, driver %d, L2 %d MiB, smem/block %d KiB"):format(
      info.name, info.arch, info.multiprocessors, info.memory / 2 ^ 30, info.driver_version,
      info.l2_bytes // 2 ^ 20, info.shared_per_block // 1024))
  end)

  it("randn on cuda equals randn on cpu bit for bit, every float dtype", function()
    for _, dt in ipairs({"f32", "f16", "bf16"}) do
      for _, shape in ipairs({{1}, {37, 53}, {2, 4, 128, 64}, {4, 16, 1024, 128}}) do
        local c = fl.randn(shape, {dtype = dt, seed = 1234})
        local g = fl.randn(shape, {dtype = dt, seed = 1234, device = "cuda"})
        assert.equal("cuda", g:device())
        assert.equal(bytes_of(c), bytes_of(g))
        local r = fl.rand(shape, {dtype = dt, seed = 99, device = "cuda"})
        assert.equal(bytes_of(fl.rand(shape, {dtype = dt, seed = 99})), bytes_of(r))
      end
    end
  end)

  it("copies both ways and converts on the device's data", function()
    local c = fl.randn({33, 65}, {seed = 7})
    local g = c:to("cuda")
    assert.equal("cuda", g:device())
    assert.equal(c:get(33, 65), g:get(33, 65))
    assert.same(c:totable(), g:totable())
    assert.same(c:totable(), g:to("cpu"):totable())
    for _, dt in ipairs({"f16", "bf16", "i32", "i64", "bool", "f32"}) do
      local gd = g:to(dt)
      assert.equal("cuda", gd:device())
      assert.equal(bytes_of(c:to(dt)), bytes_of(gd))
    end
    local g2 = g:to("cuda:0")
    assert.equal(g, g2)
    assert.same({{1, 2}, {3, 4}}, fl.tensor({{1, 2}, {3, 4}}, {device = "cuda"}):totable())
    assert.same({0, 1, 2}, fl.arange(3, {device = "cuda"}):totable())
    assert.same({2.5, 2.5}, fl.full({2}, 2.5, {device = "cuda"}):totable())
  end)

  it("saves from and loads to the device", function()
    local path = run.tmpname(".npy")
    local g = fl.randn({5, 6}, {device = "cuda", dtype = "f16", seed = 3})
    g:save(path)
    local back = fl.load(path, {device = "cuda"})
    os.remove(path)
    assert.equal("cuda", back:device())
    assert.same(g:totable(), back:totable())
  end)

  it("frees device memory when tensors are collected or closed", function()
    -- 200 GiB in total through a card with far less: only works if freed
    for _ = 1, 200 do
      local t <close> = fl.zeros({256, 1024, 1024}, {device = "cuda"})
      assert.equal(0, t:get(256, 1024, 1024))
    end
    for _ = 1, 200 do fl.zeros({256, 1024, 1024}, {device = "cuda"}) end
  end)

  it("names a missing device and a too-large allocation clearly", function()
    local ok, err = pcall(function() return fl.zeros({2}, {device = "cuda:63"}) end)
    assert.is_false(ok)
    assert.matches("tensor_spec%.lua:%d+: no CUDA device cuda:63", err)
    ok, err = pcall(function() return fl.zeros({1024, 1024, 1024, 1024}, {device = "cuda"}) end)
    assert.is_false(ok)
    assert.matches("cannot allocate .* on cuda:0", err)
  end)
end)
