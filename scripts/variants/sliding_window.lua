-- Sliding-window causal attention (Longformer, Mistral): query i sees the
-- keys i − window < j ≤ i.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask(_, p) return function(_, _, i, j) return j <= i and i - j < p.window end end

return A.variant {
  name = "sliding_window",
  summary = "causal, i − j < window",
  params = {window = 256}, small = {window = 6},
  make = function(p)
    return function(q, k, v)
      local s = A.scores(q, k)
      local i, j = A.positions(s)
      local keep = i:ge(j):logical_and((i - j):lt(p.window))
      return fl.softmax(fl.where(keep, s, -math.huge), -1):matmul(v)
    end
  end,
  kept = function(N, p)
    local w = math.min(p.window, N)
    return (w * N - w * (w - 1) / 2) / (N * N)
  end,
  mask = mask,
  reference = function(x, p) return {R.attention(x[1], x[2], x[3], {mask = mask(x, p)})} end,
}
