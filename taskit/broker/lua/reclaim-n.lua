--[[ reclaim: take over up to `limit` jobs whose lease deadline has passed.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] sequence counter
then per queue q: KEYS[2+2q] the lease set of queue q, KEYS[3+2q] its dead set
ARGV[1] lease in ms   ARGV[2] limit   ARGV[3] random token stem   ARGV[3+q] name of queue q

Each expired lease gets a fresh token (stem .. '.' .. n) and deadline now + lease; attempts are
unchanged. Jobs whose cancel was requested come back too (their state says so): the client ends
them with CANCEL, as only it can name their done keys. An expired job whose record is unreadable
is dead-lettered in its queue with the reason (see bury in _common.lua).

Returns {now_ms, then per lease: q, id, spec, state, error}.
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local lease, limit, stem = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {now}
local taken = 0
for q = 1, (#KEYS - 3) / 2 do
  if taken >= limit then
    break
  end
  local leases = KEYS[2 + 2 * q]
  local expired = rcall('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit - taken)
  for _, id in ipairs(expired) do
    local s, why = load_state(KEYS[1], id)
    if why then
      rcall('ZREM', leases, id)
      bury({jobs = KEYS[1], err = KEYS[2], seq = KEYS[3], dead = KEYS[3 + 2 * q],
        queue = ARGV[3 + q]}, id, why, now)
    elseif s == nil or s.status ~= 'running' then
      rcall('ZREM', leases, id) -- a leftover entry: its job is no longer leased
    else
      taken = taken + 1
      hand_out({jobs = KEYS[1], err = KEYS[2], leases = leases}, out, q, id, s,
        stem .. '.' .. taken, now + lease)
    end
  end
end
return out
