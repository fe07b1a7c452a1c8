-- Forgetting Transformer (Lin et al., 2025), causal: a forget gate
-- f_t = sigmoid(x_t) per position and head decays attention to the past;
-- with F the cumulative sum of log f, the score of (i, j) gains F[i] − F[j].
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask() return function(_, _, i, j) return j <= i end end

return A.variant {
  name = "forgetting",
  summary = "causal, + F[i] − F[j], F = cumsum(log σ(f))",
  fn = function(q, k, v, f)
    local F = f:sigmoid():log():cumsum(-1)          -- [B, H, N]
    local s = A.scores(q, k) + F:unsqueeze(-1) - F:unsqueeze(-2)
    return fl.softmax(A.causal(s), -1):matmul(v)
  end,
  inputs = function(B, H, N, D, opts)
    local x = A.qkv(B, H, N, D, opts)
    x[4] = A.randn({B, H, N}, opts, 4)
    return x
  end,
  kept = function(N) return (N + 1) / (2 * N) end,
  mask = mask,
  reference = function(x)
    local F = {}
    for b = 1, #x[4] do
      F[b] = {}
      for h = 1, #x[4][b] do
        local acc, row = 0.0, {}
        for n, g in ipairs(x[4][b][h]) do
          acc = acc + math.log(R.sigmoid(g))
          row[n] = acc
        end
        F[b][h] = row
      end
    end
    return {R.attention(x[1], x[2], x[3], {mask = mask(),
      mod = function(s, b, h, i, j) return s + F[b][h][i] - F[b][h][j] end})}
  end,
}
