--[[ workflow-cancel: cancel every node of one workflow that has not ended.

KEYS[1] jobs hash    KEYS[2] error hash    KEYS[3] sequence counter    KEYS[4] progress hash
KEYS[5] limit specs hash    KEYS[6] limit holding zset    KEYS[7] limit waiting zset
KEYS[8] limit held hash    KEYS[9] limit freed zset    KEYS[10] limit rate zset
KEYS[11] limit queued hash    KEYS[12] workflow node hash    KEYS[13] deferred count hash
KEYS[14] the workflow's hash (see _workflow.lua; the nodes' queue keys are named there)
ARGV[1] the broker's result TTL in ms

A running node has its cancel requested (it ends when its worker settles); every other live node
(deferred, pending, scheduled, retrying) ends cancelled as `cancel` ends it (no error type of
its own), all of them before any end is applied to the workflow, so none of them ends as a
dependency's casualty. Returns how many nodes it cancelled or asked to stop.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
-- @include _workflow.lua
allow_oom(KEYS[1]) -- a full Redis runs this too: it ends, frees or moves stored jobs

local wk = KEYS[14]
local W = {tag = wf_tag(KEYS[1]), jobs = KEYS[1], err = KEYS[2], seq = KEYS[3], prog = KEYS[4],
  of = KEYS[12], deferred = KEYS[13], ttl = tonumber(ARGV[1]), now = now_ms()}
local L = {jobs = KEYS[1], seq = KEYS[3], specs = KEYS[5], holding = KEYS[6], waiting = KEYS[7],
  held = KEYS[8], freed = KEYS[9], rate = KEYS[10], queued = KEYS[11], forget = limits_forget}
local fields = rcall('HGETALL', wk)
local ended = {}
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'e:' then
    ended[string.sub(fields[i], 3)] = true
  end
end
local count, ends = 0, {}
for i = 1, #fields, 2 do
  local id = string.sub(fields[i], 3)
  if string.sub(fields[i], 1, 2) == 'n:' and not ended[id] then
    local what, err = WF().wf_cancel_node(W, L, wk, id)
    if what then
      count = count + 1
    end
    if what == 'ended' then
      ends[#ends + 1] = {id, err}
    end
  end
end
for _, e in ipairs(ends) do
  WF().wf_end(W, e[1], 'cancelled', e[2], '')
end
return count
