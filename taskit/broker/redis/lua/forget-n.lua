--[[ forget: delete the kept records of finished jobs and dead letters, all in one step.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] progress hash
then per queue q = 1..ARGV[1] (base = 3 + 5 * (q - 1)), each queue named once per call:
  KEYS[base+1] dead set    KEYS[base+2] group hash    KEYS[base+3] completed set
  KEYS[base+4] failed set    KEYS[base+5] cancelled set
then per job i: KEYS[3 + 5 * nq + i] the job's done key
ARGV[1] nq, the number of queues    ARGV[1+q] the name of queue q
then per job i (base = 1 + nq + 2 * (i - 1)): ARGV[base+1] its id    ARGV[base+2] q, its queue

A dead letter of its queue leaves the dead set and the live hashes; a finished job (its done key
holds a record of its queue) loses its done key and its index entry. Anything else (a live job,
no such job, a record of another queue than the client found) is left as it is. A workflow keeps
what its nodes ended with (its own hash). Returns how many jobs were deleted.
]]
local rcall = redis.call
-- @include _common.lua

local nq = tonumber(ARGV[1])
local deleted = 0
local n = (#ARGV - 1 - nq) / 2
for i = 1, n do
  local a = 1 + nq + 2 * (i - 1)
  local id, q = ARGV[a + 1], tonumber(ARGV[a + 2])
  local queue, b = ARGV[1 + q], 3 + 5 * (q - 1)
  local done = KEYS[3 + 5 * nq + i]
  local s = load_state(KEYS[1], id)
  if s then
    if s.status == 'dead_letter' and s.queue == queue then
      rcall('HDEL', KEYS[1], id)
      rcall('HDEL', KEYS[2], id)
      rcall('HDEL', KEYS[3], id)
      rcall('ZREM', KEYS[b + 1], id)
      rcall('HDEL', KEYS[b + 2], id)
      deleted = deleted + 1
    end
  elseif rcall('HEXISTS', KEYS[1], id) == 0 then
    local state = rcall('HGET', done, 'state')
    s = state and parse_record(#state .. ':' .. state)
    local index = s and ({completed = 3, failed = 4, cancelled = 5})[s.status]
    if index and s.queue == queue then
      rcall('DEL', done)
      rcall('ZREM', KEYS[b + index], id)
      deleted = deleted + 1
    end
  end
end
return deleted
