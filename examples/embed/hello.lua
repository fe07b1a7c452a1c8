-- Run by examples/embed/embed.c: flashlight is already opened by the host.
local fl = require "flashlight"
local name = ... or "host"
local t = fl.tensor({{1, 2}, {3, 4}}, {dtype = "f32"})
print(("hello from %s: %s sums to %g"):format(name, tostring(t), t:get(1, 1) + t:get(1, 2) + t:get(2, 1) + t:get(2, 2)))
