--[[ limits-set: store limit definitions, all at once, and let out of line the jobs they free.

KEYS[1] jobs hash
KEYS[2] limit specs hash    KEYS[3] limit holding zset    KEYS[4] limit waiting zset
KEYS[5] limit held hash    KEYS[6] limit freed zset    KEYS[7] limit rate zset
KEYS[8] limit queued hash
ARGV[1] '1': keep a definition already stored (only_new), '0': replace it
then per limit: ARGV[2i] its name, ARGV[2i+1] '<concurrency>|<rate>|<per ms>|<burst>' or '' to
delete it

Each limit changed lets out of each of its keys' lines as many jobs as its keys now have free
slots (all of them when it has no concurrency any more, or was deleted): they go to the freed set
of their queues (see _limits.lua), back in their queues at the next reserve.

Returns the names of the queues that got freed jobs (to wake).
]]
local rcall = redis.call
-- @include _common.lua
-- @include _msgpack.lua
-- @include _limits.lua
local fault = layout_fault({'hash', unpack(LIMIT_KINDS)}, {}, 0)
if fault then
  return redis.error_reply(fault)
end

local L = {jobs = KEYS[1], specs = KEYS[2], holding = KEYS[3], waiting = KEYS[4],
  held = KEYS[5], freed = KEYS[6], rate = KEYS[7], queued = KEYS[8]}
local changed = {}
for i = 2, #ARGV, 2 do
  local name, spec = ARGV[i], ARGV[i + 1]
  if ARGV[1] ~= '1' or rcall('HEXISTS', L.specs, name) == 0 then
    if spec == '' then
      rcall('HDEL', L.specs, name)
    else
      rcall('HSET', L.specs, name, spec)
    end
    changed[#changed + 1] = name
  end
end
for _, name in ipairs(changed) do
  local keys, seen = {}, {}
  for _, head in ipairs({name .. '\0', name .. ':'}) do
    local high = '(' .. string.sub(head, 1, -2) .. string.char(string.byte(head, -1) + 1)
    for _, m in ipairs(rcall('ZRANGEBYLEX', L.waiting, '[' .. head, high)) do
      local key = string.sub(m, 1, string.find(m, '\0', 1, true) - 1)
      if not seen[key] then
        seen[key] = true
        keys[#keys + 1] = key
      end
    end
  end
  for _, key in ipairs(keys) do
    free_waiting(L, key, nil)
  end
end
return limits_woken(L)
