--[[ shards: record a sharded broker's shard count on one of its shards, and read the one kept.

KEYS[1] shards string (the largest shard count used on this prefix; absent: 1)
ARGV[1] the calling broker's shard count (a whole number >= 1)

Keeps the larger of the two: a count larger than the one kept (or than 1, when none is) is
written; a smaller or equal one changes nothing (a broker of 1 shard never writes). Atomic, so
two brokers growing at once keep the larger count.
Returns the count kept before this call (1 when none), or an error naming the key when it
holds something other than a whole number (damaged data). O(1).
]]
local rcall = redis.call
local mine = tonumber(ARGV[1])
local raw = rcall('GET', KEYS[1])
local kept = 1
if raw then
  kept = tonumber(raw)
  if not kept or kept < 1 or kept % 1 ~= 0 then
    return redis.error_reply('ERR key ' .. KEYS[1] .. ' holds ' .. raw ..
      ' where taskit keeps a shard count (a whole number >= 1): damaged data, repair or delete it')
  end
end
if mine > kept then
  rcall('SET', KEYS[1], ARGV[1])
end
return kept
