-- Tanh soft-capping (Gemma 2): scores squashed into (−cap, cap) by
-- cap · tanh(s / cap) before the softmax.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

return A.variant {
  name = "softcap",
  summary = "softmax(cap·tanh(s/cap)) V",
  params = {cap = 30}, small = {cap = 0.5},
  make = function(p)
    return function(q, k, v)
      local s = A.scores(q, k)
      s = (s / p.cap):tanh() * p.cap
      return fl.softmax(s, -1):matmul(v)
    end
  end,
  reference = function(x, p)
    return {R.attention(x[1], x[2], x[3],
      {mod = function(s) return p.cap * math.tanh(s / p.cap) end})}
  end,
}
