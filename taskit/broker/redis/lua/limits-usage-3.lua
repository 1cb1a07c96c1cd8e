--[[ limits-usage: one limit's definition, and its busiest keys (slots held, jobs in line).

KEYS[1] limit specs hash    KEYS[2] limit holding zset    KEYS[3] limit waiting zset
ARGV[1] the limit's name    ARGV[2] how many keys of each to answer (the top ones)

Reads every member of that limit in both sets (O(its running and waiting jobs)).

Returns {definition or false, {key, count, ...} running, {key, count, ...} waiting}, each list
largest first, ties by key.
]]
local rcall = redis.call
local name, top = ARGV[1], tonumber(ARGV[2])

local function busiest(set)
  local counts, keys = {}, {}
  for _, head in ipairs({name .. '\0', name .. ':'}) do
    local high = '(' .. string.sub(head, 1, -2) .. string.char(string.byte(head, -1) + 1)
    for _, m in ipairs(rcall('ZRANGEBYLEX', set, '[' .. head, high)) do
      local key = string.sub(m, 1, string.find(m, '\0', 1, true) - 1)
      if not counts[key] then
        keys[#keys + 1] = key
        counts[key] = 0
      end
      counts[key] = counts[key] + 1
    end
  end
  table.sort(keys, function(x, y)
    if counts[x] ~= counts[y] then
      return counts[x] > counts[y]
    end
    return x < y
  end)
  local out = {}
  for i = 1, math.min(top, #keys) do
    out[#out + 1] = keys[i]
    out[#out + 1] = counts[keys[i]]
  end
  return out
end

return {rcall('HGET', KEYS[1], name) or false, busiest(KEYS[2]), busiest(KEYS[3])}
