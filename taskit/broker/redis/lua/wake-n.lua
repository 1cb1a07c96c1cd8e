--[[ wake: push one wake-up token to each queue's wake list (capped, as every script does), for
the queues whose jobs a limit let out of line: a blocked reserve of theirs looks again.

per queue q (base = 0 + 1 * (q - 1)): KEYS[base+1] its wake list
ARGV none

Returns nothing.
]]
local rcall = redis.call
-- @include _common.lua
for _, key in ipairs(KEYS) do
  wake(key, 1)
end
return nil
