-- Attention programs through fl.compile, each checked element by element
-- against a plain-Lua reference computed in double precision from the same
-- f32 inputs.
local fl = require "flashlight"

local RTOL, ATOL = 1e-5, 1e-5
local NEG_INF = -math.huge

-- Reference helpers --------------------------------------------------------
-- Tensors are the nested tables of t:totable(), indexed [b][h][i][...]
-- (1-based). Masks and score modifications receive 1-based b, h, i, j.

local function rand(shape, seed) return fl.randn(shape, {seed = seed, dtype = "f32"}) end

-- S[b][h][i][j] = scale * sum_d q[b][h][i][d] * k[b][h][j][d]
local function ref_scores(q, k, scale)
  local S = {}
  for b = 1, #q do
    S[b] = {}
    for h = 1, #q[b] do
      S[b][h] = {}
      local qb, kb = q[b][h], k[b][h]
      for i = 1, #qb do
        local row = {}
        for j = 1, #kb do
          local acc = 0.0
          for d = 1, #qb[i] do acc = acc + qb[i][d] * kb[j][d] end
          row[j] = acc * scale
        end
        S[b][h][i] = row
      end
    end
  end
  return S
end

-- Softmax over keys of mod(S) with masked-out keys dropped. Returns the
-- probabilities P[b][h][i][j] and the log-sum-exp L[b][h][i].
local function ref_softmax(S, mask, mod)
  local P, L = {}, {}
  for b = 1, #S do
    P[b], L[b] = {}, {}
    for h = 1, #S[b] do
      P[b][h], L[b][h] = {}, {}
      for i = 1, #S[b][h] do
        local s, m = {}, NEG_INF
        for j = 1, #S[b][h][i] do
          local x = S[b][h][i][j]
          if mod then x = mod(x, b, h, i, j) end
          if mask and not mask(b, h, i, j) then x = NEG_INF end
          s[j] = x
          if x > m then m = x end
        end
        local z = 0.0
        for j = 1, #s do
          s[j] = math.exp(s[j] - m)
          z = z + s[j]
        end
        for j = 1, #s do s[j] = s[j] / z end
        P[b][h][i], L[b][h][i] = s, math.log(z) + m
      end
    end
  end
  return P, L
end

-- O[b][h][i][d] = sum_j P[b][h][i][j] * v[b][h][j][d]
local function ref_pv(P, v)
  local O = {}
  for b = 1, #P do
    O[b] = {}
    for h = 1, #P[b] do
      O[b][h] = {}
      local vb = v[b][h]
      for i = 1, #P[b][h] do
        local p, row = P[b][h][i], {}
        for d = 1, #vb[1] do
          local acc = 0.0
          for j = 1, #p do acc = acc + p[j] * vb[j][d] end
          row[d] = acc
        end
        O[b][h][i] = row
      end
    end
  end
  return O
end

-- Elementwise f(x, y) over two nested tables of the same shape (y may be nil).
local function zip(x, y, f)
  if type(x) ~= "table" then return f(x, y) end
  local out = {}
  for n = 1, #x do out[n] = zip(x[n], y and y[n], f) end
  return out
end

