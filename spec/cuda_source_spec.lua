-- The CUDA printer, checked where there is no GPU: every variant's kernels,
-- printed from its plan, compile with NVRTC (mma.sync kernels for sm_90 and
-- sm_80, wgmma ones for sm_90a), and the source is self-contained, with no
-- register spills. The fused groups are
-- tensor-core kernels (N = 200: the tiles do not divide the sequence); the
-- rest, and the rows they hand back, the plan's scalar kernels. The
-- register report is printed.
local fl = require "flashlight"
local variants = require "variants"

local have, why = fl.jit.available()

describe("CUDA source of every variant", function()
  if not have then
    io.stderr:write("cuda_source_spec: NVRTC is not available (" .. tostring(why) .. "): skipped\n")
    pending("NVRTC is not available: " .. tostring(why))
    return
  end
  -- mma.sync kernels for sm_90 (no spills) and sm_80 (they must compile),
  -- wgmma kernels for sm_90a (no spills)
  local paths = {{path = "mma", archs = {"sm_90", "sm_80"}}, {path = "hopper", archs = {"sm_90a"}}}
  for _, V in ipairs(variants.all()) do
    it(V.name .. " compiles for sm_90, sm_80 (mma.sync) and sm_90a (wgmma) at head dims 64 and 128", function()
      local report = {}
      for _, D in ipairs({64, 128}) do
        local inputs = V.inputs(1, 2, 1000, D, {dtype = "bf16", seed = 1}, V.small)
        local attn = fl.compile(V.make(V.small))
        assert.is_nil(attn:source(table.unpack(inputs)):find("#include", 1, true), "the source includes a header")
        local plan = attn:graph_of("source", table.unpack(inputs)):plan()
        for _, P in ipairs(paths) do
          local src, kernels = plan:cuda("bf16", {path = P.path})
          assert.is_nil(src:find("#include", 1, true), "the source includes a header")
          -- the fused group runs on tensor cores (lse too at a batch of one: its
          -- view keeps the batch dim); on the hopper path as wgmma unless it says why not
          local tc = 0
          for _, k in ipairs(kernels) do
            if k.kind == "tensor cores" then
              tc = tc + 1
              if P.path == "hopper" and k.path ~= "hopper" then
                assert.matches("^not wgmma: ", k.why, V.name .. " D=" .. D)
              end
              if P.path == "mma" then assert.equal("mma", k.path) end
            end
          end
          assert.equal(1, tc, V.name .. ": " .. tostring(kernels[#kernels].why))
          for _, arch in ipairs(P.archs) do
            local r = fl.jit.compile(src, {arch = arch, name = V.name .. ".cu"})
            assert.equal(#kernels, #r.kernels, V.name .. " " .. arch)
            -- no wgmma serialized by ptxas (C751x: e.g. C7514, a non-wgmma instruction reading an accumulator
            -- in flight; C7510, a call)
            assert.is_nil(r.log:find("C751", 1, true), ("%s %s D=%d: %s"):format(V.name, arch, D, r.log))
            for _, k in ipairs(r.kernels) do
              assert.is_true(k.registers > 0)
              -- sm_80 must compile (it may spill a little)
              if arch ~= "sm_80" then
                assert.equal(0, k.spill_stores, ("%s %s D=%d: %s spills"):format(V.name, arch, D, k.name))
                report[#report + 1] = ("%s D=%d %s %d regs, %d B spilled"):format(arch, D, k.name, k.registers,
                  k.spill_stores)
              end
            end
          end
        end
      end
      io.stderr:write(("# %s: %s\n"):format(V.name, table.concat(report, "; ")))
    end)
  end

  -- at N=1000 a head dim of 64 keeps the one-warpgroup kernel (too few keys a row); at 4096 the
  -- warp-specialized ones (three computing warpgroups, the split step, the column of ones, chains)
  it("no variant's warp-specialized kernel at head dim 64 has its wgmma serialized by ptxas", function()
    for _, V in ipairs(variants.all()) do
      local inputs = V.inputs(1, 2, 4096, 64, {dtype = "bf16", seed = 1}, V.small)
      local plan = fl.compile(V.make(V.small)):graph_of("kernels", table.unpack(inputs)):plan()
      local r = fl.jit.compile((plan:cuda("bf16", {path = "hopper"})), {arch = "sm_90a", name = V.name .. ".cu"})
      assert.is_nil(r.log:find("C751", 1, true), V.name .. ": " .. r.log)
    end
  end)

  it("names the kernels after the plan's: groups and lone nodes", function()
    local V = variants.load("forgetting")
    local inputs = V.inputs(1, 2, 100, 64, {dtype = "bf16", seed = 1}, V.small)
    local g = fl.trace(V.make(V.small), table.unpack(inputs))
    for _, p in ipairs(fl.passes) do g:run(p) end
    local src, kernels = g:plan():cuda(nil, {path = "mma"})
    -- the cumsum, the group on tensor cores, its scalar kernel for rows it hands back
    assert.equal(3, #kernels)
    assert.matches("^fl_node%d+$", kernels[1].name)
    assert.equal("fl_group1_mma", kernels[2].name)
    assert.equal("tensor cores", kernels[2].kind)
    assert.equal("fl_group1", kernels[3].name)
    assert.equal("scalar", kernels[3].kind)
    assert.matches('extern "C" __global__ void fl_group1%(', src)
    assert.matches('extern "C" __global__ void __launch_bounds__%(128, 2%) fl_group1_mma%(', src)
    assert.same({"f", "cumsum3"}, kernels[1].params)
    -- the group's output, bf16 with D=64: a quad's words transposed, eight neighbours a store, on
    -- this path too; D=16 (not a multiple of 32): two neighbours a store
    assert.matches("fl_quad_transpose%(qw%);", src)
    assert.matches("fl_st8%(v%d+, 0 %+ [^;]*, qw%);", src)
    assert.not_matches("fl_st2%(v%d+, po", src)
    local i16 = V.inputs(1, 2, 100, 16, {dtype = "bf16", seed = 1}, V.small)
    local g16 = fl.trace(V.make(V.small), table.unpack(i16))
    for _, p in ipairs(fl.passes) do g16:run(p) end
    local src16 = g16:plan():cuda(nil, {path = "mma"})
    assert.matches("fl_st2%(v%d+, po, pv%[0%], pv%[1%]%);", src16)
    assert.not_matches("fl_st8%(v%d", src16)
    -- on the hopper path: one warpgroup a block, wgmma, built for three blocks a multiprocessor (it
    -- reads an input besides its tiles)
    local hsrc, hk = g:plan():cuda(nil, {path = "hopper"})
    assert.equal("hopper", hk[2].path)
    assert.matches('extern "C" __global__ void __launch_bounds__%(128, 3%) fl_group1_mma%(', hsrc)
    assert.matches("wgmma.mma_async.sync.aligned.m64n", hsrc, 1, true)
  end)

  -- the hopper source of a variant's plan (bf16 inputs unless dtype), and its tensor-core kernel
  -- (persistent "auto" weighs a device of `sms` multiprocessors, 132 unless given; B 1, H 2 unless given)
  local function source(name, D, N, persistent, dtype, sms, B, H)
    local V = variants.load(name)
    local inputs = V.inputs(B or 1, H or 2, N or 1024, D, {dtype = dtype or "bf16", seed = 1}, V.small)
    local g = fl.trace(V.make(V.small), table.unpack(inputs))
    for _, p in ipairs(fl.passes) do g:run(p) end
    local src, k = g:plan():cuda(nil, {path = "hopper", persistent = persistent, sms = sms or 132})
    local mma
    for _, kd in ipairs(k) do if kd.name == "fl_group1_mma" then mma = kd end end
    assert.equal("hopper", mma.path)
    return src, mma
  end

  it("persistent = \"auto\" (the default): tiles looped over where a block a tile's last wave runs whole", function()
    -- 64 tiles (32 row blocks x 2 heads) of 32 steps. On 40 multiprocessors the last 24 blocks would run
    -- whole (in halves, two rounds of halves): persistent, with three stages
    local _, kd = source("full", 128, 4096, nil, nil, 40)
    assert.is_true(kd.persistent)
    assert.same({64, 1, 1}, kd.grid)
    assert.matches("3 stages", kd.design, 1, true)
    assert.is_nil(kd.parts)
    local _, kda = source("full", 128, 4096, "auto", nil, 32) -- two rounds, none short
    assert.is_true(kda.persistent)
    -- on 60, the last 4 in halves (fl_cuda_parts_choose): a block a tile, two stages, its last blocks in parts
    local _, kd2 = source("full", 128, 4096, "auto", nil, 60)
    assert.is_false(kd2.persistent)
    assert.same({32, 2, 1}, kd2.grid)
    assert.matches("2 stages", kd2.design, 1, true)
    assert.equal(4, kd2.parts.most)
    -- as many tiles as multiprocessors or fewer: a tile a block either way, two stages
    assert.is_false(select(2, source("full", 128, 4096, nil, nil, 64 + 1)).persistent)
    -- masked (blocks of many lengths), or storing row statistics: never
    assert.is_false(select(2, source("causal", 128, 4096, nil, nil, 40)).persistent)
    assert.is_false(select(2, source("lse", 128, 4096, nil, nil, 40)).persistent)
    -- no device, no sms: a block a tile
    local V = variants.load("full")
    local g = fl.trace(V.make(V.small), table.unpack(V.inputs(1, 2, 4096, 128, {dtype = "bf16", seed = 1}, V.small)))
    for _, p in ipairs(fl.passes) do g:run(p) end
    if fl.device_count() == 0 then
      local _, k = g:plan():cuda(nil, {path = "hopper"})
      assert.equal("fl_group1_mma", k[1].name)
      assert.is_false(k[1].persistent)
    end
  end)

  it("the hopper path is warp-specialized: TMA loads, mbarriers, register budgets, 128 keys a step", function()
    local full, kd = source("full", 128, 960, true)
    -- the kernel list says how it is laid out
    assert.equal("wgmma; TMA loader (24 registers) + 2 computing warpgroups (240), 128 keys a step, 3 stages, "
      .. "pipelined, ping-pong, persistent", kd.design)
    assert.equal(384, kd.block)
    -- Q's 128 rows, three stages (persistent: FL_WS_PERSIST_STAGES) of 128 keys and 128 values, 128 wide,
    -- bf16; room to align; the barriers
    assert.equal((128 + 6 * 128) * 128 * 2 + 1024 + 17 * 8, kd.smem)
    -- persistent (asked for): a grid of tiles (8 row blocks x 2 heads), looped over by at most a block a
    -- multiprocessor, every other wave in reverse; Q's tile freed for the next tile's once its steps are done
    assert.is_true(kd.persistent)
    assert.same({16, 1, 1}, kd.grid)
    assert.matches("const unsigned tile = it * gridDim.x + (it & 1u ? gridDim.x - 1u - blockIdx.x : blockIdx.x);",
      full, 1, true)
    assert.matches("if (tile >= 16u) break;", full, 1, true)
    assert.matches("if (it) fl_bar_wait(bqe, (it - 1u) & 1u);", full, 1, true)
    assert.matches("fl_bar_wait(bq, it & 1u);", full, 1, true)
    assert.matches("fl_bar_arrive(bqe); /* done with Q's tile */", full, 1, true)
    -- not asked for: a block a tile, two stages
    local _, kd1 = source("full", 128, 960, false)
    assert.is_false(kd1.persistent)
    assert.same({8, 2, 1}, kd1.grid)
    assert.equal("wgmma; TMA loader (24 registers) + 2 computing warpgroups (240), 128 keys a step, 2 stages, "
      .. "pipelined, ping-pong", kd1.design)
    local V = variants.load("full")
    local g_full = fl.trace(V.make(V.small), table.unpack(V.inputs(1, 2, 64, 64, {dtype = "bf16", seed = 1}, V.small)))
    for _, bad in ipairs{{{persistent = "yes"}, "option 'persistent' must be true, false or \"auto\", got 'yes'"},
                         {{persistent = 1}, "option 'persistent' must be true, false or \"auto\", got number"},
                         {{sms = 0}, "option 'sms' must be a whole number of multiprocessors from 1 to 65535, got 0"},
                         {{sms = 1.5}, "option 'sms' must be a whole number of multiprocessors from 1 to 65535, got 1.5"}} do
      local ok, err = pcall(function() g_full:plan():cuda(nil, bad[1]) end)
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'cuda' (" .. bad[2], err, 1, true)
    end
    -- two computing warpgroups of 240 registers and the loader, one block a multiprocessor
    assert.matches('__launch_bounds__(384, 1) fl_group1_mma(', full, 1, true)
    assert.matches("const __grid_constant__ fl_tmap tm0, const __grid_constant__ fl_tmap tm1, "
      .. "const __grid_constant__ fl_tmap tm2) {", full, 1, true)
    assert.matches("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes", full, 1, true)
    assert.matches("fl_regs_dec<24>();", full, 1, true)
    assert.matches("fl_regs_inc<240>();", full, 1, true)
    -- 128 keys a step (two of the plan's key tiles), pipelined
    assert.matches("const long long key0 = st * 128LL;", full, 1, true)
    assert.matches("bool pm = false;", full, 1, true)
    -- 960 rows in blocks of 128: the first block starts 64 rows early
    assert.matches("* 128 - 64LL;", full, 1, true)
    -- the output packed two neighbours a word (bf16x2 cvt), a quad's words transposed with
    -- shuffles, eight neighbours a 16-byte store
    assert.matches("qw[k] = fl_pack_bf16(pv[0], pv[1]);", full, 1, true)
    assert.matches('asm("cvt.rn.bf16x2.f32 %0, %1, %2;"', full, 1, true)
    assert.matches("fl_quad_transpose(qw);", full, 1, true)
    assert.matches("const long long e = eg * 32 + (lane & 3) * 8;", full, 1, true)
    assert.matches("fl_st8(v7, 0 + x0 * ", full, 1, true)
    assert.matches("*(uint4 *)(p + i) = make_uint4(w[0], w[1], w[2], w[3]);", full, 1, true)
    -- a step's class from both its plan tiles; masked and pipelined
    local causal = source("causal", 128)
    assert.matches('__launch_bounds__(384, 1) fl_group1_mma(', causal, 1, true)
    assert.matches("for (int t = 0; t < 2; ++t) {", causal, 1, true)
    assert.matches("fl_step_skipped(tb, st, 1, 2, 16, 2)", causal, 1, true)
    assert.matches("bool pm = false;", causal, 1, true)
    -- the rows' run of known full tiles (left of the diagonal), from the bounds, rounded in to whole
    -- steps: there neither the class nor the next step comes from the table
    assert.matches("const int fa = tbw[w] ? (int)((bnd[4 * blk + 2] * 1LL + 1LL) / 2LL) : 0;", causal, 1, true)
    assert.matches("const int fb = tbw[w] ? (int)(bnd[4 * blk + 3] * 1LL / 2LL) : 0;", causal, 1, true)
    assert.matches("const bool mine = (st >= ka && st < kb) || (st >= lo", causal, 1, true)
    assert.matches("bool full = st >= ka && st < kb;\n%s*if %(!full%) {", causal)
    assert.matches("if (st + 1 >= ca && st + 1 < cb) nx = st + 1;", causal, 1, true)
    assert.is_nil(full:find("ka", 1, true))
    -- masked: blocks in the schedule's order (ord, when it has a table), else the last rows first
    -- in chunks of heads; unmasked: only the latter
    assert.matches("if (ord) rb = ord[lin] % nb, hd = ord[lin] / nb;\n  else {", causal, 1, true)
    assert.matches("rb = nb - 1 - in / g, hd = first + in % g;", causal, 1, true)
    assert.is_nil(full:find("ord[lin]", 1, true))
    assert.matches("rb = nb - 1 - in / g, hd = first + in % g;", full, 1, true)
    assert.matches("const long long row0 = (long long)rb * 128 - 64LL;", full, 1, true)
    -- masked, even asked for: a block a tile (the hardware's scheduler balances the tiles' lengths)
    causal = source("causal", 128, nil, true)
    assert.matches("fl_bar_wait(bq, 0);", causal, 1, true)
    assert.is_nil(causal:find("gridDim.x - 1u - blockIdx.x", 1, true))
    -- lse stores its row statistics: a block a tile (persistent, they spilled)
    local _, kdl = source("lse", 128, nil, true)
    assert.is_nil(kdl.design:find("persistent", 1, true))
    -- a group that reads an input at each row and key (forgetting's gates): not pipelined
    local forget = source("forgetting", 128)
    assert.matches('__launch_bounds__(384, 1) fl_group1_mma(', forget, 1, true)
    assert.is_nil(forget:find("bool pm = false;", 1, true))
    -- one read once a head (ALiBi's slope): into a register before the steps, and pipelined
    local alibi = source("alibi", 128)
    assert.matches("float hv0;", alibi, 1, true)
    assert.matches("const float t%d+ = hv0;", alibi)
    local mma = alibi:match("fl_group1_mma%(.-\n}\n")
    assert.equal(1, select(2, mma:gsub("fl_ld%(v3,", "")))
    assert.matches("bool pm = false;", alibi, 1, true)
    -- a bias read at every key (T5 buckets): 64 keys a step
    assert.matches("const long long key0 = st * 64LL;", source("t5_bias", 128), 1, true)
    -- few steps a block (a sliding window, masks over document ids): one warpgroup a block, three
    -- blocks a multiprocessor at head dim 128, four at 64 where nothing else is read
    assert.matches('__launch_bounds__(128, 3) fl_group1_mma(', source("sliding_window", 128), 1, true)
    assert.matches('__launch_bounds__(128, 3) fl_group1_mma(', source("document", 128), 1, true)
    assert.matches('__launch_bounds__(128, 4) fl_group1_mma(', source("sliding_window", 64), 1, true)
    assert.matches('__launch_bounds__(128, 3) fl_group1_mma(', source("document", 64), 1, true)
    -- document ids compared as the integers they are: exact past float's 2^24, no conversions
    local doc = source("document", 128):match("fl_group1_mma%(.-\n}\n")
    assert.is_nil(doc:find("fl_ld(v3,", 1, true))
    assert.matches("const long long t%d+ = %(long long%)v3%[0 %+ x2 %* 1LL%];", doc)
    assert.matches("const float t%d+ = %(float%)%(t%d+ == t%d+%);", doc)
    -- and at head dim 128 over a short sequence (5 key tiles)
    assert.matches('__launch_bounds__(128, 3) fl_group1_mma(', source("full", 128, 300), 1, true)
    -- two accumulators of 64 at head dim 64 (differential): two
    assert.matches('__launch_bounds__(128, 2) fl_group1_mma(', source("differential", 64), 1, true)
    -- at head dim 64 three computing warpgroups of 160, 128 keys a step, pipelined: the body (its
    -- weights written over the scores) runs while the previous step's product is in flight, and
    -- the weights are packed once it has landed
    local small, kds = source("full", 64, 2048)
    assert.matches('__launch_bounds__(512, 1) fl_group1_mma(', small, 1, true)
    assert.matches("fl_regs_inc<160>();", small, 1, true)
    assert.matches("const long long key0 = st * 128LL;", small, 1, true)
    assert.matches("bool pm = false;", small, 1, true)
    assert.matches("pipelined, row sums in the products$", kds.design)
    assert.matches("float (&p0)[16][4] = s0; /* the weights in place */", small, 1, true)
    local issued = small:find("fl_wg_wait<1>();", 1, true)
    local landed = small:find("fl_wg_wait<0>%(%);\n%s*#pragma unroll\n%s*for %(int j = 0; j < 36; %+%+j%) fl_wg_keep", issued)
    assert.truthy(issued and landed)
    assert.truthy(small:sub(issued, landed):find("fl_exp2(", 1, true))
    assert.is_nil(small:sub(issued, landed):find("fl_pack_bf16(", 1, true))
    assert.matches("pk0[nt >> 1][(nt & 1) * 2 + 1] = fl_pack_bf16(p0[nt][2], p0[nt][3]);", small, 1, true)
    -- masked (causal): pipelined split (the whole step spilled beside the column of ones)
    assert.matches("pipelined (split), row sums in the products", select(2, source("causal", 64, 4096)).design, 1, true)
    -- a bias on the scores (ALiBi), pipelined split: the previous step's product waited for once the
    -- row maxima are known, the weights packed as they are computed, into the product's registers
    local masked, mkds = source("alibi", 64, 4096)
    assert.matches("pipelined (split)", mkds.design, 1, true)
    assert.matches("fl_quad_max%(xm%[r%]%)[^\n]*%);\n%s*}\n%s*fl_wg_wait<0>%(%);", masked)
    assert.is_nil(masked:find("(&p0)", 1, true))
    assert.matches("pk0[nt >> 1][(nt & 1) * 2 + 1] = fl_pack_bf16(p0[nt][2], p0[nt][3]);", masked, 1, true)
    -- no masks, no table: each warpgroup's table pointer a constant the compiler folds away
    assert.matches("tbw[w] = 0; (void)blk;", small, 1, true)
    assert.matches("tbw[w] = tab && inside ? tab + blk", source("causal", 64, 2048), 1, true)
    -- pipelined on two warpgroups of 240: packed after the body
    assert.is_nil(full:find("pn0[", 1, true))
    -- ... and taking turns to issue their products (ping-pong): warpgroup 0 first, each handing on
    -- after issuing, every step, its own or not; warpgroup 0 takes the last turn handed on
    assert.matches("if (wg == 1) fl_named_arrive(1, 256); /* the first turn is warpgroup 0's */", full, 1, true)
    assert.matches("fl_named_sync(1 + wg, 256); /* this warpgroup's turn to issue */", full, 1, true)
    local _, turns = full:gsub("fl_named_arrive%(next_turn, 256%);", "")
    assert.equal(4, turns) -- scores and product, product, scores, neither
    assert.matches("if (wg == 0) fl_named_sync(1, 256); /* the last turn handed on */", full, 1, true)
    -- three computing warpgroups (head dim 64) do not take turns
    assert.is_nil(small:find("turn to issue", 1, true))
    assert.matches("pk0[nt >> 1][(nt & 1) * 2] = fl_pack_bf16(p0[nt][0], p0[nt][1]);", full, 1, true)
    -- 2048 rows in blocks of 192: the first block starts 64 rows early
    assert.matches("* 192 - 64LL;", small, 1, true)
    -- at head dim 64 fewer than 2048 keys a row stay on one warpgroup a block, four a multiprocessor
    assert.matches('__launch_bounds__(128, 4) fl_group1_mma(', source("full", 64, 1024), 1, true)
    -- differential attention's two softmaxes: each chain in blocks of its own, every computing warpgroup on
    -- it and pipelined as full attention is (never persistent); the two blocks of a tile side by side
    local diff, kdd = source("differential", 128, nil, true)
    local _, kdf = source("full", 128)
    assert.equal("wgmma; TMA loader (24 registers) + 2 computing warpgroups (240) on a chain a block, 128 keys a "
      .. "step, 2 stages, pipelined, ping-pong, pairs combined in global memory", kdd.design)
    assert.same({16, 2, 1}, kdd.grid) -- 1024 rows in blocks of 128, a block a chain; B x H
    assert.matches("const unsigned ch = blockIdx.x & 1u; /* the block's chain */", diff, 1, true)
    assert.matches("lin = (blockIdx.x + gridDim.x * blockIdx.y) >> 1", diff, 1, true)
    -- the second chain's queries and keys take the first's tiles: full attention's shared memory
    assert.matches("const unsigned sb2 = sb0; /* the other chain's */", diff, 1, true)
    assert.matches("const unsigned sb3 = sb1; /* the other chain's */", diff, 1, true)
    assert.equal(kdf.smem, kdd.smem)
    -- scratch after the 2048 rows' fixup flags and two words (from 128-byte boundaries): a ticket a warp of
    -- each of 16 tiles (8 warps), then 68 floats a thread of a warp's state; full attention keeps none
    assert.equal(((2080 + 128) + 128 * 68 * 32 - 2050) * 4, kdd.scratch)
    assert.equal(0, kdf.scratch)
    -- each block's loader copies its chain's queries and keys (and the values)
    assert.matches("if %(ch == 0u%) {\n%s*fl_bar_expect%(bq, 32768u%);\n%s*fl_tma3%(so0 %+ 0u, &tm0,", diff)
    assert.matches("} else {\n%s*fl_bar_expect%(bq, 32768u%);\n%s*fl_tma3%(so2 %+ 0u, &tm2,", diff)
    -- a warp packs its state, takes its rows' ticket; the first stores its state and marks it in, the
    -- second waits for the mark, sets the ticket back for the next launch and stores the outputs of both
    assert.matches("for (int j = 0; j < 64; ++j) sv[4 + j] = (&oa0[0][0])[j];", diff, 1, true)
    assert.matches("if (lane == 0) tn = atomicAdd(tk, 1u);", diff, 1, true)
    assert.matches("for %(int j = 0; j < 68; %+%+j%) __stcg%(hp %+ j %* 32, sv%[j%]%);\n%s*__threadfence%(%);", diff)
    assert.matches("if (lane == 0) atomicAdd(tk, 2u); /* the state is in */", diff, 1, true)
    assert.matches("while %(%*%(volatile unsigned %*%)tk != 4u%) __nanosleep%(32%);\n%s*%*tk = 0u;", diff)
    assert.matches("(&oa1[0][0])[j] = (ch == 0u ? __ldcg(hp + (4 + j) * 32) : sv[4 + j]);", diff, 1, true)
    assert.is_nil(diff:find("__cluster_dims__", 1, true))
    local _, kdd64 = source("differential", 64, 4096)
    assert.equal("wgmma; TMA loader (24 registers) + 3 computing warpgroups (160) on a chain a block, 128 keys a "
      .. "step, 2 stages, pipelined, row sums in the products, pairs combined in global memory", kdd64.design)
    -- but a head dim of 64 that would need two warpgroups (forgetting's gates at each row and key)
    -- stays on one warpgroup a block, cp.async
    local forget64, kd64 = source("forgetting", 64, 4096)
    assert.matches('__launch_bounds__(128, 3) fl_group1_mma(', forget64, 1, true)
    assert.equal("wgmma; 1 warpgroup, 64 keys a step, cp.async", kd64.design)
    assert.is_nil(forget64:find("fl_regs_dec<", 1, true))
    -- ALiBi's slope read once: three computing warpgroups there
    assert.matches('__launch_bounds__(512, 1) fl_group1_mma(', source("alibi", 64, 4096), 1, true)
    -- a pair bias [B, H, N, N] read at each (row, key) comes in tiles a step by TMA, 128 keys a step
    local evo, kde = source("evoformer_row", 128, nil, true)
    assert.equal("wgmma; TMA loader (24 registers) + 2 computing warpgroups (240), 128 keys a step, 2 stages, "
      .. "row-by-key inputs in tiles, persistent", kde.design)
    -- beside full's tiles: two stages of the bias, 128 rows by 128 keys, within sm_90's 227 KiB
    assert.equal((128 + 4 * 128) * 128 * 2 + 2 * 128 * 128 * 2 + 1024 + 13 * 8, kde.smem)
    assert.is_true(kde.smem <= 227 * 1024)
    assert.matches(", const __grid_constant__ fl_tmap tm3) {", evo, 1, true)
    -- two 64-key panels a stage, on the values' barrier, read from shared memory
    assert.matches("&tm3, (int)(st * 128LL) + 64, (int)(row0), plb0, bvf + s * 8u);", evo, 1, true)
    assert.matches("fl_lds16(sbb0 + s * 32768u", evo, 1, true)
    -- at head dim 64: three computing warpgroups, the bias's 192 rows a tile
    local evo64, kde64 = source("evoformer_row", 64, 2048, true)
    assert.equal("wgmma; TMA loader (24 registers) + 3 computing warpgroups (160), 128 keys a step, 2 stages, "
      .. "row-by-key inputs in tiles, row sums in the products, persistent", kde64.design)
    assert.matches("fl_lds16(sbb0 + s * 49152u", evo64, 1, true)
    -- keys not a multiple of 8 (rows of the bias not on 16 bytes): read from global memory
    local _, odd = source("evoformer_row", 128, 1001)
    assert.is_nil(odd.design:find("in tiles", 1, true))
  end)

  it("at head dim 64 the softmax's row sums come from the products: a column of ones beside the values", function()
    local src, kd = source("full", 64, 2048)
    assert.matches("row sums in the products$", kd.design)
    -- a tile of 128 rows of 128 bytes of ones after the operands' tiles (Q's 192 rows, two stages
    -- of keys and values), written by all 512 threads before the block's first barrier
    assert.equal((192 + 4 * 128) * 64 * 2 + 128 * 128 + 1024 + 13 * 8, kd.smem)
    assert.matches("const unsigned sone = sm0 + 90112u; /* a tile of ones */", src, 1, true)
    local fill = src:find("for (int j = tid; j < 4096; j += 512) fl_sts32(sone + j * 4u, 0x3F803F80u);", 1, true)
    assert.truthy(fill)
    assert.truthy(src:find("^\n%s*fl_proxy_fence%(%);\n%s*__syncthreads%(%);", (src:find("\n", fill, true))))
    -- the product 72 wide, its columns past 64 the descriptor's next panel: the ones
    assert.matches("wgmma.mma_async.sync.aligned.m64n72k16.f32.bf16.bf16", src, 1, true)
    assert.matches("const unsigned long long dv = fl_wg_desc(sp2, sone - (sp2)); /* the next panel: ones */", src, 1, true)
    assert.matches("fl_wgmma_rst_bf16_72(&oa0[0][0], pk0[kk]", src, 1, true)
    assert.matches("float oa0[9][4];", src, 1, true)
    assert.matches("for (int et = 0; et < 9; ++et)", src, 1, true)
    -- no adds a key, no rescale of their own, no sum across the quad: the ones' column is the sum
    assert.is_nil(src:find("ls0[h >> 1] +=", 1, true))
    assert.is_nil(src:find("ls0[r] *=", 1, true))
    assert.is_nil(src:find("fl_quad_sum(ls0", 1, true))
    assert.matches("ls0[0] = oa0[8][0], ls0[1] = oa0[8][2];", src, 1, true)
    -- the outputs stay 64 wide
    assert.matches("for (int eg = 0; eg < 2; ++eg)", src, 1, true)
    -- f16 operands: ones of f16
    assert.matches("fl_sts32(sone + j * 4u, 0x3C003C00u);", (source("full", 64, 2048, nil, "f16")), 1, true)
    -- two weighted sums, each with its row sum (differential): both products 72 wide; the second's
    -- weight is its row sum's summand times lambda, its column of ones divided by lambda
    local diff = source("differential", 64, 4096)
    assert.matches("ls0[0] = oa0[8][0], ls0[1] = oa0[8][2];", diff, 1, true)
    local by = diff:match("ls1%[0%] = oa1%[8%]%[0%] / ([%d.e+-]+)f, ls1%[1%] = oa1%[8%]%[2%] / [%d.e+-]+f;")
    assert.near(variants.load("differential").small.lambda, tonumber(by), 1e-7)
    -- no row sum (sigmoid), 128-wide values, the one-warpgroup kernel: row sums added as before
    for _, c in ipairs({{"sigmoid", 64, 2048}, {"full", 128, 2048}, {"full", 64, 1024}}) do
      local other, okd = source(c[1], c[2], c[3])
      assert.is_nil(other:find("sone", 1, true))
      assert.is_nil(okd.design:find("row sums", 1, true))
    end
    assert.matches("ls0[h >> 1] +=", (source("full", 128, 2048)), 1, true)
  end)

  it("a step's bookkeeping: the next step, the keys inside and the rescale factors in few instructions, but at 128 registers", function()
    -- no tables (unmasked): every warpgroup runs the same steps, the next is the one after; keys inside in 32 bits
    local full = source("full", 128, 2048)
    assert.matches("int nx = st + 1; /* the loop ends at chi */", full, 1, true)
    assert.matches("const int kv = 2048 - st * 128 < 128 ? 2048 - st * 128 : 128; /* keys of the step inside */",
      full, 1, true)
    assert.is_nil(full:find("int nx = chi;", 1, true))
    -- in the steps, the weighted sum's rescale factor is the row sum's (both exp of the maximum's change):
    -- computed once (the merge of a tile's parts, once a tile, keeps its own)
    assert.matches("f1[0] = f0[0], f1[1] = f0[1]; /* the same factor */", full, 1, true)
    -- tables (masks): the next step some warpgroup runs
    local causal = source("causal", 128, 2048)
    assert.matches("int nx = chi;", causal, 1, true)
    assert.matches("/* the same factor */", causal, 1, true)
    -- three computing warpgroups (D=64, 128 registers) keep the code they were measured with
    local narrow, kd = source("full", 64, 2048)
    assert.matches("3 computing warpgroups", kd.design, 1, true)
    assert.matches("int nx = chi;", narrow, 1, true)
    assert.matches("const int kv = 2048LL - key0 < 128LL ? (int)(2048LL - key0) : 128;", narrow, 1, true)
    -- one warpgroup (few keys a row): the factors apart (registers)
    local one, kd1 = source("sliding_window", 64, 2048)
    assert.matches("1 warpgroup", kd1.design, 1, true)
    assert.is_nil(one:find("the same factor", 1, true))
  end)

  it("ALiBi's slope times key less row: one fused multiply-add a score element, the row's part in the extremes and exponentials", function()
    for _, D in ipairs({64, 128}) do
      local src = source("alibi", D, 2048)
      -- steps with every key inside and the mask known true keep the product plus the slope's column part
      -- (over the score's scale 1/8), the row part slope·(first key − row) going to the row maximum and to
      -- the exponentials' row term
      local k = ("%.9e"):format(1 / math.sqrt(D))
      assert.matches(("s0[nt][h] = fmaf(hv0 * %.9ef, (float)(nt * 8 + (h & 1)), s0[nt][h]);"):format(math.sqrt(D)), src,
        1, true)
      -- (dkr is the thread's first column's: each thread's extreme takes its bias before the row's)
      assert.matches("mx0[r] = fl_maxn(mx0[r], fl_quad_max(fmaf(xm[r], " .. k .. "f, (hv0 * dkr[r]))));", src, 1, true)
      local e = ("%.9e"):format(1 / math.sqrt(D) * 1.44269504088896341):gsub("[%.%-%+]", "%%%0")
      assert.truthy(src:find("fl_exp2%(fmaf%(t%d+, " .. e .. "f, %(t%d+ %- t%d+%) %* 1%.44269504088896341f%)%)"), D)
      -- steps that may hold keys past the end or masked ones compute the body as written
      assert.truthy(src:find("const float t%d+ = %(float%)%(t%d+ %* t%d+%);"), D)
    end
    -- a plain scale stays a plain scale
    assert.is_nil(source("causal", 128, 2048):find("dkr[r]", 1, true))
  end)

  it("a running maximum that only its sums' exp rescales read lags: kept while the new one is 2^8 past it", function()
    local keep = "const float xo0[2] = {mx0[0], mx0[1]};"
    -- by selects, not branches (the row's maximum waits on it)
    local test = "const bool keep = fl_finite(xo0[r]) & fl_finite(mx0[r]) & (ma0[r] - mb0[r] <= 5.545177444e+00f);"
    local revert = "mx0[r] = keep ? xo0[r] : mx0[r]; ma0[r] = keep ? mb0[r] : ma0[r];"
    for _, c in ipairs({{"full", 64}, {"causal", 128}, {"softcap", 128}, {"document", 64}}) do
      local src = source(c[1], c[2], 2048)
      -- kept before the step's extremes, put back after them (both classes of step: full and masked)
      local k = src:find(keep, 1, true)
      assert.truthy(k, c[1])
      assert.truthy(src:find("mx0[r] = fl_maxn(mx0[r], fl_quad_max(xm[r])", k, true), c[1])
      local t = src:find(test, k, true)
      assert.truthy(t, c[1])
      assert.truthy(src:find(revert, t, true), c[1])
    end
    -- finite in one compare (false for NaN): |x| < inf
    assert.matches("bool fl_finite(float x) { return fabsf(x) < FL_INFF; }", (source("full", 64, 2048)), 1, true)
    -- every rescale reading it finds nothing changed: the sum's and the weighted sum's (D=128)
    assert.matches(revert .. " ma1[r] = keep ? mb1[r] : ma1[r];", (source("causal", 128, 2048)), 1, true)
    -- both maxima of differential attention (a chain a block: each chain's steps name theirs mx0)
    local diff = source("differential", 128, 2048)
    assert.equal(4, select(2, diff:gsub("const float xo0%[2%] = {mx0%[0%], mx0%[1%]};", "")))
    -- read by an epilogue (log-sum-exp, a sink's weight) or by another kernel: exact maxima
    for _, name in ipairs({"lse", "sinks"}) do
      assert.is_nil((source(name, 64, 2048)):find("xo0", 1, true), name)
    end
    -- the mma.sync path prints the same step
    local V = variants.load("full")
    local inputs = V.inputs(1, 2, 1024, 128, {dtype = "bf16", seed = 1}, V.small)
    local g = fl.trace(V.make(V.small), table.unpack(inputs))
    for _, p in ipairs(fl.passes) do g:run(p) end
    local mma = g:plan():cuda(nil, {path = "mma"})
    assert.matches(revert, mma, 1, true)
  end)

  it("an unmasked kernel's last blocks may run in parts of their keys, the last part merging the others", function()
    local full, kd = source("full", 128, 2048)
    -- the word of parts after the flags; the later parts of the last blocks after the blocks; a part's steps
    assert.matches("int *fix, const unsigned tail, int *err", full, 1, true)
    assert.matches("const unsigned nb = 16u, ny = 2u, nk = nb * ny; /* the blocks, before any part */", full, 1, true)
    assert.matches("lin = nk - tl + e % tl, part = 1u + e / tl;", full, 1, true)
    assert.matches("if (parted) low[w] = (int)(part * 16u / tp), hiw[w] = inside ? (int)((part + 1u) * 16u / tp) : 0;",
      full, 1, true)
    -- each warp's state stored, a ticket; the last merges: maxima combined, both sides rescaled, zeros kept
    assert.matches("fin = __shfl_sync(0xffffffffu, tn, 0) == tp - 1u;", full, 1, true)
    assert.matches("mx0[0] = fl_maxn(xs0[0], mx8[0]), mx0[1] = fl_maxn(xs0[1], mx8[1]);", full, 1, true)
    assert.matches("ls0[r] = (ls0[r] == 0.0f ? 0.0f : ls0[r] * f0[r]) + (ls8[r] == 0.0f ? 0.0f : ls8[r] * g0[r]);",
      full, 1, true)
    -- the launch: at most 4 parts of 16 steps, 8 warps of 68 floats (2 + 2 + 64)
    assert.same({most = 4, warps = 8, floats = 68, steps = 16}, kd.parts)
    -- masked (blocks of many lengths), persistent, or a chain a block: none
    for _, c in ipairs({{"causal", 128, 2048}, {"full", 128, 960, true}, {"differential", 128, 2048}}) do
      local src, ckd = source(c[1], c[2], c[3], c[4])
      assert.is_nil(src:find("const unsigned tail", 1, true), c[1])
      assert.is_nil(ckd.parts, c[1])
    end
  end)

  it("refuses an unknown path", function()
    local V = variants.load("full")
    local g = fl.trace(V.make(V.small), table.unpack(V.inputs(1, 1, 16, 16, {dtype = "bf16", seed = 1}, V.small)))
    local ok, err = pcall(g:plan().cuda, g:plan(), nil, {path = "volta"})
    assert.is_false(ok)
    assert.matches("option 'path' must be \"auto\", \"hopper\" or \"mma\", got 'volta'", err, 1, true)
  end)

  it("source needs example inputs", function()
    local attn = fl.compile(variants.load("full").fn)
    local ok, err = pcall(attn.source, attn)
    assert.is_false(ok)
    assert.matches("cuda_source_spec%.lua:%d+: source: pass example inputs", err)
  end)
end)
