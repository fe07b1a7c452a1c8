-- The demo (README's first command): makes tensors, moves them to the GPU
-- when there is one, and round-trips them through a NumPy .npy file.
local fl = require "flashlight"

local function section(title) print(("\n== %s"):format(title)) end

section("flashlight " .. fl.version)
local on_gpu, why = fl.cuda_available()
if on_gpu then
  local info = fl.device_info()
  print(("GPU: %s (%s, %d SMs, %.1f GiB)"):format(info.name, info.arch,
    info.multiprocessors, info.memory / 2 ^ 30))
else
  print("no GPU: running on the CPU (" .. why .. ")")
end
local device = on_gpu and "cuda" or "cpu"

section("tensors")
local q = fl.randn({2, 4, 128, 64}, {dtype = "bf16", seed = 1})
print("q      ", q, ("q[1][1][1][1] = %.6g"):format(q:get(1, 1, 1, 1)))
local qd = fl.randn({2, 4, 128, 64}, {dtype = "bf16", seed = 1, device = device})
print("q on " .. device, qd)
local same = true
local a, b = q:totable(), qd:totable()
for i = 1, 2 do for h = 1, 4 do for n = 1, 128 do for d = 1, 64 do
  same = same and a[i][h][n][d] == b[i][h][n][d]
end end end end
print("same values for the same seed on both devices:", same)
local back = qd:to("cpu"):to("f32")
print("round trip " .. device .. " -> cpu -> f32:", back, back:get(2, 4, 128, 64) == q:get(2, 4, 128, 64))

section(".npy round trip")
local base = os.tmpname()
local path = base .. ".npy"
local t = fl.tensor({{1.5, -2}, {3.25, 4}}, {dtype = "f16", device = device})
t:save(path)
local u = fl.load(path)
print(("saved %s, loaded %s from %s"):format(tostring(t), tostring(u), path))
for i = 1, 2 do print("", table.unpack(u:totable()[i])) end
os.remove(path)
os.remove(base)
print("\ndone")
