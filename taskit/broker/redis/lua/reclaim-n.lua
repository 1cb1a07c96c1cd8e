--[[ reclaim: take over up to `limit` jobs whose lease deadline has passed.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] sequence counter
KEYS[4] limit specs hash    KEYS[5] limit holding zset    KEYS[6] limit waiting zset
KEYS[7] limit held hash    KEYS[8] limit freed zset    KEYS[9] limit rate zset
KEYS[10] limit queued hash
then per queue q (base = 10 + 7 * (q - 1)): KEYS[base+1] the lease set of queue q,
  KEYS[base+2] its dead set, KEYS[base+3] FIFO list, KEYS[base+4] ranked set,
  KEYS[base+5] delayed set, KEYS[base+6] group set, KEYS[base+7] group hash
ARGV[1] lease in ms   ARGV[2] limit   ARGV[3] random token stem   ARGV[3+q] name of queue q

Each expired lease gets a fresh token (stem .. '.' .. n) and deadline now + lease; attempts are
unchanged. Jobs whose cancel was requested come back too (their state says so): the client ends
them with CANCEL, as only it can name their done keys. An expired job whose record is unreadable
is dead-lettered in its queue with the reason (see bury in _common.lua), and so is one whose
status is not running while the job is in no structure of its status (see misplaced). A workflow node so dead-lettered ends for its
workflow in the same call (see wf_buried in _workflow.lua). A job
dead-lettered so frees the limit slots its run held (see _limits.lua); the jobs that lets out of
line go back to their queues at those queues' next reserve.

Returns {now_ms, then per lease: q, id, spec, state, error}.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
-- @include _workflow.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs
local fault = layout_fault({'hash', 'hash', 'string', unpack(LIMIT_KINDS)},
  {'zset', 'zset', 'list', 'zset', 'zset', 'zset', 'hash'}, (#KEYS - 10) / 7)
if fault then -- a job out of its lease set, then a refused write: the job lost
  return redis.error_reply(fault)
end

local lease, limit, stem = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {now}
local taken = 0
local L = {jobs = KEYS[1], seq = KEYS[3], specs = KEYS[4], holding = KEYS[5], waiting = KEYS[6],
  held = KEYS[7], freed = KEYS[8], rate = KEYS[9], queued = KEYS[10]}
for q = 1, (#KEYS - 10) / 7 do
  if taken >= limit then
    break
  end
  local k = 10 + 7 * (q - 1)
  local leases = KEYS[k + 1]
  local G = {jobs = KEYS[1], err = KEYS[2], seq = KEYS[3], dead = KEYS[k + 2], queue = ARGV[3 + q],
    groupof = KEYS[k + 7]}
  local P = {leases = leases, dead = KEYS[k + 2], fifo = KEYS[k + 3], ranked = KEYS[k + 4],
    delayed = KEYS[k + 5], groups = KEYS[k + 6], groupof = KEYS[k + 7]}
  local expired = rcall('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit - taken)
  for _, id in ipairs(expired) do
    local s, why = load_state(KEYS[1], id)
    if s and not why and s.status ~= 'running' then
      why = misplaced(P, id, s, 'lease set')
      if not why then
        s = nil -- a leftover entry: its job is where its status says
      end
    end
    if why then
      rcall('ZREM', leases, id)
      limits_release(L, id, '') -- its spec may be unreadable: its held entry names its slots
      bury(G, id, why, now)
    elseif s == nil then
      rcall('ZREM', leases, id) -- a leftover entry: its job is no longer leased
    else
      taken = taken + 1
      hand_out({jobs = KEYS[1], err = KEYS[2], leases = leases}, out, q, id, s,
        stem .. '.' .. taken, now + lease)
    end
  end
end
return out
