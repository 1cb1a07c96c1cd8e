--[[ enqueue: store a batch of jobs, all or none; an unfinished job with the same id is kept.

KEYS[1] spec hash    KEYS[2] state hash    KEYS[3] error hash    KEYS[4] sequence counter
KEYS[5] queue-name set
then per job i (base = 5 + 5 * (i - 1)):
  KEYS[base+1] the job's done key      KEYS[base+2] its queue's ready set
  KEYS[base+3] its queue's delayed set KEYS[base+4] its queue's wake list
  KEYS[base+5] the dead set of the queue a dead-lettered job of that id is expected in (its own)
ARGV per job i (base = 8 * (i - 1)):
  ARGV[base+1] id             ARGV[base+2] queue          ARGV[base+3] ready score (-priority)
  ARGV[base+4] encoded job    ARGV[base+5] delay in ms    ARGV[base+6] scheduled_at in ms or ''
  ARGV[base+7] scheduled_at as seconds text or ''
  ARGV[base+8] the queue whose dead set is KEYS[base+5]

Returns {'ok', then per job: kept (1: an existing job, 0: stored now), spec, state, error, result}
(spec '' for a job stored now: the client has it). Returns {'moved', i, queue} and writes nothing
when job i would replace a dead letter of another queue, whose dead set the client must pass.
]]
local rcall = redis.call
-- @include _common.lua

local n = #ARGV / 8

-- First pass, read only: every key this call needs was passed, or nothing is written.
local olds = {}
for i = 1, n do
  local s = load_state(KEYS[2], ARGV[8 * (i - 1) + 1])
  if s and s.status == 'dead_letter' and s.queue ~= ARGV[8 * i] then
    return {'moved', i, s.queue}
  end
  olds[i] = s or false
end

local now = now_ms()
local out = {'ok'}
local wakes = {}
local named = {}
local written = {}
-- One INCRBY for the batch: job i takes sequence number first + i (FIFO within the batch).
local first = rcall('INCRBY', KEYS[4], n) - n
for i = 1, n do
  local k, a = 5 + 5 * (i - 1), 8 * (i - 1)
  local id, queue = ARGV[a + 1], ARGV[a + 2]
  local old = olds[i]
  if written[id] then -- the same id earlier in this batch: see what that stored
    old = load_state(KEYS[2], id)
  end
  written[id] = true
  if old and old.status ~= 'dead_letter' then
    local spec = rcall('HGET', KEYS[1], id) or ''
    local err = rcall('HGET', KEYS[3], id) or ''
    for _, v in ipairs({1, spec, pack_state(old), err, ''}) do
      out[#out + 1] = v
    end
  else
    if old then -- a dead letter is finished: replaced
      rcall('ZREM', KEYS[k + 5], id)
      rcall('HDEL', KEYS[3], id)
    end
    rcall('DEL', KEYS[k + 1])
    local due = now + tonumber(ARGV[a + 5])
    local sched = ''
    if ARGV[a + 6] ~= '' and tonumber(ARGV[a + 6]) >= due then
      due = tonumber(ARGV[a + 6])
      sched = ARGV[a + 7]
    elseif due > now then
      sched = string.format('%.3f', due / 1000)
    end
    local s = {status = 'pending', attempts = 0, score = ARGV[a + 3],
      seq = string.format('%016d', first + i),
      token = '', cancel = '', sched = '', started = '', completed = '', failed = '', queue = queue}
    if due > now then
      s.status = 'scheduled'
      s.sched = sched
      rcall('ZADD', KEYS[k + 3], due, id)
      wake_if_earliest(KEYS[k + 3], KEYS[k + 4], id)
    else
      rcall('ZADD', KEYS[k + 2], s.score, ready_member(s, id))
      wakes[KEYS[k + 4]] = (wakes[KEYS[k + 4]] or 0) + 1
    end
    rcall('HSET', KEYS[1], id, ARGV[a + 4])
    local raw = save_state(KEYS[2], id, s)
    named[queue] = true
    for _, v in ipairs({0, '', raw, '', ''}) do
      out[#out + 1] = v
    end
  end
end
for queue in pairs(named) do
  rcall('SADD', KEYS[5], queue)
end
for key, count in pairs(wakes) do
  wake(key, count)
end
return out
