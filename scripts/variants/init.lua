-- The variant library, in the order the demo and benchmarks list it:
-- first what FlexAttention expresses, then what it cannot hold in one kernel.
local names = {
  "full", "causal", "alibi", "softcap", "sliding_window", "prefix_lm", "document",
  "t5_bias", "gqa", "mqa", "sinks",
  "differential", "evoformer_row", "evoformer_col", "sigmoid", "forgetting",
  "scalable_softmax", "lse",
}

local M = {names = names}

function M.load(name) return require("variants." .. name) end

-- Every variant, in order; or those named in a comma-separated list.
function M.all(only)
  local out = {}
  local pick = only and {}
  if only then for n in only:gmatch("[^,%s]+") do pick[n] = true end end
  for _, n in ipairs(names) do
    if not pick or pick[n] then out[#out + 1] = M.load(n) end
  end
  if pick then
    for n in pairs(pick) do
      local known = false
      for _, m in ipairs(names) do known = known or m == n end
      if not known then error(("no variant '%s' (known: %s)"):format(n, table.concat(names, ", ")), 2) end
    end
  end
  return out
end

return M
