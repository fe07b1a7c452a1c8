-- bench/bench.lua on a machine without a GPU: --device cpu times the CPU
-- executor on small shapes; the options, the table, the JSON and the saved
-- .npy inputs and outputs are the ones a GPU run makes.
local run = require "run"
local fl = require "flashlight"
local sh = run.sh

describe("bench/bench.lua", function()
  local dir = os.tmpname()
  os.remove(dir)

  it("times variants at several shapes and writes the table, JSON and .npy files", function()
    local out, rc = sh(("build/flua bench/bench.lua --device cpu --variants full,document --shapes '1,2,40,16;1,1,24,8' " ..
      "--iters 2 --json %s.json --save-inputs %s/in --save-outputs %s/out"):format(dir, dir, dir))
    assert.equal(0, rc, out)
    assert.matches("| variant | B,H,N,D | ms | TFLOP/s |", out, 1, true)
    for _, row in ipairs({"| full | 1,2,40,16 |", "| document | 1,2,40,16 |", "| full | 1,1,24,8 |",
      "| document | 1,1,24,8 |"}) do
      assert.matches(row, out, 1, true)
    end
    local f = assert(io.open(dir .. ".json"))
    local text = f:read("a")
    f:close()
    assert.matches('"results":%[{', text)
    assert.matches('"variant":"document"', text)
    assert.matches('"shape":%[1,1,24,8%]', text)
    assert.matches('"calls":2', text)
    -- the inputs as the program saw them, the outputs as it returned them
    local q = fl.load(dir .. "/in/document/1x2x40x16/in1_q.npy", {dtype = "bf16"})
    assert.same({1, 2, 40, 16}, q:shape())
    assert.equal("bf16", q:dtype())
    local doc = fl.load(dir .. "/in/document/1x2x40x16/in4_doc.npy")
    assert.equal("i32", doc:dtype())
    local o = fl.load(dir .. "/out/full/1x1x24x8/out1.npy")
    assert.same({1, 1, 24, 8}, o:shape())
    assert.equal("f32", o:dtype())
    os.execute(("rm -rf '%s' '%s.json'"):format(dir, dir))
  end)

  it("refuses what it does not know, naming it", function()
    local out, rc = sh("build/flua bench/bench.lua --device cpu --frobs 3 2>&1")
    assert.equal(2, rc)
    assert.matches("unknown argument '--frobs'", out, 1, true)
    out, rc = sh("build/flua bench/bench.lua --device cpu --shapes 1,2 2>&1")
    assert.equal(2, rc)
    assert.matches("a shape is B,H,N,D (four numbers), got '1,2'", out, 1, true)
    out, rc = sh("build/flua bench/bench.lua --device cpu --dtype f64 2>&1")
    assert.equal(2, rc)
    assert.matches("--dtype must be bf16 or f16, got 'f64'", out, 1, true)
    for _, bad in ipairs({"-1", "61", "soon"}) do
      out, rc = sh("build/flua bench/bench.lua --device cpu --rest " .. bad .. " 2>&1")
      assert.equal(2, rc)
      assert.matches("--rest must be seconds from 0 to 60, got '" .. bad .. "'", out, 1, true)
    end
  end)

  it("rests before a case's timed calls when asked (the cool regime), and says so", function()
    local t0 = fl.clock()
    local out, rc = sh(("build/flua bench/bench.lua --device cpu --variants full,causal --shapes '1,1,24,8' " ..
      "--iters 2 --rest 0.25 --json %s.json"):format(dir))
    assert.equal(0, rc, out)
    assert.is_true(fl.clock() - t0 >= 0.5, "two cases, 0.25 s each")
    assert.matches("median of up to 2 calls after a warm-up call and 0.25 s of rest", out, 1, true)
    local f = assert(io.open(dir .. ".json"))
    local text = f:read("a")
    f:close()
    assert.matches('"rest_s":0.25', text, 1, true)
    os.remove(dir .. ".json")
  end)

  it("says so when asked for the GPU without one", function()
    if fl.cuda_available() then return end
    local out, rc = sh("build/flua bench/bench.lua --variants full")
    assert.equal(0, rc)
    assert.matches("bench: no GPU here", out, 1, true)
  end)
end)

