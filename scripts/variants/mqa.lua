-- Multi-query attention (Shazeer, 2019): all query heads share one key/value
-- head; grouped-query attention with a single group.
local A = require "variants.common"
local R = require "variants.reference"
local gqa = require "variants.gqa"

return A.variant {
  name = "mqa",
  summary = "H query heads over one key/value head",
  params = {kv_heads = 1},
  make = gqa.grouped,
  inputs = gqa.inputs,
  reference = function(x)
    return {R.attention(x[1], x[2], x[3], {kv_head = function() return 1 end})}
  end,
}
