-- Runs a few variants' generated kernels once on the GPU, for
-- compute-sanitizer: compute-sanitizer --tool memcheck dist/flua spec/gpu/sanitize.lua
package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"
for _, name in ipairs({"full", "causal", "document", "differential"}) do
  local V = variants.load(name)
  local inputs = V.inputs(1, 2, 37, 64, {dtype = "bf16", seed = 1}, V.small)
  for k, t in ipairs(inputs) do inputs[k] = t:to("cuda") end
  local o = fl.compile(V.make(V.small))(table.unpack(inputs))
  print(name, o:shape()[3], o:to("cpu"):to("f32"):get(1, 1, 1, 1))
end
