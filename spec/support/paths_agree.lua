-- On a machine with a GPU: a plan's tensor-core kernels on each path
-- ("hopper", "mma"), written into NaN-filled outputs, against its scalar
-- kernels (f64 inside); each error printed as a TAP comment.
local assert = require "luassert"
local R = require "variants.reference"
local A = require "variants.common"

-- g: the graph after the passes; gpu: its inputs on the device; what: the
-- case's name in messages.
return function(g, gpu, what, tol)
  local plan = g:plan()
  local want = R.host_tables(plan:launch(gpu, "f32", {kernels = "scalar"}))
  for _, path in ipairs({"hopper", "mma"}) do
    local got = R.host_tables(plan:launch(gpu, nil, {path = path, out = A.poisoned(g)}))
    local name = what .. " " .. path
    assert.equal(path, plan:compiled().path, name)
    local err = R.rel_error(got, want)
    io.stdout:write(("# %s: error %.2e\n"):format(name, err))
    assert.is_true(err < tol, ("%s: error %.3g (tolerance %g)"):format(name, err, tol))
  end
end
