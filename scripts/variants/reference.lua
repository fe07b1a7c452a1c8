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
--   rows                  compute only some query rows (see R.with_rows);
--                         default R.rows, which is nil: every row
-- Returns O [B][H][Nq][E] (and L).
function R.attention(q, k, v, opts)
  opts = opts or {}
  local scale = opts.scale or 1 / math.sqrt(#q[1][1][1])
  local only = R.selection(opts.rows or R.rows)
  local O, L = {}, {}
  for b = 1, #q do
    O[b], L[b] = {}, {}
    for h = 1, #q[b] do
      local kh = opts.kv_head and opts.kv_head(h) or h
      local kb, vb = k[b][kh], v[b][kh]
      O[b][h], L[b][h] = {}, {}
      for i = 1, #q[b][h] do
        if only and not only(b, h, i) then
          O[b][h][i], L[b][h][i] = {}, {}
          goto next_row
        end
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
        ::next_row::
      end
    end
  end
  if opts.lse then return O, L end
  return O
end

-- Selected query rows, for sequences too long to compute every row in plain
-- Lua. A selection is a list of query positions (1-based, as i above) with
-- optional fields heads and batches (lists of h and b; default all):
--   {1, 4096, 17, 2050, heads = {2}, batches = {1}}
-- While R.rows holds one, R.attention computes only those (b, h, i) and
-- gives every other row, of O and of L, as an empty table. R.zip and
-- R.swap23 carry empty rows along and R.rel_error compares nothing inside
-- them, so a variant's reference needs no change: R.with_rows(sel,
-- V.reference, x, p) returns its outputs with only the selected rows filled.
-- The rows it fills are the very rows the full computation gives (same
-- operations, same order). nil: every row.
R.rows = nil

-- A selection as a predicate (b, h, i) -> selected?, or nil for nil.
function R.selection(sel)
  if sel == nil then return nil end
  if type(sel) == "function" then return sel end
  assert(type(sel) == "table", "a row selection is a list of query positions")
  local function set(list)
    if list == nil then return nil end
    local out = {}
    for _, n in ipairs(list) do out[n] = true end
    return out
  end
  local rows, heads, batches = set(sel), set(sel.heads), set(sel.batches)
  return function(b, h, i)
    return rows[i] == true and (not heads or heads[h] == true) and (not batches or batches[b] == true)
  end
end

-- Calls f(...) with R.rows = sel, and puts R.rows back however f ends.
function R.with_rows(sel, f, ...)
  local saved = R.rows
  R.rows = sel
  local r = table.pack(pcall(f, ...))
  R.rows = saved
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- The inputs as nested tables, what the references take.
function R.tables(inputs)
  local x = {}
  for n, t in ipairs(inputs) do x[n] = t:totable() end
  return x
end

-- Tensors anywhere (on a GPU too) as nested tables of their f32 values.
function R.host_tables(ts)
  local x = {}
  for n, t in ipairs(ts) do x[n] = t:to("cpu"):to("f32"):totable() end
  return x
end

-- A tensor as nested tables read on demand (t:get), for inputs too large
-- for totable (the [B, H, N, N] pair bias at N = 4096, a kernel's output
-- whose sampled rows are compared): a caller reads only the part it needs.
function R.lazy(t)
  local shape = t:shape()
  local function level(prefix)
    local depth = #prefix + 1
    return setmetatable({}, {
      __len = function() return shape[depth] end,
      __index = function(self, n)
        if math.type(n) ~= "integer" or n < 1 or n > shape[depth] then return nil end
        local idx = table.move(prefix, 1, #prefix, 1, {})
        idx[depth] = n
        local v
        if depth == #shape then v = t:get(table.unpack(idx)) else v = level(idx) end
        rawset(self, n, v)
        return v
      end,
    })
  end
  return level({})
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
  for n = 1, #want do
    local g, w = outs[n], want[n]
    if type(g) == "userdata" and type(w) == "userdata" then
      local e, s = g:max_diff(w)   -- the same rule, in C
      err, scale = math.max(err, e), math.max(scale, s)
    else
      walk(values(g), values(w))
    end
  end
  return err / math.max(scale, 1e-30)
end

return R
