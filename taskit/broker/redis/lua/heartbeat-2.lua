--[[ heartbeat: announce (or withdraw) one name, forget expired ones, list the live ones.

KEYS[1] workers zset (name -> expiry, server ms)   KEYS[2] beats hash (name -> record)
ARGV[1] name ('' to change nothing)   ARGV[2] record   ARGV[3] ttl in ms (0: withdraw the name)

Returns {name1, record1, name2, record2, ...} of every live announcement, in name order.
O(log n) per name written or expired, plus the size of the reply.
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: one record per live worker, rewritten

local now = now_ms()
local name, ttl = ARGV[1], tonumber(ARGV[3])
if name ~= '' then
  if ttl > 0 then
    rcall('ZADD', KEYS[1], now + ttl, name)
    rcall('HSET', KEYS[2], name, ARGV[2])
  else
    rcall('ZREM', KEYS[1], name)
    rcall('HDEL', KEYS[2], name)
  end
end
local gone = rcall('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, old in ipairs(gone) do
  rcall('ZREM', KEYS[1], old)
  rcall('HDEL', KEYS[2], old)
end
local names = rcall('ZRANGE', KEYS[1], 0, -1)
table.sort(names)
local out = {}
for _, n in ipairs(names) do
  out[#out + 1] = n
  out[#out + 1] = rcall('HGET', KEYS[2], n) or ''
end
return out
