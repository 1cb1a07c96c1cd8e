--[[ purge: delete up to one batch of a queue's waiting jobs (pending, scheduled, retrying).

KEYS[1] jobs hash   KEYS[2] error hash   KEYS[3] FIFO list   KEYS[4] ranked set
KEYS[5] delayed set   KEYS[6] progress hash   KEYS[7] group set   KEYS[8] turns list
KEYS[9] group hash
KEYS[10] limit specs hash    KEYS[11] limit holding zset    KEYS[12] limit waiting zset
KEYS[13] limit held hash    KEYS[14] limit freed zset    KEYS[15] limit rate zset
KEYS[16] limit queued hash    KEYS[17] workflow node hash    KEYS[18] deferred count hash
KEYS[19] sequence counter
ARGV[1] batch size    ARGV[2] the queue's name    ARGV[3] the broker's result TTL in ms

Jobs held back by their limits (in a line, or freed: see _limits.lua) are waiting jobs of the
queue too; finding those in a line reads every line (O(jobs in lines)). Running jobs and dead
letters are left alone, and so are DEFERRED jobs (in no queue structure). A deleted node of a
workflow ends there as cancelled in the same call (see wf_end in _workflow.lua): its
dependents are released or ended, in any queue. Returns how many were deleted (0: none is left).
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
-- @include _workflow.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local batch = tonumber(ARGV[1])
local ids = pop_ready({fifo = KEYS[3], ranked = KEYS[4], groups = KEYS[7], turns = KEYS[8]}, batch)
if #ids < batch then
  local due = rcall('ZRANGE', KEYS[5], 0, batch - #ids - 1)
  if #due > 0 then
    each_chunk('ZREM', KEYS[5], due)
    for _, id in ipairs(due) do
      ids[#ids + 1] = id
    end
  end
end
local L = {jobs = KEYS[1], specs = KEYS[10], holding = KEYS[11], waiting = KEYS[12],
  held = KEYS[13], freed = KEYS[14], rate = KEYS[15], queued = KEYS[16]}
if #ids < batch then
  limits_held_of(L, ARGV[2], batch - #ids, ids)
end
if #ids > 0 then
  each_chunk('HDEL', L.held, ids)
  each_chunk('HDEL', KEYS[1], ids)
  each_chunk('HDEL', KEYS[2], ids)
  each_chunk('HDEL', KEYS[6], ids)
  each_chunk('HDEL', KEYS[9], ids)
  local W = {tag = wf_tag(KEYS[1]), jobs = KEYS[1], err = KEYS[2], seq = KEYS[19],
    prog = KEYS[6], of = KEYS[17], deferred = KEYS[18], ttl = tonumber(ARGV[3])}
  if wf_any(W) then
    W.now = now_ms()
    for _, id in ipairs(ids) do
      WF().wf_end(W, id, 'cancelled', '', '') -- nothing for a job that is no node
    end
  end
end
return #ids
