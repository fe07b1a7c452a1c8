-- Attention sinks (StreamingLLM; gpt-oss), causal: each head has a learned
-- logit that joins the softmax's denominator but carries no value, so a
-- query may attend to "nothing".
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask() return function(_, _, i, j) return j <= i end end

return A.variant {
  name = "sinks",
  summary = "causal, exp(sink[h]) joins the denominator",
  fn = function(q, k, v, sink)
    local s = A.causal(A.scores(q, k))
    local z0 = sink:view(-1, 1, 1)                    -- [H, 1, 1]
    local m = fl.maximum(s:max(-1, true), z0)
    local e = (s - m):exp()
    local denom = e:sum(-1, true) + (z0 - m):exp()
    return (e / denom):matmul(v)
  end,
  inputs = function(B, H, N, D, opts)
    local x = A.qkv(B, H, N, D, opts)
    x[4] = A.randn({H}, opts, 4)
    return x
  end,
  kept = function(N) return (N + 1) / (2 * N) end,
  mask = mask,
  reference = function(x)
    return {R.attention(x[1], x[2], x[3], {mask = mask(),
      sink = function(_, h) return x[4][h] end})}
  end,
}
