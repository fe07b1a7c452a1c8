-- Comparing a runtime tensor with a nested reference table, element by
-- element: |got − want| ≤ atol + rtol·|want|, NaN only where NaN is wanted.
-- A failure names the count of bad elements, the worst error and where.
local assert = require "luassert"

local M = {}

function M.shape_of(t)
  local s = {}
  while type(t) == "table" do
    s[#s + 1] = #t
    t = t[1]
  end
  return s
end

-- Returns the largest error |got − want| / (atol/rtol + |want|), scaled so
-- that 1 is the tolerance, after asserting every element is within it.
function M.assert_close(name, got, want, rtol, atol, dtype)
  rtol, atol = rtol or 1e-5, atol or 1e-5
  if dtype then assert.equal(dtype, got:dtype(), name .. ": dtype") end
  assert.same(M.shape_of(want), got:shape(), name .. ": shape")
  local worst, at, worst_got, worst_want, bad, count = -1, "", 0, 0, 0, 0
  local pos = {}
  local function walk(g, w, depth)
    if type(w) ~= "table" then
      count = count + 1
      local err = math.abs(g - w)
      if w ~= w then err = g ~= g and 0 or math.huge
      elseif g ~= g then err = math.huge
      elseif math.abs(w) == math.huge then err = g == w and 0 or math.huge end
      if err == math.huge or err > atol + rtol * math.abs(w) then bad = bad + 1 end
      if err > worst then worst, at, worst_got, worst_want = err, table.concat(pos, ","), g, w end
      return
    end
    for n = 1, #w do
      pos[depth] = n
      walk(g[n], w[n], depth + 1)
    end
    pos[depth] = nil
  end
  walk(got:totable(), want, 1)
  assert(bad == 0, ("%s: %d of %d elements outside tolerance; max error %.3g at [%s] " ..
    "(got %.9g, want %.9g)"):format(name, bad, count, worst, at, worst_got, worst_want))
  return worst
end

return M
