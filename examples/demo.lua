-- The demo (README's first command): compiles and runs every variant of the
-- library and prints a table: kernels, error against the plain-Lua
-- reference, time. It runs where the kernels can run: the CPU executor
-- until the CUDA code generator lands, at small sizes.
--
--   flua examples/demo.lua [variant,variant,...]
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"

local B, H, N, D = 2, 4, 128, 16

local function now() return os.clock() end

-- Left-justified in w columns, counting characters, not bytes.
local function pad(str, w)
  return str .. (" "):rep(math.max(0, w - (utf8.len(str) or #str)))
end

-- "window=6 " for a variant's constants.
local function constants(p)
  local keys = {}
  for k in pairs(p) do keys[#keys + 1] = k end
  table.sort(keys)
  for n, k in ipairs(keys) do keys[n] = ("%s=%s"):format(k, p[k]) end
  return table.concat(keys, " ")
end

-- A progress line on a terminal; none where the output is captured.
local tty = os.execute("test -t 2")
local function progress(n, total, name)
  if not tty then return end
  if n > total then
    io.stderr:write("\r", (" "):rep(60), "\r")
  else
    io.stderr:write(("\r[%2d/%d] %-20s"):format(n, total, name))
  end
  io.stderr:flush()
end

local on_gpu, why = fl.cuda_available()
-- On a GPU the kernels run there, on bf16 inputs; on the CPU executor, f32.
local DTYPE, TOL = on_gpu and "bf16" or "f32", on_gpu and 1e-2 or 1e-5

local function run(V)
  local inputs = V.inputs(B, H, N, D, {dtype = DTYPE, seed = 7}, V.small)
  local args = {}
  for k, t in ipairs(inputs) do args[k] = on_gpu and t:to("cuda") or t end
  local attn = fl.compile(V.make(V.small))
  local t0 = now()
  local outs = table.pack(attn(table.unpack(args)))
  local t1 = now()
  attn(table.unpack(args))
  local t2 = now()
  for k = 1, outs.n do outs[k] = outs[k]:to("cpu"):to("f32") end
  return {kernels = #attn:kernels(), err = R.rel_error(outs, V.reference(R.tables(inputs), V.small)),
          first = t1 - t0, run = t2 - t1, kept = V.kept(N, V.small, inputs)}
end

print("flashlight " .. fl.version)
if on_gpu then
  local info = fl.device_info()
  print(("GPU: %s (%s): the kernels are CUDA generated from each plan (NVRTC): fused " ..
    "attention groups on tensor cores, the rest scalar kernels"):format(info.name, info.arch))
else
  print("no GPU (" .. why .. "): the kernels run on the CPU executor")
end
print(("B=%d H=%d N=%d D=%d, %s inputs, test-size constants; error = max |o − ref| / max |ref| " ..
  "against plain Lua in double precision\n"):format(B, H, N, D, DTYPE))

local list = variants.all(arg and arg[1])
local failed = 0
print(pad("variant", 17) .. pad("what", 46) .. pad("constants", 26) ..
  ("%5s %7s %8s %9s %8s"):format("kept", "kernels", "error", "first ms", "run ms"))
for n, V in ipairs(list) do
  progress(n, #list, V.name)
  local ok, r = pcall(run, V)
  progress(#list + 1, #list)
  if ok and r.err < TOL then
    print(pad(V.name, 17) .. pad(V.summary, 46) .. pad(constants(V.small), 26) ..
      ("%4.0f%% %7d %8.1e %9.1f %8.1f"):format(100 * r.kept, r.kernels, r.err, 1000 * r.first,
        1000 * r.run))
  else
    failed = failed + 1
    print(pad(V.name, 17) .. pad(V.summary, 46) .. "FAILED: " ..
      (ok and ("error %.3g"):format(r.err) or tostring(r)))
  end
end
print(("\n%d variants, %d failed"):format(#list, failed))
if failed > 0 then os.exit(1) end
