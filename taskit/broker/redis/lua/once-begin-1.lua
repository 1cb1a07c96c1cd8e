--[[ once-begin: take a once key for one run if it is free; else say what holds it.

KEYS[1] the once key (string: 'run:<token>' while a run holds it, 'done:<token>' once one is done)
ARGV[1] token of the run asking   ARGV[2] hold in ms (> 0)

Returns 'taken' (the key was free: it now holds 'run:<token>' for the hold), 'done' (a run
finished the work and its ttl has not passed) or 'held' (another run holds it). O(1).
]]
local rcall = redis.call
local held = rcall('GET', KEYS[1])
if not held then
  rcall('SET', KEYS[1], 'run:' .. ARGV[1], 'PX', ARGV[2])
  return 'taken'
end
if string.sub(held, 1, 5) == 'done:' then
  return 'done'
end
return 'held'
