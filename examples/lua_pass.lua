-- A pass written in Lua, run in the pipeline between the built-in ones.
--
-- GPUs compute 2^x in one instruction; e^x costs a multiply by log2(e)
-- first. This pass rewrites every exp(u) as exp2(u · log2 e) and pushes
-- the multiply into u: through sums, differences, max, min and where(p, x,
-- -inf), and into a constant factor already there, so that the scores'
-- x / √D becomes x · (log2 e / √D), one multiply as before. The max a
-- softmax subtracts is scaled the same way (max_j(x_j · log2 e) is
-- max_j(x_j) · log2 e, since the product rounds monotonically), so the max
-- and the exponentials read one score, as in FlashAttention's exp2 softmax:
--
--   m = max(j) where(i >= j, s * (log2 e / √D), -inf)
--   z = sum(j) exp2(where(i >= j, s * (log2 e / √D), -inf) - m)
--
-- Other reads of a scaled max get m · ln 2. After the pass, `online`
-- merges the softmax with an exp2 rescale (2^(before − after)).
--
--   flua examples/lua_pass.lua [variant]      (default: causal)
--
-- Required as a module (require "lua_pass", as spec/lua_pass_spec.lua
-- does), the file gives only the pass.
local LOG2E, LN2 = 1 / math.log(2), math.log(2)

-- The constant expression id holds, or nil.
local function constant(g, id)
  local x = g:expr(id)
  return x.op == "const" and x.value or nil
end

-- The max/min reductions read inside an exp() argument, which the pass
-- scales by log2 e: not outputs (their values must stay) and not members
-- of an online group (their rescale was derived for exp).
local function maxima_in_exps(g)
  local vals, outputs, found, seen = g:values(), {}, {}, {}
  for _, id in ipairs(g:outputs()) do outputs[id] = true end
  local function walk(id, in_exp)
    local key = in_exp and -id or id
    if seen[key] then return end
    seen[key] = true
    local x = g:expr(id)
    local v = x.op == "load" and vals[x.src]
    if v and in_exp and (v.comb == "max" or v.comb == "min") and #v.red > 0 and v.group == 0
        and not outputs[v.id] then
      found[v.id] = true
    end
    for _, arg in ipairs(x.args) do walk(arg, in_exp or x.op == "exp") end
  end
  for _, v in ipairs(vals) do
    if v.kind == "node" and v.group == 0 then walk(v.body, false) end
  end
  return found
end

-- The two rewrites, over expression ids of g (memoized, so shared
-- subexpressions stay shared): rewrite(x) is x with every exp(u) replaced
-- by exp2(u · log2 e) and every read m of a scaled max by m · ln 2;
-- times_log2e(x) is an expression for rewrite(x) · log2 e, the product
-- pushed inwards (a scaled max read there is m itself). count.n counts the
-- exps replaced.
local function rewriter(g, scaled)
  local memo, memo_times, count = {}, {}, {n = 0}
  local rewrite, times_log2e

  -- x with its operands rewritten: the same id if none changed.
  local function with_args(id)
    local x = g:expr(id)
    local changed = false
    for n, arg in ipairs(x.args) do
      x.args[n] = rewrite(arg)
      changed = changed or x.args[n] ~= arg
    end
    return changed and g:expr_new(x) or id -- x: the record g:expr gave, new operands
  end

  function rewrite(id)
    if memo[id] then return memo[id] end
    local x, out = g:expr(id), nil
    if x.op == "exp" then
      out = g:expr_new({"exp2", times_log2e(x.args[1])})
      count.n = count.n + 1
    elseif x.op == "load" and scaled[x.src] then
      out = g:expr_new({"mul", with_args(id), {"const", LN2}})
    else
      out = with_args(id)
    end
    memo[id] = out
    return out
  end

  local function times(id)
    local x = g:expr(id)
    local a, b = x.args[1], x.args[2]
    if x.op == "const" then return g:expr_new({"const", x.value * LOG2E}) end
    if x.op == "load" and scaled[x.src] then return with_args(id) end
    if x.op == "add" or x.op == "sub" or x.op == "max" or x.op == "min" then
      return g:expr_new({x.op, times_log2e(a), times_log2e(b)})
    end
    if x.op == "neg" then return g:expr_new({"neg", times_log2e(a)}) end
    if x.op == "where" then
      return g:expr_new({"where", rewrite(a), times_log2e(b), times_log2e(x.args[3])})
    end
    if x.op == "div" and constant(g, b) then
      return g:expr_new({"mul", rewrite(a), {"const", LOG2E / constant(g, b)}})
    end
    if x.op == "mul" and constant(g, b) then
      return g:expr_new({"mul", rewrite(a), {"const", constant(g, b) * LOG2E}})
    end
    if x.op == "mul" and constant(g, a) then
      return g:expr_new({"mul", {"const", constant(g, a) * LOG2E}, rewrite(b)})
    end
    return g:expr_new({"mul", rewrite(id), {"const", LOG2E}})
  end

  function times_log2e(id)
    memo_times[id] = memo_times[id] or times(id)
    return memo_times[id]
  end

  return rewrite, times_log2e, count
