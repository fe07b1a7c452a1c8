-- What the variants share: the scaled scores, query and key positions,
-- input makers, and the constructor that fills in a variant's defaults.
local fl = require "flashlight"

local A = {}

-- q kᵀ / √D over the last two dims.
function A.scores(q, k)
  return q:matmul(k:transpose(-2, -1)) / math.sqrt(q:size(-1))
end

-- Query positions as a column [N, 1] and key positions as a row [1, N]
-- for a score tensor s (..., N_q, N_k).
function A.positions(s)
  return fl.arange(s:size(-2)):view(-1, 1), fl.arange(s:size(-1)):view(1, -1)
end

function A.causal(s)
  local i, j = A.positions(s)
  return fl.where(i:ge(j), s, -math.huge)
end

-- Input makers. opts: dtype (default bf16), device (default cpu), seed
-- (default 1). Each tensor of a variant gets its own seed.
local function opt(opts)
  opts = opts or {}
  return {dtype = opts.dtype or "bf16", device = opts.device or "cpu", seed = opts.seed or 1}
end

function A.randn(shape, opts, k)
  local o = opt(opts)
  return fl.randn(shape, {dtype = o.dtype, device = o.device, seed = o.seed * 1000 + k})
end

function A.rand(shape, opts, k)
  local o = opt(opts)
  return fl.rand(shape, {dtype = o.dtype, device = o.device, seed = o.seed * 1000 + k})
end

-- A tensor of given values (a Lua table) on the inputs' device.
function A.values(values, opts, dtype)
  local o = opt(opts)
  return fl.tensor(values, {dtype = dtype or o.dtype}):to(o.device)
end

-- NaN-filled CUDA tensors for graph g's outputs, of their shapes (in
-- `dtype`, or each in its own; -1 in a dtype without NaN): a position the
-- kernels never write shows.
local FLOATS = {f64 = true, f32 = true, f16 = true, bf16 = true}
function A.poisoned(g, dtype)
  local out = {}
  for k, id in ipairs(g:outputs()) do
    local v = g:value(id)
    local dt = dtype or v.dtype
    out[k] = fl.full(v.shape, FLOATS[dt] and 0 / 0 or -1, {dtype = dt, device = "cuda"})
  end
  return out
end

-- opts.persistent of plan:launch and plan:cuda from a command-line or
-- environment word: "on" or "1" true, "off" or "0" false, "auto" or none
-- "auto"; anything else: nil and a message.
local PERSISTENT = {on = true, ["1"] = true, off = false, ["0"] = false, auto = "auto"}
function A.persistent(word)
  local p = PERSISTENT[word or "auto"]
  if p == nil then return nil, ("persistent is on, off or auto, got '%s'"):format(word) end
  return p
end

-- q, k, v of shape [B, H, N, D].
function A.qkv(B, H, N, D, opts)
  return {A.randn({B, H, N, D}, opts, 1), A.randn({B, H, N, D}, opts, 2),
          A.randn({B, H, N, D}, opts, 3)}
end

-- A variant's table, completed:
--   name, summary        what it is
--   params, small        its constants at full size and at test size (CPU)
--   make(p) -> fn        the program for constants p (default: fn itself)
--   fn                   make(params)
--   inputs(B, H, N, D, opts, p) -> {tensors}   in fn's argument order
--   kept(N, p, inputs)   fraction of (query, key) pairs the mask keeps
--   reference(x, p)      outputs as nested tables, from x = the inputs'
--                        totable(), computed in plain Lua
--   mask(x, p)           (b, h, i, j) -> keep?, 1-based, for the reference
--                        and to check kept()
function A.variant(v)
  assert(type(v.name) == "string", "a variant needs a name")
  v.params = v.params or {}
  v.small = v.small or v.params
  if not v.make then
    local fn = v.fn
    v.make = function() return fn end
  end
  v.fn = v.make(v.params)
  v.inputs = v.inputs or A.qkv
  local kept = v.kept
  v.kept = type(kept) == "function" and kept or function() return kept or 1 end
  return v
end

return A
