-- Symbolic tensors: what a traced function computes with.
--
-- A symbolic tensor is a list of dimensions (symbols with a size) and a
-- template: a scalar expression over its own dimensions ({"dim", k}) that
-- says how to read element [k1, k2, ...]. Views (transpose, view, unsqueeze,
-- expand, index, gather) only rewrite the template; operations record nodes
-- of the reduction IR through the recorder (flashlight.recorder).
local rec = require "flashlight.recorder"
local expr = require "flashlight.expr"

local fail, shape_str = rec.fail, rec.shape_str
local subst = expr.subst

local Sym = {}
Sym.__index = Sym

local function is_sym(x) return getmetatable(x) == Sym end

local function new_dim(size, name) return {size = size, name = name} end

local function root(d)
  while d.parent do d = d.parent end
  return d
end

-- Dimensions that stand for the same index share a name in the dumps.
local function unify(a, b)
  a, b = root(a), root(b)
  if a == b or a.size ~= b.size then return end
  if b.name and b.name ~= "_" and (not a.name or a.name == "_") then a, b = b, a end
  b.parent = a
end

local function make(dims, tpl, dtype, desc)
  return setmetatable({dims = dims, tpl = tpl, dt = dtype, desc = desc}, Sym)
end

local function sizes(x)
  local s = {}
  for k, d in ipairs(x.dims) do s[k] = d.size end
  return s
end

local function shape_of(x) return shape_str(sizes(x)) end

-- A 1-based or negative dimension of an n-d tensor, checked. `extra`
-- allows one past the end (unsqueeze).
local function norm_dim(d, n, what, x, extra)
  if math.type(d) ~= "integer" then
    fail("%s: dimension must be an integer, got %s", what, tostring(d))
  end
  local hi = n + (extra and 1 or 0)
  local k = d < 0 and d + hi + 1 or d
  if k < 1 or k > hi then
    fail("%s: dimension %d is out of range for a %d-d tensor %s", what, d, n, shape_of(x))
  end
  return k
end

local function describe(x)
  if is_sym(x) then return x.desc end
  if type(x) == "number" then return ("%.6g"):format(x) end
  return tostring(x)
end

local function check_operand(x, what)
  if is_sym(x) or type(x) == "number" then return end
  local hint = type(x) == "userdata" and
      " (a runtime tensor cannot be used inside a traced function; pass it as an input)" or ""
  fail("%s: expected a tensor or a number, got %s%s", what, type(x), hint)
end

-- Dtypes -------------------------------------------------------------------

local is_float = {f32 = true, f16 = true, bf16 = true}

-- The dtype of an arithmetic result, as PyTorch promotes: floats win over
-- integers, two different half types meet in f32, Lua numbers adopt the
-- tensors' type (a fractional one makes integers f32).
local function promote(args)
  local float, ints, frac_number, int_number = nil, {}, false, false
  for _, a in ipairs(args) do
    if is_sym(a) then
      if is_float[a.dt] then
        float = (float == nil or float == a.dt) and a.dt or "f32"
      else
        ints[a.dt] = true
      end
    elseif math.type(a) == "float" then
      frac_number = true
    else
      int_number = true
    end
  end
  if float then return float end
  if frac_number then return "f32" end
  if ints.i64 or (int_number and not ints.i32) then return "i64" end
  if ints.i32 then return "i32" end
  return "bool"
end

local function float_of(x)
  return is_float[x.dt] and x.dt or "f32"
end

-- Broadcasting -------------------------------------------------------------

