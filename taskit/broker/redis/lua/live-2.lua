--[[ live: forget expired announcements, list the live ones.

KEYS[1] workers zset (name -> expiry, server ms)   KEYS[2] beats hash (name -> record)
No ARGV.

Returns {name1, record1, name2, record2, ...} of every live announcement, in name order.
O(log n) per name expired, plus the size of the reply.
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- forgetting frees memory: a full Redis runs this too

forget_expired(KEYS[1], KEYS[2], now_ms())
local names = rcall('ZRANGE', KEYS[1], 0, -1)
table.sort(names)
local out = {}
for _, n in ipairs(names) do
  out[#out + 1] = n
  out[#out + 1] = rcall('HGET', KEYS[2], n) or ''
end
return out
