--[[ settle: apply each outcome whose token is current; a stale one changes nothing.

KEYS[1] spec hash    KEYS[2] state hash    KEYS[3] error hash    KEYS[4] sequence counter
then per outcome i (base = 4 + 7 * (i - 1)):
  KEYS[base+1] the job's done key   KEYS[base+2] ready set   KEYS[base+3] delayed set
  KEYS[base+4] lease set            KEYS[base+5] dead set    KEYS[base+6] totals hash
  KEYS[base+7] wake list            (the sets of the job's queue)
ARGV[1] result TTL in ms
then per outcome i (base = 1 + 6 * (i - 1)):
  ARGV[base+1] id     ARGV[base+2] token     ARGV[base+3] kind (complete, fail, retry,
  dead_letter, cancel, release)    ARGV[base+4] msgpack [error, error_type, traceback] or ''
  ARGV[base+5] msgpack JobResult or ''     ARGV[base+6] retry delay in ms

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

for i = 1, (#ARGV - 1) / 6 do
  local k, a = 4 + 7 * (i - 1), 1 + 6 * (i - 1)
  local id, token, kind = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local s = load_state(KEYS[2], id)
  if s == nil or s.status ~= 'running' or s.token ~= token or token == '' then
    out[i] = 0
  else
    out[i] = 1
    if s.cancel == '1' and (kind == 'retry' or kind == 'release') then
      kind = 'cancel' -- a cancel requested while it ran wins over running it again
    end
    if ARGV[a + 4] ~= '' then
      rcall('HSET', KEYS[3], id, ARGV[a + 4])
    end
    s.token = ''
    rcall('ZREM', KEYS[k + 4], id)
    if FINAL[kind] then
      if kind == 'fail' then
        s.failed = now
      end
      local result = ARGV[a + 5]
      if kind == 'cancel' then
        result = ''
      end
      finish({spec = KEYS[1], state = KEYS[2], err = KEYS[3], done = KEYS[k + 1],
        totals = KEYS[k + 6]}, id, s, FINAL[kind], now, ttl, result)
    elseif kind == 'dead_letter' then
      s.failed = now
      s.completed = now
      s.status = 'dead_letter'
      save_state(KEYS[2], id, s)
      rcall('ZADD', KEYS[k + 5], rcall('INCR', KEYS[4]), id)
    elseif kind == 'retry' and tonumber(ARGV[a + 6]) > 0 then
      local due = now + tonumber(ARGV[a + 6])
      s.failed = now
      s.status = 'retrying'
      s.sched = string.format('%.3f', due / 1000)
      save_state(KEYS[2], id, s)
      rcall('ZADD', KEYS[k + 3], due, id)
      wake_if_earliest(KEYS[k + 3], KEYS[k + 7], id)
    else -- retry at once, or release: back to its old place in the ready set
      if kind == 'retry' then
        s.failed = now
      else
        s.attempts = math.max(s.attempts - 1, 0)
      end
      s.status = 'pending'
      save_state(KEYS[2], id, s)
      rcall('ZADD', KEYS[k + 2], s.score, ready_member(s, id))
      wake(KEYS[k + 7], 1)
    end
  end
end
return out
