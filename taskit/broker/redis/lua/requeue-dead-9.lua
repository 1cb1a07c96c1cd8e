--[[ requeue-dead: make dead letters of one queue pending again, attempts reset to 0.

KEYS[1] jobs hash   KEYS[2] sequence counter   KEYS[3] FIFO list   KEYS[4] ranked set
KEYS[5] dead set    KEYS[6] wake list   KEYS[7] group set   KEYS[8] turns list
KEYS[9] group hash
ARGV[1] batch size; ARGV[2..] job ids, or none for the oldest `batch` dead letters

Ids that are not dead letters of this queue are skipped. Each requeued job goes to the back of
its priority. A dead letter whose record is unreadable stays where it is (requeued it could only
be dead-lettered again; it is there to be read and purged). Returns how many were requeued.
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs
local fault = layout_fault({'hash', 'string', 'list', 'zset', 'zset', 'list', 'zset', 'list',
  'hash'}, {}, 0)
if fault then -- a dead letter out of its set, then a refused write: the job lost
  return redis.error_reply(fault)
end

local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
else
  ids = rcall('ZRANGE', KEYS[5], 0, tonumber(ARGV[1]) - 1)
end
local R = {fifo = KEYS[3], ranked = KEYS[4], seq = KEYS[2], groups = KEYS[7], turns = KEYS[8],
  groupof = KEYS[9]}
local n = 0
for _, id in ipairs(ids) do
  local s, why = load_state(KEYS[1], id)
  if not why and rcall('ZREM', KEYS[5], id) == 1 then
    if s then
      n = n + 1
      s.status = 'pending'
      s.attempts = 0
      s.token = ''
      s.cancel = ''
      make_ready(R, id, s, false)
      save_state(KEYS[1], id, s)
    end
  end
end
wake(KEYS[6], n)
return n
