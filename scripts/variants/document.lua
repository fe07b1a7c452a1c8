-- Document masking, causal: sequences packed into one row attend only
-- within their own document. doc[n] is the document id of position n, an
-- i32 tensor read by the mask at run time.
local fl = require "flashlight"
local A = require "variants.common"
local R = require "variants.reference"

local function mask(x)
  local doc = x[4]
  return function(_, _, i, j) return j <= i and doc[i] == doc[j] end
end

-- Documents of random lengths: ndocs − 1 distinct cut points drawn from the
-- seed, so the boundaries fall anywhere, not on tile edges.
local function doc_ids(N, opts)
  local ndocs = math.max(3, math.min(16, N // 128))
  local u = A.rand({ndocs * 4}, {dtype = "f32", seed = (opts and opts.seed or 1)}, 4):totable()
  local cut, ncut = {}, 0
  for _, r in ipairs(u) do
    local c = 1 + math.floor(r * (N - 1))
    if ncut < ndocs - 1 and not cut[c] then cut[c], ncut = true, ncut + 1 end
  end
  local ids, d = {}, 0
  for n = 0, N - 1 do
    if cut[n] then d = d + 1 end
    ids[n + 1] = d
  end
  return ids
end

return A.variant {
  name = "document",
  summary = "causal, doc[i] = doc[j]",
  fn = function(q, k, v, doc)
    local s = A.scores(q, k)
    local i, j = A.positions(s)
    local keep = doc:index(i):eq(doc:index(j)):logical_and(i:ge(j))
    return fl.softmax(fl.where(keep, s, -math.huge), -1):matmul(v)
  end,
  inputs = function(B, H, N, D, opts)
    local x = A.qkv(B, H, N, D, opts)
    x[4] = A.values(doc_ids(N, opts), opts, "i32")
    return x
  end,
  kept = function(N, _, inputs)
    local count, run = 0, 0
    local ids = inputs[4]:to("cpu"):totable()
    for n = 1, N do
      run = (n > 1 and ids[n] == ids[n - 1]) and run + 1 or 1
      count = count + run
    end
    return count / (N * N)
  end,
  mask = mask,
  reference = function(x) return {R.attention(x[1], x[2], x[3], {mask = mask(x)})} end,
}
