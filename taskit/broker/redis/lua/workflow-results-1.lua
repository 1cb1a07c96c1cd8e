--[[ workflow-results: the ends of some nodes of one workflow (read only).

KEYS[1] the workflow's hash (see _workflow.lua)
ARGV the node ids

Returns per id its end record ('<status>|<#err>|<err><res>'), or nil for a node that has not
ended or is not in the workflow.
]]
local rcall = redis.call

local out = {}
for i = 1, #ARGV, 500 do
  local fields = {}
  for j = i, math.min(i + 499, #ARGV) do
    fields[#fields + 1] = 'e:' .. ARGV[j]
  end
  local got = rcall('HMGET', KEYS[1], unpack(fields))
  for j = 1, #fields do
    out[#out + 1] = got[j]
  end
end
return out
