-- Exercises the library, errors included, so that valgrind can show that
-- nothing leaks: run as `valgrind --leak-check=full build/flua THIS`.
local fl = require "flashlight"
local tmp = ("/tmp/flashlight-leak-%d.npy"):format(os.time())

for round = 1, 3 do
  local t = fl.tensor({{1, 2}, {3, 4}}, {dtype = "bf16"})
  local r = fl.randn({16, 8}, {seed = round, dtype = "f16"})
  local u <close> = r:to("f32")
  assert(#u:totable() == 16)
  assert(fl.rand({5}):to("i64"):numel() == 5)
  fl.full({3}, 2.5):save(tmp)
  assert(fl.load(tmp, {dtype = "f16"}):get(2) == 2.5)
  t:save(tmp, {raw = true})
  assert(fl.load(tmp, {dtype = "bf16"}):get(2, 2) == 4)
  r:free()
  -- every kind of error, each raised through the binding
  local bad = {
    function() return fl.tensor({{1}, {2, 3}}) end,
    function() return fl.tensor({1, "x"}) end,
    function() return fl.zeros({-1}) end,
    function() return fl.zeros({1}, {dtype = "nope"}) end,
    function() return fl.zeros({1}, {bogus = 1}) end,
    function() return fl.load("/nonexistent.npy") end,
    function() return fl.zeros({2}):get(3) end,
    function() return fl.randn({2}, {device = "cuda"}) end,
    function() return r:numel() end,
  }
  for _, f in ipairs(bad) do assert(not pcall(f)) end
  local f = assert(io.open(tmp, "wb"))
  f:write("\x93NUMPY\1\0\118\0{'descr': '<f4', 'fortran_order': False, 'shape': (9,), }")
  f:close()
  assert(not pcall(fl.load, tmp))
end
os.remove(tmp)
collectgarbage()
print("leak workload done")
