-- Sigmoid attention (Ramapuram et al., 2024): each weight is
-- sigmoid(s + b) on its own, no normalization over keys; the bias
-- b = −log N keeps the total weight near one at the start of training.
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "sigmoid",
  summary = "sigmoid(QKᵀ/√D − log N) V",
  fn = function(q, k, v)
    local b = -math.log(k:size(-2))
    return (A.scores(q, k) + b):sigmoid():matmul(v)
  end,
  reference = function(x)
    local b = -math.log(#x[2][1][1])
    return {R.attention(x[1], x[2], x[3], {weight = "sigmoid",
      mod = function(s) return s + b end})}
  end,
}
