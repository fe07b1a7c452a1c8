-- Scalable-Softmax (Nakanishi, 2025): scores times s_h · log n, n the number
-- of keys, so attention stays peaked as the context grows; s_h is learned
-- per head.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "scalable_softmax",
  summary = "softmax(s[h]·log n · QKᵀ/√D) V",
  fn = function(q, k, v, s_h)
    local scale = s_h:view(-1, 1, 1) * math.log(k:size(-2))
    return fl.softmax(A.scores(q, k) * scale, -1):matmul(v)
  end,
  inputs = function(B, H, N, D, opts)
    local x = A.qkv(B, H, N, D, opts)
    local s = {}
    for h = 1, H do s[h] = 0.3 + 0.1 * (h % 4) end
    x[4] = A.values(s, opts)
    return x
  end,
  reference = function(x)
    local logn = math.log(#x[2][1][1])
    return {R.attention(x[1], x[2], x[3],
      {mod = function(s, _, h) return s * x[4][h] * logn end})}
  end,
}
