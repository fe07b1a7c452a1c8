-- Random attention-like programs for the property test (spec/property_spec.lua).
--
-- gen.generate(seed) draws one program from a PRNG of its own (xorshift32 on
-- Lua 5.4 integers, so a seed gives the same program on every machine and
-- never touches math.random) and returns a table:
--   fn        the program, a Lua function of its inputs, ready for fl.trace
--             and fl.compile
--   desc      the program as readable text: a header (seed, sizes, how each
--             input is made) and the Lua source of fn itself, which is
--             exactly what runs (fn is that source, loaded)
--   inputs    the runtime tensors to call fn with (f32, a doc-id tensor i32)
--   names     the inputs' names, in fn's argument order
--   features  the structural features the program has (see FEATURES)
--   seed      the seed
--
-- Programs are written as Lua source, line by line, so that a failure shows
-- the program as it is and a seed replays it. Most are attention variants:
-- one or two score contractions s = q kᵀ · scale, a random pointwise body on
-- s (bias, constant factor or shift, negation, tanh softcap, ALiBi-like
-- slope·(j − i), a per-head factor, the Forgetting Transformer's cumsum of
-- log forget gates, abs, relu, sigmoid, maximum/minimum with a constant), an
-- optional mask from position comparisons (causal, window, prefix, band, ...,
-- combined with logical_and/or/not) or document ids, a normalizer (softmax,
-- a hand-written max-subtracted softmax, sigmoid weights, or differential
-- attention p₁ − λ p₂), the contraction with v, and optional output ops (a
-- sigmoid gate, an added term, the log-sum-exp, the row max, the weights). The
-- rest are reduction nests that are not attention at all (sums of squares,
-- means, cumsums over a small dim, norms, a Gram matrix, linear attention,
-- softmax over a batch dim), so the passes meet unusual shapes.
--
-- Values stay well conditioned: inputs are randn (slopes rand), scores are
-- scaled by about 1/√D and constants lie in [-3, 3]; exponentials only ever
-- see max-subtracted scores. Fully masked rows are kept on purpose: softmax
-- gives NaN there, as in PyTorch, and the comparison treats NaN as equal.
local fl = require "flashlight"

local M = {}

-- The features a program can have, in the order the spec reports them.
M.FEATURES = {
  "attention", "reduction", "two_scores", "differential", "mask", "data_mask",
  "additive_mask", "bias", "slope", "softcap", "softmax", "manual_softmax", "sigmoid",
  "gate", "lse", "rowmax", "probs_out", "cumsum", "multi_output", "rect", "odd",
}

-- PRNG ----------------------------------------------------------------------

local MASK32 = 0xffffffff

local Rng = {}
Rng.__index = Rng

-- xorshift32 (Marsaglia), state never 0; the seed is mixed by a Weyl step
-- and a few rounds so that neighbouring seeds diverge at once.
function M.rng(seed)
  assert(math.type(seed) == "integer", "random_program: the seed must be an integer")
  local x = (seed * 0x9E3779B1 + 0x7F4A7C15) & MASK32
  if x == 0 then x = 0x2545F491 end
  local r = setmetatable({x = x}, Rng)
  for _ = 1, 8 do r:next() end
  return r
end

function Rng:next()
  local x = self.x
  x = x ~ ((x << 13) & MASK32)
  x = x ~ (x >> 17)
  x = x ~ ((x << 5) & MASK32)
  self.x = x
  return x
end

-- An integer in [lo, hi].
function Rng:int(lo, hi) return lo + self:next() % (hi - lo + 1) end

-- A float in [0, 1), 24 bits.
function Rng:float() return (self:next() >> 8) / 16777216 end

function Rng:chance(p) return self:float() < p end

