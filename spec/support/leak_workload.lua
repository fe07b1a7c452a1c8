-- Exercises the library, errors included, so that valgrind can show that
-- nothing leaks: run as `valgrind --leak-check=full build/flua THIS`.
local fl = require "flashlight"
local tmp = ("/tmp/flashlight-leak-%d.npy"):format(os.time())

for round = 1, 3 do
  local t = fl.tensor({{1, 2}, {3, 4}}, {dtype = "bf16"})
  local r = fl.randn({16, 8}, {seed = round, dtype = "f16"})
  local u <close> = r:to("f32")
  assert(#u:totable() == 16)
  assert(fl.rand({5}):to("i64"):numel() == 5)
  fl.full({3}, 2.5):save(tmp)
  assert(fl.load(tmp, {dtype = "f16"}):get(2) == 2.5)
  t:save(tmp, {raw = true})
  assert(fl.load(tmp, {dtype = "bf16"}):get(2, 2) == 4)
  r:free()
  -- every kind of error, each raised through the binding
  local bad = {
    function() return fl.tensor({{1}, {2, 3}}) end,
    function() return fl.tensor({1, "x"}) end,
    function() return fl.zeros({-1}) end,
    function() return fl.zeros({1}, {dtype = "nope"}) end,
    function() return fl.zeros({1}, {bogus = 1}) end,
    function() return fl.load("/nonexistent.npy") end,
    function() return fl.zeros({2}):get(3) end,
    function() return fl.randn({2}, {device = "cuda"}) end,
    function() return r:numel() end,
  }
  for _, f in ipairs(bad) do assert(not pcall(f)) end
  local f = assert(io.open(tmp, "wb"))
  f:write("\x93NUMPY\1\0\118\0{'descr': '<f4', 'fortran_order': False, 'shape': (9,), }")
  f:close()
  assert(not pcall(fl.load, tmp))
end
os.remove(tmp)

-- tracing, the reference executor, and their errors
local attn = fl.compile(function(q, k, v, doc)
  local s = q:matmul(k:transpose(-2, -1)) / 2
  local i, j = fl.arange(s:size(-2)):view(-1, 1), fl.arange(s:size(-1)):view(1, -1)
  s = fl.where(i:ge(j):logical_and(doc:index(i):eq(doc:index(j))), s, -math.huge)
  local o = fl.softmax(s, -1):matmul(v)
  return o, s:max(-1)
end)
local q = fl.randn({1, 2, 6, 4}, {seed = 1})
local doc = fl.tensor({0, 0, 1, 1, 1, 2}, {dtype = "i32"})
for _ = 1, 2 do assert(attn(q, q, q, doc):numel() == 48) end
assert(#attn:ir("lowered") > 0 and #attn:ir("traced") > 0)
assert(#attn:kernels() > 0 and #fl.trace(function(x) return x:sum(1) end, q):values() == 2)
local take = fl.compile(function(x, idx) return x:index(idx) * 2 end)
assert(take(q, fl.tensor({0}, {dtype = "i32"})):numel() == 48)
assert(not pcall(take, q, fl.tensor({9}, {dtype = "i32"}))) -- index out of range in eval
assert(not pcall(fl.trace, function(x) return x:matmul(x) end, {shape = {2, 3}}))
assert(not pcall(fl.trace, function(x) return x:view(5) end, {shape = {2, 3}}))
-- the passes, a refused online rule and tiled evaluation of the groups
local weird = fl.trace(function(a, b, c)
  local s = a:matmul(b:transpose(-2, -1))
  local w = (s - s:max(-1, true)):tanh()
  local p = (s - s:max(-1, true)):exp()
  return w:matmul(c), (p / p:sum(-1, true)):matmul(c)
end, q, q, q)
for _, p in ipairs(fl.passes) do weird:run(p) end
assert(#weird:eval({q, q, q}, nil, 2) == 2 and #weird:explain() > 0)
assert(not pcall(weird.run, weird, "nope"))
-- a pass written in Lua, and the errors of the graph's writing methods
local g = fl.trace(function(a) return (a:matmul(a:transpose(-2, -1)) / 2):softmax(-1) end, q)
g:run("inline")
g:run({name = "twice", run = function(gr)
  local out = gr:outputs()[1]
  gr:set_body(out, gr:expr_new({"mul", gr:value(out).body, {"const", 2}}))
  assert(not pcall(gr.set_body, gr, out, gr:expr_new({"var", 40})))
  assert(not pcall(gr.expr_new, gr, {"nope"}))
  assert(not pcall(gr.expr_new, gr, {"exp", {"const", 1}, {"const", 2}}))
end})
assert(not pcall(g.run, g, {name = "raises", run = function() error("boom") end}))
assert(#g:eval({q}) == 1 and #g:ir("twice") > 0)
-- plans: masks over data classified at run time in small tiles, a plan
-- closed early, a stale plan refused, and the layout of kernels()
local dg = attn:graph_of("plan", q, q, q, doc)
assert(#dg:eval({q, q, q, doc}, nil, 2) == 2 and dg:kernels()[1].counts.total >= 0)
do
  local p <close> = dg.core:plan(3)
  assert(#p:run({q, q, q, doc}) == 2 and #tostring(p) > 0 and #p:kernels() >= 1)
end
local stale = dg.core:plan()
local g2 = fl.trace(function(a) return a:exp():sum(1) end, q)
local p2 = g2.core:plan()
g2:run("inline")
assert(not pcall(p2.run, p2, {q}))
assert(stale:run({q, q, q, doc}))
collectgarbage()
print("leak workload done")
