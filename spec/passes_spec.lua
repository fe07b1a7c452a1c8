-- The passes (inline, demote, online) on the variant library: the fused
-- forms, their numbers when the online groups walk their loops in tiles,
-- and what explain() says, including where a rule does not apply.
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"
local close = require "close"

-- The graph of variant V after the whole pipeline, and its inputs.
local function compiled(V, B, H, N, D, seed)
  local inputs = V.inputs(B, H, N, D, {dtype = "f32", seed = seed}, V.small)
  local g = fl.trace(V.make(V.small), table.unpack(inputs))
  for _, p in ipairs(fl.passes) do g:run(p) end
  return g, inputs
end

describe("passes", function()
  it("the pipeline is inline, demote, online, tile, blocksparse, and fl.stages lists every dump", function()
    assert.same({"inline", "demote", "online", "tile", "blocksparse"}, fl.passes)
    assert.same({"traced", "lowered", "inline", "demote", "online", "tile", "blocksparse"}, fl.stages)
  end)

  local one_kernel = {"full", "causal", "alibi", "softcap", "sliding_window", "prefix_lm",
                      "document", "gqa", "mqa", "t5_bias", "sinks", "differential",
                      "evoformer_row", "evoformer_col", "sigmoid", "scalable_softmax", "lse"}
  for _, name in ipairs(one_kernel) do
    it(name .. " becomes one kernel", function()
      local g = compiled(variants.load(name), 1, 2, 13, 8, 1)
      local ks = g:kernels()
      assert.equal(1, #ks, name .. ":\n" .. g:ir("online") .. g:explain())
    end)
  end

  it("grouped-query heads stay one kernel with several key/value heads", function()
    for _, H in ipairs({4, 6}) do
      local g = compiled(variants.load("gqa"), 2, H, 9, 4, 1)
      assert.equal(1, #g:kernels(), g:ir("online"))
    end
  end)

  it("the Forgetting Transformer keeps its prefix sum as a kernel of its own", function()
    local g = compiled(variants.load("forgetting"), 1, 2, 13, 8, 1)
    local ks = g:kernels()
    assert.equal(2, #ks)
    assert.equal("cumsum", ks[1].op)
    assert.is_not_nil(ks[2].group)
  end)

  for _, name in ipairs(variants.names) do
    it(name .. ": online groups give the reference's numbers in tiles of 1, 2, 5 and 16", function()
      local V = variants.load(name)
      local g, inputs = compiled(V, 2, 2, 21, 8, 5)
      local want = V.reference(R.tables(inputs), V.small)
      for _, tile in ipairs({1, 2, 5, 16, 0}) do
        local outs = g:eval(inputs, nil, tile)
        for n = 1, #want do
          close.assert_close(("%s output %d, tile %d"):format(name, n, tile), outs[n], want[n],
            1e-5, 1e-5)
        end
      end
    end)
  end

  it("differential attention: two maxima, two sums and two accumulators over one loop", function()
    local g = compiled(variants.load("differential"), 1, 1, 8, 4, 1)
    local ir = g:ir("online")
    assert.matches("online group 1, one loop over j:", ir)
    local _, maxes = ir:gsub("= max%(j%)", "")
    local _, sums = ir:gsub("= sum%(j%)", "")
    assert.equal(2, maxes)
    assert.equal(4, sums)
    assert.matches("after the loop: matmul%d+%[b,h,i,k%] = 1 / softmax%d+%[b,h,i,0%] %* " ..
      "matmul%d+%.acc1%[b,h,i,k%] %+ 1 / softmax%d+%[b,h,i,0%] %* %-1 %* matmul%d+%.acc2", ir)
    assert.matches("online: group 1, one loop:", g:explain())
  end)

  it("fully masked rows stay NaN, as in the reference, in any tiling", function()
    local prog = function(q, k, v)
      local s = q:matmul(k:transpose(-2, -1))
      local i, j = fl.arange(s:size(-2)):view(-1, 1), fl.arange(s:size(-1)):view(1, -1)
      -- rows 0..2 see nothing; the others see keys j <= i - 3
      return fl.softmax(fl.where((i - j):ge(3), s, -math.huge), -1):matmul(v)
    end
    local q = fl.randn({1, 1, 9, 4}, {seed = 1})
    local g = fl.trace(prog, q, q, q)
    local want = g:eval({q, q, q})[1]:totable()
    for _, p in ipairs(fl.passes) do g:run(p) end
    assert.equal(1, #g:kernels())
    for _, tile in ipairs({1, 2, 4, 0}) do
      local got = g:eval({q, q, q}, nil, tile)[1]
      close.assert_close("tile " .. tile, got, want, 1e-6, 1e-6)
      assert.is_true(got:get(1, 1, 1, 1) ~= got:get(1, 1, 1, 1), "row 1 is NaN")
    end
  end)

  it("a dependence with no rescaling rule stays unfused, correct, and explained", function()
    local weird = function(q, k, v)
      local s = q:matmul(k:transpose(-2, -1))
      local m = s:max(-1, true)
      local w = (s - m):tanh() -- tanh(s - M): not exp of a difference, power or product
      return w:matmul(v)
    end
    local q = fl.randn({1, 2, 7, 4}, {seed = 3})
    local g = fl.trace(weird, q, q, q)
    local want = g:eval({q, q, q})[1]:totable()
    for _, p in ipairs(fl.passes) do g:run(p) end
    assert.matches("online: not merged, 'matmul%d+': it depends on a running max through a " ..
      "function with no rescaling rule", g:explain())
    assert.equal(2, #g:kernels())
    close.assert_close("o", g:eval({q, q, q})[1], want, 1e-6, 1e-6)
  end)

  it("g:run names an unknown pass and the script line", function()
    local g = fl.trace(function(x) return x:sum(1) end, {shape = {3}})
    local ok, err = pcall(g.run, g, "fuse_everything")
    assert.is_false(ok)
    assert.matches("no pass named 'fuse_everything'", err)
    ok, err = pcall(fl.compile, function(x) return x end, {passes = {"inline", "nope"}})
    assert.is_false(ok)
    assert.matches("passes_spec%.lua:%d+: compile: unknown pass 'nope' %(known: inline, demote, online, tile, blocksparse%)",
      err)
  end)

  it("a prefix of the pipeline from fl.compile keeps the other stages out of ir()", function()
    local V = variants.load("causal")
    local p = fl.compile(V.fn, {passes = {"inline"}})
    local x = V.inputs(1, 1, 6, 4, {dtype = "f32"})
    p(table.unpack(x))
    assert.matches("softmax%d+%[b,h,i,_%] = max%(j%) where%(i >= j, matmul", p:ir("inline"))
    local ok, err = pcall(p.ir, p, "online")
    assert.is_false(ok)
    assert.matches("unknown stage 'online' %(this graph has: traced, lowered, inline%)", err)
  end)
end)
