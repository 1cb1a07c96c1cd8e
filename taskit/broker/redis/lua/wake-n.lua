--[[ wake: push one wake-up token to each queue's wake list (capped, as every script does), for
the queues whose jobs a limit let out of line: a blocked reserve of theirs looks again.

KEYS[i] the wake list of queue i

Returns nothing.
]]
local rcall = redis.call
-- @include _common.lua
for _, key in ipairs(KEYS) do
  wake(key, 1)
end
return nil