describe("bench/kernels.lua", function()
  -- a table row as a pattern: the text as is, each # a number
  local function row(text)
    return (text:gsub("[%(%)%.%+%-%*%?%[%]%^%$%%]", "%%%0"):gsub("#", "%%d+"))
  end

  it("lists each variant's kernels with their design and NVRTC's report, without a GPU", function()
    local out, rc = sh("build/flua bench/kernels.lua --variants full,sliding_window --shapes '1,2,1000,128;1,1,300,64'")
    assert.equal(0, rc, out)
    assert.matches(row("| full | 1,2,1000,128 | fl_group1_mma | hopper | wgmma; TMA loader (24 registers) + 2 computing "
      .. "warpgroups (240), 128 keys a step, 2 stages, pipelined, ping-pong | 384 | # | 0 | 161 KiB |"), out)
    assert.matches(row("| sliding_window | 1,2,1000,128 | fl_group1_mma | hopper | wgmma; 1 warpgroup, 64 keys a step, "
      .. "cp.async | 128 | # | 0 | # KiB |"), out)
    assert.matches(row("| full | 1,1,300,64 | fl_group1_mma | hopper | wgmma; 1 warpgroup, # keys a step, cp.async |"), out)
    assert.matches(row("| full | 1,2,1000,128 | fl_group1 | scalar | scalar | 128 | # | 0 | 0 |"), out)
    -- persistent: asked for, or "auto" for 8 multiprocessors (16 tiles, two rounds); not for 16 (a tile each)
    for _, how in ipairs{"--persistent on", "--sms 8", "--persistent auto --sms 16"} do
      out, rc = sh("build/flua bench/kernels.lua --variants full --shapes '1,2,1000,128' " .. how)
      assert.equal(0, rc, out)
      -- the persistent kernel (three stages) spills a word or two in its epilogue (the quad-transposed stores), no more
      local spilled = out:match(row("| full | 1,2,1000,128 | fl_group1_mma | hopper | wgmma; TMA loader (24 registers) + 2 "
        .. "computing warpgroups (240), 128 keys a step, 3 stages, pipelined, ping-pong, persistent | 384 | # | ")
        .. "(%d+)" .. row(" | 225 KiB |"))
      if how:find("16", 1, true) then
        assert.is_nil(spilled, out)
        assert.matches("2 stages, pipelined, ping-pong | 384 |", out, 1, true)
      else
        assert.is_not_nil(spilled, out)
        assert.is_true(tonumber(spilled) <= 8, out)
      end
    end
    out, rc = sh("build/flua bench/kernels.lua --persistent maybe 2>&1")
    assert.equal(2, rc, out)
    assert.matches("--persistent is on, off or auto, got 'maybe'", out, 1, true)
    out, rc = sh("build/flua bench/kernels.lua --sms 0 2>&1")
    assert.equal(2, rc, out)
    assert.matches("--sms is a count of multiprocessors, got '0'", out, 1, true)
  end)

  it("refuses what it does not know, naming it", function()
    local out, rc = sh("build/flua bench/kernels.lua --frobs 3 2>&1")
    assert.is_not.equal(0, rc)
    assert.matches("kernels: unknown argument '--frobs'", out, 1, true)
    out, rc = sh("build/flua bench/kernels.lua --shapes 1,2 2>&1")
    assert.is_not.equal(0, rc)
    assert.matches("kernels: a shape is B,H,N,D, got '1,2'", out, 1, true)
  end)
end)

