-- Outputs the caller gives: fl.compile's `out` (and a call's {out = ...})
-- on the CPU executor, t:copy_, and plan:launch's options checked before
-- any device is touched. The CUDA side is in spec/gpu/out_spec.lua.
local fl = require "flashlight"
local variants = require "variants"

local V = variants.load("lse") -- two outputs: o in the inputs' dtype, lse in f32

local function lse_inputs() return V.inputs(1, 2, 5, 4, {dtype = "f32", seed = 7}, V.small) end

local function nan_outputs()
  return {fl.full({1, 2, 5, 4}, 0 / 0), fl.full({1, 2, 5}, 0 / 0)}
end

-- pcall(f) -> the error, asserting that f failed.
local function err_of(f)
  local ok, err = pcall(f)
  assert.is_false(ok)
  return err
end

describe("out = {...}", function()
  it("writes the CPU executor's results into the given tensors and returns them", function()
    local ins = lse_inputs()
    local want = fl.compile(V.make(V.small))(table.unpack(ins))
    local out = nan_outputs()
    local prog = fl.compile(V.make(V.small), {out = out})
    for _ = 1, 2 do
      local o, lse = prog(table.unpack(ins))
      assert.is_true(rawequal(out[1], o))
      assert.is_true(rawequal(out[2], lse))
      assert.same(want:totable(), o:totable())
    end
  end)

  it("takes the tensors per call too, over the compile option", function()
    local ins = lse_inputs()
    local prog = fl.compile(V.make(V.small), {out = nan_outputs()})
    local out = nan_outputs()
    table.insert(ins, {out = out})
    local o, lse = prog(table.unpack(ins))
    assert.is_true(rawequal(out[1], o) and rawequal(out[2], lse))
    assert.equal(o:get(1, 1, 1, 1), o:get(1, 1, 1, 1)) -- not NaN
  end)

  it("fills every output when one value is returned twice, or an input is returned", function()
    local prog = fl.compile(function(q) local a = q:exp() return a, a, q end)
    local q = fl.tensor({{0, 1}, {2, 3}}, {dtype = "f32"})
    local out = {fl.zeros({2, 2}), fl.zeros({2, 2}), fl.zeros({2, 2})}
    prog(q, {out = out})
    assert.same(prog(q):totable(), out[1]:totable())
    assert.same(out[1]:totable(), out[2]:totable())
    assert.same(q:totable(), out[3]:totable())
  end)

  it("says what is wrong with the tensors, at the caller's line", function()
    local ins = lse_inputs()
    local function call(out)
      local prog = fl.compile(V.make(V.small), {out = out})
      local o = prog(table.unpack(ins))
      return o
    end
    local o, lse = table.unpack(nan_outputs())
    local cases = {
      {{o}, "out: the program has 2 outputs, got 1 tensors"},
      {{o, fl.zeros({1, 2, 4})}, "out: output 2 has shape [1,2,4], expected [1,2,5]"},
      {{o, fl.zeros({1, 2, 5}, {dtype = "f16"})}, "out: output 2 is f16, expected f32"},
      {{ins[1], lse}, "out: output 1 is input 1; give it a tensor of its own"},
      {{o, o}, "out: output 2 has shape [1,2,5,4], expected [1,2,5]"},
    }
    for _, c in ipairs(cases) do
      assert.matches("out_spec%.lua:%d+: " .. c[2]:gsub("[%[%]%(%)%.%-]", "%%%0"), err_of(function()
        return call(c[1])
      end))
    end
    local same = fl.compile(function(q) return q:exp(), q:exp() end)
    local q, t = fl.zeros({3}), fl.zeros({3})
    assert.matches("outputs 1 and 2 are the same tensor", err_of(function()
      local r = same(q, {out = {t, t}})
      return r
    end), 1, true)
  end)

  it("checks the option itself when compiling", function()
    local fn = V.make(V.small)
    assert.matches("out_spec%.lua:%d+: compile: out must be a list of tensors, one per output, got number",
      err_of(function()
        local p = fl.compile(fn, {out = 1})
        return p
      end))
    assert.matches("compile: out%[2%] must be a tensor, got string", err_of(function()
      local p = fl.compile(fn, {out = {fl.zeros({1}), "x"}})
      return p
    end))
    assert.matches("unknown call option 'outs' %(known: out%)", err_of(function()
      local r = fl.compile(fn)(fl.zeros({1}), {outs = {}})
      return r
    end))
  end)
end)

describe("t:copy_", function()
  it("copies in place, converting the dtype, and returns the tensor", function()
    local t = fl.zeros({2, 2})
    assert.is_true(rawequal(t, t:copy_(fl.tensor({{1, 2}, {3, 4}}, {dtype = "f16"}))))
    assert.same({{1, 2}, {3, 4}}, t:totable())
    assert.is_true(rawequal(t, t:copy_(t)))
  end)

  it("needs the tensor's shape", function()
    local t = fl.zeros({2, 2})
    assert.matches("the source has shape [4], the tensor [2,2]", err_of(function()
      t:copy_(fl.zeros({4}))
    end), 1, true)
  end)
end)

describe("plan:launch's options", function()
  local ins = lse_inputs()
  local g = fl.trace(V.make(V.small), table.unpack(ins))
  local plan = g:plan()
  it("plan:last_ms is nil before a launch", function() assert.is_nil(plan:last_ms()) end)
  local cases = {
    {{kernels = "fast"}, "option 'kernels' must be \"auto\" or \"scalar\", got 'fast'"},
    {{kernels = 1}, "option 'kernels' must be \"auto\" or \"scalar\", got number"},
    {{out = 1}, "option 'out' must be a table of tensors, got number"},
    {{out = {fl.zeros({1})}}, "option 'out' must list 2 tensors, one per output, got 1"},
    {{out = {fl.zeros({1}), true}}, "option 'out': entry 2 is not an open tensor, got boolean"},
    {{path = "fast"}, "option 'path' must be \"auto\", \"hopper\" or \"mma\", got 'fast'"},
    {{path = true}, "option 'path' must be \"auto\", \"hopper\" or \"mma\", got boolean"},
    {{outs = {}}, "unknown option 'outs' (known: out kernels path persistent)"},
    {"scalar", "table expected, got string"},
  }
  for _, c in ipairs(cases) do
    it("refuses " .. c[2] .. " before touching a device", function()
      local err = err_of(function() plan:launch(ins, nil, c[1]) end)
      assert.matches("bad argument #3 to 'launch'", err, 1, true)
      assert.matches(c[2], err, 1, true)
    end)
  end
end)
