--[[ shards: check a layout's shard count kept on one of its shards, and record a larger one.

KEYS[1] shards string (the largest shard count used on this prefix; absent: 1)
ARGV[1] the calling broker's shard count (a whole number >= 1)
ARGV[2...] the counts whose shards are all among the caller's (shards.covered_counts)

When the count kept is one of ARGV[2...], the caller sees every job stored under it: a larger
ARGV[1] is then written (a broker of 1 shard never writes). Otherwise nothing changes: the
caller must not run. Atomic, so two brokers growing at once keep the larger count.
Returns the count kept before this call (1 when none), or an error naming the key when it
holds something other than a whole number >= 1 (damaged data). O(number of ARGV).
]]
local rcall = redis.call
local raw = rcall('GET', KEYS[1])
local kept = 1
if raw then
  kept = tonumber(raw)
  if not kept or kept < 1 or kept % 1 ~= 0 then
    return redis.error_reply('ERR key ' .. KEYS[1] .. ' holds ' .. raw ..
      ' where taskit keeps a shard count (a whole number >= 1): damaged data, repair or delete it')
  end
end
for i = 2, #ARGV do
  if tonumber(ARGV[i]) == kept then
    if tonumber(ARGV[1]) > kept then
      rcall('SET', KEYS[1], ARGV[1])
    end
    return kept
  end
end
return kept
