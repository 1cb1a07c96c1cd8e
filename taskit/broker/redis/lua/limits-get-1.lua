--[[ limits-get: every stored limit definition.

KEYS[1] limit specs hash

Returns {name, '<concurrency>|<rate>|<per ms>|<burst>', ...}.
]]
return redis.call('HGETALL', KEYS[1])
