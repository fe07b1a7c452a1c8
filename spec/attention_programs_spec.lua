-- Attention programs through fl.compile beyond the variant library's
-- square shapes: rectangular and odd sizes, the per-signature cache, and the
-- lowered IR of plain attention. References come from variants.reference.
local fl = require "flashlight"
local R = require "variants.reference"
local close = require "close"

local function rand(shape, seed) return fl.randn(shape, {seed = seed, dtype = "f32"}) end

local function assert_close(name, got, want) close.assert_close(name, got, want, 1e-5, 1e-5, "f32") end

local function ref_attention(q, k, v, opts) return R.attention(q, k, v, opts) end

local function scores(q, k)
  return q:matmul(k:transpose(-2, -1)) / math.sqrt(q:size(-1))
end

-- The query and key positions as a column and a row (i64).
local function positions(s)
  return fl.arange(s:size(-2)):view(-1, 1), fl.arange(s:size(-1)):view(1, -1)
end

local plain = function(q, k, v)
  return fl.softmax(scores(q, k), -1):matmul(v)
end

local causal = function(q, k, v)
  local s = scores(q, k)
  local i, j = positions(s)
  s = fl.where(i:ge(j), s, -math.huge)
  return fl.softmax(s, -1):matmul(v)
end

local doc_causal = function(q, k, v, doc)
  local s = scores(q, k)
  local i, j = positions(s)
  local same = doc:index(i):eq(doc:index(j))
  s = fl.where(same:logical_and(i:ge(j)), s, -math.huge)
  return s:softmax(-1):matmul(v)
end

local function qkv(B, H, Nq, Nk, D, seed)
  return rand({B, H, Nq, D}, seed), rand({B, H, Nk, D}, seed + 1), rand({B, H, Nk, D}, seed + 2)
end

local function causal_mask(_, _, i, j) return i >= j end

describe("attention programs (fl.compile, reference executor)", function()
  it("rectangular plain attention: 5 queries, 9 keys", function()
    local q, k, v = qkv(2, 2, 5, 9, 4, 160)
    local o = fl.compile(plain)(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable()))
  end)

  it("rectangular causal attention: 5 queries, 9 keys", function()
    local q, k, v = qkv(2, 2, 5, 9, 4, 170)
    local o = fl.compile(causal)(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(),
      {mask = causal_mask}))
  end)

  it("odd sizes: plain attention with 37 queries and 53 keys", function()
    local q, k, v = qkv(1, 1, 37, 53, 8, 180)
    local o = fl.compile(plain)(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable()))
  end)

  it("odd sizes: document mask and causal with 37 queries and 53 keys", function()
    local q, k, v = qkv(1, 1, 37, 53, 8, 190)
    local docs = {}
    for n = 1, 53 do docs[n] = (n - 1) // 11 end -- documents of 11 tokens
    local doc = fl.tensor(docs, {dtype = "i32"})
    local o = fl.compile(doc_causal)(q, k, v, doc)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(), {
      mask = function(_, _, i, j) return docs[i] == docs[j] and i >= j end,
    }))
  end)

  it("reuses the trace for the same shapes and retraces for a new shape", function()
    local traces = 0
    local prog = fl.compile(function(q, k, v)
      traces = traces + 1
      return causal(q, k, v)
    end)
    local function check(seed, B, H, Nq, Nk, D)
      local q, k, v = qkv(B, H, Nq, Nk, D, seed)
      assert_close("o", prog(q, k, v), ref_attention(q:totable(), k:totable(), v:totable(),
        {mask = causal_mask}))
    end
    check(200, 1, 2, 6, 6, 4)
    assert.equal(1, traces)
    check(210, 1, 2, 6, 6, 4) -- same shapes, new values
    assert.equal(1, traces)
    check(220, 2, 2, 5, 7, 8) -- new shapes
    assert.equal(2, traces)
    check(230, 1, 2, 6, 6, 4) -- the first shape again: still cached
    assert.equal(2, traces)
  end)

  it("plain attention's lowered IR reads as the paper's picture", function()
    local g = fl.trace(plain,
      {shape = {1, 2, 8, 4}, dims = {"b", "h", "i", "d"}},
      {shape = {1, 2, 8, 4}, dims = {"b", "h", "j", "d"}},
      {shape = {1, 2, 8, 4}, dims = {"b", "h", "j", "d"}})
    local ir = g:ir("lowered")
    local function has(pattern, what)
      for line in ir:gmatch("[^\n]+") do
        if line:find(pattern) then return line end
      end
      error(("lowered IR has no %s (pattern %q):\n%s"):format(what, pattern, ir), 2)
    end
    has("^  %w+%[b,h,i,j%] = sum%(d%) q%[b,h,i,d%] %* k%[b,h,j,d%]", "q k^T contraction")
    has("^  %w+%[b,h,i,_%] = max%(j%) ", "max over j")
    has("^  %w+%[b,h,i,_%] = sum%(j%) ", "sum over j")
    has("^  %w+%[b,h,i,d%] = sum%(j%) .* %* v%[b,h,j,d%]", "P v contraction")
    -- and the graph evaluates to plain attention
    local q, k, v = qkv(1, 2, 8, 8, 4, 240)
    local outs = g:eval({q, k, v})
    assert.equal(1, #outs)
    assert_close("o", outs[1], ref_attention(q:totable(), k:totable(), v:totable()))
  end)
end)
