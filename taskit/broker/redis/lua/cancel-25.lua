--[[ cancel: cancel one job of a known queue.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] the job's done key
KEYS[4] FIFO list    KEYS[5] ranked set    KEYS[6] delayed set    KEYS[7] lease set
KEYS[8] totals hash  (the keys of queue ARGV[2])    KEYS[9] progress hash
KEYS[10] group set   KEYS[11] turns list   KEYS[12] group hash  (of queue ARGV[2])
KEYS[13] limit specs hash    KEYS[14] limit holding zset    KEYS[15] limit waiting zset
KEYS[16] limit held hash    KEYS[17] limit freed zset    KEYS[18] limit rate zset
KEYS[19] limit queued hash    KEYS[20] workflow node hash    KEYS[21] deferred count hash
KEYS[22] sequence counter    KEYS[23] completed set    KEYS[24] failed set
KEYS[25] cancelled set  (of queue ARGV[2]: its finished-job indexes, see index_ended in _common.lua)
ARGV[1] job id   ARGV[2] the queue the client believes the job is in   ARGV[3] result TTL in ms
(the job's own, else the broker's)   ARGV[4] the broker's result TTL in ms

Pending, scheduled, retrying or deferred (waiting for its parents): leaves its queue, ends cancelled (done key with a TTL). Running:
cancel requested (extend reports it). Returns 1 in those cases; 0 when the job is finished, dead
or unknown (nothing changes); the job's real queue name when it is not in ARGV[2].
Cancelling a pending job of the default priority scans its queue's FIFO list: O(n) in its length.
A job held back by its limits leaves its line (see _limits.lua) instead. A node of a workflow
has its end applied there in the same call (see wf_end in _workflow.lua): its dependents are
released or ended, in any queue.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
-- @include _workflow.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs
local fault = layout_fault({'hash', 'hash', '*', 'list', 'zset', 'zset', 'zset', '*', 'hash',
  'zset', 'list', 'hash', unpack(LIMIT_KINDS)}, {}, 0)
if fault then -- a job out of its queue, then a refused write: the job lost
  return redis.error_reply(fault)
end

local id, queue, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = load_state(KEYS[1], id)
if s == nil or s.status == 'dead_letter' then
  return 0
end
if s.queue ~= queue then
  return s.queue
end
if s.status == 'running' then
  s.cancel = '1'
  save_state(KEYS[1], id, s)
  return 1
end
local L = {jobs = KEYS[1], specs = KEYS[13], holding = KEYS[14], waiting = KEYS[15],
  held = KEYS[16], freed = KEYS[17], rate = KEYS[18], queued = KEYS[19]}
if not limits_forget(L, id, s) and s.status == 'pending' then
  unready({fifo = KEYS[4], ranked = KEYS[5], groups = KEYS[10], turns = KEYS[11],
    groupof = KEYS[12]}, id, s)
end
rcall('ZREM', KEYS[6], id)
rcall('ZREM', KEYS[7], id)
local W = {tag = wf_tag(KEYS[1]), jobs = KEYS[1], err = KEYS[2], seq = KEYS[22], prog = KEYS[9],
  of = KEYS[20], deferred = KEYS[21], ttl = tonumber(ARGV[4]), now = now_ms()}
if s.status == 'deferred' then
  count_deferred(W, s.queue, -1)
end
local node_err = wf_any(W) and wf_member(W, id) and
  (rcall('HGET', KEYS[2], id) or '')
finish({jobs = KEYS[1], err = KEYS[2], prog = KEYS[9], done = KEYS[3], totals = KEYS[8],
  groupof = KEYS[12], completed = KEYS[23], failed = KEYS[24], cancelled = KEYS[25],
  keep = W.ttl},
  id, s, 'cancelled', W.now, ttl, '')
if node_err then
  WF().wf_end(W, id, 'cancelled', node_err, '')
end
return 1
