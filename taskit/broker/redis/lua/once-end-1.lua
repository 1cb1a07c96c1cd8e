--[[ once-end: end one run's hold on a once key: mark the work done for a while, or release it.

KEYS[1] the once key (see once-begin)
ARGV[1] token of the run   ARGV[2] done ttl in ms (> 0), or 0 to release

Release (0): deletes the key if this run holds it; anything else is left as it is.
Done (> 0): the key becomes 'done:<token>' for the ttl, unless another run already marked it
done. The work happened, so it is remembered even when this run's hold expired meanwhile (the
key free again, or taken by another run). Sent again (its reply lost), it changes nothing new.
On a full Redis (out of memory) both still run while the key exists; a done mark for a key
that expired meanwhile is refused (BrokerOutOfMemoryError).
Returns 1 if this run held the key (or had already marked it done), else 0. O(1).
]]
local rcall = redis.call
local held = rcall('GET', KEYS[1])
local running, finished = 'run:' .. ARGV[1], 'done:' .. ARGV[1]
local ttl = tonumber(ARGV[2])
if ttl == 0 then
  if held == running then
    rcall('DEL', KEYS[1])
    return 1
  end
  return 0
end
if held == finished then
  return 1
end
if not held or string.sub(held, 1, 5) ~= 'done:' then
  if held then
    -- A write that never grows memory first: a full Redis then still records a success, so a
    -- retry does not repeat the work (see allow_oom in _common.lua; the SET replaces the TTL).
    rcall('PEXPIRE', KEYS[1], ttl)
  end
  rcall('SET', KEYS[1], finished, 'PX', ttl)
end
if held == running then
  return 1
end
return 0
