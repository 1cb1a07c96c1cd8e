--[[ extend: push held leases' deadlines to now + lease.

KEYS[1] jobs hash
then per lease i: KEYS[1+i] the lease set of its queue
ARGV[1] lease in ms
then per lease i: ARGV[2*i] job id, ARGV[2*i+1] token

Returns per lease 'held', 'cancelled' (held, and cancel was requested) or 'lost' (the token is not
the job's current one, its queue part names another queue, or the job is not running: nothing
changed).
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local lease = tonumber(ARGV[1])
local now = now_ms()
local out = {}
for i = 1, #KEYS - 1 do
  local id, token = ARGV[2 * i], ARGV[2 * i + 1]
  local s = load_state(KEYS[1], id)
  -- A token whose queue part names another queue than the job's is not one the broker made.
  if s == nil or s.status ~= 'running' or s.token ~= token
      or KEYS[1 + i] ~= string.sub(KEYS[1], 1, -6) .. ':q:' .. s.queue .. ':leases' then
    out[i] = 'lost'
  else
    rcall('ZADD', KEYS[1 + i], now + lease, id)
    out[i] = (s.cancel == '1') and 'cancelled' or 'held'
  end
end
return out