-- The output dimensions of tensors broadcast together (NumPy rules).
local function broadcast(tensors, what)
  local n = 0
  for _, x in ipairs(tensors) do n = math.max(n, #x.dims) end
  local out = {}
  for p = 1, n do
    local chosen
    for _, x in ipairs(tensors) do
      local d = x.dims[p - (n - #x.dims)]
      if d then
        if not chosen or (chosen.size == 1 and d.size ~= 1) then
          chosen = d
        elseif d.size ~= 1 and d.size ~= chosen.size then
          local shapes = {}
          for i, t in ipairs(tensors) do shapes[i] = shape_of(t) end
          fail("%s: shapes %s do not broadcast (dimension %d from the right: %d vs %d)", what,
            table.concat(shapes, " and "), n - p + 1, chosen.size, d.size)
        end
      end
    end
    out[p] = chosen
  end
  return out
end

-- x read at the output position of a node over `out` dims (vars 1..#out),
-- broadcast from the right.
local function operand(x, out)
  if type(x) == "number" then return {"const", x} end
  local off, map = #out - #x.dims, {}
  for k, d in ipairs(x.dims) do
    local o = out[k + off]
    if d.size == 1 and o.size ~= 1 then
      map[k] = {"const", 0}
    else
      unify(d, o)
      map[k] = {"var", k + off}
    end
  end
  return subst(x.tpl, map)
end

-- Recording nodes ----------------------------------------------------------

-- A node and the tensor that reads it.
local function node(op, dims, red, comb, body, dtype, desc)
  local id = rec.node({op = op, dims = dims, red = red, comb = comb, body = body, dtype = dtype})
  local tpl = {"load", id}
  for k = 1, #dims do tpl[k + 2] = {"dim", k} end
  local t = make(dims, tpl, dtype, rec.name_of(id))
  rec.list(t, desc)
  return t
end

local function pointwise(op, xop, args, dtype)
  local tensors, descs = {}, {}
  for i, a in ipairs(args) do
    check_operand(a, op)
    if is_sym(a) then tensors[#tensors + 1] = a end
    descs[i] = describe(a)
  end
  local dims = broadcast(tensors, op)
  local body = {xop}
  for i, a in ipairs(args) do body[i + 1] = operand(a, dims) end
  return node(op, dims, {}, "none", body, dtype or promote(args),
    op .. "(" .. table.concat(descs, ", ") .. ")")
end

-- Arithmetic ---------------------------------------------------------------

local function arith(op, xop)
  return function(a, b)
    local dt = promote({a, b})
    if op == "div" and not is_float[dt] then dt = "f32" end
    return pointwise(op, xop, {a, b}, dt)
  end
end

Sym.__add = arith("add", "add")
Sym.__sub = arith("sub", "sub")
Sym.__mul = arith("mul", "mul")
Sym.__div = arith("div", "div")
Sym.__pow = arith("pow", "pow")
Sym.__unm = function(a) return pointwise("neg", "neg", {a}) end
Sym.__tostring = function(x)
  return ("symbolic %s%s %s"):format(x.dt, shape_of(x), x.desc)
end
Sym.__len = function(x) return x.dims[1] and x.dims[1].size or 0 end

for _, op in ipairs({"exp", "log", "tanh", "sigmoid", "sqrt", "rsqrt"}) do
  Sym[op] = function(x)
    check_operand(x, op)
    return pointwise(op, op, {x}, float_of(x))
  end
end
for _, op in ipairs({"abs", "relu"}) do
  Sym[op] = function(x) return pointwise(op, op, {x}, x.dt) end
end

Sym.floor = function(x) return pointwise("floor", "floor", {x}, x.dt) end

local dtypes = {f32 = true, f16 = true, bf16 = true, i32 = true, i64 = true, bool = true}

-- Conversion as PyTorch's x.to(dtype): floats become integers by truncation
-- toward zero, anything becomes bool by comparison with zero.
function Sym:to(dtype)
  if not dtypes[dtype] then
    fail("to: unknown dtype %s (known: f32, f16, bf16, i32, i64, bool)", tostring(dtype))
  end
  if dtype == self.dt then return self end
  if dtype == "bool" then return pointwise("to", "ne", {self, 0}, "bool") end
  if is_float[self.dt] and not is_float[dtype] then
    return pointwise("to", "trunc", {self}, dtype)
  end
  return node("to", self.dims, {}, "none", operand(self, self.dims), dtype,
    ("to(%s, %s)"):format(self.desc, dtype))
end

for _, op in ipairs({"lt", "le", "gt", "ge", "eq", "ne"}) do
  Sym[op] = function(a, b) return pointwise(op, op, {a, b}, "bool") end
end
Sym.logical_and = function(a, b) return pointwise("logical_and", "and", {a, b}, "bool") end
Sym.logical_or = function(a, b) return pointwise("logical_or", "or", {a, b}, "bool") end
Sym.logical_not = function(a) return pointwise("logical_not", "not", {a}, "bool") end

-- Shape queries ------------------------------------------------------------

function Sym:size(d)
  if d == nil then return sizes(self) end
  return self.dims[norm_dim(d, #self.dims, "size", self)].size
end
function Sym:shape() return sizes(self) end
function Sym:dim() return #self.dims end
function Sym:numel()
  local n = 1
  for _, d in ipairs(self.dims) do n = n * d.size end
  return n
end
Sym.type = function(x) return x.dt end
Sym.dtype = Sym.type

-- Reductions ---------------------------------------------------------------

local function reduce(op, comb, x, dim, keepdim, dtype)
  check_operand(x, op)
  local n = #x.dims
  local reduced = {}
  if dim == nil then
    for k = 1, n do reduced[k] = true end
  else
    reduced[norm_dim(dim, n, op, x)] = true
  end
  local out, red, map = {}, {}, {}
  for k, d in ipairs(x.dims) do
    if reduced[k] then
      red[#red + 1] = d
      if keepdim then out[#out + 1] = new_dim(1, "_") end
    else
      out[#out + 1] = d
      map[k] = {"var", #out}
    end
  end
  local r = 0
  for k = 1, n do
    if reduced[k] then
      r = r + 1
      map[k] = {"var", #out + r}
    end
  end
  local desc = ("%s(%s%s%s)"):format(op, x.desc, dim and ", " .. dim or "",
    keepdim and ", keepdim" or "")
  return node(op, out, red, comb, subst(x.tpl, map), dtype or x.dt, desc)
end

function Sym:sum(dim, keepdim)
  local dt = (self.dt == "bool" or self.dt == "i32") and "i64" or self.dt
  return reduce("sum", "sum", self, dim, keepdim, dt)
end
function Sym:max(dim, keepdim) return reduce("max", "max", self, dim, keepdim) end
function Sym:min(dim, keepdim) return reduce("min", "min", self, dim, keepdim) end

function Sym:mean(dim, keepdim)
  return rec.macro("mean", function()
    local count = dim == nil and self:numel() or self:size(dim)
    return reduce("sum", "sum", self, dim, keepdim, float_of(self)) / count
  end, ("mean(%s%s)"):format(self.desc, dim and ", " .. dim or ""))
end

function Sym:softmax(dim)
  check_operand(self, "softmax")
  if dim == nil then fail("softmax: a dimension is required") end
  norm_dim(dim, #self.dims, "softmax", self)
  return rec.macro("softmax", function()
    local m = self:max(dim, true)
    local e = (self - m):exp()
    return e / e:sum(dim, true)
  end, ("softmax(%s, %d)"):format(self.desc, dim))
end

-- Inclusive prefix sum: out[..., i, ...] = sum over k <= i of x[..., k, ...].
function Sym:cumsum(dim)
  check_operand(self, "cumsum")
  local d = norm_dim(dim, #self.dims, "cumsum", self)
  local n = #self.dims
  local k = new_dim(self.dims[d].size)
  local map = {}
  for i = 1, n do map[i] = {"var", i == d and n + 1 or i} end
  local body = {"where", {"le", {"var", n + 1}, {"var", d}}, subst(self.tpl, map), {"const", 0}}
  local dt = is_float[self.dt] and self.dt or "i64"
  return node("cumsum", self.dims, {k}, "sum", body, dt, ("cumsum(%s, %d)"):format(self.desc, dim))
end

-- Contraction --------------------------------------------------------------

function Sym.matmul(a, b)
  check_operand(a, "matmul")
  check_operand(b, "matmul")
  if not is_sym(a) or not is_sym(b) then fail("matmul: both operands must be tensors") end
  local na, nb = #a.dims, #b.dims
  if na < 2 or nb < 2 then
    fail("matmul: operands need at least 2 dimensions, got %s @ %s", shape_of(a), shape_of(b))
  end
  local m, k, k2, n = a.dims[na - 1], a.dims[na], b.dims[nb - 1], b.dims[nb]
  if k.size ~= k2.size then
    fail("matmul: %s @ %s: inner dimensions differ (%d vs %d)", shape_of(a), shape_of(b),
      k.size, k2.size)
  end
  unify(k, k2)
  local ba = make({table.unpack(a.dims, 1, na - 2)})
  local bb = make({table.unpack(b.dims, 1, nb - 2)})
  local batch = broadcast({ba, bb}, "matmul")
  local nbatch = #batch
  local out = {table.unpack(batch)}
  out[nbatch + 1], out[nbatch + 2] = m, n
  local function operand_map(x, nx, rowvar, colvar)
    local map = {}
    for i = 1, nx - 2 do
      local pos = i + (nbatch - (nx - 2))
      if x.dims[i].size == 1 and batch[pos].size ~= 1 then map[i] = {"const", 0}
      else
        unify(x.dims[i], batch[pos])
        map[i] = {"var", pos}
      end
    end
    map[nx - 1], map[nx] = {"var", rowvar}, {"var", colvar}
    return subst(x.tpl, map)
  end
  local body = {"mul", operand_map(a, na, nbatch + 1, nbatch + 3),
                operand_map(b, nb, nbatch + 3, nbatch + 2)}
  return node("matmul", out, {k}, "sum", body, promote({a, b}),
    ("matmul(%s, %s)"):format(a.desc, b.desc))
end

-- Views --------------------------------------------------------------------

function Sym:transpose(d1, d2)
  check_operand(self, "transpose")
  local n = #self.dims
  local a, b = norm_dim(d1, n, "transpose", self), norm_dim(d2, n, "transpose", self)
  local dims, map = {table.unpack(self.dims)}, {}
  dims[a], dims[b] = dims[b], dims[a]
  for k = 1, n do map[k] = {"dim", k == a and b or k == b and a or k} end
  return make(dims, subst(self.tpl, map), self.dt,
    ("transpose(%s, %d, %d)"):format(self.desc, d1, d2))
end

function Sym:unsqueeze(d)
  check_operand(self, "unsqueeze")
  local k = norm_dim(d, #self.dims, "unsqueeze", self, true)
  local dims, map = {table.unpack(self.dims)}, {}
  table.insert(dims, k, new_dim(1, "_"))
  for i = 1, #self.dims do map[i] = {"dim", i < k and i or i + 1} end
  return make(dims, subst(self.tpl, map), self.dt, ("unsqueeze(%s, %d)"):format(self.desc, d))
end

-- Sizes given as numbers or as one table.
local function size_args(what, ...)
  local s = select("#", ...) == 1 and type((...)) == "table" and (...) or {...}
  for i, v in ipairs(s) do
    if math.type(v) ~= "integer" then
      fail("%s: size %d must be an integer, got %s", what, i, tostring(v))
    end
  end
  return s
end

function Sym:expand(...)
  check_operand(self, "expand")
  local want = size_args("expand", ...)
  local n, nn = #self.dims, #want
  if nn < n then
    fail("expand: %s has %d dimensions, more than the %d sizes given", shape_of(self), n, nn)
  end
  local dims, map = {}, {}
  for p = 1, nn do
    local k = p - (nn - n)
    local d, w = self.dims[k], want[p]
    if not d then
      if w < 0 then fail("expand: size -1 is not allowed for a new leading dimension") end
      dims[p] = new_dim(w)
    elseif w == -1 or w == d.size then
      dims[p], map[k] = d, {"dim", p}
    elseif d.size == 1 then
      dims[p], map[k] = new_dim(w), {"const", 0}
    else
      fail("expand: cannot expand %s to %s (dimension %d has size %d, not 1)", shape_of(self),
        shape_str(want), k, d.size)
    end
  end
  return make(dims, subst(self.tpl, map), self.dt,
    ("expand(%s, %s)"):format(self.desc, shape_str(want)))
end

-- The target shape of a view, with one -1 inferred.
local function view_shape(x, want)
  local known, free = 1, nil
  for i, v in ipairs(want) do
    if v == -1 then
      if free then fail("view: only one size may be -1, got %s", shape_str(want)) end
      free = i
    elseif v < 0 then
      fail("view: size %d is negative in %s", v, shape_str(want))
    else
      known = known * v
    end
  end
  local total = x:numel()
  local out = {table.unpack(want)}
  if free then
    if known == 0 or total % known ~= 0 then
      fail("view: cannot view %s as %s", shape_of(x), shape_str(want))
    end
    out[free] = total // known
  end
  local n = 1
  for _, v in ipairs(out) do n = n * v end
  if n ~= total then
    fail("view: cannot view %s (%d elements) as %s (%d elements)", shape_of(x), total,
      shape_str(want), n)
  end
  return out
end

-- Groups of consecutive non-1 dimensions whose sizes multiply to the same
-- number on both sides: {old = {k...}, new = {k...}}. Size-1 dimensions at
-- the same place on both sides pair up one to one, so a view that keeps a
-- batch of one keeps its dimension ([1,H,N,1] as [1,H,N] is still b,h,i).
local function view_groups(old, new)
  local groups, i, j = {}, 1, 1
  local function skip_ones()
    while old[i] == 1 and new[j] == 1 do
      groups[#groups + 1] = {old = {i}, new = {j}}
      i, j = i + 1, j + 1
    end
    while old[i] == 1 do i = i + 1 end
    while new[j] == 1 do j = j + 1 end
  end
  skip_ones()
  while i <= #old and j <= #new do
    local g, po, pn = {old = {i}, new = {j}}, old[i], new[j]
    i, j = i + 1, j + 1
    while po ~= pn do
      if po < pn then
        g.old[#g.old + 1], po, i = i, po * old[i], i + 1
      else
        g.new[#g.new + 1], pn, j = j, pn * new[j], j + 1
      end
    end
    groups[#groups + 1] = g
    skip_ones()
  end
  return groups
end

function Sym:view(...)
  check_operand(self, "view")
  local want = size_args("view", ...)
  local new = view_shape(self, want)
  local old = sizes(self)
  local dims, map = {}, {}
  for k = 1, #old do map[k] = {"const", 0} end -- size-1 and empty dims read index 0
  for p = 1, #new do dims[p] = new_dim(new[p], new[p] == 1 and "_" or nil) end
  if self:numel() > 0 then
    for _, g in ipairs(view_groups(old, new)) do
      if #g.old == 1 and #g.new == 1 then
        dims[g.new[1]] = self.dims[g.old[1]]
        map[g.old[1]] = {"dim", g.new[1]}
      else
        map = expr.regroup(map, g, old, new)
      end
    end
  end
  return make(dims, subst(self.tpl, map), self.dt,
    ("view(%s, %s)"):format(self.desc, shape_str(want)))
end
Sym.reshape = Sym.view

-- Data-dependent views -----------------------------------------------------

local function check_index(idx, what)
  if not is_sym(idx) then fail("%s: the index must be a tensor, got %s", what, type(idx)) end
  if idx.dt ~= "i32" and idx.dt ~= "i64" then
    fail("%s: the index must be an integer tensor (i32 or i64), got %s", what, idx.dt)
  end
end

-- x:index(idx): x[idx[...], ...], taking along the first dimension.
function Sym:index(idx)
  check_operand(self, "index")
  check_index(idx, "index")
  if #self.dims == 0 then fail("index: cannot index a 0-d tensor") end
  local dims, map = {table.unpack(idx.dims)}, {}
  local pre = #idx.dims
  map[1] = idx.tpl
  for k = 2, #self.dims do
    dims[pre + k - 1] = self.dims[k]
    map[k] = {"dim", pre + k - 1}
  end
  return make(dims, subst(self.tpl, map), self.dt,
    ("index(%s, %s)"):format(self.desc, idx.desc))
end

-- x:gather(dim, idx): out[..., i, ...] = x[..., idx[..., i, ...], ...].
function Sym:gather(dim, idx)
  check_operand(self, "gather")
  check_index(idx, "gather")
  local n = #self.dims
  local d = norm_dim(dim, n, "gather", self)
  if #idx.dims ~= n then
    fail("gather: index %s must have as many dimensions as %s", shape_of(idx), shape_of(self))
  end
  local map = {}
  for k = 1, n do
    if k == d then
      map[k] = idx.tpl
    else
      if idx.dims[k].size > self.dims[k].size then
        fail("gather: index %s is larger than %s in dimension %d", shape_of(idx),
          shape_of(self), k)
      end
      unify(idx.dims[k], self.dims[k])
      map[k] = {"dim", k}
    end
  end
  return make({table.unpack(idx.dims)}, subst(self.tpl, map), self.dt,
    ("gather(%s, %d, %s)"):format(self.desc, dim, idx.desc))
end

-- Results must be nodes: a view that is returned is copied into one.
local function materialize(x)
  local t = x.tpl
  local plain = t[1] == "load" and rec.is_node(t[2]) and #t == #x.dims + 2
  for k = 1, #x.dims do plain = plain and t[k + 2][1] == "dim" and t[k + 2][2] == k end
  if plain then return x end
  return node("copy", x.dims, {}, "none", operand(x, x.dims), x.dt, "copy(" .. x.desc .. ")")
end

return {
  Sym = Sym, is_sym = is_sym, make = make, new_dim = new_dim, root = root,
  pointwise = pointwise, promote = promote, materialize = materialize, describe = describe,
  check_operand = check_operand,
}
