-- Full attention (Vaswani et al., 2017): O = softmax(Q Kᵀ / √D) V.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "full",
  summary = "softmax(QKᵀ/√D) V",
  fn = function(q, k, v)
    return fl.softmax(A.scores(q, k), -1):matmul(v)
  end,
  reference = function(x) return {R.attention(x[1], x[2], x[3])} end,
}
