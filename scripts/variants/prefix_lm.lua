-- PrefixLM (T5, UniLM): the first `prefix` positions see each other in
-- both directions; after them, causal.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask(_, p)
  return function(_, _, i, j) return j <= i or j <= p.prefix end
end

return A.variant {
  name = "prefix_lm",
  summary = "j ≤ i or j < prefix",
  params = {prefix = 512}, small = {prefix = 5},
  make = function(p)
    return function(q, k, v)
      local s = A.scores(q, k)
      local i, j = A.positions(s)
      local keep = i:ge(j):logical_or(j:lt(p.prefix))
      return fl.softmax(fl.where(keep, s, -math.huge), -1):matmul(v)
    end
  end,
  kept = function(N, p)
    local P = math.min(p.prefix, N)
    -- row i (0-based) keeps max(i + 1, P) keys
    return (P * P + (N * (N + 1) - P * (P + 1)) / 2) / (N * N)
  end,
  mask = mask,
  reference = function(x, p) return {R.attention(x[1], x[2], x[3], {mask = mask(x, p)})} end,
}
