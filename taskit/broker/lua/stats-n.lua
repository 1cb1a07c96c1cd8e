--[[ stats: counts per queue, after promoting each queue's due delayed jobs (one batch).

KEYS[1] jobs hash    KEYS[2] sequence counter    KEYS[3] error hash
then per queue q (base = 3 + 6 * (q - 1)):
  KEYS[base+1] FIFO list   KEYS[base+2] ranked set  KEYS[base+3] delayed set
  KEYS[base+4] lease set   KEYS[base+5] dead set    KEYS[base+6] totals hash
ARGV[1] promotion batch size   ARGV[1+q] name of queue q

Returns per queue: queued, scheduled, running, completed, failed, dead. Due jobs left over past
the batch count as queued. O(batch + log n) per queue. A due job whose record is unreadable is
dead-lettered (see promote in _common.lua).
]]
local rcall = redis.call
-- @include _common.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local now = now_ms()
local out = {}
for q = 1, (#KEYS - 3) / 6 do
  local k = 3 + 6 * (q - 1)
  local R = {fifo = KEYS[k + 1], ranked = KEYS[k + 2], seq = KEYS[2]}
  local G = {jobs = KEYS[1], err = KEYS[3], seq = KEYS[2], dead = KEYS[k + 5], queue = ARGV[1 + q]}
  local P = {fifo = R.fifo, ranked = R.ranked, delayed = KEYS[k + 3], leases = KEYS[k + 4],
    dead = KEYS[k + 5]}
  promote(G, R, P, now, tonumber(ARGV[1]))
  local overdue = rcall('ZCOUNT', KEYS[k + 3], '-inf', now)
  local totals = rcall('HMGET', KEYS[k + 6], 'completed', 'failed')
  for _, v in ipairs({ready_count(R) + overdue,
      rcall('ZCARD', KEYS[k + 3]) - overdue, rcall('ZCARD', KEYS[k + 4]),
      tonumber(totals[1]) or 0, tonumber(totals[2]) or 0, rcall('ZCARD', KEYS[k + 5])}) do
    out[#out + 1] = v
  end
end
return out
