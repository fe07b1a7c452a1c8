-- Scalar expressions of the reduction IR, as Lua arrays:
--   {"const", v}  {"var", k}  {"dim", k}  {"load", value, index...}  {op, operand...}
-- "var" is a node's variable k; "dim" is dimension k of a symbolic tensor's
-- template, replaced by subst when the tensor is read.
local M = {}

function M.subst(e, map)
  local op = e[1]
  if op == "dim" then return map[e[2]] or error("template refers to a missing dimension") end
  if op == "const" or op == "var" then return e end
  local out = {op}
  local first = 2
  if op == "load" then
    out[2] = e[2]
    first = 3
  end
  for i = first, #e do out[i] = M.subst(e[i], map) end
  return out
end

local function times(e, k)
  if k == 1 then return e end
  return {"mul", e, {"const", k}}
end

-- For a view group (see sym.lua's view_groups) that splits or merges
-- dimensions: the flat position inside the group from the new dimensions,
-- and each old dimension's index from it.
function M.regroup(map, g, old, new)
  local flat, stride = nil, 1
  for q = #g.new, 1, -1 do
    local p = g.new[q]
    local term = times({"dim", p}, stride)
    flat = flat and {"add", term, flat} or term
    stride = stride * new[p]
  end
  stride = 1
  for m = #g.old, 1, -1 do
    local k = g.old[m]
    local idx = stride == 1 and flat or {"idiv", flat, {"const", stride}}
    if m > 1 then idx = {"mod", idx, {"const", old[k]}} end
    map[k] = idx
    stride = stride * old[k]
  end
  return map
end

return M
