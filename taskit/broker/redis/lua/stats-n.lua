--[[ stats: counts per queue, after promoting each queue's due delayed jobs (one batch).

KEYS[1] jobs hash    KEYS[2] sequence counter    KEYS[3] error hash    KEYS[4] limit queued hash
KEYS[5] deferred count hash (see _workflow.lua)
then per queue q (base = 5 + 9 * (q - 1)):
  KEYS[base+1] FIFO list   KEYS[base+2] ranked set  KEYS[base+3] delayed set
  KEYS[base+4] lease set   KEYS[base+5] dead set    KEYS[base+6] totals hash
  KEYS[base+7] group set   KEYS[base+8] turns list  KEYS[base+9] group hash
ARGV[1] promotion batch size   ARGV[1+q] name of queue q

Returns per queue: queued (grouped ready jobs included), scheduled, running, completed, failed,
dead, deferred. Due jobs left over past the batch count as queued, and so do jobs held back by their limits
(see _limits.lua). O(batch + log n) per queue. A due job whose record is unreadable is
dead-lettered (see promote in _common.lua). A workflow node so dead-lettered ends for its
workflow in the same call (see wf_buried in _workflow.lua).
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
-- @include _workflow.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

-- A stored count, or 0 for none or one that is not up to 18 digits.
local function count(v)
  return v and is_int(v, 18, false, false) and tonumber(v) or 0
end

-- due jobs taken out, then a refused write: jobs lost (totals are only read)
local fault = layout_fault({'hash', 'string', 'hash', '*', '*'},
  {'list', 'zset', 'zset', 'zset', 'zset', '*', 'zset', 'list', 'hash'}, (#KEYS - 5) / 9)
if fault then
  return redis.error_reply(fault)
end

local now = now_ms()
local out = {}
for q = 1, (#KEYS - 5) / 9 do
  local k = 5 + 9 * (q - 1)
  local R = {fifo = KEYS[k + 1], ranked = KEYS[k + 2], seq = KEYS[2], groups = KEYS[k + 7],
    turns = KEYS[k + 8], groupof = KEYS[k + 9]}
  local G = {jobs = KEYS[1], err = KEYS[3], seq = KEYS[2], dead = KEYS[k + 5], queue = ARGV[1 + q],
    groupof = R.groupof}
  local P = {fifo = R.fifo, ranked = R.ranked, delayed = KEYS[k + 3], leases = KEYS[k + 4],
    dead = KEYS[k + 5], groups = R.groups, groupof = R.groupof}
  promote(G, R, P, now, tonumber(ARGV[1]))
  local overdue = rcall('ZCOUNT', KEYS[k + 3], '-inf', now)
  -- Counters are only counts: a damaged one (not digits, or not a hash) reads as 0.
  local totals = redis.pcall('HMGET', KEYS[k + 6], 'completed', 'failed')
  if totals.err then
    totals = {}
  end
  local held = redis.pcall('HGET', KEYS[4], ARGV[1 + q]) -- a count; damaged: 0, as totals
  if type(held) ~= 'string' then
    held = nil
  end
  local deferred = redis.pcall('HGET', KEYS[5], ARGV[1 + q])
  if type(deferred) ~= 'string' then
    deferred = nil
  end
  for _, v in ipairs({ready_count(R) + overdue + count(held),
      rcall('ZCARD', KEYS[k + 3]) - overdue, rcall('ZCARD', KEYS[k + 4]),
      count(totals[1]), count(totals[2]), rcall('ZCARD', KEYS[k + 5]), count(deferred)}) do
    out[#out + 1] = v
  end
end
return out
