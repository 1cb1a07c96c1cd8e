--[[ reserve: lease up to `count` ready jobs, taking the queues in order.

KEYS[1] spec hash    KEYS[2] state hash    KEYS[3] error hash    KEYS[4] sequence counter
then per queue q (base = 4 + 5 * (q - 1)):
  KEYS[base+1] ready set   KEYS[base+2] delayed set   KEYS[base+3] lease set
  KEYS[base+4] dead set    KEYS[base+5] wake list
ARGV[1] count   ARGV[2] lease in ms   ARGV[3] random token stem   ARGV[4] promotion batch size
ARGV[4+q] name of queue q

Each queue's due delayed jobs are promoted (at most one batch), then ready jobs are popped: each
becomes running with attempts + 1, started = now, token = stem .. '.' .. n, and a lease deadline of
now + lease. A ready entry whose record is missing is dead-lettered on the spot.

Returns {now_ms, wait_ms, then per lease: q, id, spec, state, error}. wait_ms is -1 unless nothing
was leased and a delayed job exists: then the ms until the earliest is due (0 if overdue).
]]
local rcall = redis.call
-- @include _common.lua

local count, lease, stem, batch = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local out = {now, -1}
local taken = 0
local nq = (#KEYS - 4) / 5

-- A ready entry with no record: record it as a dead letter so it is seen, not silently dropped.
local function bury(id, seq, queue, dead_key)
  local s = {status = 'dead_letter', attempts = 1, score = '0', seq = seq, token = '',
    cancel = '', sched = '', started = now, completed = now, failed = now, queue = queue}
  if not rcall('HGET', KEYS[1], id) then
    rcall('HSET', KEYS[1], id, '')
  end
  save_state(KEYS[2], id, s)
  rcall('HSET', KEYS[3], id, mp_error('job record missing or unreadable', 'BrokerError'))
  rcall('ZADD', dead_key, rcall('INCR', KEYS[4]), id)
end

for q = 1, nq do
  local k = 4 + 5 * (q - 1)
  promote(KEYS[2], KEYS[k + 1], KEYS[k + 2], now, batch)
  while taken < count do
    local popped = rcall('ZPOPMIN', KEYS[k + 1], count - taken)
    if #popped == 0 then
      break
    end
    for i = 1, #popped, 2 do
      local seq, id = string.sub(popped[i], 1, 16), string.sub(popped[i], 18)
      local s = load_state(KEYS[2], id)
      if s == nil then
        bury(id, seq, ARGV[4 + q], KEYS[k + 4])
      elseif s.status == 'pending' then
        taken = taken + 1
        s.status = 'running'
        s.attempts = s.attempts + 1
        s.started = now
        hand_out({spec = KEYS[1], state = KEYS[2], err = KEYS[3], leases = KEYS[k + 3]}, out, q,
          id, s, stem .. '.' .. taken, now + lease)
      end
    end
  end
  if taken >= count then
    -- Jobs are left for others: pass the wake-up on to another idle worker.
    if rcall('ZCARD', KEYS[k + 1]) > 0 and rcall('LLEN', KEYS[k + 5]) == 0 then
      wake(KEYS[k + 5], 1)
    end
    break
  end
end

if taken == 0 then
  local earliest = nil
  for q = 1, nq do
    local first = rcall('ZRANGE', KEYS[4 + 5 * (q - 1) + 2], 0, 0, 'WITHSCORES')
    if first[2] and (earliest == nil or tonumber(first[2]) < earliest) then
      earliest = tonumber(first[2])
    end
  end
  if earliest then
    out[2] = math.max(earliest - now, 0)
  end
end
return out
