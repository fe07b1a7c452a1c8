local fl = require "flashlight"
local run = require "run"

local function bytes_of(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe(".npy files", function()
  local path
  before_each(function() path = run.tmpname(".npy") end)
  after_each(function() os.remove(path) end)

  it("round-trip every dtype", function()
    local values = {{0, 1, -2}, {3, 4, 100}}
    for _, dt in ipairs({"f32", "f16", "bf16", "i32", "i64"}) do
      fl.tensor(values, {dtype = dt}):save(path)
      local t = fl.load(path)
      assert.equal(dt == "bf16" and "f32" or dt, t:dtype())
      assert.same(values, t:totable())
    end
    fl.tensor({true, false}):save(path)
    assert.same({true, false}, fl.load(path):totable())
  end)

  it("keep bf16 bits with raw = true and read them back as bf16", function()
    local t = fl.randn({3, 5}, {dtype = "bf16", seed = 2})
    t:save(path, {raw = true})
    assert.matches("'descr': '<u2'", bytes_of(path))
    local u = fl.load(path, {dtype = "bf16"})
    assert.equal("bf16", u:dtype())
    assert.same(t:totable(), u:totable())
  end)

  it("write the header numpy writes", function()
    fl.zeros({2, 3}):save(path)
    local s = bytes_of(path)
    assert.equal("\x93NUMPY\1\0", s:sub(1, 8))
    assert.matches("{'descr': '<f4', 'fortran_order': False, 'shape': %(2, 3%), }", s)
    assert.equal(128 + 24, #s)
  end)

  it("load converts on request", function()
    fl.tensor({1.5, 2.5}):save(path)
    local t = fl.load(path, {dtype = "f16"})
    assert.equal("f16", t:dtype())
    assert.same({1.5, 2.5}, t:totable())
  end)

  local function write(s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end

  it("refuse malformed files with a message naming the file and the caller's line", function()
    local header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }"
    local cases = {
      {"NOTNUMPY", "magic"},
      {"\x93NUMPY\1\0\200\0{", "truncated"},
      {"\x93NUMPY\1\0" .. string.char(#header, 0) .. header .. "\0\0\0\0", "truncated data"},
      {"\x93NUMPY\1\0\16\0{'descr': '<c8'", "truncated"},
      {"\x93NUMPY\9\0\0\0", "version"},
    }
    for _, c in ipairs(cases) do
      write(c[1])
      local ok, err = pcall(function() return fl.load(path) end)
      assert.is_false(ok)
      assert.matches("npy_spec%.lua:%d+:", err)
      assert.matches(path:gsub("%p", "%%%0"), err)
      assert.matches(c[2], err)
    end
    local ok, err = pcall(function() return fl.load("/nonexistent/x.npy") end)
    assert.is_false(ok)
    assert.matches("/nonexistent/x.npy", err)
  end)

  it("report an unwritable path", function()
    local ok, err = pcall(function() fl.zeros(2):save("/nonexistent/x.npy") end)
    assert.is_false(ok)
    assert.matches("npy_spec%.lua:%d+: .*/nonexistent/x.npy", err)
  end)
end)
