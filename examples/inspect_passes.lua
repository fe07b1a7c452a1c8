-- The IR of differential attention at every stage of the pipeline, from
-- the operations as written to what the kernels run. Pass a variant's name
-- to see another one: flua examples/inspect_passes.lua causal
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"

local V = variants.load(arg and arg[1] or "differential")
local attn = fl.compile(V.fn)
local inputs = V.inputs(1, 2, 16, 8, {dtype = "f32"}, V.params)

print(("%s: %s"):format(V.name, V.summary))
for n, stage in ipairs(fl.stages) do
  print(("\n== %d. %s"):format(n, stage))
  io.write(attn:ir(stage, table.unpack(inputs)))
end
print(("\n%d kernels:"):format(#attn:kernels()))
for _, k in ipairs(attn:kernels()) do
  print(("  %-12s %-10s %s"):format(k.name, k.op, k.origin))
end
