-- fl.jit: NVRTC compiles CUDA C++ for sm_90 and sm_80 with no GPU, reports
-- registers and spills, caches in memory and on disk, and fails clearly.
local fl = require "flashlight"
local run = require "run"

local ok, nvrtc = fl.jit.available()
if not ok then
  local why = "the NVRTC specs are skipped: " .. nvrtc
  io.stderr:write("jit_spec: ", why, "\n")
  describe("fl.jit", function()
    it("needs NVRTC", function()
      if os.getenv("FLASHLIGHT_REQUIRE_NVRTC") == "1" then error(why) end
      pending(why)
    end)
  end)
  return
end

-- Each run compiles sources of its own, so that the first compile of each is
-- a miss whatever an earlier run left in the cache.
local nonce = ("// %d %d %d\n"):format(run.pid(), os.time(), math.random(1, 1e9))

local function source(body)
  return nonce .. body
end

local add = source [[
extern "C" __global__ void add(float *x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}
]]

-- Sixty-four live values a thread: spills when held to 32 registers.
local spilling = source [[
extern "C" __global__ void crowded(float *x, int n) {
  float v[64];
#pragma unroll
  for (int k = 0; k < 64; k++) v[k] = x[threadIdx.x * 64 + k] * n;
  float acc = 0;
#pragma unroll
  for (int k = 0; k < 64; k++) acc += v[k] * v[(k * 7) % 64];
#pragma unroll
  for (int k = 0; k < 64; k++) x[k * 33 + threadIdx.x] = v[k] + acc;
}
]]

-- Runs Lua code in a fresh flua with the environment settings env.
local function flua(env, code)
  local file = run.tmpname(".lua")
  local h = assert(io.open(file, "w"))
  h:write(code)
  h:close()
  local out, rc = run.sh(("%s build/flua %s"):format(env, file))
  os.remove(file)
  return out, rc
end

