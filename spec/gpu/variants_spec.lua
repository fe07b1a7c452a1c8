-- On a machine with a GPU: every variant of scripts/variants runs as CUDA
-- kernels generated from its plan (the default path: tensor-core kernels
-- for fused attention groups), at head dims 64 and 128, several sequence
-- lengths, bf16 and f16, and equals a double-precision reference on the
-- same inputs.
--
--   * Inputs are fresh per case: the seed depends on the variant, D, N and
--     the dtype (and FL_GPU_SEED, default 0, to draw another set).
--   * Outputs are poisoned: the kernels write into NaN-filled tensors
--     (opts.out), so a position no kernel writes reads NaN and fails.
--   * Reference, N <= 128: the CPU executor (double inside, f32 out).
--     N > 128: the plan's scalar CUDA kernels (kernels = "scalar": one
--     thread a row, double inside, f32 out; a path that shares no kernel
--     code with the tensor-core one), themselves checked on a few sampled
--     query rows (first, last, two random; one head, one batch) against the
--     plain-Lua f64 reference of scripts/variants/reference.lua, as is the
--     default path.
--   * Tolerance: relative error (R.rel_error) under 1e-2 for bf16, 2e-3 for
--     f16; the scalar kernels against plain Lua under 1e-4.
--   * Constants: a variant's `small` ones up to N = 128, its benchmark ones
--     (`params`: window 256, prefix 512, cap 30, ...) above.
--
-- FL_GPU_PATH picks the tensor-core kernels ("auto": wgmma on an H100,
-- else mma.sync; "hopper"; "mma"), FL_GPU_PERSISTENT=1 persistent ones
-- (opts.persistent). FL_GPU_N lists the lengths (default 1,37,1024,4096),
-- FL_GPU_BH the batch and heads (default 1,2), FL_GPU_VARIANTS picks variants, FL_GPU_D the
-- head dims (default 64,128). Each case prints a line with its errors and
-- times; each variant a summary line.
local fl = require "flashlight"
local variants = require "variants"
local R = require "variants.reference"
local A = require "variants.common"

local TOL = {bf16 = 1e-2, f16 = 2e-3}
local PATH = os.getenv("FL_GPU_PATH") or "auto"  -- the tensor-core kernels: auto, hopper or mma
local PERSISTENT = assert(A.persistent(os.getenv("FL_GPU_PERSISTENT"))) -- opts.persistent of plan:launch
local TOL_SCALAR = 1e-4   -- scalar kernels (f64 inside, f32 out) vs plain Lua f64
local CPU_MAX_N = 128     -- up to here the CPU executor is the reference
-- Inputs larger than this are read element by element for the Lua rows.
local LAZY_NUMEL = tonumber(os.getenv("FL_GPU_LAZY_NUMEL") or "") or 4 * 1024 * 1024

