--[[ purge: delete up to one batch of a queue's waiting jobs (pending, scheduled, retrying).

KEYS[1] jobs hash   KEYS[2] error hash   KEYS[3] FIFO list   KEYS[4] ranked set
KEYS[5] delayed set   KEYS[6] progress hash   KEYS[7] group set   KEYS[8] turns list
KEYS[9] group hash
ARGV[1] batch size

Running jobs and dead letters are left alone. Returns how many were deleted (0: none is left).
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local batch = tonumber(ARGV[1])
local ids = pop_ready({fifo = KEYS[3], ranked = KEYS[4], groups = KEYS[7], turns = KEYS[8]}, batch)
if #ids < batch then
  local due = rcall('ZRANGE', KEYS[5], 0, batch - #ids - 1)
  if #due > 0 then
    each_chunk('ZREM', KEYS[5], due)
    for _, id in ipairs(due) do
      ids[#ids + 1] = id
    end
  end
end
if #ids > 0 then
  each_chunk('HDEL', KEYS[1], ids)
  each_chunk('HDEL', KEYS[2], ids)
  each_chunk('HDEL', KEYS[6], ids)
  each_chunk('HDEL', KEYS[9], ids)
end
return #ids
