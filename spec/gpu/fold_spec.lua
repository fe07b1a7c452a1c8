-- On a machine with a GPU: scores kept as their products plus a slope's
-- column part (the row part slope·(first key − row) left to the row
-- maxima and the exponentials) give the scalar kernels' numbers (f64
-- inside) where the library's ALiBi does not reach: the bias written as
-- (row − key)·slope with negative slopes (the other sign), and a softmax
-- gated by the sigmoid of the same biased scores (the folded score beside
-- another member). Head dims 64 and 128, N 1024 (one warpgroup a block)
-- and 4096 (warp-specialized), bf16, NaN-filled outputs, both paths.
local fl = require "flashlight"
local paths_agree = require "paths_agree"
local A = require "variants.common"

local TOL = 1e-2

local FNS = {
  {"ALiBi as (row - key)·slope", function(q, k, v, slope)
    local s = A.scores(q, k)
    local i, j = A.positions(s)
    s = (i - j) * slope:view(-1, 1, 1) + s
    return fl.softmax(fl.where(i:ge(j), s, -math.huge), -1):matmul(v)
  end},
  {"softmax gated by the sigmoid of the biased scores", function(q, k, v, slope)
    local s = A.scores(q, k)
    local i, j = A.positions(s)
    s = s + slope:view(-1, 1, 1) * (j - i)
    return (fl.softmax(s, -1) * s:sigmoid()):matmul(v)
  end},
}

describe("scores kept as products plus a slope's column part #gpu", function()
  for _, case in ipairs(FNS) do
    it(case[1] .. ": the tensor-core kernels agree with the scalar ones", function()
      for _, D in ipairs({64, 128}) do
        for _, N in ipairs({1024, 4096}) do
          local cpu = A.qkv(1, 2, N, D, {dtype = "bf16", seed = 5})
          cpu[4] = A.values({-0.5, -2 ^ -6}, {dtype = "bf16"})
          local gpu = {}
          for n, t in ipairs(cpu) do gpu[n] = t:to("cuda") end
          local g = fl.trace(case[2], table.unpack(cpu))
          for _, p in ipairs(fl.passes) do g:run(p) end
          assert.truthy(g:plan():cuda("bf16", {path = "hopper"}):find("dkr[r]", 1, true), "the fold is taken")
          paths_agree(g, gpu, ("%s D=%d N=%d"):format(case[1], D, N), TOL)
        end
      end
    end)
  end
end)
