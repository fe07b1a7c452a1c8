-- AlphaFold 2 Evoformer, row-wise gated self-attention with pair bias
-- (Jumper et al., 2021, Algorithm 7): the pair representation adds a bias
-- b[h, i, j] to the scores and a sigmoid gate scales the output.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "evoformer_row",
  summary = "sigmoid(g) ⊙ softmax(QKᵀ/√D + pair bias) V",
  fn = function(q, k, v, bias, gate)
    local s = A.scores(q, k) + bias
    return gate:sigmoid() * fl.softmax(s, -1):matmul(v)
  end,
  inputs = function(B, H, N, D, opts)
    local x = A.qkv(B, H, N, D, opts)
    x[4] = A.randn({B, H, N, N}, opts, 4)
    x[5] = A.randn({B, H, N, D}, opts, 5)
    return x
  end,
  reference = function(x)
    local bias = x[4]
    local o = R.attention(x[1], x[2], x[3],
      {mod = function(s, b, h, i, j) return s + bias[b][h][i][j] end})
    return {R.zip(o, x[5], function(a, g) return R.sigmoid(g) * a end)}
  end,
}
