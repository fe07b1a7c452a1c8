-- AlphaFold 2 Evoformer, column-wise gated self-attention (Algorithm 8):
-- attention runs along the MSA's sequences, the second axis of its
-- [B, N, H, D] activations, with no pair bias; a sigmoid gate scales it.
-- The transposes put the attended axis next to the head dim, and back.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "evoformer_col",
  summary = "gated attention along N of [B, N, H, D]",
  fn = function(q, k, v, gate)
    local qh, kh, vh = q:transpose(2, 3), k:transpose(2, 3), v:transpose(2, 3)
    local o = fl.softmax(A.scores(qh, kh), -1):matmul(vh)
    return gate:sigmoid() * o:transpose(2, 3)
  end,
  inputs = function(B, H, N, D, opts)
    local x = {}
    for n = 1, 4 do x[n] = A.randn({B, N, H, D}, opts, n) end
    return x
  end,
  reference = function(x)
    local o = R.attention(R.swap23(x[1]), R.swap23(x[2]), R.swap23(x[3]))
    return {R.zip(R.swap23(o), x[4], function(a, g) return R.sigmoid(g) * a end)}
  end,
}
