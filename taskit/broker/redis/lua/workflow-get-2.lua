--[[ workflow-get: one workflow's record and where each of its live nodes stands (read only).

KEYS[1] the workflow's hash (see _workflow.lua)    KEYS[2] jobs hash
ARGV none

Returns nil for an unknown (or expired) workflow, else {fields, states}: fields the hash's
fields and values, flat; states per node that has not ended: its id and its live state string
('' when its record is missing or unreadable).
]]
local rcall = redis.call
-- @include _common.lua

local fields = rcall('HGETALL', KEYS[1])
if #fields == 0 then
  return nil
end
local ended = {}
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'e:' then
    ended[string.sub(fields[i], 3)] = true
  end
end
local states = {}
for i = 1, #fields, 2 do
  local id = string.sub(fields[i], 3)
  if string.sub(fields[i], 1, 2) == 'n:' and not ended[id] then
    local s = load_state(KEYS[2], id)
    states[#states + 1] = id
    states[#states + 1] = s and pack_state(s) or ''
  end
end
return {fields, states}
