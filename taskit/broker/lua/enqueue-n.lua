--[[ enqueue: store a batch of jobs, all or none; an unfinished job with the same id is kept.

KEYS[1] spec hash    KEYS[2] state hash    KEYS[3] error hash    KEYS[4] sequence counter
KEYS[5] queue-name set
then per queue q = 1..ARGV[1] (base = 5 + 4 * (q - 1)), each queue named once per call:
  KEYS[base+1] ready set    KEYS[base+2] delayed set    KEYS[base+3] wake list
  KEYS[base+4] dead set
then per job i: KEYS[5 + 4 * nq + i] the job's done key
ARGV[1] nq, the number of queues    ARGV[1+q] the name of queue q
then per job i (base = 1 + nq + 4 * (i - 1)):
  ARGV[base+1] id    ARGV[base+2] encoded job
  ARGV[base+3] '<q> <d> <ready score> <delay ms> <scheduled_at ms or -1>': q its queue, d the
               queue whose dead set a dead-lettered job of that id is expected in (its own)
  ARGV[base+4] scheduled_at as seconds text, or ''

Returns {'ok', then per job: kept (1: an existing job, 0: stored now), spec, state, error, result}
(spec '' for a job stored now: the client has it). Returns {'moved', i, queue} and writes nothing
when job i would replace a dead letter of another queue, whose dead set the client must pass.
]]
local rcall = redis.call
-- @include _common.lua

local nq = tonumber(ARGV[1])
local n = (#ARGV - 1 - nq) / 4
local jobs = {}
for i = 1, n do
  local a = 1 + nq + 4 * (i - 1)
  local q, d, score, delay, at = string.match(ARGV[a + 3], '^(%d+) (%d+) (%S+) (%d+) (%-?%d+)$')
  jobs[i] = {id = ARGV[a + 1], spec = ARGV[a + 2], q = tonumber(q), d = tonumber(d),
    score = score, delay = tonumber(delay), at = tonumber(at), at_text = ARGV[a + 4]}
end
local function qkey(q, offset)
  return KEYS[5 + 4 * (q - 1) + offset]
end

-- First pass, read only: every key this call needs was passed, or nothing is written.
local olds = {}
for i = 1, n do
  local s = load_state(KEYS[2], jobs[i].id)
  if s and s.status == 'dead_letter' and s.queue ~= ARGV[1 + jobs[i].d] then
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
  local job = jobs[i]
  local id, queue = job.id, ARGV[1 + job.q]
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
      rcall('ZREM', qkey(job.d, 4), id)
      rcall('HDEL', KEYS[3], id)
    end
    rcall('DEL', KEYS[5 + 4 * nq + i])
    local due = now + job.delay
    local sched = ''
    if job.at >= 0 and job.at >= due then
      due = job.at
      sched = job.at_text
    elseif due > now then
      sched = string.format('%.3f', due / 1000)
    end
    local s = {status = 'pending', attempts = 0, score = job.score,
      seq = string.format('%016d', first + i),
      token = '', cancel = '', sched = '', started = '', completed = '', failed = '', queue = queue}
    if due > now then
      s.status = 'scheduled'
      s.sched = sched
      rcall('ZADD', qkey(job.q, 2), due, id)
      wake_if_earliest(qkey(job.q, 2), qkey(job.q, 3), id)
    else
      rcall('ZADD', qkey(job.q, 1), s.score, ready_member(s, id))
      wakes[job.q] = (wakes[job.q] or 0) + 1
    end
    rcall('HSET', KEYS[1], id, job.spec)
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
for q, count in pairs(wakes) do
  wake(qkey(q, 3), count)
end
return out
