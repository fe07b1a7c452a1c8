-- Attention that also returns its log-sum-exp L[i] = log Σ_j exp(s_ij),
-- what a backward pass or a split-KV merge needs, in f32.
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "lse",
  summary = "softmax(QKᵀ/√D) V and logsumexp(QKᵀ/√D)",
  fn = function(q, k, v)
    local s = A.scores(q, k)
    local m = s:max(-1, true)
    local e = (s - m):exp()
    local z = e:sum(-1, true)
    local o = (e / z):matmul(v)
    local lse = (z:log() + m):view(q:size(1), q:size(2), q:size(3)):to("f32")
    return o, lse
  end,
  reference = function(x) return {R.attention(x[1], x[2], x[3], {lse = true})} end,
}
