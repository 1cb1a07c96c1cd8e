--[[ limits-get: every stored limit definition.

KEYS[1] limit specs hash
ARGV none

Returns {name, '<concurrency>|<rate>|<per ms>|<burst>', ...}.
]]
local rcall = redis.call
return rcall('HGETALL', KEYS[1])
