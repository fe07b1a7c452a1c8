-- Runs a shell command and returns its combined output and exit status.
local M = {}

function M.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"::rc=$?\""))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("::rc=(%d+)%s*$"))
  return out:gsub("::rc=%d+%s*$", ""), rc
end

-- A fresh path under /tmp for this process.
local n = 0
function M.tmpname(suffix)
  n = n + 1
  return ("/tmp/flashlight-spec-%d-%d%s"):format(M.pid(), n, suffix or "")
end

local pid
function M.pid()
  if not pid then
    local f = io.open("/proc/self/stat")
    pid = f and tonumber(f:read("a"):match("^(%d+)")) or math.random(1, 1e9)
    if f then f:close() end
  end
  return pid
end

return M
