--[[ counts: the per-minute counts of some minutes (read only).

KEYS[i] the counts hash of minute i ({p}:counts:<minute>, see _counts.lua)
ARGV none

Returns per minute i: the number of its fields, then field, value, ... (HGETALL).
]]
local rcall = redis.call

local out = {}
for _, key in ipairs(KEYS) do
  local got = rcall('HGETALL', key)
  out[#out + 1] = #got / 2
  for _, v in ipairs(got) do
    out[#out + 1] = v
  end
end
return out
