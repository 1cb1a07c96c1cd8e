--[[ enqueue: store a batch of jobs, all or none; an unfinished job with the same id is kept.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] sequence counter    KEYS[4] queue-name set
then per queue q = 1..ARGV[1] (base = 4 + 8 * (q - 1)), each queue named once per call:
  KEYS[base+1] FIFO list    KEYS[base+2] ranked set    KEYS[base+3] delayed set
  KEYS[base+4] wake list    KEYS[base+5] dead set      KEYS[base+6] group set
  KEYS[base+7] turns list   KEYS[base+8] group hash
then per job i: KEYS[4 + 8 * nq + i] the job's done key
then: KEYS[#KEYS-4] progress hash (a replaced dead letter's progress goes with it)
  KEYS[#KEYS-3] dedup hash    KEYS[#KEYS-2] dedup window set (see dedup below)
  KEYS[#KEYS-1] workflow node hash    KEYS[#KEYS] deferred count hash (see _workflow.lua)
ARGV[1] nq, the number of queues, or 'nq m' when m jobs carry a dedup window, or 'nq m w ttl'
  when w jobs are nodes of a workflow (ttl: the broker's result TTL in ms)
ARGV[1+q] the name of queue q
then per job i (base = 1 + nq + 4 * (i - 1)):
  ARGV[base+1] id    ARGV[base+2] encoded job
  ARGV[base+3] '<q> <d> <ready score> <delay ms> <scheduled_at ms or -1>[ <group>]': q its
               queue, d the queue whose dead set a dead-lettered job of that id is expected in
               (its own); group its fairness group (see fair turns in _common.lua), if any
  ARGV[base+4] scheduled_at as seconds text, or ''
then per node j = 1..w (base = 1 + nq + 4 * n + 4 * (j - 1)):
  ARGV[base+1] its job number i    ARGV[base+2] its workflow id
  ARGV[base+3] '<f, c or -><own result TTL ms or nothing>': its if_failed (fail, continue), or
               '-' for a job that waits for nothing
  ARGV[base+4] WF().ids_pack({task, queue, parent, ...}) (see _workflow.lua)
then per job j = 1..m with a dedup window (base = #ARGV - 3 * m + 3 * (j - 1)):
  ARGV[base+1] its job number i    ARGV[base+2] '<t or d> <window ms>'    ARGV[base+3] its key

Dedup (taskit.dedup): the dedup hash maps a key to the id of the job its window kept, the window
set scores the key by the end of its window. A job whose id is stored and unfinished is kept as
ever, first. Else a throttled job ('t') whose key has an open window is dropped: it is answered
with the kept job. A debounced job ('d') waits at least its window; if its key's window is open
and the kept job is still scheduled in the same queue, that job takes its spec and is due at the
end of the new window instead (answered as the kept job). Otherwise the job is stored and its
key's window starts: a throttle's ends after its window, a debounce's when the job falls due.
Windows that ended are forgotten last (at most 100 a call).

Workflows (see _workflow.lua and base.py): a node stored now joins its workflow's record (made
if new; kept again if it was expiring); a parent of no workflow joins it first. With a parent
not ended it is stored DEFERRED (in no queue); with every parent ended it is stored ready; with
a parent that failed or was cancelled (if_failed fail) it is stored ended, and its own nodes
follow. A node kept in place of the one sent changes no workflow.

Returns {'ok', then per job: kept, spec, state, error, result}: kept is 0 for a job stored now
(spec '': the client has it), 1 for an existing job of its id, or the id of the job a dedup
window kept in its place (spec '' when that job has finished: read it with get).
Returns {'moved', i, queue} and writes nothing when job i would replace a dead letter of another
queue, whose dead set the client must pass.
Returns {'unreadable', i, why} and writes nothing when a job of job i's id exists with a record
that is unreadable (see parse_record in _common.lua).
Returns {'parent', i, parent, why} and writes nothing when node i may not wait for that parent
(the client checked the parents within the batch).

Each job stored (not kept) counts as enqueued in the hash of the current minute (_counts.lua).

Out of memory (over maxmemory, nothing to evict): Redis refuses the whole call, nothing written
(the client raises BrokerOutOfMemoryError). That holds because the first write of any call that
stores a job grows memory (ZADD, INCR or HSET), and Redis refuses a script at such a first write;
the leftovers of replaced dead letters are removed last, as removing them first would let the call
through. A call that only finds its jobs already stored writes nothing and is answered.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _workflow.lua
-- @include _counts.lua

local nq, m, w, wttl = string.match(ARGV[1], '^(%d+) ?(%d*) ?(%d*) ?(%d*)$')
nq, m, w = tonumber(nq), tonumber(m) or 0, tonumber(w) or 0
local n = (#ARGV - 1 - nq - 3 * m - 4 * w) / 4
local nk = 4 + 8 * nq + n -- the keys before the progress hash
local dd = {} -- job number -> {mode = 't' or 'd', window = ms, key = dedup key}
for j = 1, m do
  local a = #ARGV - 3 * m + 3 * (j - 1)
  local mode, window = string.match(ARGV[a + 2], '^([td]) (%d+)$')
  dd[tonumber(ARGV[a + 1])] = {mode = mode, window = tonumber(window), key = ARGV[a + 3]}
end
local nodes = {} -- job number -> {wid=, mode=, own=, pack=, parents=}
for j = 1, w do
  local a = 1 + nq + 4 * n + 4 * (j - 1)
  local mode, own = string.match(ARGV[a + 3], '^([fc-])(%d*)$')
  local list, parents = WF().ids_unpack(ARGV[a + 4]), {}
  for k = 3, #list do
    parents[k - 2] = list[k]
  end
  nodes[tonumber(ARGV[a + 1])] = {wid = ARGV[a + 2], mode = mode, own = own, pack = ARGV[a + 4],
    parents = parents}
end
local jobs = {}
for i = 1, n do
  local a = 1 + nq + 4 * (i - 1)
  local q, d, score, delay, at, group = string.match(ARGV[a + 3],
    '^(%d+) (%d+) (%S+) (%d+) (%-?%d+) ?(.*)$')
  jobs[i] = {id = ARGV[a + 1], spec = ARGV[a + 2], q = tonumber(q), d = tonumber(d),
    score = score, delay = tonumber(delay), at = tonumber(at), at_text = ARGV[a + 4],
    group = score == '0' and group ~= '' and group or nil} -- other priorities keep their order
end
local function qkey(q, offset)
  return KEYS[4 + 8 * (q - 1) + offset]
end

-- First pass, read only: every key this call needs was passed, or nothing is written.
local olds = {}
for i = 1, n do
  local s, why = load_state(KEYS[1], jobs[i].id)
  if why then -- never replaced unseen: it is dead-lettered where it waits, or read by hand
    return {'unreadable', i, why}
  end
  if s and s.status == 'dead_letter' and s.queue ~= ARGV[1 + jobs[i].d] then
    return {'moved', i, s.queue}
  end
  olds[i] = s or false
end
local W = {} -- the workflow keys (_workflow.lua), for a batch with nodes only
local first = {} -- id -> its first job number in this batch
if w > 0 then
  W = {tag = wf_tag(KEYS[1]), jobs = KEYS[1], err = KEYS[2], seq = KEYS[3],
    prog = KEYS[nk + 1], of = KEYS[nk + 4], deferred = KEYS[nk + 5], ttl = tonumber(wttl)}
  for i = 1, n do
    first[jobs[i].id] = first[jobs[i].id] or i
  end
end
for i = 1, w > 0 and n or 0 do
  local node = nodes[i]
  if node then
    local wk = wf_key(W.tag, node.wid)
    for _, p in ipairs(node.parents) do
      -- a job of the batch stored by this call (not kept: its id unfinished, then it is the
      -- stored job) must come earlier, of this workflow or of none (it joins)
      local at = first[p]
      local why = nil
      if at and not (olds[at] and olds[at].status ~= 'dead_letter') then
        if at > i then
          why = 'comes later in the batch'
        elseif nodes[at] and nodes[at].wid ~= node.wid then
          why = 'belongs to another workflow'
        end
      else
        why = WF().wf_refused(W, wk, p)
      end
      if why then
        return {'parent', i, p, why}
      end
    end
  end
end

local now = nil -- server time, read only if a job has a due time or a dedup window
for i = 1, n do
  if jobs[i].delay > 0 or jobs[i].at >= 0 or dd[i] then
    now = now_ms()
    break
  end
end
if w > 0 and not now then
  now = now_ms() -- a workflow's creation time
end
W.now = now
local kids = {} -- workflow hash -> parent id -> ids_pack of the nodes stored now waiting for it
local out = {'ok'}
local stored = {} -- id -> state table written by this call (an id may repeat in a batch)
local records = {} -- HSET arguments: id, record, ...
local fifo = {} -- q -> ids to append to its FIFO list
local done = {}
local named = {}
local wakes = {}
local replaced = {} -- {dead set, id, group hash} of dead letters this call replaces
local groupof = {} -- q -> id, group, ... of grouped jobs stored now
local at_record = {} -- id -> its place in records (a debounce may rewrite it)
local DK, DU = KEYS[nk + 2], KEYS[nk + 3]

-- The job a dedup window of `d` keeps, if the window is open: its id and state (nil when its
-- record is gone or unreadable).
local function window_kept(d)
  local until_ms = rcall('ZSCORE', DU, d.key)
  if not until_ms or tonumber(until_ms) <= now then
    return nil
  end
  local id = rcall('HGET', DK, d.key)
  if not id then
    return nil
  end
  return id, stored[id] or load_state(KEYS[1], id)
end

-- Answer job i with the job `id` (state `s`, or nil: finished) kept in its place.
local function answer_kept(id, s)
  local o = #out
  out[o + 1], out[o + 5] = id, ''
  out[o + 2], out[o + 3] = s and s.spec or '', s and pack_state(s) or ''
  out[o + 4] = s and not stored[id] and rcall('HGET', KEYS[2], id) or ''
end

-- Give scheduled job `id` (state `s`, of queue q) the spec of debounced `job`, due at `due`.
local function debounce(id, s, job, q, due)
  s.spec = job.spec
  s.sched = string.format('%.3f', due / 1000)
  rcall('ZADD', qkey(q, 3), due, id)
  rcall('ZADD', DU, due, job.dd.key)
  if at_record[id] then
    records[at_record[id]] = pack_record(s)
  else
    save_state(KEYS[1], id, s)
  end
  answer_kept(id, s)
end

for i = 1, n do
  local job = jobs[i]
  local id, queue = job.id, ARGV[1 + job.q]
  local old = stored[id] or olds[i]
  job.dd = dd[i]
  local kept_id, kept = nil, nil
  if job.dd and not (old and old.status ~= 'dead_letter') then
    if job.dd.mode == 'd' then
      job.delay = math.max(job.delay, job.dd.window)
    end
    kept_id, kept = window_kept(job.dd)
  end
  if old and old.status ~= 'dead_letter' then
    local o = #out
    out[o + 1], out[o + 2], out[o + 3] = 1, old.spec, pack_state(old)
    out[o + 4], out[o + 5] = stored[id] and '' or rcall('HGET', KEYS[2], id) or '', ''
  elseif kept_id and job.dd.mode == 't' then
    answer_kept(kept_id, kept)
  elseif kept_id and kept and kept.status == 'scheduled' and kept.queue == queue then
    debounce(kept_id, kept, job, job.q, math.max(now + job.delay, job.at))
  else
    if old then -- a dead letter is finished: replaced (its leftovers go last, see above)
      replaced[#replaced + 1] = {qkey(job.d, 5), id, qkey(job.d, 8)}
    end
    local node, fate, wk = nodes[i], nil, nil
    if node then
      fate, wk = WF().wf_join(W, node, id, kids, stored)
    end
    local due, sched = nil, ''
    if now then
      due = now + job.delay
      if job.at >= 0 and job.at >= due then
        due = job.at
        sched = job.at_text
      elseif due > now then
        sched = string.format('%.3f', due / 1000)
      end
      if due <= now then
        due = nil -- due now: ready
      end
    end
    local s = {status = 'pending', attempts = 0, score = job.score, seq = '', token = '',
      cancel = '', sched = '', started = '', completed = '', failed = '', queue = queue,
      spec = job.spec}
    if type(fate) == 'table' then -- a parent failed or was cancelled: stored ended
      local pst, ne, at = string.match(fate[2], '^([^|]*)|(%d+)|()')
      local e, r = string.sub(fate[2], at, at + ne - 1), string.sub(fate[2], at + ne)
      count_deferred(W, queue, 1) -- wf_kill counts it out
      local lib = WF()
      local ended = lib.wf_kill(W, wk, id, s, fate[1], pst, {lib.result_error(pst, e, r)},
        node.own, W.ttl)
      WF().wf_end(W, id, ended[2], ended[3], '')
      stored[id] = s
      named[queue] = true
      count(queue, 'e', 1)
      local o = #out
      out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = 0, '', pack_state(s),
        ended[3], ''
    else
      done[#done + 1] = KEYS[4 + 8 * nq + i]
      if job.group then
        s.seq = '0' -- grouped (see fair turns in _common.lua)
        local entries = groupof[job.q] or {}
        groupof[job.q] = entries
        entries[#entries + 1], entries[#entries + 2] = id, job.group
      end
      if fate and fate > 0 then -- waits for a parent: in no queue until released (_workflow.lua)
        s.status = 'deferred'
        s.sched = due and sched or ''
        count_deferred(W, queue, 1)
      elseif due then
        s.status = 'scheduled'
        s.sched = sched
        rcall('ZADD', qkey(job.q, 3), due, id)
        wake_if_earliest(qkey(job.q, 3), qkey(job.q, 4), id)
      elseif job.group then
        group_ready({fifo = qkey(job.q, 1), seq = KEYS[3], groups = qkey(job.q, 6),
          turns = qkey(job.q, 7), groupof = qkey(job.q, 8)}, id, s, false, job.group)
      elseif s.score == '0' then
        local ids = fifo[job.q]
        if not ids then
          ids = {}
          fifo[job.q] = ids
        end
        ids[#ids + 1] = id
      else
        make_ready({fifo = qkey(job.q, 1), ranked = qkey(job.q, 2), seq = KEYS[3],
          groups = qkey(job.q, 6), turns = qkey(job.q, 7), groupof = qkey(job.q, 8)}, id, s, false)
      end
      if s.status == 'pending' then
        wakes[job.q] = (wakes[job.q] or 0) + 1
      end
      local state
      if s.status == 'pending' and s.seq == '' then -- the common case, without the table walk
        state = 'pending|0|' .. s.score .. '||||||||' .. queue
      else
        state = pack_state(s)
      end
      local r = #records
      records[r + 1], records[r + 2] = id, #state .. ':' .. state .. job.spec
      at_record[id] = r + 2
      stored[id] = s
      if job.dd then -- its key's window starts: a debounce's lasts until it falls due
        rcall('HSET', DK, job.dd.key, id)
        rcall('ZADD', DU, job.dd.mode == 't' and now + job.dd.window or due, job.dd.key)
      end
      named[queue] = true
      count(queue, 'e', 1)
      local o = #out
      out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = 0, '', state, '', ''
    end
  end
end
each_chunk('HSET', KEYS[1], records)
for wk, lists in pairs(kids) do -- after every node of the batch: see wf_join
  for p, more in pairs(lists) do
    rcall('HSET', wk, 'c:' .. p, (rcall('HGET', wk, 'c:' .. p) or '') .. more)
  end
end
for _, r in ipairs(replaced) do
  rcall('ZREM', r[1], r[2])
  rcall('HDEL', KEYS[2], r[2])
  rcall('HDEL', KEYS[nk + 1], r[2])
  if not (stored[r[2]] and stored[r[2]].seq ~= '' and stored[r[2]].score == '0') then
    rcall('HDEL', r[3], r[2]) -- its group entry, unless the new job of that id has one
  end
end
for q, entries in pairs(groupof) do
  each_chunk('HSET', qkey(q, 8), entries)
end
if now and m > 0 then -- last, as the leftovers above: windows that ended are forgotten
  local ended = rcall('ZRANGEBYSCORE', DU, '-inf', now, 'LIMIT', 0, 100)
  if #ended > 0 then
    each_chunk('ZREM', DU, ended)
    each_chunk('HDEL', DK, ended)
  end
end
for i = 1, #done, CHUNK do
  rcall('DEL', unpack(done, i, math.min(i + CHUNK - 1, #done)))
end
for q, ids in pairs(fifo) do
  each_chunk('RPUSH', qkey(q, 1), ids)
end
for q, count in pairs(wakes) do
  wake(qkey(q, 4), count)
end
for queue in pairs(named) do
  rcall('SADD', KEYS[4], queue)
end
if counted_any then -- the jobs stored, in the hash of this minute (_counts.lua)
  counts_flush(wf_tag(KEYS[1]), now or now_ms())
end
return out
