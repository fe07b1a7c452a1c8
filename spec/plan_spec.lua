-- The kernel plan: tiling, block sparsity (skipped tiles counted, loop
-- bounds, run-time classification from data), layout copies folded into
-- stores, and the CPU executor running it as planned.
local fl = require "flashlight"
local variants = require "variants"
local close = require "support.close"

local function planned(name, B, H, N, D, params)
  local V = variants.load(name)
  local inputs = V.inputs(B, H, N, D, {dtype = "f32", seed = 3}, params or V.small)
  local g = fl.trace(V.make(params or V.small), table.unpack(inputs))
  for _, p in ipairs(fl.passes) do g:run(p) end
  return g, inputs, V
end

describe("the kernel plan", function()
  it("tiles attention: grid b, h and i in blocks, j in tiles, scores as a tile member", function()
    local g = planned("causal", 1, 2, 200, 8)
    local k = g:kernels()
    assert.equal(1, #k)
    k = k[1]
    assert.same({"b", "h", "i"}, {k.grid[1].name, k.grid[2].name, k.grid[3].name})
    assert.same({1, 1, 64}, {k.grid[1].block, k.grid[2].block, k.grid[3].block})
    assert.equal("j", k.loop[1].name)
    assert.equal(64, k.tile)
    assert.equal(1, #k.tiles)
    assert.matches("tile: softmax%d+%.tile1%[b,h,i,j%] = where%(i >= j", g:ir("tile"))
    assert.matches("tiles classified by i >= j %(indices only", g:ir("blocksparse"))
    local plan = tostring(g:plan())
    assert.matches("grid      b 1, h 2, i 200 in blocks of 64", plan, 1, true)
    assert.matches("loop      j 200 in tiles of 64", plan, 1, true)
    assert.matches("once per tile, never stored", plan, 1, true)
  end)

  it("causal at N=1024 in 64-wide key tiles skips about half the tiles, and says so", function()
    local g = planned("causal", 1, 1, 1024, 4)
    local k = g:kernels()[1]
    assert.equal("planned", k.classified)
    assert.same({total = 256, skipped = 120, partial = 16, full = 120}, k.counts)
    local ex = g:explain()
    assert.matches("blocksparse: group 1 %(softmax%d+%): 1 mask condition over indices: loop bounds " ..
      "from 256 tiles %(per block of the dims the mask reads%): 120 skipped, 16 partial, 120 full", ex)
    assert.matches("schedule  masks over indices: loop bounds per block of i; 256 tiles: 120 " ..
      "skipped, 16 partial, 120 full", ex, 1, true)
  end)

  it("sliding windows and PrefixLM become loop bounds too", function()
    local k = planned("sliding_window", 1, 1, 1024, 4, {window = 256}):kernels()[1]
    assert.equal("planned", k.classified)
    -- per row block of 64: the diagonal tile and 4 behind it at most
    assert.is_true(k.counts.skipped > 256 - 16 * 6 and k.counts.full > 0, tostring(k.counts.skipped))
    local p = planned("prefix_lm", 1, 1, 1024, 4, {prefix = 512}):kernels()[1]
    -- row block r keeps key tiles 0 .. max(7, r): 8 for r < 8, r + 1 after: 164 of 256
    assert.equal(92, p.counts.skipped)
  end)

  it("a document mask is classified at run time from the document ids", function()
    local g, inputs, V = planned("document", 1, 2, 512, 4)
    local k = g:kernels()[1]
    assert.equal("run time", k.classified)
    assert.matches("blocksparse: group 1 %(softmax%d+%): 1 mask condition reading data %(doc%): " ..
      "tiles classified at run time, from the data's range over each tile", g:explain())
    local o = g:eval(inputs)[1]
    k = g:kernels()[1]
    -- two heads of 8 row blocks by 8 key tiles: more than the causal half is skipped
    assert.equal(128, k.counts.total)
    assert.is_true(k.counts.skipped > 56 and k.counts.full > 0 and k.counts.partial > 0)
    assert.matches("masks read data %(doc%): tiles classified at run time; last run 128 tiles: " ..
      k.counts.skipped .. " skipped", g:explain())
    close.assert_close("o", o, V.reference(require("variants.reference").tables(inputs), V.small)[1],
      1e-6, 1e-6)
  end)

  it("runs every variant as planned, in tiles of 3 and 8, with the reference's numbers", function()
    local R = require "variants.reference"
    for _, name in ipairs(variants.names) do
      local g, inputs, V = planned(name, 1, 2, 19, 4)
      local want = V.reference(R.tables(inputs), V.small)
      for _, tile in ipairs({3, 8}) do
        local got = g:eval(inputs, "f32", tile)
        for n = 1, #want do close.assert_close(name .. " tile " .. tile, got[n], want[n], 1e-6, 1e-6) end
      end
    end
  end)

  it("sigmoid attention becomes a tiled group of one: its scores once per tile", function()
    local g = planned("sigmoid", 1, 2, 16, 8)
    local k = g:kernels()[1]
    assert.equal(1, #k.tiles)
    assert.same({"b", "h", "i"}, {k.grid[1].name, k.grid[2].name, k.grid[3].name})
    assert.matches("tile: matmul%d+%.tile1%[b,h,i,j%] = sigmoid%(", g:ir("tile"))
  end)

  it("folds a layout copy after the group (heads merged back) into the kernel's store", function()
    local attn = function(q, k, v)
      local B, H, N, D = q:size(1), q:size(2), q:size(3), q:size(4)
      local s = q:matmul(k:transpose(-2, -1)) / math.sqrt(D)
      return fl.softmax(s, -1):matmul(v):transpose(2, 3):reshape(B, N, H * D)
    end
    local q = fl.randn({2, 3, 7, 4}, {seed = 1})
    local k, v = fl.randn({2, 3, 7, 4}, {seed = 2}), fl.randn({2, 3, 7, 4}, {seed = 3})
    local g = fl.trace(attn, q, k, v)
    local want = g:eval({q, k, v})[1]
    for _, p in ipairs(fl.passes) do g:run(p) end
    local ks = g:kernels()
    assert.equal(1, #ks, tostring(g:plan()))
    assert.equal(1, #ks[1].stores)
    assert.matches("stores    matmul%d+ as copy%d+%[b,i,k%] %(a layout copy folded into the store%)",
      tostring(g:plan()))
    close.assert_close("o", g:eval({q, k, v})[1], want:totable(), 1e-6, 1e-6)
  end)

  it("a plan refuses to run once a pass changed its graph", function()
    local g, inputs = planned("full", 1, 1, 8, 4)
    local plan = g.core:plan()
    g.core:run("inline")
    local ok, err = pcall(plan.run, plan, inputs)
    assert.is_false(ok)
    assert.matches("the graph changed since this plan was made", err)
    -- the Graph wrapper plans again
    assert.equal(1, #g:eval(inputs))
  end)

  it("rejects a tile that is not a non-negative integer, naming the line", function()
    local g = planned("full", 1, 1, 8, 4)
    local ok, err = pcall(g.core.plan, g.core, -1)
    assert.is_false(ok)
    assert.matches("bad argument #2 to .*%(the tile must be a non%-negative integer%)", err)
    ok, err = pcall(g.plan, g, 1.5)
    assert.is_false(ok)
    assert.matches("plan_spec%.lua:%d+: plan: the tile must be a non%-negative integer, got 1.5", err)
  end)
end)
