-- A reader of msgpack bytes (a job's spec, a stored result or error) without decoding them:
-- pasted by `-- @include _msgpack.lua` before _limits.lua, _workflow.lua and _attempts.lua,
-- which use it.

-- The headers of a fixed size: byte -> its size; and the headers with a length (below). Built on
-- first use: a table made at the top of a script is made again on every call of the script,
-- which Redis pays in CPU even when the call reads no msgpack (most calls).
local MP_FIXED, MP_SIZED = nil, nil
local function mp_tables()
  MP_FIXED = {[0xc0] = 1, [0xc2] = 1, [0xc3] = 1, [0xca] = 5, [0xcb] = 9, [0xcc] = 2,
    [0xcd] = 3, [0xce] = 5, [0xcf] = 9, [0xd0] = 2, [0xd1] = 3, [0xd2] = 5, [0xd3] = 9,
    [0xd4] = 3, [0xd5] = 4, [0xd6] = 6, [0xd7] = 10, [0xd8] = 18}
  -- msgpack headers with a length: byte -> {bytes of the length, bytes before the length's end,
  -- 'n' for a byte count, 'a' for an item count, 'm' for a pair count}
  MP_SIZED = {[0xc4] = {1, 'n', 0}, [0xc5] = {2, 'n', 0}, [0xc6] = {4, 'n', 0},
    [0xd9] = {1, 'n', 0}, [0xda] = {2, 'n', 0}, [0xdb] = {4, 'n', 0},
    [0xc7] = {1, 'n', 1}, [0xc8] = {2, 'n', 1}, [0xc9] = {4, 'n', 1},
    [0xdc] = {2, 'a', 0}, [0xdd] = {4, 'a', 0}, [0xde] = {2, 'm', 0}, [0xdf] = {4, 'm', 0}}
end

-- The big-endian unsigned number of `n` bytes of `b` at `i`.
local function mp_uint(b, i, n)
  local v = 0
  for j = i, i + n - 1 do
    v = v * 256 + (string.byte(b, j) or 0)
  end
  return v
end

-- The msgpack value starting at byte `i` of `b`: how many values it holds (array items, map
-- keys and values), where its own bytes end (+1), and where its content starts; nil if the byte
-- starts no value.
local function mp_item(b, i)
  if not MP_FIXED then
    mp_tables()
  end
  local c = string.byte(b, i)
  if c == nil then
    return nil
  elseif c <= 0x7f or c >= 0xe0 then
    return 0, i + 1, i + 1
  elseif c >= 0xa0 and c <= 0xbf then
    return 0, i + 1 + c - 0xa0, i + 1
  elseif c >= 0x90 and c <= 0x9f then
    return c - 0x90, i + 1, i + 1
  elseif c >= 0x80 and c <= 0x8f then
    return 2 * (c - 0x80), i + 1, i + 1
  elseif MP_FIXED[c] then
    return 0, i + MP_FIXED[c], i + 1
  end
  local sized = MP_SIZED[c]
  if sized == nil then
    return nil
  end
  local n = mp_uint(b, i + 1, sized[1])
  local start = i + 1 + sized[1] + sized[3]
  if sized[2] == 'n' then
    return 0, start + n, start
  end
  return sized[2] == 'a' and n or 2 * n, start, start
end

-- Where the `n` msgpack values starting at byte `i` of `b` end (+1), each with all it holds; nil
-- if a byte starts no value. One loop, no call per value: the hot path of job_limits.
local function mp_skip(b, i, n)
  if not MP_FIXED then
    mp_tables()
  end
  local byte = string.byte
  while n > 0 do
    local c = byte(b, i)
    if c == nil then
      return nil
    end
    n = n - 1
    if c <= 0x7f or c >= 0xe0 then
      i = i + 1
    elseif c >= 0xa0 and c <= 0xbf then
      i = i + 1 + c - 0xa0
    elseif c >= 0x90 and c <= 0x9f then
      n, i = n + c - 0x90, i + 1
    elseif c >= 0x80 and c <= 0x8f then
      n, i = n + 2 * (c - 0x80), i + 1
    elseif MP_FIXED[c] then
      i = i + MP_FIXED[c]
    else
      local sized = MP_SIZED[c]
      if sized == nil then
        return nil
      end
      local len = mp_uint(b, i + 1, sized[1])
      local start = i + 1 + sized[1] + sized[3]
      if sized[2] == 'n' then
        i = start + len
      else
        n, i = n + (sized[2] == 'a' and len or 2 * len), start
      end
    end
  end
  return i
end
