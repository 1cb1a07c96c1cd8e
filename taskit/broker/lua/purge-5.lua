--[[ purge: delete up to one batch of a queue's waiting jobs (pending, scheduled, retrying).

KEYS[1] spec hash   KEYS[2] state hash   KEYS[3] error hash   KEYS[4] ready set
KEYS[5] delayed set
ARGV[1] batch size

Running jobs and dead letters are left alone. Returns how many were deleted (0: none is left).
]]
local rcall = redis.call

local batch = tonumber(ARGV[1])
local n = 0
local function drop(id)
  rcall('HDEL', KEYS[1], id)
  rcall('HDEL', KEYS[2], id)
  rcall('HDEL', KEYS[3], id)
  n = n + 1
end
local popped = rcall('ZPOPMIN', KEYS[4], batch)
for i = 1, #popped, 2 do
  drop(string.sub(popped[i], 18))
end
if n < batch then
  local due = rcall('ZRANGE', KEYS[5], 0, batch - n - 1)
  for _, id in ipairs(due) do
    rcall('ZREM', KEYS[5], id)
    drop(id)
  end
end
return n
