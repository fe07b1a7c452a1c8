-- The kernels each variant compiles to, with what NVRTC reports about them;
-- needs no GPU (NVRTC from the CUDA toolkit):
--
--   flua bench/kernels.lua [--variants a,b] [--shapes B,H,N,D[;...]] [--path hopper|mma] [--arch sm_90a]
--                          [--persistent auto|on|off] [--sms 132]
--
-- Defaults: every variant of scripts/variants at its benchmark constants,
-- shapes 1,2,4096,64 and 1,2,4096,128 (batch and heads change only the
-- grid, and the inputs are made on the CPU), the hopper path for sm_90a,
-- persistent "auto" for a device of --sms multiprocessors (default this
-- machine's device 0; none: a block a tile).
-- Prints a markdown table: a row a kernel, with its path, its design (for
-- the tensor-core ones: warpgroups, keys a step, how tiles are loaded),
-- threads a block, registers a thread, spilled bytes, dynamic shared memory.
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"
local A = require "variants.common"

local function fail(fmt, ...)
  io.stderr:write("kernels: " .. fmt:format(...) .. "\n")
  os.exit(2)
end

local function parse(argv)
  local known = {variants = true, shapes = true, path = true, arch = true, persistent = true, sms = true}
  local o = {}
  for i = 1, #argv, 2 do
    local key = argv[i]:match("^%-%-([%w-]+)$")
    if not key or not known[key] then fail("unknown argument '%s' (see the head of bench/kernels.lua)", argv[i]) end
    if argv[i + 1] == nil then fail("--%s needs a value", key) end
    o[key] = argv[i + 1]
  end
  return o
end

local function shapes_of(text)
  local out = {}
  for item in text:gmatch("[^;]+") do
    local s = {}
    for n in item:gmatch("%d+") do s[#s + 1] = tonumber(n) end
    if #s ~= 4 then fail("a shape is B,H,N,D, got '%s'", item) end
    out[#out + 1] = s
  end
  return out
end

local function variant_list(text)
  if not text then return variants.all() end
  local out = {}
  for name in text:gmatch("[^,]+") do out[#out + 1] = variants.load(name) end
  return out
end

-- The rows of one variant at one shape.
local function rows(V, shape, path, arch, persistent, sms)
  local B, H, N, D = table.unpack(shape)
  local attn = fl.compile(V.make(V.params))
  local specs = V.inputs(B, H, N, D, {dtype = "bf16", seed = 1}, V.params)
  local plan = attn:graph_of("kernels", table.unpack(specs)):plan()
  local src, kernels = plan:cuda("bf16", {path = path, persistent = persistent, sms = sms})
  local report = {}
  for _, k in ipairs(fl.jit.compile(src, {arch = arch, name = V.name .. ".cu"}).kernels) do report[k.name] = k end
  local out = {}
  for _, k in ipairs(kernels) do
    local r = report[k.name] or {}
    out[#out + 1] = ("| %s | %s | %s | %s | %s | %s | %s | %s | %s |"):format(V.name, table.concat(shape, ","),
      k.name, k.path, k.design or (k.why and "scalar: " .. k.why or "scalar"), k.block or 128,
      r.registers or "?", r.spill_stores or "?", k.smem and ("%.0f KiB"):format(k.smem / 1024) or "0")
  end
  return out
end

local o = parse(arg or {})
local path, arch = o.path or "hopper", o.arch or "sm_90a"
local persistent, why = A.persistent(o.persistent)
if persistent == nil then fail("--" .. why) end
local sms = o.sms and math.tointeger(tonumber(o.sms))
if o.sms and (not sms or sms < 1) then fail("--sms is a count of multiprocessors, got '%s'", o.sms) end
print(("Kernels for %s (path %s%s), bf16, compiled by NVRTC:\n"):format(arch, path,
  persistent == "auto" and "" or persistent and ", persistent" or ", not persistent"))
print("| variant | B,H,N,D | kernel | path | design | threads | registers | spilled B | shared memory |")
print("|---|---|---|---|---|---:|---:|---:|---:|")
for _, shape in ipairs(shapes_of(o.shapes or "1,2,4096,64;1,2,4096,128")) do
  for _, V in ipairs(variant_list(o.variants)) do
    for _, line in ipairs(rows(V, shape, path, arch, persistent, sms)) do print(line) end
  end
end
