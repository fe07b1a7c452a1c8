-- Relative position bias from a learned table (T5, Raffel et al., 2020):
-- the offset j − i falls into one of `buckets` log-spaced buckets (half per
-- direction, exact below buckets/4, logarithmic up to max_distance), and
-- each head adds table[bucket, h]: a gather at run time.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

-- T5's bucket of the offset rel = j − i, in double precision.
local function bucket_of(rel, p)
  local half = p.buckets // 2
  local exact = half // 2
  local b = rel > 0 and half or 0
  local n = math.abs(rel)
  if n < exact then return b + n end
  local large = exact + math.floor(math.log(n / exact) / math.log(p.max_distance / exact) *
    (half - exact))
  return b + math.min(large, half - 1)
end

-- The smallest |offset| of each logarithmic bucket. The program counts the
-- starts at or below |j − i|: the same buckets as the formula, found in
-- integers, so no device rounds an offset into its neighbour's bucket.
local function log_bucket_starts(p)
  local starts, exact = {}, p.buckets // 4
  for n = exact, p.max_distance do
    local b = bucket_of(n, {buckets = p.buckets, max_distance = p.max_distance}) - p.buckets // 2
    while b > exact + #starts do starts[#starts + 1] = n end
  end
  return starts
end

return A.variant {
  name = "t5_bias",
  summary = "scores + table[bucket(j − i), h]",
  params = {buckets = 32, max_distance = 128}, small = {buckets = 16, max_distance = 16},
  make = function(p)
    return function(q, k, v, table)
      local s = A.scores(q, k)
      local i, j = A.positions(s)
      local half, exact = p.buckets // 2, p.buckets // 4
      local rel = j - i
      local n = rel:abs()
      local far = n * 0 + exact
      for _, start in ipairs(log_bucket_starts(p)) do far = far + n:ge(start):to("i64") end
      local bucket = rel:gt(0):to("i64") * half + fl.where(n:lt(exact), n, far)
      local bias = table:index(bucket)                -- [i, j, h]
      s = s + bias:transpose(1, 3):transpose(2, 3)    -- [h, i, j]
      return fl.softmax(s, -1):matmul(v)
    end
  end,
  inputs = function(B, H, N, D, opts, p)
    local x = A.qkv(B, H, N, D, opts)
    x[4] = A.randn({p.buckets, H}, opts, 4)
    return x
  end,
  reference = function(x, p)
    local tbl = x[4]
    return {R.attention(x[1], x[2], x[3], {
      mod = function(s, _, h, i, j) return s + tbl[bucket_of(j - i, p) + 1][h] end})}
  end,
}
