--[[ promote: make a scheduled or retrying job ready now, at the back of its queue.

KEYS[1] jobs hash    KEYS[2] sequence counter
KEYS[3] delayed set    KEYS[4] FIFO list    KEYS[5] ranked set    KEYS[6] group set
KEYS[7] turns list    KEYS[8] group hash    KEYS[9] wake list  (the keys of queue ARGV[2])
ARGV[1] job id    ARGV[2] the queue the client believes the job is in

A SCHEDULED or RETRYING job leaves the delayed set and becomes PENDING at the back of its
priority (of its group, for a grouped job), as if it had just fallen due, and one reserve of its
queue is woken. O(log n).

Returns 1 when promoted; 0 for any other status or no such job (nothing changes); the job's
real queue when it is not ARGV[2]; {'unreadable', why} when its record is unreadable.
]]
local rcall = redis.call
-- @include _common.lua

local id, queue = ARGV[1], ARGV[2]
local s, why = load_state(KEYS[1], id)
if why then
  return {'unreadable', why}
elseif s == nil then
  return 0
elseif s.queue ~= queue then
  return s.queue
elseif (s.status ~= 'scheduled' and s.status ~= 'retrying') or
    rcall('ZREM', KEYS[3], id) == 0 then
  return 0
end
s.status = 'pending'
s.sched = ''
make_ready({fifo = KEYS[4], ranked = KEYS[5], seq = KEYS[2], groups = KEYS[6], turns = KEYS[7],
  groupof = KEYS[8]}, id, s, false)
save_state(KEYS[1], id, s)
wake(KEYS[9], 1)
return 1
