--[[ reclaim: take over up to `limit` jobs whose lease deadline has passed.

KEYS[1] jobs hash    KEYS[2] error hash
then per queue q: KEYS[2+q] the lease set of queue q
ARGV[1] lease in ms   ARGV[2] limit   ARGV[3] random token stem

Each expired lease gets a fresh token (stem .. '.' .. n) and deadline now + lease; attempts are
unchanged. Jobs whose cancel was requested come back too (their state says so): the client ends
them with CANCEL, as only it can name their done keys.

Returns {now_ms, then per lease: q, id, spec, state, error}.
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local lease, limit, stem = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {now}
local taken = 0
for q = 1, #KEYS - 2 do
  if taken >= limit then
    break
  end
  local expired = rcall('ZRANGEBYSCORE', KEYS[2 + q], '-inf', now, 'LIMIT', 0, limit - taken)
  for _, id in ipairs(expired) do
    local s = load_state(KEYS[1], id)
    if s == nil or s.status ~= 'running' then
      rcall('ZREM', KEYS[2 + q], id) -- a leftover entry: its job is no longer leased
    else
      taken = taken + 1
      hand_out({jobs = KEYS[1], err = KEYS[2], leases = KEYS[2 + q]}, out, q, id, s,
        stem .. '.' .. taken, now + lease)
    end
  end
end
return out