end

-- The pass: g is the graph (lua/flashlight/trace.lua's Graph), log(fmt, ...)
-- adds a line to explain().
local exp2_pass = {name = "exp2", run = function(g, log)
  local scaled = maxima_in_exps(g)
  local rewrite, times_log2e, count = rewriter(g, scaled)
  local maxima, done = {}, {}
  for _, v in ipairs(g:values()) do
    if v.kind == "node" and v.group == 0 then
      local before = count.n
      local body = scaled[v.id] and times_log2e(v.body) or rewrite(v.body)
      if body ~= v.body then g:set_body(v.id, body) end
      if scaled[v.id] then maxima[#maxima + 1] = v.name end
      if count.n > before then done[#done + 1] = ("%s (%d)"):format(v.name, count.n - before) end
    end
  end
  log("%d node%s compute exp() as exp2() of arguments times log2(e)%s%s", #done,
    #done == 1 and "" or "s", #done > 0 and ": " or "", table.concat(done, ", "))
  if #maxima > 0 then
    log("the max%s they subtract compute%s times log2(e): %s", #maxima == 1 and "" or "ima",
      #maxima == 1 and "s" or "", table.concat(maxima, ", "))
  end
end}

if (...) == "lua_pass" then return exp2_pass end

local root = (arg and arg[0] or ""):match("^(.-)[^/]*$") .. "../"
package.path = root .. "scripts/?.lua;" .. root .. "scripts/?/init.lua;" .. package.path
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"

-- The default pipeline with the Lua pass before online.
local passes = {}
for _, name in ipairs(fl.passes) do
  if name == "online" then passes[#passes + 1] = exp2_pass end
  passes[#passes + 1] = name
end

local V = variants.load(arg and arg[1] or "causal")
local inputs = V.inputs(1, 2, 32, 16, {dtype = "f32", seed = 3}, V.small)
local plain = fl.compile(V.make(V.small))
local fast = fl.compile(V.make(V.small), {passes = passes})
local want = table.pack(plain(table.unpack(inputs)))
local got = table.pack(fast(table.unpack(inputs)))

local names = {}
for k, p in ipairs(passes) do names[k] = p.name or p end
print(("%s: %s, passes: %s"):format(V.name, V.summary, table.concat(names, ", ")))
print("\n== after the Lua pass 'exp2'")
io.write(fast:ir("exp2"))
print("\n== after online")
io.write(fast:ir("online"))
print("\n== explain")
io.write(fast:explain())

local vs_plain = R.rel_error(got, want)
local vs_ref = R.rel_error(got, V.reference(R.tables(inputs), V.small))
local ok = vs_plain < 1e-5 and vs_ref < 1e-5
print(("\nerror against the default pipeline %.2g, against the plain-Lua reference %.2g: %s")
  :format(vs_plain, vs_ref, ok and "ok" or "WRONG"))
if not ok then os.exit(1) end
