--[[ enqueue-plain: enqueue (enqueue-n.lua) of a batch of plain jobs, all or none; an unfinished
job with the same id is kept.

A plain job has priority 0, no delay, no scheduled_at, no group, no dedup window and no workflow:
what most enqueues are. It only ever becomes pending at the back of its queue's FIFO list, so this
script takes only the keys that needs, and defines only the helpers it uses (Redis runs a script's
whole text, its helpers' definitions too, on every call): the same stored record, answer and
counts as enqueue's, for less of Redis's time. The client sends any other batch to enqueue.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] progress hash    KEYS[4] queue-name set
then per queue q = 1..ARGV[1] (base = 4 + 4 * (q - 1)), each queue named once per call:
  KEYS[base+1] FIFO list    KEYS[base+2] wake list    KEYS[base+3] dead set
  KEYS[base+4] group hash (a replaced dead letter's group entry goes with it)
then per job i: KEYS[4 + 4 * nq + i] the job's done key
ARGV[1] nq, the number of queues    ARGV[1+q] the name of queue q
then per job i, when nq is 1 (base = 1 + nq + 2 * (i - 1)): ARGV[base+1] id, ARGV[base+2]
  encoded job (its queue, and the queue of a dead letter of its id, are queue 1);
or when nq > 1 (base = 1 + nq + 3 * (i - 1)): ARGV[base+1] id    ARGV[base+2] encoded job
  ARGV[base+3] '<q> <d>': q its queue, d the queue whose dead set a dead-lettered job of that
               id is expected in (its own)

Returns as enqueue does: {'ok', then per job: kept, spec, state, error, result} (kept 0 for a
job stored now, 1 for an unfinished job of its id kept as it was); {'moved', i, queue} or
{'unreadable', i, why}, writing nothing. Each job stored counts as enqueued (_counts.lua).
Out of memory: as enqueue, the first write of a call that stores a job is the HSET of records.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _workflow.lua
-- @include _counts.lua

local nq = tonumber(ARGV[1])
local each = nq == 1 and 2 or 3 -- arguments per job
local n = (#ARGV - 1 - nq) / each
local jobs, olds = {}, {}
-- First pass, read only: every key this call needs was passed, or nothing is written.
for i = 1, n do
  local a = 1 + nq + each * (i - 1)
  local q, d = 1, 1
  if each == 3 then
    q, d = string.match(ARGV[a + 3], '^(%d+) (%d+)$')
    q, d = tonumber(q), tonumber(d)
  end
  local id = ARGV[a + 1]
  jobs[i] = {id = id, spec = ARGV[a + 2], q = q, d = d}
  local s, why = load_state(KEYS[1], id)
  if why then -- never replaced unseen: it is dead-lettered where it waits, or read by hand
    return {'unreadable', i, why}
  end
  if s and s.status == 'dead_letter' and s.queue ~= ARGV[1 + d] then
    return {'moved', i, s.queue}
  end
  olds[i] = s or false
end

local out = {'ok'}
local stored = {} -- id -> {status, spec, state} of the job stored by this call under it
local records, done, fifo, replaced = {}, {}, {}, {}
for i = 1, n do
  local job = jobs[i]
  local id, queue = job.id, ARGV[1 + job.q]
  local old = stored[id] or olds[i]
  local o = #out
  if old and old.status ~= 'dead_letter' then
    if stored[id] then -- stored earlier in this batch: answered with that job
      out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = 1, old.spec, old.state, '', ''
    else
      out[o + 1], out[o + 2], out[o + 3] = 1, old.spec, pack_state(old)
      out[o + 4], out[o + 5] = rcall('HGET', KEYS[2], id) or '', ''
    end
  else
    if old then -- a dead letter is finished: replaced (its leftovers go last, as in enqueue)
      local base = 4 + 4 * (job.d - 1)
      replaced[#replaced + 1] = {KEYS[base + 3], id, KEYS[base + 4]}
    end
    local state = 'pending|0|0||||||||' .. queue
    stored[id] = {status = 'pending', spec = job.spec, state = state}
    local r = #records
    records[r + 1], records[r + 2] = id, #state .. ':' .. state .. job.spec
    done[#done + 1] = KEYS[4 + 4 * nq + i]
    local ids = fifo[job.q]
    if not ids then
      ids = {}
      fifo[job.q] = ids
    end
    ids[#ids + 1] = id
    count(queue, 'e', 1)
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = 0, '', state, '', ''
  end
end
each_chunk('HSET', KEYS[1], records)
for _, r in ipairs(replaced) do
  rcall('ZREM', r[1], r[2])
  rcall('HDEL', KEYS[2], r[2])
  rcall('HDEL', KEYS[3], r[2])
  rcall('HDEL', r[3], r[2]) -- its group entry: the new job of that id has none
end
for i = 1, #done, CHUNK do
  rcall('DEL', unpack(done, i, math.min(i + CHUNK - 1, #done)))
end
for q, ids in pairs(fifo) do
  each_chunk('RPUSH', KEYS[4 + 4 * (q - 1) + 1], ids)
  wake(KEYS[4 + 4 * (q - 1) + 2], #ids)
  rcall('SADD', KEYS[4], ARGV[1 + q])
end
if counted_any then -- the jobs stored, in the hash of this minute (_counts.lua)
  counts_flush(wf_tag(KEYS[1]), now_ms())
end
return out
