-- Property test: the compiler's passes never change results. Random
-- attention-like programs (spec/support/random_program.lua) run through
-- fl.compile with every prefix of the default pipeline fl.passes, from {} to
-- the whole list, and each must equal the unfused double-precision reference
-- (fl.trace(fn, ...) then g:eval) within f32 rounding, NaN where NaN.
--
--   FL_PROPERTY_N=500  how many programs (seeds 1..N; default 200)
--   FL_SEED=123        replays only seed 123 (a comma list for several) and
--                      prints the program on stderr
--
-- A failure names the seed, the pass prefix and the program's source, so the
-- first prefix that fails points at the pass that broke it.
local fl = require "flashlight"
local close = require "close"
local gen = require "random_program"

-- |got − want| ≤ ATOL·scale + RTOL·|want|, where scale is the largest finite
-- |want| of that output (at least 1): f32 rounding of sums of O(scale) terms.
local RTOL, ATOL = 1e-4, 1e-5
local DEFAULT_N = 200
local SHOWN = 3 -- failing programs printed in full

local function default_seeds()
  local seeds = {}
  for s = 1, DEFAULT_N do seeds[s] = s end
  return seeds
end

local function chosen_seeds()
  local only = os.getenv("FL_SEED")
  if only and only ~= "" then
    local seeds = {}
    for w in only:gmatch("[^,%s]+") do
      seeds[#seeds + 1] = math.tointeger(tonumber(w)) or error("FL_SEED: not an integer: " .. w)
    end
    return seeds, true
  end
  local n = os.getenv("FL_PROPERTY_N")
  n = n and n ~= "" and math.tointeger(tonumber(n)) or DEFAULT_N
  local seeds = {}
  for s = 1, n do seeds[s] = s end
  return seeds, false
end

local SEEDS, REPLAY = chosen_seeds()

local function label(prefix)
  return "{" .. table.concat(prefix, ", ") .. "}"
end

-- Every prefix of the pipeline, the empty one and the whole one included.
local function prefixes()
  local out = {}
  for n = 0, #fl.passes do out[#out + 1] = {table.unpack(fl.passes, 1, n)} end
  return out
end

local function replay_hint(seed)
  return ("replay: FL_SEED=%d build/flua /usr/bin/busted spec/property_spec.lua"):format(seed)
end

-- Each seed's program and reference outputs, made once for all the tests.
local cases = {}
local function case(seed)
  local c = cases[seed]
  if c then return c end
  c = {seed = seed}
  cases[seed] = c
  local ok, prog = pcall(gen.generate, seed)
  if not ok then
    c.err = "the generator failed: " .. tostring(prog)
    return c
  end
  c.prog = prog
  if REPLAY then io.stderr:write(prog.desc, "\n") end
  local ok2, outs = pcall(function()
    local g = fl.trace(prog.fn, table.unpack(prog.inputs))
    return g:eval(prog.inputs)
  end)
  if not ok2 then
    c.err = "the reference (fl.trace, g:eval) failed: " .. tostring(outs)
    return c
  end
  c.want, c.dtypes, c.scales, c.nan = {}, {}, {}, false
  for n, t in ipairs(outs) do
    local want = t:totable()
    local scale = 1
    local function walk(x)
      if type(x) == "table" then
        for _, y in ipairs(x) do walk(y) end
      elseif x ~= x then
        c.nan = true
      elseif math.abs(x) < math.huge then
        scale = math.max(scale, math.abs(x))
      end
    end
    walk(want)
    c.want[n], c.dtypes[n], c.scales[n] = want, t:dtype(), scale
  end
  return c
end

-- close.assert_close cannot fail an element whose wanted value is NaN or
-- infinite: its tolerance atol + rtol·|want| is then NaN or inf, and no error
-- exceeds that (want NaN, got 0 passes; want -inf, got 0 or +inf passes).
-- Those elements are checked here exactly: NaN where NaN, the same infinity.
local function assert_nonfinite_match(name, got, want)
  local bad, first, pos = 0, nil, {}
  local function walk(g, w, depth)
    if type(w) == "table" then
      for n = 1, #w do
        pos[depth] = n
        walk(g[n], w[n], depth + 1)
      end
      pos[depth] = nil
      return
    end
    local ok = true
    if w ~= w then ok = g ~= g
    elseif math.abs(w) == math.huge then ok = g == w end
    if not ok then
      bad = bad + 1
      first = first or ("[%s] (got %.9g, want %.9g)"):format(table.concat(pos, ","), g, w)
    end
  end
  walk(got:totable(), want, 1)
  if bad > 0 then
    error(("%s: %d elements differ where the reference is NaN or infinite; the first at %s")
      :format(name, bad, first), 0)
  end
end

-- Runs the program compiled with `prefix` (its plan cut in tiles of `tile`
-- when given) and compares; returns nil or why not.
local function check(c, prefix, tile)
  local ok, err = pcall(function()
    local got
    if tile then
      local g = fl.trace(c.prog.fn, table.unpack(c.prog.inputs))
      for _, p in ipairs(prefix) do g:run(p) end
      got = g:eval(c.prog.inputs, nil, tile)
      got.n = #got
    else
      got = table.pack(fl.compile(c.prog.fn, {passes = prefix})(table.unpack(c.prog.inputs)))
    end
    if got.n ~= #c.want then
      error(("%d outputs, the reference has %d"):format(got.n, #c.want), 0)
    end
    for n = 1, #c.want do
      local name = ("output %d"):format(n)
      close.assert_close(name, got[n], c.want[n], RTOL, ATOL * c.scales[n], c.dtypes[n])
      assert_nonfinite_match(name, got[n], c.want[n])
    end
  end)
  if not ok then return tostring(err) end
end

local function report(head, failures)
  local seeds = {}
  for k, f in ipairs(failures) do seeds[k] = tostring(f.seed) end
  local parts = {("%s: %d of %d programs (seeds %s)\n%s"):format(head, #failures, #SEEDS,
    table.concat(seeds, ", "), replay_hint(failures[1].seed))}
  for k = 1, math.min(SHOWN, #failures) do
    local f = failures[k]
    parts[#parts + 1] = ("\n---- seed %d, passes %s\n%s\n%s"):format(f.seed, f.passes, f.err,
      f.desc or "(no program)")
  end
  return table.concat(parts, "\n")
end

describe("random attention-like programs", function()
  it("the generator is deterministic: a seed gives the same program and inputs", function()
    for _, seed in ipairs({1, 2, 17, 123, 4096}) do
      local a, b = gen.generate(seed), gen.generate(seed)
      assert.equal(a.desc, b.desc, "seed " .. seed)
      assert.equal(#a.inputs, #b.inputs)
      for n = 1, #a.inputs do
        assert.same(a.inputs[n]:totable(), b.inputs[n]:totable(), "seed " .. seed .. " input " .. n)
      end
    end
    assert.not_equal(gen.generate(1).desc, gen.generate(2).desc)
    -- the PRNG is the generator's own: math.random's state does not matter
    math.randomseed(1)
    local x = gen.generate(7).desc
    math.randomseed(2)
    assert.equal(x, gen.generate(7).desc)
    local r = gen.rng(5)
    local first = {r:next(), r:next(), r:next()}
    r = gen.rng(5)
    assert.same(first, {r:next(), r:next(), r:next()})
  end)

  it("the default seeds produce every structural feature several times", function()
    local count, sizes = {}, {}
    for _, f in ipairs(gen.FEATURES) do count[f] = 0 end
    for _, seed in ipairs(default_seeds()) do
      local p = gen.generate(seed)
      for f in pairs(p.features) do
        assert.is_not_nil(count[f], "feature not listed in FEATURES: " .. f)
        count[f] = count[f] + 1
      end
      local q = p.inputs[1]:shape()
      sizes[q[3]] = true
    end
    local want = {
      attention = 100, reduction = 20, mask = 40, data_mask = 10, two_scores = 20,
      differential = 5, lse = 20, sigmoid = 10, manual_softmax = 20, softmax = 20, gate = 10,
      rowmax = 5, probs_out = 5, bias = 20, slope = 10, softcap = 10, cumsum = 10,
      additive_mask = 5, multi_output = 20, rect = 50, odd = 50,
    }
    local lines = {}
    for _, f in ipairs(gen.FEATURES) do lines[#lines + 1] = ("%s %d"):format(f, count[f]) end
    local summary = table.concat(lines, ", ")
    for f, n in pairs(want) do
      assert.is_true(count[f] >= n, ("feature %s: %d programs, want at least %d (%s)"):format(f,
        count[f], n, summary))
    end
    -- query lengths cover 1..17
    for n = 1, 17 do assert.is_true(sizes[n], "no program with Nq = " .. n) end
  end)

  it("the reference executor runs every program (some with fully masked NaN rows)", function()
    local failures, nan = {}, 0
    for _, seed in ipairs(SEEDS) do
      local c = case(seed)
      if c.err then
        failures[#failures + 1] = {seed = seed, passes = "(reference)", err = c.err,
                                   desc = c.prog and c.prog.desc}
      elseif c.nan then
        nan = nan + 1
      end
    end
    if #failures > 0 then error(report("the reference fails", failures), 0) end
    if not REPLAY and #SEEDS >= DEFAULT_N then
      assert.is_true(nan >= 3, ("only %d of %d programs have NaN outputs"):format(nan, #SEEDS))
    end
  end)

  local runs = {}
  for _, prefix in ipairs(prefixes()) do runs[#runs + 1] = {prefix = prefix} end
  -- the whole pipeline's plan in small tiles: blocks skipped, full tiles
  -- unmasked, tiles classified from data, at the generator's small sizes
  for _, tile in ipairs({2, 3}) do runs[#runs + 1] = {prefix = fl.passes, tile = tile} end
  for _, run in ipairs(runs) do
    local prefix = run.prefix
    local passes = label(prefix) .. (run.tile and (" in tiles of %d"):format(run.tile) or "")
    it(("fl.compile with passes %s equals the reference on every program"):format(passes),
      function()
        local failures = {}
        for _, seed in ipairs(SEEDS) do
          local c = case(seed)
          if not c.err then -- a program whose reference fails is reported above
            local err = check(c, prefix, run.tile)
            if err then
              failures[#failures + 1] = {seed = seed, passes = passes, err = err,
                                         desc = c.prog.desc}
            end
          end
        end
        if #failures > 0 then
          error(report(("passes %s change results"):format(passes), failures), 0)
        end
      end)
  end
end)
