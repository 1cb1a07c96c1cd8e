--[[ announce: say that one name is alive, with its record, for a while; forget expired names.

KEYS[1] workers zset (name -> expiry, server ms)   KEYS[2] beats hash (name -> record)
ARGV[1] name   ARGV[2] record   ARGV[3] ttl in ms (> 0)

Returns 1. O(log n) per name written or expired.
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: one record per live worker, rewritten

local now = now_ms()
forget_expired(KEYS[1], KEYS[2], now)
rcall('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
rcall('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
