--[[ stats: counts per queue, after promoting each queue's due delayed jobs (one batch).

KEYS[1] state hash
then per queue q (base = 1 + 5 * (q - 1)):
  KEYS[base+1] ready set   KEYS[base+2] delayed set   KEYS[base+3] lease set
  KEYS[base+4] dead set    KEYS[base+5] totals hash
ARGV[1] promotion batch size

Returns per queue: queued, scheduled, running, completed, failed, dead. Due jobs left over past
the batch count as queued. O(batch + log n) per queue.
]]
local rcall = redis.call
-- @include _common.lua

local now = now_ms()
local out = {}
for q = 1, (#KEYS - 1) / 5 do
  local k = 1 + 5 * (q - 1)
  promote(KEYS[1], KEYS[k + 1], KEYS[k + 2], now, tonumber(ARGV[1]))
  local overdue = rcall('ZCOUNT', KEYS[k + 2], '-inf', now)
  local totals = rcall('HMGET', KEYS[k + 5], 'completed', 'failed')
  for _, v in ipairs({rcall('ZCARD', KEYS[k + 1]) + overdue,
      rcall('ZCARD', KEYS[k + 2]) - overdue, rcall('ZCARD', KEYS[k + 3]),
      tonumber(totals[1]) or 0, tonumber(totals[2]) or 0, rcall('ZCARD', KEYS[k + 4])}) do
    out[#out + 1] = v
  end
end
return out
