--[[ get: one job's record, live or finished (read only).

KEYS[1] spec hash   KEYS[2] state hash   KEYS[3] error hash   KEYS[4] the job's done key
ARGV[1] job id

Returns {spec, state, error, result} ('' for absent parts), or nil when there is no such job.
]]
local rcall = redis.call

local id = ARGV[1]
local state = rcall('HGET', KEYS[2], id)
if state then
  return {rcall('HGET', KEYS[1], id) or '', state, rcall('HGET', KEYS[3], id) or '', ''}
end
local done = rcall('HMGET', KEYS[4], 'spec', 'state', 'err', 'res')
if not done[2] then
  return nil
end
return {done[1] or '', done[2], done[3] or '', done[4] or ''}
