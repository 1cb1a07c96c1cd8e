--[[ reserve: lease up to `count` ready jobs, taking the queues in order.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] sequence counter
KEYS[4] limit specs hash    KEYS[5] limit holding zset    KEYS[6] limit waiting zset
KEYS[7] limit held hash    KEYS[8] limit freed zset    KEYS[9] limit rate zset
KEYS[10] limit queued hash
then per queue q (base = 10 + 9 * (q - 1)):
  KEYS[base+1] FIFO list   KEYS[base+2] ranked set   KEYS[base+3] delayed set
  KEYS[base+4] lease set   KEYS[base+5] dead set     KEYS[base+6] wake list
  KEYS[base+7] group set   KEYS[base+8] turns list   KEYS[base+9] group hash
last: KEYS[#KEYS] paused set (names of the paused queues)
ARGV[1] count   ARGV[2] lease in ms   ARGV[3] random token stem   ARGV[4] promotion batch size
ARGV[4+q] name of queue q

Each queue's due delayed jobs are promoted (at most one batch), then ready jobs are taken (higher
priorities first, FIFO within one; the default priority's jobs
in turns over their groups, see fair turns in _common.lua): each becomes running with attempts + 1, started = now,
token = stem .. '.' .. n, and a lease deadline of now + lease. A ready or due entry whose record is
missing or unreadable (a field holding a value this layout never writes), or whose status is not
pending while the job is in no structure of its status, is dead-lettered on the spot, with the
reason as its error (see bury and misplaced in _common.lua). A workflow node so dead-lettered ends for its
workflow in the same call (see wf_buried in _workflow.lua). A paused queue (its name in the
paused set: one SMEMBERS a call) is promoted but not taken from, and its delayed jobs do not
shorten the wait.

Limits (see _limits.lua): a queue's freed jobs come back first, at the front; a popped job whose
limits hold it back is not leased and spends no attempt (it waits in line, or is delayed until its
rate allows it). After HOLD_CAP jobs held back the call stops looking (wait_ms 0: call again).

Returns {now_ms, wait_ms, then per lease: q, id, spec, state, error}. wait_ms is -1 unless nothing
was leased and a delayed job exists: then the ms until the earliest is due (0 if overdue).
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
-- @include _workflow.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

-- ids popped, then a refused write: jobs lost
local fault, bare = layout_fault({'hash', 'hash', 'string', unpack(LIMIT_KINDS)},
  {'list', '?zset', '?zset', 'zset', '?zset', 'list', '?zset', '?list', '?hash'}, (#KEYS - 11) / 9)
if fault then
  return redis.error_reply(fault)
end
-- bare: no key of limits, priorities, delays, groups or dead letters exists (one EXISTS of
-- them all, in layout_fault): nothing to promote, each queue's FIFO list is all it has ready,
-- and nothing below makes another of those structures before it pops (a job a limit delays
-- waits in a delayed set, read at the end only).

local count, lease, stem, batch = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local now = now_ms()
-- As text once a call: Redis formats a number given to a command (or concatenated) with printf.
local now_text, deadline = string.format('%d', now), string.format('%d', now + lease)
local out = {now, -1}
local taken = 0
local nq = (#KEYS - 11) / 9
local paused = {}
for _, name in ipairs(rcall('SMEMBERS', KEYS[#KEYS])) do
  paused[name] = true
end
local L = {jobs = KEYS[1], seq = KEYS[3], specs = KEYS[4], holding = KEYS[5], waiting = KEYS[6],
  held = KEYS[7], freed = KEYS[8], rate = KEYS[9], queued = KEYS[10]}
L.any_freed = rcall('EXISTS', L.freed) == 1 -- the one read a call pays when no limit is in use
local held = 0 -- jobs held back by their limits
local no_err = nil -- whether the error hash is empty (asked at the first job handed out)

for q = 1, nq do
  local k = 10 + 9 * (q - 1)
  local R = {fifo = KEYS[k + 1], ranked = KEYS[k + 2], seq = KEYS[3], groups = KEYS[k + 7],
    turns = KEYS[k + 8], groupof = KEYS[k + 9]}
  local K = {jobs = KEYS[1], err = KEYS[2], leases = KEYS[k + 4], no_err = no_err}
  local G = {jobs = KEYS[1], err = KEYS[2], seq = KEYS[3], dead = KEYS[k + 5], queue = ARGV[4 + q],
    groupof = R.groupof}
  local P = {fifo = R.fifo, ranked = R.ranked, delayed = KEYS[k + 3], leases = KEYS[k + 4],
    dead = KEYS[k + 5], groups = R.groups, groupof = R.groupof}
  R.fifo_only = bare
  if not bare then
    promote(G, R, P, now, batch)
  end
  local Q = {delayed = KEYS[k + 3], wake = KEYS[k + 6]} -- where a rate-limited job goes
  limits_return(L, R, G.queue, batch)
  while taken < count and held < HOLD_CAP and not paused[G.queue] do
    local want = count - taken
    local ids = pop_ready(R, want)
    if #ids == 0 then
      break
    end
    for _, id in ipairs(ids) do
      local s, why = load_state(KEYS[1], id)
      if s == nil then -- dead-lettered so it is seen, not silently dropped
        bury(G, id, why or 'record missing (its id was ready, its record gone)', now)
      elseif s.status == 'pending' and not limits_pass(L, Q, id, s, now) then
        held = held + 1 -- held back by a limit: waits, or is delayed; no attempt spent
      elseif s.status == 'pending' then
        taken = taken + 1
        s.status = 'running'
        s.attempts = s.attempts + 1
        s.started = now_text
        if no_err == nil then -- one EXISTS a call, not an HGET a job, while no job has an error
          no_err = rcall('EXISTS', KEYS[2]) == 0 -- (nothing this call writes is handed out)
          K.no_err = no_err
        end
        hand_out(K, out, q, id, s, stem .. '.' .. taken, deadline)
      else -- a stray entry, or the only trace of a job whose status was changed by hand
        local lost = misplaced(P, id, s, 'ready list')
        if lost then
          bury(G, id, lost, now)
        end
      end
    end
    if #ids < want then
      break -- the queue had no more ready jobs (nothing above makes one ready): no second look
    end
  end
  if taken >= count then
    -- Jobs are left for others: pass the wake-up on to another idle worker.
    if has_ready(R) and rcall('LLEN', KEYS[k + 6]) == 0 then
      wake(KEYS[k + 6], 1)
    end
    break
  end
end

if taken == 0 then
  local earliest = nil
  for q = 1, nq do
    local first = paused[ARGV[4 + q]] and {} or rcall('ZRANGE', KEYS[10 + 9 * (q - 1) + 3], 0, 0,
      'WITHSCORES')
    if first[2] and (earliest == nil or tonumber(first[2]) < earliest) then
      earliest = tonumber(first[2])
    end
  end
  if earliest then
    out[2] = math.max(earliest - now, 0)
  end
  if held >= HOLD_CAP then
    out[2] = 0 -- it stopped looking: more jobs may be ready behind those held back
  end
end
return out
