-- On a machine with a GPU: plan:launch's options. out = {...} makes the
-- kernels write into the caller's tensors (NaN-filled first) and returns
-- those same objects; kernels = "scalar" gives the default kernels' numbers;
-- output tensors that do not fit are refused before anything runs.
-- FL_GPU_VARIANTS picks variants.
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"
local A = require "variants.common"

local B, H, N, D = 1, 2, 100, 64

local f32_tables = R.host_tables

-- A variant's graph after the passes, and its bf16 inputs on the GPU.
local function planned(V)
  local cpu = V.inputs(B, H, N, D, {dtype = "bf16", seed = 11}, V.small)
  local gpu = {}
  for k, t in ipairs(cpu) do gpu[k] = t:to("cuda") end
  local g = fl.trace(V.make(V.small), table.unpack(cpu))
  for _, p in ipairs(fl.passes) do g:run(p) end
  return g, gpu
end


local function assert_same_objects(want, got)
  assert.equal(#want, #got)
  for o = 1, #want do assert.is_true(rawequal(want[o], got[o]), "output " .. o) end
end

local function assert_near(what, got, want)
  local err = R.rel_error(got, want)
  assert.is_true(err < 1e-2, ("%s: error %.3g"):format(what, err))
end

describe("plan:launch with out and kernels #gpu", function()
  for _, V in ipairs(variants.all(os.getenv("FL_GPU_VARIANTS"))) do
    it(V.name .. ": writes into the given tensors; scalar kernels agree", function()
      local g, gpu = planned(V)
      local plan = g:plan()
      local fresh = f32_tables(plan:launch(gpu))
      local out = A.poisoned(g)
      local got = plan:launch(gpu, nil, {out = out})
      assert_same_objects(out, got)
      assert_near(V.name .. " out", f32_tables(got), fresh)
      assert_near(V.name .. " scalar", f32_tables(plan:launch(gpu, nil, {kernels = "scalar"})), fresh)
      out = A.poisoned(g)
      got = plan:launch(gpu, nil, {kernels = "scalar", out = out})
      assert_same_objects(out, got)
      assert_near(V.name .. " scalar out", f32_tables(got), fresh)
      assert_near(V.name .. " auto again", f32_tables(plan:launch(gpu, nil, {kernels = "auto"})), fresh)
    end)
  end

  it("plan:last_ms is the device time of the last launch, on each path", function()
    local V = variants.load("causal")
    local g, gpu = planned(V)
    local plan = g:plan()
    assert.is_nil(plan:last_ms())
    for _, path in ipairs({"auto", "mma"}) do
      plan:launch(gpu, nil, {path = path})
      local ms = plan:last_ms()
      assert.is_true(type(ms) == "number" and ms > 0 and ms < 10000, path .. ": " .. tostring(ms))
      assert.equal(path == "mma" and "mma" or fl.device_info().arch == "sm_90" and "hopper" or "mma",
        plan:compiled().path)
    end
  end)

  it("fl.compile's out on cuda inputs returns the given tensors", function()
    local V = variants.load("lse")
    local g, gpu = planned(V)
    local want = f32_tables({fl.compile(V.make(V.small))(table.unpack(gpu))})
    local out = A.poisoned(g)
    local prog = fl.compile(V.make(V.small), {out = out})
    local got = {prog(table.unpack(gpu))}
    assert_same_objects(out, got)
    assert_near("lse compiled with out", f32_tables(got), want)
  end)

  it("fills every output when a value is returned twice or an input is returned", function()
    local x = fl.tensor({{0, 1}, {2, 3}}, {dtype = "f32"})
    local g = fl.trace(function(q) local a = q:exp() return a, a, q end, x)
    local plan = g:plan()
    local want = f32_tables(g:eval({x}))
    local xs = {x:to("cuda")}
    assert_near("fresh", f32_tables(plan:launch(xs)), want)
    local out = A.poisoned(g)
    assert_same_objects(out, plan:launch(xs, nil, {out = out}))
    assert_near("given", f32_tables(out), want)
  end)

  it("refuses output tensors that do not fit, before anything runs", function()
    local g, gpu = planned(variants.load("full"))
    local plan = g:plan()
    local cases = {
      {fl.zeros({B, H, N, D}, {dtype = "bf16"}), "') is on cpu, expected cuda:0"},
      {fl.zeros({B, H, N, D}, {dtype = "f32", device = "cuda"}), "') is f32, expected bf16"},
      {fl.zeros({B, H, N + 1, D}, {dtype = "bf16", device = "cuda"}),
       "') has shape [1,2,101,64], expected [1,2,100,64]"},
      {gpu[1], "output 1 is the memory of input 1 ("},
    }
    for _, c in ipairs(cases) do
      local t = c[1]
      local ok, err = pcall(plan.launch, plan, gpu, nil, {out = {t}})
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    local x = fl.zeros({4}, {device = "cuda"})
    local two = fl.trace(function(q) return q:exp(), q:tanh() end, fl.zeros({4})):plan()
    local t = fl.zeros({4}, {device = "cuda"})
    local ok, err = pcall(two.launch, two, {x}, nil, {out = {t, t}})
    assert.is_false(ok)
    assert.matches("outputs 1 and 2 are the same memory", err, 1, true)
  end)
end)
