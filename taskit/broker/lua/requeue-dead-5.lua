--[[ requeue-dead: make dead letters of one queue pending again, attempts reset to 0.

KEYS[1] state hash   KEYS[2] sequence counter   KEYS[3] ready set   KEYS[4] dead set
KEYS[5] wake list
ARGV[1] batch size; ARGV[2..] job ids, or none for the oldest `batch` dead letters

Ids that are not dead letters of this queue are skipped. Each requeued job takes a new place at
the back of its priority in the ready set. Returns how many were requeued.
]]
local rcall = redis.call
-- @include _common.lua

local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
else
  ids = rcall('ZRANGE', KEYS[4], 0, tonumber(ARGV[1]) - 1)
end
local n = 0
for _, id in ipairs(ids) do
  if rcall('ZREM', KEYS[4], id) == 1 then
    local s = load_state(KEYS[1], id)
    if s then
      n = n + 1
      s.status = 'pending'
      s.attempts = 0
      s.token = ''
      s.cancel = ''
      s.seq = next_seq(KEYS[2])
      save_state(KEYS[1], id, s)
      rcall('ZADD', KEYS[3], s.score, ready_member(s, id))
    end
  end
end
wake(KEYS[5], n)
return n