describe("bench/builds.sh and scripts/dist_builds.sh", function()
  it("time every flua of a folder with one set of arguments and print a column a build (medians of ROUNDS)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert.equal(0, select(2, sh(("mkdir -p %s/d %s/o && ln -s $PWD/build/flua %s/d/flua && ln -s $PWD/build/flua %s/d/flua_x")
      :format(dir, dir, dir, dir))))
    local out, rc = sh(("DIST=%s/d OUT=%s/o sh bench/builds.sh --device cpu --variants full,causal --shapes '1,1,24,8' --iters 1")
      :format(dir, dir))
    assert.equal(0, rc, out)
    assert.matches("| variant | B,H,N,D | flua | flua_x |", out, 1, true)
    assert.matches("| full | 1,1,24,8 | [%d.]+ | [%d.]+ |", out)
    assert.matches("| causal | 1,1,24,8 | [%d.]+ | [%d.]+ |", out)
    -- ROUNDS=3: a log a build a round, and each case's median over the rounds (a stand-in build
    -- that prints 10, 30, then 20 TFLOP/s)
    local fake = io.open(dir .. "/d/flua_y", "w")
    fake:write("#!/bin/sh\nn=$(cat " .. dir .. "/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > " .. dir .. "/n\n",
      "case $n in 1) v=10 ;; 2) v=30 ;; *) v=20 ;; esac\necho \"| full | 1,1,24,8 | 0.1 | $v |\"\n")
    fake:close()
    assert.equal(0, select(2, sh(("chmod +x %s/d/flua_y"):format(dir))))
    out, rc = sh(("ROUNDS=3 DIST=%s/d OUT=%s/o sh bench/builds.sh --device cpu --variants full --shapes '1,1,24,8' --iters 1")
      :format(dir, dir))
    assert.equal(0, rc, out)
    assert.matches("| variant | B,H,N,D | flua | flua_x | flua_y |", out, 1, true)
    assert.matches("| full | 1,1,24,8 | [%d.]+ | [%d.]+ | 20.0 |", out)
    for _, log in ipairs({"flua_1", "flua_3", "flua_x_2", "flua_y_3"}) do
      assert.is_not_nil(io.open(("%s/o/bench_%s.log"):format(dir, log)), log)
    end
    out, rc = sh(("DIST=%s/none sh bench/builds.sh --device cpu 2>&1"):format(dir))
    assert.equal(2, rc)
    assert.matches("builds: no flua in", out, 1, true)
    out, rc = sh(("sh scripts/dist_builds.sh %s/d 'Bad=-DX' 2>&1"):format(dir))
    assert.equal(2, rc)
    assert.matches("dist_builds: a name is letters, digits and _: 'Bad'", out, 1, true)
    sh(("rm -rf %s"):format(dir))
  end)
end)

describe("bench/stamps.py", function()
  it("splits the last launch's blocks into the wait for Q, the steps, the outputs, gaps and the tail", function()
    local path = os.tmpname()
    local f = io.open(path, "w")
    -- two launches; the second: two blocks of two warpgroups on multiprocessor 5, one after the
    -- other (the second's warpgroup 1 without rows), times in ns
    f:write("ST 0 0 5 0 1000 3000 9000 10000 4\n", "noise\n")
    f:write("ST 0 0 5 100000 101000 103000 109000 110000 2147483652\n",
            "ST 0 1 5 100000 101000 103000 109000 110000 2147483652\n",
            "ST 1 0 5 111000 112000 114000 120000 121000 2147483652\n",
            "ST 1 1 5 111000 112000 114000 120000 121000 4\n")
    f:close()
    local out, rc = sh("python3 bench/stamps.py " .. path)
    os.remove(path)
    assert.equal(0, rc, out)
    assert.matches("launch: 21.0 us, 4 warpgroups", out, 1, true)
    assert.matches("wait for Q           median 1.00", out, 1, true)
    assert.matches("first step           median 2.00", out, 1, true)
    assert.matches("other steps          median 6.00", out, 1, true)
    assert.matches("last product, output median 1.00", out, 1, true)
    assert.matches("block (some rows)    median 9.00, p10 9.00, p90 9.00 x 1", out, 1, true)
    assert.matches("gap, end to next Q   median 2.00", out, 1, true)
    assert.matches("multiprocessors (1): busy 85.7%, gaps 9.5%, tail 0.0%", out, 1, true)
    out, rc = sh("python3 bench/stamps.py /dev/null 2>&1")
    assert.equal(1, rc)
    assert.matches("no ST lines", out, 1, true)
  end)
end)
