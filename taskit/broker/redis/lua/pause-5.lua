--[[ pause: pause or resume one queue.

KEYS[1] paused set    KEYS[2] FIFO list    KEYS[3] ranked set    KEYS[4] wake list
KEYS[5] group set (the queue's fair turns' ready jobs)
ARGV[1] the queue's name    ARGV[2] '1' to pause, '0' to resume

Pausing adds the name to the paused set: reserve leases no job of the queue from then on (its jobs
wait where they are). Resuming takes it out and pushes a wake-up token per ready job (up to the
cap), so workers blocked on the queue take them at once. Returns 1 when the queue's state
changed, 0 when it already was so.
]]
local rcall = redis.call
-- @include _common.lua

if ARGV[2] == '1' then
  return rcall('SADD', KEYS[1], ARGV[1])
end
local changed = rcall('SREM', KEYS[1], ARGV[1])
if changed == 1 then
  local ready = ready_count({fifo = KEYS[2], ranked = KEYS[3], groups = KEYS[5]})
  if ready > 0 then
    wake(KEYS[4], ready)
  end
end
return changed
