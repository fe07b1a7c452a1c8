-- flua behaves like lua5.4; the module loads into a stock lua5.4; the C
-- embedding example builds and runs.
local run = require "run"
local sh = run.sh

describe("flua", function()
  it("runs -e and loads flashlight built in", function()
    local out, rc = sh([[build/flua -e 'local fl = require "flashlight"; print(fl.zeros({2, 3}))']])
    assert.equal(0, rc)
    assert.equal("tensor(f32[2,3], cpu)\n", out)
  end)

  it("passes script arguments as arg and ...", function()
    local f = run.tmpname(".lua")
    local h = assert(io.open(f, "w"))
    h:write("print(arg[0] ~= nil, arg[1], arg[2], select('#', ...), ...)\n")
    h:close()
    local out, rc = sh("build/flua " .. f .. " a b")
    os.remove(f)
    assert.equal(0, rc)
    assert.equal("true\ta\tb\t2\ta\tb\n", out)
  end)

  it("takes -l, -v, stdin and - like lua5.4", function()
    assert.equal("table\n", (sh([[build/flua -l flashlight -e 'print(type(flashlight))']])))
    assert.matches("^Flashlight flua, Lua 5%.4", (sh("build/flua -v")))
    assert.equal("42\n", (sh([[echo 'print(6 * 7)' | build/flua -]])))
    assert.equal("42\n", (sh([[echo 'print(6 * 7)' | build/flua]])))
    local out = sh([[printf 'x = 5\nx * 2\n' | build/flua -i]])
    assert.matches("10", out)
  end)

  it("reports errors with a traceback and exit status 1", function()
    local out, rc = sh([[build/flua -e 'error("boom")']])
    assert.equal(1, rc)
    assert.matches("^flua: %(command line%):1: boom", out)
    assert.matches("stack traceback", out)
    local _, rc2 = sh("build/flua -x")
    assert.equal(1, rc2)
  end)

  it("loads C modules (its Lua API is exported)", function()
    local out, rc = sh([[build/flua -e 'print(type(require("lfs").currentdir()))']])
    assert.equal(0, rc)
    assert.equal("string\n", out)
  end)

  it("links Lua statically", function()
    local out = sh("ldd build/flua")
    assert.is_nil(out:match("liblua"))
  end)
end)

describe("the module in a stock lua5.4", function()
  it("loads from build/flashlight.so", function()
    local out, rc = sh([[lua5.4 -e 'package.cpath="build/?.so;"..package.cpath' -l flashlight ]] ..
      [[-e 'print(flashlight.arange(3):totable()[3], flashlight.version)']])
    assert.equal(0, rc)
    assert.matches("^2\t%d+%.%d+%.%d+\n$", out)
  end)
end)

describe("embedding from C", function()
  it("build/embed hosts Lua, opens flashlight and runs a script", function()
    local out, rc = sh("build/embed examples/embed/hello.lua spec")
    assert.equal(0, rc)
    assert.equal("hello from spec: tensor(f32[2,2], cpu) sums to 10\n", out)
  end)

  it("reports a failing script", function()
    local out, rc = sh("build/embed /nonexistent.lua")
    assert.equal(1, rc)
    assert.matches("cannot open /nonexistent.lua", out)
  end)
end)

describe("the rockspec", function()
  it("builds the module with luarocks make", function()
    local dir = run.tmpname("-rock")
    local out, rc = run.sh(("mkdir -p %s && cp -r core lua scripts Makefile flashlight-scm-1.rockspec %s && cd %s && " ..
      "luarocks --lua-version 5.4 make --tree %s/tree flashlight-scm-1.rockspec && " ..
      "lua5.4 -e 'package.cpath=\"%s/tree/lib/lua/5.4/?.so\"' " ..
      "-e 'print(require(\"flashlight\").ones(2):totable()[2])'"):format(dir, dir, dir, dir, dir))
    run.sh("rm -rf " .. dir)
    assert.equal(0, rc, out)
    assert.matches("\n1%.0\n$", out)
  end)
end)

describe("make install", function()
  it("puts flua, the module, the library and the headers under PREFIX", function()
    local prefix = run.tmpname("-prefix")
    local out, rc = run.sh("make -s install PREFIX=" .. prefix)
    assert.equal(0, rc, out)
    for _, f in ipairs({"bin/flua", "lib/lua/5.4/flashlight.so", "lib/libflashlight.a",
                        "include/flashlight/fl_tensor.h", "include/flashlight/flashlight.h"}) do
      assert.is_truthy(io.open(prefix .. "/" .. f), f)
    end
    local v = run.sh(prefix .. "/bin/flua -e 'print(require(\"flashlight\").version)'")
    run.sh("rm -rf " .. prefix)
    assert.matches("^%d+%.%d+%.%d+\n$", v)
  end)
end)
