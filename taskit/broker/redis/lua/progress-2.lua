--[[ progress: store the latest progress of running jobs, each fenced by its lease token.

KEYS[1] jobs hash    KEYS[2] progress hash
then per job i (base = 3 * (i - 1)):
  ARGV[base+1] id    ARGV[base+2] lease token    ARGV[base+3] msgpack Progress

A job's progress is written (replacing the one before) only while it runs under that token: a
worker whose lease was lost, or a job settled meanwhile, changes nothing. Read only by get (live
jobs) and moved into the done key when the job ends (finish in _common.lua).

Returns per job 1 (stored) or 0 (stale token, not running, or no such job: nothing changed).
]]
local rcall = redis.call
-- @include _common.lua

local out = {}
for i = 1, #ARGV / 3 do
  local a = 3 * (i - 1)
  local id, token = ARGV[a + 1], ARGV[a + 2]
  local s = load_state(KEYS[1], id)
  if s ~= nil and s.status == 'running' and s.token == token then
    rcall('HSET', KEYS[2], id, ARGV[a + 3])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
