--[[ browse-scan: a page of a queue's DEFERRED jobs (waiting for the jobs they depend on), from a
cursor (read only). They are in no queue structure: the walk is an HSCAN of the workflow node
hash (every live node), keeping the deferred jobs of the queue.

KEYS[1] workflow node hash    KEYS[2] jobs hash    KEYS[3] error hash    KEYS[4] progress hash
ARGV[1] the HSCAN cursor of the batch to resume ('0' from the start)
ARGV[2] how many entries of that batch were examined already    ARGV[3] n, rows wanted
ARGV[4] budget, most entries examined    ARGV[5] the queue listed

O(examined) plus what HSCAN costs. HSCAN's promise holds: a node there for the whole walk is
listed, at least once (the hash rehashing between calls may show one twice). Returns what
_browse.lua says; each row's position is its batch's cursor and its place in that batch.
]]
local rcall = redis.call
-- @include _common.lua
-- @include _browse.lua

local key, cursor, skip = KEYS[1], ARGV[1], tonumber(ARGV[2])
local n, budget, queue = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local B = {jobs = KEYS[2], err = KEYS[3], prog = KEYS[4]}
local out, rows, examined, ended = {0, cursor, skip, 0}, 0, 0, false
while rows < n and examined < budget and not ended do
  local got = rcall('HSCAN', key, cursor, 'COUNT', math.max(n - rows, 50))
  local fields, j, stopped = got[2], skip, false
  while 2 * j + 1 <= #fields do
    local id = fields[2 * j + 1]
    j = j + 1
    examined = examined + 1
    out[2], out[3] = cursor, j
    if live_row(B, out, cursor, j, id, 'deferred', queue) then
      rows = rows + 1
    end
    if rows >= n or examined >= budget then
      stopped = 2 * j + 1 <= #fields
      break
    end
  end
  if not stopped then -- the batch is done: the next one
    cursor, skip = got[1], 0
    out[2], out[3] = cursor, 0
    ended = cursor == '0'
  end
  if stopped then
    break
  end
end
out[1] = examined
out[4] = ended and 0 or 1
return out
