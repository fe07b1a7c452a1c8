-- The tracing front end: each operation against hand-computed values,
-- broadcasting and views, the graph API, and errors that name the line.
local fl = require "flashlight"

local function run(fn, ...)
  return fl.compile(fn)(...)
end

local function t(v, dt) return fl.tensor(v, {dtype = dt or "f32"}) end

local function near(want, got, tol)
  tol = tol or 1e-6
  if type(want) == "table" then
    assert.equal(#want, #got)
    for i = 1, #want do near(want[i], got[i], tol) end
  elseif want ~= want then
    assert.is_true(got ~= got, "expected NaN")
  elseif math.abs(want) == math.huge then
    assert.equal(want, got)
  else
    assert.is_true(math.abs(want - got) <= tol * math.max(1, math.abs(want)),
      ("expected %.9g, got %.9g"):format(want, got))
  end
end

describe("pointwise operations", function()
  local a = t({{1, -2, 3}, {0.5, 4, -1}})
  local b = t({{2, 2, 2}, {-1, 0.5, 3}})

  it("conversions: to(dtype) truncates toward zero, floor rounds down, dtype() reads", function()
    local x = t({-1.5, -0.5, 0, 2.7})
    local o = run(function(y) return y:to("i64") end, x)
    assert.equal("i64", o:dtype())
    assert.same({-1, 0, 0, 2}, o:totable())
    near({-2, -1, 0, 2}, run(function(y) return y:floor() end, x):totable())
    assert.same({true, true, false, true}, run(function(y) return y:to("bool") end, x):totable())
    near({-1.5, -0.5, 0, 2.7}, run(function(y) return (y * 2):to("i32"):to("f32") / 2 end,
      x):totable(), 0.3)
    local kinds = run(function(y)
      assert.equal("f32", y:dtype())
      assert.equal("i64", y:to("i64"):dtype())
      return y
    end, x)
    assert.equal("f32", kinds:dtype())
    local ok, err = pcall(run, function(y)
      local bad = y:to("f64")
      return bad
    end, x)
    assert.is_false(ok)
    assert.equal("spec/trace_spec.lua:46: to: unknown dtype f64 (known: f32, f16, bf16, i32, " ..
      "i64, bool)", err)
  end)

  it("arithmetic with tensors and numbers", function()
    near({{3, 0, 5}, {-0.5, 4.5, 2}}, run(function(x, y) return x + y end, a, b):totable())
    near({{-1, -4, 1}, {1.5, 3.5, -4}}, run(function(x, y) return x - y end, a, b):totable())
    near({{2, -4, 6}, {-0.5, 2, -3}}, run(function(x, y) return x * y end, a, b):totable())
    near({{0.5, -1, 1.5}, {-0.5, 8, -1 / 3}}, run(function(x, y) return x / y end, a, b):totable())
    near({{1, 4, 9}, {0.25, 16, 1}}, run(function(x) return x ^ 2 end, a):totable())
    near({{-1, 2, -3}, {-0.5, -4, 1}}, run(function(x) return -x end, a):totable())
    near({{3, 0, 5}, {2.5, 6, 1}}, run(function(x) return 2 + x end, a):totable())
    near({{1, -0.5, 1 / 3}, {2, 0.25, -1}}, run(function(x) return 1 / x end, a):totable())
    near({{0, 6, -4}, {1, -6, 4}}, run(function(x) return 2 - x * 2 - x + x end, a):totable())
  end)

  it("unary functions", function()
    local x = t({0.5, 1, 4})
    local cases = {
      exp = math.exp, log = math.log, tanh = function(v) return (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1) end,
      sigmoid = function(v) return 1 / (1 + math.exp(-v)) end, sqrt = math.sqrt,
      rsqrt = function(v) return 1 / math.sqrt(v) end,
    }
    for name, f in pairs(cases) do
      local got = run(function(y) return y[name](y) end, x):totable()
      near({f(0.5), f(1), f(4)}, got)
      near({f(0.5), f(1), f(4)}, run(function(y) return fl[name](y) end, x):totable())
    end
    near({2, 0, 3}, run(function(y) return y:abs() end, t({-2, 0, 3})):totable())
    near({0, 0, 3}, run(function(y) return y:relu() end, t({-2, 0, 3})):totable())
  end)

  it("comparisons, logic, where, maximum and minimum", function()
    local x, y = t({1, 2, 3}), t({3, 2, 1})
    assert.same({true, false, false}, run(function(p, q) return p:lt(q) end, x, y):totable())
    assert.same({true, true, false}, run(function(p, q) return p:le(q) end, x, y):totable())
    assert.same({false, false, true}, run(function(p, q) return p:gt(q) end, x, y):totable())
    assert.same({false, true, true}, run(function(p, q) return p:ge(q) end, x, y):totable())
    assert.same({false, true, false}, run(function(p, q) return p:eq(q) end, x, y):totable())
    assert.same({true, false, true}, run(function(p, q) return p:ne(q) end, x, y):totable())
    assert.same({false, true, false}, run(function(p, q)
      return p:ge(2):logical_and(q:ge(2)) end, x, y):totable())
    assert.same({true, false, true}, run(function(p, q)
      return p:eq(2):logical_or(q:eq(2)):logical_not() end, x, y):totable())
    near({3, 2, 3}, run(function(p, q) return fl.maximum(p, q) end, x, y):totable())
    near({1, 2, 1}, run(function(p, q) return fl.minimum(p, q) end, x, y):totable())
    near({1, 2, -1}, run(function(p, q) return fl.where(p:lt(3), p, -1) end, x, y):totable())
    near({-math.huge, 2, 1}, run(function(p, q) return fl.where(p:eq(1), -math.huge, q) end, x, y):totable())
  end)

  it("promotes dtypes like PyTorch", function()
    local bf, h, i = t({1, 2}, "bf16"), t({1, 2}, "f16"), t({1, 2}, "i32")
    assert.equal("bf16", run(function(x) return x * 2.5 end, bf):dtype())
    assert.equal("f32", run(function(x, y) return x + y end, bf, h):dtype())
    assert.equal("i32", run(function(x) return x + 1 end, i):dtype())
    assert.equal("f32", run(function(x) return x + 0.5 end, i):dtype())
    assert.equal("f32", run(function(x) return x / 2 end, i):dtype())
    assert.equal("bf16", run(function(x, y) return x + y end, bf, i):dtype())
    assert.equal("bool", run(function(x) return x:gt(1) end, bf):dtype())
  end)
end)

describe("reductions", function()
  local x = t({{1, 5, 3}, {4, 2, 6}})
  it("sum, max, min, mean over a dim, with keepdim, and over everything", function()
    near({9, 12}, run(function(y) return y:sum(2) end, x):totable())
    near({5, 7, 9}, run(function(y) return y:sum(1) end, x):totable())
    near({{5}, {6}}, run(function(y) return y:max(-1, true) end, x):totable())
    near({1, 2, 3}, run(function(y) return y:min(1) end, x):totable())
    near({3, 4}, run(function(y) return y:mean(2) end, x):totable())
    near(21, run(function(y) return y:sum() end, x):get())
    near(3.5, run(function(y) return y:mean() end, x):get())
    near({2.5, 3.5, 4.5}, run(function(y) return fl.mean(y, 1) end, x):totable())
  end)

  it("softmax and cumsum", function()
    local got = run(function(y) return y:softmax(-1) end, x):totable()
    local e = {math.exp(1), math.exp(5), math.exp(3)}
    local z = e[1] + e[2] + e[3]
    near({e[1] / z, e[2] / z, e[3] / z}, got[1])
    near({{1, 6, 9}, {4, 6, 12}}, run(function(y) return y:cumsum(2) end, x):totable())
    near({{1, 5, 3}, {5, 7, 9}}, run(function(y) return y:cumsum(1) end, x):totable())
  end)

  it("softmax of a fully masked row is NaN, like PyTorch", function()
    local got = run(function(y) return fl.where(y:gt(100), y, -math.huge):softmax(-1) end, x)
    near({0 / 0, 0 / 0, 0 / 0}, got:totable()[1])
  end)
end)

describe("matmul", function()
  it("contracts the last two dims with broadcast batch dims", function()
    local a = t({{1, 2}, {3, 4}, {5, 6}})           -- [3,2]
    local b = t({{1, 0, 2}, {0, 1, 3}})             -- [2,3]
    near({{1, 2, 8}, {3, 4, 18}, {5, 6, 28}}, run(function(x, y) return x:matmul(y) end, a, b):totable())
    local batched = fl.randn({2, 1, 3, 4}, {seed = 1})
    local other = fl.randn({5, 4, 2}, {seed = 2})
    local o = run(function(x, y) return x:matmul(y) end, batched, other)
    assert.same({2, 5, 3, 2}, o:shape())
    local A, B = batched:totable(), other:totable()
    local want = 0
    for k = 1, 4 do want = want + A[2][1][3][k] * B[4][k][2] end
    near(want, o:get(2, 4, 3, 2), 1e-5)
  end)
end)

describe("views", function()
  local x = fl.tensor({{{1, 2, 3}, {4, 5, 6}}}, {dtype = "f32"}) -- [1,2,3]

  it("transpose, unsqueeze, expand, view and reshape relabel without nodes", function()
    local g = fl.trace(function(y) return y:transpose(2, 3):unsqueeze(1):expand(2, 1, 3, 2) * 1 end, x)
    local _, nodes = g.core:counts()
    assert.equal(1, nodes)
    local o = g:eval({x})[1]
    assert.same({2, 1, 3, 2}, o:shape())
    near({{1, 4}, {2, 5}, {3, 6}}, o:totable()[2][1])
    near({{1, 2}, {3, 4}, {5, 6}}, run(function(y) return y:view(3, 2) end, x):totable())
    near({1, 2, 3, 4, 5, 6}, run(function(y) return y:reshape(-1) end, x):totable())
    near({{1, 2, 3, 4, 5, 6}}, run(function(y) return y:view({1, -1}) end, x):totable())
    near({{{1}, {2}, {3}}, {{4}, {5}, {6}}}, run(function(y) return y:view(2, 3, 1) end, x):totable())
    near({{1, 4}, {2, 5}, {3, 6}}, run(function(y) return y:transpose(-1, -2):view(3, 2) end, x):totable())
  end)

  it("view keeps size-1 dims that stay in place (a batch of one stays the batch)", function()
    local g = fl.trace(function(y) return y:sum(-1, true):view(1, 2) * 2 end, x)
    assert.matches("mul%d+%[b,h%] = sum%d+%[b,h,0%] %* 2", g:ir("lowered"))
    g = fl.trace(function(y) return y:view(2, 1, 3) * 2 end, x)
    assert.matches("mul%d+%[h,_,i%] = y%[0,h,i%] %* 2", g:ir("lowered"))
    near({{{2, 4, 6}}, {{8, 10, 12}}}, g:eval({x})[1]:totable())
  end)

  it("view splits and merges dims, also of transposed tensors", function()
    local m = fl.arange(24):to("f32")
    local r = run(function(y) return y:view(2, 3, 4):transpose(1, 2):reshape(3, 8) end, m)
    local want = {}
    for a = 0, 2 do
      want[a + 1] = {}
      for b = 0, 1 do for c = 0, 3 do want[a + 1][b * 4 + c + 1] = b * 12 + a * 4 + c end end
    end
    near(want, r:totable())
  end)

  it("broadcasts size-1 dims and prepends missing ones", function()
    local col, row = t({{1}, {2}}), t({10, 20, 30})
    near({{11, 21, 31}, {12, 22, 32}}, run(function(a, b) return a + b end, col, row):totable())
    local i = run(function(a) return fl.arange(3):view(-1, 1) - fl.arange(4):view(1, -1) + a * 0 end, t({0}))
    assert.same({3, 4}, i:shape())
    near(-1, i:get(1, 2))
    near(2, i:get(3, 1))
  end)

  it("index and gather read data-dependent positions", function()
    local tab = t({{1, 2}, {3, 4}, {5, 6}})
    local idx = fl.tensor({2, 0, 2}, {dtype = "i32"})
    near({{5, 6}, {1, 2}, {5, 6}}, run(function(a, i) return a:index(i) end, tab, idx):totable())
    local g = fl.tensor({{1, 0}, {0, 0}, {1, 1}}, {dtype = "i64"})
    near({{2, 1}, {3, 3}, {6, 6}}, run(function(a, i) return a:gather(2, i) end, tab, g):totable())
    local ok, err = pcall(function()
      return run(function(a, i) return a:index(i) end, tab, fl.tensor({3}, {dtype = "i32"}))
    end)
    assert.is_false(ok)
    assert.matches("trace_spec%.lua:%d+: .*index 3 out of range", err)
  end)
end)

describe("programs", function()
  it("return several tensors", function()
    local f = fl.compile(function(x) return x:sum(1), x:max(1) end)
    local s, m = f(t({{1, 2}, {3, 0}}))
    near({4, 2}, s:totable())
    near({3, 2}, m:totable())
  end)

  it("returning an input or a view copies it into a node", function()
    local f = fl.compile(function(x) return x:transpose(1, 2), x end)
    local a, b = f(t({{1, 2}}))
    near({{1}, {2}}, a:totable())
    near({{1, 2}}, b:totable())
  end)

  it("cache per signature and retrace for new shapes or dtypes", function()
    local calls = 0
    local f = fl.compile(function(x) calls = calls + 1; return x * 2 end)
    f(t({1, 2}))
    f(t({3, 4}))
    assert.equal(1, calls)
    near({2, 4, 6}, f(t({1, 2, 3})):totable())
    f(t({1, 2}, "bf16"))
    assert.equal(3, calls)
  end)

  it("Lua numbers are compile-time constants", function()
    local scale = 0.125
    local g = fl.trace(function(x) return x * scale end, {shape = {2}})
    assert.matches("%* 0%.125", g:ir("lowered"))
  end)

  it("ir dumps name the stages, the line and the shapes", function()
    local f = fl.compile(function(x) return x:softmax(-1) end)
    f(t({{1, 2}}))
    assert.matches("softmax%d+ = softmax%(x, %-1%) +# f32%[1,2%]  .*trace_spec%.lua:%d+", f:ir("traced"))
    local low = f:ir("lowered")
    assert.matches("= max%(", low)
    assert.matches("= sum%(", low)
    assert.matches("exp%(", low)
    local g = fl.trace(function(x) return x:softmax(-1) end, t({{1, 2}}))
    assert.equal(g:ir("lowered"), tostring(g))
    assert.equal(low:gsub("trace_spec%.lua:%d+", ""), (tostring(g):gsub("trace_spec%.lua:%d+", "")))
  end)
end)

describe("errors name the script line and the shapes", function()
  local q = {shape = {2, 3}}
  local cases = {
    {"matmul mismatch", function(x) return x:matmul(x) end, "matmul: %[2,3%] @ %[2,3%]: inner dimensions differ %(3 vs 2%)"},
    {"broadcast mismatch", function(x) return x + x:transpose(1, 2) end, "add: shapes %[2,3%] and %[3,2%] do not broadcast"},
    {"bad dim", function(x) return x:sum(3) end, "sum: dimension 3 is out of range for a 2%-d tensor %[2,3%]"},
    {"bad negative dim", function(x) return x:transpose(-3, 1) end, "transpose: dimension %-3 is out of range"},
    {"bad view", function(x) return x:view(4, -1) end, "view: cannot view %[2,3%] as %[4,%-1%]"},
    {"two -1", function(x) return x:view(-1, -1) end, "only one size may be %-1"},
    {"bad expand", function(x) return x:expand(4, 3) end, "expand: cannot expand %[2,3%] to %[4,3%]"},
    {"non-tensor operand", function(x) return x + "a" end, "add: expected a tensor or a number, got string"},
    {"runtime tensor inside", function(x) return x + fl.zeros({2, 3}) end, "runtime tensor cannot be used inside a traced function"},
    {"float index", function(x) return x:index(x) end, "index: the index must be an integer tensor"},
    {"softmax without dim", function(x) return x:softmax() end, "softmax: a dimension is required"},
    {"returns nothing", function(_) end, "returned nothing"},
    {"returns a number", function(_) return 1 end, "result 1 is a number"},
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local ok, err = pcall(fl.trace, c[2], q)
      assert.is_false(ok)
      assert.matches("trace_spec%.lua:%d+: ", err)
      assert.matches(c[3], err)
    end)
  end

  it("a tail call names its own line, and the trace leaves the debug hook as it was", function()
    local function hook() end
    debug.sethook(hook, "c")
    local here = debug.getinfo(1, "l").currentline
    local ok, err = pcall(fl.trace, function(x)
      local y = x * 2
      return y:matmul(y)
    end, q)
    local h, mask = debug.gethook()
    debug.sethook()
    assert.is_false(ok)
    assert.matches("trace_spec%.lua:" .. (here + 3) .. ": matmul", err)
    assert.equal(hook, h)
    assert.equal("c", mask)
    local g = fl.trace(function(x)
      local y = x * 2
      return y:transpose(1, 2):matmul(y)
    end, q)
    assert.matches("matmul.-trace_spec%.lua:" .. (here + 13), g:ir("traced"))
    assert.is_nil(debug.gethook())
  end)

  it("wrong inputs at call time", function()
    local f = fl.compile(function(x) return x * 2 end)
    local g = fl.trace(function(x) return x * 2 end, q)
    local ok, err = pcall(function() return g:eval({fl.zeros({3, 3})}) end)
    assert.is_false(ok)
    assert.matches("trace_spec%.lua:%d+: eval: input 1 %('x'%) has shape %[3,3%], the program was traced for %[2,3%]", err)
    ok, err = pcall(function() return g:eval({}) end)
    assert.matches("takes 1 inputs, got 0", err)
    ok, err = pcall(function() return f("x") end)
    assert.is_false(ok)
    assert.matches("trace_spec%.lua:%d+: input 1 must be a tensor, got string", err)
    ok, err = pcall(function() return fl.compile(function(x) return x end, {pases = 1}) end)
    assert.matches("unknown option 'pases'", err)
    ok, err = pcall(function() return fl.compile(function(a, b) return a + b end)(fl.zeros(2)) end)
    assert.is_false(ok)
    assert.matches("trace_spec%.lua:%d+: the traced function takes 2 inputs %(a, b%), got 1", err)
    ok, err = pcall(function() return f:ir("lowered") end)
    assert.matches("has not been traced yet", err)
    ok, err = pcall(function() return fl.compile(function(x) return x end, {passes = {"nope"}}) end)
    assert.matches("unknown pass 'nope'", err)
  end)
end)
