-- Causal attention: query i sees keys j ≤ i.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask() return function(_, _, i, j) return j <= i end end

return A.variant {
  name = "causal",
  summary = "softmax(QKᵀ/√D, j ≤ i) V",
  fn = function(q, k, v)
    local s = A.scores(q, k)
    local i, j = A.positions(s)
    s = fl.where(i:ge(j), s, -math.huge)
    return fl.softmax(s, -1):matmul(v)
  end,
  kept = function(N) return (N + 1) / (2 * N) end,
  mask = mask,
  reference = function(x) return {R.attention(x[1], x[2], x[3], {mask = mask()})} end,
}
