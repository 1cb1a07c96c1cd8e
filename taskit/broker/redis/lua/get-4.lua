--[[ get: one job's record, live or finished (read only).

KEYS[1] jobs hash   KEYS[2] error hash   KEYS[3] the job's done key   KEYS[4] progress hash
ARGV[1] job id

Returns {spec, state, error, result, progress} ('' for absent parts), or nil when there is no such job.
A live record that is not well-formed comes back whole as its spec, with an empty state. A live
record without a spec is the dead letter `bury` made of a ready entry whose record was gone: when
the job's done key exists, that entry was a stray of the finished job, which is returned instead.
]]
local rcall = redis.call
-- @include _common.lua

local id = ARGV[1]
local raw = rcall('HGET', KEYS[1], id)
local s = raw and parse_record(raw)
if s and s.spec == '' and rcall('EXISTS', KEYS[3]) == 1 then
  raw = nil -- no job was ever stored without a spec: the finished record is the job
end
if raw then
  local err = rcall('HGET', KEYS[2], id) or ''
  local prog = rcall('HGET', KEYS[4], id) or ''
  if not s then
    return {raw, '', err, '', prog}
  end
  return {s.spec, pack_state(s), err, '', prog}
end
local done = rcall('HMGET', KEYS[3], 'spec', 'state', 'err', 'res', 'prog')
if not done[2] then
  return nil
end
return {done[1] or '', done[2], done[3] or '', done[4] or '', done[5] or ''}