function Rng:pick(list) return list[self:int(1, #list)] end

-- One of a weighted list {{weight, value}, ...}.
function Rng:weighted(list)
  local total = 0
  for _, w in ipairs(list) do total = total + w[1] end
  local x = self:float() * total
  for _, w in ipairs(list) do
    x = x - w[1]
    if x < 0 then return w[2] end
  end
  return list[#list][2]
end

-- A constant in [lo, hi] with two decimals, as its Lua source (a float
-- literal, so it is the same number wherever it is read).
function Rng:const(lo, hi)
  local c = math.floor((lo + (hi - lo) * self:float()) * 100 + 0.5) / 100
  if c == 0 then c = 0.5 end
  return ("%.2f"):format(c)
end

-- "+ c" or "- |c|" for a constant's source c, to follow an operand.
local function signed(c)
  if c:sub(1, 1) == "-" then return "- " .. c:sub(2) end
  return "+ " .. c
end

-- Program text ---------------------------------------------------------------

local Builder = {}
Builder.__index = Builder

local function builder(r, seed)
  return setmetatable({r = r, seed = seed, lines = {}, inputs = {}, by_name = {}, features = {}},
    Builder)
end

function Builder:emit(fmt, ...) self.lines[#self.lines + 1] = "  " .. fmt:format(...) end

function Builder:feature(name) self.features[name] = true end

-- An input, added once: kind "randn", "rand" or "ids" (with `values`).
function Builder:input(name, shape, kind, values)
  if self.by_name[name] then return name end
  local inp = {name = name, shape = shape, kind = kind, values = values,
               seed = self.r:int(1, 0x3fffffff)}
  self.inputs[#self.inputs + 1] = inp
  self.by_name[name] = inp
  return name
end

local function shape_str(s)
  local p = {}
  for k, v in ipairs(s) do p[k] = tostring(v) end
  return "[" .. table.concat(p, ",") .. "]"
end

local function make_tensor(inp)
  if inp.kind == "ids" then return fl.tensor(inp.values, {dtype = "i32"}) end
  return fl[inp.kind](inp.shape, {dtype = "f32", seed = inp.seed})
end

local function input_note(inp)
  if inp.kind == "ids" then
    local v = {}
    for k, x in ipairs(inp.values) do v[k] = tostring(x) end
    return ("i32%s = {%s}"):format(shape_str(inp.shape), table.concat(v, ", "))
  end
  return ("f32%s = fl.%s(%s, {seed = %d})"):format(shape_str(inp.shape), inp.kind,
    shape_str(inp.shape):gsub("%[", "{"):gsub("%]", "}"), inp.seed)
end

-- Attention ------------------------------------------------------------------

-- The scaled scores of qn and kn, into variable `out`.
local function emit_scores(P, out, qn, kn)
  local r, D = P.r, P.D
  local form = r:int(1, 4)
  if form == 1 then
    P:emit("local %s = %s:matmul(%s:transpose(-2, -1)) / math.sqrt(%s:size(-1))", out, qn, kn, qn)
  elseif form == 2 then
    P:emit("local %s = fl.matmul(%s, %s:transpose(3, 4)) * %.6g", out, qn, kn, 1 / math.sqrt(D))
  elseif form == 3 then
    P:emit("local %s = (%s * %.6g):matmul(%s:transpose(-1, -2))", out, qn, 1 / math.sqrt(D), kn)
  else
    P:emit("local %s = %s:matmul(%s:transpose(-2, -1)) * %s", out, qn, kn, r:const(0.2, 1))
  end
end

-- Query positions i [Nq, 1] and key positions j [1, Nk], emitted once.
local function positions(P)
  if P.have_positions then return end
  P.have_positions = true
  if P.r:chance(0.5) then
    P:emit("local i = fl.arange(%d):view(-1, 1)", P.Nq)
    P:emit("local j = fl.arange(%d):view(1, -1)", P.Nk)
  else
    P:emit("local i = fl.arange(%s:size(-2)):unsqueeze(-1)", P.score_names[1])
    P:emit("local j = fl.arange(%s:size(-1)):unsqueeze(1)", P.score_names[1])
  end
end

-- A random pointwise body on score variable `s`.
local function emit_score_mods(P, s)
  local r = P.r
  local n = r:weighted({{3, 0}, {4, 1}, {3, 2}, {1, 3}})
  for _ = 1, n do
    local mod = r:weighted({
      {3, "bias"}, {2, "scale"}, {2, "softcap"}, {2, "slope"}, {1, "abs"}, {1, "relu"},
      {1, "sigmoid"}, {2, "clamp"}, {1, "shift"}, {1, "head_scale"}, {1, "neg"},
      {P.Nq == P.Nk and 2 or 0, "forget"},
    })
    if mod == "bias" then
      local shape = r:pick({{P.B, P.H, P.Nq, P.Nk}, {P.H, P.Nq, P.Nk}, {P.Nq, P.Nk}})
      P:input("bias", P.by_name.bias and P.by_name.bias.shape or shape, "randn")
      if #P.by_name.bias.shape < 4 and r:chance(0.3) then
        P:emit("%s = %s + bias:expand(%d, %d, %d, %d)", s, s, P.B, P.H, P.Nq, P.Nk)
      else
        P:emit("%s = %s + bias", s, s)
      end
      P:feature("bias")
    elseif mod == "scale" then
      P:emit("%s = %s * %s", s, s, r:const(-3, 3))
    elseif mod == "softcap" then
      local cap = r:const(0.5, 3)
      P:emit("%s = (%s / %s):tanh() * %s", s, s, cap, cap)
      P:feature("softcap")
    elseif mod == "slope" then
      P:input("slope", {P.H}, "rand")
      positions(P)
      local form = r:int(1, 3)
      if form == 1 then
        P:emit("%s = %s + slope:view(-1, 1, 1) * (j - i)", s, s)
      elseif form == 2 then
        P:emit("%s = %s - slope:view(%d, 1, 1) * (i - j):abs()", s, s, P.H)
      else
        P:emit("%s = %s + slope:unsqueeze(-1):unsqueeze(-1) * (j - i):to(\"f32\")", s, s)
      end
      P:feature("slope")
    elseif mod == "abs" then
      P:emit("%s = %s:abs()", s, s)
    elseif mod == "relu" then
      P:emit("%s = %s:relu()", s, s)
    elseif mod == "sigmoid" then
      P:emit("%s = %s:sigmoid()", s, s)
    elseif mod == "clamp" then
      P:emit("%s = fl.%s(%s, %s)", s, r:pick({"maximum", "minimum"}), s, r:const(-3, 3))
    elseif mod == "shift" then
      P:emit("%s = %s %s", s, s, signed(r:const(-3, 3)))
    elseif mod == "forget" then
      -- the Forgetting Transformer: s + c_i - c_j, c = cumsum(log sigmoid(f))
      P:input("fgate", {P.B, P.H, P.Nk}, "randn")
      if not P.have_forget then
        P.have_forget = true
        P:emit("local c = fgate:sigmoid():log():cumsum(-1)")
      end
      P:emit("%s = %s + c:unsqueeze(-1) - c:unsqueeze(-2)", s, s)
      P:feature("cumsum")
    elseif mod == "neg" then
      P:emit("%s = -%s", s, s)
    else
      P:input("slope", {P.H}, "rand")
      P:emit("%s = %s * slope:view(1, -1, 1, 1)", s, s)
      P:feature("slope")
    end
  end
end

-- Document ids for positions 0 .. L-1: sorted runs, or a few ids at random.
local function doc_ids(r, L)
  local v, cur = {}, 0
  local sorted = r:chance(0.6)
  for n = 1, L do
    if sorted then
      if n > 1 and r:chance(0.3) then cur = cur + 1 end
      v[n] = cur
    else
      v[n] = r:int(0, 2)
    end
  end
  return v
end

-- A boolean condition over i and j (and maybe doc), as an expression; every
-- expression is a call, so it chains with :logical_and(...) etc.
local function mask_atom(P, want_doc)
  local r = P.r
  if want_doc then
    P:input("doc", {math.max(P.Nq, P.Nk)}, "ids", doc_ids(r, math.max(P.Nq, P.Nk)))
    P:feature("data_mask")
    return r:weighted({
      {3, "doc:index(i):eq(doc:index(j))"},
      {1, "doc:index(j):le(doc:index(i))"},
      {1, "doc:index(i):ne(doc:index(j)):logical_not()"},
    })
  end
  local kind = r:weighted({{3, "causal"}, {2, "window"}, {1, "prefix"}, {1, "band"}, {1, "diag"},
                           {1, "sum"}})
  if kind == "causal" then
    local off = P.Nk - P.Nq
    if off == 0 or r:chance(0.5) then return r:pick({"i:ge(j)", "j:le(i)"}) end
    return ("(i %s %d):ge(j)"):format(off > 0 and "+" or "-", math.abs(off))
  elseif kind == "window" then
    return ("(i - j):abs():le(%d)"):format(r:int(0, 4))
  elseif kind == "prefix" then
    return ("j:lt(%d)"):format(r:int(1, P.Nk))
  elseif kind == "band" then
    return ("(j - i):ge(-%d):logical_and((j - i):le(%d))"):format(r:int(0, 3), r:int(0, 3))
  elseif kind == "diag" then
    return "i:eq(j)"
  else
    return ("(i + j):lt(%d)"):format(r:int(1, P.Nq + P.Nk))
  end
end

local function mask_expr(P, depth, want_doc)
  local r = P.r
  if depth == 0 or r:chance(0.45) then return mask_atom(P, want_doc) end
  local op = r:weighted({{2, "and"}, {2, "or"}, {1, "not"}})
  if op == "not" then return mask_expr(P, depth - 1, want_doc) .. ":logical_not()" end
  local a = mask_expr(P, depth - 1, want_doc)
  local b = mask_expr(P, depth - 1, want_doc and r:chance(0.3))
  return ("%s:logical_%s(%s)"):format(a, op, b)
end

local function emit_mask(P)
  local r = P.r
  positions(P)
  P:emit("local keep = %s", mask_expr(P, r:int(0, 2), r:chance(0.35)))
  P:feature("mask")
  local form = r:weighted({{3, "where"}, {1, "where_not"}, {1, "additive"}})
  for _, s in ipairs(P.score_names) do
    if form == "where" then
      P:emit("%s = fl.where(keep, %s, -math.huge)", s, s)
    elseif form == "where_not" then
      P:emit("%s = fl.where(keep:logical_not(), -math.huge, %s)", s, s)
    else
      P:emit("%s = %s + fl.where(keep, 0, -math.huge)", s, s)
      P:feature("additive_mask")
    end
  end
end

local function squeeze_last(P, x)
  local r = P.r
  local form = r:int(1, 3)
  if x:find(" ") then x = "(" .. x .. ")" end
  if form == 1 then return ("%s:view(%d, %d, %d)"):format(x, P.B, P.H, P.Nq) end
  if form == 2 then return ("%s:view(q:size(1), q:size(2), q:size(3))"):format(x) end
  return ("%s:view(%d, %d, -1)"):format(x, P.B, P.H)
end

local function attention(P)
  local r = P.r
  P:feature("attention")
  P:input("q", {P.B, P.H, P.Nq, P.D}, "randn")
  P:input("k", {P.B, P.H, P.Nk, P.D}, "randn")
  P:input("v", {P.B, P.H, P.Nk, P.E}, "randn")

  -- scores: one contraction, or two (summed, or differential attention)
  local combine = r:chance(0.3) and r:pick({"sum", "differential"}) or nil
  if combine then
    P:input("q2", {P.B, P.H, P.Nq, P.D}, "randn")
    P:input("k2", {P.B, P.H, P.Nk, P.D}, "randn")
    P:feature("two_scores")
  end
  if combine == "differential" then
    P.score_names = {"s1", "s2"}
    emit_scores(P, "s1", "q", "k")
    emit_scores(P, "s2", "q2", "k2")
    emit_score_mods(P, "s1")
    emit_score_mods(P, "s2")
  else
    P.score_names = {"s"}
    if combine == "sum" then
      emit_scores(P, "s1", "q", "k")
      emit_scores(P, "s2", "q2", "k2")
      P:emit("local s = s1 + s2")
    else
      emit_scores(P, "s", "q", "k")
    end
    emit_score_mods(P, "s")
  end
  if r:chance(0.5) then emit_mask(P) end

  -- the normalizer
  local norm = combine == "differential" and "differential" or
    r:weighted({{4, "softmax"}, {3, "manual"}, {2, "sigmoid"}})
  local s = P.score_names[1]
  if norm == "softmax" then
    local form = r:int(1, 3)
    if form == 1 then P:emit("local p = fl.softmax(s, -1)")
    elseif form == 2 then P:emit("local p = s:softmax(-1)")
    else P:emit("local p = s:softmax(4)") end
    P:feature("softmax")
  elseif norm == "manual" then
    P:emit("local m = s:max(-1, true)")
    P:emit("local e = (s - m):exp()")
    P:emit("local z = e:sum(-1, true)")
    P:emit("local p = e / z")
    P:feature("manual_softmax")
  elseif norm == "sigmoid" then
    if r:chance(0.5) then P:emit("local p = s:sigmoid()")
    else P:emit("local p = (s %s):sigmoid()", signed(r:const(-3, 1))) end
    P:feature("sigmoid")
  else
    P:emit("local p = fl.softmax(s1, -1) - %s * fl.softmax(s2, -1)", r:const(0.05, 0.95))
    P:feature("differential")
  end

  -- the contraction with v, and output ops
  P:emit(r:chance(0.5) and "local o = p:matmul(v)" or "local o = fl.matmul(p, v)")
  if r:chance(0.25) then
    P:input("gate", {P.B, P.H, P.Nq, P.E}, "randn")
    P:emit("o = gate:sigmoid() * o")
    P:feature("gate")
  end
  if r:chance(0.3) then
    local add = r:weighted({{1, "const"}, {1, "gate"}, {1, "qmean"}, {1, "vmean"}})
    if add == "const" then P:emit("o = o %s", signed(r:const(-3, 3)))
    elseif add == "gate" then
      P:input("gate", {P.B, P.H, P.Nq, P.E}, "randn")
      P:emit("o = o + gate")
      P:feature("gate")
    elseif add == "qmean" then P:emit("o = o + q:mean(-1, true)")
    else P:emit("o = o * %s + v:mean(-2, true)", r:const(-3, 3)) end
  end
  local outs = {"o"}
  if r:chance(0.3) then
    if norm == "manual" then
      P:emit("local lse = %s", squeeze_last(P, "z:log() + m"))
    else
      P:emit("local mx = %s:max(-1, true)", s)
      P:emit("local lse = %s", squeeze_last(P, ("(%s - mx):exp():sum(-1, true):log() + mx"):format(s)))
    end
    outs[#outs + 1] = "lse"
    P:feature("lse")
  end
  if r:chance(0.15) then
    if norm == "manual" and r:chance(0.5) then
      P:emit("local rowmax = %s", squeeze_last(P, "m"))
    else
      P:emit("local rowmax = %s:max(-1)", s)
    end
    outs[#outs + 1] = "rowmax"
    P:feature("rowmax")
  end
  if r:chance(0.1) then
    outs[#outs + 1] = "p"
    P:feature("probs_out")
  end
  return outs
end

-- Reduction nests that are not attention --------------------------------------

local reductions = {
  function(P) return "(q * q):sum(-1)" end,
  function(P) return P.r:pick({"q:mean(-2)", "q:mean(-1, true)", "q:mean()", "q:mean(1)"}) end,
  function(P) P:feature("cumsum"); return P.r:pick({"q:cumsum(-1)", "q:cumsum(4)"}) end,
  function(P)
    P:input("k", {P.B, P.H, P.Nk, P.D}, "randn")
    P:feature("cumsum")
    return P.r:pick({"k:cumsum(3)", "k:cumsum(2):max(-1)"})
  end,
  function(P) return "q:exp():sum(-1):log()" end,
  function(P)
    P:emit("local ms = (q * q):mean(-1, true)")
    return ("q * (ms + %s):rsqrt()"):format(P.r:const(0.01, 1))
  end,
  function(P)
    P:emit("local xc = q - q:mean(-1, true)")
    return ("xc / ((xc * xc):mean(-1, true) + %s):sqrt()"):format(P.r:const(0.01, 1))
  end,
  function(P) return "q:transpose(-2, -1):matmul(q)" end,
  function(P)
    P:input("k", {P.B, P.H, P.Nk, P.D}, "randn")
    P:input("v", {P.B, P.H, P.Nk, P.E}, "randn")
    P:emit("local fq, fk = q:sigmoid(), k:sigmoid()")
    P:emit("local kv = fk:transpose(-2, -1):matmul(v)")
    P:emit("local den = fq:matmul(fk:sum(-2, true):transpose(-2, -1))")
    return "fq:matmul(kv) / den"
  end,
  function(P) return P.r:pick({"q:softmax(2)", "q:softmax(1)", "q:softmax(3)"}) end,
  function(P)
    P:input("v", {P.B, P.H, P.Nk, P.E}, "randn")
    return P.r:pick({"q:sum(1)", "v:max(-2)", "v:min(2)", "q:sum()"})
  end,
  function(P)
    P:input("k", {P.B, P.H, P.Nk, P.D}, "randn")
    return P.r:pick({"q:matmul(k:transpose(-2, -1)):max(-1)",
                     "q:matmul(k:transpose(-2, -1)):sum(-2)"})
  end,
  function(P)
    P:input("k", {P.B, P.H, P.Nk, P.D}, "randn")
    return ("(q:sum(-1, true) * k:sum(-1):view(%d, %d, 1, %d)):sum(-1)"):format(P.B, P.H, P.Nk)
  end,
  function(P) return "q - q:mean(1, true)" end,
  function(P)
    if P.r:chance(0.5) then return ("q:view(%d, %d, %d):max(1)"):format(P.B * P.H, P.Nq, P.D) end
    return ("q:transpose(1, 3):reshape(%d, -1):sum(-1)"):format(P.Nq)
  end,
  function(P) return ("(q:abs() + 1):log():sum(-1, true) * q"):format() end,
}

local function reduction(P)
  P:feature("reduction")
  P:input("q", {P.B, P.H, P.Nq, P.D}, "randn")
  local n, outs, used = P.r:int(1, 3), {}, {}
  while #outs < n do
    local k = P.r:int(1, #reductions)
    if not used[k] then
      used[k] = true
      local x = reductions[k](P)
      local name = "r" .. (#outs + 1)
      P:emit("local %s = %s", name, x)
      outs[#outs + 1] = name
    end
  end
  return outs
end

-- The program ----------------------------------------------------------------

function M.generate(seed)
  local r = M.rng(seed)
  local P = builder(r, seed)
  P.B, P.H = r:int(1, 2), r:int(1, 3)
  P.Nq = r:int(1, 17)
  P.Nk = r:chance(0.3) and P.Nq or r:int(1, 17)
  P.D = r:int(1, 9)
  P.E = r:chance(0.4) and P.D or r:int(1, 9)
  if P.Nq ~= P.Nk then P:feature("rect") end
  if P.Nq % 2 == 1 or P.Nk % 2 == 1 then P:feature("odd") end

  local outs = r:chance(0.8) and attention(P) or reduction(P)
  if #outs > 1 then P:feature("multi_output") end

  -- fn's arguments: the inputs in a fixed order, whichever were drawn
  local order = {q = 1, k = 2, v = 3, q2 = 4, k2 = 5, bias = 6, slope = 7, gate = 8, fgate = 9,
                 doc = 10}
  table.sort(P.inputs, function(a, b) return order[a.name] < order[b.name] end)
  local names, notes = {}, {}
  for n, inp in ipairs(P.inputs) do
    names[n] = inp.name
    notes[n] = ("--   %-5s %s"):format(inp.name, input_note(inp))
  end
  local feats = {}
  for _, f in ipairs(M.FEATURES) do if P.features[f] then feats[#feats + 1] = f end end

  local src = {
    ("-- random program, seed %d: B=%d H=%d Nq=%d Nk=%d D=%d E=%d"):format(seed, P.B, P.H,
      P.Nq, P.Nk, P.D, P.E),
    "-- features: " .. table.concat(feats, " "),
    "-- inputs:",
    table.concat(notes, "\n"),
    ("return function(%s)"):format(table.concat(names, ", ")),
    table.concat(P.lines, "\n"),
    ("  return %s"):format(table.concat(outs, ", ")),
    "end",
  }
  local desc = table.concat(src, "\n") .. "\n"
  local chunk = assert(load(desc, "=random_program_" .. seed, "t", {fl = fl, math = math}))
  local inputs = {}
  for n, inp in ipairs(P.inputs) do inputs[n] = make_tensor(inp) end
  return {fn = chunk(), desc = desc, inputs = inputs, names = names, features = P.features,
          seed = seed, noutputs = #outs}
end

return M
