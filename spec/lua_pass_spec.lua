-- Passes written in Lua: reading a traced graph's values and expressions,
-- writing bodies, running a Lua pass in the pipeline (its stage in ir() and
-- explain()), the exp2 pass of examples/lua_pass.lua against the default
-- pipeline, and the errors a pass can meet.
local fl = require "flashlight"
local variants = require "variants"
local close = require "close"

package.path = "examples/?.lua;" .. package.path
local exp2_pass = require "lua_pass"

local LOG2E = 1 / math.log(2)

-- The default pipeline with `pass` before online.
local function with_pass_before_online(pass)
  local out = {}
  for _, name in ipairs(fl.passes) do
    if name == "online" then out[#out + 1] = pass end
    out[#out + 1] = name
  end
  return out
end

local function causal_graph(...)
  local V = variants.load("causal")
  local inputs = V.inputs(1, 2, 8, 4, {dtype = "f32", seed = 1})
  local g = fl.trace(V.fn, table.unpack(inputs))
  for _, p in ipairs({...}) do g:run(p) end
  return g, inputs
end

local function twice(t)
  if type(t) ~= "table" then return 2 * t end
  local out = {}
  for n = 1, #t do out[n] = twice(t[n]) end
  return out
end

local function node_named(g, name)
  for _, v in ipairs(g:values()) do
    if v.name == name then return v end
  end
  error("no value " .. name)
end

-- Every expression reachable from x, by op.
local function ops_under(g, x, seen)
  seen = seen or {}
  local e = g:expr(x)
  seen[e.op] = (seen[e.op] or 0) + 1
  for _, a in ipairs(e.args) do ops_under(g, a, seen) end
  return seen
end

describe("passes written in Lua", function()
  it("a traced graph's values read back: inputs, dims, nodes, bodies", function()
    local g = causal_graph("inline", "demote")
    local vals = g:values()
    assert.equal(6, #vals)
    for id, want in ipairs({{"q", {"b", "h", "i", "d"}}, {"k", {"b", "h", "j", "d"}},
                            {"v", {"b", "h", "j", "e"}}}) do
      assert.equal(id, vals[id].id)
      assert.equal(want[1], vals[id].name)
      assert.equal("input", vals[id].kind)
      assert.same(want[2], vals[id].dims)
      assert.same({1, 2, 8, 4}, vals[id].shape)
      assert.is_nil(vals[id].body)
    end
    local m, z, o = vals[4], vals[5], vals[6]
    assert.same({"node", "max", {"j"}, {"d"}}, {m.kind, m.comb, m.red, m.locals})
    assert.same({"sum", "sum"}, {z.comb, o.comb})
    assert.same({"b", "h", "i", "e"}, o.dims)
    -- max(j) where(i >= j, (sum(d) q[b,h,i,d] * k[b,h,j,d]) / √4, -inf)
    local w = g:expr(m.body)
    assert.equal("where", w.op)
    assert.equal(3, #w.args)
    local cond, s, ninf = g:expr(w.args[1]), g:expr(w.args[2]), g:expr(w.args[3])
    assert.equal("ge", cond.op)
    assert.same({3, 5}, {g:expr(cond.args[1]).var, g:expr(cond.args[2]).var}) -- i, then j
    assert.same({"const", -math.huge}, {ninf.op, ninf.value})
    assert.equal("div", s.op)
    assert.equal(2, g:expr(s.args[2]).value)
    local red = g:expr(s.args[1])
    assert.same({"reduce", "sum", 6, 1}, {red.op, red.comb, red.var, red.nbind}) -- binds d
    local prod = g:expr(red.args[1])
    assert.equal("mul", prod.op)
    local lq, lk = g:expr(prod.args[1]), g:expr(prod.args[2])
    assert.same({"load", 1, 4}, {lq.op, lq.src, #lq.args})
    assert.same({"load", 2, 4}, {lk.op, lk.src, #lk.args})
    local vars = {}
    for n, a in ipairs(lq.args) do vars[n] = g:expr(a).var end
    assert.same({1, 2, 3, 6}, vars) -- q[b,h,i,d]
    -- exp(where(i >= j, (sum(d) q[b,h,i,d] * k[b,h,j,d]) / 2, -inf) - softmax5[b,h,i,0])
    assert.same({exp = 1, load = 3, reduce = 1, where = 1, div = 1, sub = 1, mul = 1, ge = 1,
                 var = 13, const = 3}, ops_under(g, z.body))
    assert.is_true(z.body <= g:nexprs() and o.body <= g:nexprs())
  end)

  it("group members read back their rescale after online", function()
    local g = causal_graph("inline", "demote", "online")
    local z = node_named(g, "softmax8")
    assert.same({"exp", 1.0}, {z.resc, z.resc_pow})
    local mu = g:expr(z.resc_arg)
    assert.same({"load", 4}, {mu.op, mu.src})
    assert.is_true(z.group > 0)
    assert.is_nil(node_named(g, "softmax5").resc)
  end)

  it("expressions are built from arrays, existing ids and the records g:expr gives", function()
    local g = causal_graph("inline", "demote")
    local m = node_named(g, "softmax5")
    local n = g:nexprs()
    local x = g:expr_new({"add", m.body, {"ref", m.body}})
    assert.equal(n + 1, x)
    assert.same({"add", {m.body, m.body}}, {g:expr(x).op, g:expr(x).args})
    local copy = g:expr_new(g:expr(m.body))
    assert.is_true(copy ~= m.body)
    assert.same(ops_under(g, m.body), ops_under(g, copy))
    local c = g:expr_new({"exp2", {"const", 3}})
    assert.same({"exp2", "const", 3}, {g:expr(c).op, g:expr(g:expr(c).args[1]).op,
                                      g:expr(g:expr(c).args[1]).value})
    assert.equal(m.body, g:expr_new(m.body))
    local r = g:expr_new({"reduce", "max", 6, 1, {"var", 6}})
    assert.same({"reduce", "max", 6, 1}, {g:expr(r).op, g:expr(r).comb, g:expr(r).var,
                                         g:expr(r).nbind})
  end)

  it("a Lua pass runs in the pipeline, changes the dump and shows in ir() and explain()", function()
    local double = {name = "double", run = function(g, log)
      for _, out in ipairs(g:outputs()) do
        local v = g:value(out)
        g:set_body(out, g:expr_new({"mul", v.body, {"const", 2}}))
        log("doubled %s", v.name)
      end
    end}
    local V = variants.load("causal")
    local inputs = V.inputs(1, 2, 8, 4, {dtype = "f32", seed = 2})
    local plain = fl.compile(V.fn)
    local doubled = fl.compile(V.fn, {passes = {"inline", "demote", double, "online"}})
    local want = plain(table.unpack(inputs)):totable()
    local got = doubled(table.unpack(inputs))
    close.assert_close("o", got, twice(want), 1e-6, 1e-6)
    assert.is_nil(doubled:ir("demote"):find("* 2", 1, true))
    assert.truthy(doubled:ir("double"):find("* 2", 1, true))
    assert.truthy(doubled:ir("online"):find("* 2", 1, true))
    assert.matches("\ndouble: doubled matmul10\nonline: ", doubled:explain())
    -- a bare function is the stage "lua"
    local g = causal_graph("inline")
    local log = g:run(function(_, l) l("looked, changed nothing") end)
    assert.equal("lua: looked, changed nothing\n", log)
    assert.equal(tostring(g), g:ir("lua"))
    assert.matches("lua: looked", g:explain())
  end)

  for _, name in ipairs({"causal", "differential", "lse"}) do
    it("the exp2 pass gives the default pipeline's numbers for " .. name, function()
      local V = variants.load(name)
      local inputs = V.inputs(2, 2, 12, 8, {dtype = "f32", seed = 5}, V.small)
      local fn = V.make(V.small)
      local plain, fast = fl.compile(fn), fl.compile(fn, {passes = with_pass_before_online(exp2_pass)})
      local want, got = table.pack(plain(table.unpack(inputs))), table.pack(fast(table.unpack(inputs)))
      assert.equal(want.n, got.n)
      for n = 1, want.n do close.assert_close(name, got[n], want[n]:totable(), 1e-5, 1e-6) end
      local after = fast:ir("exp2")
      assert.truthy(after:find("exp2(", 1, true), after)
      assert.is_nil(after:find("exp(", 1, true), after)
      assert.truthy(fast:ir("online"):find("rescaled by exp2(before - after)", 1, true))
      assert.equal(#plain:kernels(), #fast:kernels())
      -- the rescale between tiles: online groups walking the keys 5 at a time
      local g = fl.trace(fn, table.unpack(inputs))
      for _, p in ipairs(with_pass_before_online(exp2_pass)) do g:run(p) end
      local tiled = g:eval(inputs, nil, 5)
      for n = 1, want.n do close.assert_close(name, tiled[n], want[n]:totable(), 1e-5, 1e-6) end
    end)
  end

  it("the exp2 pass folds log2(e) into the score's scale: one constant, one multiply", function()
    local g = causal_graph("inline", "demote", exp2_pass)
    local m, z = node_named(g, "softmax5"), node_named(g, "softmax8")
    local ops = ops_under(g, z.body)
    assert.same({1, nil, 2}, {ops.exp2, ops.div, ops.mul}) -- q·k, then the score · c
    -- the max is of the same scaled score: exp2(score - max), FlashAttention's form
    local score = g:expr(g:expr(g:expr(z.body).args[1]).args[1])
    assert.same({"where", 1}, {score.op, ops.where})
    assert.same(ops_under(g, m.body), ops_under(g, score.id))
    local c = g:expr(g:expr(score.args[2]).args[2])
    assert.same({"const", LOG2E / 2}, {c.op, c.value})
    assert.matches("exp2: 2 nodes compute exp%(%) as exp2%(%)[^\n]*\nexp2: the max they " ..
      "subtract computes times log2%(e%): softmax5\n", g:explain())
    -- other reads of a scaled max get it times ln 2: the log-sum-exp
    local V = variants.load("lse")
    local gl = fl.trace(V.fn, table.unpack(V.inputs(1, 1, 4, 4, {dtype = "f32"})))
    for _, p in ipairs({"inline", "demote", exp2_pass}) do gl:run(p) end
    assert.matches("log%(sum%d+%[[%w,]+%]%) %+ max%d+%[[%w,]+%] %* 0%.693147181", tostring(gl))
  end)

  it("the stage of a Lua pass is in ir() and explain() of a compiled program", function()
    local V = variants.load("causal")
    local attn = fl.compile(V.fn, {passes = with_pass_before_online(exp2_pass)})
    local inputs = V.inputs(1, 1, 4, 4, {dtype = "f32"})
    attn(table.unpack(inputs))
    assert.matches("exp2%(where%(i >= j", attn:ir("exp2"))
    assert.matches("\nexp2: 2 nodes[^\n]*softmax8 %(1%), matmul10 %(1%)\nexp2: [^\n]*\nonline: ",
      attn:explain())
    assert.matches("softmax8 %(sum, rescaled by exp2%)", attn:explain())
  end)

  describe("errors", function()
    local function fails(pattern, f, ...)
      local ok, err = pcall(f, ...)
      assert.is_false(ok, "no error, wanted " .. pattern)
      assert.matches(pattern, tostring(err))
      return err
    end

    it("a pass that raises names the pass and the line", function()
      local V = variants.load("causal")
      local bad = {name = "bad", run = function() error("boom") end}
      local attn = fl.compile(V.fn, {passes = {"inline", bad}})
      fails("run: the Lua pass 'bad' failed: [^\n]*lua_pass_spec%.lua:%d+: boom", attn,
        table.unpack(V.inputs(1, 1, 4, 4, {dtype = "f32"})))
      local g = causal_graph()
      fails("the Lua pass 'lua' failed: [^\n]*attempt to perform arithmetic", g.run, g,
        function() return nil + {} end)
      assert.truthy(tostring(g)) -- the graph is still there
    end)

    it("set_body checks variables, locals and that loads read earlier values", function()
      local g = causal_graph("inline", "demote")
      local m, o = node_named(g, "softmax5"), node_named(g, "matmul10")
      fails("lua_pass_spec%.lua:%d+: set_body: node 'softmax5' uses variable 99 but has 6",
        g.set_body, g, m.id, g:expr_new({"var", 99}))
      fails("set_body: node 'softmax5' loads 'matmul10', which does not come before it",
        g.set_body, g, m.id, g:expr_new({"load", o.id, {"var", 1}, {"var", 2}, {"var", 3},
                                          {"var", 4}}))
      fails("set_body: node 'softmax5' loads 'softmax5'", g.set_body, g, m.id,
        g:expr_new({"load", m.id, {"var", 1}, {"var", 2}, {"var", 3}, {"const", 0}}))
      fails("set_body: node 'softmax5' has a nested reduction binding variables 1%.%.1, not " ..
        "its locals", g.set_body, g, m.id, g:expr_new({"reduce", "sum", 1, 1, {"var", 1}}))
      fails("bad argument #1 to 'set_body' %(an input has no body%)", g.set_body, g, 1, m.body)
      fails("set_body: bad expression id 0", g.set_body, g, m.id, 0)
      fails("set_body: bad value id 7", g.set_body, g, 7, m.body)
      local x = m.body
      for _ = 1, 10001 do x = g:expr_new({"add", x, {"const", 1}}) end
      fails("nested more than 10000 deep", g.set_body, g, m.id, x)
      -- nothing changed: the graph evaluates as before
      assert.equal(m.body, node_named(g, "softmax5").body)
      g:run("online")
    end)

    it("expressions with a bad operator, operand count or field are refused", function()
      local g = causal_graph("inline")
      fails("expr_new: unknown expression operator 'frobnicate'", g.expr_new, g, {"frobnicate", 1})
      fails("expr_new: unknown expression operator 'frobnicate'", g.expr_new, g,
        {op = "frobnicate"})
      fails("expr_new: exp takes 1 operands, got 2", g.expr_new, g, {"exp", 1, 2})
      fails("expr_new: load of 'q' needs 4 indices, got 1", g.expr_new, g, {"load", 1, {"var", 1}})
      fails("expr_new: bad value id 9", g.expr_new, g, {"load", 9})
      fails("expr_new: bad expression id 100000", g.expr_new, g, {"neg", 100000})
      fails("expr_new: const: a number expected, got string", g.expr_new, g, {"const", "x"})
      fails("expr_new: var: an integer expected, got nil", g.expr_new, g, {op = "var"})
      fails("expr_new: nbind: an integer expected, got string", g.expr_new, g,
        {"reduce", "sum", 1, "x", {"var", 1}})
      fails("expr_new: reduce: unknown combiner 'none'", g.expr_new, g,
        {"reduce", "none", 1, 1, {"var", 1}})
      fails("expr_new: expression expected, got boolean", g.expr_new, g, {"neg", true})
      fails("expr: bad expression id 0", g.expr, g, 0)
      fails("value: bad value id 99", g.value, g, 99)
    end)

    it("pass entries that are no pass are refused by compile and run", function()
      local fn = variants.load("causal").fn
      fails("compile: pass 2: a pass is a name, a function or a table", fl.compile, fn,
        {passes = {"inline", 42}})
      fails("compile: pass 1: the Lua pass 'online' has the name of a built%-in stage",
        fl.compile, fn, {passes = {{name = "online", run = function() end}}})
      fails("compile: pass 1: the Lua pass 'mine' has no run function", fl.compile, fn,
        {passes = {{name = "mine"}}})
      fails("compile: pass 1: a Lua pass's name must be a word", fl.compile, fn,
        {passes = {{name = "two words", run = function() end}}})
      fails("compile: unknown pass 'nope'", fl.compile, fn, {passes = {"nope"}})
      local g = causal_graph()
      fails("run: the Lua pass 'traced' has the name of a built%-in stage", g.run, g,
        {name = "traced", run = function() end})
    end)
  end)
end)