-- The whole reference: softmax(mod(q k^T * scale) | mask) v, and the lse.
local function ref_attention(q, k, v, opts)
  opts = opts or {}
  local scale = opts.scale or 1 / math.sqrt(#q[1][1][1])
  local P, L = ref_softmax(ref_scores(q, k, scale), opts.mask, opts.mod)
  return ref_pv(P, v), L
end

local function shape_of(t)
  local s = {}
  while type(t) == "table" do
    s[#s + 1] = #t
    t = t[1]
  end
  return s
end

-- Checks a runtime tensor against a nested reference table, element by
-- element: |got - want| <= ATOL + RTOL * |want|. A failure names the number
-- of bad elements, the worst error and where it is.
local function assert_close(name, got, want)
  assert.equal("f32", got:dtype(), name .. ": dtype")
  assert.same(shape_of(want), got:shape(), name .. ": shape")
  local worst, worst_at, worst_got, worst_want, bad, count = -1, nil, nil, nil, 0, 0
  local pos = {}
  local function walk(g, w, depth)
    if type(w) ~= "table" then
      count = count + 1
      local err = math.abs(g - w)
      if g ~= g or err > ATOL + RTOL * math.abs(w) then bad = bad + 1 end
      if g ~= g then err = math.huge end
      if err > worst then
        worst, worst_at, worst_got, worst_want = err, table.concat(pos, ","), g, w
      end
      return
    end
    for n = 1, #w do
      pos[depth] = n
      walk(g[n], w[n], depth + 1)
    end
    pos[depth] = nil
  end
  walk(got:totable(), want, 1)
  assert(bad == 0, ("%s: %d of %d elements outside tolerance; max error %.3g at [%s] " ..
    "(got %.9g, want %.9g)"):format(name, bad, count, worst, worst_at or "", worst_got or 0,
    worst_want or 0))
end

-- Programs -----------------------------------------------------------------

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
  it("plain attention: softmax(q k^T / sqrt(D)) v", function()
    local q, k, v = qkv(2, 2, 7, 7, 4, 10)
    local o = fl.compile(plain)(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable()))
  end)

  it("causal mask from fl.arange", function()
    local q, k, v = qkv(2, 2, 8, 8, 4, 20)
    local o = fl.compile(causal)(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(),
      {mask = causal_mask}))
  end)

  it("ALiBi: causal with a bias -slope[h] * (i - j) from a slopes input", function()
    local B, H, N, D = 2, 2, 7, 4
    local q, k, v = qkv(B, H, N, N, D, 30)
    local slopes = fl.tensor({0.5, 0.125}, {dtype = "f32"})
    local prog = fl.compile(function(q, k, v, slopes)
      local s = scores(q, k)
      local i, j = positions(s)
      local slope = slopes:unsqueeze(-1):unsqueeze(-1) -- [H,1,1]
      s = s - slope * (i - j)
      s = fl.where(i:ge(j), s, -math.huge)
      return fl.softmax(s, -1):matmul(v)
    end)
    local o = prog(q, k, v, slopes)
    local sl = slopes:totable()
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(), {
      mask = causal_mask,
      mod = function(x, _, h, i, j) return x - sl[h] * (i - j) end,
    }))
  end)

  it("tanh softcap: s = 30 * tanh(s / 30)", function()
    local q, k, v = qkv(1, 2, 6, 6, 8, 40)
    -- scale up q so that the cap matters
    local prog = fl.compile(function(q, k, v)
      local s = scores(q * 40, k)
      s = (s / 30):tanh() * 30
      return s:softmax(-1):matmul(v)
    end)
    local o = prog(q, k, v)
    local q40 = zip(q:totable(), nil, function(x) return x * 40 end)
    assert_close("o", o, ref_attention(q40, k:totable(), v:totable(), {
      mod = function(x) return 30 * math.tanh(x / 30) end,
    }))
  end)

  it("sliding window: causal and i - j < W", function()
    local W = 3
    local q, k, v = qkv(2, 2, 9, 9, 4, 50)
    local prog = fl.compile(function(q, k, v)
      local s = scores(q, k)
      local i, j = positions(s)
      local keep = i:ge(j):logical_and((i - j):lt(W))
      return fl.softmax(fl.where(keep, s, -math.huge), -1):matmul(v)
    end)
    local o = prog(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(), {
      mask = function(_, _, i, j) return i >= j and i - j < W end,
    }))
  end)

  it("PrefixLM: j < P or j <= i", function()
    local P = 3
    local q, k, v = qkv(2, 2, 8, 8, 4, 60)
    local prog = fl.compile(function(q, k, v)
      local s = scores(q, k)
      local i, j = positions(s)
      local keep = j:lt(P):logical_or(j:le(i))
      return fl.softmax(fl.where(keep, s, -math.huge), -1):matmul(v)
    end)
    local o = prog(q, k, v)
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(), {
      -- 1-based: the first P keys are the prefix
      mask = function(_, _, i, j) return j <= P or j <= i end,
    }))
  end)

  it("document mask from an i32 doc tensor, plus causal", function()
    local q, k, v = qkv(2, 2, 9, 9, 4, 70)
    local doc = fl.tensor({0, 0, 0, 1, 1, 2, 2, 2, 2}, {dtype = "i32"})
    local o = fl.compile(doc_causal)(q, k, v, doc)
    local dt = doc:totable()
    assert_close("o", o, ref_attention(q:totable(), k:totable(), v:totable(), {
      mask = function(_, _, i, j) return dt[i] == dt[j] and i >= j end,
    }))
  end)

  it("differential attention: (softmax1 - 0.3 * softmax2) v", function()
    local B, H, N, D = 2, 2, 6, 4
    local q1, k1, v = qkv(B, H, N, N, D, 80)
    local q2, k2 = rand({B, H, N, D}, 90), rand({B, H, N, D}, 91)
    local prog = fl.compile(function(q1, k1, q2, k2, v)
      local p1 = fl.softmax(scores(q1, k1), -1)
      local p2 = fl.softmax(scores(q2, k2), -1)
      return (p1 - 0.3 * p2):matmul(v)
    end)
    local o = prog(q1, k1, q2, k2, v)
    local scale = 1 / math.sqrt(D)
    local P1 = ref_softmax(ref_scores(q1:totable(), k1:totable(), scale))
    local P2 = ref_softmax(ref_scores(q2:totable(), k2:totable(), scale))
    local P = zip(P1, P2, function(a, b) return a - 0.3 * b end)
    assert_close("o", o, ref_pv(P, v:totable()))
  end)

  it("Evoformer row attention: pair bias and a sigmoid output gate", function()
    local B, H, N, D = 2, 2, 7, 4
    local q, k, v = qkv(B, H, N, N, D, 100)
    local bias, g = rand({B, H, N, N}, 110), rand({B, H, N, D}, 120)
    local prog = fl.compile(function(q, k, v, bias, g)
      local s = scores(q, k) + bias
      return g:sigmoid() * fl.softmax(s, -1):matmul(v)
    end)
    local o = prog(q, k, v, bias, g)
    local bt = bias:totable()
    local O = ref_attention(q:totable(), k:totable(), v:totable(), {
      mod = function(x, b, h, i, j) return x + bt[b][h][i][j] end,
    })
    local want = zip(O, g:totable(), function(x, gate) return x / (1 + math.exp(-gate)) end)
    assert_close("o", o, want)
  end)

  it("sigmoid attention: sigmoid(s + b) v with b = -2, no softmax", function()
    local B, H, N, D = 1, 2, 8, 4
    local q, k, v = qkv(B, H, N, N, D, 130)
    local prog = fl.compile(function(q, k, v)
      return (scores(q, k) + -2):sigmoid():matmul(v)
    end)
    local o = prog(q, k, v)
    local S = ref_scores(q:totable(), k:totable(), 1 / math.sqrt(D))
    local P = zip(S, nil, function(x) return 1 / (1 + math.exp(-(x - 2))) end)
    assert_close("o", o, ref_pv(P, v:totable()))
  end)

  it("grouped-query heads: 4 query heads over 2 key/value heads through expand", function()
    local B, N, D = 2, 6, 4
    local q = rand({B, 4, N, D}, 140)
    local k, v = rand({B, 2, N, D}, 141), rand({B, 2, N, D}, 142)
    local prog = fl.compile(function(q, k, v)
      local kx = k:unsqueeze(3):expand(B, 2, 2, N, D):reshape(B, 4, N, D)
      local vx = v:unsqueeze(3):expand(B, 2, 2, N, D):reshape(B, 4, N, D)
      return fl.softmax(scores(q, kx), -1):matmul(vx)
    end)
    local o = prog(q, k, v)
    -- query head h reads key/value head (h - 1) // 2 + 1
    local function repeat_heads(t)
      local out = {}
      for b = 1, #t do
        out[b] = {}
        for h = 1, 4 do out[b][h] = t[b][(h - 1) // 2 + 1] end
      end
      return out
    end
    assert_close("o", o, ref_attention(q:totable(), repeat_heads(k:totable()),
      repeat_heads(v:totable())))
  end)

  it("an output with its log-sum-exp over keys", function()
    local B, H, N, D = 2, 2, 7, 8
    local q, k, v = qkv(B, H, N, N, D, 150)
    local prog = fl.compile(function(q, k, v)
      local s = scores(q, k)
      local m = s:max(-1, true)
      local e = (s - m):exp()
      local o = (e / e:sum(-1, true)):matmul(v)
      local lse = e:sum(-1):log() + m:view(B, H, N)
      return o, lse
    end)
    local o, lse = prog(q, k, v)
    assert.is_not_nil(lse, "the program returns two tensors")
    local O, L = ref_attention(q:totable(), k:totable(), v:totable())
    assert_close("o", o, O)
    assert_close("lse", lse, L)
  end)

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
