--[[ locate: the queue of each job that forget may delete (read only).

KEYS[1] jobs hash    then per job i: KEYS[1 + i] the job's done key
ARGV[i] the id of job i

Returns per job its queue when it is a dead letter or finished with its record kept, else ''
(live, unknown, or a record that is unreadable).
]]
local rcall = redis.call
-- @include _common.lua

local out = {}
for i, id in ipairs(ARGV) do
  local s = load_state(KEYS[1], id)
  local queue = ''
  if s then
    queue = s.status == 'dead_letter' and s.queue or ''
  elseif rcall('HEXISTS', KEYS[1], id) == 0 then
    local state = rcall('HGET', KEYS[1 + i], 'state')
    s = state and parse_record(#state .. ':' .. state)
    queue = s and s.queue or ''
  end
  out[i] = queue
end
return out
