-- fl.jit.load and module:launch on a GPU: a cubin and PTX run, dynamic
-- shared memory above 48 KiB, and the errors of a bad launch.
local fl = require "flashlight"

local src = [[
extern "C" __global__ void add(float *x, int n, float v) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += v + i;
}
extern "C" __global__ void reverse(float *x, int n) {
  extern __shared__ float s[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = i;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = s[n - 1 - i];
}
]]

describe("fl.jit on a GPU #gpu", function()
  local arch = fl.device_info().arch

  for _, kind in ipairs({arch, (arch:gsub("^sm_", "compute_"))}) do
    it("launches kernels compiled for " .. kind, function()
      local m = fl.jit.load(fl.jit.compile(src, {arch = kind}))
      local x = fl.zeros({1000}, {device = "cuda"})
      m:launch("add", 4, {256}, {x, 1000, 0.5})
      local t = x:to("cpu"):totable()
      for i = 1, 1000 do assert.equal(0.5 + (i - 1), t[i]) end

      local n = 30000 -- 120 KB of dynamic shared memory
      local y = fl.zeros({n}, {device = "cuda"})
      m:launch("reverse", 1, 1024, {y, n}, {shared = n * 4})
      local u = y:to("cpu")
      assert.equal(n - 1, u:get(1))
      assert.equal(0, u:get(n))
      m:close()
      assert.equal("jit module (closed)", tostring(m))
    end)
  end

  it("names the kernel and the driver's error when a launch is wrong", function()
    local m = fl.jit.load(fl.jit.compile(src, {arch = arch}))
    local x = fl.zeros({4}, {device = "cuda"})
    local cases = {
      {{"nope", 1, 1, {x}}, "no kernel 'nope'"},
      {{"add", 1, 4096, {x, 1, 1.0}}, "kernel add on cuda:0 could not be launched: CUDA_ERROR_INVALID_VALUE"},
      {{"reverse", 1, 32, {x, 4}, {shared = 400 * 1024}}, "kernel reverse cannot have 409600 bytes"},
      {{"add", 1, 1, {fl.zeros({4}), 1, 1.0}}, "argument 1 must be an open tensor on cuda:0"},
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(m.launch, m, table.unpack(c[1]))
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    local ok, err = pcall(fl.jit.load, "not a module image")
    assert.is_false(ok)
    assert.matches("cuModuleLoadData failed: CUDA_ERROR_INVALID_IMAGE", err, 1, true)
  end)
end)
