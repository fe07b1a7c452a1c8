-- Grouped-query attention (Ainslie et al., 2023): H query heads share H/G
-- key/value heads, G query heads to a group. Each key/value head is
-- repeated for its group with expand and reshape, which only re-index:
-- query head h reads key/value head h // G, and nothing is copied.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function grouped()
  return function(q, k, v)
    local B, H, N, D = q:size(1), q:size(2), q:size(3), q:size(4)
    local Hk, Nk = k:size(2), k:size(3)
    local function repeat_heads(x)
      return x:unsqueeze(3):expand(B, Hk, H // Hk, Nk, x:size(4)):reshape(B, H, Nk, x:size(4))
    end
    local s = A.scores(q, repeat_heads(k))
    return fl.softmax(s, -1):matmul(repeat_heads(v))
  end
end

local function kv_heads(H, p) return p.kv_heads or math.max(1, H // p.group) end

return A.variant {
  name = "gqa",
  summary = "H query heads over H/group key/value heads",
  params = {group = 4}, small = {group = 2},
  make = grouped,
  inputs = function(B, H, N, D, opts, p)
    local Hk = kv_heads(H, p)
    return {A.randn({B, H, N, D}, opts, 1), A.randn({B, Hk, N, D}, opts, 2),
            A.randn({B, Hk, N, D}, opts, 3)}
  end,
  reference = function(x)
    local G = #x[1][1] // #x[2][1]
    return {R.attention(x[1], x[2], x[3], {kv_head = function(h) return (h - 1) // G + 1 end})}
  end,
  grouped = grouped, kv_heads = kv_heads,
}
