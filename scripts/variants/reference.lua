-- Plain-Lua references for the variant library, in double precision over
-- nested tables (t:totable()), indexed [b][h][i][d] from 1. They share no
-- code with the compiler, so a test that compares the two checks something.
local R = {}

local NEG_INF = -math.huge

-- Attention for one variant. q [B][H][Nq][D], k [B][Hk][Nk][D],
-- v [B][Hk][Nk][E]. opts (all optional):
--   scale                 default 1/√D
--   mod(s, b, h, i, j)    the score after the scale
--   mask(b, h, i, j)      false drops the pair
--   kv_head(h)            the key/value head of query head h (default h)
--   sink(b, h)            an extra logit in the softmax denominator
--   weight = "sigmoid"    sigmoid(score) instead of softmax
--   lse = true            also return the log-sum-exp L [B][H][Nq]
-- Returns O [B][H][Nq][E] (and L).
function R.attention(q, k, v, opts)
  opts = opts or {}
  local scale = opts.scale or 1 / math.sqrt(#q[1][1][1])
  local O, L = {}, {}
  for b = 1, #q do
    O[b], L[b] = {}, {}
    for h = 1, #q[b] do
      local kh = opts.kv_head and opts.kv_head(h) or h
      local kb, vb = k[b][kh], v[b][kh]
      O[b][h], L[b][h] = {}, {}
      for i = 1, #q[b][h] do
        local qi, s, m = q[b][h][i], {}, NEG_INF
        for j = 1, #kb do
          local acc = 0.0
          for d = 1, #qi do acc = acc + qi[d] * kb[j][d] end
          local x = acc * scale
          if opts.mod then x = opts.mod(x, b, h, i, j) end
          if opts.mask and not opts.mask(b, h, i, j) then x = NEG_INF end
          s[j] = x
          if x > m then m = x end
        end
        local sink = opts.sink and opts.sink(b, h)
        if sink and sink > m then m = sink end
        local z = sink and math.exp(sink - m) or 0.0
        for j = 1, #s do
          if opts.weight == "sigmoid" then
            s[j] = 1 / (1 + math.exp(-s[j]))
          else
            s[j] = math.exp(s[j] - m)
            z = z + s[j]
          end
        end
        local row = {}
        for e = 1, #vb[1] do
          local acc = 0.0
          for j = 1, #s do acc = acc + s[j] * vb[j][e] end
          row[e] = opts.weight == "sigmoid" and acc or acc / z
        end
        O[b][h][i], L[b][h][i] = row, math.log(z) + m
      end
    end
  end
  if opts.lse then return O, L end
  return O
end

-- The inputs as nested tables, what the references take.
function R.tables(inputs)
  local x = {}
  for n, t in ipairs(inputs) do x[n] = t:totable() end
  return x
end

-- f(x, y) elementwise over nested tables of one shape (y may be nil).
function R.zip(x, y, f)
  if type(x) ~= "table" then return f(x, y) end
  local out = {}
  for n = 1, #x do out[n] = R.zip(x[n], y and y[n], f) end
  return out
end

function R.sigmoid(x) return 1 / (1 + math.exp(-x)) end

-- Swaps the second and third levels: [b][n][h] <-> [b][h][n].
function R.swap23(x)
  local out = {}
  for b = 1, #x do
    out[b] = {}
    for n = 1, #x[b] do
      for h = 1, #x[b][n] do
        out[b][h] = out[b][h] or {}
        out[b][h][n] = x[b][n][h]
      end
    end
  end
  return out
end

-- max |got − want| / max |want| over all outputs, NaN allowed only where NaN
-- is wanted; outs and want are lists of tensors or of nested tables.
function R.rel_error(outs, want)
  local err, scale = 0, 0
  local function walk(g, w)
    if type(w) == "table" then
      for n = 1, #w do walk(g[n], w[n]) end
    elseif w ~= w then
      if g == g then err = math.huge end
    else
      err = math.max(err, g == g and math.abs(g - w) or math.huge)
      if math.abs(w) < math.huge then scale = math.max(scale, math.abs(w)) end
    end
  end
  local function values(x) return type(x) == "table" and x or x:totable() end
  for n = 1, #want do walk(values(outs[n]), values(want[n])) end
  return err / math.max(scale, 1e-30)
end

return R