local function ints(name, default)
  local out = {}
  for w in (os.getenv(name) or default):gmatch("%d+") do out[#out + 1] = tonumber(w) end
  return out
end

local LENGTHS = ints("FL_GPU_N", "1,37,1024,4096")
local DIMS = ints("FL_GPU_D", "64,128")
local BH = ints("FL_GPU_BH", "1,2")
local B, H = BH[1] or 1, BH[2] or 2
local SEED0 = tonumber(os.getenv("FL_GPU_SEED") or "0")
local DTYPES = {"bf16", "f16"}

local function say(fmt, ...)
  io.stdout:write("# ", fmt:format(...), "\n")
  io.stdout:flush()
end

-- A seed a case: FNV-1a of its description.
local function case_seed(name, D, N, dt)
  local h = 2166136261
  for c in (("%s/%d/%d/%s/%d"):format(name, D, N, dt, SEED0)):gmatch(".") do
    h = ((h ~ c:byte()) * 16777619) & 0xffffffff
  end
  return h % 999983 + 1
end

-- A small deterministic generator: rnd(n) in 1..n.
local function generator(seed)
  local s = seed % 2147483648
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return (s >> 8) % n + 1
  end
end

-- The variant's graph after every pass.
local function graph(V, p, inputs)
  local g = fl.trace(V.make(p), table.unpack(inputs))
  for _, pass in ipairs(fl.passes) do g:run(pass) end
  return g
end


-- plan:launch into `outs`; checks it wrote into them and returns them and ms.
local function launch(plan, inputs, dtype, outs, kernels)
  local t0 = fl.clock()
  local res = plan:launch(inputs, dtype, {out = outs, kernels = kernels, path = PATH, persistent = PERSISTENT})
  local ms = (fl.clock() - t0) * 1e3
  assert(#res == #outs, ("launch returned %d outputs, the graph has %d"):format(#res, #outs))
  for k = 1, #outs do
    assert(rawequal(res[k], outs[k]), "launch must return the tensors given as opts.out")
    assert(res[k]:device():match("^cuda"), "outputs stay on the GPU")
  end
  return res, ms
end


local lazy = R.lazy

local function input_tables(inputs)
  local x = {}
  for n, t in ipairs(inputs) do x[n] = t:numel() > LAZY_NUMEL and lazy(t) or t:totable() end
  return x
end

-- First, last and two random query rows, of one random head and batch.
local function sampled_rows(N, seed)
  local rnd = generator(seed)
  local rows, seen = {}, {}
  for _, i in ipairs({1, N, rnd(N), rnd(N)}) do
    if not seen[i] then rows[#rows + 1], seen[i] = i, true end
  end
  rows.heads, rows.batches = {rnd(H)}, {rnd(B)}
  return rows
end

local function kernel_names(plan)
  local c, names = plan:compiled(), {}
  for _, k in ipairs(c and c.kernels or {}) do names[#names + 1] = k.name end
  return table.concat(names, "+")
end

-- One case; returns its record (errors, times) or raises.
local function run_case(V, D, N, dt)
  local t_case = fl.clock()
  local p = N <= CPU_MAX_N and V.small or V.params
  local seed = case_seed(V.name, D, N, dt)
  local r = {seed = seed}
  local cpu = V.inputs(B, H, N, D, {dtype = dt, seed = seed}, p)
  local gpu = {}
  for k, t in ipairs(cpu) do gpu[k] = t:to("cuda") end

  local g = graph(V, p, cpu)
  local plan = g:plan()
  local outs
  outs, r.ms = launch(plan, gpu, nil, A.poisoned(g), "auto")
  local explained = g:explain()
  assert.matches("cuda: compiled for sm_%d+a? %(%a+ path%) in [%d.]+ ms %(cache: %a+%): fl_", explained)
  -- a tensor-core kernel is explained by its design
  if explained:find("_mma (", 1, true) then assert.matches("_mma %([%w.]+; .- keys a step", explained) end
  local c = plan:compiled()
  r.compile_ms, r.cache, r.kernels = c.ms, c.cache, kernel_names(plan)
  local got = outs

  local want
  local t0 = fl.clock()
  if N <= CPU_MAX_N then
    r.ref = "cpu"
    want = g:eval(cpu, "f32")
  else
    r.ref = "gpu-scalar"
    local gr = graph(V, p, cpu)   -- a graph and plan of its own: nothing shared with `plan`
    local pr = gr:plan()
    local ref
    ref, r.scalar_ms = launch(pr, gpu, "f32", A.poisoned(gr, "f32"), "scalar")
    r.scalar_kernels = kernel_names(pr)
    want = ref
    local sel = sampled_rows(N, seed)
    local t1 = fl.clock()
    local lua = R.with_rows(sel, V.reference, input_tables(cpu), p)
    r.lua_ms = (fl.clock() - t1) * 1e3
    r.rows = ("rows %s h%d b%d"):format(table.concat(sel, ","), sel.heads[1], sel.batches[1])
    local function rows_of(ts)   -- read only where the Lua rows are
      local x = {}
      for k, t in ipairs(ts) do x[k] = lazy(t:to("cpu")) end
      return x
    end
    r.rows_err = R.rel_error(rows_of(got), lua)
    r.scalar_err = R.rel_error(rows_of(want), lua)
  end
  r.ref_ms = (fl.clock() - t0) * 1e3
  r.err = R.rel_error(got, want)
  -- a second launch of the same plan (kernels that keep words across
  -- launches, as chain blocks' tickets, must leave them as they found them)
  local again = launch(plan, gpu, nil, A.poisoned(g), "auto")
  r.again = 0
  for k = 1, #again do
    local d = again[k]:to("cpu"):max_diff(got[k]:to("cpu"))
    if not (d <= r.again) then r.again = d end
  end
  r.total_ms = (fl.clock() - t_case) * 1e3
  return r
end

local function describe_case(r)
  local s = ("err %.1e vs %s"):format(r.err, r.ref)
  if r.rows_err then
    s = s .. ("; %s: err %.1e, scalar vs Lua %.1e"):format(r.rows, r.rows_err, r.scalar_err)
  end
  s = s .. ("; launch %.0f ms (compile %.0f ms, %s)"):format(r.ms, r.compile_ms, r.cache)
  if r.scalar_ms then
    s = s .. ("; scalar ref %.0f ms, Lua rows %.0f ms"):format(r.scalar_ms, r.lua_ms)
  else
    s = s .. ("; cpu ref %.0f ms"):format(r.ref_ms)
  end
  s = s .. ("; case %.2f s [%s]"):format(r.total_ms / 1e3, r.kernels)
  if r.scalar_kernels then s = s .. (" [reference: %s]"):format(r.scalar_kernels) end
  return s
end

-- Why a case fails, or nil.
local function check(r, dt)
  local bad = {}
  if r.again ~= 0 then bad[#bad + 1] = ("a second launch differs from the first by %.3g"):format(r.again) end
  if not (r.err < TOL[dt]) then bad[#bad + 1] = ("error %.3g vs %s (tolerance %g)"):format(r.err, r.ref, TOL[dt]) end
  if r.rows_err and not (r.rows_err < TOL[dt]) then
    bad[#bad + 1] = ("error %.3g on %s vs plain Lua (tolerance %g)"):format(r.rows_err, r.rows, TOL[dt])
  end
  if r.scalar_err and not (r.scalar_err < TOL_SCALAR) then
    bad[#bad + 1] = ("the scalar reference is off plain Lua by %.3g on %s (tolerance %g)"):format(
      r.scalar_err, r.rows, TOL_SCALAR)
  end
  return #bad > 0 and table.concat(bad, "; ") or nil
end

describe("every variant as CUDA kernels #gpu", function()
  it("poisoned outputs read as NaN", function()
    for _, dt in ipairs({"bf16", "f16", "f32"}) do
      local t = fl.full({2, 3}, 0 / 0, {dtype = dt, device = "cuda"}):to("cpu")
      local a, b = t:get(1, 1), t:get(2, 3)
      assert.is_true(a ~= a and b ~= b, dt .. " poison is not NaN")
    end
  end)

  it("the reference's sampled rows are the full reference's rows", function()
    -- R.with_rows on a small shape: the rows it computes equal those of the
    -- full computation bit for bit, and rel_error compares only them.
    for _, V in ipairs(variants.all(os.getenv("FL_GPU_VARIANTS"))) do
      local x = R.tables(V.inputs(1, 2, 11, 8, {dtype = "bf16", seed = 3}, V.small))
      local full = V.reference(x, V.small)
      local part = R.with_rows({1, 11, 6, heads = {2}, batches = {1}}, V.reference, x, V.small)
      assert.is_nil(R.rows)
      local equal = 0
      local function walk(f, q)
        if type(q) == "table" and next(q) == nil then return end
        if type(q) == "table" then
          for n = 1, #f do walk(f[n], q[n]) end
        else
          assert.are.equal(f, q)
          equal = equal + 1
        end
      end
      for n = 1, #full do walk(full[n], part[n]) end
      assert.are.equal(3 * 8 + (V.name == "lse" and 3 or 0), equal, V.name)
      assert.are.equal(0, R.rel_error(full, part), V.name)
    end
  end)

  it("document ids past 2^24 mask as exactly as small ones", function()
    -- ids 2^24 and 2^24 + 1 are one float: compared as floats, the first
    -- two documents would merge where a tile is masked element by element
    local V = variants.load("document")
    for _, D in ipairs(DIMS) do
      local cpu = V.inputs(1, 2, 1024, D, {dtype = "bf16", seed = 7}, V.params)
      local ids = cpu[4]:totable()
      for n = 1, #ids do ids[n] = ids[n] + 16777216 end
      local big = fl.tensor(ids, {dtype = "i32"})
      local g = graph(V, V.params, cpu)
      local plan = g:plan()
      local gpu = {}
      for k, t in ipairs(cpu) do gpu[k] = t:to("cuda") end
      local small = launch(plan, gpu, nil, A.poisoned(g), "auto")[1]:to("cpu")
      gpu[4] = big:to("cuda")
      local large = launch(plan, gpu, nil, A.poisoned(g), "auto")[1]:to("cpu")
      assert.matches("_mma", kernel_names(plan))
      assert.are.equal(0, large:max_diff(small), "D=" .. D)
    end
  end)

  for _, V in ipairs(variants.all(os.getenv("FL_GPU_VARIANTS"))) do
    local name = V.name
    it(name, function()
      local fails, worst, t_variant = {}, {}, fl.clock()
      local worst_rows, worst_scalar, ncases, kernels = 0, 0, 0, {}
      for _, D in ipairs(DIMS) do
        for _, N in ipairs(LENGTHS) do
          for _, dt in ipairs(DTYPES) do
            local what = ("%s D=%d N=%d %s B=%d H=%d seed=%d"):format(name, D, N, dt, B, H,
              case_seed(name, D, N, dt))
            local ok, r = pcall(run_case, V, D, N, dt)
            ncases = ncases + 1
            if not ok then
              fails[#fails + 1] = what .. ": " .. tostring(r)
              say("%s: FAILED to run: %s", what, tostring(r))
            else
              say("%s: %s", what, describe_case(r))
              local why = check(r, dt)
              if why then fails[#fails + 1] = what .. ": " .. why end
              worst[dt] = math.max(worst[dt] or 0, r.err)
              worst_rows = math.max(worst_rows, r.rows_err or 0)
              worst_scalar = math.max(worst_scalar, r.scalar_err or 0)
              kernels[("D=%d N=%d"):format(D, N)] = r.kernels
            end
            collectgarbage()   -- device tensors go now, not at some later collection
          end
        end
      end
      local last = kernels[("D=%d N=%d"):format(DIMS[#DIMS], LENGTHS[#LENGTHS])] or "?"
      say("%s: %d cases, %d failed; max error bf16 %.1e, f16 %.1e; sampled rows %.1e; scalar vs Lua %.1e; %.1f s; kernels at D=%d N=%d: %s",
        name, ncases, #fails, worst.bf16 or 0 / 0, worst.f16 or 0 / 0, worst_rows, worst_scalar,
        fl.clock() - t_variant, DIMS[#DIMS], LENGTHS[#LENGTHS], last)
      assert(#fails == 0, "\n" .. table.concat(fails, "\n"))
    end)
  end
end)
