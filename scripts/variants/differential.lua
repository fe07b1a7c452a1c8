-- Differential attention (Ye et al., 2024): the difference of two softmax
-- maps over the same values cancels common-mode noise:
-- O = softmax(Q₁K₁ᵀ/√D) V − λ · softmax(Q₂K₂ᵀ/√D) V.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "differential",
  summary = "softmax(Q₁K₁ᵀ) V − λ softmax(Q₂K₂ᵀ) V",
  params = {lambda = 0.3},
  make = function(p)
    return function(q1, k1, q2, k2, v)
      local p1 = fl.softmax(A.scores(q1, k1), -1)
      local p2 = fl.softmax(A.scores(q2, k2), -1)
      return (p1 - p2 * p.lambda):matmul(v)
    end
  end,
  inputs = function(B, H, N, D, opts)
    local x = {}
    for n = 1, 5 do x[n] = A.randn({B, H, N, D}, opts, n) end
    return x
  end,
  reference = function(x, p)
    local o1 = R.attention(x[1], x[2], x[5])
    local o2 = R.attention(x[3], x[4], x[5])
    return {R.zip(o1, o2, function(a, b) return a - p.lambda * b end)}
  end,
}
