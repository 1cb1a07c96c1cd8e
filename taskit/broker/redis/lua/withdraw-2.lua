--[[ withdraw: forget one announced name now (a name never announced changes nothing).

KEYS[1] workers zset (name -> expiry, server ms)   KEYS[2] beats hash (name -> record)
ARGV[1] name

Returns 1 if the name was announced, else 0. O(log n).
]]
local rcall = redis.call
local gone = rcall('ZREM', KEYS[1], ARGV[1])
rcall('HDEL', KEYS[2], ARGV[1])
return gone
