--[[ extend: push held leases' deadlines to now + lease.

KEYS[1] jobs hash
then per lease i: KEYS[1+i] the lease set of its queue
ARGV[1] lease in ms
then per lease i: ARGV[2*i] job id, ARGV[2*i+1] token

Returns per lease 'held', 'cancelled' (held, and cancel was requested) or 'lost' (the token is not
the job's current one, or the job is not running: nothing changed).
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
  if s == nil or s.status ~= 'running' or s.token ~= token then
    out[i] = 'lost'
  else
    rcall('ZADD', KEYS[1 + i], now + lease, id)
    out[i] = (s.cancel == '1') and 'cancelled' or 'held'
  end
end
return out
