--[[ purge-dead: delete up to one batch of a queue's dead letters.

KEYS[1] jobs hash   KEYS[2] error hash   KEYS[3] dead set   KEYS[4] progress hash
KEYS[5] group hash (of the queue)
ARGV[1] batch size

Returns how many were deleted (0: none is left).
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local ids = rcall('ZRANGE', KEYS[3], 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then
  each_chunk('ZREM', KEYS[3], ids)
  each_chunk('HDEL', KEYS[1], ids)
  each_chunk('HDEL', KEYS[2], ids)
  each_chunk('HDEL', KEYS[4], ids)
  each_chunk('HDEL', KEYS[5], ids)
end
return #ids
