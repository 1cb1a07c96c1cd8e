--[[ purge-dead: delete up to one batch of a queue's dead letters.

KEYS[1] spec hash   KEYS[2] state hash   KEYS[3] error hash   KEYS[4] dead set
ARGV[1] batch size

Returns how many were deleted (0: none is left).
]]
local rcall = redis.call

local ids = rcall('ZRANGE', KEYS[4], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  rcall('ZREM', KEYS[4], id)
  rcall('HDEL', KEYS[1], id)
  rcall('HDEL', KEYS[2], id)
  rcall('HDEL', KEYS[3], id)
end
return #ids
