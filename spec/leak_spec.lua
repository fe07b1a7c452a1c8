-- valgrind sees no leak and no memory error from the library.
local run = require "run"

describe("memory", function()
  it("a workload with errors leaks nothing under valgrind", function()
    local out, rc = run.sh("valgrind --leak-check=full --show-leak-kinds=definite,indirect " ..
      "--errors-for-leak-kinds=definite,indirect --error-exitcode=3 " ..
      "build/flua spec/support/leak_workload.lua")
    assert.matches("leak workload done", out)
    assert.matches("ERROR SUMMARY: 0 errors", out)
    assert.is_nil(out:match("definitely lost: [1-9]"))
    assert.is_nil(out:match("indirectly lost: [1-9]"))
    assert.equal(0, rc, out)
  end)
end)
