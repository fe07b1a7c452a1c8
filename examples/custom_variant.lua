-- A new variant from scratch: cosine attention (Swin Transformer V2). The
-- scores are cosines between queries and keys, divided by a learned
-- per-head temperature τ, so no head's logits grow with the vectors' length:
--
--   s_ij = cos(q_i, k_j) / τ_h,   O = softmax(s) V
--
-- Written as plain tensor math; the compiler sees every step, the norms too.
local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local R = require "variants.reference"

local function normalize(x)
  return x / (x * x):sum(-1, true):sqrt()
end

local cosine = fl.compile(function(q, k, v, tau)
  local s = normalize(q):matmul(normalize(k):transpose(-2, -1)) / tau:view(-1, 1, 1)
  return fl.softmax(s, -1):matmul(v)
end)

local B, H, N, D = 2, 4, 48, 16
local q, k, v = fl.randn({B, H, N, D}, {seed = 1}), fl.randn({B, H, N, D}, {seed = 2}),
                fl.randn({B, H, N, D}, {seed = 3})
local tau = fl.tensor({0.05, 0.1, 0.5, 1.0})
local o = cosine(q, k, v, tau)

-- The same in plain Lua: normalize the rows, then attention with scale 1/τ_h.
local qt, kt = q:totable(), k:totable()
for _, t in ipairs({qt, kt}) do
  for b = 1, B do for h = 1, H do for n = 1, N do
    local row, len = t[b][h][n], 0
    for d = 1, D do len = len + row[d] ^ 2 end
    for d = 1, D do row[d] = row[d] / math.sqrt(len) end
  end end end
end
local taus = tau:totable()
local want = {}
for h = 1, H do
  -- one head at a time: each has its own scale
  local function head(t) local out = {} for b = 1, B do out[b] = {t[b][h]} end return out end
  local oh = R.attention(head(qt), head(kt), head(v:totable()), {scale = 1 / taus[h]})
  for b = 1, B do want[b] = want[b] or {}; want[b][h] = oh[b][1] end
end

local got, err = o:totable(), 0
for b = 1, B do for h = 1, H do for n = 1, N do for d = 1, D do
  err = math.max(err, math.abs(got[b][h][n][d] - want[b][h][n][d]))
end end end end
print(("cosine attention %s: max error against plain Lua %.2g: %s"):format(tostring(o), err,
  err < 1e-5 and "ok" or "WRONG"))
print(("%d kernels; the graph it traced:"):format(#cosine:kernels()))
print(cosine:ir("traced"))
