-- ALiBi (Press et al., 2022), causal: each head h adds slope_h · (j − i)
-- to its scores, with slopes 2^(−8h/H).
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask() return function(_, _, i, j) return j <= i end end

local function slopes(H)
  local s = {}
  for h = 1, H do s[h] = 2 ^ (-8 * h / H) end
  return s
end

return A.variant {
  name = "alibi",
  summary = "causal, scores + slope[h]·(j − i)",
  fn = function(q, k, v, slope)
    local s = A.scores(q, k)
    local i, j = A.positions(s)
    s = s + slope:view(-1, 1, 1) * (j - i)
    s = fl.where(i:ge(j), s, -math.huge)
    return fl.softmax(s, -1):matmul(v)
  end,
  inputs = function(B, H, N, D, opts)
    local x = A.qkv(B, H, N, D, opts)
    x[4] = A.values(slopes(H), opts)
    return x
  end,
  kept = function(N) return (N + 1) / (2 * N) end,
  mask = mask,
  reference = function(x)
    local slope = x[4]
    return {R.attention(x[1], x[2], x[3], {mask = mask(),
      mod = function(s, _, h, i, j) return s + slope[h] * (j - i) end})}
  end,
}
