-- Causal attention in ten lines: define it, run it, check it.
local fl = require "flashlight"

local attn = fl.compile(function(q, k, v)
  local s = q:matmul(k:transpose(-2, -1)) / math.sqrt(q:size(-1))
  local i, j = fl.arange(s:size(-2)):view(-1, 1), fl.arange(s:size(-1)):view(1, -1)
  return fl.softmax(fl.where(i:ge(j), s, -math.huge), -1):matmul(v)
end)

local q, k, v = fl.randn({1, 2, 64, 32}, {seed = 1}), fl.randn({1, 2, 64, 32}, {seed = 2}),
                fl.randn({1, 2, 64, 32}, {seed = 3})
local o = attn(q, k, v)
-- the first query sees only the first key, so its output is v's first row
local err = 0
for d = 1, 32 do err = math.max(err, math.abs(o:get(1, 2, 1, d) - v:get(1, 2, 1, d))) end
print(("%s, first row error %.2g: %s"):format(tostring(o), err, err < 1e-6 and "ok" or "WRONG"))
