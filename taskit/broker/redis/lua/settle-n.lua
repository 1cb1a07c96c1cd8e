--[[ settle: apply each outcome whose token is current; a stale one changes nothing.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] sequence counter
KEYS[4] limit specs hash    KEYS[5] limit holding zset    KEYS[6] limit waiting zset
KEYS[7] limit held hash    KEYS[8] limit freed zset    KEYS[9] limit rate zset
KEYS[10] limit queued hash
then per queue q = 1..ARGV[2] (base = 10 + 13 * (q - 1)), each queue named once per call:
  KEYS[base+1] FIFO list   KEYS[base+2] ranked set  KEYS[base+3] delayed set
  KEYS[base+4] lease set   KEYS[base+5] dead set    KEYS[base+6] totals hash
  KEYS[base+7] wake list   KEYS[base+8] group set   KEYS[base+9] turns list
  KEYS[base+10] group hash    KEYS[base+11] completed set    KEYS[base+12] failed set
  KEYS[base+13] cancelled set (the finished-job indexes, see index_ended in _common.lua)
then per outcome i: KEYS[10 + 13 * nq + i] the job's done key
last: KEYS[#KEYS-2] progress hash (a job that ends takes its progress to its done key)
  KEYS[#KEYS-1] workflow node hash    KEYS[#KEYS] deferred count hash (see _workflow.lua)
ARGV[1] result TTL in ms (the broker's)    ARGV[2] nq, the number of queues
then per outcome i (base = 2 + 4 * (i - 1)):
  ARGV[base+1] id
  ARGV[base+2] '<token> <kind> <q> <delay ms>[ <ttl ms>]', kind one of complete, fail, retry,
               dead_letter, cancel, release; q the index of the job's queue above; ttl the
               job's own result TTL (absent: ARGV[1]; 0: its record is gone at once)
  ARGV[base+3] msgpack [error, error_type, traceback] or ''
  ARGV[base+4] msgpack JobResult or ''

COMPLETE, FAIL and CANCEL end the job: its record moves to its done key with a TTL (the job's own,
else ARGV[1]); a dead letter has none (kept until requeued or purged). RETRY makes it
retrying (delayed set) or, with no delay, pending at the front of its priority; RELEASE makes it
pending at the front of its priority and refunds the attempt (jobs put back by one call keep
the order they were reserved in); DEAD_LETTER moves it to the dead set. A RETRY or RELEASE of a job whose cancel was requested while it ran ends it CANCELLED instead.

An applied RETRY, FAIL or DEAD_LETTER (a failure) also appends the attempt to the job's failed
attempts, kept in its error hash value with its error (see _attempts.lua): its number (the
job's attempts), its start (the state's) and end (now), its kind, and the error and error type
of ARGV[base+3]. A success, a release or a cancel adds none and reads nothing more.

An applied outcome leaves the mark '=<token>:<kind as sent>' in the token field of the job's
state (live or done record) until the job is leased again: a settle retried because the reply to
the first try was lost finds it and is answered 1 again, changing nothing (the first try applied).

A job that ends (completes, fails, is cancelled or dead-lettered) and is a node of a workflow
has its end applied to the workflow in this same call (see wf_end in _workflow.lua): jobs
waiting for it are released or ended, in any queue. A call ending no such job pays one TYPE
(of the node hash).

Every applied outcome but a release is counted in the hash of the current minute (see
_counts.lua), with its run time (from its start, reserve or reclaim, to now). A job that ends
COMPLETED, FAILED or CANCELLED with its record kept is listed in its queue's index of that end
(index_ended in _common.lua).

Every applied outcome frees the job's limit slots (see _limits.lua): the next job in line of each
freed key goes to its queue's freed set.

Returns per outcome 1 (applied, now or by the first try of this same token and kind) or 0 (stale
token: nothing changed), then the names of the queues that got freed jobs (to wake).
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _attempts.lua
-- @include _limits.lua
-- @include _workflow.lua
-- @include _counts.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs
local fault = layout_fault({'hash', 'hash', 'string', unpack(LIMIT_KINDS)},
  {'list', '?zset', '?zset', 'zset', '?zset', '*', 'list', '?zset', '?list', '?hash', '*', '*', '*'},
  tonumber(ARGV[2]))
if fault then -- a job out of its lease set, then a refused write: the job lost
  return redis.error_reply(fault)
end

local ttl = tonumber(ARGV[1])
local now = now_ms()
-- As text once a call: Redis formats a number given to a command (or concatenated) with printf.
local now_text = string.format('%d', now)
local out = {}
local FINAL = {complete = 'completed', fail = 'failed', cancel = 'cancelled'}
local COUNTED = {complete = 'c', fail = 'f', retry = 'r', dead_letter = 'd', cancel = 'x'}

-- Whether the job's record (live state `s`, else its done key) carries `mark`: this token's
-- outcome of this kind was applied already.
local function settled_as(s, done_key, mark)
  if s == nil then
    local state = rcall('HGET', done_key, 'state')
    if not state then
      return false
    end
    s = parse_record(#state .. ':' .. state)
  end
  return s ~= nil and s.token == mark
end

local nq = tonumber(ARGV[2])
local L = {jobs = KEYS[1], seq = KEYS[3], specs = KEYS[4], holding = KEYS[5], waiting = KEYS[6],
  held = KEYS[7], freed = KEYS[8], rate = KEYS[9], queued = KEYS[10]}
local unleased = {} -- q -> ids to drop from its lease set
local fronts = {} -- {q, id, state, started, n} of jobs ready again at the front
local no_prog = nil -- whether the progress hash is empty (see finish in _common.lua)
local PROG = KEYS[#KEYS - 2]
local W = {tag = wf_tag(KEYS[1]), jobs = KEYS[1], err = KEYS[2], seq = KEYS[3], prog = PROG,
  of = KEYS[#KEYS - 1], deferred = KEYS[#KEYS], ttl = ttl, now = now}
local no_wf = nil -- whether no job is a node of a workflow now (read once a call, at an end)
local tally = {} -- the ends counted in the queues' totals hashes, written once (tally_flush)
-- Made once a call, not once a job (Redis pays tens of instructions a Lua operation), and with
-- no table or closure of their own (each would cost a call of one job more than it saves):
local K, K_q = nil, nil -- finish's K, and the queue its queue's fields are of
-- Whether the error hash is empty: asked once a call (at the first end), false once this call
-- wrote an error; while it holds, an end neither reads nor deletes its job's error.
local no_err = nil
local lease_queue, lease_key = nil, nil -- a queue's name and the key of its lease set

-- The error hash value of job `id` if it is a node of a workflow (read before its end takes
-- it), else nil.
local function node_error(id)
  if no_wf == nil then
    no_wf = not wf_any(W)
  end
  if no_wf or not wf_member(W, id) then
    return nil
  end
  return rcall('HGET', KEYS[2], id) or ''
end
for i = 1, (#ARGV - 2) / 4 do
  local a = 2 + 4 * (i - 1)
  local id = ARGV[a + 1]
  local token, kind, q, delay, own = string.match(ARGV[a + 2], '^(%S+) (%S+) (%d+) (%d+) ?(%d*)$')
  q = tonumber(q)
  local b = 10 + 13 * (q - 1)
  local delayed, dead, totals, wake_key = KEYS[b + 3], KEYS[b + 5], KEYS[b + 6], KEYS[b + 7]
  local s = load_state(KEYS[1], id)
  local mark = '=' .. token .. ':' .. kind
  if s and s.queue ~= lease_queue then
    lease_queue, lease_key = s.queue, wf_q(W.tag, s.queue, 'leases')
  end
  if s == nil or s.status ~= 'running' or s.token ~= token or token == ''
      or KEYS[b + 4] ~= lease_key then
    -- (the last: a token whose queue part names another queue than the job's is not ours)
    out[i] = settled_as(s, KEYS[10 + 13 * nq + i], mark) and 1 or 0
  else
    out[i] = 1
    limits_release(L, id, s.spec) -- every kind: the job no longer runs
    if s.cancel == '1' and (kind == 'retry' or kind == 'release') then
      kind = 'cancel' -- a cancel requested while it ran wins over running it again
    end
    if COUNTED[kind] then -- the per-minute counts (_counts.lua): its outcome and its run time
      count(s.queue, COUNTED[kind], 1)
      if s.started ~= '' then
        count_run(s.queue, now - tonumber(s.started))
      end
    end
    if set_error(KEYS[2], id, ARGV[a + 3], s, kind, now) then -- a failure with its attempt
      no_err = false
    end
    s.token = mark
    local ids = unleased[q]
    if not ids then
      ids = {}
      unleased[q] = ids
    end
    ids[#ids + 1] = id
    if FINAL[kind] then
      if kind == 'fail' then
        s.failed = now_text
      end
      local result = ARGV[a + 4]
      if kind == 'cancel' then
        result = ''
      end
      if no_prog == nil then -- read once a call, and only when a job ends
        no_prog = rcall('EXISTS', PROG) == 0
      end
      local node_err = node_error(id)
      local done, ttl_text = KEYS[10 + 13 * nq + i], own ~= '' and own or ARGV[1]
      if no_err == nil then
        no_err = rcall('EXISTS', KEYS[2]) == 0
      end
      if not K then -- (one constructor: a table that grows later is rebuilt)
        K = {jobs = KEYS[1], err = KEYS[2], prog = PROG, no_prog = no_prog, keep = ttl,
          tally = tally, totals = totals, groupof = KEYS[b + 10], completed = KEYS[b + 11],
          failed = KEYS[b + 12], cancelled = KEYS[b + 13], done = done, mark = mark,
          ttl_text = ttl_text, no_err = no_err}
        K_q = q
      else
        if K_q ~= q then
          K_q, K.totals, K.groupof = q, totals, KEYS[b + 10]
          K.completed, K.failed, K.cancelled = KEYS[b + 11], KEYS[b + 12], KEYS[b + 13]
        end
        K.done, K.mark, K.ttl_text, K.no_err = done, mark, ttl_text, no_err
      end
      finish(K, id, s, FINAL[kind], now_text, own ~= '' and tonumber(own) or ttl, result)
      if node_err then
        WF().wf_end(W, id, FINAL[kind], node_err, result)
      end
    elseif kind == 'dead_letter' then
      s.failed = now_text
      s.completed = now_text
      s.status = 'dead_letter'
      save_state(KEYS[1], id, s)
      rcall('ZADD', dead, rcall('INCR', KEYS[3]), id)
      local node_err = node_error(id)
      if node_err then
        WF().wf_end(W, id, 'dead_letter', node_err, '')
      end
    elseif kind == 'retry' and tonumber(delay) > 0 then
      local due = now + tonumber(delay)
      s.failed = now_text
      s.status = 'retrying'
      s.sched = string.format('%.3f', due / 1000)
      save_state(KEYS[1], id, s)
      rcall('ZADD', delayed, due, id)
      wake_if_earliest(delayed, wake_key, id)
    else -- retry at once, or release: pending at the front of its priority
      if kind == 'retry' then
        s.failed = now_text
      else
        s.attempts = math.max(s.attempts - 1, 0)
      end
      s.status = 'pending'
      fronts[#fronts + 1] = {q, id, s, tonumber(s.started) or 0,
        tonumber(string.match(token, '%.(%d+)$')) or 0}
    end
  end
end
-- In the order they were reserved (start time, then place in their reserve call), pushed to
-- the front last first: they keep that order, ahead of every job waiting.
table.sort(fronts, function(x, y)
  if x[4] ~= y[4] then
    return x[4] < y[4]
  end
  return x[5] < y[5]
end)
for j = #fronts, 1, -1 do
  local q, id, s = fronts[j][1], fronts[j][2], fronts[j][3]
  local b = 10 + 13 * (q - 1)
  make_ready({fifo = KEYS[b + 1], ranked = KEYS[b + 2], seq = KEYS[3], groups = KEYS[b + 8],
    turns = KEYS[b + 9], groupof = KEYS[b + 10]}, id, s, true)
  save_state(KEYS[1], id, s)
  wake(KEYS[b + 7], 1)
end
for q, ids in pairs(unleased) do
  each_chunk('ZREM', KEYS[10 + 13 * (q - 1) + 4], ids)
end
tally_flush(tally)
runs_counted()
counts_flush(W.tag, now)
for _, queue in ipairs(limits_woken(L)) do
  out[#out + 1] = queue
end
return out
