--[[ cancel: cancel one job of a known queue.

KEYS[1] spec hash    KEYS[2] state hash    KEYS[3] error hash    KEYS[4] the job's done key
KEYS[5] ready set    KEYS[6] delayed set   KEYS[7] lease set     KEYS[8] totals hash
(the sets of queue ARGV[2])
ARGV[1] job id   ARGV[2] the queue the client believes the job is in   ARGV[3] result TTL in ms

Pending, scheduled or retrying: leaves its queue, ends cancelled (done key with a TTL). Running:
cancel requested (extend reports it). Returns 1 in those cases; 0 when the job is finished, dead
or unknown (nothing changes); the job's real queue name when it is not in ARGV[2].
]]
local rcall = redis.call
-- @include _common.lua

local id, queue, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = load_state(KEYS[2], id)
if s == nil or s.status == 'dead_letter' then
  return 0
end
if s.queue ~= queue then
  return s.queue
end
if s.status == 'running' then
  s.cancel = '1'
  save_state(KEYS[2], id, s)
  return 1
end
rcall('ZREM', KEYS[5], ready_member(s, id))
rcall('ZREM', KEYS[6], id)
rcall('ZREM', KEYS[7], id)
finish({spec = KEYS[1], state = KEYS[2], err = KEYS[3], done = KEYS[4], totals = KEYS[8]},
  id, s, 'cancelled', now_ms(), ttl, '')
return 1
