--[[ dead-letters: a page of one queue's dead letters, oldest first (read only).

KEYS[1] dead set   KEYS[2] jobs hash   KEYS[3] error hash
ARGV[1] offset   ARGV[2] limit

Returns per dead letter: id, spec, state, error (a member without a record is skipped). A record
that is unreadable comes back whole as its spec, with an empty state (the client shows a
stand-in naming what is wrong).
]]
local rcall = redis.call
-- @include _common.lua

local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
if limit <= 0 then
  return out
end
for _, id in ipairs(rcall('ZRANGE', KEYS[1], offset, offset + limit - 1)) do
  local raw = rcall('HGET', KEYS[2], id)
  if raw then
    local s = parse_record(raw)
    local spec, state = raw, ''
    if s then
      spec, state = s.spec, pack_state(s)
    end
    for _, v in ipairs({id, spec, state, rcall('HGET', KEYS[3], id) or ''}) do
      out[#out + 1] = v
    end
  end
end
return out
