-- The state of the trace in progress: the nodes recorded so far, the
-- traced listing, and errors that name the user's script line.
local M = {}

local T -- the trace in progress, or nil

-- "file.lua:12" for the innermost caller outside flashlight's own code.
-- A tail call from the traced function (`return a:matmul(b)`) leaves no
-- frame for its line: reaching the trace's own driver first means that, and
-- the last user line the trace's line hook saw run is that line.
function M.user_where()
  for level = 2, 60 do
    local info = debug.getinfo(level, "Slf")
    if not info then break end
    if T and info.func == T.driver then return T.last_line or T.fn_where end
    if info.what ~= "C" and info.source:sub(1, 12) ~= "@flashlight/" then
      return info.short_src .. ":" .. (info.currentline or 0)
    end
  end
  return "?"
end

function M.fail(fmt, ...)
  error(M.user_where() .. ": " .. fmt:format(...), 0)
end

function M.shape_str(s)
  local parts = {}
  for i, v in ipairs(s) do parts[i] = tostring(v) end
  return "[" .. table.concat(parts, ",") .. "]"
end

function M.active() return T ~= nil end

-- A runtime tensor (an open flashlight.tensor userdata).
function M.is_tensor(x)
  return type(x) == "userdata" and pcall(x.shape, x)
end

-- driver: the function of flashlight's that calls the traced fn.
function M.start(ninputs, fn, driver)
  if T then M.fail("a traced function cannot trace another one") end
  local info = debug.getinfo(fn, "S")
  T = {ninputs = ninputs, nodes = {}, listing = {}, macro = nil, depth = 0,
       fn_where = info.short_src .. ":" .. info.linedefined, driver = driver,
       saved_hook = table.pack(debug.gethook())}
  debug.sethook(function(_, line)
    local src = debug.getinfo(2, "S")
    if T and src.source:sub(1, 12) ~= "@flashlight/" then
      T.last_line = src.short_src .. ":" .. line
    end
  end, "l")
end

function M.finish()
  local t = T
  T = nil
  if t then
    local h = t.saved_hook
    if h[1] then debug.sethook(h[1], h[2], h[3]) else debug.sethook() end
  end
  return t
end

local function need()
  if not T then M.fail("this operation is only available inside a traced function") end
  return T
end

function M.is_node(id) return id > need().ninputs end

function M.name_of(id)
  local t = need()
  return id > t.ninputs and t.nodes[id - t.ninputs].name or nil
end

-- Records a node {op, dims, red, comb, body, dtype}; returns its value id.
function M.node(n)
  local t = need()
  local k = #t.nodes + 1
  n.op = t.macro or n.op
  n.name = ("%s%d"):format(n.op, k)
  n.origin = M.user_where()
  t.nodes[k] = n
  return t.ninputs + k
end

-- One line of the traced listing for a user-level operation.
function M.list(result, desc)
  local t = need()
  if t.depth > 0 then return end
  t.listing[#t.listing + 1] = {result = result, desc = desc, origin = M.user_where()}
end

-- Runs fn, whose nodes all belong to one user-level operation `op`.
function M.macro(op, fn, desc)
  local t = need()
  t.depth = t.depth + 1
  local outer = t.macro
  t.macro = outer or op
  local ok, r = pcall(fn)
  t.depth = t.depth - 1
  t.macro = outer
  if not ok then error(r, 0) end
  M.list(r, desc)
  return r
end

return M