describe("fl.jit", function()
  it("says which NVRTC it loaded", function()
    assert.matches("^NVRTC %d+%.%d+ %(.*libnvrtc", nvrtc)
  end)

  for _, arch in ipairs({"sm_90", "sm_80"}) do
    it("compiles a kernel for " .. arch .. " and reports its registers", function()
      local r = fl.jit.compile(add, {arch = arch, name = "add.cu"})
      assert.equal("cubin", r.kind)
      assert.equal(arch, r.arch)
      assert.equal("\127ELF", r.image:sub(1, 4))
      assert.is_false(r.cached)
      assert.equal("miss", r.cache)
      assert.is_true(r.ms > 0)
      assert.matches("Compiling entry function 'add' for '" .. arch .. "'", r.log)
      assert.equal(1, #r.kernels)
      local k = r.kernels[1]
      assert.equal("add", k.name)
      assert.is_true(k.registers > 0 and k.registers <= 255)
      assert.equal(0, k.spill_stores)
      assert.equal(0, k.spill_loads)
      assert.equal(0, k.shared)
    end)
  end

  it("finds a second compile in memory, with the same image and report", function()
    local first = fl.jit.compile(add, {arch = "sm_90", name = "add.cu"})
    local again = fl.jit.compile(add, {arch = "sm_90", name = "add.cu"})
    assert.is_true(again.cached)
    assert.equal("memory", again.cache)
    assert.equal(first.image, again.image)
    assert.equal(first.log, again.log)
    assert.same(first.kernels, again.kernels)
    assert.is_true(again.ms < 50)
  end)

  it("keys the cache on options and name too", function()
    assert.is_false(fl.jit.compile(add, {arch = "sm_90", name = "add.cu",
                                         options = {"-DUNUSED=1"}}).cached)
    assert.is_false(fl.jit.compile(add, {arch = "sm_90", name = "other.cu"}).cached)
  end)

  it("reports spills and static shared memory", function()
    local r = fl.jit.compile(spilling, {options = {"-maxrregcount=32"}})
    local k = r.kernels[1]
    assert.equal("crowded", k.name)
    assert.equal(32, k.registers)
    assert.is_true(k.spill_stores > 0 and k.spill_loads > 0 and k.stack > 0)
    local s = fl.jit.compile(source [[
extern "C" __global__ void reverse(float *x) {
  __shared__ float s[256];
  s[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  x[threadIdx.x] = s[255 - threadIdx.x];
}
]])
    assert.equal(1024, s.kernels[1].shared)
  end)

  it("gives PTX for a compute_NN arch", function()
    local r = fl.jit.compile(add, {arch = "compute_90"})
    assert.equal("ptx", r.kind)
    assert.truthy(r.image:find(".entry add", 1, true))
    assert.equal("\0", r.image:sub(-1))
    assert.same({}, r.kernels)
  end)

  it("shows NVRTC's error with its line when the source does not compile", function()
    local bad = source [[
extern "C" __global__ void f(float *x) {
  x[0] = y;
}
]]
    local ok2, err = pcall(function() return fl.jit.compile(bad, {name = "bad.cu"}) end)
    assert.is_false(ok2)
    assert.matches("jit_spec%.lua:%d+: bad%.cu did not compile for sm_90:", err)
    assert.matches('bad%.cu%(3%): error: identifier "y" is undefined', err)
    assert.matches("x%[0%] = y;", err)
  end)

  it("shows ptxas's error too (NVRTC hides it when ptxas reports)", function()
    local ok2, err = pcall(fl.jit.compile, source [[
extern "C" __global__ void big(float *x) {
  __shared__ float s[20000];
  s[threadIdx.x] = x[0];
  __syncthreads();
  x[1] = s[5];
}
]])
    assert.is_false(ok2)
    assert.matches("ptxas error.*'big' uses too much shared data", err)
  end)

  it("refuses an arch NVRTC does not know, listing the ones it does", function()
    local ok2, err = pcall(fl.jit.compile, add, {arch = "sm_1000"})
    assert.is_false(ok2)
    assert.matches("NVRTC %d+%.%d+ cannot compile for sm_1000 %(it knows .*sm_90", err)
    ok2, err = pcall(fl.jit.compile, add, {arch = "gfx90a"})
    assert.is_false(ok2)
    assert.matches("unknown CUDA arch 'gfx90a'", err)
  end)

  it("refuses bad options", function()
    local cases = {
      {{options = {"--no-such-flag"}}, "unrecognized option %-%-no%-such%-flag"},
      {{options = {1}}, "options%[1%] must be a string"},
      {{options = "-O3"}, "'options' must be a list"},
      {{arch = 90}, "'arch' must be a string"},
      {{archs = "sm_90"}, "unknown option 'archs'"},
    }
    for _, c in ipairs(cases) do
      local ok2, err = pcall(fl.jit.compile, add, c[1])
      assert.is_false(ok2)
      assert.matches(c[2], err)
    end
    assert.matches("zero byte", select(2, pcall(fl.jit.compile, "a\0b")))
  end)

  describe("on disk", function()
    local dir
    before_each(function()
      dir = run.tmpname("-cache")
    end)
    after_each(function()
      run.sh("rm -rf " .. dir)
    end)

    local probe = ([[
local fl = require "flashlight"
local r = fl.jit.compile(%q, {name = "add.cu"})
print(r.cache, r.kernels[1].name, r.kernels[1].registers > 0, #r.image)
]]):format(add)

    it("serves a fresh process from the files an earlier one wrote", function()
      local env = "FLASHLIGHT_CACHE=" .. dir
      local out, rc = flua(env, probe)
      assert.equal(0, rc, out)
      assert.matches("^miss\tadd\ttrue\t%d+\n$", out)
      local files = run.sh("ls " .. dir .. "/jit")
      assert.matches("^%x+%.fljit\n$", files)
      local out2 = flua(env, probe)
      assert.equal(out:gsub("^miss", "disk"), out2)
    end)

    it("compiles again over a corrupt file, and mends it", function()
      local env = "FLASHLIGHT_CACHE=" .. dir
      flua(env, probe)
      local file = dir .. "/jit/" .. run.sh("ls " .. dir .. "/jit"):match("%S+")
      local h = assert(io.open(file, "r+b"))
      h:seek("set", 100)
      h:write("garbage")
      h:close()
      assert.matches("^miss", (flua(env, probe)))
      assert.matches("^disk", (flua(env, probe)))
      run.sh("truncate -s 10 " .. file)
      assert.matches("^miss", (flua(env, probe)))
    end)

    it("compiles when the cache cannot be written, or is off", function()
      assert.matches("^miss\tadd", (flua("FLASHLIGHT_CACHE=/proc/flashlight", probe)))
      assert.matches("^miss\tadd", (flua("FLASHLIGHT_CACHE=off", probe)))
      assert.matches("^miss\tadd", (flua("FLASHLIGHT_CACHE=off", probe)))
    end)

    it("lives under $FLASHLIGHT_CACHE, else $XDG_CACHE_HOME, else ~/.cache", function()
      local dirs = [[print(require("flashlight").jit.cache_dir())]]
      assert.equal(dir .. "/jit\n", (flua("FLASHLIGHT_CACHE=" .. dir, dirs)))
      assert.equal("/x/flashlight/jit\n", (flua("FLASHLIGHT_CACHE= XDG_CACHE_HOME=/x", dirs)))
      assert.equal("/h/.cache/flashlight/jit\n",
                   (flua("FLASHLIGHT_CACHE= XDG_CACHE_HOME= HOME=/h", dirs)))
      assert.equal("nil\n", (flua("FLASHLIGHT_CACHE=off", dirs)))
    end)
  end)

  it("says NVRTC is not available, and why, when the library does not load", function()
    local out, rc = flua("FLASHLIGHT_NVRTC=/nonexistent/libnvrtc.so.13", [[
local fl = require "flashlight"
print(fl.jit.available())
fl.jit.compile("")
]])
    assert.equal(1, rc)
    assert.matches("^false\tNVRTC is not available: FLASHLIGHT_NVRTC=/nonexistent/libnvrtc%.so%.13 "
                   .. "could not be loaded", out)
    assert.matches("flua: [^\n]*%.lua:3: NVRTC is not available", out)
  end)

  if not fl.cuda_available() then
    it("loads a module only where there is a GPU", function()
      local r = fl.jit.compile(add)
      local ok2, err = pcall(function() return fl.jit.load(r) end)
      assert.is_false(ok2)
      assert.matches("jit_spec%.lua:%d+: CUDA is not available", err)
    end)
  end
end)
