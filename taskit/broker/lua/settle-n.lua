--[[ settle: apply each outcome whose token is current; a stale one changes nothing.

KEYS[1] spec hash    KEYS[2] state hash    KEYS[3] error hash    KEYS[4] sequence counter
then per queue q = 1..ARGV[2] (base = 4 + 6 * (q - 1)), each queue named once per call:
  KEYS[base+1] ready set   KEYS[base+2] delayed set   KEYS[base+3] lease set
  KEYS[base+4] dead set    KEYS[base+5] totals hash   KEYS[base+6] wake list
then per outcome i: KEYS[4 + 6 * nq + i] the job's done key
ARGV[1] result TTL in ms    ARGV[2] nq, the number of queues
then per outcome i (base = 2 + 4 * (i - 1)):
  ARGV[base+1] id
  ARGV[base+2] '<token> <kind> <q> <delay ms>', kind one of complete, fail, retry,
               dead_letter, cancel, release; q the index of the job's queue above
  ARGV[base+3] msgpack [error, error_type, traceback] or ''
  ARGV[base+4] msgpack JobResult or ''

COMPLETE, FAIL and CANCEL end the job: its record moves to its done key with a TTL. RETRY makes it
retrying (delayed set) or, with no delay, pending in its old place; RELEASE makes it pending in
its old place and refunds the attempt; DEAD_LETTER moves it to the dead set. A RETRY or RELEASE
of a job whose cancel was requested while it ran ends it CANCELLED instead.

Returns per outcome 1 (applied) or 0 (stale token: nothing changed).
]]
local rcall = redis.call
-- @include _common.lua

local ttl = tonumber(ARGV[1])
local now = now_ms()
local out = {}
local FINAL = {complete = 'completed', fail = 'failed', cancel = 'cancelled'}

local nq = tonumber(ARGV[2])
for i = 1, (#ARGV - 2) / 4 do
  local a = 2 + 4 * (i - 1)
  local id = ARGV[a + 1]
  local token, kind, q, delay = string.match(ARGV[a + 2], '^(%S+) (%S+) (%d+) (%d+)$')
  local b = 4 + 6 * (tonumber(q) - 1)
  local ready, delayed, leases = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3]
  local dead, totals, wake_key = KEYS[b + 4], KEYS[b + 5], KEYS[b + 6]
  local done = KEYS[4 + 6 * nq + i]
  local s = load_state(KEYS[2], id)
  if s == nil or s.status ~= 'running' or s.token ~= token or token == '' then
    out[i] = 0
  else
    out[i] = 1
    if s.cancel == '1' and (kind == 'retry' or kind == 'release') then
      kind = 'cancel' -- a cancel requested while it ran wins over running it again
    end
    if ARGV[a + 3] ~= '' then
      rcall('HSET', KEYS[3], id, ARGV[a + 3])
    end
    s.token = ''
    rcall('ZREM', leases, id)
    if FINAL[kind] then
      if kind == 'fail' then
        s.failed = now
      end
      local result = ARGV[a + 4]
      if kind == 'cancel' then
        result = ''
      end
      finish({spec = KEYS[1], state = KEYS[2], err = KEYS[3], done = done,
        totals = totals}, id, s, FINAL[kind], now, ttl, result)
    elseif kind == 'dead_letter' then
      s.failed = now
      s.completed = now
      s.status = 'dead_letter'
      save_state(KEYS[2], id, s)
      rcall('ZADD', dead, rcall('INCR', KEYS[4]), id)
    elseif kind == 'retry' and tonumber(delay) > 0 then
      local due = now + tonumber(delay)
      s.failed = now
      s.status = 'retrying'
      s.sched = string.format('%.3f', due / 1000)
      save_state(KEYS[2], id, s)
      rcall('ZADD', delayed, due, id)
      wake_if_earliest(delayed, wake_key, id)
    else -- retry at once, or release: back to its old place in the ready set
      if kind == 'retry' then
        s.failed = now
      else
        s.attempts = math.max(s.attempts - 1, 0)
      end
      s.status = 'pending'
      save_state(KEYS[2], id, s)
      rcall('ZADD', ready, s.score, ready_member(s, id))
      wake(wake_key, 1)
    end
  end
end
return out
