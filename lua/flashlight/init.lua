-- The Lua half of flashlight: takes the C half (tensors, the graph type)
-- and returns the whole module.
return function(fl)
  local rec = require "flashlight.recorder"
  local sym = require "flashlight.sym"
  require("flashlight.trace").install(fl)
  require("flashlight.compile").install(fl)

  -- Inside a traced function arange is symbolic: its element i is i. The C
  -- constructor asks this hook first (registry flashlight.trace_hooks).
  debug.getregistry()["flashlight.trace_hooks"].arange = function(n, opts)
    if not rec.active() then return nil end
    if math.type(n) ~= "integer" or n < 0 then
      rec.fail("arange: length must be a non-negative integer, got %s", tostring(n))
    end
    return sym.make({sym.new_dim(n)}, {"dim", 1}, (opts and opts.dtype) or "i64",
      ("arange(%d)"):format(n))
  end

  function fl.where(c, a, b)
    if not sym.is_sym(c) then rec.fail("where: the condition must be a tensor, got %s", type(c)) end
    return sym.pointwise("where", "where", {c, a, b}, sym.promote({a, b}))
  end
  function fl.maximum(a, b) return sym.pointwise("maximum", "max", {a, b}) end
  function fl.minimum(a, b) return sym.pointwise("minimum", "min", {a, b}) end
  function fl.softmax(x, dim)
    sym.check_operand(x, "softmax")
    return x:softmax(dim)
  end
  fl.matmul = function(a, b) return sym.Sym.matmul(a, b) end
  for _, op in ipairs({"exp", "log", "tanh", "sigmoid", "sqrt", "rsqrt", "abs", "relu",
                       "cumsum", "sum", "max", "min", "mean"}) do
    fl[op] = fl[op] or function(x, ...)
      sym.check_operand(x, op)
      if type(x) == "number" then rec.fail("%s: expected a tensor, got a number", op) end
      return x[op](x, ...)
    end
  end
  return fl
end
